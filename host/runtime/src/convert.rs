//! Conversions between the generated WIT types and `sluice-model`'s plain data.

use sluice_model as m;

use crate::bindings::types as w;

pub(crate) fn log_level(l: w::LogLevel) -> m::LogLevel {
    match l {
        w::LogLevel::Trace => m::LogLevel::Trace,
        w::LogLevel::Debug => m::LogLevel::Debug,
        w::LogLevel::Info => m::LogLevel::Info,
        w::LogLevel::Warn => m::LogLevel::Warn,
        w::LogLevel::Error => m::LogLevel::Error,
    }
}

pub(crate) fn phase(p: m::Phase) -> w::Phase {
    match p {
        m::Phase::Check => w::Phase::Check,
        m::Phase::Init => w::Phase::Init,
        m::Phase::Pre => w::Phase::Pre,
        m::Phase::Run => w::Phase::Run,
        m::Phase::Post => w::Phase::Post,
        m::Phase::Rollback => w::Phase::Rollback,
    }
}

pub(crate) fn job_context(c: &m::JobContext) -> w::JobContext {
    w::JobContext {
        job_id: c.job_id.clone(),
        rule: c.rule.clone(),
        phase: phase(c.phase),
        step_id: c.step_id.clone(),
        attempt: c.attempt,
        started_by: c.started_by.clone(),
        previous: c.previous.clone(),
    }
}

fn decision_kind_from(k: w::DecisionKind) -> m::DecisionKind {
    match k {
        w::DecisionKind::Approve => m::DecisionKind::Approve,
        w::DecisionKind::Reject => m::DecisionKind::Reject,
        w::DecisionKind::Resume => m::DecisionKind::Resume,
        w::DecisionKind::Retry => m::DecisionKind::Retry,
        w::DecisionKind::Skip => m::DecisionKind::Skip,
        w::DecisionKind::Abort => m::DecisionKind::Abort,
        w::DecisionKind::Rollback => m::DecisionKind::Rollback,
    }
}

pub(crate) fn decision(d: &m::Decision) -> w::Decision {
    match d {
        m::Decision::TimedOut => w::Decision::TimedOut,
        m::Decision::By { kind, actor } => {
            let a = w::Actor {
                user: actor.user.clone(),
                comment: actor.comment.clone(),
                inputs: actor.inputs.clone(),
            };
            match kind {
                m::DecisionKind::Approve => w::Decision::Approve(a),
                m::DecisionKind::Reject => w::Decision::Reject(a),
                m::DecisionKind::Resume => w::Decision::Resume(a),
                m::DecisionKind::Retry => w::Decision::Retry(a),
                m::DecisionKind::Skip => w::Decision::Skip(a),
                m::DecisionKind::Abort => w::Decision::Abort(a),
                m::DecisionKind::Rollback => w::Decision::Rollback(a),
                // A window gate is the host's own: no op is resumed from it. Should one be, it
                // hears what the decision means: go on.
                m::DecisionKind::SkipWindow => w::Decision::Resume(a),
            }
        }
    }
}

fn gate(g: w::Gate) -> m::Gate {
    m::Gate {
        kind: match g.kind {
            w::GateKind::Approval => m::GateKind::Approval,
            w::GateKind::Pause => m::GateKind::Pause,
            w::GateKind::Trap => m::GateKind::Trap,
        },
        message: g.message,
        approvers: g.approvers,
        quorum: g.quorum,
        allow_self_approval: g.allow_self_approval,
        inputs: g
            .inputs
            .into_iter()
            .map(|i| m::GateInput {
                name: i.name,
                description: i.description,
                kind: match i.kind {
                    w::InputKind::Text => m::InputKind::Text,
                    w::InputKind::Choice(values) => m::InputKind::Choice(values),
                },
                required: i.required,
                default: i.default,
            })
            .collect(),
        timeout_seconds: g.timeout_seconds,
        timeout_action: g.timeout_action.map(decision_kind_from),
        state: g.state,
        // Only the host opens deploy windows.
        opens_at: None,
    }
}

pub(crate) fn outcome(o: w::Outcome) -> m::Outcome {
    match o {
        w::Outcome::Success(output) => m::Outcome::Success { output },
        w::Outcome::Warning(output) => m::Outcome::Warning { output },
        w::Outcome::Failure(f) => m::Outcome::Failure(m::Failure {
            message: f.message,
            retryable: f.retryable,
            details: f.details,
        }),
        w::Outcome::Suspend(g) => m::Outcome::Suspend(gate(g)),
    }
}

fn capability(c: w::Capability) -> m::Capability {
    match c {
        w::Capability::Exec(p) => m::Capability::Exec(p),
        // Normalised (`https://api.example.com:443`) so that grants compare; text that is not an
        // origin is kept as written, and no grant will cover it.
        w::Capability::Http(o) => match m::Origin::parse(&o) {
            Ok(origin) => m::Capability::Http(origin.to_string()),
            Err(_) => m::Capability::Http(o),
        },
        w::Capability::Workspace(w::Access::ReadOnly) => {
            m::Capability::Workspace(m::Access::ReadOnly)
        }
        w::Capability::Workspace(w::Access::ReadWrite) => {
            m::Capability::Workspace(m::Access::ReadWrite)
        }
        w::Capability::Secret(s) => m::Capability::Secret(s),
        w::Capability::Env(e) => m::Capability::Env(e),
    }
}

pub(crate) fn op_info(i: w::OpInfo) -> m::OpInfo {
    m::OpInfo {
        name: i.name,
        version: i.version,
        description: i.description,
        input_schema: i.input_schema,
        output_schema: i.output_schema,
        idempotent: i.idempotent,
        can_rollback: i.can_rollback,
        needs: i.needs.into_iter().map(capability).collect(),
    }
}
