//! Op dispatch: what one op call costs through sluice's runtime, against the floor (bare
//! wasmtime with the same engine configuration, no sluice code) and against what a
//! script-step engine pays per step (spawning `/bin/true`). `cargo bench -p sluice-runtime`.

use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use sluice_model::JobContext;
use sluice_runtime::{Call, Grants, Runtime, RuntimeConfig};
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Engine, PoolingAllocationConfig, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

mod bare {
    wasmtime::component::bindgen!({ path: "../../wit", world: "op", exports: { default: async }, imports: { "sluice:op/exec.run": async } });
}

/// The floor: the same component on an engine configured as sluice's, with do-nothing host
/// functions and an empty WASI context: no sluice code on the path.
struct Bare {
    wasi: WasiCtx,
    table: ResourceTable,
}

impl WasiView for Bare {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl bare::sluice::op::types::Host for Bare {}

impl bare::sluice::op::host::Host for Bare {
    fn log(&mut self, _: bare::sluice::op::types::LogLevel, _: String) {}
    fn annotate(&mut self, _: String, _: String) -> Result<(), bare::sluice::op::types::HostError> {
        Ok(())
    }
    fn progress(&mut self, _: Option<u8>, _: String) {}
    fn secret(&mut self, n: String) -> Result<String, bare::sluice::op::types::HostError> {
        Err(bare::sluice::op::types::HostError::NotGranted(n))
    }
}

impl bare::sluice::op::exec::Host for Bare {
    async fn run(
        &mut self,
        c: bare::sluice::op::exec::Command,
    ) -> Result<bare::sluice::op::exec::ExitStatus, bare::sluice::op::types::HostError> {
        Err(bare::sluice::op::types::HostError::NotGranted(c.program))
    }
}

fn engine() -> Engine {
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(32)
        .total_core_instances(32 * 16)
        .total_memories(64)
        .total_tables(32 * 8)
        .total_stacks(32)
        .max_core_instances_per_component(32)
        .max_memories_per_component(4)
        .max_tables_per_component(16)
        .max_memory_size(512 << 20);
    let mut c = wasmtime::Config::new();
    c.epoch_interruption(true)
        .allocation_strategy(pool)
        .max_wasm_stack(1 << 20);
    Engine::new(&c).unwrap()
}

fn ctx() -> JobContext {
    JobContext::adhoc("bench", "bench")
}

fn dispatch(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let home = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(sluice_std_ops::test_ops::ECHO).unwrap();

    let mut g = c.benchmark_group("op-call");
    g.measurement_time(Duration::from_secs(5));

    // (a) sluice: runtime.call = fresh store + instance from the InstancePre, run, log capture, drop.
    let runtime = Runtime::new(RuntimeConfig::new(home.path())).unwrap();
    let (op, _) = runtime.load(&bytes).unwrap();
    let grants = Arc::new(Grants::none());
    g.bench_function("sluice-runtime", |b| {
        b.iter(|| {
            rt.block_on(runtime.call(
                &op,
                "echo",
                Call::Run {
                    ctx: ctx(),
                    input: "1".into(),
                },
                grants.clone(),
                None,
            ))
        })
    });

    // (b) the floor: bare wasmtime, same engine configuration, same component, same export.
    let engine = engine();
    let component = Component::new(&engine, &bytes).unwrap();
    let mut linker = Linker::<Bare>::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).unwrap();
    bare::Op::add_to_linker::<_, HasSelf<Bare>>(&mut linker, |s| s).unwrap();
    let pre = bare::OpPre::new(linker.instantiate_pre(&component).unwrap()).unwrap();
    let wctx = bare::sluice::op::types::JobContext {
        job_id: String::new(),
        rule: String::new(),
        phase: bare::sluice::op::types::Phase::Run,
        step_id: "bench".into(),
        attempt: 1,
        started_by: "bench".into(),
        previous: None,
    };
    g.bench_function("bare-wasmtime", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut store = Store::new(
                    &engine,
                    Bare {
                        wasi: WasiCtx::builder().build(),
                        table: ResourceTable::new(),
                    },
                );
                store.set_epoch_deadline(u64::MAX / 2);
                let op = pre.instantiate_async(&mut store).await.unwrap();
                op.call_run(&mut store, &wctx, "1").await.unwrap()
            })
        })
    });

    // (c) what a script-step engine pays per step.
    g.bench_function("spawn-bin-true", |b| {
        b.iter(|| std::process::Command::new("/bin/true").status().unwrap())
    });
    g.finish();
}

/// (d) The Python and JavaScript example ops through sluice, against starting `python3` /
/// `node` to do the same work. The components are built with the toolchains the tests install
/// under `target/toolchains/` (`cargo test -p sluice --test it langs` or `.ci/run`); without
/// them this group says so and measures nothing.
fn other_languages(c: &mut Criterion) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let tools = root.join("target/toolchains");
    let (py, jco) = (
        tools.join("py/bin/componentize-py"),
        tools.join("js/node_modules/.bin/jco"),
    );
    if !py.is_file() || !jco.is_file() {
        eprintln!(
            "op-call-languages: skipped: no componentize-py or jco under {}; run `cargo test -p sluice --test it langs` first",
            tools.display()
        );
        return;
    }
    let out = tempfile::tempdir().unwrap();
    let build = |cmd: &mut std::process::Command| {
        let o = cmd.output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    let notes = out.path().join("release_notes.wasm");
    build(
        std::process::Command::new(&py)
            .args(["-d", "../../wit", "-w", "op", "componentize", "app", "-o"])
            .arg(&notes)
            .current_dir(root.join("examples/python-op")),
    );
    let bump = out.path().join("bump.wasm");
    build(
        std::process::Command::new(&jco)
            .args([
                "componentize",
                "bump.js",
                "--wit",
                "../../wit",
                "--world-name",
                "op",
            ])
            .args(["--backend", "qjs", "--backend-qjs-disable-async", "-o"])
            .arg(&bump)
            .current_dir(root.join("examples/js-op")),
    );

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let home = tempfile::tempdir().unwrap();
    let runtime = Runtime::new(RuntimeConfig::new(home.path())).unwrap();
    let grants = Arc::new(Grants::none());
    let mut g = c.benchmark_group("op-call-languages");
    g.measurement_time(Duration::from_secs(5));

    let changes = r#"["feat: dark mode", "fix: login loops", "tidy"]"#;
    for (name, file, input) in [
        (
            "sluice-python-release-notes",
            &notes,
            format!(r#"{{"version": "1.5.0", "changes": {changes}}}"#),
        ),
        (
            "sluice-js-bump",
            &bump,
            format!(r#"{{"current": "1.4.2", "changes": {changes}}}"#),
        ),
    ] {
        let (op, _) = runtime.load(&std::fs::read(file).unwrap()).unwrap();
        g.bench_function(name, |b| {
            b.iter(|| {
                let r = rt.block_on(runtime.call(
                    &op,
                    name,
                    Call::Run {
                        ctx: ctx(),
                        input: input.clone(),
                    },
                    grants.clone(),
                    None,
                ));
                assert!(
                    matches!(r.outcome, sluice_model::Outcome::Success { .. }),
                    "{:?}",
                    r.outcome
                );
            })
        });
    }

    // The same work in a fresh interpreter, as a script step would do it.
    let python = r#"import json
changes = ["feat: dark mode", "fix: login loops", "tidy"]
groups = {"Features": [], "Fixes": [], "Other": []}
for c in changes:
    kind, sep, text = c.partition(":")
    title = {"feat": "Features", "fix": "Fixes"}.get(kind.strip()) if sep else None
    groups[title or "Other"].append((text if title else c).strip())
print(json.dumps({"notes": groups}))"#;
    // The interpreter itself, not a version manager's shim in front of it (pyenv's is a
    // shell script that would add its own start-up).
    let python3 = std::process::Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|_| "python3".into());
    g.bench_function("spawn-python3", |b| {
        b.iter(|| {
            let o = std::process::Command::new(&python3)
                .args(["-c", python])
                .output()
                .unwrap();
            assert!(o.status.success());
        })
    });
    let node = r#"const changes = ["feat: dark mode", "fix: login loops", "tidy"];
const level = changes.some((c) => /^feat(\(.*\))?:/.test(c)) ? "minor" : "patch";
console.log(JSON.stringify({ version: "1.5.0", previous: "1.4.2", level }));"#;
    g.bench_function("spawn-node", |b| {
        b.iter(|| {
            let o = std::process::Command::new("node")
                .args(["-e", node])
                .output()
                .unwrap();
            assert!(o.status.success());
        })
    });
    g.finish();
}

criterion_group!(benches, dispatch, other_languages);
criterion_main!(benches);
