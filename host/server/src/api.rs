//! `/api/v1`: rules, jobs, decisions, annotations, logs (paged and live), locks and workers.
//! Every handler is one call of the service layer with the authenticated actor.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Multipart, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json, Router};
use futures_util::Stream;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use sluice_app::{Actor, AppError, Decision, DecisionKind, JobQuery, JobState, Note};
use utoipa::{IntoParams, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::Server;
use crate::live::StartWatch;
use crate::problem::Problem;

type Answer = Result<Response, Problem>;

/// The API's routes and its OpenAPI document, both from the handlers' `#[utoipa::path]`
/// attributes: a route cannot be served without being documented, nor documented at another
/// path than it is served at.
pub(crate) fn routes() -> (Router<Arc<Server>>, utoipa::openapi::OpenApi) {
    let uploads = OpenApiRouter::new()
        .routes(routes!(annotations, annotate))
        .layer(DefaultBodyLimit::max(
            sluice_app::MAX_ANNOTATION_BYTES as usize + (1 << 20),
        ));
    let api = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(whoami))
        .routes(routes!(rules))
        .routes(routes!(validate))
        .routes(routes!(jobs, start))
        .routes(routes!(job))
        .routes(routes!(decide))
        .routes(routes!(cancel))
        .routes(routes!(logs))
        .routes(routes!(stream_logs))
        .merge(uploads)
        .routes(routes!(annotation))
        .routes(routes!(notifications))
        .routes(routes!(locks))
        .routes(routes!(workers))
        .routes(routes!(events))
        .routes(routes!(chat_follow, chat_unfollow));
    let (router, mut api) = api.split_for_parts();
    // After the paths are in: the answers every operation may give go on each of them.
    utoipa::Modify::modify(&Common, &mut api);
    (router, api)
}

/// What the document says besides the paths: where the API lives, how to authenticate, and
/// the errors every operation may answer.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "sluice",
        description = "The HTTP API of `sluice server`: rules, jobs, decisions at gates, annotations, logs, locks. Errors are RFC 9457 problem details with the words the command line prints (docs/server.md)."
    ),
    servers((url = "/api/v1")),
    components(schemas(ProblemDoc)),
    security(("bearer" = []))
)]
struct ApiDoc;

/// An RFC 9457 problem detail, as every error is answered.
#[derive(utoipa::ToSchema)]
#[schema(as = Problem)]
#[allow(dead_code)]
struct ProblemDoc {
    /// Always `about:blank`.
    r#type: String,
    /// The HTTP status's reason phrase.
    title: String,
    /// The HTTP status.
    status: u16,
    /// What is wrong and what to do, as the command line says it.
    detail: String,
}

/// The bearer token scheme, and the answers any operation may give: 401, 429 and 500.
struct Common;

impl utoipa::Modify for Common {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An API token from `sluice token create --user NAME`."))
                    .build(),
            ),
        );
        let problem = |why: &str| {
            ResponseBuilder::new()
                .description(why)
                .content(
                    "application/problem+json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("Problem")))
                        .build(),
                )
                .build()
        };
        for item in api.paths.paths.values_mut() {
            for op in [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                let r = &mut op.responses.responses;
                r.entry("401".into()).or_insert_with(|| {
                    problem("No token, or one that is unknown or revoked.").into()
                });
                r.entry("429".into()).or_insert_with(|| {
                    problem("Too many failed authentications from this address this minute.").into()
                });
                r.entry("500".into())
                    .or_insert_with(|| problem("The server failed; `detail` says how.").into());
            }
        }
    }
}

fn ok(status: StatusCode, body: Value) -> Answer {
    Ok((status, Json(body)).into_response())
}

#[utoipa::path(get, path = "/whoami", tag = "identity",
    responses((status = 200, description = "The authenticated user: `name`, `groups`, `via` (token, password, proxy).", content_type = "application/json")))]
async fn whoami(Extension(actor): Extension<Actor>) -> Answer {
    ok(StatusCode::OK, json!(actor))
}

/// The directory jobs are started from, or a 404 saying how to give one.
fn rules_dir(server: &Server) -> Result<&std::path::Path, Problem> {
    server.config.rules.as_deref().ok_or_else(|| {
        Problem::new(
            StatusCode::NOT_FOUND,
            "this server knows no rules: start it with `sluice server --rules DIR`",
        )
    })
}

#[utoipa::path(get, path = "/rules", tag = "rules",
    responses(
        (status = 200, description = "The rule files of `--rules DIR`: `file`, `rule` (its name) or `problem` (why it does not parse).", content_type = "application/json"),
        (status = 404, description = "The server was started without `--rules`.", body = ProblemDoc, content_type = "application/problem+json")))]
async fn rules(State(server): State<Arc<Server>>) -> Answer {
    let dir = rules_dir(&server)?;
    let files = server.app.rule_files(dir).await?;
    ok(StatusCode::OK, json!(files))
}

#[utoipa::path(post, path = "/rules/validate", tag = "rules",
    request_body(content = String, description = "A rule, as YAML.", content_type = "application/yaml"),
    responses(
        (status = 200, description = "`{\"valid\": true, \"rule\": NAME}`", content_type = "application/json"),
        (status = 422, description = "`{\"valid\": false, \"problems\": TEXT}`, each problem at line:column.", content_type = "application/json")))]
async fn validate(State(server): State<Arc<Server>>, body: String) -> Answer {
    let dir = server
        .config
        .rules
        .clone()
        .unwrap_or_else(|| server.app.home().to_path_buf());
    match server
        .app
        .validate_text(&body, &dir.join("posted.yaml"))
        .await
    {
        Ok(v) => ok(
            StatusCode::OK,
            json!({ "valid": true, "rule": v.rule.name }),
        ),
        Err(AppError::Invalid(d)) => ok(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({ "valid": false, "problems": d.to_string() }),
        ),
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct JobsQuery {
    /// Only jobs in this status (`waiting`, `running`, `succeeded`...).
    status: Option<String>,
    /// Only jobs of this rule.
    rule: Option<String>,
    /// Jobs to skip, for paging.
    #[serde(default)]
    offset: usize,
    /// How many (50 by default, at most 500).
    limit: Option<usize>,
}

#[utoipa::path(get, path = "/jobs", tag = "jobs", params(JobsQuery),
    responses(
        (status = 200, description = "`{\"jobs\": [...], \"offset\", \"limit\"}`, newest first.", content_type = "application/json"),
        (status = 400, description = "An unknown status.", body = ProblemDoc, content_type = "application/problem+json")))]
async fn jobs(State(server): State<Arc<Server>>, Query(q): Query<JobsQuery>) -> Answer {
    let status = match q.status.as_deref() {
        None => None,
        Some(s) => Some(
            s.parse::<JobState>()
                .map_err(|e| Problem::new(StatusCode::BAD_REQUEST, format!("status: {e}")))?,
        ),
    };
    let query = JobQuery {
        status,
        rule: q.rule,
        offset: q.offset,
        limit: q.limit.unwrap_or(50).min(500),
    };
    let rows = server.app.jobs_matching(&query).await?;
    ok(
        StatusCode::OK,
        json!({ "jobs": rows, "offset": query.offset, "limit": query.limit }),
    )
}

/// The gate notifications a job's events caused and how their delivery went (not their
/// bodies: they may carry the job's params to a channel the reader cannot see).
#[utoipa::path(get, path = "/jobs/{job}/notifications", tag = "jobs", params(("job" = String, Path, description = "The job id, such as `web-release-42`.")),
    responses(
        (status = 200, description = "`{\"notifications\": [...]}`: webhook, attempts, when delivered, the last error, given up.", content_type = "application/json"),
        (status = 404, description = "No such job.", body = ProblemDoc, content_type = "application/problem+json")))]
async fn notifications(State(server): State<Arc<Server>>, Path(job): Path<String>) -> Answer {
    server.app.job(&job).await?;
    let rows: Vec<Value> = server
        .app
        .messages(&job)
        .await?
        .into_iter()
        .map(|m| {
            json!({
                "id": m.id,
                "sink": m.sink,
                "created_at": m.created_at,
                "attempts": m.attempts,
                "delivered_at": m.delivered_at,
                "last_error": m.last_error,
                "gave_up": m.gave_up,
            })
        })
        .collect();
    ok(StatusCode::OK, json!({ "notifications": rows }))
}

#[utoipa::path(get, path = "/jobs/{job}", tag = "jobs", params(("job" = String, Path, description = "The job id, such as `web-release-42`.")),
    responses(
        (status = 200, description = "The job as `sluice show --json` prints it: status, steps, the gates it waits at, annotations, its whole history.", content_type = "application/json"),
        (status = 404, description = "No such job.", body = ProblemDoc, content_type = "application/problem+json")))]
async fn job(State(server): State<Arc<Server>>, Path(job): Path<String>) -> Answer {
    let view = server.app.job(&job).await?;
    ok(StatusCode::OK, view.to_json())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct StartBody {
    /// The rule's name, as `GET /rules` lists it.
    rule: String,
    /// Its params, by name.
    #[serde(default)]
    #[schema(value_type = Object)]
    params: Map<String, Value>,
}

/// Starts a job: answers 201 once it is in the journal (its check passed) and drives it on in
/// this process; a check or start that fails answers with why, and leaves no job.
#[utoipa::path(post, path = "/jobs", tag = "jobs", request_body = StartBody,
    responses(
        (status = 201, description = "The job's row, once it is in the journal; `Location` names it.", content_type = "application/json"),
        (status = 400, description = "Params that do not fit the rule.", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such rule in `--rules`.", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "Its check failed: no job was created.", content_type = "application/json")))]
async fn start(
    State(server): State<Arc<Server>>,
    Extension(actor): Extension<Actor>,
    Json(body): Json<StartBody>,
) -> Answer {
    let dir = rules_dir(&server)?;
    let path = server.app.rule_path(dir, &body.rule).await?;
    let params: Vec<String> = body
        .params
        .iter()
        .map(|(k, v)| match v {
            Value::String(s) => format!("{k}={s}"),
            other => format!("{k}={other}"),
        })
        .collect();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let watch = Arc::new(StartWatch {
        created: Mutex::new(Some(tx)),
        live: server.live.clone(),
    });
    let app = server.app.clone();
    let driven = server.tasks.spawn(async move {
        let r = app.start(&path, &params, actor, watch).await;
        if let Err(e) = &r {
            // After the answer went out, the log is where this is seen.
            tracing::warn!(error = %e, "driving a job started over HTTP stopped; the worker carries it on");
        }
        r
    });
    let id = match rx.await {
        Ok(id) => id,
        // Nothing was written: the start failed, or its check did.
        Err(_) => match driven.await {
            Ok(Ok((id, standing))) => {
                return ok(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    json!({ "job": id, "standing": standing_json(&standing) }),
                );
            }
            Ok(Err(e)) => return Err(e.into()),
            Err(e) => {
                return Err(Problem::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("starting the job failed: {e}"),
                ));
            }
        },
    };
    let row = server.app.row(&id).await?;
    let mut r = (StatusCode::CREATED, Json(json!(row))).into_response();
    if let Ok(v) = format!("/api/v1/jobs/{id}").parse() {
        r.headers_mut().insert(header::LOCATION, v);
    }
    Ok(r)
}

fn standing_json(s: &sluice_app::Standing) -> Value {
    use sluice_app::Standing as S;
    match s {
        S::Finished { status, message } => {
            json!({ "standing": "finished", "status": status.as_str(), "message": message })
        }
        S::Queued { behind } => json!({ "standing": "queued", "behind": behind }),
        S::CheckFailed { message } => json!({ "standing": "check-failed", "message": message }),
        S::ElsewhereRunning => json!({ "standing": "running-elsewhere" }),
        S::Waiting { gates } => json!({ "standing": "waiting", "gates": gates }),
        S::Handed => json!({ "standing": "handed" }),
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct DecideBody {
    /// `approve`, `reject`, `resume`, `retry`, `skip`, `rollback` or `abort`.
    #[schema(value_type = String, example = "approve")]
    decision: DecisionKind,
    /// The step whose gate this decides, when the job waits at more than one.
    step: Option<String>,
    /// Recorded with the decision.
    #[serde(default)]
    comment: String,
    /// Answers to the gate's inputs; for `retry`, fields of the step's input to replace.
    #[serde(default)]
    #[schema(value_type = Object)]
    inputs: Map<String, Value>,
}

/// Records a decision (checked like the command line's) and drives the job on in this process;
/// answers 202 once the decision is in the journal.
#[utoipa::path(post, path = "/jobs/{job}/decisions", tag = "gates", params(("job" = String, Path, description = "The job id, such as `web-release-42`.")), request_body = DecideBody,
    responses(
        (status = 202, description = "Recorded; the server drives the job on.", content_type = "application/json"),
        (status = 400, description = "A decision the gate does not take, an input it does not offer, or which gate.", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Not allowed: the permissions file, the gate's approvers, four eyes.", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such job.", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "The gate was decided already (`detail` names who), or the job ended.", body = ProblemDoc, content_type = "application/problem+json")))]
async fn decide(
    State(server): State<Arc<Server>>,
    Extension(actor): Extension<Actor>,
    Path(job): Path<String>,
    Json(body): Json<DecideBody>,
) -> Answer {
    let decision = Decision {
        kind: body.decision,
        step: body.step,
        comment: body.comment,
        inputs: body.inputs,
        detach: true,
    };
    server
        .app
        .decide(&job, decision, actor, server.live.clone())
        .await?;
    drive_on(&server, &job);
    let row = server.app.row(&job).await?;
    ok(StatusCode::ACCEPTED, json!(row))
}

/// Drives `job` in a task of this process (a lease keeps the worker from doing it too).
pub(crate) fn drive_on(server: &Arc<Server>, job: &str) {
    let app = server.app.clone();
    let live = server.live.clone();
    let job = job.to_string();
    server.tasks.spawn(async move {
        if let Err(e) = app.drive(&job, live).await {
            tracing::warn!(job, error = %e, "driving after a decision failed; the worker retries");
        }
    });
}

#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
struct CancelBody {
    /// Why, recorded in the journal.
    #[serde(default)]
    reason: String,
}

#[utoipa::path(post, path = "/jobs/{job}/cancel", tag = "jobs", params(("job" = String, Path, description = "The job id, such as `web-release-42`.")), request_body(content = CancelBody, description = "Why (optional)."),
    responses(
        (status = 200, description = "The job's row: gates close, post runs.", content_type = "application/json"),
        (status = 403, description = "Not allowed by the permissions file.", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "The job ended already.", body = ProblemDoc, content_type = "application/problem+json")))]
async fn cancel(
    State(server): State<Arc<Server>>,
    Extension(actor): Extension<Actor>,
    Path(job): Path<String>,
    body: Option<Json<CancelBody>>,
) -> Answer {
    let reason = body.map(|Json(b)| b.reason).unwrap_or_default();
    let app = server.app.clone();
    let live = server.live.clone();
    let id = job.clone();
    // The cancel itself is checked and recorded at once; post steps then run in this task.
    server
        .tasks
        .spawn(async move { app.cancel(&id, &reason, actor, live).await })
        .await
        .map_err(|e| {
            Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cancel failed: {e}"),
            )
        })??;
    let row = server.app.row(&job).await?;
    ok(StatusCode::OK, json!(row))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct After {
    /// Only lines after this log id.
    #[serde(default)]
    after: i64,
}

#[utoipa::path(get, path = "/jobs/{job}/logs", tag = "logs", params(("job" = String, Path, description = "The job id, such as `web-release-42`."), After),
    responses((status = 200, description = "`{\"logs\": [...]}`: step, attempt, level, source, message, id.", content_type = "application/json")))]
async fn logs(
    State(server): State<Arc<Server>>,
    Path(job): Path<String>,
    Query(q): Query<After>,
) -> Answer {
    server.app.row(&job).await?;
    let rows = server.app.logs(&job, q.after).await?;
    ok(StatusCode::OK, json!({ "logs": rows }))
}

/// Log lines as Server-Sent Events (`log`, then `end` with the job's status once it ended and
/// every line was sent). `Last-Event-ID` (or `?after=`) continues after a log id.
#[utoipa::path(get, path = "/jobs/{job}/logs/stream", tag = "logs", params(("job" = String, Path, description = "The job id, such as `web-release-42`."), After),
    responses((status = 200, description = "Server-Sent Events: `log` (id = the log id; `Last-Event-ID` resumes), then `end` with the job's status.", content_type = "text/event-stream")))]
async fn stream_logs(
    State(server): State<Arc<Server>>,
    Path(job): Path<String>,
    Query(q): Query<After>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, Problem> {
    server.app.row(&job).await?;
    let after = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .unwrap_or(q.after);
    let state = Tail {
        changed: server.live.subscribe(),
        server,
        job,
        after,
        queue: VecDeque::new(),
        done: false,
    };
    let stream = futures_util::stream::unfold(state, |mut t| async move {
        let next = t.next().await?;
        Some((Ok(next), t))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// A log stream's place.
struct Tail {
    server: Arc<Server>,
    changed: tokio::sync::broadcast::Receiver<String>,
    job: String,
    after: i64,
    queue: VecDeque<SseEvent>,
    done: bool,
}

impl Tail {
    async fn next(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(e) = self.queue.pop_front() {
                return Some(e);
            }
            if self.done {
                return None;
            }
            // The status is read before the lines: lines are written no later than the event
            // that ends the job, so an ended job with no new lines has none left.
            let row = match self.server.app.row(&self.job).await {
                Ok(r) => r,
                Err(e) => return self.fail(e),
            };
            let rows = match self.server.app.logs(&self.job, self.after).await {
                Ok(r) => r,
                Err(e) => return self.fail(e),
            };
            for r in rows {
                self.after = r.id;
                self.queue.push_back(
                    SseEvent::default()
                        .event("log")
                        .id(r.id.to_string())
                        .data(json!(r).to_string()),
                );
            }
            if !self.queue.is_empty() {
                continue;
            }
            if row.status.is_ended() {
                self.done = true;
                self.queue.push_back(
                    SseEvent::default()
                        .event("end")
                        .data(json!({ "status": row.status, "message": row.message }).to_string()),
                );
                continue;
            }
            // Woken by this process's drivers; other processes' changes are read within a
            // second.
            let job = self.job.clone();
            let changed = &mut self.changed;
            let woken = async {
                loop {
                    match changed.recv().await {
                        Ok(j) if j == job => return,
                        Ok(_) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => return,
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                            std::future::pending::<()>().await
                        }
                    }
                }
            };
            let _ = tokio::time::timeout(Duration::from_secs(1), woken).await;
        }
    }

    fn fail(&mut self, e: AppError) -> Option<SseEvent> {
        self.done = true;
        Some(
            SseEvent::default()
                .event("error")
                .data(json!({ "detail": e.to_string() }).to_string()),
        )
    }
}

#[utoipa::path(get, path = "/jobs/{job}/annotations", tag = "annotations", params(("job" = String, Path, description = "The job id, such as `web-release-42`.")),
    responses((status = 200, description = "`{\"annotations\": [...]}`, without their bodies.", content_type = "application/json")))]
async fn annotations(State(server): State<Arc<Server>>, Path(job): Path<String>) -> Answer {
    server.app.row(&job).await?;
    let rows = server.app.annotations(&job).await?;
    ok(StatusCode::OK, json!({ "annotations": rows }))
}

/// A comment (`{"comment": "..."}`), or files as `multipart/form-data` (a `comment` field and
/// `file` fields), each streamed to disk and refused past the annotation size limit.
#[utoipa::path(post, path = "/jobs/{job}/annotations", tag = "annotations", params(("job" = String, Path, description = "The job id, such as `web-release-42`.")),
    request_body(description = "`{\"comment\": TEXT}` as JSON, or `multipart/form-data` with `comment` and `file` fields (64 MiB each at most).", content = String, content_type = "multipart/form-data"),
    responses(
        (status = 201, description = "`{\"id\": N}` or `{\"ids\": [...]}`.", content_type = "application/json"),
        (status = 413, description = "A file over the limit: nothing is attached.", body = ProblemDoc, content_type = "application/problem+json")))]
async fn annotate(
    State(server): State<Arc<Server>>,
    Extension(actor): Extension<Actor>,
    Path(job): Path<String>,
    headers: HeaderMap,
    request: axum::extract::Request,
) -> Answer {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if content_type.starts_with("multipart/form-data") {
        use axum::extract::FromRequest as _;
        let multipart = Multipart::from_request(request, &())
            .await
            .map_err(|e| Problem::new(StatusCode::BAD_REQUEST, e.body_text()))?;
        return upload(&server, &job, actor, multipart).await;
    }
    use axum::extract::FromRequest as _;
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Comment {
        comment: String,
    }
    let Json(c) = Json::<Comment>::from_request(request, &())
        .await
        .map_err(|e| {
            Problem::new(
                e.status(),
                format!(
                    "{}: send {{\"comment\": \"...\"}} as JSON, or files as multipart/form-data",
                    e.body_text()
                ),
            )
        })?;
    let id = server
        .app
        .annotate(&job, Note::Comment(c.comment), actor)
        .await?;
    ok(StatusCode::CREATED, json!({ "id": id }))
}

pub(crate) async fn upload(
    server: &Server,
    job: &str,
    actor: Actor,
    mut multipart: Multipart,
) -> Answer {
    use std::io::Write as _;
    server.app.row(job).await?;
    let mut ids = vec![];
    while let Some(mut field) = multipart
        .next_field()
        .await
        .map_err(|e| Problem::new(StatusCode::BAD_REQUEST, e.body_text()))?
    {
        match field.name() {
            Some("comment") => {
                let text = field
                    .text()
                    .await
                    .map_err(|e| Problem::new(StatusCode::BAD_REQUEST, e.body_text()))?;
                ids.push(
                    server
                        .app
                        .annotate(job, Note::Comment(text), actor.clone())
                        .await?,
                );
            }
            Some("file") => {
                let name = upload_name(field.file_name());
                let dir = tempfile::tempdir_in(server.app.home()).map_err(|e| {
                    Problem::from(AppError::Storage(format!(
                        "cannot stage the upload in {}: {e}",
                        server.app.home().display()
                    )))
                })?;
                let path = dir.path().join(&name);
                let mut file = std::fs::File::create(&path).map_err(|e| {
                    Problem::from(AppError::Storage(format!("cannot stage the upload: {e}")))
                })?;
                let mut len: u64 = 0;
                while let Some(chunk) = field
                    .chunk()
                    .await
                    .map_err(|e| Problem::new(StatusCode::BAD_REQUEST, e.body_text()))?
                {
                    len += chunk.len() as u64;
                    if len > sluice_app::MAX_ANNOTATION_BYTES {
                        return Err(Problem::new(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            format!(
                                "{name} is larger than {} MiB, the most an annotation holds: attach an excerpt, or keep the file elsewhere and annotate its location",
                                sluice_app::MAX_ANNOTATION_BYTES >> 20
                            ),
                        ));
                    }
                    file.write_all(&chunk).map_err(|e| {
                        Problem::from(AppError::Storage(format!("cannot stage the upload: {e}")))
                    })?;
                }
                drop(file);
                ids.push(
                    server
                        .app
                        .annotate(job, Note::File(path), actor.clone())
                        .await?,
                );
            }
            other => {
                return Err(Problem::new(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "unknown form field `{}`: send `comment` and `file` fields",
                        other.unwrap_or("")
                    ),
                ));
            }
        }
    }
    if ids.is_empty() {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "the form had no `comment` or `file` field",
        ));
    }
    ok(StatusCode::CREATED, json!({ "ids": ids }))
}

/// The last component of an uploaded file's name, without control characters, at most 200
/// bytes; `upload` when nothing is left.
fn upload_name(given: Option<&str>) -> String {
    let base = given.unwrap_or("").rsplit(['/', '\\']).next().unwrap_or("");
    let mut name: String = base.chars().filter(|c| !c.is_control()).collect();
    while name.len() > 200 {
        name.pop();
    }
    if name.is_empty() || name == "." || name == ".." {
        "upload".into()
    } else {
        name
    }
}

#[utoipa::path(get, path = "/jobs/{job}/annotations/{id}", tag = "annotations", params(("job" = String, Path, description = "The job id, such as `web-release-42`."), ("id" = i64, Path, description = "The annotation's number.")),
    responses(
        (status = 200, description = "The body: a comment as text, a file as an attachment.", content_type = "application/octet-stream"),
        (status = 404, description = "No such annotation of this job.", body = ProblemDoc, content_type = "application/problem+json")))]
async fn annotation(
    State(server): State<Arc<Server>>,
    Path((job, id)): Path<(String, i64)>,
) -> Answer {
    let row = server.app.annotation(&job, id).await?;
    let body = server.app.annotation_bytes(&row).await?;
    let kind = if row.kind == "comment" {
        "text/plain; charset=utf-8"
    } else {
        "application/octet-stream"
    };
    let disposition = format!(
        "attachment; filename=\"{}\"",
        row.title.replace(['"', '\\', '\r', '\n'], "_")
    );
    let mut r = (StatusCode::OK, body).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, header::HeaderValue::from_static(kind));
    if row.kind != "comment"
        && let Ok(v) = header::HeaderValue::from_str(&disposition)
    {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    Ok(r)
}

/// A CloudEvent (HTTP binding, structured or binary mode) starts the jobs of the rules in
/// `--rules` whose `on: cloudevent` it matches, each once per event (`source` and `id`).
#[utoipa::path(post, path = "/events", tag = "events",
    request_body(content = String, description = "A CloudEvent 1.0: structured (`Content-Type: application/cloudevents+json`) or binary (`ce-specversion`, `ce-id`, `ce-source`, `ce-type` headers; the body is its data).", content_type = "application/cloudevents+json"),
    responses(
        (status = 202, description = "`{\"started\": [JOB...], \"not_started\": N}`: the jobs started are in the journal and the server drives them; `not_started` counts matching rules whose job this event started before, or whose check failed.", content_type = "application/json"),
        (status = 400, description = "Not a CloudEvent (a required attribute missing, bad JSON).", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "The server was started without `--rules`.", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 415, description = "Neither mode (batches are not supported yet).", body = ProblemDoc, content_type = "application/problem+json")))]
async fn events(
    State(server): State<Arc<Server>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Answer {
    let dir = rules_dir(&server)?.to_path_buf();
    let event = crate::events::read(&headers, &body)?;
    let mut started = Vec::new();
    let mut already = 0;
    for start in server.app.event_starts(&dir, &event).await? {
        match crate::start_triggered(&server, start).await? {
            Some(id) => started.push(id),
            None => already += 1,
        }
    }
    ok(
        StatusCode::ACCEPTED,
        json!({ "started": started, "not_started": already }),
    )
}

#[derive(Deserialize, ToSchema, IntoParams)]
#[serde(deny_unknown_fields)]
struct FollowBody {
    /// The job id.
    job: String,
    /// `slack:CHANNEL_ID` or `matrix:!room:server`.
    room: String,
}

/// A chat room follows a job: its transitions are posted there, and what is said there is
/// recorded in it (docs/chatops.md).
#[utoipa::path(post, path = "/chat/follows", tag = "chat", request_body = FollowBody,
    responses(
        (status = 201, description = "`{\"job\", \"room\"}`: the room follows the job.", content_type = "application/json"),
        (status = 400, description = "Not a room of a chat sluice knows.", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such job.", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "The job ended.", body = ProblemDoc, content_type = "application/problem+json")))]
async fn chat_follow(State(server): State<Arc<Server>>, Json(body): Json<FollowBody>) -> Answer {
    server
        .app
        .chat_follow_room(&body.room, &body.job, true)
        .await?;
    ok(
        StatusCode::CREATED,
        json!({ "job": body.job, "room": body.room }),
    )
}

/// A chat room stops following a job.
#[utoipa::path(delete, path = "/chat/follows", tag = "chat", params(FollowBody),
    responses(
        (status = 204, description = "The room no longer follows the job."),
        (status = 404, description = "The room did not follow it.", body = ProblemDoc, content_type = "application/problem+json")))]
async fn chat_unfollow(State(server): State<Arc<Server>>, Query(q): Query<FollowBody>) -> Answer {
    server.app.chat_follow_room(&q.room, &q.job, false).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(get, path = "/locks", tag = "locks",
    responses((status = 200, description = "`{\"locks\": [...]}`: each lock and concurrency group, who holds it, who waits, in line order.", content_type = "application/json")))]
async fn locks(State(server): State<Arc<Server>>) -> Answer {
    ok(
        StatusCode::OK,
        json!({ "locks": server.app.locks().await? }),
    )
}

#[utoipa::path(get, path = "/workers", tag = "locks",
    responses((status = 200, description = "`{\"workers\": [...]}`: the workers running now.", content_type = "application/json")))]
async fn workers(State(server): State<Arc<Server>>) -> Answer {
    ok(
        StatusCode::OK,
        json!({ "workers": server.app.workers().await? }),
    )
}

#[cfg(test)]
mod tests {
    use super::upload_name;

    #[test]
    fn upload_names_keep_only_their_last_component() {
        assert_eq!(upload_name(Some("../../etc/passwd")), "passwd");
        assert_eq!(upload_name(Some("C:\\x\\report.txt")), "report.txt");
        assert_eq!(upload_name(Some("..")), "upload");
        assert_eq!(upload_name(None), "upload");
        assert_eq!(upload_name(Some("a\u{0}b\nc")), "abc");
        assert_eq!(upload_name(Some(&"x".repeat(500))).len(), 200);
    }
}
