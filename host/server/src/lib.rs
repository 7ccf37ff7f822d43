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

mod api;
mod auth;
mod live;
mod metrics;
mod problem;
mod ui;

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
    pub(crate) metrics: metrics::Metrics,
    /// The worker loop runs.
    pub(crate) worker_up: std::sync::atomic::AtomicBool,
    /// Signed-in people of the job monitor.
    pub(crate) sessions: ui::Sessions,
}

/// Failed authentications a client address may make per minute before it is refused with 429.
pub const FAILED_LOGINS_PER_MINUTE: u32 = 10;

impl Server {
    /// The actor `token` authenticates for a client at `ip`. Refused with 429 while `ip` has
    /// failed [`FAILED_LOGINS_PER_MINUTE`] times this minute; a token that authenticates nobody
    /// counts as a failure. The status and text to answer with come back on refusal.
    pub(crate) async fn authenticate(
        &self,
        ip: IpAddr,
        token: &str,
    ) -> Result<sluice_app::Actor, (axum::http::StatusCode, String)> {
        if self.limited(ip) {
            return Err((
                axum::http::StatusCode::TOO_MANY_REQUESTS,
                format!("too many failed authentications from {ip}: wait a minute, then try again"),
            ));
        }
        self.app.authenticate(token).await.map_err(|e| {
            let status = axum::http::StatusCode::from_u16(e.http_status())
                .unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
            if status == axum::http::StatusCode::UNAUTHORIZED {
                self.failed(ip);
                tracing::warn!(%ip, "failed authentication");
            }
            (status, e.to_string())
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
    let addr = listener.local_addr().map_err(ServerError::Serve)?;
    let server = Arc::new(Server {
        app: app.clone(),
        config: config.clone(),
        live: Arc::new(live::Live::new()),
        tasks: TaskTracker::new(),
        failures: Mutex::new(HashMap::new()),
        metrics: metrics::Metrics::default(),
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

    let router = router(server.clone());
    listening(addr);
    tracing::info!(%addr, "listening");
    let stopping = stop.clone();
    let served = axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        tokio::select! {
            () = shutdown => {}
            () = stopping.cancelled() => {}
        }
    })
    .await;
    stop.cancel();
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

fn router(server: Arc<Server>) -> Router {
    let api = api::routes().layer(axum::middleware::from_fn_with_state(
        server.clone(),
        auth::authenticate,
    ));
    Router::new()
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
