//! Plain data for what an op says and returns: the Rust mirror of `wit/op.wit`'s `types`.
//!
//! The engine, the store and the CLI speak these types; only `sluice-runtime` converts them to
//! and from the generated WIT bindings. `job.rs` holds what the journal and the front ends add:
//! [`JobState`], [`JobStatus`] and the [`Actor`] who acts on a job.
//!
//! Architecture Invariant: this crate depends on serde and nothing else: no wasmtime, no
//! tokio, no I/O. That is what lets the engine stay pure.

use serde::{Deserialize, Serialize};

pub mod fixtures;
mod job;
mod origin;
pub use job::{Actor, AuthMethod, ChatSource, JobState, JobStatus};
pub use origin::Origin;

/// Seconds since 1970-01-01 UTC as `[year, month, day, hour, minute, second]`, by Howard
/// Hinnant's civil-from-days algorithm (no date crate needed for printing a timestamp).
pub fn utc_parts(secs: u64) -> [u64; 6] {
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    [
        y as u64,
        m as u64,
        d as u64,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
    ]
}

/// The phase of a job a step runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Before the job exists.
    Check,
    /// First phase of the job.
    Init,
    /// Preparation.
    Pre,
    /// Main work.
    Run,
    /// Always runs last.
    Post,
    /// Undoes what was done.
    Rollback,
}

impl Phase {
    /// The name used in rules and output.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Check => "check",
            Phase::Init => "init",
            Phase::Pre => "pre",
            Phase::Run => "run",
            Phase::Post => "post",
            Phase::Rollback => "rollback",
        }
    }
}

/// Where and why an op is being called.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobContext {
    /// The job id; empty for a bare `sluice op run`.
    pub job_id: String,
    /// The rule name; empty for a bare `sluice op run`.
    pub rule: String,
    /// The step's phase.
    pub phase: Phase,
    /// The step id.
    pub step_id: String,
    /// 1 on the first attempt.
    pub attempt: u32,
    /// Who started the job.
    pub started_by: String,
    /// How the step before this one in its list ended; `None` for the first.
    #[serde(default)]
    pub previous: Option<String>,
}

impl JobContext {
    /// The context of a bare `sluice op run`: no job, one attempt, phase `run`.
    pub fn adhoc(step_id: &str, user: &str) -> Self {
        JobContext {
            job_id: String::new(),
            rule: String::new(),
            phase: Phase::Run,
            step_id: step_id.to_string(),
            attempt: 1,
            started_by: user.to_string(),
            previous: None,
        }
    }
}

/// The kind of a gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GateKind {
    /// Waits for approvers.
    Approval,
    /// Waits for someone to resume.
    Pause,
    /// A caught failure waiting for a person.
    Trap,
    /// Outside its deploy window: opens by itself when the window does.
    Window,
}

/// What a gate asks a person to fill in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "type", content = "values")]
pub enum InputKind {
    /// Free text.
    Text,
    /// One of the values.
    Choice(Vec<String>),
}

/// One input a gate asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateInput {
    /// The name the answer is stored under.
    pub name: String,
    /// What to show.
    pub description: String,
    /// Text or choice.
    pub kind: InputKind,
    /// Whether a decision without it is refused.
    pub required: bool,
    /// The value used when none is given.
    pub default: Option<String>,
}

/// The kind of a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DecisionKind {
    /// Approve.
    Approve,
    /// Reject: ends the job as rejected, no rollback.
    Reject,
    /// Resume a pause.
    Resume,
    /// Run the failed step again.
    Retry,
    /// Go on as if the step succeeded.
    Skip,
    /// End as failed, no rollback.
    Abort,
    /// Roll back.
    Rollback,
    /// Start now, outside the deploy window.
    SkipWindow,
}

impl DecisionKind {
    /// The word used on the command line and in the journal (`approve`, `retry`...).
    pub fn as_str(self) -> &'static str {
        match self {
            DecisionKind::Approve => "approve",
            DecisionKind::Reject => "reject",
            DecisionKind::Resume => "resume",
            DecisionKind::Retry => "retry",
            DecisionKind::Skip => "skip",
            DecisionKind::Abort => "abort",
            DecisionKind::Rollback => "rollback",
            DecisionKind::SkipWindow => "skip-window",
        }
    }
}

impl std::fmt::Display for DecisionKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl GateKind {
    /// `approval`, `pause`, `trap`: the word stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            GateKind::Approval => "approval",
            GateKind::Pause => "pause",
            GateKind::Trap => "trap",
            GateKind::Window => "window",
        }
    }

    /// `an approval`, `a pause`, `a trap`: the gate in a sentence.
    pub fn described(self) -> &'static str {
        match self {
            GateKind::Approval => "an approval",
            GateKind::Pause => "a pause",
            GateKind::Trap => "a trap",
            GateKind::Window => "a deploy window",
        }
    }
}

impl LogSource {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            LogSource::Op => "op",
            LogSource::Stdout => "stdout",
            LogSource::Stderr => "stderr",
            LogSource::Host => "host",
        }
    }
}

/// A gate an op opened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gate {
    /// Approval, pause or trap.
    pub kind: GateKind,
    /// What the person is asked.
    pub message: String,
    /// Users or `group:NAME`s who may decide.
    pub approvers: Vec<String>,
    /// Distinct approvals needed (0 means 1).
    pub quorum: u32,
    /// Whether the job's starter may decide.
    pub allow_self_approval: bool,
    /// Inputs asked for.
    pub inputs: Vec<GateInput>,
    /// Seconds until timeout; `None` waits forever.
    pub timeout_seconds: Option<u64>,
    /// What happens on timeout; `None` means abort.
    pub timeout_action: Option<DecisionKind>,
    /// Opaque bytes handed back to the op's `resume`.
    pub state: Vec<u8>,
    /// For a deploy window: when it opens (milliseconds since the Unix epoch), and the job
    /// goes on by itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opens_at: Option<u64>,
}

impl Gate {
    /// A trap for a person: anyone permitted decides (the job's starter too), no timeout.
    pub fn trap(message: impl Into<String>) -> Self {
        Gate {
            kind: GateKind::Trap,
            message: message.into(),
            approvers: Vec::new(),
            quorum: 1,
            allow_self_approval: true,
            inputs: Vec::new(),
            timeout_seconds: None,
            timeout_action: None,
            state: Vec::new(),
            opens_at: None,
        }
    }
}

/// Who decided and what they said, as an op's `resume` hears it (the WIT `actor` record).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decider {
    /// The deciding user.
    pub user: String,
    /// The comment recorded with the decision.
    pub comment: String,
    /// Answers to the gate's inputs.
    pub inputs: Vec<(String, String)>,
}

/// A decision at a gate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Decision {
    /// Someone decided.
    By {
        /// What they decided.
        kind: DecisionKind,
        /// Who, and what they said.
        actor: Decider,
    },
    /// Nobody decided in time.
    TimedOut,
}

/// Why an op failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// One line: what went wrong and what to do.
    pub message: String,
    /// Whether a retry could help.
    pub retryable: bool,
    /// JSON details; empty when none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub details: String,
}

/// What one op call ended with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "status")]
pub enum Outcome {
    /// Done, with JSON output.
    Success {
        /// The JSON output.
        output: String,
    },
    /// Done with a warning, with JSON output.
    Warning {
        /// The JSON output.
        output: String,
    },
    /// Not done.
    Failure(Failure),
    /// Waiting at a gate.
    Suspend(Gate),
}

impl Outcome {
    /// A non-retryable failure with `message`.
    pub fn failure(message: impl Into<String>) -> Self {
        Outcome::Failure(Failure {
            message: message.into(),
            retryable: false,
            details: String::new(),
        })
    }

    /// `success`, `warning`, `failure` or `suspend`.
    pub fn status(&self) -> &'static str {
        match self {
            Outcome::Success { .. } => "success",
            Outcome::Warning { .. } => "warning",
            Outcome::Failure(_) => "failure",
            Outcome::Suspend(_) => "suspend",
        }
    }
}

/// Workspace access.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Access {
    /// Read only.
    ReadOnly,
    /// Read and write.
    ReadWrite,
}

/// A capability an op needs and a rule grants.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Capability {
    /// Run a program.
    Exec(String),
    /// Outgoing HTTP to an origin pattern, normalised (`https://api.example.com:443`,
    /// `https://*.example.com:443`); `*` as a need: any origin the rule grants.
    Http(String),
    /// The job's workspace directory.
    Workspace(Access),
    /// A named secret.
    Secret(String),
    /// A host environment variable.
    Env(String),
}

impl std::fmt::Display for Capability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Capability::Exec(p) => write!(f, "exec:{p}"),
            Capability::Http(o) => write!(f, "http:{o}"),
            Capability::Workspace(Access::ReadOnly) => f.write_str("workspace:read-only"),
            Capability::Workspace(Access::ReadWrite) => f.write_str("workspace:read-write"),
            Capability::Secret(s) => write!(f, "secret:{s}"),
            Capability::Env(e) => write!(f, "env:{e}"),
        }
    }
}

impl std::str::FromStr for Capability {
    type Err = String;

    /// Reads `exec:NAME`, `http:ORIGIN`, `workspace:read-only|read-write`, `secret:NAME`, `env:NAME`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (kind, value) = s.split_once(':').ok_or_else(|| {
            format!("`{s}` is not a capability: write exec:PROGRAM, http:ORIGIN, workspace:read-only|read-write, secret:NAME or env:NAME")
        })?;
        if value.is_empty() {
            return Err(format!("`{s}` names nothing after `{kind}:`"));
        }
        Ok(match kind {
            "exec" => Capability::Exec(value.to_string()),
            "http" if value == "*" => Capability::Http("*".into()),
            "http" => Capability::Http(Origin::parse(value)?.to_string()),
            "secret" => Capability::Secret(value.to_string()),
            "env" => Capability::Env(value.to_string()),
            "workspace" => match value {
                "read-only" => Capability::Workspace(Access::ReadOnly),
                "read-write" => Capability::Workspace(Access::ReadWrite),
                _ => return Err(format!("`{s}`: a workspace is read-only or read-write")),
            },
            _ => {
                return Err(format!(
                    "`{kind}` in `{s}` is not a kind of capability: use exec, http, workspace, secret or env"
                ));
            }
        })
    }
}

impl Capability {
    /// Whether `granted` covers this need: the same, read-write where read-only is needed, an
    /// origin pattern covering the origin needed, or any origin where `http:*` is needed.
    pub fn granted_by(&self, granted: &Capability) -> bool {
        if let (Capability::Http(need), Capability::Http(grant)) = (self, granted) {
            return need == "*"
                || match (Origin::parse(grant), Origin::parse(need)) {
                    (Ok(g), Ok(n)) => g.covers(&n),
                    _ => need == grant,
                };
        }
        self == granted
            || matches!(
                (self, granted),
                (
                    Capability::Workspace(Access::ReadOnly),
                    Capability::Workspace(Access::ReadWrite)
                )
            )
    }
}

/// What an op says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpInfo {
    /// Name.
    pub name: String,
    /// Version.
    pub version: String,
    /// One sentence.
    pub description: String,
    /// JSON Schema of the input.
    pub input_schema: String,
    /// JSON Schema of the output; empty when not documented.
    pub output_schema: String,
    /// Whether running twice equals running once.
    pub idempotent: bool,
    /// Whether it implements rollback.
    pub can_rollback: bool,
    /// Capabilities needed.
    pub needs: Vec<Capability>,
}

/// The level of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogLevel {
    /// Tracing.
    Trace,
    /// Debug.
    Debug,
    /// Info.
    Info,
    /// Warning.
    Warn,
    /// Error.
    Error,
}

impl LogLevel {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

/// Where a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogSource {
    /// The op called `host.log`.
    Op,
    /// The op wrote to its standard output.
    Stdout,
    /// The op wrote to its standard error.
    Stderr,
    /// The host, about the op (a limit hit, output cut).
    Host,
}

/// One line of a step's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// Level.
    pub level: LogLevel,
    /// Source.
    pub source: LogSource,
    /// The text.
    pub message: String,
}

/// A titled note an op attached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Annotation {
    /// Title.
    pub title: String,
    /// Body.
    pub body: String,
}

/// The last progress an op reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// 0 to 100, or none when unknown.
    pub percent: Option<u8>,
    /// What is happening.
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_json_is_tagged_by_status() {
        let o = Outcome::Success {
            output: "{\"a\":1}".into(),
        };
        assert_eq!(
            serde_json::to_string(&o).unwrap(),
            r#"{"status":"success","output":"{\"a\":1}"}"#
        );
        let f = Outcome::failure("boom");
        assert_eq!(
            serde_json::to_string(&f).unwrap(),
            r#"{"status":"failure","message":"boom","retryable":false}"#
        );
    }

    #[test]
    fn utc_parts_are_the_civil_date() {
        assert_eq!(utc_parts(0), [1970, 1, 1, 0, 0, 0]);
        assert_eq!(utc_parts(1_700_000_000), [2023, 11, 14, 22, 13, 20]);
        assert_eq!(utc_parts(951_782_400), [2000, 2, 29, 0, 0, 0]);
    }

    #[test]
    fn http_needs_are_granted_by_covering_origins() {
        let cap = |s: &str| s.parse::<Capability>().unwrap();
        assert_eq!(
            cap("http:https://API.example.com/").to_string(),
            "http:https://api.example.com:443"
        );
        let grant = cap("http:https://*.example.com");
        assert!(cap("http:https://api.example.com").granted_by(&grant));
        assert!(cap("http:*").granted_by(&grant));
        assert!(!cap("http:http://api.example.com").granted_by(&grant));
        assert!(!cap("http:*").granted_by(&cap("exec:curl")));
        assert!("http:example.com".parse::<Capability>().is_err());
    }

    #[test]
    fn capability_display_names_the_grant() {
        assert_eq!(
            Capability::Secret("token".into()).to_string(),
            "secret:token"
        );
        assert_eq!(
            Capability::Workspace(Access::ReadOnly).to_string(),
            "workspace:read-only"
        );
    }
}
