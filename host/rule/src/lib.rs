//! Rules: the YAML that describes how a release moves, parsed into a checked [`Rule`].
//!
//! [`parse`] reads YAML with spans (marked-yaml), checks everything it can without running
//! anything (unknown fields, ops and params, bad expressions, duplicate step ids, values of the
//! wrong type) and reports every problem at once as [`Diagnostics`] at file:line:column.
//! [`expr`] is the one expression language used for `with:` templating and `when:` conditions.
//!
//! Architecture Invariant: no I/O here except what the caller hands in (the text); the result
//! is plain serde data that the journal can snapshot, so a job keeps running the rule it
//! started with even if the file changes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
pub use sluice_model::Phase;

pub mod calendar;
pub mod chat;
mod diag;
pub mod expr;
pub mod inputs;
pub mod notifications;
pub mod optest;
mod parse;
pub mod permissions;
mod yaml;

pub use diag::{Diagnostic, Diagnostics, Loc, decode_utf8};
pub use inputs::{InputProblem, InputSchema, check_rule_inputs};
pub use parse::{ParseOptions, parse};
pub use yaml::MAX_YAML_DEPTH;

/// The JSON Schema of a rule file, for editors (`sluice schema`).
pub const JSON_SCHEMA: &str = include_str!("rule.schema.json");

/// A checked rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    /// The rule's name; job ids are `<name>-<n>`.
    pub name: String,
    /// What the rule is for.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// The file it was read from, as given.
    pub file: String,
    /// Parameters a job is started with.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub params: Vec<Param>,
    /// Where non-standard ops come from, by the name steps use.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ops: BTreeMap<String, OpSource>,
    /// Steps by phase.
    pub phases: Phases,
    /// Steps run after the undo of completed steps, when the job rolls back.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rollback: Vec<Step>,
    /// At most one job of a group at a time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<Concurrency>,
    /// Named locks held for the whole job, shared across rules.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub locks: Vec<Lock>,
    /// Defaults for every step.
    #[serde(default, skip_serializing_if = "Defaults::is_default")]
    pub defaults: Defaults,
    /// Capabilities granted to each op, by op name; an op gets nothing else.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub grants: BTreeMap<String, Vec<sluice_model::Capability>>,
    /// What starts a job of this rule by itself (`on:`), besides a person.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on: Vec<Trigger>,
    /// When its jobs may run: a job outside waits at a `window` gate before it takes its locks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub windows: Option<calendar::Windows>,
    /// Chat rooms every job of the rule is followed in (`chat: { follow: [slack:C0123] }`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chat_follow: Vec<String>,
}

/// What starts a job of a rule by itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Trigger {
    /// A job of another rule ended (Keptn's `triggeredOn: qa.delivery.finished`).
    JobFinished(JobFinished),
    /// A CloudEvent was posted to `POST /api/v1/events`.
    Cloudevent(CloudEventTrigger),
    /// A signed webhook was posted to `POST /hooks/NAME` (GitHub's `X-Hub-Signature-256`).
    Webhook(WebhookTrigger),
    /// The times of a cron pattern.
    Schedule(calendar::Schedule),
}

/// `on: [{ webhook: {...} }]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookTrigger {
    /// The hook's name: it is posted to `/hooks/NAME`.
    pub name: String,
    /// The secret its deliveries are signed with, by name: the server reads it from
    /// `SLUICE_SECRET_<NAME>`.
    pub secret: String,
    /// A condition over `trigger.webhook` (`name`, `event`, `delivery`, `body`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    /// The new job's params: templates that see `trigger.webhook`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, String>,
}

/// `on: [{ cloudevent: {...} }]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CloudEventTrigger {
    /// The event `type` that starts a job.
    #[serde(rename = "type")]
    pub ty: String,
    /// Only events of this `source`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// A condition over `trigger.event` (`id`, `source`, `type`, `subject`, `data`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    /// The new job's params: templates that see `trigger.event`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, String>,
}

/// `on: [{ job-finished: {...} }]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct JobFinished {
    /// The rule whose jobs are followed.
    pub rule: String,
    /// The endings that start a job here (`[succeeded]` when not given).
    pub status: Vec<sluice_model::JobStatus>,
    /// Params the finished job must have had, with these values (as text).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params_match: BTreeMap<String, String>,
    /// The new job's params: templates that see `trigger.job` (the finished job's `id`,
    /// `rule`, `status`, `params` and `steps`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, String>,
}

impl JobFinished {
    /// Whether a job of `rule` that ended `status` with `params` starts one here.
    pub fn matches(
        &self,
        rule: &str,
        status: sluice_model::JobStatus,
        params: &serde_json::Map<String, Value>,
    ) -> bool {
        self.rule == rule
            && self.status.contains(&status)
            && self.params_match.iter().all(|(k, want)| {
                params.get(k).is_some_and(|v| match v {
                    Value::String(s) => s == want,
                    other => &other.to_string() == want,
                })
            })
    }
}

/// The steps of each phase.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Phases {
    /// Before the job exists; a failure creates no job.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub check: Vec<Step>,
    /// First phase.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub init: Vec<Step>,
    /// Preparation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pre: Vec<Step>,
    /// Main work.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub run: Vec<Step>,
    /// Always runs last.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub post: Vec<Step>,
}

impl Phases {
    /// The steps of `phase` (`rollback` has none here: see [`Rule::rollback`]).
    pub fn get(&self, phase: Phase) -> &[Step] {
        match phase {
            Phase::Check => &self.check,
            Phase::Init => &self.init,
            Phase::Pre => &self.pre,
            Phase::Run => &self.run,
            Phase::Post => &self.post,
            Phase::Rollback => &[],
        }
    }
}

/// A parameter's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ParamType {
    /// Text.
    String,
    /// A number.
    Number,
    /// true or false.
    Boolean,
}

/// A parameter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Param {
    /// Its name.
    pub name: String,
    /// Its type.
    #[serde(rename = "type")]
    pub kind: ParamType,
    /// Whether a job must be given it.
    pub required: bool,
    /// The value when not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
    /// The only values allowed, when not empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed: Vec<Value>,
    /// What it means.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

/// Where an op comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OpSource {
    /// A component file, resolved against the rule file's directory.
    Path(String),
    /// An OCI package, `oci://REGISTRY/REPOSITORY:TAG`, pinned by the rule's `sluice.lock`.
    Package(String),
}

/// A step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// Unique in the rule; given, or made from the op's name.
    pub id: String,
    /// Runs only when this condition is true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    /// Where it is in the file.
    pub loc: Loc,
    /// An op call or a parallel group.
    pub kind: StepKind,
}

/// What a step does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepKind {
    /// Calls an op.
    Op(OpCall),
    /// Runs branches at once and waits for all.
    Parallel(Parallel),
}

/// An op call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpCall {
    /// The op's name: a standard op or a key of `ops:`.
    pub op: String,
    /// The input, with `${{ }}` expressions.
    pub with: Value,
    /// Deadline of one attempt, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Retry policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<Retry>,
    /// What a failure does.
    pub on_error: OnError,
    /// How a trap on this step behaves (`on-error: trap`, or a `trap` op).
    #[serde(default, skip_serializing_if = "TrapPolicy::is_default")]
    pub trap: TrapPolicy,
    /// When it may run: outside, it waits at a `window` gate before its first attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub windows: Option<Box<calendar::Windows>>,
    /// Where each part of `with` is in the rule file; not kept in job snapshots.
    #[serde(skip)]
    pub with_locs: InputLocs,
}

/// Where the parts of a step's `with:` are in the rule file, by JSON pointer into the input
/// (`/checks/0/name`): a mapping entry at its key, a list item at the item, and `""` (the
/// whole input) at the `with:` key, or at the step when it has no `with:`.
///
/// Places are not part of a rule's meaning: any two compare equal, so a rule read back from
/// a job snapshot (which does not keep them) equals the rule it was parsed as.
#[derive(Debug, Clone, Default)]
pub struct InputLocs(BTreeMap<String, Loc>);

impl PartialEq for InputLocs {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl InputLocs {
    /// The place of exactly `pointer`.
    pub fn get(&self, pointer: &str) -> Option<Loc> {
        self.0.get(pointer).copied()
    }

    /// The place of `pointer`, or of the nearest part that holds it.
    pub fn nearest(&self, pointer: &str) -> Option<Loc> {
        let mut p = pointer;
        loop {
            if let Some(l) = self.0.get(p) {
                return Some(*l);
            }
            p = &p[..p.rfind('/')?];
        }
    }

    /// Every pointer and its place, in pointer order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, Loc)> {
        self.0.iter().map(|(p, l)| (p.as_str(), *l))
    }

    pub(crate) fn insert(&mut self, pointer: String, at: Loc) {
        self.0.insert(pointer, at);
    }
}

/// `segment` escaped for a JSON pointer (RFC 6901): `~` as `~0`, `/` as `~1`.
pub(crate) fn pointer_segment(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

/// How a trap behaves: Clarive's trap timeout, timeout action and retry limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TrapPolicy {
    /// How long the trap waits for a person, in milliseconds; none waits forever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// What happens on timeout: abort (the default), skip, retry or rollback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_timeout: Option<sluice_model::DecisionKind>,
    /// How many times a person may pick retry; none means no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<u32>,
}

/// A parallel group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Parallel {
    /// Each branch runs its steps in order; branches run at once.
    pub branches: Vec<Vec<Step>>,
    /// Once a branch fails, start nothing more in the others.
    pub fail_fast: bool,
}

/// How a failed step is tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retry {
    /// Attempts in all, the first included.
    pub attempts: u32,
    /// Delay before the second attempt, in milliseconds; doubled for each later one.
    pub delay_ms: u64,
    /// The longest delay, in milliseconds.
    pub max_delay_ms: u64,
}

impl Retry {
    /// The delay before attempt `next` (2, 3, ...).
    pub fn delay_before(&self, next: u32) -> u64 {
        let doublings = next.saturating_sub(2).min(32);
        self.delay_ms
            .saturating_mul(1u64 << doublings)
            .min(self.max_delay_ms)
    }
}

/// What a failed step does to its job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnError {
    /// Fail the job: rollback, then post.
    Fail,
    /// Go on (Spinnaker's "ignore failure"); `steps.<id>.outcome` says `failure`.
    Continue,
    /// Stop and wait for a person.
    Trap,
}

/// What a new job does when its concurrency group is busy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConcurrencyMode {
    /// Wait in line.
    Queue,
    /// Do not start.
    Reject,
    /// Cancel the jobs waiting in line, then wait (GitHub's concurrency groups).
    CancelPending,
}

/// A concurrency group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Concurrency {
    /// The group's name, with `${{ }}` over `params` and `job`.
    pub group: String,
    /// What a new job does when the group is busy.
    pub mode: ConcurrencyMode,
}

/// How a lock is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LockMode {
    /// Alone.
    Exclusive,
    /// With other shared holders.
    Shared,
}

/// A named lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lock {
    /// The lock's name, with `${{ }}` over `params` and `job`.
    pub name: String,
    /// Exclusive or shared.
    pub mode: LockMode,
}

/// Defaults for every step of the rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Defaults {
    /// Deadline of one attempt, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Retry policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<Retry>,
}

impl Defaults {
    fn is_default(&self) -> bool {
        *self == Defaults::default()
    }
}

impl TrapPolicy {
    fn is_default(&self) -> bool {
        *self == TrapPolicy::default()
    }
}

/// How deeply a step's `with:` may nest mappings and lists (the `with:` mapping is the first
/// level). Journal events embed the input, and serde_json reads back at most 128 levels.
pub const MAX_WITH_DEPTH: usize = 32;

/// The standard ops that open gates: allowed only in `init`, `pre` and `run`.
pub const GATE_OPS: &[&str] = &["approve", "pause", "trap"];

impl Rule {
    /// Every step, depth first, in file order, with its phase (`rollback` for `rollback:`).
    pub fn all_steps(&self) -> Vec<(Phase, &Step)> {
        fn walk<'a>(phase: Phase, steps: &'a [Step], out: &mut Vec<(Phase, &'a Step)>) {
            for s in steps {
                out.push((phase, s));
                if let StepKind::Parallel(p) = &s.kind {
                    for b in &p.branches {
                        walk(phase, b, out);
                    }
                }
            }
        }
        let mut out = Vec::new();
        for phase in [
            Phase::Check,
            Phase::Init,
            Phase::Pre,
            Phase::Run,
            Phase::Post,
        ] {
            walk(phase, self.phases.get(phase), &mut out);
        }
        walk(Phase::Rollback, &self.rollback, &mut out);
        out
    }

    /// The step with `id`.
    pub fn step(&self, id: &str) -> Option<(Phase, &Step)> {
        self.all_steps().into_iter().find(|(_, s)| s.id == id)
    }

    /// What `needs` (op name to the capabilities its `describe` declares) lacks in this rule's
    /// grants: op, capability, and the grant line to add.
    pub fn missing_grants(
        &self,
        needs: &BTreeMap<String, Vec<sluice_model::Capability>>,
    ) -> Vec<String> {
        let mut out = Vec::new();
        for (op, caps) in needs {
            let granted = self.grants.get(op).map(Vec::as_slice).unwrap_or(&[]);
            for c in caps {
                if granted.iter().any(|g| c.granted_by(g)) {
                    continue;
                }
                if matches!(c, sluice_model::Capability::Http(o) if o == "*") {
                    out.push(format!("op `{op}` needs `{c}`, which the rule does not grant: grant each origin it calls, e.g. `grants: {{ {op}: [\"http:https://hooks.example.com\"] }}`"));
                } else {
                    out.push(format!("op `{op}` needs `{c}`, which the rule does not grant: add `grants: {{ {op}: [\"{c}\"] }}`"));
                }
            }
        }
        out
    }

    /// The op names steps call, each once.
    pub fn op_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .all_steps()
            .into_iter()
            .filter_map(|(_, s)| match &s.kind {
                StepKind::Op(c) => Some(c.op.clone()),
                StepKind::Parallel(_) => None,
            })
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// Checks `given` (name and text value pairs from `-p name=value`) against the params and
    /// fills in defaults. Every problem is reported at once.
    pub fn bind_params(
        &self,
        given: &[(String, String)],
    ) -> Result<serde_json::Map<String, Value>, Vec<String>> {
        let mut errors = Vec::new();
        let mut out = serde_json::Map::new();
        for (name, _) in given {
            if !self.params.iter().any(|p| &p.name == name) {
                let known: Vec<&str> = self.params.iter().map(|p| p.name.as_str()).collect();
                let hint = match diag::did_you_mean(name, &known) {
                    Some(s) => format!("; did you mean `{s}`?"),
                    None if known.is_empty() => "; this rule takes no params".to_string(),
                    None => format!("; its params are {}", known.join(", ")),
                };
                errors.push(format!("rule `{}` has no param `{name}`{hint}", self.name));
            }
        }
        for p in &self.params {
            let value = match given.iter().rev().find(|(n, _)| n == &p.name) {
                Some((_, text)) => match typed(p.kind, text) {
                    Ok(v) => v,
                    Err(e) => {
                        errors.push(format!("param `{}`: {e}", p.name));
                        continue;
                    }
                },
                None => match &p.default {
                    Some(v) => v.clone(),
                    None if p.required => {
                        errors.push(format!(
                            "param `{}` is required: pass -p {}=VALUE",
                            p.name, p.name
                        ));
                        continue;
                    }
                    None => Value::Null,
                },
            };
            if !p.allowed.is_empty() && !p.allowed.contains(&value) {
                let allowed: Vec<String> = p.allowed.iter().map(|v| v.to_string()).collect();
                errors.push(format!(
                    "param `{}` is {value}; allowed: {}",
                    p.name,
                    allowed.join(", ")
                ));
                continue;
            }
            out.insert(p.name.clone(), value);
        }
        if errors.is_empty() {
            Ok(out)
        } else {
            Err(errors)
        }
    }
}

fn typed(kind: ParamType, text: &str) -> Result<Value, String> {
    match kind {
        ParamType::String => Ok(Value::String(text.to_string())),
        ParamType::Number => match text.parse::<i64>() {
            Ok(i) => Ok(Value::from(i)),
            // Rust reads `NaN`, `inf` and `1e999` (infinite) as floats; JSON has no such
            // numbers and serde_json would store them as null.
            Err(_) => match text.parse::<f64>() {
                Ok(f) if f.is_finite() => Ok(Value::from(f)),
                Ok(_) => Err(format!(
                    "`{text}` is not a finite number: give a number such as 3 or 2.5"
                )),
                Err(_) => Err(format!("`{text}` is not a number")),
            },
        },
        ParamType::Boolean => match text {
            "true" | "yes" => Ok(Value::Bool(true)),
            "false" | "no" => Ok(Value::Bool(false)),
            _ => Err(format!("`{text}` is not true or false")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(params: &str) -> Rule {
        let text = format!("rule: r\nparams:\n{params}phases:\n  run: [{{ op: log }}]\n");
        parse(
            &text,
            &ParseOptions {
                file: "r.yaml",
                std_ops: &["log"],
            },
        )
        .unwrap()
    }

    /// Rule-wide settings checked after parsing (grants of ops no step calls, expressions in
    /// lock names and the concurrency group) are reported where they are written.
    #[test]
    fn rule_wide_settings_are_reported_at_their_place() {
        let text = "rule: r\ngrants:\n  log: [exec:ls]\n  exec: [exec:sleep]\nconcurrency:\n  group: \"g-${{ nope( }}\"\nlocks:\n  - env-qa\n  - { name: \"l-${{ ( }}\" }\nphases:\n  run: [{ op: log }]\n";
        let d = parse(
            text,
            &ParseOptions {
                file: "r.yaml",
                std_ops: &["log"],
            },
        )
        .unwrap_err();
        let at = |needle: &str| {
            d.items
                .iter()
                .find(|i| i.message.contains(needle))
                .unwrap_or_else(|| panic!("no `{needle}` in {d:?}"))
                .loc
        };
        assert_eq!(
            (at("names op `exec`").line, at("names op `exec`").column),
            (4, 3)
        );
        let group = d.items.iter().filter(|i| i.loc.line == 6).count();
        assert!(group >= 1, "the group's expression at line 6: {d:?}");
        let lock = d.items.iter().filter(|i| i.loc.line == 9).count();
        assert!(lock >= 1, "the second lock's expression at line 9: {d:?}");
        assert!(d.items.iter().all(|i| i.loc.line > 0), "{d:?}");
    }

    #[test]
    fn numbers_must_be_finite() {
        let r = rule("  n: number\n");
        for bad in ["NaN", "nan", "inf", "-inf", "infinity", "1e999", "-1e999"] {
            let e = r.bind_params(&[("n".into(), bad.into())]).unwrap_err();
            assert_eq!(
                e,
                [format!(
                    "param `n`: `{bad}` is not a finite number: give a number such as 3 or 2.5"
                )]
            );
        }
        let ok = r.bind_params(&[("n".into(), "1e300".into())]).unwrap();
        assert_eq!(ok["n"], serde_json::json!(1e300));
        let ok = r.bind_params(&[("n".into(), "-7".into())]).unwrap();
        assert_eq!(ok["n"], serde_json::json!(-7));
    }

    #[test]
    fn defaults_and_allowed_values_cannot_be_infinite_either() {
        for params in [
            "  n: { type: number, default: .nan }\n",
            "  n: { type: number, default: 1e999 }\n",
            "  n: { type: number, default: inf }\n",
            "  n: { type: number, allowed: [1, NaN] }\n",
            "  n: { type: number, allowed: [-.inf] }\n",
        ] {
            let text = format!("rule: r\nparams:\n{params}phases:\n  run: [{{ op: log }}]\n");
            let d = parse(
                &text,
                &ParseOptions {
                    file: "r.yaml",
                    std_ops: &["log"],
                },
            )
            .unwrap_err();
            assert!(
                d.items[0]
                    .message
                    .starts_with("param `n` takes a number, and"),
                "{params}: {d}"
            );
        }
    }
}
