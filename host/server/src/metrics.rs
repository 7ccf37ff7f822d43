//! `/metrics` in Prometheus' text format, and `/readyz`.
//!
//! Jobs by status come from the journal at scrape time (so they count jobs of every process on
//! the store); requests and their latency are this process's own.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::Server;

/// Upper bounds of the request and op-call latency buckets, in seconds.
const FAST: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0,
];
/// Upper bounds of the gate wait buckets, in seconds (a minute to a week).
const SLOW: &[f64] = &[
    1.0,
    10.0,
    60.0,
    300.0,
    900.0,
    3600.0,
    4.0 * 3600.0,
    86400.0,
    7.0 * 86400.0,
];

/// A Prometheus histogram.
pub(crate) struct Histogram {
    bounds: &'static [f64],
    /// Observations per bucket (the last one is +Inf).
    counts: Vec<AtomicU64>,
    /// Sum of observations, in microseconds.
    micros: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            micros: AtomicU64::new(0),
        }
    }

    /// Counts one observation.
    pub(crate) fn observe(&self, took: Duration) {
        let secs = took.as_secs_f64();
        let bucket = self
            .bounds
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(self.bounds.len());
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        self.micros
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (i, b) in self.counts.iter().enumerate() {
            cumulative += b.load(Ordering::Relaxed);
            let le = self
                .bounds
                .get(i)
                .map(|b| b.to_string())
                .unwrap_or_else(|| "+Inf".into());
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
        }
        let _ = writeln!(
            out,
            "{name}_sum {}\n{name}_count {cumulative}",
            self.micros.load(Ordering::Relaxed) as f64 / 1e6
        );
    }
}

/// This process's counters.
pub(crate) struct Metrics {
    /// Requests answered, by status class (1xx..5xx).
    by_class: [AtomicU64; 5],
    /// Time to answer a request.
    http: Histogram,
    /// Time from a step attempt's start to the op's answer, for steps this process ran.
    pub(crate) op_calls: Histogram,
    /// Time from a gate opening to its decision, for decisions this process recorded.
    pub(crate) gate_waits: Histogram,
    /// Notifications delivered and failed.
    pub(crate) delivered: AtomicU64,
    pub(crate) undelivered: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            by_class: Default::default(),
            http: Histogram::new(FAST),
            op_calls: Histogram::new(FAST),
            gate_waits: Histogram::new(SLOW),
            delivered: AtomicU64::new(0),
            undelivered: AtomicU64::new(0),
        }
    }
}

/// Counts every request and its latency.
pub(crate) async fn count(State(server): State<Arc<Server>>, req: Request, next: Next) -> Response {
    let t = Instant::now();
    let response = next.run(req).await;
    let m = &server.metrics;
    let class = (response.status().as_u16() / 100).clamp(1, 5) as usize - 1;
    m.by_class[class].fetch_add(1, Ordering::Relaxed);
    m.http.observe(t.elapsed());
    response
}

/// `/metrics`.
pub(crate) async fn render(State(server): State<Arc<Server>>) -> Response {
    let mut out = String::new();
    out.push_str("# HELP sluice_jobs Jobs in the journal by status.\n# TYPE sluice_jobs gauge\n");
    match server.app.job_counts().await {
        Ok(counts) => {
            for (status, n) in counts {
                let _ = writeln!(out, "sluice_jobs{{status=\"{status}\"}} {n}");
            }
        }
        Err(e) => tracing::warn!(error = %e, "metrics: cannot count jobs"),
    }
    match server.app.outbox_backlog().await {
        Ok(n) => {
            let _ = writeln!(
                out,
                "# HELP sluice_notifications_pending Notifications waiting for delivery.\n# TYPE sluice_notifications_pending gauge\nsluice_notifications_pending {n}"
            );
        }
        Err(e) => tracing::warn!(error = %e, "metrics: cannot count notifications"),
    }
    let m = &server.metrics;
    let _ = writeln!(
        out,
        "# HELP sluice_notifications_total Notification deliveries by this process, by outcome.\n# TYPE sluice_notifications_total counter\nsluice_notifications_total{{outcome=\"delivered\"}} {}\nsluice_notifications_total{{outcome=\"failed\"}} {}",
        m.delivered.load(Ordering::Relaxed),
        m.undelivered.load(Ordering::Relaxed)
    );
    out.push_str("# HELP sluice_http_requests_total Requests answered, by status class.\n# TYPE sluice_http_requests_total counter\n");
    for (i, c) in m.by_class.iter().enumerate() {
        let _ = writeln!(
            out,
            "sluice_http_requests_total{{class=\"{}xx\"}} {}",
            i + 1,
            c.load(Ordering::Relaxed)
        );
    }
    m.http.render(
        &mut out,
        "sluice_http_request_duration_seconds",
        "Time to answer a request.",
    );
    m.op_calls.render(
        &mut out,
        "sluice_op_call_duration_seconds",
        "Time from a step attempt's start to its op's answer, for steps this process ran.",
    );
    m.gate_waits.render(
        &mut out,
        "sluice_gate_wait_seconds",
        "Time from a gate opening to the decision that closed it, for decisions this process recorded.",
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

/// `/readyz`: the journal answers and the worker runs.
pub(crate) async fn ready(State(server): State<Arc<Server>>) -> Response {
    if !server.worker_up.load(Ordering::SeqCst) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "the worker is not running\n",
        )
            .into_response();
    }
    match server.app.job_counts().await {
        Ok(_) => (StatusCode::OK, "ready\n").into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the journal does not answer: {e}\n"),
        )
            .into_response(),
    }
}
