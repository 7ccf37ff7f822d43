//! Rules that start by themselves (`on: job-finished`): a real `sluice server` with a rules
//! directory follows ended jobs through the journal's outbox.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::jobs::{err, sluice};
use crate::server::{Server, token};

const QA: &str = "rule: qa-delivery\nparams:\n  version: { type: string, required: true }\n  service: { type: string, default: web }\n  ok: { type: string, default: \"yes\" }\nphases:\n  run:\n    - { id: tests, op: assert, with: { that: \"${{ params.ok == 'yes' }}\" } }\n";
const PRODUCTION: &str = "rule: production-delivery\non:\n  - job-finished:\n      rule: qa-delivery\n      status: [succeeded]\n      params-match: { service: web }\n      params:\n        version: \"${{ trigger.job.params.version }}\"\n        from: \"${{ trigger.job.id }}\"\nparams:\n  version: { type: string, required: true }\n  from: { type: string }\nphases:\n  run:\n    - { id: deploy, op: log, with: { message: \"deploying ${{ params.version }}\" } }\n";

fn start(server: &Server, token: &str, rule: &str, params: Value) -> String {
    let (s, v) = server.post(
        "/api/v1/jobs",
        token,
        json!({ "rule": rule, "params": params }),
    );
    assert_eq!(s, StatusCode::CREATED, "{v}");
    v["id"].as_str().unwrap().to_string()
}

/// Waits until `job` ended and the server handled its "job finished" message (whatever it
/// started is in the journal by then).
fn followed(server: &Server, token: &str, job: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v = server
            .get(&format!("/api/v1/jobs/{job}/notifications"), token)
            .1;
        let handled = v["notifications"].as_array().is_some_and(|n| {
            n.iter().any(|m| {
                m["sink"] == "sluice:job-finished"
                    && (m["delivered_at"].is_u64() || m["gave_up"] == true)
            })
        });
        if handled {
            return server.get(&format!("/api/v1/jobs/{job}"), token).1;
        }
        assert!(Instant::now() < deadline, "{job} was not followed: {v}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn jobs_of(server: &Server, token: &str, rule: &str) -> Vec<Value> {
    let (_, v) = server.get(&format!("/api/v1/jobs?rule={rule}"), token);
    v["jobs"].as_array().unwrap().clone()
}

#[test]
fn a_finished_qa_job_starts_production_once_with_mapped_params() {
    let home = crate::home();
    let rules = home.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    std::fs::write(rules.join("qa.yaml"), QA).unwrap();
    std::fs::write(rules.join("production.yaml"), PRODUCTION).unwrap();
    let ann = token(home.path(), "ann");
    let server = Server::with_args(home.path(), &rules, &[], crate::server::client());

    let qa = start(&server, &ann, "qa-delivery", json!({ "version": "2.0" }));
    let v = followed(&server, &ann, &qa);
    assert_eq!(v["status"], "succeeded");
    assert_eq!(v["started_jobs"], json!(["production-delivery-1"]));
    let prod = server.until("production-delivery-1", &ann, |v| {
        v["status"] == "succeeded"
    });
    assert_eq!(prod["params"]["version"], "2.0", "{prod}");
    assert_eq!(prod["params"]["from"], qa.as_str());
    assert_eq!(prod["triggered_by"]["from"], qa.as_str());
    assert_eq!(prod["triggered_by"]["kind"], "job-finished");
    assert_eq!(prod["started_by"], format!("trigger:{qa}"));

    // A failed qa job, and one of another service, start nothing.
    let failed = start(
        &server,
        &ann,
        "qa-delivery",
        json!({ "version": "2.1", "ok": "no" }),
    );
    assert_eq!(followed(&server, &ann, &failed)["status"], "rolled-back");
    let other = start(
        &server,
        &ann,
        "qa-delivery",
        json!({ "version": "2.2", "service": "api" }),
    );
    assert_eq!(followed(&server, &ann, &other)["status"], "succeeded");
    assert_eq!(jobs_of(&server, &ann, "production-delivery").len(), 1);
    drop(server);

    // A job that ended while no server ran is followed when one starts; two servers on the
    // same journal still start it once.
    let o = sluice(
        home.path(),
        &[
            "run",
            rules.join("qa.yaml").to_str().unwrap(),
            "-p",
            "version=3.0",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let a = Server::with_args(home.path(), &rules, &[], crate::server::client());
    let b = Server::with_args(home.path(), &rules, &[], crate::server::client());
    followed(&a, &ann, "qa-delivery-4");
    let prods = jobs_of(&b, &ann, "production-delivery");
    assert_eq!(prods.len(), 2, "{prods:?}");
    let show = crate::jobs::out(&sluice(home.path(), &["show", "production-delivery-2"]));
    assert!(
        show.contains("follows  qa-delivery-4 (job-finished, chain depth 1)"),
        "{show}"
    );
    let show = crate::jobs::out(&sluice(home.path(), &["show", "qa-delivery-4"]));
    assert!(show.contains("led to   production-delivery-2"), "{show}");
}

#[test]
fn rules_that_follow_each_other_stop_after_the_chain_limit() {
    let home = crate::home();
    let rules = home.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    for (name, follows) in [("ping", "pong"), ("pong", "ping")] {
        std::fs::write(
            rules.join(format!("{name}.yaml")),
            format!("rule: {name}\non: [{{ job-finished: {{ rule: {follows} }} }}]\nphases:\n  run: [{{ id: say, op: log, with: {{ message: {name} }} }}]\n"),
        )
        .unwrap();
    }
    let ann = token(home.path(), "ann");
    let server = Server::with_args(home.path(), &rules, &[], crate::server::client());
    start(&server, &ann, "ping", json!({}));
    // ping-1 (started by a person), then 10 triggered jobs: pong-1, ping-2, ... pong-5, ping-6.
    let last = followed(&server, &ann, "ping-6");
    assert_eq!(last["triggered_by"]["depth"], 10);
    assert_eq!(last["started_jobs"], json!([]), "the chain stops at {}", 10);
    assert_eq!(
        jobs_of(&server, &ann, "ping").len() + jobs_of(&server, &ann, "pong").len(),
        11
    );

    // A rule that follows itself is refused before anything runs.
    let own = crate::jobs::write_rule(
        home.path(),
        "own.yaml",
        "rule: own\non: [{ job-finished: { rule: own } }]\nphases:\n  run: [{ id: a, op: log, with: { message: x } }]\n",
    );
    let o = sluice(home.path(), &["validate", own.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert!(err(&o).contains("`own` would start itself"), "{}", err(&o));
    assert!(err(&o).contains("own.yaml:2:30"), "{}", err(&o));
}

const ON_ARTIFACT: &str = "rule: deploy-artifact\non:\n  - cloudevent:\n      type: com.example.artifact.published\n      source: /ci\n      filter: \"${{ trigger.event.data.branch == 'main' }}\"\n      params:\n        version: \"${{ trigger.event.data.version }}\"\nparams:\n  version: { type: string, required: true }\nphases:\n  run:\n    - { id: deploy, op: log, with: { message: \"deploying ${{ params.version }}\" } }\n";

#[test]
fn a_cloud_event_starts_the_rules_that_follow_its_type_once_per_event() {
    let home = crate::home();
    let rules = home.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    std::fs::write(rules.join("deploy.yaml"), ON_ARTIFACT).unwrap();
    let ann = token(home.path(), "ann");
    let server = Server::with_args(home.path(), &rules, &[], crate::server::client());
    let post = |headers: &[(&str, &str)], body: &str, token: Option<&str>| {
        let mut r = server.req(reqwest::Method::POST, "/api/v1/events", token);
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        crate::server::answer(r.body(body.to_string()))
    };
    let structured = |id: &str, branch: &str| {
        json!({
            "specversion": "1.0", "id": id, "source": "/ci",
            "type": "com.example.artifact.published",
            "datacontenttype": "application/json",
            "data": { "version": "4.2", "branch": branch }
        })
        .to_string()
    };
    let ce_json = [("content-type", "application/cloudevents+json")];

    let (s, v) = post(&ce_json, &structured("build-7", "main"), Some(&ann));
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["started"], json!(["deploy-artifact-1"]));
    let job = server.until("deploy-artifact-1", &ann, |v| v["status"] == "succeeded");
    assert_eq!(job["params"]["version"], "4.2");
    assert_eq!(job["triggered_by"]["kind"], "cloudevent");
    assert_eq!(job["triggered_by"]["from"], "/ci#build-7");

    // The same event again (a retry, or posted to another server): no second job.
    let (s, v) = post(&ce_json, &structured("build-7", "main"), Some(&ann));
    assert_eq!(
        (s, &v["started"]),
        (StatusCode::ACCEPTED, &json!([])),
        "{v}"
    );
    assert_eq!(v["not_started"], 1);
    // Its filter, and its type, choose.
    let (_, v) = post(&ce_json, &structured("build-8", "dev"), Some(&ann));
    assert_eq!(v["started"], json!([]), "{v}");

    // Binary mode: attributes in headers, the body is the data.
    let (s, v) = post(
        &[
            ("ce-specversion", "1.0"),
            ("ce-id", "build-9"),
            ("ce-source", "/ci"),
            ("ce-type", "com.example.artifact.published"),
            ("content-type", "application/json"),
        ],
        r#"{"version": "4.3", "branch": "main"}"#,
        Some(&ann),
    );
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["started"], json!(["deploy-artifact-2"]));
    let job = server.until("deploy-artifact-2", &ann, |v| v["status"] == "succeeded");
    assert_eq!(job["params"]["version"], "4.3");

    // Not CloudEvents, or not authenticated: refused, nothing started.
    let (s, v) = post(
        &[
            ("ce-specversion", "1.0"),
            ("ce-source", "/ci"),
            ("ce-type", "x"),
        ],
        "{}",
        Some(&ann),
    );
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["detail"].as_str().unwrap().contains("ce-id"), "{v}");
    let (s, v) = post(
        &ce_json,
        r#"{"specversion": "1.0", "source": "/ci", "type": "x"}"#,
        Some(&ann),
    );
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, v) = post(&[("content-type", "text/plain")], "hello", Some(&ann));
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{v}");
    let (s, _) = post(&ce_json, &structured("build-10", "main"), None);
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(jobs_of(&server, &ann, "deploy-artifact").len(), 2);
}

const ON_PUSH: &str = "rule: build-on-push\non:\n  - webhook:\n      name: github-push\n      secret: hook-test\n      filter: \"${{ trigger.webhook.event == 'push' and trigger.webhook.body.ref == 'refs/heads/main' }}\"\n      params:\n        commit: \"${{ trigger.webhook.body.after }}\"\nparams:\n  commit: { type: string, required: true }\nphases:\n  run:\n    - { id: build, op: log, with: { message: \"building ${{ params.commit }}\" } }\n";

/// `X-Hub-Signature-256` for `body` under `secret`, as GitHub computes it.
fn github_signature(secret: &str, body: &str) -> String {
    use hmac::Mac as _;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The headers of a GitHub push delivery.
fn delivery<'a>(id: &'a str, signature: &'a str) -> [(&'a str, &'a str); 4] {
    [
        ("content-type", "application/json"),
        ("x-github-event", "push"),
        ("x-github-delivery", id),
        ("x-hub-signature-256", signature),
    ]
}

#[test]
fn a_signed_webhook_starts_its_rule_once_per_delivery_and_a_bad_signature_starts_nothing() {
    let home = crate::home();
    let rules = home.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    std::fs::write(rules.join("build.yaml"), ON_PUSH).unwrap();
    let ann = token(home.path(), "ann");
    let secret = "It's a Secret to Everybody";
    let server = Server::with_env(
        home.path(),
        &rules,
        &[],
        &[("SLUICE_SECRET_HOOK_TEST", secret)],
        crate::server::client(),
    );
    let post = |path: &str, headers: &[(&str, &str)], body: &str| {
        // No token: a webhook is authenticated by its signature.
        let mut r = server.req(reqwest::Method::POST, path, None);
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        crate::server::answer(r.body(body.to_string()))
    };
    let push = r#"{"ref": "refs/heads/main", "after": "9f2c1e7"}"#;
    let signed = github_signature(secret, push);
    let signed = signed.as_str();

    let (s, v) = post("/hooks/github-push", &delivery("d-1", signed), push);
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["started"], json!(["build-on-push-1"]));
    let job = server.until("build-on-push-1", &ann, |v| v["status"] == "succeeded");
    assert_eq!(job["params"]["commit"], "9f2c1e7");
    assert_eq!(job["triggered_by"]["kind"], "webhook");
    assert_eq!(job["triggered_by"]["from"], "hook:github-push#d-1");

    // GitHub redelivers with the same delivery id: nothing new starts. Nor does the same
    // signed body replayed under a new delivery id (the headers are not signed).
    for id in ["d-1", "d-1-replayed"] {
        let (s, v) = post("/hooks/github-push", &delivery(id, signed), push);
        assert_eq!(
            (s, &v["started"]),
            (StatusCode::ACCEPTED, &json!([])),
            "{v}"
        );
    }

    // A body changed on the way, another secret, or no signature: 401, nothing started.
    let tampered = push.replace("9f2c1e7", "0000000");
    let (s, v) = post("/hooks/github-push", &delivery("d-2", signed), &tampered);
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
    assert!(
        v["detail"].as_str().unwrap().contains("does not match"),
        "{v}"
    );
    let forged = github_signature("guess", push);
    let (s, _) = post("/hooks/github-push", &delivery("d-3", &forged), push);
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, v) = post(
        "/hooks/github-push",
        &[
            ("content-type", "application/json"),
            ("x-github-delivery", "d-4"),
        ],
        push,
    );
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
    assert!(v["detail"].as_str().unwrap().contains("not signed"), "{v}");
    // Signed, but not JSON; an unknown hook; a push to another branch.
    let text = "payload=x";
    let sig = github_signature(secret, text);
    let (s, _) = post("/hooks/github-push", &delivery("d-5", &sig), text);
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = post("/hooks/gitlab-push", &delivery("d-6", signed), push);
    assert_eq!(s, StatusCode::NOT_FOUND);
    let branch = r#"{"ref": "refs/heads/dev", "after": "1111111"}"#;
    let sig = github_signature(secret, branch);
    let (s, v) = post("/hooks/github-push", &delivery("d-7", &sig), branch);
    assert_eq!(
        (s, &v["started"]),
        (StatusCode::ACCEPTED, &json!([])),
        "{v}"
    );
    assert_eq!(jobs_of(&server, &ann, "build-on-push").len(), 1);
}

#[test]
fn a_schedule_runs_each_time_once_even_with_two_servers_on_one_journal() {
    let home = crate::home();
    let rules = home.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    // Every second (a sixth, leading field), so the test sees several runs quickly.
    std::fs::write(
        rules.join("tick.yaml"),
        "rule: tick\non:\n  - schedule: { cron: \"* * * * * *\", missed: skip, params: { at: \"${{ trigger.schedule.time }}\" } }\nparams:\n  at: { type: string, required: true }\nphases:\n  run:\n    - { id: note, op: log, with: { message: \"run of ${{ params.at }}\" } }\n",
    )
    .unwrap();
    let ann = token(home.path(), "ann");
    let one = Server::with_args(home.path(), &rules, &[], crate::server::client());
    let two = Server::with_args(home.path(), &rules, &[], crate::server::client());
    let deadline = Instant::now() + Duration::from_secs(60);
    let jobs = loop {
        let jobs = jobs_of(&one, &ann, "tick");
        if jobs.len() >= 4 {
            break jobs;
        }
        assert!(
            Instant::now() < deadline,
            "the schedule ran {} times",
            jobs.len()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    drop(two);
    drop(one);
    let mut times = Vec::new();
    for j in &jobs {
        let id = j["id"].as_str().unwrap();
        let o = sluice(home.path(), &["show", id, "--json"]);
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["triggered_by"]["kind"], "schedule", "{v}");
        let at = v["params"]["at"].as_str().unwrap().to_string();
        assert!(
            v["triggered_by"]["key"].as_str().unwrap().ends_with(&at),
            "{v}"
        );
        times.push(at);
    }
    let n = times.len();
    times.sort();
    times.dedup();
    assert_eq!(times.len(), n, "a second ran twice: {times:?}");
}

#[test]
fn the_keptn_stages_example_promotes_a_passing_artifact_and_asks_after_a_warning() {
    let home = crate::home();
    let rules = home.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    for f in ["qa-delivery.yaml", "production-delivery.yaml"] {
        std::fs::copy(
            crate::jobs::root().join("examples/keptn-stages").join(f),
            rules.join(f),
        )
        .unwrap();
    }
    let ann = token(home.path(), "ann");
    let server = Server::with_args(home.path(), &rules, &[], crate::server::client());
    let image = "ghcr.io/podtato-head/podtatoserver";

    // A fast build passes its evaluation: production approves itself and deploys.
    let qa = start(
        &server,
        &ann,
        "qa-delivery",
        json!({ "image": image, "version": "v0.1.1" }),
    );
    assert_eq!(
        followed(&server, &ann, &qa)["started_jobs"],
        json!(["production-delivery-1"])
    );
    let prod = server.until("production-delivery-1", &ann, |v| v["status"] != "running");
    assert_eq!(prod["status"], "succeeded", "{prod}");
    assert_eq!(prod["params"]["qa_job"], qa);
    assert_eq!(prod["params"]["p95"], 240);

    // A slow one is a warning: production waits for a person at its approval.
    let qa = start(
        &server,
        &ann,
        "qa-delivery",
        json!({ "image": image, "version": "v0.1.2", "p95": 450 }),
    );
    followed(&server, &ann, &qa);
    let prod = server.until("production-delivery-2", &ann, |v| v["status"] != "running");
    assert_eq!(prod["status"], "waiting", "{prod}");
    assert_eq!(prod["waiting"][0]["step"], "approval");
    assert!(
        prod["waiting"][0]["message"]
            .as_str()
            .unwrap()
            .contains(&format!("promote v0.1.2 (from {qa})")),
        "{prod}"
    );
}
