//! Diagnostics: what is wrong, where (file:line:column with the line and a caret) and a hint.

use std::fmt;

/// A place in a rule file, 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Loc {
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1.
    pub column: usize,
}

impl Loc {
    pub(crate) fn of(span: &marked_yaml::Span) -> Loc {
        span.start()
            .map(|m| Loc {
                line: m.line(),
                column: m.column(),
            })
            .unwrap_or_default()
    }
}

/// One problem in a rule.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Diagnostic {
    /// What is wrong.
    pub message: String,
    /// Where.
    pub loc: Loc,
    /// What to do about it.
    pub hint: Option<String>,
}

/// Every problem found in one rule file, rendered like a compiler's errors.
#[derive(Debug, Clone, thiserror::Error)]
pub struct Diagnostics {
    /// The file's name as given.
    pub file: String,
    /// The file's text, for quoting lines.
    pub text: String,
    /// The problems, in file order.
    pub items: Vec<Diagnostic>,
}

impl Diagnostics {
    pub(crate) fn new(file: &str, source: &str) -> Self {
        Diagnostics {
            file: file.to_string(),
            text: source.to_string(),
            items: Vec::new(),
        }
    }

    pub(crate) fn error(&mut self, loc: Loc, message: impl Into<String>, hint: Option<String>) {
        self.items.push(Diagnostic {
            message: message.into(),
            loc,
            hint,
        });
    }

    /// Whether there is no problem.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut items = self.items.clone();
        items.sort_by_key(|d| (d.loc.line, d.loc.column));
        for (i, d) in items.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            writeln!(f, "error: {}", d.message)?;
            writeln!(f, "  --> {}:{}:{}", self.file, d.loc.line, d.loc.column)?;
            if let Some(text) = self.text.lines().nth(d.loc.line.saturating_sub(1)) {
                let n = d.loc.line.to_string();
                let pad = " ".repeat(n.len());
                writeln!(f, "{pad} |")?;
                writeln!(f, "{n} | {text}")?;
                writeln!(f, "{pad} | {}^", " ".repeat(d.loc.column.saturating_sub(1)))?;
            }
            if let Some(hint) = &d.hint {
                writeln!(f, "  = hint: {hint}")?;
            }
        }
        let n = items.len();
        write!(
            f,
            "{} error{} in {}",
            n,
            if n == 1 { "" } else { "s" },
            self.file
        )
    }
}

/// The closest of `candidates` to `word`, if close enough to be a likely typo.
pub(crate) fn did_you_mean<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (levenshtein(word, c), *c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_near_misses_only() {
        assert_eq!(
            did_you_mean("tiemout", &["timeout", "retry", "when"]),
            Some("timeout")
        );
        assert_eq!(did_you_mean("banana", &["timeout", "retry", "when"]), None);
    }
}
