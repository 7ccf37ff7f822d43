//! The job monitor: server-rendered pages a team follows and decides jobs in, shipped inside
//! the binary (no build step): the job list, a job's page (steps, the gate panel with its
//! inputs and only the buttons the person may press, live logs, annotations, decisions), the
//! locks, and sign-in with an API token into a session cookie (HttpOnly, SameSite=Strict,
//! Secure unless served on a loopback address) with a CSRF token on every form.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Form, Multipart, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use serde::Deserialize;
use serde_json::{Map, Value};
use sluice_app::{Actor, AppError, Decision, DecisionKind, Event, JobQuery, JobState};

use crate::Server;

/// How long a session lasts.
const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
const COOKIE: &str = "sluice_session";

/// A signed-in person.
#[derive(Clone)]
pub(crate) struct Session {
    pub(crate) actor: Actor,
    /// Every form carries it; a POST without it is refused.
    csrf: String,
    expires: Instant,
}

/// Sessions of this process (a restart signs everyone out).
#[derive(Default)]
pub(crate) struct Sessions(std::sync::Mutex<HashMap<String, Session>>);

impl Sessions {
    fn get(&self, id: &str) -> Option<Session> {
        let mut all = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match all.get(id) {
            Some(s) if s.expires > Instant::now() => Some(s.clone()),
            Some(_) => {
                all.remove(id);
                None
            }
            None => None,
        }
    }

    fn add(&self, id: String, s: Session) {
        let mut all = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if all.len() > 10_000 {
            let now = Instant::now();
            all.retain(|_, s| s.expires > now);
        }
        all.insert(id, s);
    }

    fn remove(&self, id: &str) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
    }
}

/// The session a request's cookie names.
pub(crate) fn session_of(server: &Server, headers: &HeaderMap) -> Option<Session> {
    let id = cookie(headers)?;
    server.sessions.get(&id)
}

/// The session cookie's value.
fn cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| {
            c.trim()
                .strip_prefix(&format!("{COOKIE}="))
                .map(str::to_string)
        })
        .next()
}

/// Compares secrets in time independent of where they differ.
pub(crate) fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

pub(crate) fn routes(server: Arc<Server>) -> Router<Arc<Server>> {
    let signed_in = Router::new()
        .route("/", get(job_list))
        .route("/jobs/{job}", get(job_page))
        .route("/jobs/{job}/decide", post(decide))
        .route("/jobs/{job}/annotate", post(annotate))
        .route("/locks", get(locks_page))
        .route("/logout", post(logout))
        .layer(axum::middleware::from_fn_with_state(
            server,
            require_session,
        ));
    Router::new()
        .route("/login", get(login_page).post(login))
        .route("/static/monitor.css", get(css))
        .route("/static/monitor.js", get(js))
        .merge(signed_in)
}

/// Signed-in pages: the session's [`Session`] goes into the request; without one, to the
/// sign-in page. A POST must carry the session's CSRF token (a form field `csrf`, or the
/// `csrf` query parameter for file uploads).
async fn require_session(
    State(server): State<Arc<Server>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut req: Request,
    next: Next,
) -> Response {
    let mut new_cookie = None;
    let session = match (
        session_of(&server, req.headers()),
        server.proxy_actor(peer.ip(), req.headers()),
    ) {
        // Behind a trusted proxy, the proxy says who it is; the session only carries the
        // CSRF token, and must be that person's.
        (Some(s), Some(p)) if s.actor.name == p.name => s,
        (_, Some(p)) => {
            if req.method() == axum::http::Method::POST {
                return refused(
                    StatusCode::FORBIDDEN,
                    "this form did not come from a sluice page you have open (no session): reload the page and try again",
                );
            }
            match new_session(&server, p, req.headers()) {
                Some((s, cookie)) => {
                    new_cookie = Some(cookie);
                    s
                }
                None => return no_session(),
            }
        }
        (Some(s), None) => s,
        (None, None) => return Redirect::to("/login").into_response(),
    };
    if req.method() == axum::http::Method::POST {
        let query_token = req.uri().query().and_then(|q| {
            q.split('&')
                .find_map(|kv| kv.strip_prefix("csrf=").map(str::to_string))
        });
        let (parts, body) = req.into_parts();
        let is_form = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        let (token, body) = if is_form {
            let bytes = match axum::body::to_bytes(body, 1 << 20).await {
                Ok(b) => b,
                Err(_) => return refused(StatusCode::PAYLOAD_TOO_LARGE, "the form is too large"),
            };
            let token = form_field(&bytes, "csrf");
            (token, axum::body::Body::from(bytes))
        } else {
            (query_token, body)
        };
        if !token.is_some_and(|t| same_secret(&t, &session.csrf)) {
            tracing::warn!(user = session.actor.name, path = %parts.uri.path(), "a form without its CSRF token was refused");
            return refused(
                StatusCode::FORBIDDEN,
                "this form did not come from a sluice page (its CSRF token is missing or wrong): reload the page and try again",
            );
        }
        req = Request::from_parts(parts, body);
    }
    req.extensions_mut().insert(session);
    let mut response = next.run(req).await;
    if let Some(c) = new_cookie {
        response.headers_mut().insert(header::SET_COOKIE, c);
    }
    response
}

/// The value of field `name` of a URL-encoded form.
fn form_field(body: &[u8], name: &str) -> Option<String> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body).ok()?;
    pairs.into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

/// A page saying why something was refused, with the status.
fn refused(status: StatusCode, why: &str) -> Response {
    let body = format!(
        "<p class=\"error\" role=\"alert\">{}</p><p><a href=\"/\">Back to the jobs</a></p>",
        esc(why)
    );
    (status, page("Refused", None, &body)).into_response()
}

/// `text` safe inside HTML text and double-quoted attributes.
pub(crate) fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A whole page.
fn page(title: &str, session: Option<&Session>, body: &str) -> Html<String> {
    let who = match session {
        Some(s) => format!(
            "<form method=\"post\" action=\"/logout\" class=\"who\"><span>Signed in as <strong>{}</strong></span><input type=\"hidden\" name=\"csrf\" value=\"{}\"><button type=\"submit\">Sign out</button></form>",
            esc(&s.actor.name),
            esc(&s.csrf)
        ),
        None => String::new(),
    };
    Html(format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{} · sluice</title><link rel=\"stylesheet\" href=\"/static/monitor.css\"></head><body><header><nav aria-label=\"main\"><a href=\"/\" class=\"brand\">sluice</a> <a href=\"/\">Jobs</a> <a href=\"/locks\">Locks</a></nav>{who}</header><main>{body}</main><script src=\"/static/monitor.js\" defer></script></body></html>",
        esc(title)
    ))
}

async fn css() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("monitor.css"),
    )
        .into_response()
}

async fn js() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("monitor.js"),
    )
        .into_response()
}

async fn login_page(State(server): State<Arc<Server>>, headers: HeaderMap) -> Response {
    if session_of(&server, &headers).is_some() {
        return Redirect::to("/").into_response();
    }
    page("Sign in", None, LOGIN_FORM).into_response()
}

const LOGIN_FORM: &str = "<h1>Sign in</h1><form id=\"password-form\" method=\"post\" action=\"/login\" class=\"card\"><label for=\"user\">User name</label><input id=\"user\" name=\"user\" autocomplete=\"username\" required><label for=\"password\">Password</label><input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required><button type=\"submit\">Sign in</button></form><form id=\"token-form\" method=\"post\" action=\"/login\" class=\"card\"><label for=\"token\">Or an API token</label><input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"off\" required><p class=\"hint\">An administrator makes one with <code>sluice token create --user NAME</code>, or sets a password with <code>sluice password set --user NAME</code>.</p><button type=\"submit\">Sign in with the token</button></form>";

#[derive(Deserialize)]
struct LoginForm {
    token: Option<String>,
    user: Option<String>,
    password: Option<String>,
}

async fn login(
    State(server): State<Arc<Server>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    let credential = match (&f.token, &f.user, &f.password) {
        (Some(t), _, _) => crate::Credential::Token(t.trim()),
        (None, Some(u), Some(p)) => crate::Credential::Password(u.trim(), p),
        _ => crate::Credential::Password("", ""),
    };
    let actor = match server.authenticate(peer.ip(), credential).await {
        Ok(a) => a,
        Err((status, why)) => {
            let body = format!(
                "<p class=\"error\" role=\"alert\">{}</p>{LOGIN_FORM}",
                esc(&why)
            );
            return (status, page("Sign in", None, &body)).into_response();
        }
    };
    match new_session(&server, actor, &headers) {
        Some((_, cookie)) => {
            let mut r = Redirect::to("/").into_response();
            r.headers_mut().insert(header::SET_COOKIE, cookie);
            r
        }
        None => no_session(),
    }
}

fn no_session() -> Response {
    refused(
        StatusCode::INTERNAL_SERVER_ERROR,
        "no session could be made (no random bytes): try again",
    )
}

/// A new session for `actor`, and the cookie that names it (`Secure` unless the page was
/// addressed to this machine over plain HTTP); `None` when the OS gave no random bytes.
fn new_session(
    server: &Server,
    actor: Actor,
    headers: &HeaderMap,
) -> Option<(Session, HeaderValue)> {
    let (Ok(id), Ok(csrf)) = (sluice_app::random_hex(32), sluice_app::random_hex(32)) else {
        tracing::error!("no random bytes for a session");
        return None;
    };
    let session = Session {
        actor,
        csrf,
        expires: Instant::now() + SESSION_TTL,
    };
    server.sessions.add(id.clone(), session.clone());
    let secure = if server.config.tls.is_none() && loopback_host(headers) {
        ""
    } else {
        "; Secure"
    };
    let cookie = format!(
        "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        SESSION_TTL.as_secs()
    );
    HeaderValue::from_str(&cookie).ok().map(|c| (session, c))
}

/// Whether the request was addressed to a loopback host (plain HTTP on this machine), where a
/// `Secure` cookie would not come back from every browser.
fn loopback_host(headers: &HeaderMap) -> bool {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let name = match host.rsplit_once(':') {
        Some((n, p)) if p.chars().all(|c| c.is_ascii_digit()) => n,
        _ => host,
    };
    name == "localhost"
        || name
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

async fn logout(State(server): State<Arc<Server>>, headers: HeaderMap) -> Response {
    if let Some(id) = cookie(&headers) {
        server.sessions.remove(&id);
    }
    let mut r = Redirect::to("/login").into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("sluice_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    r
}

#[derive(Deserialize)]
struct ListQuery {
    status: Option<String>,
    rule: Option<String>,
}

fn age(ms: u64) -> String {
    let s = sluice_app::now().saturating_sub(ms) / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

const STATUSES: [&str; 13] = [
    "waiting",
    "running",
    "queued",
    "ready",
    "cancelling",
    "rolling-back",
    "succeeded",
    "failed",
    "rejected",
    "rolled-back",
    "cancelled",
    "check-failed",
    "warning",
];

async fn job_list(
    State(server): State<Arc<Server>>,
    Extension(session): Extension<Session>,
    Query(q): Query<ListQuery>,
) -> Result<Response, Response> {
    let status = q
        .status
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<JobState>())
        .transpose()
        .map_err(|e| refused(StatusCode::BAD_REQUEST, &e))?;
    let rule = q.rule.filter(|r| !r.is_empty());
    let mut rows = server
        .app
        .jobs_matching(&JobQuery {
            status,
            rule: rule.clone(),
            offset: 0,
            limit: 200,
        })
        .await
        .map_err(app_refused)?;
    // Waiting jobs first: they are the ones a person is needed for.
    rows.sort_by_key(|r| r.status != JobState::Waiting);
    let mut body = String::from(
        "<h1>Jobs</h1><form method=\"get\" action=\"/\" class=\"filters\"><label for=\"status\">Status</label><select id=\"status\" name=\"status\"><option value=\"\">any</option>",
    );
    for s in STATUSES {
        let selected = if status.map(|x| x.as_str()) == Some(s) {
            " selected"
        } else {
            ""
        };
        let _ = write!(body, "<option{selected}>{s}</option>");
    }
    let _ = write!(
        body,
        "</select><label for=\"rule\">Rule</label><input id=\"rule\" name=\"rule\" value=\"{}\"><button type=\"submit\">Filter</button></form>",
        esc(rule.as_deref().unwrap_or(""))
    );
    if rows.is_empty() {
        body.push_str("<p>No jobs.</p>");
    } else {
        body.push_str("<div class=\"scroll\"><table id=\"jobs\"><thead><tr><th scope=\"col\">Job</th><th scope=\"col\">Status</th><th scope=\"col\">Rule</th><th scope=\"col\">Started by</th><th scope=\"col\">Waiting for / message</th><th scope=\"col\">Age</th></tr></thead><tbody>");
        for r in rows {
            let _ = write!(
                body,
                "<tr><td><a href=\"/jobs/{id}\">{id}</a></td><td><span class=\"status s-{st}\">{st}</span></td><td>{rule}</td><td>{by}</td><td>{msg}</td><td>{age}</td></tr>",
                id = esc(&r.id),
                st = esc(r.status.as_str()),
                rule = esc(&r.rule),
                by = esc(&r.started_by),
                msg = esc(&r.message),
                age = age(r.created_at)
            );
        }
        body.push_str("</tbody></table></div>");
    }
    Ok(page("Jobs", Some(&session), &body).into_response())
}

fn app_refused(e: AppError) -> Response {
    let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    refused(status, &e.to_string())
}

async fn job_page(
    State(server): State<Arc<Server>>,
    Extension(session): Extension<Session>,
    Path(job): Path<String>,
) -> Result<Response, Response> {
    render_job(&server, &session, &job, None).await
}

/// A job's page, with `error` (a refused decision) at the top.
async fn render_job(
    server: &Server,
    session: &Session,
    job: &str,
    error: Option<&AppError>,
) -> Result<Response, Response> {
    let view = server.app.job(job).await.map_err(app_refused)?;
    let j = &view.job;
    let (status, message) = sluice_app::status_of(j);
    let allowed = server
        .app
        .decisions_for(&view, &session.actor)
        .map_err(app_refused)?;
    let mut b = String::new();
    if let Some(e) = error {
        let _ = write!(
            b,
            "<p class=\"error\" role=\"alert\">{}</p>",
            esc(&e.to_string())
        );
    }
    let _ = write!(
        b,
        "<h1>{id}</h1><p class=\"summary\"><span id=\"job-status\" class=\"status s-{st}\" data-job=\"{id}\" data-status=\"{st}\">{st}</span> <span id=\"job-message\">{msg}</span></p><p class=\"meta\">rule <strong>{rule}</strong> · started by <strong>{by}</strong> · {age} ago</p>",
        id = esc(&j.id),
        st = esc(status.as_str()),
        msg = esc(&message),
        rule = esc(&j.rule.name),
        by = esc(&j.started_by),
        age = age(j.created_at)
    );
    if view.driver_gone {
        b.push_str("<p class=\"note\">The process driving this job stopped; the server's worker carries it on.</p>");
    }

    // The gate panels.
    for gate in j.waiting_gates() {
        let kinds = allowed
            .iter()
            .find(|(s, _)| *s == gate.step)
            .map(|(_, k)| k.clone())
            .unwrap_or_default();
        let _ = write!(
            b,
            "<section class=\"gate card\" aria-labelledby=\"gate-{step}\"><h2 id=\"gate-{step}\">Waiting at <code>{step}</code> ({kind})</h2><p class=\"ask\">{msg}</p>",
            step = esc(&gate.step),
            kind = gate.kind.as_str(),
            msg = esc(&gate.message)
        );
        if !gate.approvers.is_empty() || gate.quorum > 1 {
            let _ = write!(
                b,
                "<p>Approvers: {} · <span class=\"quorum\">{} of {} approvals</span>{}</p>",
                esc(&if gate.approvers.is_empty() {
                    "anyone allowed".to_string()
                } else {
                    gate.approvers.join(", ")
                }),
                gate.approved_by.len(),
                gate.quorum,
                if gate.approved_by.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", esc(&gate.approved_by.join(", ")))
                }
            );
        }
        if let Some(d) = gate.deadline {
            let _ = write!(
                b,
                "<p>Times out <span class=\"countdown\" data-deadline=\"{d}\">in {} s</span>{}</p>",
                d.saturating_sub(sluice_app::now()) / 1000,
                gate.on_timeout
                    .map(|k| format!(", then {}", esc(k.as_str())))
                    .unwrap_or_default()
            );
        }
        if let Some(d) = gate.opens_at {
            let _ = write!(
                b,
                "<p>Starts by itself <span class=\"countdown\" data-deadline=\"{d}\">in {} s</span>, when the window opens</p>",
                d.saturating_sub(sluice_app::now()) / 1000,
            );
        }
        if !gate.bundle.is_empty() {
            b.push_str("<details><summary>What an approval approves: the ops and their capabilities</summary><ul class=\"bundle\">");
            for (name, digest, caps) in &gate.bundle {
                let _ = write!(
                    b,
                    "<li><code>{}</code> sha256:{}… {}</li>",
                    esc(name),
                    esc(&digest[..12.min(digest.len())]),
                    esc(&caps.join(", "))
                );
            }
            let _ = write!(
                b,
                "</ul><p>bundle {}</p></details>",
                esc(&gate.bundle_digest)
            );
        }
        if kinds.is_empty() {
            b.push_str("<p class=\"note\">You may not decide here.</p>");
        } else {
            let _ = write!(
                b,
                "<form method=\"post\" action=\"/jobs/{id}/decide\" class=\"decide\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><input type=\"hidden\" name=\"step\" value=\"{step}\">",
                id = esc(&j.id),
                csrf = esc(&session.csrf),
                step = esc(&gate.step)
            );
            let inputs = j
                .steps
                .get(&gate.step)
                .and_then(|s| s.gate.as_ref())
                .map(|g| g.gate.inputs.clone())
                .unwrap_or_default();
            for i in &inputs {
                let field = format!("input-{}-{}", gate.step, i.name);
                let _ = write!(
                    b,
                    "<label for=\"{f}\">{name} <span class=\"hint\">{desc}</span></label>",
                    f = esc(&field),
                    name = esc(&i.name),
                    desc = esc(&i.description)
                );
                match &i.kind {
                    sluice_app::InputKind::Choice(values) => {
                        let _ = write!(
                            b,
                            "<select id=\"{}\" name=\"input.{}\">",
                            esc(&field),
                            esc(&i.name)
                        );
                        for v in values {
                            let sel = if i.default.as_deref() == Some(v.as_str()) {
                                " selected"
                            } else {
                                ""
                            };
                            let _ =
                                write!(b, "<option value=\"{v}\"{sel}>{v}</option>", v = esc(v));
                        }
                        b.push_str("</select>");
                    }
                    sluice_app::InputKind::Text => {
                        let _ = write!(
                            b,
                            "<input id=\"{}\" name=\"input.{}\" value=\"{}\"{}>",
                            esc(&field),
                            esc(&i.name),
                            esc(i.default.as_deref().unwrap_or("")),
                            if i.required { " required" } else { "" }
                        );
                    }
                }
            }
            if kinds.contains(&DecisionKind::Retry)
                && let Some(Value::Object(current)) = j.steps.get(&gate.step).map(|s| &s.input)
                && !current.is_empty()
            {
                // Retry with edited inputs: each top-level field of the step's input, as it
                // ran; what is changed replaces that field when (and only when) Retry is
                // pressed. Text is sent as text, anything else as JSON.
                let _ = write!(
                    b,
                    "<details class=\"edit\"><summary>Edit the input for a retry</summary>"
                );
                for (key, value) in current {
                    let field = format!("edit-{}-{key}", gate.step);
                    let _ = write!(b, "<label for=\"{}\">{}</label>", esc(&field), esc(key));
                    match value {
                        Value::String(text) => {
                            let _ = write!(
                                b,
                                "<input id=\"{}\" name=\"edit.{}\" value=\"{}\">",
                                esc(&field),
                                esc(key),
                                esc(text)
                            );
                        }
                        other => {
                            let _ = write!(
                                b,
                                "<textarea id=\"{}\" name=\"editjson.{}\" rows=\"2\" class=\"json\">{}</textarea>",
                                esc(&field),
                                esc(key),
                                esc(&serde_json::to_string_pretty(other).unwrap_or_default())
                            );
                        }
                    }
                }
                b.push_str("</details>");
            }
            let _ = write!(
                b,
                "<label for=\"comment-{s}\">Comment</label><textarea id=\"comment-{s}\" name=\"comment\" rows=\"2\"></textarea><div class=\"buttons\">",
                s = esc(&gate.step)
            );
            for k in kinds {
                let class = match k {
                    DecisionKind::Approve | DecisionKind::Resume | DecisionKind::Retry => "primary",
                    DecisionKind::Reject | DecisionKind::Abort | DecisionKind::Rollback => "danger",
                    DecisionKind::Skip | DecisionKind::SkipWindow => "",
                };
                let label = capitalise(k.as_str());
                let _ = write!(
                    b,
                    "<button type=\"submit\" name=\"decision\" value=\"{v}\" class=\"{class}\">{label}</button>",
                    v = esc(k.as_str())
                );
            }
            b.push_str("</div></form>");
        }
        b.push_str("</section>");
    }

    // Steps, in the rule's order.
    b.push_str("<section aria-labelledby=\"steps\"><h2 id=\"steps\">Steps</h2><div class=\"scroll\"><table><thead><tr><th scope=\"col\">Phase</th><th scope=\"col\">Step</th><th scope=\"col\">Status</th><th scope=\"col\">Attempt</th></tr></thead><tbody>");
    let mut shown = std::collections::HashSet::new();
    let rows = j
        .rule
        .all_steps()
        .into_iter()
        .map(|(phase, s)| {
            let parallel = matches!(s.kind, sluice_app::StepKind::Parallel(_));
            (format!("{phase:?}").to_lowercase(), s.id.clone(), parallel)
        })
        .chain(
            j.steps
                .keys()
                .map(|k| ("undo".to_string(), k.clone(), false)),
        );
    for (phase, key, parallel) in rows {
        if !shown.insert(key.clone()) {
            continue;
        }
        let (st, attempt) = match j.steps.get(&key) {
            Some(s) => (s.status.described(), s.attempt.to_string()),
            None if phase == "undo" => continue,
            None if parallel => ("parallel", String::new()),
            None => ("not started", String::new()),
        };
        let _ = write!(
            b,
            "<tr><td>{}</td><td><code>{}</code></td><td><span class=\"status s-{class}\">{st}</span></td><td>{attempt}</td></tr>",
            esc(&phase),
            esc(&key),
            class = st.replace(' ', "-")
        );
    }
    b.push_str("</tbody></table></div></section>");

    // Live logs.
    let _ = write!(
        b,
        "<section aria-labelledby=\"logs\"><h2 id=\"logs\">Logs</h2><pre id=\"log\" data-stream=\"/api/v1/jobs/{}/logs/stream\" aria-live=\"polite\"></pre></section>",
        esc(&j.id)
    );

    // Decisions.
    b.push_str("<section aria-labelledby=\"decisions\"><h2 id=\"decisions\">Decisions</h2><ul id=\"decision-list\">");
    let mut any = false;
    for (e, at) in &view.history {
        if let Event::Decided {
            step,
            kind,
            by,
            comment,
            ..
        } = e
        {
            any = true;
            let _ = write!(
                b,
                "<li><time>{}</time> <strong>{}</strong> decided <strong>{}</strong> at <code>{}</code>{}</li>",
                esc(&sluice_app::format_time(*at)),
                esc(&by.name),
                esc(kind.as_str()),
                esc(step),
                if comment.is_empty() {
                    String::new()
                } else {
                    format!(": {}", esc(comment))
                }
            );
        }
    }
    if !any {
        b.push_str("<li>None yet.</li>");
    }
    b.push_str("</ul></section>");

    // Annotations.
    b.push_str(
        "<section aria-labelledby=\"annotations\"><h2 id=\"annotations\">Annotations</h2><ul>",
    );
    for a in &view.annotations {
        let title = if a.kind == "comment" {
            esc(&a.title)
        } else {
            format!(
                "<a href=\"/api/v1/jobs/{}/annotations/{}\">{}</a> ({} bytes)",
                esc(&j.id),
                a.id,
                esc(&a.title),
                a.size
            )
        };
        let _ = write!(
            b,
            "<li><time>{}</time> <strong>{}</strong> ({}): {}</li>",
            esc(&sluice_app::format_time(a.at)),
            esc(&a.author),
            esc(&a.kind),
            title
        );
    }
    let _ = write!(
        b,
        "</ul><form method=\"post\" action=\"/jobs/{id}/annotate?csrf={csrf}\" enctype=\"multipart/form-data\" class=\"card\"><label for=\"note\">Add a comment</label><textarea id=\"note\" name=\"comment\" rows=\"2\"></textarea><label for=\"file\">or attach a file (at most 64 MiB)</label><input id=\"file\" name=\"file\" type=\"file\"><button type=\"submit\">Annotate</button></form></section>",
        id = esc(&j.id),
        csrf = esc(&session.csrf)
    );
    Ok(page(&j.id, Some(session), &b).into_response())
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

async fn decide(
    State(server): State<Arc<Server>>,
    Extension(session): Extension<Session>,
    Path(job): Path<String>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, Response> {
    let field = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let Some(kind) = field("decision")
        .and_then(|d| serde_json::from_value::<DecisionKind>(Value::String(d)).ok())
    else {
        return Err(refused(
            StatusCode::BAD_REQUEST,
            "the form named no decision",
        ));
    };
    let step = field("step").filter(|s| !s.is_empty());
    let mut inputs = Map::new();
    for (k, v) in &fields {
        if let Some(name) = k.strip_prefix("input.") {
            inputs.insert(name.to_string(), Value::String(v.clone()));
        }
    }
    if kind == DecisionKind::Retry {
        inputs = edited_inputs(&server, &session, &job, step.as_deref(), &fields).await?;
    }
    let decision = Decision {
        kind,
        step,
        comment: field("comment").unwrap_or_default(),
        inputs,
        detach: true,
    };
    match server
        .app
        .decide(&job, decision, session.actor.clone(), server.live.clone())
        .await
    {
        Ok(_) => {
            crate::api::drive_on(&server, &job);
            Ok(Redirect::to(&format!("/jobs/{job}")).into_response())
        }
        Err(e) => {
            let status =
                StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let page = render_job(&server, &session, &job, Some(&e)).await?;
            Ok((status, page).into_response())
        }
    }
}

/// The fields of a retry form that differ from the step's input as it last ran: `edit.KEY`
/// as text, `editjson.KEY` as JSON (refused with the page and why when it is not JSON).
async fn edited_inputs(
    server: &Arc<Server>,
    session: &Session,
    job: &str,
    step: Option<&str>,
    fields: &[(String, String)],
) -> Result<Map<String, Value>, Response> {
    let view = server.app.job(job).await.map_err(app_refused)?;
    let current = step
        .and_then(|s| view.job.steps.get(s))
        .and_then(|s| s.input.as_object().cloned())
        .unwrap_or_default();
    let mut edited = Map::new();
    for (k, v) in fields {
        let (key, value) = if let Some(key) = k.strip_prefix("edit.") {
            (key, Value::String(v.clone()))
        } else if let Some(key) = k.strip_prefix("editjson.") {
            match serde_json::from_str::<Value>(v) {
                Ok(value) => (key, value),
                Err(e) => {
                    let e = AppError::BadDecision(format!(
                        "the edited input `{key}` is not JSON ({e}): write it as JSON, for example `true`, `3` or `[\"a\"]`"
                    ));
                    let page = render_job(server, session, job, Some(&e)).await?;
                    return Err((StatusCode::BAD_REQUEST, page).into_response());
                }
            }
        } else {
            continue;
        };
        if current.get(key) != Some(&value) {
            edited.insert(key.to_string(), value);
        }
    }
    Ok(edited)
}

async fn annotate(
    State(server): State<Arc<Server>>,
    Extension(session): Extension<Session>,
    Path(job): Path<String>,
    multipart: Multipart,
) -> Result<Response, Response> {
    match crate::api::upload(&server, &job, session.actor.clone(), multipart).await {
        Ok(_) => Ok(Redirect::to(&format!("/jobs/{job}")).into_response()),
        Err(p) => Err(p.into_response()),
    }
}

async fn locks_page(
    State(server): State<Arc<Server>>,
    Extension(session): Extension<Session>,
) -> Result<Response, Response> {
    let locks = server.app.locks().await.map_err(app_refused)?;
    let mut b = String::from("<h1>Locks</h1>");
    if locks.is_empty() {
        b.push_str("<p>No lock is held or waited for.</p>");
    } else {
        b.push_str("<div class=\"scroll\"><table><thead><tr><th scope=\"col\">Lock</th><th scope=\"col\">Job</th><th scope=\"col\">Mode</th><th scope=\"col\">Holds or waits</th></tr></thead><tbody>");
        for l in locks {
            let _ = write!(
                b,
                "<tr><td><code>{}</code></td><td><a href=\"/jobs/{job}\">{job}</a></td><td>{}</td><td>{}</td></tr>",
                esc(&l.name),
                if l.exclusive { "exclusive" } else { "shared" },
                if l.held { "holds" } else { "waits" },
                job = esc(&l.job)
            );
        }
        b.push_str("</tbody></table></div>");
    }
    Ok(page("Locks", Some(&session), &b).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_for_html_and_attributes() {
        assert_eq!(
            esc("<script>\"a\" & 'b'</script>"),
            "&lt;script&gt;&quot;a&quot; &amp; &#39;b&#39;&lt;/script&gt;"
        );
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "ab"));
    }

    #[test]
    fn loopback_hosts_are_told_apart() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::HOST, HeaderValue::from_str(v).unwrap());
            m
        };
        assert!(loopback_host(&h("127.0.0.1:8700")));
        assert!(loopback_host(&h("localhost")));
        assert!(!loopback_host(&h("sluice.example.com")));
        assert!(loopback_host(&h("[::1]:8700")));
        assert!(!loopback_host(&h("127.0.0.1.example.com:443")));
    }
}
