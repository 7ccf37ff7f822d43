//! `evaluate`: a Keptn-style quality gate. Each objective reads a number (a value, usually an
//! earlier step's output, or an HTTP JSON query such as Prometheus'), checks it against pass
//! and warning criteria, and scores its weight (full on pass, half on warning). The total
//! score against the thresholds gives success, warning or failure; a failing key objective
//! fails the gate whatever the score.
use serde::{Deserialize, Serialize};
use sluice_op::action::HttpSpec;
use sluice_op::schemars::{self, JsonSchema};
use sluice_op::serde_json::{self, Value};
use sluice_op::{Context, Error, Op, Outcome, export_op};

/// The input of `evaluate`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Input {
    /// The objectives (SLOs).
    objectives: Vec<Objective>,
    /// Score thresholds in percent: `{ pass: 90, warning: 75 }` (the defaults).
    #[serde(default)]
    total: Option<Total>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Objective {
    /// The SLI's name, such as `error-rate` or `p95-latency`.
    name: String,
    /// The measured value: a number, or text holding one.
    #[serde(default)]
    value: Option<Value>,
    /// Or: an HTTP query and a JSON pointer to the number in its answer.
    #[serde(default)]
    query: Option<Query>,
    /// Criteria that all must hold to pass: `"<= 0.01"`, or a list such as `[">= 0", "< 600"]`.
    pass: Criteria,
    /// Criteria that all must hold to earn a warning (half the weight) when `pass` fails.
    #[serde(default)]
    warning: Option<Criteria>,
    /// How much the objective counts; 1 when not set.
    #[serde(default = "one")]
    weight: f64,
    /// A key objective failing fails the gate whatever the total.
    #[serde(default)]
    key: bool,
}

fn one() -> f64 {
    1.0
}

#[derive(Deserialize, JsonSchema)]
#[serde(untagged)]
enum Criteria {
    One(String),
    All(Vec<String>),
}

impl Criteria {
    fn list(&self) -> Vec<&str> {
        match self {
            Criteria::One(s) => vec![s.as_str()],
            Criteria::All(v) => v.iter().map(String::as_str).collect(),
        }
    }

    fn holds(&self, x: f64) -> Result<bool, String> {
        for c in self.list() {
            if !criterion(c, x)? {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Query {
    http: HttpSpec,
    /// Where the number is, e.g. `/data/result/0/value/1` for a Prometheus instant query.
    pointer: String,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Total {
    pass: f64,
    warning: f64,
}

/// The output of `evaluate`.
#[derive(Serialize, Deserialize, JsonSchema)]
struct Output {
    /// `pass`, `warning` or `fail`.
    result: String,
    /// Points earned over points possible, in percent.
    score: f64,
    objectives: Vec<Scored>,
}

#[derive(Serialize, Deserialize, JsonSchema)]
struct Scored {
    name: String,
    value: Option<f64>,
    /// `pass`, `warning` or `fail`.
    result: String,
    /// Points earned.
    score: f64,
    weight: f64,
    key: bool,
    /// The criteria, or why there is no value.
    message: String,
}

struct Evaluate;

impl Op for Evaluate {
    type Input = Input;
    type Output = Output;
    const NAME: &'static str = "evaluate";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str =
        "A quality gate: scores objectives against pass and warning criteria, Keptn style";
    const IDEMPOTENT: bool = true;

    fn run(_ctx: &Context, input: Input) -> Result<Outcome<Output>, Error> {
        if input.objectives.is_empty() {
            return Err(Error::new("`objectives` is empty: give at least one"));
        }
        let (pass_at, warn_at) = input
            .total
            .as_ref()
            .map_or((90.0, 75.0), |t| (t.pass, t.warning));
        let mut scored = Vec::new();
        for o in &input.objectives {
            scored.push(score(o).map_err(Error::new)?);
        }
        let possible: f64 = scored.iter().map(|s| s.weight).sum();
        let earned: f64 = scored.iter().map(|s| s.score).sum();
        let score = if possible > 0.0 {
            earned / possible * 100.0
        } else {
            0.0
        };
        let score = (score * 100.0).round() / 100.0;
        let key_failed: Vec<String> = scored
            .iter()
            .filter(|s| s.key && s.result == "fail")
            .map(|s| s.name.clone())
            .collect();
        let result = if !key_failed.is_empty() || score < warn_at {
            "fail"
        } else if score < pass_at {
            "warning"
        } else {
            "pass"
        };
        for s in &scored {
            sluice_op::log::info(&format!(
                "{}: {} = {} ({}, {} of {} points)",
                s.result,
                s.name,
                s.value.map_or("none".into(), |v| v.to_string()),
                s.message,
                s.score,
                s.weight
            ));
        }
        let out = Output {
            result: result.into(),
            score,
            objectives: scored,
        };
        match result {
            "pass" => Ok(Outcome::Success(out)),
            "warning" => {
                sluice_op::log::warn(&format!(
                    "score {score}% is under the pass threshold of {pass_at}%"
                ));
                Ok(Outcome::Warning(out))
            }
            _ => {
                let why = if key_failed.is_empty() {
                    format!("score {score}% is under the warning threshold of {warn_at}%")
                } else {
                    format!(
                        "key objective {} failed (score {score}%)",
                        key_failed.join(", ")
                    )
                };
                let details = serde_json::to_value(&out).unwrap_or(Value::Null);
                Err(Error::new(format!("quality gate failed: {why}")).with_details(details))
            }
        }
    }
}

fn score(o: &Objective) -> Result<Scored, String> {
    if o.weight < 0.0 {
        return Err(format!(
            "objective `{}`: a weight cannot be negative",
            o.name
        ));
    }
    let mut s = Scored {
        name: o.name.clone(),
        value: None,
        result: "fail".into(),
        score: 0.0,
        weight: o.weight,
        key: o.key,
        message: String::new(),
    };
    let value = match (&o.value, &o.query) {
        (Some(v), None) => number(v),
        (None, Some(q)) => query(q),
        _ => {
            return Err(format!(
                "objective `{}` needs exactly one of `value` or `query`",
                o.name
            ));
        }
    };
    let x = match value {
        Ok(x) => x,
        Err(e) => {
            s.message = e;
            return Ok(s);
        }
    };
    s.value = Some(x);
    let pass = o
        .pass
        .holds(x)
        .map_err(|e| format!("objective `{}`: {e}", o.name))?;
    let warn = match &o.warning {
        Some(w) if !pass => w
            .holds(x)
            .map_err(|e| format!("objective `{}`: {e}", o.name))?,
        _ => false,
    };
    s.message = format!("pass {}", o.pass.list().join(" and "));
    if pass {
        s.result = "pass".into();
        s.score = o.weight;
    } else if warn {
        s.result = "warning".into();
        s.score = o.weight / 2.0;
    }
    Ok(s)
}

fn number(v: &Value) -> Result<f64, String> {
    match v {
        Value::Number(n) => n.as_f64().ok_or_else(|| format!("{n} is not a number")),
        Value::String(s) => s
            .trim()
            .parse()
            .map_err(|_| format!("`{s}` is not a number")),
        Value::Array(a) if a.len() == 1 => number(&a[0]),
        other => Err(format!("{other} is not a number")),
    }
}

fn query(q: &Query) -> Result<f64, String> {
    let r = q.http.send_ok().map_err(|e| e.message)?;
    let doc: Value = serde_json::from_slice(&r.body)
        .map_err(|e| format!("{} did not answer JSON: {e}", q.http.url))?;
    let v = doc
        .pointer(&q.pointer)
        .ok_or_else(|| format!("{} is not in the answer of {}", q.pointer, q.http.url))?;
    number(v)
}

/// `"<= 0.01"`, `"<600"`, `"> 0"`, `">= 99.5"`, `"= 0"`, `"!= 0"`.
fn criterion(c: &str, x: f64) -> Result<bool, String> {
    let c = c.trim();
    let (op, rest) = ["<=", ">=", "!=", "==", "<", ">", "="]
        .iter()
        .find_map(|op| c.strip_prefix(op).map(|r| (*op, r)))
        .ok_or_else(|| {
            format!("`{c}` is not a criterion: write <= 0.01, < 600, >= 99, = 0 or != 0")
        })?;
    let rest = rest.trim();
    let y: f64 = rest
        .parse()
        .map_err(|_| format!("`{c}`: `{rest}` is not a number"))?;
    Ok(match op {
        "<=" => x <= y,
        ">=" => x >= y,
        "<" => x < y,
        ">" => x > y,
        "!=" => x != y,
        _ => x == y,
    })
}

export_op!(Evaluate);
