//! The op test file (`op-test.yaml`, read by `sluice op test`): cases an op is run against on
//! its own, with fake secrets and fixtures answering its `exec` and HTTP calls, and what each
//! case expects. docs/authoring-ops.md shows the whole format.
//!
//! ```yaml
//! op: bump.wasm                     # the component, relative to this file
//! build: npm run build              # run first by `sluice op test --watch`
//! cases:
//!   - name: a feature is a minor bump
//!     input: { current: 1.4.2, changes: ["feat: dark mode"] }
//!     grants: [exec:git]
//!     exec: [{ program: git, args: [describe], stdout: "v1.4.2\n" }]
//!     expect: { outcome: success, output: { version: 1.5.0 } }
//! ```
//!
//! Checking a call against a case's expectations is here too ([`Expect::check`]): it only
//! compares values, so the file, its meaning and its verdicts stay in one place.

use std::collections::{BTreeMap, BTreeSet};

use marked_yaml::Node;
use serde_json::Value;
use sluice_model::fixtures::{ExecFixture, Fixtures, HttpFixture};
use sluice_model::{
    Annotation, Capability, Decider, Decision, DecisionKind, GateKind, JobContext, LogLine,
    Outcome, Phase,
};

use crate::diag::{Diagnostics, Loc, did_you_mean};
use crate::parse::to_json;
use crate::yaml;

/// A parsed op test file.
#[derive(Debug, Clone, PartialEq)]
pub struct OpTest {
    /// The component, as written (relative to the file).
    pub op: String,
    /// The shell command that builds the component, if any.
    pub build: Option<String>,
    /// The cases, in file order.
    pub cases: Vec<Case>,
}

/// One case: a call of `run` (then, optionally, `resume` or `rollback`) and what it must give.
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    /// Its name, unique in the file.
    pub name: String,
    /// Its line in the file.
    pub line: usize,
    /// The input (the step's `with:`).
    pub input: Value,
    /// The capabilities granted.
    pub grants: Vec<Capability>,
    /// Values of granted secrets.
    pub secrets: BTreeMap<String, String>,
    /// Files written into the workspace before the call (path relative to it, text).
    pub files: BTreeMap<String, String>,
    /// The job context the op is called with.
    pub context: JobContext,
    /// Answers to `exec` and HTTP calls.
    pub fixtures: Fixtures,
    /// What `run` must return.
    pub expect: Expect,
    /// A decision given to the gate `run` opened, and what `resume` must return.
    pub resume: Option<Resume>,
    /// What `rollback` (of `run`'s input and output) must return.
    pub rollback: Option<Expect>,
}

/// A decision given to `resume`, and what it must return.
#[derive(Debug, Clone, PartialEq)]
pub struct Resume {
    /// The decision.
    pub decision: Decision,
    /// What `resume` must return.
    pub expect: Expect,
}

/// The kind of outcome a case expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    /// `success(output)`.
    Success,
    /// `warning(output)`.
    Warning,
    /// `failure(...)`.
    Failure,
    /// `suspend(gate)`.
    Suspend,
}

impl Expected {
    fn as_str(self) -> &'static str {
        match self {
            Expected::Success => "success",
            Expected::Warning => "warning",
            Expected::Failure => "failure",
            Expected::Suspend => "suspend",
        }
    }
}

/// What a call must return; every field set is checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Expect {
    /// The kind of outcome.
    pub outcome: Expected,
    /// The JSON output, exactly (success and warning).
    pub output: Option<Value>,
    /// Text the failure's (or the gate's) message contains.
    pub message: Option<String>,
    /// Whether the failure is retryable.
    pub retryable: Option<bool>,
    /// Texts some log line contains, each.
    pub logs: Vec<String>,
    /// Titles of annotations the op attached, each.
    pub annotations: Vec<String>,
    /// The gate's kind (suspend).
    pub gate_kind: Option<GateKind>,
    /// Text the gate's message contains (suspend).
    pub gate_message: Option<String>,
}

impl Expect {
    /// What `outcome`, `logs` and `annotations` (one call's) miss of this expectation, one line
    /// per problem; empty when the call met it.
    pub fn check(
        &self,
        outcome: &Outcome,
        logs: &[LogLine],
        annotations: &[Annotation],
    ) -> Vec<String> {
        let mut bad = Vec::new();
        let (got, output, message) = match outcome {
            Outcome::Success { output } => (Expected::Success, Some(output), None),
            Outcome::Warning { output } => (Expected::Warning, Some(output), None),
            Outcome::Failure(f) => (Expected::Failure, None, Some(&f.message)),
            Outcome::Suspend(g) => (Expected::Suspend, None, Some(&g.message)),
        };
        if got != self.outcome {
            let what = match outcome {
                Outcome::Success { output } | Outcome::Warning { output } => {
                    format!(" with output {output}")
                }
                Outcome::Failure(f) => format!(": {}", f.message),
                Outcome::Suspend(g) => format!(" at a gate: {}", g.message),
            };
            bad.push(format!(
                "expected outcome {}, got {}{what}",
                self.outcome.as_str(),
                got.as_str()
            ));
        }
        if let (Some(want), Some(text)) = (&self.output, output) {
            match serde_json::from_str::<Value>(text) {
                Ok(v) if &v == want => {}
                Ok(v) => bad.push(format!("expected output {want}, got {v}")),
                Err(e) => bad.push(format!("the output is not JSON ({e}): {text}")),
            }
        }
        if let Some(want) = &self.message {
            match message {
                Some(m) if m.contains(want.as_str()) => {}
                Some(m) => bad.push(format!("expected a message containing {want:?}, got {m:?}")),
                None if got == self.outcome => {
                    bad.push(format!("expected a message containing {want:?}, got none"))
                }
                None => {}
            }
        }
        if let (Some(want), Outcome::Failure(f)) = (self.retryable, outcome)
            && f.retryable != want
        {
            bad.push(format!("expected retryable: {want}, got {}", f.retryable));
        }
        if let Outcome::Suspend(g) = outcome {
            if let Some(kind) = self.gate_kind
                && g.kind != kind
            {
                bad.push(format!(
                    "expected a gate of kind {}, got {}",
                    kind.as_str(),
                    g.kind.as_str()
                ));
            }
            if let Some(want) = &self.gate_message
                && !g.message.contains(want.as_str())
            {
                bad.push(format!(
                    "expected a gate message containing {want:?}, got {:?}",
                    g.message
                ));
            }
        }
        for want in &self.logs {
            if !logs.iter().any(|l| l.message.contains(want.as_str())) {
                bad.push(format!(
                    "expected a log line containing {want:?}; the log has {} line(s){}",
                    logs.len(),
                    logs.iter()
                        .take(5)
                        .map(|l| format!("\n      {}", l.message))
                        .collect::<String>()
                ));
            }
        }
        for want in &self.annotations {
            if !annotations.iter().any(|a| &a.title == want) {
                let titles: Vec<&str> = annotations.iter().map(|a| a.title.as_str()).collect();
                bad.push(format!(
                    "expected an annotation titled {want:?}, got {titles:?}"
                ));
            }
        }
        bad
    }
}

const TOP: &[&str] = &["op", "build", "cases"];
const CASE: &[&str] = &[
    "name", "input", "grants", "secrets", "files", "context", "exec", "http", "expect", "resume",
    "rollback",
];
const EXPECT: &[&str] = &[
    "outcome",
    "output",
    "message",
    "retryable",
    "logs",
    "annotations",
    "gate",
];
const CONTEXT: &[&str] = &[
    "job-id",
    "rule",
    "phase",
    "step-id",
    "attempt",
    "started-by",
    "previous",
];
const EXEC: &[&str] = &["program", "args", "code", "stdout", "stderr"];
const HTTP: &[&str] = &["method", "url", "status", "headers", "body"];
const RESUME: &[&str] = &["decision", "user", "comment", "inputs", "expect"];

/// Parses an op test file, reporting every problem at its place.
pub fn parse(text: &str, file: &str) -> Result<OpTest, Diagnostics> {
    let mut d = Diagnostics::new(file, text);
    let Some(m) = yaml::load_settings(
        &mut d,
        text,
        "an op test file is a mapping with `op`, `build` and `cases`",
    ) else {
        return Err(d);
    };
    let mut t = OpTest {
        op: String::new(),
        build: None,
        cases: vec![],
    };
    let mut saw_cases = false;
    for (k, v) in m.iter() {
        match k.as_str() {
            "op" => t.op = text_of(&mut d, v, "`op` is the path of the op's .wasm file"),
            "build" => {
                t.build = Some(text_of(
                    &mut d,
                    v,
                    "`build` is a shell command, such as `npm run build`",
                ))
            }
            "cases" => {
                saw_cases = true;
                let Some(list) = v.as_sequence() else {
                    d.error(Loc::of(v.span()), "`cases` must be a list of cases", None);
                    continue;
                };
                let mut names = BTreeSet::new();
                for c in list.iter() {
                    let name = c.as_mapping().and_then(|m| m.get_scalar("name"));
                    if let Some(name) = name.filter(|n| !names.insert(n.as_str().to_string())) {
                        d.error(
                            Loc::of(name.span()),
                            format!("two cases are named `{}`", name.as_str()),
                            Some("give each case its own name".into()),
                        );
                    }
                    t.cases.extend(case(&mut d, c));
                }
            }
            other => unknown(&mut d, k, other, TOP, "an op test file"),
        }
    }
    if t.op.is_empty() && d.is_empty() {
        d.error(
            Loc::of(m.span()),
            "the file does not say which op it tests",
            Some("add `op: path/to/op.wasm` (relative to this file)".into()),
        );
    }
    if !saw_cases && d.is_empty() {
        d.error(
            Loc::of(m.span()),
            "the file has no `cases`",
            Some("add `cases:` with at least one `- name: ... input: ... expect: ...`".into()),
        );
    }
    if d.is_empty() { Ok(t) } else { Err(d) }
}

fn unknown(
    d: &mut Diagnostics,
    k: &marked_yaml::types::MarkedScalarNode,
    other: &str,
    fields: &[&str],
    what: &str,
) {
    let hint = did_you_mean(other, fields)
        .map(|s| format!("did you mean `{s}`?"))
        .unwrap_or_else(|| format!("{what} has {}", fields.join(", ")));
    d.error(
        Loc::of(k.span()),
        format!("unknown field `{other}`"),
        Some(hint),
    );
}

/// The text of a scalar, or an error saying what was expected.
fn text_of(d: &mut Diagnostics, v: &Node, shape: &str) -> String {
    match v.as_scalar() {
        Some(s) => s.as_str().to_string(),
        None => {
            d.error(Loc::of(v.span()), shape, None);
            String::new()
        }
    }
}

fn strings(d: &mut Diagnostics, v: &Node, shape: &str) -> Vec<String> {
    let got: Option<Vec<String>> = v.as_sequence().and_then(|s| {
        s.iter()
            .map(|x| x.as_scalar().map(|s| s.as_str().to_string()))
            .collect()
    });
    got.unwrap_or_else(|| {
        d.error(Loc::of(v.span()), shape, None);
        vec![]
    })
}

fn text_map(d: &mut Diagnostics, v: &Node, shape: &str) -> BTreeMap<String, String> {
    let Some(m) = v.as_mapping() else {
        d.error(Loc::of(v.span()), shape, None);
        return BTreeMap::new();
    };
    let mut out = BTreeMap::new();
    for (k, v) in m.iter() {
        match v.as_scalar() {
            Some(s) => {
                out.insert(k.as_str().to_string(), s.as_str().to_string());
            }
            None => d.error(Loc::of(v.span()), shape, None),
        }
    }
    out
}

fn boolean(d: &mut Diagnostics, v: &Node, what: &str) -> Option<bool> {
    match v.as_scalar().map(|s| s.as_str()) {
        Some("true") => Some(true),
        Some("false") => Some(false),
        _ => {
            d.error(
                Loc::of(v.span()),
                format!("`{what}` is true or false"),
                None,
            );
            None
        }
    }
}

fn number<T: std::str::FromStr>(d: &mut Diagnostics, v: &Node, shape: &str) -> Option<T> {
    match v.as_scalar().and_then(|s| s.as_str().parse::<T>().ok()) {
        Some(n) => Some(n),
        None => {
            d.error(Loc::of(v.span()), shape, None);
            None
        }
    }
}

/// A kebab-case word of one of the model's enums.
fn word<T: serde::de::DeserializeOwned>(
    d: &mut Diagnostics,
    v: &Node,
    what: &str,
    words: &[&str],
) -> Option<T> {
    let s = v.as_scalar().map(|s| s.as_str()).unwrap_or("");
    match serde_json::from_value::<T>(Value::String(s.to_string())) {
        Ok(t) if words.contains(&s) => Some(t),
        _ => {
            d.error(
                Loc::of(v.span()),
                format!("`{what}` is one of {}", words.join(", ")),
                did_you_mean(s, words).map(|w| format!("did you mean `{w}`?")),
            );
            None
        }
    }
}

fn case(d: &mut Diagnostics, node: &Node) -> Option<Case> {
    let Some(m) = node.as_mapping() else {
        d.error(
            Loc::of(node.span()),
            "a case is a mapping with `name`, `input` and `expect`",
            None,
        );
        return None;
    };
    let line = Loc::of(node.span()).line;
    let before = d.items.len();
    let mut c = Case {
        name: String::new(),
        line,
        input: Value::Object(Default::default()),
        grants: vec![],
        secrets: BTreeMap::new(),
        files: BTreeMap::new(),
        context: JobContext::adhoc("", "tester"),
        fixtures: Fixtures::default(),
        expect: Expect::default_success(),
        resume: None,
        rollback: None,
    };
    let (mut saw_expect, mut exec_at) = (false, None);
    let mut secrets_at = BTreeMap::new();
    for (k, v) in m.iter() {
        match k.as_str() {
            "name" => c.name = text_of(d, v, "`name` is the case's name, a line of text"),
            "input" => c.input = to_json(v),
            "grants" => {
                for g in strings(
                    d,
                    v,
                    "`grants` is a list of capabilities, such as [exec:git, secret:token]",
                ) {
                    match g.parse::<Capability>() {
                        Ok(cap) => c.grants.push(cap),
                        Err(e) => d.error(Loc::of(v.span()), format!("grant `{g}`: {e}"), None),
                    }
                }
            }
            "secrets" => {
                if let Some(sm) = v.as_mapping() {
                    for (name, _) in sm.iter() {
                        secrets_at.insert(name.as_str().to_string(), Loc::of(name.span()));
                    }
                }
                c.secrets = text_map(d, v, "`secrets` maps secret names to fake values")
            }
            "files" => {
                c.files = text_map(d, v, "`files` maps paths in the workspace to their text");
                if let Some(fm) = v.as_mapping() {
                    for (path, _) in fm.iter() {
                        let p = std::path::Path::new(path.as_str());
                        let plain = p
                            .components()
                            .all(|c| matches!(c, std::path::Component::Normal(_)));
                        if !plain || path.as_str().is_empty() {
                            d.error(
                                Loc::of(path.span()),
                                format!("`{}` is not a path inside the workspace", path.as_str()),
                                Some(
                                    "write a relative path without `..`, such as build/app.tar"
                                        .into(),
                                ),
                            );
                        }
                    }
                }
            }
            "context" => context(d, v, &mut c.context),
            "exec" => {
                exec_at = Some(Loc::of(v.span()));
                let Some(list) = v.as_sequence() else {
                    d.error(
                        Loc::of(v.span()),
                        "`exec` is a list of program answers",
                        None,
                    );
                    continue;
                };
                c.fixtures.exec = list.iter().filter_map(|f| exec_fixture(d, f)).collect();
            }
            "http" => {
                let Some(list) = v.as_sequence() else {
                    d.error(Loc::of(v.span()), "`http` is a list of HTTP answers", None);
                    continue;
                };
                c.fixtures.http = list.iter().filter_map(|f| http_fixture(d, f)).collect();
            }
            "expect" => {
                saw_expect = true;
                if let Some(e) = expect(d, v) {
                    c.expect = e;
                }
            }
            "resume" => c.resume = resume(d, v),
            "rollback" => {
                let Some(rm) = v.as_mapping() else {
                    d.error(
                        Loc::of(v.span()),
                        "`rollback` is a mapping with `expect`",
                        None,
                    );
                    continue;
                };
                for (rk, rv) in rm.iter() {
                    match rk.as_str() {
                        "expect" => c.rollback = expect(d, rv),
                        other => unknown(d, rk, other, &["expect"], "`rollback`"),
                    }
                }
            }
            other => unknown(d, k, other, CASE, "a case"),
        }
    }
    if c.name.trim().is_empty() {
        d.error(Loc::of(node.span()), "a case needs a `name`", None);
    }
    if !saw_expect {
        d.error(
            Loc::of(node.span()),
            format!("case `{}` says nothing of what to expect", c.name),
            Some("add `expect: { outcome: success }` (or warning, failure, suspend)".into()),
        );
    }
    // Fixtures and secrets only for what the case grants: a test must not pass on a call the
    // rule would refuse.
    let granted = |want: &dyn Fn(&Capability) -> bool| c.grants.iter().any(want);
    for (name, at) in &secrets_at {
        if !granted(&|g| matches!(g, Capability::Secret(s) if s == name)) {
            d.error(
                *at,
                format!("secret `{name}` has a value but is not granted"),
                Some(format!("add `secret:{name}` to the case's `grants`")),
            );
        }
    }
    for f in &c.fixtures.exec {
        if !granted(&|g| matches!(g, Capability::Exec(p) if p == &f.program)) {
            d.error(
                exec_at.unwrap_or(Loc::of(node.span())),
                format!(
                    "an exec fixture answers `{}`, which the case does not grant",
                    f.program
                ),
                Some(format!("add `exec:{}` to the case's `grants`", f.program)),
            );
        }
    }
    if !c.files.is_empty() && !granted(&|g| matches!(g, Capability::Workspace(_))) {
        d.error(
            Loc::of(node.span()),
            "the case writes `files` into a workspace it does not grant",
            Some(
                "add `workspace:read-only` or `workspace:read-write` to the case's `grants`".into(),
            ),
        );
    }
    if c.resume.is_some() && c.expect.outcome != Expected::Suspend {
        d.error(
            Loc::of(node.span()),
            format!(
                "case `{}` resumes, but its `run` does not expect to suspend",
                c.name
            ),
            Some("a `resume:` follows `expect: { outcome: suspend }`".into()),
        );
    }
    if c.rollback.is_some() && !matches!(c.expect.outcome, Expected::Success | Expected::Warning) {
        d.error(
            Loc::of(node.span()),
            format!(
                "case `{}` rolls back, but its `run` does not expect to succeed",
                c.name
            ),
            Some("rollback undoes a successful run: expect `success` or `warning`".into()),
        );
    }
    (d.items.len() == before).then_some(c)
}

impl Expect {
    fn default_success() -> Self {
        Expect {
            outcome: Expected::Success,
            output: None,
            message: None,
            retryable: None,
            logs: vec![],
            annotations: vec![],
            gate_kind: None,
            gate_message: None,
        }
    }
}

fn expect(d: &mut Diagnostics, node: &Node) -> Option<Expect> {
    let Some(m) = node.as_mapping() else {
        d.error(
            Loc::of(node.span()),
            "`expect` is a mapping with `outcome` (and `output`, `message`, `logs`...)",
            None,
        );
        return None;
    };
    let mut e = Expect::default_success();
    let mut saw_outcome = false;
    for (k, v) in m.iter() {
        match k.as_str() {
            "outcome" => {
                saw_outcome = true;
                let words = ["success", "warning", "failure", "suspend"];
                match v.as_scalar().map(|s| s.as_str()) {
                    Some("success") => e.outcome = Expected::Success,
                    Some("warning") => e.outcome = Expected::Warning,
                    Some("failure") => e.outcome = Expected::Failure,
                    Some("suspend") => e.outcome = Expected::Suspend,
                    other => d.error(
                        Loc::of(v.span()),
                        "`outcome` is one of success, warning, failure, suspend",
                        other
                            .and_then(|o| did_you_mean(o, &words))
                            .map(|w| format!("did you mean `{w}`?")),
                    ),
                }
            }
            "output" => e.output = Some(to_json(v)),
            "message" => e.message = Some(text_of(d, v, "`message` is text the message contains")),
            "retryable" => e.retryable = boolean(d, v, "retryable"),
            "logs" => {
                e.logs = strings(
                    d,
                    v,
                    "`logs` is a list of texts, each found in some log line",
                )
            }
            "annotations" => {
                e.annotations = strings(d, v, "`annotations` is a list of annotation titles")
            }
            "gate" => {
                let Some(g) = v.as_mapping() else {
                    d.error(
                        Loc::of(v.span()),
                        "`gate` is a mapping with `kind` and `message`",
                        None,
                    );
                    continue;
                };
                for (gk, gv) in g.iter() {
                    match gk.as_str() {
                        "kind" => e.gate_kind = word(d, gv, "kind", &["approval", "pause", "trap"]),
                        "message" => {
                            e.gate_message = Some(text_of(
                                d,
                                gv,
                                "`message` is text the gate's message contains",
                            ))
                        }
                        other => unknown(d, gk, other, &["kind", "message"], "`gate`"),
                    }
                }
            }
            other => unknown(d, k, other, EXPECT, "`expect`"),
        }
    }
    if !saw_outcome {
        d.error(
            Loc::of(node.span()),
            "`expect` needs an `outcome`",
            Some("success, warning, failure or suspend".into()),
        );
    }
    let only = |field: &str, yes: bool, d: &mut Diagnostics| {
        if !yes {
            d.error(
                Loc::of(node.span()),
                format!("`{field}` does not apply to outcome {}", e.outcome.as_str()),
                None,
            );
        }
    };
    if e.output.is_some() {
        only(
            "output",
            matches!(e.outcome, Expected::Success | Expected::Warning),
            d,
        );
    }
    if e.retryable.is_some() {
        only("retryable", e.outcome == Expected::Failure, d);
    }
    if e.gate_kind.is_some() || e.gate_message.is_some() {
        only("gate", e.outcome == Expected::Suspend, d);
    }
    Some(e)
}

fn context(d: &mut Diagnostics, node: &Node, ctx: &mut JobContext) {
    let Some(m) = node.as_mapping() else {
        d.error(
            Loc::of(node.span()),
            "`context` is a mapping such as { started-by: alice }",
            None,
        );
        return;
    };
    for (k, v) in m.iter() {
        match k.as_str() {
            "job-id" => ctx.job_id = text_of(d, v, "`job-id` is text"),
            "rule" => ctx.rule = text_of(d, v, "`rule` is text"),
            "step-id" => ctx.step_id = text_of(d, v, "`step-id` is text"),
            "started-by" => ctx.started_by = text_of(d, v, "`started-by` is a user name"),
            "previous" => {
                ctx.previous = Some(text_of(
                    d,
                    v,
                    "`previous` is success, warning, failure or skipped",
                ))
            }
            "attempt" => {
                if let Some(n) = number::<u32>(d, v, "`attempt` is a number from 1") {
                    ctx.attempt = n.max(1);
                }
            }
            "phase" => {
                if let Some(p) = word::<Phase>(
                    d,
                    v,
                    "phase",
                    &["check", "init", "pre", "run", "post", "rollback"],
                ) {
                    ctx.phase = p;
                }
            }
            other => unknown(d, k, other, CONTEXT, "`context`"),
        }
    }
}

fn exec_fixture(d: &mut Diagnostics, node: &Node) -> Option<ExecFixture> {
    let Some(m) = node.as_mapping() else {
        d.error(
            Loc::of(node.span()),
            "an exec answer is a mapping with `program`, `args`, `code`, `stdout`",
            None,
        );
        return None;
    };
    let mut f = ExecFixture {
        program: String::new(),
        args: None,
        code: Some(0),
        stdout: vec![],
        stderr: vec![],
    };
    for (k, v) in m.iter() {
        match k.as_str() {
            "program" => {
                f.program = text_of(d, v, "`program` is the program's name as the op gives it")
            }
            "args" => f.args = Some(strings(d, v, "`args` is a list of arguments")),
            "code" => f.code = number::<i32>(d, v, "`code` is the exit code, such as 0"),
            "stdout" => f.stdout = text_of(d, v, "`stdout` is text").into_bytes(),
            "stderr" => f.stderr = text_of(d, v, "`stderr` is text").into_bytes(),
            other => unknown(d, k, other, EXEC, "an exec answer"),
        }
    }
    if f.program.is_empty() {
        d.error(
            Loc::of(node.span()),
            "an exec answer needs the `program` it answers",
            None,
        );
        return None;
    }
    Some(f)
}

fn http_fixture(d: &mut Diagnostics, node: &Node) -> Option<HttpFixture> {
    let Some(m) = node.as_mapping() else {
        d.error(
            Loc::of(node.span()),
            "an http answer is a mapping with `url`, `status`, `body`",
            None,
        );
        return None;
    };
    let mut f = HttpFixture {
        method: None,
        url: String::new(),
        status: 200,
        headers: vec![],
        body: vec![],
    };
    for (k, v) in m.iter() {
        match k.as_str() {
            "method" => {
                f.method = Some(text_of(d, v, "`method` is GET, POST...").to_ascii_uppercase())
            }
            "url" => {
                f.url = text_of(d, v, "`url` is the URL the op requests");
                if sluice_model::Origin::of_url(&f.url).is_err() {
                    d.error(
                        Loc::of(v.span()),
                        format!("`{}` is not an http or https URL", f.url),
                        Some(
                            "write it whole, as the op sends it: https://api.example.com/v1/x"
                                .into(),
                        ),
                    );
                }
            }
            "status" => {
                if let Some(s) = number::<u16>(d, v, "`status` is an HTTP status, 100 to 599") {
                    if (100..=599).contains(&s) {
                        f.status = s;
                    } else {
                        d.error(
                            Loc::of(v.span()),
                            "`status` is an HTTP status, 100 to 599",
                            None,
                        );
                    }
                }
            }
            "headers" => {
                f.headers = text_map(d, v, "`headers` maps header names to values")
                    .into_iter()
                    .collect()
            }
            "body" => {
                f.body = match v {
                    Node::Scalar(s) => s.as_str().as_bytes().to_vec(),
                    // A mapping or a list is sent as JSON.
                    _ => to_json(v).to_string().into_bytes(),
                }
            }
            other => unknown(d, k, other, HTTP, "an http answer"),
        }
    }
    if f.url.is_empty() {
        d.error(
            Loc::of(node.span()),
            "an http answer needs the `url` it answers",
            None,
        );
        return None;
    }
    Some(f)
}

fn resume(d: &mut Diagnostics, node: &Node) -> Option<Resume> {
    let Some(m) = node.as_mapping() else {
        d.error(
            Loc::of(node.span()),
            "`resume` is a mapping with `decision` and `expect`",
            None,
        );
        return None;
    };
    let mut kind = None;
    let mut timed_out = false;
    let mut actor = Decider {
        user: "tester".into(),
        comment: String::new(),
        inputs: vec![],
    };
    let mut want = None;
    for (k, v) in m.iter() {
        match k.as_str() {
            "decision" => {
                const WORDS: &[&str] = &[
                    "approve",
                    "reject",
                    "resume",
                    "retry",
                    "skip",
                    "abort",
                    "rollback",
                    "timed-out",
                ];
                if v.as_scalar().map(|s| s.as_str()) == Some("timed-out") {
                    timed_out = true;
                } else {
                    kind = word::<DecisionKind>(d, v, "decision", WORDS);
                }
            }
            "user" => actor.user = text_of(d, v, "`user` is who decides"),
            "comment" => actor.comment = text_of(d, v, "`comment` is text"),
            "inputs" => {
                actor.inputs = text_map(d, v, "`inputs` maps the gate's input names to answers")
                    .into_iter()
                    .collect()
            }
            "expect" => want = expect(d, v),
            other => unknown(d, k, other, RESUME, "`resume`"),
        }
    }
    let decision = match (kind, timed_out) {
        (_, true) => Decision::TimedOut,
        (Some(kind), false) => Decision::By { kind, actor },
        (None, false) => {
            d.error(
                Loc::of(node.span()),
                "`resume` needs a `decision`",
                Some("such as `decision: approve`".into()),
            );
            return None;
        }
    };
    let Some(expect) = want else {
        d.error(
            Loc::of(node.span()),
            "`resume` needs an `expect`",
            Some("such as `expect: { outcome: success }`".into()),
        );
        return None;
    };
    Some(Resume { decision, expect })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_model::{Failure, Gate, LogLevel, LogSource};

    const FILE: &str = r#"
op: bump.wasm
build: npm run build
cases:
  - name: minor
    input: { current: 1.4.2, changes: ["feat: x"] }
    grants: [exec:git, "secret:token", "http:https://api.example.com"]
    secrets: { token: s3cret }
    exec:
      - { program: git, args: [describe], stdout: "v1.4.2\n" }
    http:
      - { method: get, url: "https://api.example.com/v1", status: 201, body: { ok: true } }
    expect:
      outcome: success
      output: { version: 1.5.0 }
      logs: ["1.4.2 -> 1.5.0"]
  - name: gate
    context: { started-by: alice, attempt: 2 }
    expect: { outcome: suspend, gate: { kind: approval, message: deploy } }
    resume:
      decision: approve
      user: bob
      inputs: { reason: fine }
      expect: { outcome: success }
"#;

    #[test]
    fn a_whole_file_parses() {
        let t = parse(FILE, "op-test.yaml").unwrap();
        assert_eq!(t.op, "bump.wasm");
        assert_eq!(t.build.as_deref(), Some("npm run build"));
        let [minor, gate] = &t.cases[..] else {
            panic!()
        };
        assert_eq!(minor.input["current"], "1.4.2");
        assert_eq!(minor.grants.len(), 3);
        assert_eq!(minor.secrets["token"], "s3cret");
        assert_eq!(minor.fixtures.exec[0].stdout, b"v1.4.2\n");
        assert_eq!(minor.fixtures.http[0].method.as_deref(), Some("GET"));
        assert_eq!(minor.fixtures.http[0].body, br#"{"ok":true}"#);
        assert_eq!(
            minor.expect.output,
            Some(serde_json::json!({ "version": "1.5.0" }))
        );
        assert_eq!(gate.context.started_by, "alice");
        assert_eq!(gate.context.attempt, 2);
        assert_eq!(gate.expect.gate_kind, Some(GateKind::Approval));
        let r = gate.resume.as_ref().unwrap();
        assert!(
            matches!(&r.decision, Decision::By { kind: DecisionKind::Approve, actor } if actor.user == "bob" && actor.inputs == [("reason".to_string(), "fine".to_string())])
        );
    }

    #[test]
    fn mistakes_are_reported_at_their_line() {
        let bad = r#"op: x.wasm
cases:
  - name: one
    input: {}
    secrets: { token: x }
    exec: [{ program: kubectl }]
    expect: { outcome: sucess, ouput: 1 }
  - name: one
    expect: { outcome: failure, output: {} }
    resume: { decision: approve, expect: { outcome: success } }
"#;
        let d = parse(bad, "op-test.yaml").unwrap_err();
        let at = |want: &str| {
            let item = d.items.iter().find(|i| i.message.contains(want));
            let item = item.unwrap_or_else(|| panic!("{want}\n---\n{d}"));
            (item.loc.line, item.loc.column)
        };
        assert_eq!(at("secret `token` has a value but is not granted"), (5, 16));
        assert_eq!(
            at("an exec fixture answers `kubectl`, which the case does not grant"),
            (6, 11)
        );
        assert_eq!(
            at("`outcome` is one of success, warning, failure, suspend"),
            (7, 24)
        );
        assert_eq!(at("unknown field `ouput`"), (7, 32));
        at("two cases are named `one`");
        at("`output` does not apply to outcome failure");
        at("case `one` resumes, but its `run` does not expect to suspend");
        assert!(d.to_string().contains("did you mean `success`?"), "{d}");
        let d = parse("cases: []\n", "t.yaml").unwrap_err().to_string();
        assert!(d.contains("the file does not say which op it tests"), "{d}");
        let d = parse("op: [1]\ncases: []\n", "t.yaml")
            .unwrap_err()
            .to_string();
        assert!(d.contains("error: `op` is the path"), "{d}");
        assert!(d.contains("--> t.yaml:1:5"), "{d}");
    }

    #[test]
    fn expectations_say_what_a_call_missed() {
        let e = parse(FILE, "t").unwrap().cases[0].expect.clone();
        let log = |m: &str| LogLine {
            level: LogLevel::Info,
            source: LogSource::Op,
            message: m.into(),
        };
        let ok = Outcome::Success {
            output: r#"{"version":"1.5.0"}"#.into(),
        };
        assert!(
            e.check(&ok, &[log("1.4.2 -> 1.5.0 (minor)")], &[])
                .is_empty()
        );
        let wrong = Outcome::Success {
            output: r#"{"version":"2.0.0"}"#.into(),
        };
        let bad = e.check(&wrong, &[], &[]);
        assert_eq!(bad.len(), 2, "{bad:?}");
        assert!(bad[0].contains(r#"expected output {"version":"1.5.0"}, got {"version":"2.0.0"}"#));
        assert!(bad[1].contains("expected a log line containing \"1.4.2 -> 1.5.0\""));
        let failed = Outcome::Failure(Failure {
            message: "no".into(),
            retryable: true,
            details: String::new(),
        });
        assert_eq!(
            e.check(&failed, &[log("1.4.2 -> 1.5.0")], &[]),
            ["expected outcome success, got failure: no"]
        );
        let g = parse(FILE, "t").unwrap().cases[1].expect.clone();
        let gate = Outcome::Suspend(Gate::trap("deploy now?"));
        assert_eq!(
            g.check(&gate, &[], &[]),
            ["expected a gate of kind approval, got trap"]
        );
    }
}
