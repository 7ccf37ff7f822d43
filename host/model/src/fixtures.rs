//! Fixtures: answers given to an op's `exec` and `wasi:http` calls instead of the host's, so an
//! op can be tested (`sluice op test`) without the programs or the network it would use.

use serde::{Deserialize, Serialize};

/// What an op's `exec` and HTTP calls get while it is under test. When a call's grants carry
/// fixtures, no program is started and no connection is opened: a call no fixture answers
/// fails, saying which fixture to add.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fixtures {
    /// Programs, answered in order: the first that matches a call answers it.
    pub exec: Vec<ExecFixture>,
    /// HTTP requests, answered in order: the first that matches answers it.
    pub http: Vec<HttpFixture>,
}

/// A program's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecFixture {
    /// The program, as the op names it (`kubectl`).
    pub program: String,
    /// The arguments it must be called with; `None` matches any.
    pub args: Option<Vec<String>>,
    /// The exit code; `None` for a program killed by a signal.
    pub code: Option<i32>,
    /// What it writes to stdout.
    pub stdout: Vec<u8>,
    /// What it writes to stderr.
    pub stderr: Vec<u8>,
}

impl ExecFixture {
    /// Whether this fixture answers `program` called with `args`.
    pub fn answers(&self, program: &str, args: &[String]) -> bool {
        self.program == program && self.args.as_ref().is_none_or(|a| a == args)
    }
}

/// An HTTP response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpFixture {
    /// The method it answers (`GET`); `None` answers any.
    pub method: Option<String>,
    /// The URL it answers, exactly as the op sends it (query included).
    pub url: String,
    /// The response status.
    pub status: u16,
    /// Response headers.
    pub headers: Vec<(String, String)>,
    /// The response body.
    pub body: Vec<u8>,
}

impl HttpFixture {
    /// Whether this fixture answers a `method` request to `url`.
    pub fn answers(&self, method: &str, url: &str) -> bool {
        self.method
            .as_deref()
            .is_none_or(|m| m.eq_ignore_ascii_case(method))
            && same_url(&self.url, url)
    }
}

/// `a` and `b` name the same resource: equal, or equal but for a `/` path (http://h and http://h/).
fn same_url(a: &str, b: &str) -> bool {
    a == b || (!a.contains('?') && a.trim_end_matches('/') == b.trim_end_matches('/'))
}

/// How a call reads in a message: `kubectl apply -f app.yaml`.
pub fn command_line(program: &str, args: &[String]) -> String {
    std::iter::once(program)
        .chain(args.iter().map(String::as_str))
        .map(|a| {
            if a.is_empty() || a.contains(char::is_whitespace) {
                format!("{a:?}")
            } else {
                a.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixtures_match_by_program_args_method_and_url() {
        let e = ExecFixture {
            program: "git".into(),
            args: Some(vec!["log".into()]),
            code: Some(0),
            stdout: vec![],
            stderr: vec![],
        };
        assert!(e.answers("git", &["log".into()]));
        assert!(!e.answers("git", &["log".into(), "-1".into()]));
        assert!(!e.answers("hg", &["log".into()]));
        let any = ExecFixture { args: None, ..e };
        assert!(any.answers("git", &["status".into()]));

        let h = HttpFixture {
            method: Some("GET".into()),
            url: "https://api.example.com".into(),
            status: 200,
            headers: vec![],
            body: vec![],
        };
        assert!(h.answers("get", "https://api.example.com/"));
        assert!(!h.answers("POST", "https://api.example.com/"));
        assert!(!h.answers("GET", "https://api.example.com/v1"));
        assert_eq!(
            command_line("kubectl", &["apply".into(), "a b".into()]),
            "kubectl apply \"a b\""
        );
    }
}
