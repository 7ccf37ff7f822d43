//! Op inputs checked against the op's input JSON Schema (what `describe` returns).
//!
//! Two callers, one wording: `sluice validate` checks each step's `with:` as written
//! ([`check_rule_inputs`], with places in the rule file), and the runner checks the rendered
//! input before a call ([`InputSchema::check`], with JSON pointers). A problem says what is
//! wrong in the rule's terms (`with.timeout`, "text", "a whole number") and, where it can, what
//! to write instead.
//!
//! At validate, literal values are checked fully. A string that is exactly one
//! `${{ params.NAME }}` takes the param's declared type, and only a type mismatch is reported
//! there; a string that is any other whole expression has a type known only when it renders,
//! so problems at or under it are dropped; a string with text around expressions is text.
//!
//! Schemas are compiled without resolving HTTP or file references: an op describes itself.

use std::collections::BTreeMap;

use jsonschema::error::{TypeKind, ValidationErrorKind};
use jsonschema::{JsonType, ValidationError, Validator};
use serde_json::Value;

use crate::diag::{Diagnostic, did_you_mean};
use crate::expr;
use crate::{ParamType, Rule, StepKind};

/// An op's compiled input schema.
#[derive(Debug, Clone)]
pub struct InputSchema {
    validator: Validator,
    schema: Value,
    op: Option<String>,
}

/// One problem with an input.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct InputProblem {
    /// JSON pointer to the part of the input it is about (`""` is the whole input).
    pub pointer: String,
    /// What is wrong, e.g. "`with.timeout`: `abc` is not a whole number".
    pub message: String,
    /// What to do about it.
    pub hint: Option<String>,
}

impl InputSchema {
    /// Compiles the JSON text of an input schema.
    pub fn compile(schema_json: &str) -> Result<InputSchema, String> {
        let schema: Value = serde_json::from_str(schema_json)
            .map_err(|e| format!("the input schema is not JSON: {e}"))?;
        // Durations (`"format": "sluice-duration"`) are checked with the one duration grammar;
        // formats this host does not know are not checked.
        let validator = jsonschema::options()
            .with_format(sluice_duration::SCHEMA_FORMAT, |s: &str| {
                sluice_duration::parse_millis(s).is_ok()
            })
            .should_validate_formats(true)
            .should_ignore_unknown_formats(true)
            .build(&schema)
            .map_err(|e| format!("the input schema is not a usable JSON Schema: {e}"))?;
        Ok(InputSchema {
            validator,
            schema,
            op: None,
        })
    }

    /// The same schema, naming the op in messages ("`thta` is not an input of op `trap`"),
    /// as validate's messages do.
    pub fn for_op(mut self, op: impl Into<String>) -> Self {
        self.op = Some(op.into());
        self
    }

    /// Every problem with `input`, in the order the schema finds them.
    pub fn check(&self, input: &Value) -> Vec<InputProblem> {
        self.problems(input, self.op.as_deref())
            .into_iter()
            .map(|p| p.problem)
            .collect()
    }

    fn problems(&self, input: &Value, op: Option<&str>) -> Vec<Found> {
        let op = match op {
            Some(name) => format!("op `{name}`"),
            None => "this op".to_string(),
        };
        let mut out = Vec::new();
        for e in self.validator.iter_errors(input) {
            self.describe(&e, input, &op, &mut out);
        }
        out
    }

    /// Words one validation error (several for a list of unknown keys).
    fn describe(&self, e: &ValidationError<'_>, input: &Value, op: &str, out: &mut Vec<Found>) {
        let pointer = e.instance_path().as_str().to_string();
        let path = path_of(&pointer, input);
        let shown = show(e.instance());
        let mut push = |pointer: String, class: Class, message: String, hint: Option<String>| {
            out.push(Found {
                class,
                path: path.clone(),
                problem: InputProblem {
                    pointer,
                    message,
                    hint,
                },
            })
        };
        match e.kind() {
            ValidationErrorKind::AdditionalProperties { unexpected }
            | ValidationErrorKind::UnevaluatedProperties { unexpected } => {
                let known = self.properties_near(e.schema_path().as_str());
                let known: Vec<&str> = known.iter().map(String::as_str).collect();
                for key in unexpected {
                    let message = if pointer.is_empty() {
                        format!("`{key}` is not an input of {op}")
                    } else {
                        format!("`{path}` has no field `{key}`")
                    };
                    let hint = match did_you_mean(key, &known) {
                        Some(s) => Some(format!("did you mean `{s}`?")),
                        None if known.is_empty() && pointer.is_empty() => {
                            Some(format!("{op} takes no inputs"))
                        }
                        None if known.is_empty() => None,
                        None if pointer.is_empty() => {
                            Some(format!("its inputs are {}", known.join(", ")))
                        }
                        None => Some(format!("its fields are {}", known.join(", "))),
                    };
                    push(
                        format!("{pointer}/{}", crate::pointer_segment(key)),
                        Class::Key,
                        message,
                        hint,
                    );
                }
            }
            ValidationErrorKind::Required { property } => {
                let name = property
                    .as_str()
                    .map_or(property.to_string(), str::to_string);
                let (message, hint) = if pointer.is_empty() {
                    (
                        format!("{op} needs input `{name}`"),
                        format!("add `{name}:` under `with:`"),
                    )
                } else {
                    (
                        format!("`{path}` needs field `{name}`"),
                        format!("add `{name}:` to `{path}`"),
                    )
                };
                push(pointer, Class::Other, message, Some(hint));
            }
            ValidationErrorKind::Type { kind } => {
                let wanted = wanted_types(kind);
                push(
                    pointer,
                    Class::Type(wanted.clone()),
                    format!("`{path}`: {shown} is not {}", type_names(&wanted)),
                    None,
                );
            }
            ValidationErrorKind::Enum { options } => {
                let choices: Vec<String> = options
                    .as_array()
                    .map(|a| a.iter().map(show_plain).collect())
                    .unwrap_or_default();
                let hint = e
                    .instance()
                    .as_str()
                    .and_then(|s| {
                        did_you_mean(s, &choices.iter().map(String::as_str).collect::<Vec<_>>())
                    })
                    .map(|s| format!("did you mean `{s}`?"))
                    .or_else(|| {
                        Some(format!(
                            "use {}",
                            choices
                                .iter()
                                .map(|c| format!("`{c}`"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ))
                    });
                push(
                    pointer,
                    Class::Other,
                    format!("`{path}`: {shown} is not a choice"),
                    hint,
                );
            }
            ValidationErrorKind::Constant { expected_value } => push(
                pointer,
                Class::Other,
                format!("`{path}`: {shown} is not `{}`", show_plain(expected_value)),
                None,
            ),
            ValidationErrorKind::Minimum { limit } => push(
                pointer,
                Class::Other,
                format!("`{path}`: {shown} is less than {limit}"),
                None,
            ),
            ValidationErrorKind::ExclusiveMinimum { limit } => push(
                pointer,
                Class::Other,
                format!("`{path}`: {shown} is not more than {limit}"),
                None,
            ),
            ValidationErrorKind::Maximum { limit } => push(
                pointer,
                Class::Other,
                format!("`{path}`: {shown} is more than {limit}"),
                None,
            ),
            ValidationErrorKind::ExclusiveMaximum { limit } => push(
                pointer,
                Class::Other,
                format!("`{path}`: {shown} is not less than {limit}"),
                None,
            ),
            ValidationErrorKind::MultipleOf { multiple_of } => push(
                pointer,
                Class::Other,
                format!("`{path}`: {shown} is not a multiple of {multiple_of}"),
                None,
            ),
            ValidationErrorKind::MinLength { limit } => push(
                pointer,
                Class::Other,
                format!("`{path}`: {shown} is shorter than {limit} characters"),
                None,
            ),
            ValidationErrorKind::MaxLength { limit } => push(
                pointer,
                Class::Other,
                format!("`{path}`: {shown} is longer than {limit} characters"),
                None,
            ),
            ValidationErrorKind::MinItems { limit } => push(
                pointer,
                Class::Other,
                format!("`{path}` has fewer than {limit} items"),
                None,
            ),
            ValidationErrorKind::MaxItems { limit } => push(
                pointer,
                Class::Other,
                format!("`{path}` has more than {limit} items"),
                None,
            ),
            ValidationErrorKind::MinProperties { limit } => push(
                pointer,
                Class::Other,
                format!("`{path}` has fewer than {limit} fields"),
                None,
            ),
            ValidationErrorKind::MaxProperties { limit } => push(
                pointer,
                Class::Other,
                format!("`{path}` has more than {limit} fields"),
                None,
            ),
            ValidationErrorKind::UniqueItems => push(
                pointer,
                Class::Other,
                format!("`{path}` has the same item twice"),
                None,
            ),
            ValidationErrorKind::Pattern { pattern } => push(
                pointer,
                Class::Other,
                format!("`{path}`: {shown} does not match `{pattern}`"),
                None,
            ),
            ValidationErrorKind::Format { format } if format == sluice_duration::SCHEMA_FORMAT => {
                push(
                    pointer,
                    Class::Other,
                    format!("`{path}`: {shown} is not a duration"),
                    Some(sluice_duration::HINT.to_string()),
                )
            }
            ValidationErrorKind::Format { format } => push(
                pointer,
                Class::Other,
                format!("`{path}`: {shown} is not a valid {format}"),
                None,
            ),
            ValidationErrorKind::FalseSchema => push(
                pointer,
                Class::Other,
                format!("`{path}` is not allowed here"),
                None,
            ),
            ValidationErrorKind::AnyOf { context }
            | ValidationErrorKind::OneOfNotValid { context } => {
                // `Option<T>` and friends: one real form and a null. Word the real form's
                // problems, which say more than "matches none".
                let real: Vec<&Vec<ValidationError<'static>>> = context
                    .iter()
                    .filter(|branch| !only_wants_null(branch))
                    .collect();
                if let [branch] = real.as_slice() {
                    for inner in branch.iter() {
                        self.describe(inner, input, op, out);
                    }
                } else {
                    push(
                        pointer,
                        Class::Combinator,
                        format!("`{path}`: {shown} is none of the forms it may take"),
                        None,
                    );
                }
            }
            ValidationErrorKind::OneOfMultipleValid { .. } => push(
                pointer,
                Class::Combinator,
                format!("`{path}`: {shown} fits more than one of the forms it may take"),
                None,
            ),
            ValidationErrorKind::Not { .. } => push(
                pointer,
                Class::Combinator,
                format!("`{path}`: {shown} is not allowed"),
                None,
            ),
            _ => {
                let text = e.to_string();
                let mut chars = text.chars();
                let text = match chars.next() {
                    Some(c) => c.to_lowercase().chain(chars).collect(),
                    None => text,
                };
                push(
                    pointer,
                    Class::Combinator,
                    format!("`{path}`: {text}"),
                    None,
                )
            }
        }
    }

    /// The property names of the object schema that holds the keyword at `schema_path`
    /// (`/$defs/Check/additionalProperties` is about `/$defs/Check`).
    fn properties_near(&self, schema_path: &str) -> Vec<String> {
        let parent = schema_path.rsplit_once('/').map_or("", |(p, _)| p);
        self.schema
            .pointer(parent)
            .and_then(|s| s.get("properties"))
            .and_then(Value::as_object)
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default()
    }
}

/// A worded problem and what kind of check made it, for validate's filtering.
struct Found {
    class: Class,
    /// The part of the input it is about, as the rule reads it (`with.timeout`).
    path: String,
    problem: InputProblem,
}

#[derive(Clone)]
enum Class {
    /// The value has the wrong type; the types wanted.
    Type(Vec<JsonType>),
    /// A check over several forms (anyOf, oneOf, not) or one we do not word: it may be about
    /// anything under its pointer.
    Combinator,
    /// A key the object may not have: about the key, whatever its value.
    Key,
    /// Anything else.
    Other,
}

fn only_wants_null(branch: &[ValidationError<'_>]) -> bool {
    branch.iter().all(|e| {
        matches!(e.kind(), ValidationErrorKind::Type { kind } if wanted_types(kind) == [JsonType::Null])
    }) && !branch.is_empty()
}

fn wanted_types(kind: &TypeKind) -> Vec<JsonType> {
    match kind {
        TypeKind::Single(t) => vec![*t],
        TypeKind::Multiple(set) => set.iter().collect(),
    }
}

fn type_name(t: JsonType) -> &'static str {
    match t {
        JsonType::String => "text",
        JsonType::Number => "a number",
        JsonType::Integer => "a whole number",
        JsonType::Boolean => "true or false",
        JsonType::Array => "a list",
        JsonType::Object => "a mapping",
        JsonType::Null => "empty",
    }
}

/// "text", "a whole number or text"; null is left out when there is anything else, since
/// leaving a field out is how a rule says nothing.
fn type_names(types: &[JsonType]) -> String {
    let shown: Vec<&str> = types
        .iter()
        .filter(|t| types.len() == 1 || **t != JsonType::Null)
        .map(|t| type_name(*t))
        .collect();
    shown.join(" or ")
}

/// A value as a problem quotes it: scalars in backticks (long text cut), containers by kind.
fn show(v: &Value) -> String {
    match v {
        Value::Array(_) => "a list".to_string(),
        Value::Object(_) => "a mapping".to_string(),
        _ => format!("`{}`", show_plain(v)),
    }
}

fn show_plain(v: &Value) -> String {
    let s = match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if s.chars().count() > 40 {
        format!("{}...", s.chars().take(37).collect::<String>())
    } else {
        s
    }
}

/// `/checks/0/name` as the rule reads it: `with.checks[0].name`.
fn path_of(pointer: &str, input: &Value) -> String {
    let mut out = String::from("with");
    let mut at = Some(input);
    for raw in pointer.split('/').skip(1) {
        let seg = raw.replace("~1", "/").replace("~0", "~");
        match at {
            Some(Value::Array(items)) => {
                out.push_str(&format!("[{seg}]"));
                at = seg.parse::<usize>().ok().and_then(|i| items.get(i));
            }
            other => {
                let plain = !seg.is_empty()
                    && seg
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
                if plain {
                    out.push('.');
                    out.push_str(&seg);
                } else {
                    out.push_str(&format!("[{}]", Value::String(seg.clone())));
                }
                at = other.and_then(|v| v.get(&seg));
            }
        }
    }
    out
}

/// What validate knows of a string in `with:` before it renders.
enum Stand {
    /// Exactly `${{ params.NAME }}`: the param's declared type.
    Param(String, ParamType),
    /// Another whole expression: its type is known only when it renders.
    Unknown,
    /// Text around expressions: text.
    Text,
}

/// Checks every step's `with:` against the input schema of the op it calls (`schemas`, by op
/// name; ops without one are not checked). Problems are placed at the offending key in the
/// rule file.
pub fn check_rule_inputs(rule: &Rule, schemas: &BTreeMap<String, InputSchema>) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for (_, step) in rule.all_steps() {
        let StepKind::Op(call) = &step.kind else {
            continue;
        };
        let Some(schema) = schemas.get(&call.op) else {
            continue;
        };
        let mut stands = BTreeMap::new();
        let probe = probe(&call.with, &mut String::new(), rule, &mut stands);
        for found in schema.problems(&probe, Some(&call.op)) {
            let Some(problem) = judge(found, &stands) else {
                continue;
            };
            let loc = call.with_locs.nearest(&problem.pointer).unwrap_or(step.loc);
            if out
                .iter()
                .any(|d: &Diagnostic| d.loc == loc && d.message == problem.message)
            {
                continue;
            }
            out.push(Diagnostic {
                message: problem.message,
                loc,
                hint: problem.hint,
            });
        }
    }
    out
}

/// The input as validate sees it: expressions replaced by a value of their type where it is
/// known (recorded in `stands`).
fn probe(
    v: &Value,
    pointer: &mut String,
    rule: &Rule,
    stands: &mut BTreeMap<String, Stand>,
) -> Value {
    match v {
        Value::String(s) => {
            let found = match expr::find(s) {
                Ok(f) if !f.is_empty() => f,
                _ => return v.clone(),
            };
            let whole = found.len() == 1 && found[0].start == 0 && found[0].end == s.len();
            if !whole {
                stands.insert(pointer.clone(), Stand::Text);
                return v.clone();
            }
            let param = found[0]
                .expr
                .strip_prefix("params.")
                .and_then(|name| rule.params.iter().find(|p| p.name == name));
            match param {
                Some(p) => {
                    stands.insert(pointer.clone(), Stand::Param(p.name.clone(), p.kind));
                    match p.kind {
                        ParamType::String => Value::String(String::new()),
                        ParamType::Number => Value::from(0),
                        ParamType::Boolean => Value::Bool(false),
                    }
                }
                None => {
                    stands.insert(pointer.clone(), Stand::Unknown);
                    Value::Null
                }
            }
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, x)| {
                    let len = pointer.len();
                    pointer.push_str(&format!("/{i}"));
                    let x = probe(x, pointer, rule, stands);
                    pointer.truncate(len);
                    x
                })
                .collect(),
        ),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| {
                    let len = pointer.len();
                    pointer.push('/');
                    pointer.push_str(&crate::pointer_segment(k));
                    let x = probe(x, pointer, rule, stands);
                    pointer.truncate(len);
                    (k.clone(), x)
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Whether `inner` is `outer` or lies under it.
fn at_or_under(inner: &str, outer: &str) -> bool {
    inner == outer || (inner.starts_with(outer) && inner.as_bytes().get(outer.len()) == Some(&b'/'))
}

/// Keeps what validate can tell about a problem found in the probe, reworded for params.
fn judge(found: Found, stands: &BTreeMap<String, Stand>) -> Option<InputProblem> {
    let Found {
        class,
        path,
        problem: p,
    } = found;
    // A key's problem is about the object holding it.
    let about = match class {
        Class::Key => p.pointer.rsplit_once('/').map_or("", |(parent, _)| parent),
        _ => &p.pointer,
    };
    // Problems at or under an expression of unknown type.
    if stands
        .iter()
        .any(|(at, s)| matches!(s, Stand::Unknown) && at_or_under(about, at))
    {
        return None;
    }
    if matches!(class, Class::Key) {
        return Some(p);
    }
    // Checks over several forms may be failing because of a stand-in below them.
    if matches!(class, Class::Combinator) && stands.keys().any(|at| at_or_under(at, &p.pointer)) {
        return None;
    }
    match (stands.get(&p.pointer), class) {
        (None, _) => Some(p),
        // Only the type of a stand-in is known.
        (Some(_), Class::Combinator | Class::Other | Class::Key) => None,
        (Some(Stand::Unknown), _) => None,
        (Some(Stand::Text), Class::Type(_)) => Some(p),
        (Some(Stand::Param(name, kind)), Class::Type(wanted)) => {
            let (is, hint) = param_mismatch(name, *kind, &wanted);
            Some(InputProblem {
                pointer: p.pointer,
                message: format!(
                    "`{path}` takes {}, and `params.{name}` is {is}",
                    type_names(&wanted)
                ),
                hint,
            })
        }
    }
}

/// What a param of `kind` is, and how to make it fit `wanted`.
fn param_mismatch(
    name: &str,
    kind: ParamType,
    wanted: &[JsonType],
) -> (&'static str, Option<String>) {
    let is = match kind {
        ParamType::String => "text",
        ParamType::Number => "a number",
        ParamType::Boolean => "true or false",
    };
    let hint = if wanted.contains(&JsonType::String) {
        Some(format!("write \"${{{{ params.{name} | string }}}}\""))
    } else if wanted.contains(&JsonType::Integer) && kind == ParamType::String {
        Some(format!(
            "declare `{name}` with `type: number`, or write \"${{{{ params.{name} | int }}}}\""
        ))
    } else if wanted.contains(&JsonType::Number) && kind == ParamType::String {
        Some(format!(
            "declare `{name}` with `type: number`, or write \"${{{{ params.{name} | float }}}}\""
        ))
    } else if wanted.contains(&JsonType::Boolean) {
        Some(format!("declare `{name}` with `type: boolean`"))
    } else {
        None
    };
    (is, hint)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ParseOptions, parse};
    use serde_json::json;

    /// Like the `trap` op's: `that` required, three optional inputs, nothing else.
    const TRAP: &str = r#"{
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Input",
        "type": "object",
        "properties": {
            "that": { "description": "The condition" },
            "message": { "type": ["string", "null"], "default": null },
            "timeout": { "type": ["integer", "null"], "format": "uint64", "minimum": 0 },
            "on-timeout": { "type": ["string", "null"], "default": null }
        },
        "additionalProperties": false,
        "required": ["that"]
    }"#;

    /// Nested objects in a list, a choice behind `$ref`, numbers with bounds.
    const DEPLOY: &str = r##"{
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {
            "revision": { "type": "string" },
            "replicas": { "type": "integer", "minimum": 1 },
            "strategy": { "anyOf": [{ "$ref": "#/$defs/Strategy" }, { "type": "null" }] },
            "checks": { "type": "array", "items": { "$ref": "#/$defs/Check" } },
            "dry-run": { "type": "boolean" }
        },
        "required": ["revision"],
        "additionalProperties": false,
        "$defs": {
            "Strategy": { "type": "string", "enum": ["rolling", "blue-green", "canary"] },
            "Check": {
                "type": "object",
                "properties": { "name": { "type": "string" }, "url": { "type": "string" } },
                "required": ["name"],
                "additionalProperties": false
            }
        }
    }"##;

    fn schemas() -> BTreeMap<String, InputSchema> {
        [("trap", TRAP), ("deploy", DEPLOY)]
            .into_iter()
            .map(|(n, s)| (n.to_string(), InputSchema::compile(s).unwrap()))
            .collect()
    }

    fn rule(text: &str) -> Rule {
        parse(
            text,
            &ParseOptions {
                file: "r.yaml",
                std_ops: &["trap", "deploy", "log"],
            },
        )
        .unwrap_or_else(|d| panic!("{d}"))
    }

    /// The problems of one step's `with:` (YAML at 6 spaces, under `with:` on line 5), as
    /// (line, column, message, hint).
    fn problems(params: &str, op: &str, with: &str) -> Vec<(usize, usize, String, Option<String>)> {
        let text = format!(
            "rule: r\nparams: {{ {params} }}\nphases:\n  run:\n    - op: {op}\n      with:\n{with}"
        );
        let mut out: Vec<_> = check_rule_inputs(&rule(&text), &schemas())
            .into_iter()
            .map(|d| (d.loc.line, d.loc.column, d.message, d.hint))
            .collect();
        out.sort();
        out
    }

    fn s(x: &str) -> String {
        x.to_string()
    }

    #[test]
    fn an_unknown_input_is_placed_at_its_key_with_a_suggestion() {
        assert_eq!(
            problems("", "trap", "        thta: true\n"),
            [
                (
                    6,
                    7,
                    s("op `trap` needs input `that`"),
                    Some(s("add `that:` under `with:`"))
                ),
                (
                    7,
                    9,
                    s("`thta` is not an input of op `trap`"),
                    Some(s("did you mean `that`?"))
                ),
            ]
        );
        let p = problems("", "trap", "        that: true\n        colour: red\n");
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].2, "`colour` is not an input of op `trap`");
        assert_eq!(
            p[0].3.as_deref(),
            Some("its inputs are message, on-timeout, that, timeout")
        );
    }

    #[test]
    fn a_missing_input_without_with_is_placed_at_the_step() {
        let p = problems("", "trap", "        {}\n");
        assert_eq!(p[0].2, "op `trap` needs input `that`");
        let text = "rule: r\nphases:\n  run:\n    - op: trap\n";
        let d = check_rule_inputs(&rule(text), &schemas());
        assert_eq!(d.len(), 1);
        assert_eq!((d[0].loc.line, d[0].loc.column), (4, 7));
    }

    #[test]
    fn literal_values_of_the_wrong_type_or_range() {
        assert_eq!(
            problems(
                "",
                "trap",
                "        that: true\n        timeout: abc\n        message: [a]\n"
            ),
            [
                (8, 9, s("`with.timeout`: `abc` is not a whole number"), None),
                (9, 9, s("`with.message`: a list is not text"), None),
            ]
        );
        assert_eq!(
            problems("", "deploy", "        revision: r1\n        replicas: 0\n"),
            [(8, 9, s("`with.replicas`: `0` is less than 1"), None)]
        );
        // Quoted, `30` is text; plain, it is a number.
        assert_eq!(
            problems("", "trap", "        that: 1\n        timeout: '30'\n")[0].2,
            "`with.timeout`: `30` is not a whole number"
        );
        assert!(problems("", "trap", "        that: 1\n        timeout: 30\n").is_empty());
    }

    #[test]
    fn nested_fields_and_choices() {
        assert_eq!(
            problems(
                "",
                "deploy",
                "        revision: r1\n        strategy: rollin\n        checks:\n          - nmae: smoke\n          - name: 5\n"
            ),
            [
                (
                    8,
                    9,
                    s("`with.strategy`: `rollin` is not a choice"),
                    Some(s("did you mean `rolling`?"))
                ),
                (
                    10,
                    13,
                    s("`with.checks[0]` has no field `nmae`"),
                    Some(s("did you mean `name`?"))
                ),
                (
                    10,
                    13,
                    s("`with.checks[0]` needs field `name`"),
                    Some(s("add `name:` to `with.checks[0]`"))
                ),
                (11, 13, s("`with.checks[1].name`: `5` is not text"), None),
            ]
        );
    }

    #[test]
    fn a_param_of_the_wrong_type_is_caught() {
        assert_eq!(
            problems(
                "build: number, n: string, b: boolean",
                "deploy",
                "        revision: \"${{ params.build }}\"\n        replicas: \"${{ params.n }}\"\n        dry-run: \"${{ params.b }}\"\n"
            ),
            [
                (
                    7,
                    9,
                    s("`with.revision` takes text, and `params.build` is a number"),
                    Some(s("write \"${{ params.build | string }}\""))
                ),
                (
                    8,
                    9,
                    s("`with.replicas` takes a whole number, and `params.n` is text"),
                    Some(s(
                        "declare `n` with `type: number`, or write \"${{ params.n | int }}\""
                    ))
                ),
            ]
        );
        // The right types pass, and only the type is checked: a param may well be `rolling`.
        assert!(
            problems(
                "build: string, n: number, st: string",
                "deploy",
                "        revision: \"${{ params.build }}\"\n        replicas: \"${{ params.n }}\"\n        strategy: \"${{ params.st }}\"\n"
            )
            .is_empty()
        );
    }

    #[test]
    fn the_hints_for_params_render_as_they_say() {
        let ev = expr::Evaluator::new();
        let ctx = json!({ "params": { "build": 7, "n": "3", "x": "2.5" } });
        assert_eq!(
            ev.render_str("${{ params.build | string }}", &ctx).unwrap(),
            json!("7")
        );
        assert_eq!(
            ev.render_str("${{ params.n | int }}", &ctx).unwrap(),
            json!(3)
        );
        assert_eq!(
            ev.render_str("${{ params.x | float }}", &ctx).unwrap(),
            json!(2.5)
        );
    }

    #[test]
    fn other_expressions_are_checked_when_they_render() {
        // Whole expressions of unknown type: nothing at or under them. A number param where
        // the op wants one of its words is still a number.
        assert_eq!(
            problems(
                "n: number",
                "deploy",
                "        revision: \"${{ job.id }}\"\n        replicas: \"${{ params.n * 2 }}\"\n        checks: \"${{ job.rule }}\"\n        strategy: \"${{ params.n }}\"\n"
            ),
            [(
                10,
                9,
                s("`with.strategy` takes text, and `params.n` is a number"),
                Some(s("write \"${{ params.n | string }}\""))
            )]
        );
        // Text around an expression is text.
        assert_eq!(
            problems(
                "n: number",
                "deploy",
                "        revision: r1\n        replicas: \"x${{ params.n }}\"\n"
            ),
            [(
                8,
                9,
                s("`with.replicas`: `x${{ params.n }}` is not a whole number"),
                None
            )]
        );
        // An unknown key is unknown whatever its value.
        assert_eq!(
            problems(
                "",
                "trap",
                "        that: \"${{ job.id }}\"\n        thta: \"${{ params }}\"\n"
            )[0]
            .2,
            "`thta` is not an input of op `trap`"
        );
    }

    #[test]
    fn run_time_checks_say_the_same_without_places() {
        let trap = InputSchema::compile(TRAP).unwrap().for_op("trap");
        let mut p = trap.check(&json!({ "thta": 1, "timeout": "30m" }));
        p.sort_by(|a, b| a.pointer.cmp(&b.pointer));
        assert_eq!(
            p,
            [
                InputProblem {
                    pointer: s(""),
                    message: s("op `trap` needs input `that`"),
                    hint: Some(s("add `that:` under `with:`")),
                },
                InputProblem {
                    pointer: s("/thta"),
                    message: s("`thta` is not an input of op `trap`"),
                    hint: Some(s("did you mean `that`?")),
                },
                InputProblem {
                    pointer: s("/timeout"),
                    message: s("`with.timeout`: `30m` is not a whole number"),
                    hint: None,
                },
            ]
        );
        assert!(
            trap.check(&json!({ "that": false, "timeout": 30 }))
                .is_empty()
        );
        // Unnamed, the op is "this op".
        let p = InputSchema::compile(TRAP)
            .unwrap()
            .check(&json!({ "that": 1, "x/y": 2 }));
        assert_eq!(p[0].pointer, "/x~1y");
        assert_eq!(p[0].message, "`x/y` is not an input of this op");
        // A rendered deep value is found by its pointer.
        let deploy = InputSchema::compile(DEPLOY).unwrap();
        let p =
            deploy.check(&json!({ "revision": "r", "checks": [{ "name": "a" }, { "name": 1 }] }));
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].pointer, "/checks/1/name");
        assert_eq!(p[0].message, "`with.checks[1].name`: `1` is not text");
    }

    #[test]
    fn schemas_that_cannot_be_used_are_refused() {
        let e = InputSchema::compile("{").unwrap_err();
        assert!(e.starts_with("the input schema is not JSON"), "{e}");
        let e = InputSchema::compile(r#"{ "type": 5 }"#).unwrap_err();
        assert!(
            e.starts_with("the input schema is not a usable JSON Schema"),
            "{e}"
        );
        // References are not fetched from anywhere.
        let e =
            InputSchema::compile(r#"{ "$ref": "https://example.com/input.json" }"#).unwrap_err();
        assert!(
            e.starts_with("the input schema is not a usable JSON Schema"),
            "{e}"
        );
        let e = InputSchema::compile(r#"{ "$ref": "file:///etc/passwd" }"#).unwrap_err();
        assert!(
            e.starts_with("the input schema is not a usable JSON Schema"),
            "{e}"
        );
    }

    #[test]
    fn ops_without_a_schema_are_not_checked() {
        let text = "rule: r\nphases:\n  run:\n    - op: log\n      with: { anything: 1 }\n";
        assert!(check_rule_inputs(&rule(text), &schemas()).is_empty());
    }

    #[test]
    fn places_are_recorded_but_not_snapshotted() {
        let text = "rule: r\nphases:\n  run:\n    - op: log\n      with:\n        a: [1, { b/c: 2 }]\n        \"~\": x\n";
        let r = rule(text);
        let StepKind::Op(call) = &r.phases.run[0].kind else {
            panic!()
        };
        let locs: Vec<(String, usize, usize)> = call
            .with_locs
            .iter()
            .map(|(p, l)| (p.to_string(), l.line, l.column))
            .collect();
        assert_eq!(
            locs,
            [
                (s(""), 5, 7),
                (s("/a"), 6, 9),
                (s("/a/0"), 6, 13),
                (s("/a/1"), 6, 16),
                (s("/a/1/b~1c"), 6, 18),
                (s("/~0"), 7, 9),
            ]
        );
        let json = serde_json::to_string(&r).unwrap();
        assert!(!json.contains("with_locs"), "{json}");
        let back: Rule = serde_json::from_str(&json).unwrap();
        assert_eq!(back, r);
    }

    /// Issue 12, item 9: a duration in an op's input is checked with the one grammar.
    #[test]
    fn durations_in_inputs_take_the_one_grammar() {
        let schema = InputSchema::compile(
            r#"{"type":"object","properties":{"timeout":{"type":["string","number"],"format":"sluice-duration"}}}"#,
        )
        .unwrap();
        assert!(
            schema
                .check(&serde_json::json!({"timeout": "1h30m"}))
                .is_empty()
        );
        assert!(schema.check(&serde_json::json!({"timeout": 90})).is_empty());
        let p = schema.check(&serde_json::json!({"timeout": "30x"}));
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].message.contains("is not a duration"), "{p:?}");
        assert_eq!(p[0].hint.as_deref(), Some(sluice_duration::HINT));
    }
}
