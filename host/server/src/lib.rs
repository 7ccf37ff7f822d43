//! `sluice server`: the HTTP API (`/api/v1`) over the service layer, health and metrics, and
//! the worker, in one process. A thin front end like the command line: every request
//! authenticates a person, turns into one call of [`sluice_app::App`], and the answer (or the
//! [`AppError`](sluice_app::AppError), as RFC 9457 problem JSON) goes back.
//!
//! Jobs started or decided over HTTP are driven by tasks of this process; the worker loop
//! drives what is due (timers, jobs other processes left, jobs whose driver died). On shutdown
//! the server stops taking requests, stops the worker, and gives running steps `grace` to
//! finish; a step still running after that is left to be recovered (`interrupted`) by the next
//! process, so nothing is lost.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use sluice_app::App;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

// utoipa's `#[utoipa::path(params(...))]` expands to fully qualified paths.
#[allow(unused_qualifications)]
mod api;
mod auth;
mod chat;
mod events;
mod live;
mod metrics;
mod problem;
mod tls;
mod ui;

pub use axum::http::HeaderName;
pub use tls::{Tls, TlsError};

/// How a server runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The directory of rule files jobs may be started from (`--rules`).
    pub rules: Option<PathBuf>,
    /// How often the worker looks for due work.
    pub worker_every: Duration,
    /// How long running steps may take to finish on shutdown.
    pub grace: Duration,
    /// Serve HTTPS with this certificate and key (`--tls-cert`, `--tls-key`).
    pub tls: Option<Tls>,
    /// Take the user from this header (`--auth-header X-Forwarded-User`), when the request
    /// comes from one of `trusted_proxies`: for teams behind a single sign-on proxy.
    pub auth_header: Option<HeaderName>,
    /// The addresses of the reverse proxies whose `auth_header` is believed.
    pub trusted_proxies: Vec<IpAddr>,
    /// Slack, when set up (`SLUICE_SLACK_SIGNING_SECRET`): ChatOps under `/chat/slack/`.
    pub slack: Option<sluice_app::SlackApp>,
    /// Matrix, when set up (`--matrix-homeserver`, `SLUICE_MATRIX_USER`): a bot account.
    pub matrix: Option<sluice_app::matrix::MatrixBot>,
}

impl Config {
    /// A configuration listening on `listen`, with the defaults of `sluice server`.
    pub fn new(listen: SocketAddr) -> Self {
        Config {
            listen,
            rules: None,
            worker_every: Duration::from_secs(1),
            grace: Duration::from_secs(30),
            tls: None,
            auth_header: None,
            trusted_proxies: Vec::new(),
            slack: None,
            matrix: None,
        }
    }
}

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}: pick another address with --listen")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The certificate or key could not be used.
    #[error("{0}: fix --tls-cert and --tls-key")]
    Tls(#[from] TlsError),
    /// Serving failed.
    #[error("serving HTTP failed: {0}")]
    Serve(std::io::Error),
    /// The worker stopped with an error.
    #[error("the worker stopped: {0}")]
    Worker(sluice_app::AppError),
}

/// What every request handler shares.
pub(crate) struct Server {
    pub(crate) app: Arc<App>,
    pub(crate) config: Config,
    /// Tells watchers (log streams) that a job changed.
    pub(crate) live: Arc<live::Live>,
    /// Jobs driven by this process (started or decided over HTTP).
    pub(crate) tasks: TaskTracker,
    /// Failed authentications per client address, in the current minute.
    failures: Mutex<HashMap<IpAddr, (Instant, u32)>>,
    pub(crate) metrics: Arc<metrics::Metrics>,
    /// The worker loop runs.
    pub(crate) worker_up: std::sync::atomic::AtomicBool,
    /// Signed-in people of the job monitor.
    pub(crate) sessions: ui::Sessions,
}

/// Failed authentications a client address may make per minute before it is refused with 429.
pub const FAILED_LOGINS_PER_MINUTE: u32 = 10;

/// What a person shows to sign in.
pub(crate) enum Credential<'a> {
    /// An API token.
    Token(&'a str),
    /// A user name and password.
    Password(&'a str, &'a str),
}

impl Server {
    /// The actor `credential` authenticates for a client at `ip`. Refused with 429 while `ip`
    /// has failed [`FAILED_LOGINS_PER_MINUTE`] times this minute; a credential that
    /// authenticates nobody counts as a failure. The status and text to answer with come back
    /// on refusal.
    pub(crate) async fn authenticate(
        &self,
        ip: IpAddr,
        credential: Credential<'_>,
    ) -> Result<sluice_app::Actor, (axum::http::StatusCode, String)> {
        if self.limited(ip) {
            return Err((
                axum::http::StatusCode::TOO_MANY_REQUESTS,
                format!("too many failed authentications from {ip}: wait a minute, then try again"),
            ));
        }
        let answer = match credential {
            Credential::Token(token) => self.app.authenticate(token).await,
            Credential::Password(user, password) => self.app.sign_in(user, password).await,
        };
        answer.map_err(|e| {
            let status = axum::http::StatusCode::from_u16(e.http_status())
                .unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
            if status == axum::http::StatusCode::UNAUTHORIZED {
                self.failed(ip);
                tracing::warn!(%ip, "failed authentication");
            }
            (status, e.to_string())
        })
    }

    /// The person a trusted reverse proxy says sent the request: the configured header, from
    /// one of the configured proxy addresses. The header from anywhere else is ignored (and
    /// logged: someone may be trying to claim a name).
    pub(crate) fn proxy_actor(
        &self,
        peer: IpAddr,
        headers: &axum::http::HeaderMap,
    ) -> Option<sluice_app::Actor> {
        let name = self.config.auth_header.as_ref()?;
        let value = headers.get(name)?;
        if !self.config.trusted_proxies.contains(&peer) {
            tracing::warn!(%peer, header = %name, "an identity header from an address that is not a trusted proxy was ignored");
            return None;
        }
        let user = value.to_str().ok()?.trim();
        if user.is_empty()
            || user.len() > 128
            || user
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == ',')
        {
            tracing::warn!(%peer, header = %name, "the proxy's identity header holds no user name");
            return None;
        }
        Some(sluice_app::Actor {
            name: user.to_string(),
            groups: Vec::new(),
            via: sluice_app::AuthMethod::Proxy,
            os_user: String::new(),
            chat: None,
        })
    }

    /// Whether `ip` failed to authenticate too often in the last minute.
    fn limited(&self, ip: IpAddr) -> bool {
        let failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        failures.get(&ip).is_some_and(|(since, n)| {
            since.elapsed() < Duration::from_secs(60) && *n >= FAILED_LOGINS_PER_MINUTE
        })
    }

    /// Counts a failed authentication from `ip`.
    fn failed(&self, ip: IpAddr) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if failures.len() > 10_000 {
            failures.retain(|_, (since, _)| since.elapsed() < Duration::from_secs(60));
        }
        let entry = failures.entry(ip).or_insert((Instant::now(), 0));
        if entry.0.elapsed() >= Duration::from_secs(60) {
            *entry = (Instant::now(), 0);
        }
        entry.1 += 1;
    }
}

/// Serves `app` until `shutdown` resolves; calls `listening` with the bound address first
/// (port 0 binds a free one).
pub async fn serve(
    app: Arc<App>,
    config: Config,
    listening: impl FnOnce(SocketAddr),
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServerError::Bind {
            addr: config.listen,
            source,
        })?;
    let acceptor = config.tls.as_ref().map(Tls::acceptor).transpose()?;
    let addr = listener.local_addr().map_err(ServerError::Serve)?;
    let metrics = Arc::new(metrics::Metrics::default());
    let server = Arc::new(Server {
        app: app.clone(),
        config: config.clone(),
        live: Arc::new(live::Live::new(metrics.clone())),
        tasks: TaskTracker::new(),
        failures: Mutex::new(HashMap::new()),
        metrics,
        worker_up: std::sync::atomic::AtomicBool::new(false),
        sessions: ui::Sessions::default(),
    });

    let stop = CancellationToken::new();
    let worker = {
        let server = server.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            server
                .worker_up
                .store(true, std::sync::atomic::Ordering::SeqCst);
            let r = server
                .app
                .work(
                    server.live.clone(),
                    server.config.worker_every,
                    false,
                    stop.cancelled_owned(),
                )
                .await;
            server
                .worker_up
                .store(false, std::sync::atomic::Ordering::SeqCst);
            r
        })
    };

    let courier = tokio::spawn(deliver(server.clone(), stop.clone()));
    let follower = tokio::spawn(follow(server.clone(), stop.clone()));
    let scheduler = tokio::spawn(schedules(server.clone(), stop.clone()));
    let chatter = tokio::spawn(chat::post(server.clone(), stop.clone()));
    let matrix_reader = tokio::spawn(chat::matrix_read(server.clone(), stop.clone()));
    let matrix_poster = tokio::spawn(chat::matrix_post(server.clone(), stop.clone()));

    let router = router(server.clone()).into_make_service_with_connect_info::<SocketAddr>();
    listening(addr);
    tracing::info!(%addr, tls = acceptor.is_some(), "listening");
    let stopping = stop.clone();
    let shutdown = async move {
        tokio::select! {
            () = shutdown => {}
            () = stopping.cancelled() => {}
        }
    };
    use axum::serve::ListenerExt as _;
    let served = match acceptor {
        None => {
            axum::serve(listener, router)
                .with_graceful_shutdown(shutdown)
                .await
        }
        Some(acceptor) => {
            let tls = tls::TlsListener::new(listener, acceptor)
                .map_err(ServerError::Serve)?
                .tap_io(|_| {});
            axum::serve(tls, router)
                .with_graceful_shutdown(shutdown)
                .await
        }
    };
    stop.cancel();
    let _ = courier.await;
    let _ = follower.await;
    let _ = scheduler.await;
    let _ = chatter.await;
    let _ = matrix_reader.await;
    let _ = matrix_poster.await;
    // The worker finishes its round; jobs driven for requests get `grace` to reach a gate or
    // their end. Whatever still runs after that is recovered by the next process.
    let worker = worker.await;
    server.tasks.close();
    if tokio::time::timeout(config.grace, server.tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            running = server.tasks.len(),
            "steps still running after the grace period: the next sluice process recovers them"
        );
    }
    served.map_err(ServerError::Serve)?;
    match worker {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(ServerError::Worker(e)),
        Err(e) => Err(ServerError::Worker(sluice_app::AppError::Internal(
            format!("the worker task failed: {e}"),
        ))),
    }
}

/// Delivers the notifications of the outbox until `stop`: every worker interval, and again
/// at once while a round found work.
async fn deliver(server: Arc<Server>, stop: CancellationToken) {
    let client = match reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "no HTTP client: notifications are not delivered");
            return;
        }
    };
    let holder = format!(
        "{}:{}",
        std::process::id(),
        sluice_app::random_hex(4).unwrap_or_default()
    );
    loop {
        let round = tokio::select! {
            r = server.app.deliver_messages(&client, &holder) => r,
            () = stop.cancelled() => return,
        };
        let busy = match round {
            Ok(done) => {
                use std::sync::atomic::Ordering::Relaxed;
                server
                    .metrics
                    .delivered
                    .fetch_add(done.delivered as u64, Relaxed);
                server
                    .metrics
                    .undelivered
                    .fetch_add(done.failed as u64, Relaxed);
                done.delivered + done.failed > 0
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot deliver notifications");
                false
            }
        };
        if !busy {
            tokio::select! {
                () = tokio::time::sleep(server.config.worker_every) => {}
                () = stop.cancelled() => return,
            }
        }
    }
}

/// Starts the jobs that follow ended ones (`on: job-finished` of the rules in `--rules`): a
/// "job finished" message of the outbox is marked handled once every job it starts is in the
/// journal, so a crash in between only means it is handled again, and the trigger's key keeps
/// that from starting a second job.
async fn follow(server: Arc<Server>, stop: CancellationToken) {
    let Some(dir) = server.config.rules.clone() else {
        // Without rules nothing follows here; the messages wait for a server that has them.
        return;
    };
    let holder = format!(
        "{}:{}",
        std::process::id(),
        sluice_app::random_hex(4).unwrap_or_default()
    );
    loop {
        let claimed = tokio::select! {
            r = server.app.claim_finished(&holder) => r,
            () = stop.cancelled() => return,
        };
        let claimed = match claimed {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read ended jobs to follow");
                Vec::new()
            }
        };
        let busy = !claimed.is_empty();
        for m in claimed {
            let outcome = start_followers(&server, &dir, &m.body).await;
            let why = outcome.err().map(|e| e.to_string());
            if let Some(why) = &why {
                tracing::warn!(
                    job = m.body,
                    "the jobs following it were not started: {why}"
                );
            }
            if let Err(e) = server.app.finished_handled(m.id, why.as_deref()).await {
                tracing::warn!(error = %e, "cannot record a followed job");
            }
        }
        if !busy {
            tokio::select! {
                () = tokio::time::sleep(server.config.worker_every) => {}
                () = stop.cancelled() => return,
            }
        }
    }
}

/// How long the scheduler sleeps at most: rules added or edited in `--rules` are seen within
/// this.
const SCHEDULE_LOOK: Duration = Duration::from_secs(30);

/// Starts the runs of the rules' schedules (`on: schedule`) when they are due: sleeps until
/// the next one (or [`SCHEDULE_LOOK`], to see new rules), and starts each due run as one job
/// (its key is stored with the job, so two servers on one journal start it once).
async fn schedules(server: Arc<Server>, stop: CancellationToken) {
    let Some(dir) = server.config.rules.clone() else {
        return;
    };
    let since = sluice_app::now();
    // Runs this process tried: one whose check failed wrote nothing to the journal, and is
    // not tried again every round while it stays the latest due run.
    let mut tried: std::collections::HashSet<String> = std::collections::HashSet::new();
    loop {
        let now = sluice_app::now();
        let round = tokio::select! {
            r = server.app.schedule_starts(&dir, since, now) => r,
            () = stop.cancelled() => return,
        };
        let next = match round {
            Ok(round) => {
                let due: std::collections::HashSet<String> =
                    round.starts.iter().map(|s| s.cause.key.clone()).collect();
                tried.retain(|k| due.contains(k));
                for start in round.starts {
                    let key = start.cause.key.clone();
                    if !tried.insert(key.clone()) {
                        continue;
                    }
                    match start_triggered(&server, start).await {
                        Ok(Some(id)) => tracing::info!(job = id, key, "started by a schedule"),
                        Ok(None) => {}
                        Err(e) => tracing::warn!(key, error = %e, "a scheduled job did not start"),
                    }
                }
                round.next
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the rules' schedules");
                None
            }
        };
        let wait = next
            .map(|t| Duration::from_millis(t.saturating_sub(sluice_app::now())))
            .unwrap_or(SCHEDULE_LOOK)
            .min(SCHEDULE_LOOK);
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = stop.cancelled() => return,
        }
    }
}

/// Starts every job `finished`'s end triggers, each driven on in a task of this process;
/// returns once each is in the journal (or was already).
async fn start_followers(
    server: &Arc<Server>,
    dir: &std::path::Path,
    finished: &str,
) -> Result<(), sluice_app::AppError> {
    for start in server.app.triggered_starts(dir, finished).await? {
        let rule = start.path.display().to_string();
        match start_triggered(server, start).await {
            Ok(Some(id)) => tracing::info!(job = id, after = finished, "started by a trigger"),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(rule, after = finished, error = %e, "a triggered job did not start")
            }
        }
    }
    Ok(())
}

/// Starts a triggered job in a task of this process, which drives it on; answers its id once
/// it is in the journal, or `None` when nothing was written because its trigger's key started
/// a job before or its check failed.
pub(crate) async fn start_triggered(
    server: &Arc<Server>,
    start: sluice_app::TriggeredStart,
) -> Result<Option<String>, sluice_app::AppError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let watch = Arc::new(live::StartWatch {
        created: Mutex::new(Some(tx)),
        live: server.live.clone(),
    });
    let app = server.app.clone();
    let driven = server
        .tasks
        .spawn(async move { app.start_triggered(start, watch).await });
    if let Ok(id) = rx.await {
        return Ok(Some(id));
    }
    match driven.await {
        Ok(Ok(_)) => Ok(None),
        Ok(Err(e)) => Err(e),
        Err(e) => Err(sluice_app::AppError::Internal(format!(
            "starting a triggered job failed: {e}"
        ))),
    }
}

fn router(server: Arc<Server>) -> Router {
    let (api, openapi) = api::routes();
    let api = api.layer(axum::middleware::from_fn_with_state(
        server.clone(),
        auth::authenticate,
    ));
    let openapi = Arc::new(openapi);
    Router::new()
        .route(
            "/api/v1/openapi.json",
            get(move || {
                let openapi = openapi.clone();
                async move { axum::Json(openapi.as_ref().clone()) }
            }),
        )
        .route("/hooks/{name}", axum::routing::post(events::hook))
        .route(
            "/chat/slack/commands",
            axum::routing::post(chat::slack_command),
        )
        .route(
            "/chat/slack/interactive",
            axum::routing::post(chat::slack_pressed),
        )
        .route(
            "/chat/slack/events",
            axum::routing::post(chat::slack_events),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(metrics::ready))
        .route("/metrics", get(metrics::render))
        .nest("/api/v1", api)
        .merge(ui::routes(server.clone()))
        .fallback(|| async {
            problem::Problem::new(
                axum::http::StatusCode::NOT_FOUND,
                "no such endpoint: the API is under /api/v1 (see docs/server.md)",
            )
        })
        .layer(axum::middleware::from_fn_with_state(
            server.clone(),
            metrics::count,
        ))
        .with_state(server)
}
