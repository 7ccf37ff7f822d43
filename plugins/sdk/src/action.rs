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
    /// This command with every `{key}` in its arguments and stdin replaced.
    pub fn with_vars(&self, vars: &[(&str, &str)]) -> CommandSpec {
        let mut c = self.clone();
        c.args = c.args.iter().map(|a| substitute(a, vars)).collect();
        c.stdin = c.stdin.as_deref().map(|s| substitute(s, vars));
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
    /// This request with every `{key}` in its URL and text body replaced.
    pub fn with_vars(&self, vars: &[(&str, &str)]) -> HttpSpec {
        let mut h = self.clone();
        h.url = substitute(&h.url, vars);
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

/// `text` with every `{key}` replaced by its value.
pub fn substitute(text: &str, vars: &[(&str, &str)]) -> String {
    let mut out = text.to_string();
    for (k, v) in vars {
        out = out.replace(&format!("{{{k}}}"), v);
    }
    out
}

fn substitute_json(v: Value, vars: &[(&str, &str)]) -> Value {
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
