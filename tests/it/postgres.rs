//! The integration tests that go through the journal, run again with every `$SLUICE_HOME`'s
//! journal in a database of its own in one PostgreSQL cluster this binary starts on 127.0.0.1
//! (`sluice_pgtest`). Tests of what only SQLite has (a read-only or full `$SLUICE_HOME`, an
//! older journal file) say so and return here.

// Helpers of the modules below that only their SQLite-only tests use.
#![allow(dead_code)]

mod chaos;
mod chat;
mod client;
mod gates;
mod hosts;
mod jobs;
mod migrate;
mod races;
mod sandbox;
mod server;
mod server_auth;
mod triggers;

/// This binary's journals are in PostgreSQL.
const BACKEND: Backend = Backend::Postgres;

include!("common.rs");
