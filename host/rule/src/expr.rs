//! Expressions: `${{ ... }}` in `with:` values, names, and `when:` conditions.
//!
//! One small language for both: minijinja *expressions* (no statements, no loops, no macros, so
//! nothing Turing-complete), evaluated with strict undefined names. The context has three roots:
//! `params`, `job` (`id`, `rule`, `started_by`, `status`) and `steps.<id>` (`outcome`, `output`).
//!
//! A string that is exactly one `${{ e }}` takes the value of `e` with its type (a number stays
//! a number, an object an object); a string with text around expressions is interpolated.

use minijinja::{Environment, UndefinedBehavior};
use serde_json::Value;

/// The fields of `job` an expression may read.
pub const JOB_FIELDS: &[&str] = &["id", "rule", "started_by", "status"];
/// The fields of `steps.<id>` an expression may read.
pub const STEP_FIELDS: &[&str] = &["outcome", "output", "message", "decision"];

/// Rewrites `steps.ID` where `ID` holds a `-` (as GitHub Actions reads it) to `steps["ID"]`,
/// since minijinja would read the `-` as a minus.
pub fn normalize(expr: &str) -> std::borrow::Cow<'_, str> {
    if !expr.contains("steps.") {
        return expr.into();
    }
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    let mut out = String::new();
    let mut rest = expr;
    let mut changed = false;
    while let Some(i) = rest.find("steps.") {
        let prev = if i > 0 {
            rest[..i].chars().last()
        } else {
            out.chars().last()
        };
        let before_ok = !prev.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
        out.push_str(&rest[..i]);
        let after = &rest[i + 6..];
        let len = after.find(|c: char| !ident(c)).unwrap_or(after.len());
        let id = after[..len].trim_end_matches('-');
        if before_ok && id.contains('-') {
            out.push_str(&format!("steps[\"{id}\"]"));
            rest = &after[id.len()..];
            changed = true;
        } else {
            out.push_str("steps.");
            rest = after;
        }
    }
    out.push_str(rest);
    if changed { out.into() } else { expr.into() }
}

/// The step ids an expression reads as `steps.ID` (dashes included).
pub fn step_refs(expr: &str) -> Vec<String> {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("steps.") {
        let boundary = i == 0
            || !rest[..i]
                .chars()
                .last()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
        let after = &rest[i + 6..];
        let len = after.find(|c: char| !ident(c)).unwrap_or(after.len());
        let id = after[..len].trim_end_matches('-');
        if boundary && !id.is_empty() {
            out.push(id.to_string());
        }
        rest = &after[len..];
    }
    out
}

/// Compiles and evaluates expressions.
pub struct Evaluator {
    env: Environment<'static>,
}

impl Default for Evaluator {
    fn default() -> Self {
        Self::new()
    }
}

/// One `${{ ... }}` found in a string: byte range of the whole and its inner text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found<'a> {
    /// Start of `${{`.
    pub start: usize,
    /// End, after `}}`.
    pub end: usize,
    /// The expression between the braces, trimmed.
    pub expr: &'a str,
}

/// Every `${{ ... }}` in `s`, or an error for an unclosed one.
pub fn find(s: &str) -> Result<Vec<Found<'_>>, String> {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(rel) = s[at..].find("${{") {
        let start = at + rel;
        let Some(close) = s[start + 3..].find("}}") else {
            return Err("`${{` is never closed: end the expression with `}}`".to_string());
        };
        let end = start + 3 + close + 2;
        out.push(Found {
            start,
            end,
            expr: s[start + 3..start + 3 + close].trim(),
        });
        at = end;
    }
    Ok(out)
}

impl Evaluator {
    /// An evaluator with minijinja's built-in filters and tests and strict undefined names.
    pub fn new() -> Self {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        Evaluator { env }
    }

    /// Compiles `expr` and returns the names it reads, as dotted paths (`params.env`).
    pub fn names(&self, expr: &str) -> Result<Vec<String>, String> {
        if expr.is_empty() {
            return Err("empty expression".to_string());
        }
        let compiled = self
            .env
            .compile_expression_owned(normalize(expr).into_owned())
            .map_err(|e| describe(&e))?;
        let mut names: Vec<String> = compiled.undeclared_variables(true).into_iter().collect();
        names.sort();
        Ok(names)
    }

    /// Evaluates `expr` against `ctx`.
    pub fn eval(&self, expr: &str, ctx: &Value) -> Result<Value, String> {
        let compiled = self
            .env
            .compile_expression_owned(normalize(expr).into_owned())
            .map_err(|e| describe(&e))?;
        let v = compiled
            .eval(minijinja::Value::from(minijinja::value::Serde(ctx)))
            .map_err(|e| describe(&e))?;
        if v.is_undefined() {
            return Err(format!("`{expr}` is undefined"));
        }
        serde_json::to_value(&v).map_err(|e| format!("`{expr}` gave a value that is not JSON: {e}"))
    }

    /// Renders a `with:` value: expressions inside strings are evaluated, recursively.
    pub fn render(&self, template: &Value, ctx: &Value) -> Result<Value, String> {
        Ok(match template {
            Value::String(s) => self.render_str(s, ctx)?,
            Value::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|v| self.render(v, ctx))
                    .collect::<Result<_, _>>()?,
            ),
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| Ok((k.clone(), self.render(v, ctx)?)))
                    .collect::<Result<_, String>>()?,
            ),
            other => other.clone(),
        })
    }

    /// Renders one string: typed when it is exactly one expression, else interpolated text.
    pub fn render_str(&self, s: &str, ctx: &Value) -> Result<Value, String> {
        let found = find(s)?;
        if found.is_empty() {
            return Ok(Value::String(s.to_string()));
        }
        if found.len() == 1 && found[0].start == 0 && found[0].end == s.len() {
            return self.eval(found[0].expr, ctx);
        }
        let mut out = String::new();
        let mut at = 0;
        for f in &found {
            out.push_str(&s[at..f.start]);
            match self.eval(f.expr, ctx)? {
                Value::String(v) => out.push_str(&v),
                Value::Null => {}
                v => out.push_str(&v.to_string()),
            }
            at = f.end;
        }
        out.push_str(&s[at..]);
        Ok(Value::String(out))
    }

    /// Evaluates a `when:` condition (`${{ e }}` or a bare expression) to true or false.
    pub fn condition(&self, cond: &str, ctx: &Value) -> Result<bool, String> {
        let expr = condition_expr(cond)?;
        let compiled = self
            .env
            .compile_expression_owned(normalize(expr).into_owned())
            .map_err(|e| describe(&e))?;
        let v = compiled
            .eval(minijinja::Value::from(minijinja::value::Serde(ctx)))
            .map_err(|e| describe(&e))?;
        Ok(v.is_true())
    }
}

/// The expression of a `when:` string: the inside of a lone `${{ }}`, or the whole string.
pub fn condition_expr(cond: &str) -> Result<&str, String> {
    let found = find(cond)?;
    match found.as_slice() {
        [] => Ok(cond.trim()),
        [f] if cond[..f.start].trim().is_empty() && cond[f.end..].trim().is_empty() => Ok(f.expr),
        _ => {
            Err("a condition is one expression: write `${{ a and b }}`, not text around it".into())
        }
    }
}

fn describe(e: &minijinja::Error) -> String {
    let mut s = match e.detail() {
        Some(d) => format!("{}: {d}", kind_text(e)),
        None => kind_text(e),
    };
    if s.is_empty() {
        s = e.to_string();
    }
    s
}

fn kind_text(e: &minijinja::Error) -> String {
    use minijinja::ErrorKind::*;
    match e.kind() {
        SyntaxError => "syntax error".into(),
        UndefinedError => "undefined value".into(),
        InvalidOperation => "invalid operation".into(),
        UnknownFilter => "unknown filter".into(),
        UnknownTest => "unknown test".into(),
        UnknownFunction => "unknown function".into(),
        _ => e.kind().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx() -> Value {
        json!({
            "params": { "env": "production", "replicas": 3 },
            "job": { "id": "web-7", "status": "running" },
            "steps": { "canary": { "outcome": "warning", "output": { "score": 87.5 } } }
        })
    }

    #[test]
    fn a_lone_expression_keeps_its_type() {
        let ev = Evaluator::new();
        assert_eq!(
            ev.render_str("${{ params.replicas }}", &ctx()).unwrap(),
            json!(3)
        );
        assert_eq!(
            ev.render_str("${{ steps.canary.output }}", &ctx()).unwrap(),
            json!({"score": 87.5})
        );
    }

    #[test]
    fn text_around_expressions_is_interpolated() {
        let ev = Evaluator::new();
        let v = ev.render(
            &json!({"msg": "deploy ${{ job.id }} to ${{ params.env }} x${{ params.replicas }}"}),
            &ctx(),
        );
        assert_eq!(v.unwrap(), json!({"msg": "deploy web-7 to production x3"}));
    }

    #[test]
    fn conditions() {
        let ev = Evaluator::new();
        assert!(
            ev.condition("${{ params.env == 'production' }}", &ctx())
                .unwrap()
        );
        assert!(
            !ev.condition("steps.canary.outcome == 'success'", &ctx())
                .unwrap()
        );
        assert!(ev.condition("a ${{ x }} b", &ctx()).is_err());
    }

    #[test]
    fn undefined_names_fail_at_evaluation() {
        let ev = Evaluator::new();
        let e = ev.render_str("${{ params.nope }}", &ctx()).unwrap_err();
        assert!(e.contains("undefined"), "{e}");
    }

    #[test]
    fn names_are_dotted_paths() {
        let ev = Evaluator::new();
        assert_eq!(
            ev.names("params.env == 'x' and steps.canary.outcome != 'failure'")
                .unwrap(),
            ["params.env", "steps.canary.outcome"]
        );
        assert!(ev.names("params.env ==").is_err());
    }

    #[test]
    fn step_ids_with_dashes_read_as_github_does() {
        assert_eq!(
            normalize("steps.deploy-canary.output.image"),
            "steps[\"deploy-canary\"].output.image"
        );
        assert_eq!(normalize("steps.a.output - 1"), "steps.a.output - 1");
        assert_eq!(
            step_refs("steps.deploy-canary.outcome == 'x' and steps.b.output"),
            ["deploy-canary", "b"]
        );
        let ctx = json!({"steps": {"deploy-canary": {"output": {"image": "web:2"}}}});
        assert_eq!(
            Evaluator::new()
                .render_str("${{ steps.deploy-canary.output.image }}", &ctx)
                .unwrap(),
            json!("web:2")
        );
    }

    #[test]
    fn unclosed_expression_is_an_error() {
        assert!(find("a ${{ b").is_err());
        assert_eq!(find("x ${{ a }} y").unwrap()[0].expr, "a");
    }
}
