//! `/metrics` in Prometheus' text format, and `/readyz`.
//!
//! Jobs by status come from the journal at scrape time (so they count jobs of every process on
//! the store); requests and their latency are this process's own.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::Server;

/// Upper bounds of the request latency buckets, in seconds.
const BUCKETS: [f64; 10] = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

/// This process's request counters.
#[derive(Default)]
pub(crate) struct Metrics {
    /// Requests answered, by status class (1xx..5xx).
    by_class: [AtomicU64; 5],
    /// Requests per latency bucket (the last one is +Inf).
    buckets: [AtomicU64; BUCKETS.len() + 1],
    /// Sum of latencies, in microseconds.
    micros: AtomicU64,
}

/// Counts every request and its latency.
pub(crate) async fn count(State(server): State<Arc<Server>>, req: Request, next: Next) -> Response {
    let t = Instant::now();
    let response = next.run(req).await;
    let took = t.elapsed();
    let m = &server.metrics;
    let class = (response.status().as_u16() / 100).clamp(1, 5) as usize - 1;
    m.by_class[class].fetch_add(1, Ordering::Relaxed);
    let secs = took.as_secs_f64();
    let bucket = BUCKETS
        .iter()
        .position(|b| secs <= *b)
        .unwrap_or(BUCKETS.len());
    m.buckets[bucket].fetch_add(1, Ordering::Relaxed);
    m.micros
        .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
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
    let m = &server.metrics;
    out.push_str("# HELP sluice_http_requests_total Requests answered, by status class.\n# TYPE sluice_http_requests_total counter\n");
    for (i, c) in m.by_class.iter().enumerate() {
        let _ = writeln!(
            out,
            "sluice_http_requests_total{{class=\"{}xx\"}} {}",
            i + 1,
            c.load(Ordering::Relaxed)
        );
    }
    out.push_str("# HELP sluice_http_request_duration_seconds Time to answer a request.\n# TYPE sluice_http_request_duration_seconds histogram\n");
    let mut cumulative = 0;
    for (i, b) in m.buckets.iter().enumerate() {
        cumulative += b.load(Ordering::Relaxed);
        let le = BUCKETS
            .get(i)
            .map(|b| b.to_string())
            .unwrap_or_else(|| "+Inf".into());
        let _ = writeln!(
            out,
            "sluice_http_request_duration_seconds_bucket{{le=\"{le}\"}} {cumulative}"
        );
    }
    let _ = writeln!(
        out,
        "sluice_http_request_duration_seconds_sum {}\nsluice_http_request_duration_seconds_count {cumulative}",
        m.micros.load(Ordering::Relaxed) as f64 / 1e6
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
