//! `approve`: a manual approval (Clarive, Keptn, Spinnaker's manual judgment).
//!
//! Keptn's rule decides from the step before: `pass: automatic` approves at once after a
//! success, `warning: automatic` after a warning, a failure declines by itself, and no previous
//! result falls back to manual. Otherwise the op suspends with an approval gate; the host keeps
//! it, checks who may decide, and calls `resume` once the quorum is reached or someone rejects.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sluice_op::schemars::{self, JsonSchema};
use sluice_op::serde_json::json;
use sluice_op::{
    Context, Decision, DecisionKind, Duration, Error, Gate, GateInput, GateKind, InputKind, Op,
    Outcome, export_op,
};

/// Automatic or manual.
#[derive(Deserialize, JsonSchema, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
enum Mode {
    Automatic,
    #[default]
    Manual,
}

/// One input asked of the approver.
#[derive(Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields)]
struct AskedInput {
    /// What to show.
    #[serde(default)]
    description: String,
    /// The allowed values; none means free text.
    #[serde(default)]
    choices: Vec<String>,
    /// Whether approving without it is refused.
    #[serde(default)]
    required: bool,
    /// The value when none is given.
    #[serde(default)]
    default: Option<String>,
}

/// The input of `approve`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Input {
    /// What the approvers are asked.
    #[serde(default = "default_message")]
    message: String,
    /// Users, or `group:NAME`, who may decide; empty means anyone with the approve permission.
    #[serde(default)]
    approvers: Vec<String>,
    /// Distinct approvals needed.
    #[serde(default = "one")]
    quorum: u32,
    /// Whether the job's starter may approve it.
    #[serde(default)]
    allow_self_approval: bool,
    /// After a successful previous step: approve at once, or ask.
    #[serde(default)]
    pass: Mode,
    /// After a previous step that warned: approve at once, or ask.
    #[serde(default)]
    warning: Mode,
    /// Inputs asked of the approver, by name; later steps read them.
    #[serde(default)]
    inputs: BTreeMap<String, AskedInput>,
    /// How long to wait (`30m`, `4h`, `1d` or seconds); none waits forever.
    #[serde(default)]
    timeout: Option<Duration>,
    /// What a timeout decides: reject (the default), approve, abort or skip.
    #[serde(default)]
    on_timeout: Option<String>,
}

fn default_message() -> String {
    "approve to continue".into()
}

fn one() -> u32 {
    1
}

/// The output of `approve`: who approved and what they answered.
#[derive(Serialize, Deserialize, JsonSchema)]
struct Output {
    /// The approvers, or `automatic`.
    approved_by: String,
    /// Their comment.
    comment: String,
    /// Their answers.
    inputs: BTreeMap<String, String>,
}

fn timeout_action(s: &Option<String>) -> Result<DecisionKind, Error> {
    match s.as_deref() {
        None | Some("reject") => Ok(DecisionKind::Reject),
        Some("approve") => Ok(DecisionKind::Approve),
        Some("abort") => Ok(DecisionKind::Abort),
        Some("skip") => Ok(DecisionKind::Skip),
        Some(other) => Err(Error::new(format!(
            "on-timeout `{other}` is not a choice: use reject, approve, abort or skip"
        ))),
    }
}

struct Approve;

impl Op for Approve {
    type Input = Input;
    type Output = Output;
    const NAME: &'static str = "approve";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str =
        "Waits for approvers (quorum, four eyes, inputs), or decides from the previous step";

    fn run(ctx: &Context, input: Input) -> Result<Outcome<Output>, Error> {
        let auto = |why: &str| {
            Outcome::Success(Output {
                approved_by: "automatic".into(),
                comment: why.into(),
                inputs: BTreeMap::new(),
            })
        };
        match ctx.previous.as_deref() {
            Some("failure") => {
                return Err(Error::new("declined automatically: the step before failed")
                    .with_details(json!({ "decision": "reject" })));
            }
            Some("success") if input.pass == Mode::Automatic => {
                return Ok(auto("the step before succeeded"));
            }
            Some("warning") if input.warning == Mode::Automatic => {
                return Ok(auto("the step before warned"));
            }
            _ => {}
        }
        let mut gate = Gate::new(GateKind::Approval, input.message);
        gate.approvers = input.approvers;
        gate.quorum = input.quorum.max(1);
        gate.allow_self_approval = input.allow_self_approval;
        gate.inputs = input
            .inputs
            .into_iter()
            .map(|(name, i)| GateInput {
                name,
                description: i.description,
                kind: if i.choices.is_empty() {
                    InputKind::Text
                } else {
                    InputKind::Choice(i.choices)
                },
                required: i.required,
                default: i.default,
            })
            .collect();
        gate.timeout_seconds = input.timeout.map(|d| d.as_secs_ceil());
        gate.timeout_action = Some(timeout_action(&input.on_timeout)?);
        Ok(Outcome::Suspend(gate))
    }

    fn resume(
        _ctx: &Context,
        _input: Input,
        _state: Vec<u8>,
        decision: Decision,
    ) -> Result<Outcome<Output>, Error> {
        match decision {
            Decision::Approve(a) | Decision::Resume(a) => Ok(Outcome::Success(Output {
                approved_by: a.user,
                comment: a.comment,
                inputs: a.inputs.into_iter().collect(),
            })),
            Decision::Reject(a) => Err(Error::new(format!(
                "rejected by {}{}",
                a.user,
                if a.comment.is_empty() {
                    String::new()
                } else {
                    format!(": {}", a.comment)
                }
            ))
            .with_details(json!({ "decision": "reject" }))),
            Decision::TimedOut => Ok(Outcome::Success(Output {
                approved_by: "timeout".into(),
                comment: String::new(),
                inputs: BTreeMap::new(),
            })),
            other => Err(Error::new(format!("an approval cannot take {other:?}"))),
        }
    }
}

export_op!(Approve);
