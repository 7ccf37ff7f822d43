//! Expressions: `${{ ... }}` in `with:` values, names, and `when:` conditions.
//!
//! One small language for both: minijinja *expressions* (no statements, no loops, no macros, so
//! nothing Turing-complete), evaluated with strict undefined names. The context has three roots:
//! `params`, `job` (`id`, `rule`, `started_by`, `status`) and `steps.<id>` (`outcome`, `output`).
//!
//! A string that is exactly one `${{ e }}` takes the value of `e` with its type (a number stays
//! a number, an object an object); a string with text around expressions is interpolated.
//!
//! One evaluation is bounded (see [`limits`](self::limits)): at most [`FUEL`] instructions,
//! [`MAX_WORK`] bytes of intermediate data, and a rendered value of at most
//! [`MAX_VALUE_BYTES`]; a step's whole rendered input at most [`MAX_INPUT_BYTES`] from
//! expressions. Going over fails the evaluation with `expression ... exceeds the limit ...`.
//!
//! Brace templates: an op whose input holds `{name}` placeholders that it substitutes itself
//! (`deploy`'s `{revision}`) names those parts of its input in its schema
//! ([`template_prefixes`]); [`Evaluator::render_templated`] then escapes `{` and `}` as `{{` and
//! `}}` in what expressions put there, so a param arrives verbatim.

use std::borrow::Cow;

use minijinja::{Environment, UndefinedBehavior};
use serde_json::Value;

mod limits;
pub use limits::{FUEL, MAX_INPUT_BYTES, MAX_VALUE_BYTES, MAX_WORK};

/// The fields of `job` an expression may read.
pub const JOB_FIELDS: &[&str] = &["id", "rule", "started_by", "status"];
/// The fields of `steps.<id>` an expression may read.
pub const STEP_FIELDS: &[&str] = &["outcome", "output", "message", "decision"];

/// Rewrites `steps.ID` where `ID` holds a `-` (as GitHub Actions reads it) to `steps["ID"]`,
/// since minijinja would read the `-` as a minus.
pub fn normalize(expr: &str) -> Cow<'_, str> {
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

/// Refuses a character no expression uses outside a string. minijinja's expression parser
/// stops at one without a word once what comes before is a whole expression, so
/// `a == 1 && b` would be read as `a == 1`: a condition that says something else than it
/// was written to.
fn stray_character(expr: &str) -> Result<(), ExprError> {
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (i, c) in expr.char_indices() {
        if let Some(q) = quote {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                _ if c == q => quote = None,
                _ => {}
            }
            continue;
        }
        // ASCII only: the parser reads no other letter or space outside strings either (a
        // pasted non-breaking space would end the expression as silently as `&`).
        let fine = c.is_ascii_alphanumeric()
            || c.is_ascii_whitespace()
            || "_.,:()[]{}+-*/%~|=!<>".contains(c);
        match c {
            '\'' | '"' => quote = Some(c),
            _ if fine => {}
            '&' => {
                return Err(ExprError::Invalid(
                    "`&` is not an operator in expressions: write `and` (and `or`, `not` for `||`, `!`)"
                        .to_string(),
                ));
            }
            _ => {
                let at = expr[..i].chars().count() + 1;
                let shown = if c.is_whitespace() || c.is_control() {
                    format!("U+{:04X}", c as u32)
                } else {
                    c.to_string()
                };
                return Err(ExprError::Invalid(format!(
                    "unexpected `{shown}` at character {at} of `{}`: expressions use and, or, not, ==, !=, <, >, +, -, *, /, ~ and |filters",
                    cut(expr)
                )));
            }
        }
    }
    Ok(())
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

/// Why an expression could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExprError {
    /// `${{` without its `}}`.
    #[error("`${{{{` is never closed: end the expression with `}}}}`")]
    Unclosed,
    /// `${{ }}` with nothing inside.
    #[error("empty expression")]
    Empty,
    /// A `when:` with text around its expression.
    #[error("a condition is one expression: write `${{{{ a and b }}}}`, not text around it")]
    NotOneCondition,
    /// It evaluated to nothing.
    #[error("`{0}` is undefined")]
    Undefined(String),
    /// It evaluated to something JSON cannot hold.
    #[error("`{expr}` gave a value that is not JSON: {detail}")]
    NotJson {
        /// The expression.
        expr: String,
        /// Why.
        detail: String,
    },
    /// It passed a resource bound (the message names the limit).
    #[error("{0}")]
    TooBig(String),
    /// It does not parse, or failed while it ran (minijinja's account, made readable).
    #[error("{0}")]
    Invalid(String),
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
pub fn find(s: &str) -> Result<Vec<Found<'_>>, ExprError> {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(rel) = s[at..].find("${{") {
        let start = at + rel;
        let Some(close) = s[start + 3..].find("}}") else {
            return Err(ExprError::Unclosed);
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
    /// An evaluator with minijinja's built-in filters and tests, strict undefined names and
    /// the resource bounds of [`limits`](self::limits).
    pub fn new() -> Self {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        limits::install(&mut env);
        Evaluator { env }
    }

    /// Compiles `expr`, its growing operators rewritten into bounded calls first (so nothing
    /// big is folded while compiling either).
    fn compile(&self, expr: &str) -> Result<minijinja::Expression<'_, 'static>, ExprError> {
        stray_character(expr)?;
        let normalized = normalize(expr);
        let bounded = limits::rewrite(&normalized).map_err(|e| ExprError::Invalid(describe(&e)))?;
        self.env
            .compile_expression_owned(bounded.into_owned())
            .map_err(|e| ExprError::Invalid(describe(&e)))
    }

    /// Evaluates `expr` to a minijinja value within the bounds.
    fn run(&self, expr: &str, ctx: &Value) -> Result<minijinja::Value, ExprError> {
        let compiled = self.compile(expr)?;
        limits::start();
        compiled
            .eval(minijinja::Value::from(minijinja::value::Serde(ctx)))
            .map_err(|e| ExprError::Invalid(eval_error(expr, &e)))
    }

    /// Compiles `expr` and returns the names it reads, as dotted paths (`params.env`).
    pub fn names(&self, expr: &str) -> Result<Vec<String>, ExprError> {
        if expr.is_empty() {
            return Err(ExprError::Empty);
        }
        let compiled = self.compile(expr)?;
        let mut names: Vec<String> = compiled
            .undeclared_variables(true)
            .into_iter()
            .filter(|n| !limits::HELPERS.contains(&n.as_str()))
            .collect();
        names.sort();
        Ok(names)
    }

    /// Evaluates `expr` against `ctx`.
    pub fn eval(&self, expr: &str, ctx: &Value) -> Result<Value, ExprError> {
        self.eval_sized(expr, ctx).map(|(v, _)| v)
    }

    /// Evaluates `expr`, with the bytes of its value as JSON.
    fn eval_sized(&self, expr: &str, ctx: &Value) -> Result<(Value, usize), ExprError> {
        let v = self.run(expr, ctx)?;
        if v.is_undefined() {
            return Err(ExprError::Undefined(expr.to_string()));
        }
        match limits::to_json_within(&v, MAX_VALUE_BYTES) {
            Ok(Some(sized)) => Ok(sized),
            Ok(None) => Err(ExprError::TooBig(format!(
                "expression `{}` exceeds the limit of {} per rendered value: {TOO_BIG}",
                cut(expr),
                limits::bytes(MAX_VALUE_BYTES)
            ))),
            Err(e) => Err(ExprError::NotJson {
                expr: expr.to_string(),
                detail: e.to_string(),
            }),
        }
    }

    /// Renders a `with:` value: expressions inside strings are evaluated, recursively.
    pub fn render(&self, template: &Value, ctx: &Value) -> Result<Value, ExprError> {
        self.render_templated(template, ctx, &[])
    }

    /// Renders a `with:` value like [`Evaluator::render`], and where the op substitutes brace
    /// placeholders itself (under one of the JSON pointers `templates`, from
    /// [`template_prefixes`]) escapes `{` as `{{` and `}` as `}}` in every string that
    /// expressions produced there: interpolated text, and the strings of a lone expression's
    /// value. The rule's own text is left as written, so `{revision}` in it stays a placeholder
    /// and `{{` a literal brace, while a param such as `{revision}` reaches the op verbatim.
    pub fn render_templated(
        &self,
        template: &Value,
        ctx: &Value,
        templates: &[String],
    ) -> Result<Value, ExprError> {
        let mut r = Render {
            ev: self,
            ctx,
            templates,
            path: String::new(),
            produced: 0,
        };
        r.value(template)
    }

    /// Renders one string: typed when it is exactly one expression, else interpolated text.
    pub fn render_str(&self, s: &str, ctx: &Value) -> Result<Value, ExprError> {
        Render {
            ev: self,
            ctx,
            templates: &[],
            path: String::new(),
            produced: 0,
        }
        .string(s)
    }

    /// Evaluates a `when:` condition (`${{ e }}` or a bare expression) to true or false.
    pub fn condition(&self, cond: &str, ctx: &Value) -> Result<bool, ExprError> {
        let expr = condition_expr(cond)?;
        Ok(self.run(expr, ctx)?.is_true())
    }
}

/// What to do about a value too big for an expression.
const TOO_BIG: &str =
    "make it smaller, or hand large data to the op another way (a file in its workspace)";

/// `expr` for a message: its start, when long.
fn cut(expr: &str) -> Cow<'_, str> {
    const MAX: usize = 80;
    if expr.chars().count() <= MAX {
        return expr.into();
    }
    let start: String = expr.chars().take(MAX).collect();
    format!("{start}...").into()
}

/// The message of a failed evaluation: which limit it went over, or minijinja's error.
fn eval_error(expr: &str, e: &minijinja::Error) -> String {
    if let Some(limit) = limits::exceeded() {
        return format!("expression `{}` exceeds {limit}: {TOO_BIG}", cut(expr));
    }
    if e.kind() == minijinja::ErrorKind::OutOfFuel {
        return format!(
            "expression `{}` exceeds the limit of {FUEL} operations: make it shorter, or compute the value in an op",
            cut(expr)
        );
    }
    describe(e)
}

/// The root keyword of an op's input schema listing the JSON pointers under which its input's
/// strings are brace templates (`{"x-sluice-templates": ["/apply", "/rollback"]}`).
pub const TEMPLATES_KEYWORD: &str = "x-sluice-templates";

/// The JSON pointers an op's input schema (as `describe` gives it) names under
/// [`TEMPLATES_KEYWORD`]; none when the schema is not JSON or has no such list.
pub fn template_prefixes(input_schema_json: &str) -> Vec<String> {
    let Ok(schema) = serde_json::from_str::<Value>(input_schema_json) else {
        return Vec::new();
    };
    schema
        .get(TEMPLATES_KEYWORD)
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(Value::as_str)
                .filter(|p| p.is_empty() || p.starts_with('/'))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// `text` with `{` as `{{` and `}` as `}}`: literal braces for an op's template substitution.
pub fn escape_braces(text: &str) -> Cow<'_, str> {
    if !text.contains(['{', '}']) {
        return text.into();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '{' => out.push_str("{{"),
            '}' => out.push_str("}}"),
            c => out.push(c),
        }
    }
    out.into()
}

/// One rendering of a `with:` value: where it is (a JSON pointer) and how much expressions made.
struct Render<'a> {
    ev: &'a Evaluator,
    ctx: &'a Value,
    templates: &'a [String],
    path: String,
    produced: usize,
}

impl Render<'_> {
    fn value(&mut self, v: &Value) -> Result<Value, ExprError> {
        Ok(match v {
            Value::String(s) => self.string(s)?,
            Value::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    let len = self.path.len();
                    self.path.push_str(&format!("/{i}"));
                    out.push(self.value(item)?);
                    self.path.truncate(len);
                }
                Value::Array(out)
            }
            Value::Object(map) => {
                let mut out = serde_json::Map::new();
                for (k, item) in map {
                    let len = self.path.len();
                    self.path.push('/');
                    self.path.push_str(&k.replace('~', "~0").replace('/', "~1"));
                    out.insert(k.clone(), self.value(item)?);
                    self.path.truncate(len);
                }
                Value::Object(out)
            }
            other => other.clone(),
        })
    }

    /// Whether the string at `path` is part of one of the op's templates.
    fn templated(&self, path: &str) -> bool {
        self.templates.iter().any(|p| {
            path.strip_prefix(p.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        })
    }

    /// Counts `bytes` made by expressions against the whole input's limit.
    fn produce(&mut self, bytes: usize) -> Result<(), ExprError> {
        self.produced = self.produced.saturating_add(bytes);
        if self.produced > MAX_INPUT_BYTES {
            return Err(ExprError::TooBig(format!(
                "the expressions of this input exceed the limit of {} together: {TOO_BIG}",
                limits::bytes(MAX_INPUT_BYTES)
            )));
        }
        Ok(())
    }

    fn string(&mut self, s: &str) -> Result<Value, ExprError> {
        let found = find(s)?;
        if found.is_empty() {
            return Ok(Value::String(s.to_string()));
        }
        if found.len() == 1 && found[0].start == 0 && found[0].end == s.len() {
            let (mut v, bytes) = self.ev.eval_sized(found[0].expr, self.ctx)?;
            self.produce(bytes)?;
            if !self.templates.is_empty() {
                let mut path = self.path.clone();
                self.escape_under(&mut v, &mut path);
            }
            return Ok(v);
        }
        let templated = self.templated(&self.path);
        let mut out = String::new();
        let mut at = 0;
        for f in &found {
            out.push_str(&s[at..f.start]);
            let (v, _) = self.ev.eval_sized(f.expr, self.ctx)?;
            let text = match v {
                Value::String(v) => v,
                Value::Null => String::new(),
                v => v.to_string(),
            };
            self.produce(text.len())?;
            if templated {
                out.push_str(&escape_braces(&text));
            } else {
                out.push_str(&text);
            }
            if out.len() > MAX_VALUE_BYTES {
                return Err(ExprError::TooBig(format!(
                    "text with expressions `{}` exceeds the limit of {} per rendered value: {TOO_BIG}",
                    cut(s),
                    limits::bytes(MAX_VALUE_BYTES)
                )));
            }
            at = f.end;
        }
        out.push_str(&s[at..]);
        Ok(Value::String(out))
    }

    /// Escapes the strings of `v` (a lone expression's value, at `path`) that fall in a
    /// template. Object keys are names, not template text: left alone.
    fn escape_under(&self, v: &mut Value, path: &mut String) {
        match v {
            Value::String(s) => {
                if self.templated(path)
                    && let Cow::Owned(escaped) = escape_braces(s)
                {
                    *s = escaped;
                }
            }
            Value::Array(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    let len = path.len();
                    path.push_str(&format!("/{i}"));
                    self.escape_under(item, path);
                    path.truncate(len);
                }
            }
            Value::Object(map) => {
                for (k, item) in map.iter_mut() {
                    let len = path.len();
                    path.push('/');
                    path.push_str(&k.replace('~', "~0").replace('/', "~1"));
                    self.escape_under(item, path);
                    path.truncate(len);
                }
            }
            _ => {}
        }
    }
}

/// The expression of a `when:` string: the inside of a lone `${{ }}`, or the whole string.
pub fn condition_expr(cond: &str) -> Result<&str, ExprError> {
    let found = find(cond)?;
    match found.as_slice() {
        [] => Ok(cond.trim()),
        [f] if cond[..f.start].trim().is_empty() && cond[f.end..].trim().is_empty() => Ok(f.expr),
        _ => Err(ExprError::NotOneCondition),
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
    fn characters_the_parser_would_stop_at_are_refused_not_ignored() {
        let ev = Evaluator::new();
        for (cond, says) in [
            ("params.env == 'production' && false", "write `and`"),
            ("params.env == 'production' ; false", "unexpected `;`"),
            ("params.env == 'production' ? 1 : 2", "unexpected `?`"),
            ("params.env == 'production' # note", "unexpected `#`"),
            (
                "params.env == 'production'\u{a0}or true",
                "unexpected `U+00A0` at character 27",
            ),
        ] {
            let e = ev.condition(cond, &ctx()).unwrap_err().to_string();
            assert!(e.contains(says), "{cond}: {e}");
        }
        // Inside strings they are text.
        assert!(
            !ev.condition("params.env == 'a && b; c? #d \\' e'", &ctx())
                .unwrap()
        );
        assert!(ev.condition("'&' ~ \"?\" == '&?'", &ctx()).unwrap());
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
        let e = ev
            .render_str("${{ params.nope }}", &ctx())
            .unwrap_err()
            .to_string();
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

    /// Hostile expressions end at once, with the limit they went over.
    #[test]
    fn hostile_expressions_fail_naming_the_limit() {
        let ev = Evaluator::new();
        let work = "exceeds the limit of 8 MiB of intermediate data per expression";
        for (expr, what) in [
            ("[1]*100000000", "`*` would make about 1.5 GiB"),
            (
                "'x'|indent(1000000000)",
                "`indent` would make about 1.9 GiB",
            ),
            ("'x'|indent(width=1000000000)", "`indent`"),
            ("'x' * 100000000", "`*` would make about 95.4 MiB"),
            ("100000000 * ['x']", "`*`"),
            ("[[1] * 100000] * 100000", "`*`"),
            ("('x' * 3000000) ~ ('x' * 3000000)", "`~`"),
            ("[[1]*1000]*1000 ~ ''", "`~`"),
            ("('x' * 3000000) + ('x' * 3000000)", "`+`"),
            ("('x' * 1000)|replace('', 'x' * 10000)", "`replace`"),
            ("range(100000)|join('x' * 1000)", "`join`"),
            ("'%999999999d'|format(1)", "`format`"),
            ("'%.999999999f'|format(1.5)", "`format`"),
            ("range(10)|batch(1000000000, 'x')", "`batch`"),
            ("range(10)|slice(1000000000)", "`slice`"),
            ("([[1] * 1000] * 500)|sum(start=[])", "`sum`"),
            ("range(100000)|select('in', range(100000))", "`select`"),
            (
                "range(100000)|map('string')|map('indent', 1000)|list",
                "`indent`",
            ),
            ("[[[[[[[[[[range(100000)|list]]]]]]]]]]|pprint", "`pprint`"),
        ] {
            let e = ev.eval(expr, &ctx()).unwrap_err().to_string();
            assert!(
                e.starts_with(&format!("expression `{expr}` {work}")) && e.contains(what),
                "{expr}: {e}"
            );
        }
    }

    #[test]
    fn a_value_over_a_mebibyte_is_refused_when_rendered() {
        let ev = Evaluator::new();
        let e = ev.eval("'x' * 2000000", &ctx()).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "expression `'x' * 2000000` exceeds the limit of 1 MiB per rendered value: {TOO_BIG}"
            )
        );
        let e = ev.eval("range(100000)|list + range(100000)|list", &ctx());
        assert!(
            e.unwrap_err()
                .to_string()
                .contains("1 MiB per rendered value")
        );
        // Text around expressions counts too.
        let big = "${{ 'x' * 600000 }}";
        let e = ev
            .render_str(&format!("{big} {big}"), &ctx())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("exceeds the limit of 1 MiB per rendered value"),
            "{e}"
        );
        // And one input's expressions together.
        let many = json!({ "a": [big, big, big, big, big, big, big, big] });
        let e = ev.render(&many, &ctx()).unwrap_err().to_string();
        assert!(e.contains("exceed the limit of 4 MiB together"), "{e}");
        assert!(ev.eval("'x' * 1000000", &ctx()).is_ok());
    }

    #[test]
    fn fuel_bounds_the_number_of_operations() {
        let ev = Evaluator::new();
        let long = format!("[{}]", vec!["params.replicas"; 6000].join(", "));
        let e = ev.eval(&long, &ctx()).unwrap_err().to_string();
        assert!(e.ends_with("exceeds the limit of 10000 operations: make it shorter, or compute the value in an op"), "{e}");
        assert!(e.starts_with("expression `[params.replicas, "), "{e}");
        assert!(e.len() < 300, "the expression is quoted cut: {e}");
        let short = format!("[{}]", vec!["params.replicas"; 1000].join(", "));
        assert_eq!(
            ev.eval(&short, &ctx()).unwrap().as_array().unwrap().len(),
            1000
        );
    }

    #[test]
    fn the_budget_is_per_evaluation_and_ordinary_work_fits() {
        let ev = Evaluator::new();
        // About 4 MiB each: twice in a row is fine, the budget starts again.
        let e = "range(100000)|map('string')|join(',')|length";
        assert_eq!(ev.eval(e, &ctx()).unwrap(), json!(588889));
        assert_eq!(ev.eval(e, &ctx()).unwrap(), json!(588889));
        assert_eq!(
            ev.eval("'ab' * 3 ~ '-' ~ [1, 2] * 2", &ctx()).unwrap(),
            json!("ababab-[1, 2, 1, 2]")
        );
        assert_eq!(
            ev.eval("'a\nb'|indent(2, true)", &ctx()).unwrap(),
            json!("  a\n  b")
        );
        assert_eq!(
            ev.eval("'a\nb'|indent(width=3)", &ctx()).unwrap(),
            json!("a\n   b")
        );
        assert_eq!(
            ev.eval("'%s-%03d'|format('v', 7)", &ctx()).unwrap(),
            json!("v-007")
        );
        assert_eq!(ev.eval("[1, 2]|join(d='+')", &ctx()).unwrap(), json!("1+2"));
        assert!(
            ev.condition("(params.env ~ '!') * 2 == 'production!production!'", &ctx())
                .unwrap()
        );
    }

    #[test]
    fn debug_is_not_offered() {
        let e = Evaluator::new()
            .eval("debug()", &ctx())
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown function"), "{e}");
    }

    #[test]
    fn names_do_not_include_the_bounded_operators() {
        let ev = Evaluator::new();
        assert_eq!(
            ev.names("params.env ~ '-' ~ steps.canary.output * 2 + 1")
                .unwrap(),
            ["params.env", "steps.canary.output"]
        );
        // Checking a rule does not fold (and so allocate) constants any more.
        assert_eq!(ev.names("'x' * 100000000").unwrap(), Vec::<String>::new());
    }

    /// The rewriting of `*`, `+` and `~` into calls keeps every expression's meaning: each one
    /// gives what plain minijinja gives.
    #[test]
    fn bounded_operators_mean_what_minijinja_means() {
        let mut plain = Environment::new();
        plain.set_undefined_behavior(UndefinedBehavior::Strict);
        let ctx = json!({
            "params": { "n": 3, "s": "ab", "list": [1, 2, 3], "m": { "k": "v" }, "f": 1.5 },
            "steps": { "a-b": { "output": "out" } }
        });
        let ev = Evaluator::new();
        let (mut same, mut failed) = (0, 0);
        for expr in [
            "params.s ~ '-' ~ params.n",
            "(params.n + 1) * 2",
            "-params.n * 2",
            "-(params.n + 1)",
            "not (1 + params.n == 4)",
            "not params.n + 1 == 4",
            "[1, 2] + [3] * 2",
            "params.list + [4] + params.list",
            "{'a': params.n + 1, 'b': 'x' ~ 'y', params.s ~ 'k': 1}",
            "(1, 2) + (3,)",
            "((1,) * 2) ~ ''",
            "'ab' * 2 if params.n > 1 else 'c' ~ 'd'",
            "params.n * 2 if params.n > 5 else params.s ~ 'd'",
            "(params.s ~ 'x')|upper ~ 'y'",
            "params.s ~ 'x'|upper ~ 'y'",
            "(params.list + [4])|join(',')",
            "(params.list + [4])[1:3] ~ (params.list * 2)[::2] ~ params.list[1:] ~ params.list[:2]",
            "(params.list * 2)[0] + params.list.1",
            "params.s ~ params.list.0",
            "1 < params.n + 1 < 10",
            "1 < params.n + 1 > 10",
            "params.n + 1 is divisibleby 2",
            "params.n + 1 is divisibleby(3)",
            "(params.n + 1) is not even",
            "params.n ~ '' is string",
            "'x' ~ 1 in ['x1']",
            "'x' ~ 1 not in ['x1']",
            "range(3)|map('string')|join('-') ~ '!'",
            "dict(a=params.n + 2)",
            "dict(**params.m) ~ ''",
            "'%s'|format(params.n + 1)",
            "2 ** 3 * 2 + 2 ** 2",
            "10 // 3 + 10 % 3 - 1",
            "1 - 2 + 3 - 4 * 5",
            "'a' 'b' ~ 'c'",
            "\"q\\\"uote\" ~ 'it\\'s' ~ '\\n'",
            "1.5 * 2 + params.f",
            "true ~ none ~ false",
            "steps.a-b.output ~ 'x' * 2",
            "params.s|replace('a', 'b') * 2",
            "(params.n * 2)|string ~ 'x'",
            "params.m.items()|list ~ ''",
            "(params.m|items|list) ~ ''",
            "params.m['k'] ~ params.m.k",
            "params.list|map('string')|join ~ params.list|length * 2",
            "params.n * 2 and params.s ~ 'x' or 'z'",
            "[params.n * 2, (params.n + 1,), {'k': [1] * 2}]",
            "params.list|select('odd')|list + [0]",
            "range(params.n * 2)|list",
            "params.s * -1 ~ 'x'",
            "params.nope ~ 'x'",
            "'x' * 'y'",
            "[1] + 'x'",
        ] {
            let ours = ev.eval(expr, &ctx);
            let theirs = plain
                .compile_expression_owned(normalize(expr).into_owned())
                .and_then(|c| c.eval(minijinja::Value::from(minijinja::value::Serde(&ctx))))
                .map(|v| serde_json::to_value(&v).unwrap())
                .map_err(|e| describe(&e));
            match (&ours, &theirs) {
                (Ok(a), Ok(b)) => {
                    assert_eq!(a, b, "{expr}");
                    same += 1;
                }
                (Err(a), Err(b)) => {
                    assert_eq!(&a.to_string(), b, "{expr}");
                    failed += 1;
                }
                _ => panic!("{expr}: ours {ours:?}, minijinja {theirs:?}"),
            }
        }
        assert_eq!((same, failed), (48, 5));
    }

    #[test]
    fn template_prefixes_read_the_schema_keyword() {
        let schema =
            r#"{"type": "object", "x-sluice-templates": ["/apply", "/rollback", 3, "nope"]}"#;
        assert_eq!(template_prefixes(schema), ["/apply", "/rollback"]);
        assert!(template_prefixes(r#"{"type": "object"}"#).is_empty());
        assert!(template_prefixes("not json").is_empty());
        assert!(template_prefixes(r#"{"x-sluice-templates": "/apply"}"#).is_empty());
    }

    #[test]
    fn values_from_expressions_arrive_verbatim_in_brace_templates() {
        let ev = Evaluator::new();
        let ctx = json!({
            "params": {
                "v": "{revision}",
                "action": { "command": { "program": "echo", "args": ["{previous}", "}x{"] } },
                "n": 7,
                "whole": { "apply": "{a}", "revision": "{a}" }
            }
        });
        let templates = vec!["/apply".to_string(), "/rollback".to_string()];
        let with = json!({
            "revision": "${{ params.v }}",
            "apply": [
                { "command": { "program": "ln", "args": ["-sfn", "{revision}", "${{ params.v }}", "rel/${{ params.v }}/{previous}/{{x}}", "${{ params.n }}"] } },
                "${{ params.action }}"
            ],
            "applyx": "${{ params.v }}",
            "rollback": "${{ params.v }}-${{ params.n }}"
        });
        let got = ev.render_templated(&with, &ctx, &templates).unwrap();
        assert_eq!(
            got,
            json!({
                "revision": "{revision}",
                "apply": [
                    { "command": { "program": "ln", "args": ["-sfn", "{revision}", "{{revision}}", "rel/{{revision}}/{previous}/{{x}}", 7] } },
                    { "command": { "program": "echo", "args": ["{{previous}}", "}}x{{"] } }
                ],
                "applyx": "{revision}",
                "rollback": "{{revision}}-7"
            })
        );
        // A lone expression above a template: only its part inside the template is escaped.
        let got = ev
            .render_templated(&json!("${{ params.whole }}"), &ctx, &templates)
            .unwrap();
        assert_eq!(got, json!({ "apply": "{{a}}", "revision": "{a}" }));
        // Without templates, nothing is escaped.
        assert_eq!(
            ev.render(&with, &ctx).unwrap()["apply"][1]["command"]["args"][0],
            "{previous}"
        );
        // Keys with `/` and `~` are escaped in the pointer.
        let t = vec!["/a~1b/c~0d".to_string()];
        let got = ev
            .render_templated(
                &json!({ "a/b": { "c~d": "${{ params.v }}" }, "a": "${{ params.v }}" }),
                &ctx,
                &t,
            )
            .unwrap();
        assert_eq!(
            got,
            json!({ "a/b": { "c~d": "{{revision}}" }, "a": "{revision}" })
        );
    }

    #[test]
    fn unclosed_expression_is_an_error() {
        assert!(find("a ${{ b").is_err());
        assert_eq!(find("x ${{ a }} y").unwrap()[0].expr, "a");
    }
}
