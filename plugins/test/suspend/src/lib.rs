//! Test op `suspend`: opens an approval gate, then reports the decision on resume. With
//! `hold: true` (and a workspace grant), `resume` waits while `/workspace/hold` exists, so a
//! test can kill the host in the middle of a resume.
use sluice_op::serde_json::Value;
use sluice_op::{Context, Error, Op, Outcome, export_op};

struct T;

impl Op for T {
    type Input = Value;
    type Output = Value;
    const NAME: &'static str = "suspend";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "opens an approval gate, then reports the decision on resume";

    fn run(_ctx: &Context, input: Value) -> Result<Outcome<Value>, Error> {
        let mut gate = sluice_op::Gate::new(sluice_op::GateKind::Approval, "approve the test?");
        gate.approvers = vec!["group:release-managers".to_string()];
        gate.quorum = input["quorum"].as_u64().unwrap_or(1) as u32;
        gate.timeout_seconds = input["timeout"].as_u64();
        gate.timeout_action = Some(sluice_op::DecisionKind::Reject);
        gate.state = b"opaque-state".to_vec();
        Ok(Outcome::Suspend(gate))
    }

    fn resume(
        _ctx: &Context,
        input: Value,
        state: Vec<u8>,
        decision: sluice_op::Decision,
    ) -> Result<Outcome<Value>, Error> {
        let state = String::from_utf8_lossy(&state).to_string();
        if input["hold"] == Value::Bool(true) {
            while std::path::Path::new("/workspace/hold").exists() {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
        match decision {
            sluice_op::Decision::Approve(a) => Ok(Outcome::Success(Value::from(format!(
                "approved by {} with state {state}",
                a.user
            )))),
            other => Err(Error::new(format!("not approved: {other:?}"))),
        }
    }
}

export_op!(T);
