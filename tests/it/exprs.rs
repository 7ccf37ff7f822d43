//! Durations in one format, bounded expressions and brace templates, through the `sluice`
//! binary.

use crate::jobs::{err, json, out, sluice, write_rule};

/// The trap op documents `timeout: 30m`; it used to validate and then fail at run time
/// ("expected u64").
#[test]
fn a_trap_timeout_of_30m_opens_the_trap_for_1800_seconds() {
    let home = crate::home();
    let rule = write_rule(
        home.path(),
        "guarded.yaml",
        "rule: guarded\nphases:\n  run:\n    - { id: guard, op: trap, with: { that: false, message: not yet, timeout: 30m } }\n",
    );
    let o = sluice(home.path(), &["run", rule.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3), "{}{}", out(&o), err(&o));
    let v = json(&sluice(home.path(), &["show", "guarded-1", "--json"]));
    let gate = &v["waiting"][0];
    assert_eq!(gate["kind"], "trap", "{v:#}");
    let deadline = gate["deadline"].as_u64().expect("a deadline");
    let opened = v["history"]
        .as_array()
        .expect("the job's history")
        .iter()
        .find(|e| e["event"]["type"] == "gate-opened" && e["event"]["step"] == "guard")
        .unwrap_or_else(|| panic!("no gate opened: {v:#}"));
    assert_eq!(opened["event"]["gate"]["timeout_seconds"], 1800);
    assert_eq!(
        deadline - opened["at"].as_u64().unwrap(),
        1_800_000,
        "{v:#}"
    );
}

#[test]
fn rule_durations_take_the_one_grammar() {
    let home = crate::home();
    let good = write_rule(
        home.path(),
        "good.yaml",
        "rule: timed\ndefaults: { timeout: 1h30m, retry: { attempts: 2, delay: 1.5s, max-delay: 1d } }\nphases:\n  run:\n    - { op: log, with: { message: hi }, timeout: 90, on-error: trap, trap: { timeout: 2h } }\n",
    );
    let o = sluice(home.path(), &["validate", good.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}{}", out(&o), err(&o));

    let bad = write_rule(
        home.path(),
        "bad.yaml",
        "rule: timed\nphases:\n  run:\n    - { op: log, with: { message: hi }, timeout: 5 m }\n",
    );
    let o = sluice(home.path(), &["validate", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}{}", out(&o), err(&o));
    assert!(
        err(&o).contains("error: `timeout` `5 m` is not a duration")
            && err(&o).contains("= hint: write 500ms, 30s, 5m, 2h, 1d or a number of seconds"),
        "{}",
        err(&o)
    );
}

#[test]
fn op_inputs_read_the_same_durations_and_say_so_in_their_schemas() {
    let home = crate::home();
    let o = sluice(
        home.path(),
        &[
            "op",
            "run",
            "trap",
            "--input",
            r#"{"that": false, "timeout": "30x"}"#,
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}{}", out(&o), err(&o));
    assert!(
        out(&o).contains(
            "`30x` is not a duration: write 500ms, 30s, 5m, 2h, 1d or a number of seconds"
        ),
        "{}{}",
        out(&o),
        err(&o)
    );
    for (op, field) in [
        ("trap", "timeout"),
        ("approve", "timeout"),
        ("pause", "timeout"),
    ] {
        let v = json(&sluice(home.path(), &["op", "describe", op, "--json"]));
        let schema = &v["input_schema"]["properties"][field];
        assert_eq!(schema["format"], "sluice-duration", "{op}: {schema}");
    }
}

/// deploy reads `{{` and `}}` in its actions as literal braces (the host doubles the braces of
/// expression output in the fields its schema names).
#[test]
fn deploy_names_its_templates_and_reads_doubled_braces_as_literal() {
    let home = crate::home();
    let v = json(&sluice(
        home.path(),
        &["op", "describe", "deploy", "--json"],
    ));
    assert_eq!(
        v["input_schema"]["x-sluice-templates"],
        serde_json::json!(["/apply", "/current", "/rollback", "/undeploy"])
    );
    let o = sluice(
        home.path(),
        &[
            "op",
            "run",
            "deploy",
            "--input",
            r#"{"revision": "v2",
                "current": {"command": {"program": "echo", "args": ["{{x}}-{revision}"]}},
                "apply": {"command": {"program": "true"}}}"#,
            "--grant",
            "exec:echo",
            "--grant",
            "exec:true",
            "--json",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}{}", out(&o), err(&o));
    // `current` runs with no placeholders: only the escape is read.
    assert_eq!(json(&o)["outcome"]["output"]["previous"], "{x}-{revision}");
}

/// `${{ [1]*100000000 }}` ran for minutes and `indent(1000000000)` took a gigabyte.
#[test]
fn a_hostile_expression_fails_its_step_naming_the_limit() {
    let home = crate::home();
    for (i, (expr, made)) in [
        ("[1]*100000000", "`*` would make about 1.5 GiB"),
        (
            "'x'|indent(1000000000)",
            "`indent` would make about 1.9 GiB",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let rule = write_rule(
            home.path(),
            &format!("hostile-{i}.yaml"),
            &format!(
                "rule: hostile-{i}\nphases:\n  run:\n    - {{ id: big, op: log, with: {{ message: \"${{{{ {expr} }}}}\" }} }}\n"
            ),
        );
        let limit = format!(
            "expression `{expr}` exceeds the limit of 8 MiB of intermediate data per expression ({made})"
        );
        let o = sluice(home.path(), &["simulate", rule.to_str().unwrap()]);
        assert!(
            out(&o).contains(&limit) || err(&o).contains(&limit),
            "simulate: {}{}",
            out(&o),
            err(&o)
        );
        let o = sluice(home.path(), &["run", rule.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(1), "{}{}", out(&o), err(&o));
        let v = json(&sluice(
            home.path(),
            &["show", &format!("hostile-{i}-1"), "--json"],
        ));
        assert_eq!(v["status"], "rolled-back", "{v:#}");
        assert!(v.to_string().contains(&limit), "{v:#}");
    }
}

/// Issue 12, item 18: a param reaches deploy's program verbatim, even when it holds `{revision}`:
/// braces that an expression puts into a template field are escaped by the host, and only the
/// rule's own `{revision}` is substituted.
#[test]
fn a_param_arrives_verbatim_in_deploy_templates() {
    let home = crate::home();
    let dir = home.path().display();
    let rule = write_rule(
        home.path(),
        "verbatim.yaml",
        &format!(
            r#"rule: verbatim
params: {{ note: {{ type: string }} }}
grants: {{ deploy: [exec:tee] }}
phases:
  run:
    - id: ship
      op: deploy
      with:
        revision: "2.0"
        apply:
          command: {{ program: tee, args: ["{dir}/out.txt"], stdin: "note=${{{{ params.note }}}} rev={{revision}}" }}
"#
        ),
    );
    let o = sluice(
        home.path(),
        &["run", rule.to_str().unwrap(), "-p", "note={revision} {{x}}"],
    );
    assert_eq!(o.status.code(), Some(0), "{}{}", out(&o), err(&o));
    assert_eq!(
        std::fs::read_to_string(home.path().join("out.txt")).unwrap(),
        "note={revision} {{x}} rev=2.0"
    );
}
