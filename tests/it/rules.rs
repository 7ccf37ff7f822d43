//! Rule files that used to crash `sluice` or mislead it, through the binary: deep nesting,
//! an unclosed `{`, bytes that are not UTF-8, a `with:` too deep to read back, numbers that
//! are not finite.

use crate::jobs::{err, json, sluice};

fn rule_file(dir: &std::path::Path, name: &str, bytes: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path.to_str().unwrap().to_string()
}

const HEAD: &str = "rule: r\nphases:\n  run:\n    - op: log\n      with:\n";

#[test]
fn validate_refuses_deep_nesting_without_crashing() {
    let home = crate::home();
    // Both aborted `validate` with a stack overflow.
    let mut block = HEAD.to_string();
    for i in 0..3_000 {
        block.push_str(&" ".repeat(8 + i));
        block.push_str("a:\n");
    }
    let dashes = format!("{HEAD}        x:\n          {}1\n", "- ".repeat(12_000));
    for (name, text, at) in [
        ("block.yaml", block, ":66:69"),
        ("dashes.yaml", dashes, ":7:129"),
    ] {
        let file = rule_file(home.path(), name, text.as_bytes());
        let o = sluice(home.path(), &["validate", &file]);
        assert_eq!(o.status.code(), Some(1), "{name}: {}", err(&o));
        let e = err(&o);
        assert!(
            e.contains("error: this is nested more than 64 levels deep"),
            "{name}: {e}"
        );
        assert!(e.contains(&format!("--> {file}{at}")), "{name}: {e}");
        assert!(
            e.contains("= hint: sluice reads at most 64 levels"),
            "{name}: {e}"
        );
    }
}

#[test]
fn validate_points_at_the_brace_that_is_never_closed() {
    let home = crate::home();
    let file = rule_file(
        home.path(),
        "r.yaml",
        b"rule: r\nphases:\n  run:\n    - op: log\n      with: {message: hi\n    - op: log\n",
    );
    let o = sluice(home.path(), &["validate", &file]);
    assert_eq!(o.status.code(), Some(1));
    let e = err(&o);
    assert!(e.starts_with("error: this `{` is never closed\n"), "{e}");
    assert!(e.contains(&format!("--> {file}:5:13\n")), "{e}");
}

#[test]
fn rule_files_that_are_not_utf8_are_placed() {
    let home = crate::home();
    let file = rule_file(
        home.path(),
        "latin1.yaml",
        b"rule: r\ndescription: caf\xe9\nphases:\n  run: [{ op: log }]\n",
    );
    let o = sluice(home.path(), &["validate", &file]);
    assert_eq!(o.status.code(), Some(1));
    let e = err(&o);
    assert!(
        e.contains("error: the file is not UTF-8 text: byte offset 24 (0xe9) is not part of a UTF-8 character"),
        "{e}"
    );
    assert!(e.contains(&format!("--> {file}:2:17")), "{e}");
    let v = json(&sluice(home.path(), &["validate", &file, "--json"]));
    assert_eq!(v["valid"], false);
    assert_eq!(v["errors"][0]["line"], 2);
    assert_eq!(v["errors"][0]["column"], 17);
    // Commands that read a rule to run it say the same.
    let o = sluice(home.path(), &["simulate", &file]);
    assert_eq!(o.status.code(), Some(2));
    assert!(err(&o).contains("byte offset 24 (0xe9)"), "{}", err(&o));
}

#[test]
fn a_with_too_deep_to_read_back_is_refused_at_validate() {
    let home = crate::home();
    let text = format!("{HEAD}        x: {}1{}\n", "[".repeat(40), "]".repeat(40));
    let file = rule_file(home.path(), "deep-with.yaml", text.as_bytes());
    let o = sluice(home.path(), &["validate", &file]);
    assert_eq!(o.status.code(), Some(1));
    let e = err(&o);
    assert!(
        e.contains("error: `with` is nested more than 32 levels deep here"),
        "{e}"
    );
    assert!(e.contains(&format!("--> {file}:6:43")), "{e}");
}

#[test]
fn number_params_must_be_finite() {
    let home = crate::home();
    let file = rule_file(
        home.path(),
        "n.yaml",
        b"rule: r\nparams: { n: number }\nphases:\n  run: [{ op: log, with: { message: \"${{ params.n }}\" } }]\n",
    );
    for bad in ["NaN", "inf", "-inf", "1e999"] {
        let o = sluice(home.path(), &["simulate", &file, "-p", &format!("n={bad}")]);
        assert_eq!(o.status.code(), Some(2), "{bad}");
        assert!(
            err(&o).contains(&format!("param `n`: `{bad}` is not a finite number")),
            "{bad}: {}",
            err(&o)
        );
    }
    let o = sluice(home.path(), &["simulate", &file, "-p", "n=2.5"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
}
