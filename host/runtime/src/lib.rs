//! Runs sluice ops: WebAssembly components implementing the `sluice:op` world.
//!
//! One [`Runtime`] per process holds one wasmtime `Engine` (pooling allocator, epoch
//! interruption), the linker with WASI 0.2 and the `sluice:op` imports, and the on-disk compile
//! cache. [`Runtime::load`] turns component bytes into a [`LoadedOp`] (compiled once, then
//! deserialized from `$SLUICE_HOME/cache`, its `InstancePre` kept for the process);
//! [`Runtime::call`] runs one export on a fresh instance and returns an [`OpReport`].
//!
//! Architecture Invariant: the runtime knows nothing of rules, jobs or the journal. It reports
//! what an op did (outcome, log, annotations, fault); it never decides what happens next.
//!
//! Architecture Invariant: an op gets nothing it was not granted. WASI is built empty (no env,
//! no args, no preopened directories, no sockets); stdout and stderr go to the op's log;
//! `wasi:http` requests reach only granted origins (see `http.rs`).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};
use sluice_model::{
    Annotation, Decision, JobContext, LogLevel, LogLine, LogSource, OpInfo, Outcome, Progress,
};
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Engine, PoolingAllocationConfig, Store, StoreLimits, StoreLimitsBuilder, Trap};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

mod bindings;
mod cache;
mod capture;
mod convert;
mod host;
mod http;
mod spawn;

pub use http::MAX_HTTP_RESPONSE_BYTES;
pub use spawn::process_start_ticks;

use bindings::{Op, OpPre};
use cache::CompileCache;
use capture::LogSink;

/// How often the epoch advances; deadlines are counted in these ticks.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Settings of a [`Runtime`].
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// `$SLUICE_HOME`; the compile cache lives in its `cache/` directory.
    pub home: PathBuf,
    /// How many op instances may be alive at once (sizes the pooling allocator).
    pub max_instances: u32,
    /// The most linear memory one op may use, in bytes.
    pub max_memory_bytes: usize,
    /// The wall-clock deadline of one op call unless the call sets its own.
    pub default_timeout: Duration,
    /// The most log text (host.log plus stdout and stderr) kept from one call, in bytes.
    pub max_log_bytes: usize,
}

impl RuntimeConfig {
    /// Defaults for `home`: 32 instances, 512 MiB memory, 5 minute deadline, 1 MiB of log.
    pub fn new(home: impl Into<PathBuf>) -> Self {
        RuntimeConfig {
            home: home.into(),
            max_instances: 32,
            max_memory_bytes: 512 << 20,
            default_timeout: Duration::from_secs(300),
            max_log_bytes: 1 << 20,
        }
    }
}

/// What an op may use beyond its own memory. Empty by default: nothing is granted.
#[derive(Debug, Clone, Default)]
pub struct Grants {
    /// Secrets the op may read, by name, with their values.
    pub secrets: BTreeMap<String, String>,
    /// Programs the op may run through `exec`: the name it was granted by (`kubectl` or
    /// `/usr/bin/kubectl`) and the absolute path it resolved to.
    pub programs: BTreeMap<String, PathBuf>,
    /// Host environment variables passed to programs the op runs, by name, with values.
    pub env: BTreeMap<String, String>,
    /// The job's workspace directory, preopened as `/workspace`, and how.
    pub workspace: Option<(PathBuf, sluice_model::Access)>,
    /// Secrets granted but without a value on this host: name, and how to give it one.
    pub unset_secrets: BTreeMap<String, String>,
    /// Origins the op may send HTTP requests to (patterns: `https://*.example.com:443`).
    pub http: Vec<sluice_model::Origin>,
    /// Told of every program the op starts, before the program does any work.
    pub exec_watch: Option<ExecWatcher>,
    /// Under test (`sluice op test`): granted `exec` and HTTP calls are answered from these
    /// instead of starting a program or opening a connection; a call none answers fails.
    pub fixtures: Option<Arc<sluice_model::fixtures::Fixtures>>,
}

/// Hears of every program an op starts through `exec`, so the caller can record it (the
/// runtime itself keeps nothing: it only reports).
#[async_trait::async_trait]
pub trait ExecWatch: Send + Sync {
    /// `program` started as process `pid` (which leads its own process group) at `start_ticks`
    /// (clock ticks since boot, field 22 of `/proc/PID/stat`). An error stops the program
    /// and fails the op's `exec` call with the message.
    async fn started(&self, program: &str, pid: u32, start_ticks: u64) -> Result<(), String>;
}

/// An [`ExecWatch`] in [`Grants`].
#[derive(Clone)]
pub struct ExecWatcher(pub Arc<dyn ExecWatch>);

impl std::fmt::Debug for ExecWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ExecWatcher")
    }
}

/// The most JSON output an op may return from one call.
pub const MAX_OUTPUT_BYTES: usize = 1 << 20;

/// The most stdout (and, apart, stderr) kept from one program an op runs.
pub const MAX_EXEC_OUTPUT: usize = 1 << 20;

impl Grants {
    /// No capability at all.
    pub fn none() -> Self {
        Grants::default()
    }
}

/// Where a [`LoadedOp`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadSource {
    /// Compiled by cranelift now (and written to the cache).
    Compiled,
    /// Deserialized from the on-disk compile cache.
    DiskCache,
    /// Already loaded by this process.
    Memory,
}

/// A component ready to instantiate: compiled, linked, its imports resolved.
pub struct LoadedOp {
    digest: String,
    pre: OpPre<OpState>,
}

impl LoadedOp {
    /// The component's sha256, as lowercase hex.
    pub fn digest(&self) -> &str {
        &self.digest
    }
}

/// Which export to call.
#[derive(Debug, Clone)]
pub enum Call {
    /// `run(ctx, input)`.
    Run {
        /// The job context.
        ctx: JobContext,
        /// JSON input.
        input: String,
    },
    /// `resume(ctx, input, state, decision)`.
    Resume {
        /// The job context.
        ctx: JobContext,
        /// JSON input, as given to `run`.
        input: String,
        /// The gate's stored state.
        state: Vec<u8>,
        /// The decision.
        decision: Decision,
    },
    /// `rollback(ctx, input, output)`.
    Rollback {
        /// The job context.
        ctx: JobContext,
        /// JSON input, as given to `run`.
        input: String,
        /// JSON output `run` returned.
        output: String,
    },
}

/// How an op call broke, when it did not return an outcome itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fault {
    /// The guest panicked.
    Panic,
    /// The call passed its deadline and was stopped.
    Timeout,
    /// The guest overflowed its stack.
    StackOverflow,
    /// The guest ran out of memory under its limit.
    OutOfMemory,
    /// Any other trap.
    Trap,
    /// The component could not be instantiated.
    Instantiate,
}

impl Fault {
    /// The kebab-case name (`panic`, `timeout`...).
    pub fn as_str(self) -> &'static str {
        match self {
            Fault::Panic => "panic",
            Fault::Timeout => "timeout",
            Fault::StackOverflow => "stack-overflow",
            Fault::OutOfMemory => "out-of-memory",
            Fault::Trap => "trap",
            Fault::Instantiate => "instantiate",
        }
    }
}

/// What one op call did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct OpReport {
    /// The outcome; a fault is reported as a failure whose message says what broke.
    pub outcome: Outcome,
    /// Set when the op did not return on its own.
    pub fault: Option<Fault>,
    /// The op's log lines, in order.
    pub logs: Vec<LogLine>,
    /// Annotations the op attached.
    pub annotations: Vec<Annotation>,
    /// The last progress reported.
    pub progress: Option<Progress>,
}

/// Why the runtime could not set up or load an op.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The wasmtime engine could not be configured.
    #[error("could not start the wasm engine: {message}")]
    Engine {
        /// wasmtime's message.
        message: String,
    },
    /// The bytes are not a valid component.
    #[error("not a valid WebAssembly component: {message}")]
    Compile {
        /// wasmtime's message.
        message: String,
    },
    /// The component imports something sluice does not provide, or lacks an export.
    #[error("component does not fit the sluice:op@0.1.0 world: {message}")]
    Link {
        /// wasmtime's message.
        message: String,
    },
    /// `describe` did not return.
    #[error("op's describe() failed: {message}")]
    Describe {
        /// What broke.
        message: String,
    },
}

/// Per-call store data: WASI (empty), limits, the op's grants and what it reported.
pub struct OpState {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: StoreLimits,
    op_name: String,
    grants: Arc<Grants>,
    log: LogSink,
    annotations: Vec<Annotation>,
    progress: Option<Progress>,
    /// When the call's deadline passes: programs the op runs are killed by then.
    deadline: std::time::Instant,
    http: WasiHttpCtx,
    egress: http::Egress,
}

impl WasiView for OpState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for OpState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.egress,
        }
    }
}

/// The process-wide op runtime.
pub struct Runtime {
    engine: Engine,
    linker: Linker<OpState>,
    cache: CompileCache,
    config: RuntimeConfig,
    loaded: Mutex<HashMap<String, Arc<LoadedOp>>>,
    ticker_stop: Arc<AtomicBool>,
}

impl Runtime {
    /// Builds the engine, the linker and the compile cache under `config.home`.
    pub fn new(config: RuntimeConfig) -> Result<Self, RuntimeError> {
        let engine_err = |e: wasmtime::Error| RuntimeError::Engine {
            message: error_chain(&e),
        };

        let n = config.max_instances.max(1);
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(n)
            .total_core_instances(n * 16)
            .total_memories(n * 2)
            .total_tables(n * 8)
            .total_stacks(n)
            .max_core_instances_per_component(32)
            .max_memories_per_component(4)
            .max_tables_per_component(16)
            .max_memory_size(config.max_memory_bytes);

        let mut wasm = wasmtime::Config::new();
        wasm.epoch_interruption(true)
            .allocation_strategy(pool)
            .max_wasm_stack(1 << 20);
        let engine = Engine::new(&wasm).map_err(engine_err)?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(engine_err)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).map_err(engine_err)?;
        Op::add_to_linker::<_, HasSelf<OpState>>(&mut linker, |s| s).map_err(engine_err)?;

        let cache = CompileCache::new(config.home.join("cache"), &engine)?;

        let ticker_stop = Arc::new(AtomicBool::new(false));
        spawn_epoch_ticker(engine.clone(), ticker_stop.clone());

        Ok(Runtime {
            engine,
            linker,
            cache,
            config,
            loaded: Mutex::new(HashMap::new()),
            ticker_stop,
        })
    }

    /// The settings this runtime was built with.
    pub fn config(&self) -> &RuntimeConfig {
        &self.config
    }

    /// The op with sha256 `digest`, when this process has loaded it already: a pinned op is not
    /// read and hashed again.
    pub fn loaded(&self, digest: &str) -> Option<Arc<LoadedOp>> {
        self.loaded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(digest)
            .cloned()
    }

    /// Loads component `bytes`: from this process's memory, else the disk cache, else compiled
    /// (and cached). Says where it came from.
    pub fn load(&self, bytes: &[u8]) -> Result<(Arc<LoadedOp>, LoadSource), RuntimeError> {
        let digest = hex::encode(Sha256::digest(bytes));
        if let Some(op) = self
            .loaded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&digest)
        {
            return Ok((op.clone(), LoadSource::Memory));
        }
        let (component, source) = self.cache.load(&self.engine, &digest, bytes)?;
        let op = Arc::new(LoadedOp {
            digest: digest.clone(),
            pre: self.link(&component)?,
        });
        self.loaded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(digest, op.clone());
        Ok((op, source))
    }

    fn link(&self, component: &Component) -> Result<OpPre<OpState>, RuntimeError> {
        let link_err = |e: wasmtime::Error| {
            let message = error_chain(&e);
            let hint = if message.contains("matching implementation was not found") {
                "; an op may import only sluice:op/host, sluice:op/exec, WASI 0.2 and wasi:http"
            } else {
                ""
            };
            RuntimeError::Link {
                message: format!("{message}{hint}"),
            }
        };
        let instance_pre = self.linker.instantiate_pre(component).map_err(link_err)?;
        OpPre::new(instance_pre).map_err(link_err)
    }

    /// Calls `describe` on a fresh instance.
    pub async fn describe(&self, op: &LoadedOp) -> Result<OpInfo, RuntimeError> {
        let (mut store, log) = self.store("describe", Arc::new(Grants::none()), None);
        let result = async {
            let instance = op.pre.instantiate_async(&mut store).await?;
            instance.call_describe(&mut store).await
        }
        .await;
        match result {
            Ok(info) => Ok(convert::op_info(info)),
            Err(e) => {
                let logs = log.finish();
                let (_, message) = classify(&e, &logs, self.config.default_timeout, "describe");
                Err(RuntimeError::Describe { message })
            }
        }
    }

    /// Runs one export of `op` on a fresh instance with `grants`, under `timeout` (or the
    /// default deadline). Never fails: a trap, a timeout or a panic is reported as a failure
    /// outcome with a [`Fault`].
    pub async fn call(
        &self,
        op: &LoadedOp,
        op_name: &str,
        call: Call,
        grants: Arc<Grants>,
        timeout: Option<Duration>,
    ) -> OpReport {
        let (mut store, log) = self.store(op_name, grants, timeout);
        let deadline = timeout.unwrap_or(self.config.default_timeout);
        let result = async {
            let instance = match op.pre.instantiate_async(&mut store).await {
                Ok(i) => i,
                Err(e) => return Err((true, e)),
            };
            let r = match &call {
                Call::Run { ctx, input } => {
                    instance
                        .call_run(&mut store, &convert::job_context(ctx), input)
                        .await
                }
                Call::Resume {
                    ctx,
                    input,
                    state,
                    decision,
                } => {
                    instance
                        .call_resume(
                            &mut store,
                            &convert::job_context(ctx),
                            input,
                            state,
                            &convert::decision(decision),
                        )
                        .await
                }
                Call::Rollback { ctx, input, output } => {
                    instance
                        .call_rollback(&mut store, &convert::job_context(ctx), input, output)
                        .await
                }
            };
            r.map_err(|e| (false, e))
        };
        // Epoch interruption stops a guest that computes past its deadline; this stops one
        // that waits past it in a host call (a clock, a socket, an HTTP response).
        let result = tokio::time::timeout(deadline + 2 * EPOCH_TICK, result)
            .await
            .unwrap_or_else(|_| Err((false, wasmtime::Error::from(Trap::Interrupt))));

        let state = store.into_data();
        let mut logs = log.finish();
        let (outcome, fault) = match result {
            Ok(o) => match convert::outcome(o) {
                Outcome::Success { output } | Outcome::Warning { output }
                    if output.len() > MAX_OUTPUT_BYTES =>
                {
                    (
                        Outcome::failure(format!(
                            "op `{op_name}` returned {} bytes of output; the limit is {MAX_OUTPUT_BYTES}: put large results in the workspace or an annotation",
                            output.len()
                        )),
                        None,
                    )
                }
                o => (o, None),
            },
            Err((instantiating, e)) => {
                let (fault, message) = if instantiating {
                    (
                        Fault::Instantiate,
                        format!("op `{op_name}` could not start: {}", error_chain(&e)),
                    )
                } else {
                    classify(&e, &logs, deadline, op_name)
                };
                logs.push(LogLine {
                    level: LogLevel::Error,
                    source: LogSource::Host,
                    message: message.clone(),
                });
                (Outcome::failure(message), Some(fault))
            }
        };
        OpReport {
            outcome,
            fault,
            logs,
            annotations: state.annotations,
            progress: state.progress,
        }
    }

    fn store(
        &self,
        op_name: &str,
        grants: Arc<Grants>,
        timeout: Option<Duration>,
    ) -> (Store<OpState>, LogSink) {
        let log = LogSink::new(self.config.max_log_bytes);
        // Nothing inherited: no env, no args, no network. Only the log, and the job's
        // workspace when granted (cap-std underneath: nothing outside it is reachable).
        let mut builder = WasiCtx::builder();
        builder
            .stdout(log.stream(LogSource::Stdout))
            .stderr(log.stream(LogSource::Stderr));
        if let Some((dir, access)) = &grants.workspace {
            let perms = match access {
                sluice_model::Access::ReadOnly => wasmtime_wasi::FsPerms::ReadOnly,
                sluice_model::Access::ReadWrite => wasmtime_wasi::FsPerms::ReadWrite,
            };
            if let Err(e) = builder.preopened_dir(dir, "/workspace", perms) {
                log.push(
                    LogLevel::Error,
                    LogSource::Host,
                    format!(
                        "workspace {} could not be opened: {}",
                        dir.display(),
                        error_chain(&e)
                    ),
                );
            }
        }
        let wasi = builder.build();
        let deadline = std::time::Instant::now() + timeout.unwrap_or(self.config.default_timeout);
        let state = OpState {
            wasi,
            table: ResourceTable::new(),
            limits: StoreLimitsBuilder::new()
                .memory_size(self.config.max_memory_bytes)
                .build(),
            op_name: op_name.to_string(),
            egress: http::Egress {
                op_name: op_name.to_string(),
                grants: grants.clone(),
                log: log.clone(),
                deadline,
            },
            grants,
            log: log.clone(),
            annotations: Vec::new(),
            progress: None,
            deadline,
            http: WasiHttpCtx::new(),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        let deadline = timeout.unwrap_or(self.config.default_timeout);
        let ticks = deadline.as_millis().div_ceil(EPOCH_TICK.as_millis()).max(1);
        store.set_epoch_deadline(u64::try_from(ticks).unwrap_or(u64::MAX));
        store.epoch_deadline_trap();
        (store, log)
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until `stop` is set: the clock that op
/// deadlines are measured against.
fn spawn_epoch_ticker(engine: Engine, stop: Arc<AtomicBool>) {
    std::thread::Builder::new()
        .name("sluice-epoch".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(EPOCH_TICK);
                engine.increment_epoch();
            }
        })
        .expect("spawning the epoch thread");
}

/// Names what broke, reading the guest's stderr for a Rust panic or allocation message.
fn classify(
    e: &wasmtime::Error,
    logs: &[LogLine],
    deadline: Duration,
    op: &str,
) -> (Fault, String) {
    let stderr: Vec<&str> = logs
        .iter()
        .filter(|l| l.source == LogSource::Stderr)
        .map(|l| l.message.as_str())
        .collect();
    match e.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => (
            Fault::Timeout,
            format!(
                "op `{op}` passed its deadline of {} and was stopped",
                human(deadline)
            ),
        ),
        Some(Trap::StackOverflow) => (
            Fault::StackOverflow,
            format!("op `{op}` overflowed its stack"),
        ),
        _ => {
            if let Some(panic) = panic_message(&stderr) {
                (Fault::Panic, format!("op `{op}` panicked: {panic}"))
            } else if let Some(line) = stderr
                .iter()
                .find(|l| l.starts_with("memory allocation of"))
            {
                (
                    Fault::OutOfMemory,
                    format!("op `{op}` ran out of memory: {line}"),
                )
            } else {
                // The trap alone, not the wasm backtrace that wasmtime wraps around it.
                let why = match e.downcast_ref::<Trap>() {
                    Some(Trap::MemoryOutOfBounds) => {
                        "out of bounds memory access; most likely its stack overflowed (deep recursion)".to_string()
                    }
                    Some(t) => t.to_string(),
                    None => error_chain(e).lines().next().unwrap_or_default().to_string(),
                };
                (Fault::Trap, format!("op `{op}` crashed: {why}"))
            }
        }
    }
}

/// The message of a Rust panic as printed by the default hook: the lines after
/// `thread '...' panicked at FILE:LINE:COL:` up to the `note:` line.
fn panic_message(stderr: &[&str]) -> Option<String> {
    let start = stderr.iter().position(|l| l.contains("panicked at"))?;
    let location = stderr[start]
        .split("panicked at ")
        .nth(1)
        .unwrap_or("")
        .trim_end_matches(':');
    let message: Vec<&str> = stderr[start + 1..]
        .iter()
        .take_while(|l| !l.starts_with("note:"))
        .copied()
        .collect();
    Some(format!("{} (at {location})", message.join("\n")))
}

fn human(d: Duration) -> String {
    if d.as_millis() < 1000 {
        format!("{} ms", d.as_millis())
    } else {
        format!("{} s", d.as_secs_f64())
    }
}

/// A wasmtime error with its causes, joined by `: `.
pub(crate) fn error_chain(e: &wasmtime::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let s = cause.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_message_reads_the_default_hook_output() {
        let stderr = [
            "",
            "thread '<unnamed>' panicked at test/panic/src/lib.rs:16:9:",
            "boom",
            "note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace",
        ];
        assert_eq!(
            panic_message(&stderr).unwrap(),
            "boom (at test/panic/src/lib.rs:16:9)"
        );
        assert_eq!(panic_message(&["just a line"]), None);
    }
}
