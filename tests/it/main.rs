//! sluice's integration tests: one binary (the `it` test of the `sluice` package).
//!
//! `runtime` drives `sluice-runtime` with the test ops from `plugins/test/`; `cli` runs the
//! built `sluice` binary as a user would.

mod browser;
mod chaos;
mod chat;
mod cli;
mod client;
mod exprs;
mod gates;
mod jobs;
mod langs;
mod matrix;
mod packages;
mod races;
mod rules;
mod runtime;
mod sandbox;
mod server;
mod server_auth;
mod stdops;
mod tidy;
mod triggers;
mod upgrade;

/// A fresh `$SLUICE_HOME` for one test.
pub fn home() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("sluice-test-")
        .tempdir()
        .expect("temp dir")
}
