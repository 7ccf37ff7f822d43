//! sluice's integration tests: one binary (the `it` test of the `sluice` package).
//!
//! `runtime` drives `sluice-runtime` with the test ops from `plugins/test/`; `cli` runs the
//! built `sluice` binary as a user would. `it-postgres` (postgres.rs) runs the tests that go
//! through the journal again with every journal in PostgreSQL.

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
mod optest;
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

/// This binary's journals are SQLite files in each `$SLUICE_HOME`.
const BACKEND: Backend = Backend::Sqlite;

include!("common.rs");
