//! The layering ARCHITECTURE.md promises, checked from `cargo metadata` (as rust-analyzer's
//! tidy tests do): the engine is pure, and the command line is a thin front end over the
//! service layer.

use std::collections::BTreeMap;
use std::process::Command;

use serde_json::Value;

/// Each workspace package's normal (not dev, not build) dependencies.
fn dependencies() -> BTreeMap<String, Vec<String>> {
    let o = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(crate::jobs::root())
        .output()
        .expect("cargo metadata");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let meta: Value = serde_json::from_slice(&o.stdout).unwrap();
    meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let deps = p["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| d["kind"].is_null())
                .map(|d| d["name"].as_str().unwrap().to_string())
                .collect();
            (p["name"].as_str().unwrap().to_string(), deps)
        })
        .collect()
}

#[test]
fn the_engine_knows_no_runtime_no_async_and_no_database() {
    let deps = dependencies();
    for forbidden in [
        "tokio",
        "wasmtime",
        "rusqlite",
        "sluice-store",
        "sluice-runtime",
    ] {
        for krate in ["sluice-engine", "sluice-model", "sluice-rule"] {
            assert!(
                !deps[krate].iter().any(|d| d == forbidden),
                "{krate} depends on {forbidden}"
            );
        }
    }
}

#[test]
fn the_command_line_is_a_front_end_over_the_service_layer_only() {
    let deps = dependencies();
    let allowed = [
        "sluice-app",
        "sluice-server",
        "anyhow",
        "clap",
        "serde",
        "serde_json",
        "tokio",
        "tracing",
        "tracing-subscriber",
    ];
    for d in &deps["sluice"] {
        assert!(
            allowed.contains(&d.as_str()),
            "the CLI depends on {d}: call the service layer (sluice-app) instead"
        );
    }
    assert!(deps["sluice-app"].iter().any(|d| d == "sluice-runner"));
}

#[test]
fn the_server_is_a_front_end_over_the_service_layer_only() {
    let deps = dependencies();
    for d in &deps["sluice-server"] {
        assert!(
            !d.starts_with("sluice-") || d == "sluice-app",
            "the server depends on {d}: call the service layer (sluice-app) instead"
        );
        for forbidden in ["rusqlite", "wasmtime"] {
            assert_ne!(d, forbidden, "the server depends on {d}");
        }
    }
}
