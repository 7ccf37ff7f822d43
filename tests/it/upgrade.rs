//! A journal written by an earlier sluice is read, and its waiting jobs carried on, by this one
//! (issue 13: versioned history). `tests/fixtures/journal-v1/sluice.sql` is a dump of a journal
//! written before events had format versions (schema 0, event format 1): one job waiting at a
//! quorum-2 approval with one approval given, one job that ended.

use crate::jobs::{err, json, out, sluice};

fn restore(home: &std::path::Path) {
    let sql = include_str!("../fixtures/journal-v1/sluice.sql");
    let db = rusqlite::Connection::open(home.join("sluice.db")).unwrap();
    // The dump lists tables by name, `events` (which references `jobs`) first.
    db.execute_batch("PRAGMA foreign_keys = OFF;").unwrap();
    db.execute_batch(sql).unwrap();
}

#[test]
fn a_journal_of_the_previous_format_is_read_and_its_waiting_job_carried_on() {
    let home = crate::home();
    restore(home.path());

    let jobs = json(&sluice(home.path(), &["jobs", "--json"]));
    let ids: Vec<&str> = jobs
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["release-2", "release-1"]);

    let v = json(&sluice(home.path(), &["show", "release-1", "--json"]));
    assert_eq!(v["status"], "waiting", "{v}");
    assert_eq!(v["waiting"][0]["approved_by"][0], "bob");
    let decided = v["history"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["event"]["type"] == "decided")
        .unwrap();
    assert_eq!(
        decided["event"]["by"]["name"], "bob",
        "a format-1 decision reads as an actor"
    );
    let text = out(&sluice(home.path(), &["show", "release-2"]));
    assert!(text.contains("status   succeeded"), "{text}");

    // The second approval, by this sluice, completes the quorum and the job goes on.
    let o = sluice(home.path(), &["approve", "release-1", "--as", "carol"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", out(&o), err(&o));
    let v = json(&sluice(home.path(), &["show", "release-1", "--json"]));
    assert_eq!(v["status"], "succeeded", "{v}");
    let logs = out(&sluice(
        home.path(),
        &["logs", "release-1", "--step", "done"],
    ));
    assert!(logs.contains("shipped by bob, carol"), "{logs}");
    // Old and new events side by side: each read in its own format.
    let mut versions = rusqlite::Connection::open(home.path().join("sluice.db"))
        .unwrap()
        .prepare("SELECT DISTINCT version FROM events WHERE job_id = 'release-1' ORDER BY version")
        .unwrap()
        .query_map([], |r| r.get::<_, u32>(0))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    versions.dedup();
    assert_eq!(versions, [1, 2]);
}
