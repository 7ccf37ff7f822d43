//! `pause`: waits until someone allowed resumes the job (or its timeout passes).
use serde::{Deserialize, Serialize};
use sluice_op::schemars::{self, JsonSchema};
use sluice_op::{
    Context, Decision, DecisionKind, Duration, Error, Gate, GateKind, Op, Outcome, export_op,
};

/// The input of `pause`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Input {
    /// What to check before resuming.
    #[serde(default = "default_message")]
    message: String,
    /// Users, or `group:NAME`, who may resume; empty means anyone with the resume permission.
    #[serde(default)]
    approvers: Vec<String>,
    /// How long to wait (`30m`, `4h`, `1d` or seconds); none waits forever.
    #[serde(default)]
    timeout: Option<Duration>,
    /// What a timeout does: resume (the default) or abort.
    #[serde(default)]
    on_timeout: Option<String>,
}

fn default_message() -> String {
    "paused: resume to continue".into()
}

/// The output of `pause`: who resumed it.
#[derive(Serialize, Deserialize, JsonSchema)]
struct Output {
    resumed_by: String,
    comment: String,
}

struct Pause;

impl Op for Pause {
    type Input = Input;
    type Output = Output;
    const NAME: &'static str = "pause";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "Waits until someone allowed resumes the job";

    fn run(_ctx: &Context, input: Input) -> Result<Outcome<Output>, Error> {
        let mut gate = Gate::new(GateKind::Pause, input.message);
        gate.approvers = input.approvers;
        gate.allow_self_approval = true;
        gate.timeout_seconds = input.timeout.map(|d| d.as_secs_ceil());
        gate.timeout_action = Some(match input.on_timeout.as_deref() {
            None | Some("resume") => DecisionKind::Resume,
            Some("abort") => DecisionKind::Abort,
            Some(other) => {
                return Err(Error::new(format!(
                    "on-timeout `{other}` is not a choice: use resume or abort"
                )));
            }
        });
        Ok(Outcome::Suspend(gate))
    }

    fn resume(
        _ctx: &Context,
        _input: Input,
        _state: Vec<u8>,
        decision: Decision,
    ) -> Result<Outcome<Output>, Error> {
        match decision {
            Decision::Resume(a) => Ok(Outcome::Success(Output {
                resumed_by: a.user,
                comment: a.comment,
            })),
            Decision::TimedOut => Ok(Outcome::Success(Output {
                resumed_by: "timeout".into(),
                comment: String::new(),
            })),
            other => Err(Error::new(format!("a pause cannot take {other:?}"))),
        }
    }
}

export_op!(Pause);
