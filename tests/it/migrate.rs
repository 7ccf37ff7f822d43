//! `sluice migrate --to postgres://...`: a home's SQLite journal moved into PostgreSQL whole
//! (a job waiting at a gate holding a lock, a finished one with logs and an annotation, a
//! token), then carried on there; a second move, a bad URL and a journal still being driven
//! are refused with nothing copied.

use std::path::Path;
use std::process::Output;

use serde_json::Value;

use crate::jobs::{command, err, out, write_rule};

const GATED: &str = "rule: gated\nOPS\nlocks: [env-prod]\nphases:\n  run:\n    - { id: gate, op: approve, with: { timeout: 1h } }\n    - { id: after, op: echo }\n  post: [{ id: tell, op: echo }]\n";

/// `sluice ARGS` on `home`'s SQLite journal (`db` None) or on the database `db`.
fn on(home: &Path, db: Option<&str>, args: &[&str]) -> Output {
    let mut c = command(home, args);
    match db {
        Some(url) => c.env("SLUICE_DATABASE_URL", url),
        None => c.env_remove("SLUICE_DATABASE_URL"),
    };
    c.output().unwrap()
}

fn show(home: &Path, db: Option<&str>, job: &str) -> Value {
    let o = on(home, db, &["show", job, "--json"]);
    assert!(o.status.success(), "{}", err(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn a_sqlite_journal_moves_into_postgresql_whole_and_carries_on_there() {
    let home = crate::home();
    let h = home.path();
    let rule = write_rule(h, "g.yaml", GATED);
    let o = on(h, None, &["run", rule.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3), "waits: {}", err(&o));
    let o = on(h, None, &["run", "examples/cleanup.yaml"]);
    assert!(o.status.success(), "{}", err(&o));
    let o = on(
        h,
        None,
        &["annotate", "env-cleanup-1", "--comment", "moved soon"],
    );
    assert!(o.status.success(), "{}", err(&o));
    let o = on(h, None, &["token", "create", "--user", "bob"]);
    assert!(o.status.success(), "{}", err(&o));
    let token = out(&o).trim().to_string();
    let before: Vec<Value> = ["gated-1", "env-cleanup-1"]
        .iter()
        .map(|j| show(h, None, j))
        .collect();
    let logs_before = out(&on(h, None, &["logs", "env-cleanup-1"]));
    let locks_before = out(&on(h, None, &["locks", "--json"]));

    let url = crate::database_of(&h.join("target-db")).unwrap();
    let o = on(h, None, &["migrate", "--to", &url]);
    assert!(o.status.success(), "{}{}", out(&o), err(&o));
    assert!(out(&o).contains("jobs  2"), "{}", out(&o));

    let db = Some(url.as_str());
    for (job, was) in ["gated-1", "env-cleanup-1"].iter().zip(&before) {
        assert_eq!(&show(h, db, job), was, "{job} reads the same");
    }
    assert_eq!(out(&on(h, db, &["logs", "env-cleanup-1"])), logs_before);
    assert_eq!(out(&on(h, db, &["locks", "--json"])), locks_before);
    let tokens = out(&on(h, db, &["token", "list"]));
    assert!(tokens.contains("bob"), "{tokens}");
    assert!(!token.is_empty());
    // Job numbers go on from where they were.
    let o = on(h, db, &["run", "examples/cleanup.yaml"]);
    assert!(o.status.success(), "{}", err(&o));
    assert!(show(h, db, "env-cleanup-2")["status"] == "succeeded");
    // The waiting job carries on in PostgreSQL, holding its lock until it ends.
    let o = on(h, db, &["approve", "gated-1", "--as", "bob"]);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(show(h, db, "gated-1")["status"], "succeeded");
    assert_eq!(out(&on(h, db, &["locks", "--json"])).trim(), "[]");

    // A second move into a database that holds jobs is refused, and changes nothing.
    let o = on(h, None, &["migrate", "--to", &url]);
    assert_eq!(o.status.code(), Some(5), "{}", err(&o));
    assert!(err(&o).contains("holds 3 jobs already"), "{}", err(&o));
    assert_eq!(show(h, db, "gated-1")["status"], "succeeded");
    // Not a PostgreSQL URL; a database URL already set (the journal to move is the file).
    let o = on(h, None, &["migrate", "--to", "mysql://db/sluice"]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(
        err(&o).contains("postgres://USER:PASSWORD@HOST:PORT/DATABASE"),
        "{}",
        err(&o)
    );
    let o = on(h, db, &["migrate", "--to", &url]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
}

#[test]
fn a_journal_still_driven_is_not_moved() {
    let home = crate::home();
    let h = home.path();
    let o = on(h, None, &["run", "examples/cleanup.yaml"]);
    assert!(o.status.success(), "{}", err(&o));
    // A process drives env-cleanup-1 now (its lease runs for an hour).
    let journal = sluice_store::SqliteJournal::open(&h.join("sluice.db")).unwrap();
    let now = sluice_runner::now();
    use sluice_store::Journal;
    let lease = sluice_store::LeaseRequest {
        holder: "elsewhere:1:1#0".into(),
        now,
        until: now + 3_600_000,
        steal: None,
        renew: None,
    };
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(journal.lease("env-cleanup-1", lease))
        .unwrap();
    let url = crate::database_of(&h.join("target-db")).unwrap();
    let o = on(h, None, &["migrate", "--to", &url]);
    assert_eq!(o.status.code(), Some(5), "{}", err(&o));
    assert!(
        err(&o).contains("env-cleanup-1 is being driven by elsewhere:1:1#0"),
        "{}",
        err(&o)
    );
    let o = on(h, Some(&url), &["jobs", "--json"]);
    assert_eq!(out(&o).trim(), "[]", "nothing copied");
}
