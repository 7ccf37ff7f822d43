//! The command line as a client of a real `sluice server` on 127.0.0.1: `SLUICE_SERVER` and
//! `SLUICE_TOKEN`, then `sluice login`; the token is the identity, `--as` is refused, and what
//! has no server form yet refuses instead of reading the local home.

use std::io::Write as _;
use std::path::Path;
use std::process::{Output, Stdio};

use crate::jobs::{command, err, out};
use crate::server::{PERMISSIONS, Server, token};

/// `sluice ARGS` against `server`, with `token` in SLUICE_TOKEN when given.
fn remote(home: &Path, server: &Server, token: Option<&str>, args: &[&str]) -> Output {
    let mut c = command(home, args);
    c.env("SLUICE_SERVER", &server.url);
    if let Some(t) = token {
        c.env("SLUICE_TOKEN", t);
    }
    c.output().unwrap()
}

#[test]
fn the_command_line_runs_decides_and_follows_jobs_through_a_server() {
    let home = crate::home();
    std::fs::write(home.path().join("permissions.yaml"), PERMISSIONS).unwrap();
    let (ann, bob) = (token(home.path(), "ann"), token(home.path(), "bob"));
    let server = Server::start(home.path());
    let root = format!("root={}", home.path().display());

    let o = remote(
        home.path(),
        &server,
        Some(&ann),
        &[
            "run",
            "examples/web-release.yaml",
            "-p",
            "version=8.0",
            "-p",
            "env=production",
            "-p",
            &root,
        ],
    );
    assert_eq!(o.status.code(), Some(3), "{}{}", out(&o), err(&o));
    assert!(
        err(&o).contains(&format!("job web-release-1 started on {}", server.url)),
        "{}",
        err(&o)
    );
    assert!(
        out(&o).contains("job web-release-1 waits at `go-live`"),
        "{}",
        out(&o)
    );
    assert!(
        out(&o).contains("`sluice approve web-release-1 --step go-live`"),
        "{}",
        out(&o)
    );

    let o = remote(home.path(), &server, Some(&ann), &["jobs"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert!(
        out(&o).contains("web-release-1") && out(&o).contains("waiting"),
        "{}",
        out(&o)
    );
    let o = remote(home.path(), &server, Some(&ann), &["show", "web-release-1"]);
    assert!(out(&o).contains("waiting at\n  go-live"), "{}", out(&o));

    // The token is the identity: --as is refused, and ann may not approve her own release.
    let o = remote(
        home.path(),
        &server,
        Some(&ann),
        &["approve", "web-release-1", "--as", "bob"],
    );
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("--as is not accepted"), "{}", err(&o));
    let o = remote(
        home.path(),
        &server,
        Some(&ann),
        &["approve", "web-release-1", "--input", "window=now"],
    );
    assert_eq!(o.status.code(), Some(5), "{}", err(&o));
    assert!(err(&o).contains("ann may not approve"), "{}", err(&o));

    // Without a token for the server: told how to get one; with a wrong one: refused.
    let o = remote(home.path(), &server, None, &["jobs"]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(
        err(&o).contains("set SLUICE_TOKEN, or run `sluice login"),
        "{}",
        err(&o)
    );
    let o = remote(home.path(), &server, Some("sluice_wrong"), &["jobs"]);
    assert_eq!(o.status.code(), Some(5), "{}", err(&o));
    assert!(err(&o).contains("unknown or revoked"), "{}", err(&o));

    // bob signs in once; later commands use the saved login.
    let mut login = command(home.path(), &["login", &server.url])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(login.stdin.take().unwrap(), "{bob}").unwrap();
    let o = login.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert!(err(&o).contains("as bob"), "{}", err(&o));
    let saved = home.path().join("config/sluice/login.json");
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&saved).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let o = command(
        home.path(),
        &[
            "approve",
            "web-release-1",
            "--input",
            "window=now",
            "-m",
            "canary is clean",
        ],
    )
    .output()
    .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}{}", out(&o), err(&o));
    assert!(
        out(&o).contains("job web-release-1 succeeded"),
        "{}",
        out(&o)
    );
    let o = command(home.path(), &["show", "web-release-1"])
        .output()
        .unwrap();
    assert!(
        out(&o).contains("bob decided approve at `go-live`: canary is clean"),
        "{}",
        out(&o)
    );
    let o = command(home.path(), &["logs", "web-release-1", "--follow"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert!(
        out(&o).contains("promote#1 [op info] deployed releases/8.0"),
        "{}",
        out(&o)
    );
    let o = command(
        home.path(),
        &["annotate", "web-release-1", "--comment", "shipped"],
    )
    .output()
    .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let o = command(home.path(), &["show", "web-release-1", "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&out(&o)).unwrap();
    assert_eq!(v["annotations"][0]["author"], "bob");
    let o = command(home.path(), &["locks"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(
        err(&o).contains("does not work through a server yet"),
        "{}",
        err(&o)
    );

    // Logged out, the command line reads the local home again (here, the server's own).
    let o = command(home.path(), &["logout"]).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert!(!saved.exists());
    let o = command(home.path(), &["locks"]).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
}
