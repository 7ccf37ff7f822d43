//! `sluice op test`: an op run against the cases of its test file, on its own (no rule, no job,
//! no journal), its `exec` and HTTP calls answered by the cases' fixtures.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use sluice_model::{Capability, LogLine, Outcome};
use sluice_rule::optest::{Case, Expect, OpTest};
use sluice_runtime::{Call, Grants, OpReport};

use crate::{App, AppError, LoadedOp};

/// What one call of a case gave.
#[derive(Debug, Clone, Serialize)]
pub struct TestCall {
    /// `run`, `resume` or `rollback`.
    pub call: &'static str,
    /// Its outcome (secrets masked).
    pub outcome: Outcome,
    /// Its log lines.
    pub logs: Vec<LogLine>,
    /// What it missed of the case's expectations; empty when it met them.
    pub problems: Vec<String>,
}

/// What one case gave.
#[derive(Debug, Clone, Serialize)]
pub struct TestCase {
    /// The case's name.
    pub name: String,
    /// Its line in the test file.
    pub line: usize,
    /// Whether every call met its expectations.
    pub passed: bool,
    /// The calls made, in order.
    pub calls: Vec<TestCall>,
    /// Wall-clock milliseconds the case took.
    pub millis: u64,
}

/// What a test file gave.
#[derive(Debug, Clone)]
pub struct OpTestRun {
    /// The component tested.
    pub op: LoadedOp,
    /// Its path.
    pub path: PathBuf,
    /// The cases run, in file order.
    pub cases: Vec<TestCase>,
    /// Cases left out by the filter.
    pub filtered_out: usize,
}

impl App {
    /// Reads and checks an op test file (`op-test.yaml`).
    pub fn read_op_test(&self, file: &Path) -> Result<OpTest, AppError> {
        crate::identity::read_settings(file, "op test file", sluice_rule::optest::parse)?.ok_or_else(
            || {
                AppError::Usage(format!(
                    "no op test file at {}: write one beside the op (docs/authoring-ops.md, \"Testing\")",
                    file.display()
                ))
            },
        )
    }

    /// Runs the op of test file `file` against each of its cases whose name contains `filter`.
    pub async fn test_op(&self, file: &Path, filter: Option<&str>) -> Result<OpTestRun, AppError> {
        let test = self.read_op_test(file)?;
        let dir = file.parent().unwrap_or(Path::new("."));
        let path = dir.join(&test.op);
        // A standard op by name (`op: test`), or a component beside the file.
        let std_op = !path.is_file() && sluice_std_ops::std_op(&test.op).is_some();
        if !path.is_file() && !std_op {
            return Err(AppError::Usage(format!(
                "{}: the op `{}` is not there ({}): build it first{}",
                file.display(),
                test.op,
                path.display(),
                test.build
                    .as_ref()
                    .map(|b| format!(" (`{b}`), or run `sluice op test --watch`"))
                    .unwrap_or_default()
            )));
        }
        let arg = if std_op {
            test.op.clone()
        } else {
            path.to_string_lossy().into_owned()
        };
        let (loaded, op) = self.load_op(&arg)?;
        let runtime = self.runtime()?;
        let info = runtime
            .describe(&op)
            .await
            .map_err(|e| AppError::Load(format!("cannot describe op {}: {e}", path.display())))?;
        let mut cases = Vec::new();
        let mut filtered_out = 0;
        for (n, case) in test.cases.iter().enumerate() {
            if filter.is_some_and(|f| !case.name.contains(f)) {
                filtered_out += 1;
                continue;
            }
            let started = Instant::now();
            let workspace = self
                .home
                .join(format!("workspaces/op-test-{}-{n}", std::process::id()));
            let calls = self
                .run_case(&op, &loaded.name, info.can_rollback, case, &workspace)
                .await;
            let _ = std::fs::remove_dir_all(&workspace);
            let calls = calls?;
            cases.push(TestCase {
                name: case.name.clone(),
                line: case.line,
                passed: calls.iter().all(|c| c.problems.is_empty()),
                calls,
                millis: started.elapsed().as_millis() as u64,
            });
        }
        if filter.is_some() && cases.is_empty() {
            return Err(AppError::Usage(format!(
                "no case of {} has `{}` in its name",
                file.display(),
                filter.unwrap_or_default()
            )));
        }
        Ok(OpTestRun {
            op: loaded,
            path: if std_op { PathBuf::from(arg) } else { path },
            cases,
            filtered_out,
        })
    }

    async fn run_case(
        &self,
        op: &Arc<sluice_runtime::LoadedOp>,
        name: &str,
        can_rollback: bool,
        case: &Case,
        workspace: &Path,
    ) -> Result<Vec<TestCall>, AppError> {
        let grants = Arc::new(case_grants(case, workspace)?);
        let secrets = sluice_runner::secret_values(&grants);
        let mut ctx = case.context.clone();
        if ctx.step_id.is_empty() {
            ctx.step_id = name.to_string();
        }
        let input = case.input.to_string();
        let runtime = self.runtime()?;
        let call = |c: Call| {
            let (runtime, grants, secrets) = (runtime.clone(), grants.clone(), secrets.clone());
            async move {
                let mut r = runtime.call(op, name, c, grants, None).await;
                sluice_runner::mask_report(&mut r, &secrets);
                r
            }
        };
        let checked = |what: &'static str, r: OpReport, e: &Expect| TestCall {
            call: what,
            problems: e.check(&r.outcome, &r.logs, &r.annotations),
            outcome: r.outcome,
            logs: r.logs,
        };

        let ran = call(Call::Run {
            ctx: ctx.clone(),
            input: input.clone(),
        })
        .await;
        let first = checked("run", ran, &case.expect);
        let mut calls = vec![];
        let outcome = first.outcome.clone();
        let passed = first.problems.is_empty();
        calls.push(first);
        if !passed {
            return Ok(calls);
        }
        if let (Some(resume), Outcome::Suspend(gate)) = (&case.resume, &outcome) {
            let r = call(Call::Resume {
                ctx: ctx.clone(),
                input: input.clone(),
                state: gate.state.clone(),
                decision: resume.decision.clone(),
            })
            .await;
            calls.push(checked("resume", r, &resume.expect));
        }
        if let (Some(expect), Outcome::Success { output } | Outcome::Warning { output }) =
            (&case.rollback, &outcome)
        {
            if !can_rollback {
                calls.push(TestCall {
                    call: "rollback",
                    outcome: Outcome::failure("not called"),
                    logs: vec![],
                    problems: vec![
                        "the op cannot roll back (its describe says can-rollback: false): drop the case's `rollback:` or implement rollback".into(),
                    ],
                });
            } else {
                let r = call(Call::Rollback {
                    ctx: ctx.clone(),
                    input: input.clone(),
                    output: output.clone(),
                })
                .await;
                calls.push(checked("rollback", r, expect));
            }
        }
        Ok(calls)
    }
}

/// What a case grants: its fake secrets, its programs by name (answered by fixtures, so they
/// need not exist here), its origins, and a fresh workspace holding its files.
fn case_grants(case: &Case, workspace: &Path) -> Result<Grants, AppError> {
    let mut g = Grants::none();
    for c in &case.grants {
        match c {
            Capability::Secret(name) => match case.secrets.get(name) {
                Some(v) => {
                    g.secrets.insert(name.clone(), v.clone());
                }
                None => {
                    g.unset_secrets.insert(
                        name.clone(),
                        format!("give it a fake value in the case's `secrets: {{ {name}: ... }}`"),
                    );
                }
            },
            Capability::Exec(p) => {
                g.programs.insert(p.clone(), PathBuf::from(p));
            }
            Capability::Env(name) => {
                if let Ok(v) = std::env::var(name) {
                    g.env.insert(name.clone(), v);
                }
            }
            Capability::Workspace(access) => {
                let _ = std::fs::remove_dir_all(workspace);
                for (rel, text) in &case.files {
                    let p = workspace.join(rel);
                    let write = std::fs::create_dir_all(p.parent().unwrap_or(workspace))
                        .and_then(|()| std::fs::write(&p, text));
                    write.map_err(|e| {
                        AppError::Storage(format!("cannot write {} for the case: {e}", p.display()))
                    })?;
                }
                std::fs::create_dir_all(workspace).map_err(|e| {
                    AppError::Storage(format!("cannot make {}: {e}", workspace.display()))
                })?;
                g.workspace = Some((workspace.to_path_buf(), *access));
            }
            Capability::Http(o) => {
                let origin = sluice_model::Origin::parse(o)
                    .map_err(|e| AppError::Usage(format!("grant `http:{o}`: {e}")))?;
                g.http.push(origin);
            }
        }
    }
    g.fixtures = Some(Arc::new(case.fixtures.clone()));
    Ok(g)
}
