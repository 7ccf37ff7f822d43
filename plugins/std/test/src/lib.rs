//! `test`: smoke and health checks after a deploy. HTTP checks (status, body contains, a JSON
//! pointer equals, latency with warning and failure thresholds) and command checks (exit
//! code, output contains). Any failed check fails the step; a slow-but-working one warns.
use std::time::Instant;

use serde::{Deserialize, Serialize};
use sluice_op::action::{CommandSpec, HttpSpec};
use sluice_op::schemars::{self, JsonSchema};
use sluice_op::serde_json::{self, Value};
use sluice_op::{Context, Duration, Error, Op, Outcome, export_op};

/// The input of `test`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Input {
    /// The checks, run in order; all run even when one fails.
    checks: Vec<Check>,
}

/// One check: exactly one of `http` or `command`, with what to expect.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Check {
    /// A name for reports; the URL or command otherwise.
    #[serde(default)]
    name: Option<String>,
    /// Send this request.
    #[serde(default)]
    http: Option<HttpSpec>,
    /// Run this granted program.
    #[serde(default)]
    command: Option<CommandSpec>,
    /// Expected HTTP status: a code or a list of codes (any 2xx when not set).
    #[serde(default)]
    status: Option<Value>,
    /// Expected exit code of a command (0 when not set).
    #[serde(default)]
    exit_code: Option<i32>,
    /// Text the response body or the command's stdout must contain.
    #[serde(default)]
    contains: Option<String>,
    /// A JSON pointer into the response body (or stdout) and the value it must equal.
    #[serde(default)]
    json: Option<JsonExpect>,
    /// Latency thresholds: warn above `warn`, fail above `fail` (`200ms`, `1s`).
    #[serde(default)]
    latency: Option<Latency>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct JsonExpect {
    /// RFC 6901 pointer, such as `/status` or `/items/0/version`.
    pointer: String,
    /// The value expected there.
    equals: Value,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Latency {
    /// Warn when slower than this.
    #[serde(default)]
    warn: Option<Duration>,
    /// Fail when slower than this.
    #[serde(default)]
    fail: Option<Duration>,
}

/// The output of `test`: one result per check, and counts.
#[derive(Serialize, Deserialize, JsonSchema)]
struct Output {
    passed: u32,
    warned: u32,
    failed: u32,
    checks: Vec<CheckResult>,
}

#[derive(Serialize, Deserialize, JsonSchema)]
struct CheckResult {
    name: String,
    /// `pass`, `warn` or `fail`.
    result: String,
    /// Why it warned or failed; empty when it passed.
    message: String,
    latency_ms: u64,
    /// The HTTP status or the exit code.
    #[serde(default)]
    code: Option<i64>,
}

struct Test;

impl Op for Test {
    type Input = Input;
    type Output = Output;
    const NAME: &'static str = "test";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str =
        "Runs HTTP and command checks: status, body, JSON values, latency; warns or fails";
    const IDEMPOTENT: bool = true;

    fn run(_ctx: &Context, input: Input) -> Result<Outcome<Output>, Error> {
        if input.checks.is_empty() {
            return Err(Error::new(
                "`checks` is empty: give at least one http or command check",
            ));
        }
        let mut out = Output {
            passed: 0,
            warned: 0,
            failed: 0,
            checks: Vec::new(),
        };
        for (i, check) in input.checks.iter().enumerate() {
            let r = run_check(i, check);
            match r.result.as_str() {
                "pass" => out.passed += 1,
                "warn" => {
                    out.warned += 1;
                    sluice_op::log::warn(&format!("{}: {}", r.name, r.message));
                }
                _ => {
                    out.failed += 1;
                    sluice_op::log::error(&format!("{}: {}", r.name, r.message));
                }
            }
            out.checks.push(r);
        }
        let total = out.checks.len();
        if out.failed > 0 {
            let failed: Vec<String> = out
                .checks
                .iter()
                .filter(|c| c.result == "fail")
                .map(|c| format!("{}: {}", c.name, c.message))
                .collect();
            let details = serde_json::to_value(&out).unwrap_or(Value::Null);
            return Err(Error::new(format!(
                "{} of {total} checks failed: {}",
                out.failed,
                failed.join("; ")
            ))
            .with_details(details));
        }
        sluice_op::log::info(&format!(
            "{} of {total} checks passed, {} warned",
            out.passed, out.warned
        ));
        Ok(if out.warned > 0 {
            Outcome::Warning(out)
        } else {
            Outcome::Success(out)
        })
    }
}

fn run_check(i: usize, c: &Check) -> CheckResult {
    let name = c
        .name
        .clone()
        .unwrap_or_else(|| match (&c.http, &c.command) {
            (Some(h), _) => format!("{} {}", h.method, h.url),
            (_, Some(cmd)) => cmd.display(),
            _ => format!("check {}", i + 1),
        });
    let start = Instant::now();
    let got = match (&c.http, &c.command) {
        (Some(h), None) => h.send().map(|r| (i64::from(r.status), r.text(), true)),
        (None, Some(cmd)) => cmd.run().map(|s| {
            (
                i64::from(s.code.unwrap_or(-1)),
                String::from_utf8_lossy(&s.stdout).into_owned(),
                false,
            )
        }),
        _ => Err(Error::new("a check has exactly one of `http` or `command`")),
    };
    let latency_ms = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
    let mut result = CheckResult {
        name,
        result: "pass".into(),
        message: String::new(),
        latency_ms,
        code: None,
    };
    let (code, body, is_http) = match got {
        Ok(g) => g,
        Err(e) => {
            result.result = "fail".into();
            result.message = e.message;
            return result;
        }
    };
    result.code = Some(code);
    match expect(c, code, &body, is_http, latency_ms) {
        Ok(None) => {}
        Ok(Some(warning)) => {
            result.result = "warn".into();
            result.message = warning;
        }
        Err(failure) => {
            result.result = "fail".into();
            result.message = failure;
        }
    }
    result
}

/// `Err(why)` when the check fails, `Ok(Some(why))` when it only warns.
fn expect(
    c: &Check,
    code: i64,
    body: &str,
    is_http: bool,
    ms: u64,
) -> Result<Option<String>, String> {
    if is_http {
        let allowed: Vec<i64> = match &c.status {
            None => Vec::new(),
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_i64).collect(),
            Some(v) => v.as_i64().into_iter().collect(),
        };
        let ok = if allowed.is_empty() {
            (200..300).contains(&code)
        } else {
            allowed.contains(&code)
        };
        if !ok {
            let want = if allowed.is_empty() {
                "2xx".to_string()
            } else {
                format!("{allowed:?}")
            };
            return Err(format!("status {code}, expected {want}"));
        }
    } else {
        let want = i64::from(c.exit_code.unwrap_or(0));
        if code != want {
            return Err(format!("exit code {code}, expected {want}"));
        }
    }
    if let Some(text) = &c.contains
        && !body.contains(text.as_str())
    {
        let cut: String = body.chars().take(120).collect();
        return Err(format!(
            "output does not contain `{text}` (starts: {:?})",
            cut.trim()
        ));
    }
    if let Some(j) = &c.json {
        let doc: Value =
            serde_json::from_str(body).map_err(|e| format!("output is not JSON: {e}"))?;
        match doc.pointer(&j.pointer) {
            Some(v) if same(v, &j.equals) => {}
            Some(v) => return Err(format!("{} is {v}, expected {}", j.pointer, j.equals)),
            None => return Err(format!("{} is not in the output", j.pointer)),
        }
    }
    if let Some(l) = &c.latency {
        let fail = l.fail.map(|d| d.as_millis());
        let warn = l.warn.map(|d| d.as_millis());
        if let Some(f) = fail
            && ms > f
        {
            return Err(format!(
                "took {ms} ms, over the failure threshold of {f} ms"
            ));
        }
        if let Some(w) = warn
            && ms > w
        {
            return Ok(Some(format!(
                "took {ms} ms, over the warning threshold of {w} ms"
            )));
        }
    }
    Ok(None)
}

/// Equal, where a number or boolean and its text (`"200"` and `200`) count as the same.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::String(s), other) | (other, Value::String(s)) if !other.is_string() => {
            s.as_str() == other.to_string().as_str()
        }
        _ => a == b,
    }
}

export_op!(Test);
