//! The standard ops doing real work: deploy (and its rollback), test, evaluate, cleanup.
//! (`notify` and HTTP checks are in `sandbox.rs`, beside the egress rules they depend on.)

use std::path::Path;

use serde_json::{Value, json};

use crate::jobs::{err, json, out, sluice, write_rule};
use crate::sandbox::serve;

const RELEASE: &str = r#"
rule: release
params:
  version: { type: string }
  root: { type: string }
grants:
  deploy: [exec:ln, exec:readlink]
  test: [exec:cat]
phases:
  run:
    - id: deploy
      op: deploy
      with:
        revision: "${{ params.root }}/releases/${{ params.version }}"
        current: { command: { program: readlink, args: ["${{ params.root }}/current"] } }
        apply: { command: { program: ln, args: [-sfn, "{revision}", "${{ params.root }}/current"] } }
    - id: smoke
      op: test
      with:
        checks:
          - name: version served
            command: { program: cat, args: ["${{ params.root }}/current/version"] }
            contains: "${{ params.version }}"
"#;

fn release(home: &Path, rule: &Path, root: &Path, version: &str) -> (Option<i32>, Value) {
    let o = sluice(
        home,
        &[
            "run",
            rule.to_str().unwrap(),
            "-p",
            &format!("version={version}"),
            "-p",
            &format!("root={}", root.display()),
        ],
    );
    let jobs = json(&sluice(home, &["jobs", "--json"]));
    let id = jobs[0]["id"].as_str().unwrap().to_string();
    let _ = (out(&o), err(&o));
    (
        o.status.code(),
        json(&sluice(home, &["show", &id, "--json"])),
    )
}

#[test]
fn deploy_switches_a_link_records_the_previous_revision_and_rolls_back_to_it() {
    let home = crate::home();
    let root = home.path().join("site");
    for (v, content) in [("1.0", "1.0"), ("1.1", "1.1"), ("1.2", "broken build")] {
        let dir = root.join("releases").join(v);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("version"), content).unwrap();
    }
    let rule = write_rule(home.path(), "release.yaml", RELEASE);
    let link = || std::fs::read_link(root.join("current")).unwrap();

    let (code, v) = release(home.path(), &rule, &root, "1.0");
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(link(), root.join("releases/1.0"));
    assert_eq!(
        v["steps"]["deploy"]["result"]["output"]["previous"],
        Value::Null
    );

    let (code, v) = release(home.path(), &rule, &root, "1.1");
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(link(), root.join("releases/1.1"));
    let output = &v["steps"]["deploy"]["result"]["output"];
    assert_eq!(
        output["previous"],
        root.join("releases/1.0").to_str().unwrap()
    );
    assert_eq!(output["changed"], true);

    // 1.2 serves the wrong content: the smoke test fails and the deploy is undone.
    let (code, v) = release(home.path(), &rule, &root, "1.2");
    assert_eq!(code, Some(1), "{v}");
    assert_eq!(v["status"], "rolled-back", "{v}");
    assert_eq!(
        link(),
        root.join("releases/1.1"),
        "the previous release is live again"
    );
    assert!(
        v["steps"]["smoke"]["result"]["message"]
            .as_str()
            .unwrap()
            .starts_with("1 of 1 checks failed: version served: output does not contain `1.2`"),
        "{v}"
    );
}

fn op_run(home: &Path, op: &str, input: Value, grants: &[&str]) -> Value {
    let input = input.to_string();
    let mut args = vec!["op", "run", op, "--json", "-i", &input];
    for g in grants {
        args.extend(["--grant", g]);
    }
    json(&sluice(home, &args))["outcome"].clone()
}

#[test]
fn evaluate_scores_objectives_keptn_style() {
    let home = crate::home();
    let prometheus = serve(|_| {
        (
            200,
            br#"{"status":"success","data":{"result":[{"value":[1700000000,"0.004"]}]}}"#.to_vec(),
        )
    });
    let query = json!({
        "http": { "url": format!("http://127.0.0.1:{}/api/v1/query?query=errors", prometheus.port) },
        "pointer": "/data/result/0/value/1"
    });
    let grant = format!("http:http://127.0.0.1:{}", prometheus.port);

    // Both pass: 100%.
    let o = op_run(
        home.path(),
        "evaluate",
        json!({ "objectives": [
            { "name": "error-rate", "query": query, "pass": "<= 0.01", "key": true },
            { "name": "p95-ms", "value": "240", "pass": ["> 0", "< 300"], "warning": "< 600" },
        ]}),
        &[&grant],
    );
    assert_eq!(o["status"], "success", "{o}");
    assert_eq!(o["output"]["score"], 100.0);
    assert_eq!(o["output"]["objectives"][0]["value"], 0.004);

    // Latency only earns a warning: 1 + 2/2 of 3 points = 66.67%, between 50 and 90.
    let o = op_run(
        home.path(),
        "evaluate",
        json!({ "objectives": [
            { "name": "error-rate", "value": 0.004, "pass": "<= 0.01" },
            { "name": "p95-ms", "value": 450, "pass": "< 300", "warning": "< 600", "weight": 2 },
        ], "total": { "pass": 90, "warning": 50 }}),
        &[],
    );
    assert_eq!(o["status"], "warning", "{o}");
    assert_eq!(o["output"]["score"], 66.67);
    assert_eq!(o["output"]["objectives"][1]["result"], "warning");

    // A failing key objective fails the gate whatever the score.
    let o = op_run(
        home.path(),
        "evaluate",
        json!({ "objectives": [
            { "name": "error-rate", "value": 0.2, "pass": "<= 0.01", "key": true },
            { "name": "a", "value": 1, "pass": "= 1", "weight": 10 },
        ], "total": { "pass": 50, "warning": 10 }}),
        &[],
    );
    assert_eq!(o["status"], "failure", "{o}");
    assert_eq!(
        o["message"],
        "quality gate failed: key objective error-rate failed (score 90.91%)"
    );
    assert_eq!(o["details"]["objectives"][0]["result"], "fail");

    // Nonsense criteria are refused with the forms that work.
    let o = op_run(
        home.path(),
        "evaluate",
        json!({ "objectives": [{ "name": "x", "value": 1, "pass": "about 1" }] }),
        &[],
    );
    assert_eq!(
        o["message"],
        "objective `x`: `about 1` is not a criterion: write <= 0.01, < 600, >= 99, = 0 or != 0"
    );
}

#[test]
fn cleanup_runs_every_action_and_reports_each() {
    let home = crate::home();
    let ws = home.path().join("workspaces/op-run");
    std::fs::create_dir_all(ws.join("scratch/deep")).unwrap();
    std::fs::write(ws.join("scratch/deep/f"), "x").unwrap();
    let input = json!({ "actions": [
        { "name": "stop canary", "command": { "program": "false" } },
        { "remove": "scratch" },
        { "remove": "never-there" },
        { "command": { "program": "true" } },
    ]});
    let grants = ["exec:false", "exec:true", "workspace:read-write"];
    let o = op_run(home.path(), "cleanup", input.clone(), &grants);
    assert_eq!(o["status"], "warning", "{o}");
    let results: Vec<(String, String)> = o["output"]["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["name"].as_str().unwrap().into(),
                a["message"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        results,
        [
            ("stop canary".into(), "`false` exited with code 1".into()),
            ("remove scratch".into(), "removed".into()),
            ("remove never-there".into(), "already gone".into()),
            ("true".into(), "ran".into()),
        ]
    );
    assert!(!ws.join("scratch").exists());

    let mut strict = input;
    strict["strict"] = json!(true);
    let o = op_run(home.path(), "cleanup", strict, &grants);
    assert_eq!(o["status"], "failure", "{o}");
    assert_eq!(o["message"], "1 of 4 clean-up actions failed");

    // Without the workspace grant, removing says which grant is missing.
    let o = op_run(
        home.path(),
        "cleanup",
        json!({ "actions": [{ "remove": "scratch" }] }),
        &[],
    );
    assert_eq!(
        o["output"]["actions"][0]["message"],
        "the workspace is not granted: grant `workspace:read-write` to op `cleanup`"
    );
}
