//! What the standard ops do to the world, as inputs a rule writes: a program to run
//! ([`CommandSpec`]) or, with the `http` feature, a request to send ([`HttpSpec`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::exec::{Command, ExitStatus};
use crate::{Duration, Error};

/// A granted program to run: `{ program: kubectl, args: [apply, -f, app.yaml] }`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandSpec {
    /// The program, as granted (`exec:NAME` in the rule's grants).
    pub program: String,
    /// Its arguments, each passed as is (no shell).
    #[serde(default)]
    pub args: Vec<String>,
    /// Text written to its standard input.
    #[serde(default)]
    pub stdin: Option<String>,
    /// Environment variables for it (the rest of the environment is cleared).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Kill it after this long (`30s`, `2m`); the op's own deadline otherwise.
    #[serde(default)]
    pub timeout: Option<Duration>,
}

impl CommandSpec {
    /// This command with its strings (program, arguments, stdin, environment values) read as
    /// brace templates: every `{key}` of `vars` replaced, `{{` and `}}` made single braces
    /// (see [`substitute`]).
    pub fn with_vars(&self, vars: &[(&str, &str)]) -> CommandSpec {
        let mut c = self.clone();
        c.program = substitute(&c.program, vars);
        c.args = c.args.iter().map(|a| substitute(a, vars)).collect();
        c.stdin = c.stdin.as_deref().map(|s| substitute(s, vars));
        c.env = c
            .env
            .iter()
            .map(|(k, v)| (k.clone(), substitute(v, vars)))
            .collect();
        c
    }

    /// Runs it; an exit status is returned whatever the code, an error only when it could not
    /// run (not granted, not found).
    pub fn run(&self) -> Result<ExitStatus, Error> {
        let timeout_ms = self.timeout.map(|d| d.as_millis());
        crate::exec::run_command(&Command {
            program: self.program.clone(),
            args: self.args.clone(),
            env: self
                .env
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            stdin: self.stdin.clone().unwrap_or_default().into_bytes(),
            timeout_ms,
        })
        .map_err(Error::from)
    }

    /// Runs it and returns its trimmed stdout; a non-zero exit is an error quoting stderr.
    pub fn output(&self) -> Result<String, Error> {
        let status = self.run()?;
        if status.timed_out {
            return Err(Error::retryable(format!("`{}` timed out", self.display())));
        }
        if status.code != Some(0) {
            let stderr = String::from_utf8_lossy(&status.stderr);
            let stderr = stderr.trim();
            return Err(Error::new(format!(
                "`{}` exited with {}{}{stderr}",
                self.display(),
                status
                    .code
                    .map_or("a signal".to_string(), |c| format!("code {c}")),
                if stderr.is_empty() { "" } else { ": " },
            )));
        }
        Ok(String::from_utf8_lossy(&status.stdout).trim().to_string())
    }

    /// `program arg arg`, for messages.
    pub fn display(&self) -> String {
        std::iter::once(self.program.as_str())
            .chain(self.args.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// An HTTP request: `{ url: https://api.example.com/deploy, method: POST, body: {...} }`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpSpec {
    /// The URL; its origin must be granted (`http:https://api.example.com`).
    pub url: String,
    /// The method; `GET` unless set.
    #[serde(default = "get")]
    pub method: String,
    /// Request headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The body: text as is, anything else sent as JSON.
    #[serde(default)]
    pub body: Option<Value>,
    /// Give up waiting for the response after this long (`10s`).
    #[serde(default)]
    pub timeout: Option<Duration>,
}

fn get() -> String {
    "GET".into()
}

impl HttpSpec {
    /// This request with its strings (URL, method, header values, the strings of the body)
    /// read as brace templates: every `{key}` of `vars` replaced, `{{` and `}}` made single
    /// braces (see [`substitute`]).
    pub fn with_vars(&self, vars: &[(&str, &str)]) -> HttpSpec {
        let mut h = self.clone();
        h.url = substitute(&h.url, vars);
        h.method = substitute(&h.method, vars);
        h.headers = h
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), substitute(v, vars)))
            .collect();
        h.body = h.body.map(|b| substitute_json(b, vars));
        h
    }

    /// Sends it and reads the whole response (any status); an error when no response came.
    #[cfg(feature = "http")]
    pub fn send(&self) -> Result<crate::http::Response, Error> {
        let mut req = crate::http::Request::new(&self.method, &self.url);
        for (k, v) in &self.headers {
            req = req.header(k, v);
        }
        match &self.body {
            None => {}
            Some(Value::String(s)) => req.body = s.clone().into_bytes(),
            Some(v) => req = req.json(v),
        }
        if let Some(t) = self.timeout {
            req = req.timeout(t.into());
        }
        req.send().map_err(Error::retryable)
    }

    /// Sends it; a status outside 2xx is an error quoting the start of the body.
    #[cfg(feature = "http")]
    pub fn send_ok(&self) -> Result<crate::http::Response, Error> {
        let r = self.send()?;
        if !(200..300).contains(&r.status) {
            let text = r.text();
            let cut: String = text.chars().take(200).collect();
            let e = format!(
                "{} {} answered {}: {}",
                self.method,
                self.url,
                r.status,
                cut.trim()
            );
            return Err(if r.status >= 500 || r.status == 429 {
                Error::retryable(e)
            } else {
                Error::new(e)
            });
        }
        Ok(r)
    }
}

/// `text`, a brace template, with every `{key}` of `vars` replaced by its value, in one pass
/// from the left: `{{` is a literal `{` and `}}` a literal `}`, a `{word}` that is not a key
/// stays as written, and a value put in is not read again.
///
/// The host writes what a rule's expressions produce into an op's template fields with its
/// braces doubled (the op's schema names those fields in `x-sluice-templates`), so a param
/// such as `{revision}` reaches the op verbatim instead of being substituted.
pub fn substitute(text: &str, vars: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(['{', '}']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(after) = tail.strip_prefix("{{") {
            out.push('{');
            rest = after;
            continue;
        }
        if let Some(after) = tail.strip_prefix("}}") {
            out.push('}');
            rest = after;
            continue;
        }
        if let Some(inner) = tail.strip_prefix('{')
            && let Some(end) = inner.find('}')
            && let Some((_, value)) = vars.iter().find(|(k, _)| *k == &inner[..end])
        {
            out.push_str(value);
            rest = &inner[end + 1..];
            continue;
        }
        out.push_str(&tail[..1]);
        rest = &tail[1..];
    }
    out.push_str(rest);
    out
}

/// The strings of `v` (not its keys) through [`substitute`].
pub fn substitute_json(v: Value, vars: &[(&str, &str)]) -> Value {
    match v {
        Value::String(s) => Value::String(substitute(&s, vars)),
        Value::Array(a) => Value::Array(a.into_iter().map(|x| substitute_json(x, vars)).collect()),
        Value::Object(o) => Value::Object(
            o.into_iter()
                .map(|(k, x)| (k, substitute_json(x, vars)))
                .collect(),
        ),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const VARS: &[(&str, &str)] = &[("revision", "v2"), ("previous", "v1")];

    /// What the host does to text that expressions produced in a template field.
    fn escaped(text: &str) -> String {
        text.replace('{', "{{").replace('}', "}}")
    }

    #[test]
    fn placeholders_are_replaced_and_doubled_braces_are_literal() {
        assert_eq!(
            substitute("ln -sfn {revision} (was {previous})", VARS),
            "ln -sfn v2 (was v1)"
        );
        assert_eq!(substitute("{{revision}} {{ x }}", VARS), "{revision} { x }");
        assert_eq!(substitute("{{{revision}}}", VARS), "{v2}");
        assert_eq!(
            substitute("{unknown} {revision", VARS),
            "{unknown} {revision"
        );
        assert_eq!(substitute("a}b{c", VARS), "a}b{c");
        assert_eq!(substitute("", VARS), "");
    }

    #[test]
    fn a_value_put_in_is_not_read_again() {
        let vars = [("revision", "{previous}"), ("previous", "v1")];
        assert_eq!(substitute("{revision}", &vars), "{previous}");
    }

    #[test]
    fn text_the_host_escaped_arrives_verbatim() {
        for text in [
            "{revision}",
            "{{revision}}",
            "a{b}c",
            "}{",
            "{",
            "}}}",
            "plain",
            "{previous}x{",
        ] {
            assert_eq!(substitute(&escaped(text), VARS), text, "{text:?}");
            let around = format!("pre-{}-{{revision}}", escaped(text));
            assert_eq!(
                substitute(&around, VARS),
                format!("pre-{text}-v2"),
                "{text:?}"
            );
        }
    }

    #[test]
    fn every_string_of_an_action_is_a_template() {
        let c: CommandSpec = serde_json::from_value(json!({
            "program": "ln",
            "args": ["-sfn", "{revision}", "{{literal}}"],
            "stdin": "{previous}",
            "env": { "IMAGE": "web:{revision}", "{revision}": "key stays" },
            "timeout": "30s"
        }))
        .unwrap();
        let c = c.with_vars(VARS);
        assert_eq!(c.args, ["-sfn", "v2", "{literal}"]);
        assert_eq!(c.stdin.as_deref(), Some("v1"));
        assert_eq!(c.env["IMAGE"], "web:v2");
        assert_eq!(c.env["{revision}"], "key stays");
        let h: HttpSpec = serde_json::from_value(json!({
            "url": "https://api.example.com/deploy/{revision}",
            "headers": { "X-Revision": "{revision}" },
            "body": { "to": "{revision}", "from": ["{previous}", 3], "{revision}": "{{}}" }
        }))
        .unwrap();
        let h = h.with_vars(VARS);
        assert_eq!(h.url, "https://api.example.com/deploy/v2");
        assert_eq!(h.headers["X-Revision"], "v2");
        assert_eq!(
            h.body,
            Some(json!({ "to": "v2", "from": ["v1", 3], "{revision}": "{}" }))
        );
    }
}
