//! Rules: read and check one (`validate`), walk one with scripted outcomes (`simulate`).

use std::collections::BTreeMap;
use std::path::Path;

use sluice_engine::{JobStatus, OpMeta, Script, SimLine};
use sluice_rule::{Diagnostic, Diagnostics, OpSource, ParseOptions, Rule, StepKind};

use crate::{App, AppError};

/// A rule that validated: its name, how many steps, which ops.
#[derive(Debug, Clone)]
pub struct Validated {
    /// The rule.
    pub rule: Rule,
}

/// A rule file in a rules directory.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RuleFile {
    /// Its file name.
    pub file: String,
    /// The name of the rule in it, when it parses.
    pub rule: Option<String>,
    /// Why it does not parse.
    pub problem: Option<String>,
}

/// The names of the standard ops (callable without an `ops:` entry).
pub fn std_op_names() -> Vec<&'static str> {
    sluice_std_ops::STD_OPS.iter().map(|o| o.name).collect()
}

/// `NAME=VALUE` params.
pub(crate) fn split_params(params: &[String]) -> Result<Vec<(String, String)>, AppError> {
    params
        .iter()
        .map(|p| match p.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(AppError::Usage(format!("-p {p}: write NAME=VALUE"))),
        })
        .collect()
}

/// A rule file's text: an unreadable file is a usage error naming it; bytes that are not
/// UTF-8 are a diagnostic at their place (file, byte offset, line:column).
fn read_text(path: &Path) -> Result<String, AppError> {
    let bytes = std::fs::read(path)
        .map_err(|e| AppError::Usage(format!("cannot read rule file {}: {e}", path.display())))?;
    sluice_rule::decode_utf8(bytes, &path.display().to_string()).map_err(AppError::Invalid)
}

fn parse(path: &Path, text: &str) -> Result<Rule, Diagnostics> {
    let names = std_op_names();
    sluice_rule::parse(
        text,
        &ParseOptions {
            file: &path.display().to_string(),
            std_ops: &names,
        },
    )
}

impl App {
    /// Reads and checks the rule at `path`; problems come back as diagnostics.
    pub fn read_rule(&self, path: &Path) -> Result<Rule, AppError> {
        parse(path, &read_text(path)?).map_err(AppError::Invalid)
    }

    /// Checks the rule at `path`: the rule itself, then (asking each op's `describe`, no op
    /// runs) that it grants what its ops declare they need. Every problem at once.
    pub async fn validate(&self, path: &Path) -> Result<Validated, AppError> {
        let text = read_text(path)?;
        self.validate_source(path, text).await
    }

    /// Checks a rule sent as text (over the API), named `path` in its diagnostics. Such a
    /// rule may call standard ops only: op files and packages are checked from the rules
    /// directory, so a request cannot make the server read files or registries it names.
    pub async fn validate_text(&self, text: &str, path: &Path) -> Result<Validated, AppError> {
        let rule = parse(path, text).map_err(AppError::Invalid)?;
        if let Some(name) = rule.ops.keys().next() {
            return Err(AppError::Usage(format!(
                "op `{name}`: a rule sent for checking may call standard ops only; put rules with `ops:` in the server's rules directory and check them there with `sluice validate`"
            )));
        }
        self.validate_source(path, text.to_string()).await
    }

    /// The rule files in `dir` (`*.yaml`, `*.yml`, not recursive), sorted by name, each with
    /// its rule's name or why it does not parse.
    pub async fn rule_files(&self, dir: &Path) -> Result<Vec<RuleFile>, AppError> {
        let entries = std::fs::read_dir(dir).map_err(|e| {
            AppError::Usage(format!(
                "cannot read the rules directory {}: {e}",
                dir.display()
            ))
        })?;
        let mut files = vec![];
        for entry in entries.flatten() {
            let path = entry.path();
            let yaml = path.extension().is_some_and(|e| e == "yaml" || e == "yml");
            if !yaml || !path.is_file() {
                continue;
            }
            let (rule, problem) = match self.read_rule(&path) {
                Ok(r) => (Some(r.name), None),
                Err(e) => (None, Some(e.to_string())),
            };
            files.push(RuleFile {
                file: path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                rule,
                problem,
            });
        }
        files.sort_by(|a, b| a.file.cmp(&b.file));
        Ok(files)
    }

    /// The file in `dir` whose rule is named `rule`.
    pub async fn rule_path(&self, dir: &Path, rule: &str) -> Result<std::path::PathBuf, AppError> {
        let files = self.rule_files(dir).await?;
        files
            .iter()
            .find(|f| f.rule.as_deref() == Some(rule))
            .map(|f| dir.join(&f.file))
            .ok_or_else(|| {
                let known: Vec<&str> = files.iter().filter_map(|f| f.rule.as_deref()).collect();
                AppError::NotFound(format!(
                    "no rule `{rule}` in {}: the rules there are {}",
                    dir.display(),
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ))
            })
    }

    async fn validate_source(&self, path: &Path, text: String) -> Result<Validated, AppError> {
        let rule = parse(path, &text).map_err(AppError::Invalid)?;
        let mut resolved = rule.clone();
        self.resolve_packages(&mut resolved, path).await?;
        let described = self
            .describe_rule_ops(&resolved, &sluice_runner::rule_dir(path))
            .await?;
        // What each op takes: its `with:` checked against its input schema, at its place.
        let schemas: BTreeMap<String, sluice_rule::inputs::InputSchema> = described
            .iter()
            .filter_map(|(name, (info, _))| {
                sluice_rule::inputs::InputSchema::compile(&info.input_schema)
                    .ok()
                    .map(|s| (name.clone(), s.for_op(name.clone())))
            })
            .collect();
        let mut items = sluice_rule::inputs::check_rule_inputs(&rule, &schemas);
        let needs = described
            .into_iter()
            .map(|(name, (info, _))| (name, info.needs))
            .collect();
        for m in rule.missing_grants(&needs) {
            let op = m.split('`').nth(1).unwrap_or_default().to_string();
            let loc = rule
                .all_steps()
                .into_iter()
                .find(|(_, s)| matches!(&s.kind, StepKind::Op(c) if c.op == op))
                .map(|(_, s)| s.loc)
                .unwrap_or_default();
            let (message, hint) = m
                .split_once("does not grant: ")
                .map(|(a, b)| (format!("{a}does not grant"), Some(b.to_string())))
                .unwrap_or((m.clone(), None));
            items.push(Diagnostic { message, loc, hint });
        }
        if items.is_empty() {
            return Ok(Validated { rule });
        }
        items.sort_by_key(|i| (i.loc.line, i.loc.column));
        let d = Diagnostics {
            file: path.display().to_string(),
            text,
            items,
        };
        Err(AppError::Invalid(d))
    }

    /// Walks the rule at `path` with `params` and scripted outcomes (`STEP=OUTCOME[,...]`) and
    /// outputs (`STEP=JSON`); only `describe` is called, to learn which ops can undo.
    pub async fn simulate(
        &self,
        path: &Path,
        params: &[String],
        outcomes: &[String],
        outputs: &[String],
    ) -> Result<(Vec<SimLine>, JobStatus), AppError> {
        let mut rule = self.read_rule(path)?;
        let params = rule
            .bind_params(&split_params(params)?)
            .map_err(|errors| AppError::Usage(errors.join("\n")))?;
        let script = Script::parse(outcomes, outputs).map_err(AppError::Usage)?;
        for step in script.steps() {
            let id = step.strip_prefix("undo:").unwrap_or(step);
            if rule.step(id).is_none() {
                return Err(AppError::Usage(format!(
                    "--outcome/--output name step `{id}`, which the rule does not have"
                )));
            }
        }
        self.resolve_packages(&mut rule, path).await?;
        let described = self
            .describe_rule_ops(&rule, &sluice_runner::rule_dir(path))
            .await?;
        let ops = described
            .into_iter()
            .map(|(name, (info, digest))| {
                let meta = OpMeta {
                    digest,
                    can_rollback: info.can_rollback,
                    idempotent: info.idempotent,
                    needs: info.needs.iter().map(ToString::to_string).collect(),
                    templates: sluice_rule::expr::template_prefixes(&info.input_schema),
                };
                (name, meta)
            })
            .collect();
        sluice_engine::simulate(&rule, params, ops, &script).map_err(AppError::Internal)
    }

    /// Loads every op `rule` calls (files resolved against `dir`) and calls its `describe`:
    /// the op's own account of itself, and its sha256. No op runs.
    async fn describe_rule_ops(
        &self,
        rule: &Rule,
        dir: &Path,
    ) -> Result<BTreeMap<String, (sluice_model::OpInfo, String)>, AppError> {
        let runtime = self.runtime()?;
        let mut out = BTreeMap::new();
        for name in rule.op_names() {
            let bytes = match rule.ops.get(&name) {
                Some(OpSource::Path(p)) => std::fs::read(dir.join(p)).map_err(|e| {
                    AppError::Load(format!(
                        "op `{name}`: cannot read {}: {e}",
                        dir.join(p).display()
                    ))
                })?,
                Some(OpSource::Package(r)) => {
                    return Err(AppError::Internal(format!(
                        "op `{name}`: package {r} was not resolved"
                    )));
                }
                None => sluice_std_ops::std_op(&name)
                    .map(|o| o.wasm.to_vec())
                    .unwrap_or_default(),
            };
            let (op, _) = runtime
                .load(&bytes)
                .map_err(|e| AppError::Load(format!("op `{name}`: {e}")))?;
            let info = runtime
                .describe(&op)
                .await
                .map_err(|e| AppError::Load(format!("op `{name}`: {e}")))?;
            out.insert(name, (info, op.digest().to_string()));
        }
        Ok(out)
    }
}
