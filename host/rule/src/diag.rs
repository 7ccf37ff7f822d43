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

/// The text of a rule or permissions file from its bytes, or a diagnostic naming the file, the
/// byte offset of the first byte that is not UTF-8, and its line and column.
pub fn decode_utf8(bytes: Vec<u8>, file: &str) -> Result<String, Diagnostics> {
    let e = match String::from_utf8(bytes) {
        Ok(text) => return Ok(text),
        Err(e) => e,
    };
    let offset = e.utf8_error().valid_up_to();
    let ends_inside = e.utf8_error().error_len().is_none();
    let bytes = e.into_bytes();
    let good = String::from_utf8_lossy(&bytes[..offset]);
    let line_start = good.rfind('\n').map_or(0, |i| i + 1);
    let loc = Loc {
        line: good.matches('\n').count() + 1,
        column: good[line_start..].chars().count() + 1,
    };
    let byte = bytes.get(offset).copied().unwrap_or_default();
    let message = if ends_inside {
        format!(
            "the file is not UTF-8 text: it ends inside a character, at byte offset {offset} (0x{byte:02x})"
        )
    } else {
        format!(
            "the file is not UTF-8 text: byte offset {offset} (0x{byte:02x}) is not part of a UTF-8 character"
        )
    };
    let mut d = Diagnostics::new(file, &String::from_utf8_lossy(&bytes));
    d.error(
        loc,
        message,
        Some("save it as UTF-8, e.g. `iconv -f latin1 -t utf-8 FILE`".into()),
    );
    Err(d)
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
    fn bytes_that_are_not_utf8_are_placed() {
        assert_eq!(
            decode_utf8(b"rule: r\n".to_vec(), "r.yaml").unwrap(),
            "rule: r\n"
        );
        // `é` in Latin-1 on line 2, after `é` in UTF-8 (two bytes, one column).
        let d = decode_utf8(
            b"rule: r\ndescription: caf\xc3\xa9 caf\xe9\n".to_vec(),
            "r.yaml",
        )
        .unwrap_err();
        assert_eq!(d.items.len(), 1);
        assert_eq!((d.items[0].loc.line, d.items[0].loc.column), (2, 22));
        assert_eq!(
            d.items[0].message,
            "the file is not UTF-8 text: byte offset 30 (0xe9) is not part of a UTF-8 character"
        );
        let shown = d.to_string();
        assert!(shown.contains("--> r.yaml:2:22"), "{shown}");
        assert!(
            shown.contains("description: caf\u{e9} caf\u{fffd}"),
            "{shown}"
        );
        assert!(shown.contains("hint: save it as UTF-8"), "{shown}");

        let d = decode_utf8(b"a: \xe2\x82".to_vec(), "p.yaml").unwrap_err();
        assert_eq!(d.items[0].loc, Loc { line: 1, column: 4 });
        assert!(
            d.items[0]
                .message
                .contains("ends inside a character, at byte offset 3")
        );
    }

    #[test]
    fn suggests_near_misses_only() {
        assert_eq!(
            did_you_mean("tiemout", &["timeout", "retry", "when"]),
            Some("timeout")
        );
        assert_eq!(did_you_mean("banana", &["timeout", "retry", "when"]), None);
    }
}
