//! Reading YAML text into marked-yaml nodes, bounded and with useful places for errors.
//!
//! marked-yaml drives yaml-rust2's `Parser::load`, which recurses once per level of nesting, and
//! everything that walks the nodes afterwards (our checks, `Drop`) recurses too: a file nested a
//! few thousand levels deep overflowed the stack. So the text first goes through yaml-rust2's
//! event parser, an explicit state machine that does not recurse, counting depth and stopping at
//! the first node deeper than [`MAX_YAML_DEPTH`]; only text that passes is loaded. The same pass
//! meets scanner errors first, and places an error caused by an unclosed `{` or `[` at the
//! opener rather than where the scanner gave up.

use marked_yaml::{LoadError, LoaderOptions, Node};
use yaml_rust2::Event;
use yaml_rust2::parser::Parser;
use yaml_rust2::scanner::Marker;

use crate::diag::Loc;

/// How deeply mappings and lists may nest in a rule or permissions file (the top-level mapping
/// counts as one). Rules need a handful of levels; this keeps every walk over the nodes shallow.
pub const MAX_YAML_DEPTH: usize = 64;

/// Why text could not be loaded.
#[derive(Debug)]
pub(crate) enum LoadFailure {
    /// A problem found before loading, already worded: where, what, hint.
    Located(Loc, String, Option<String>),
    /// marked-yaml refused the nodes (anchors, tags, duplicate keys, a top level of the wrong
    /// kind); the caller words these for its own file kind.
    Loader(LoadError),
}

/// Loads one YAML document after checking its depth and syntax.
pub(crate) fn load(text: &str, options: LoaderOptions) -> Result<Node, LoadFailure> {
    precheck(text)?;
    marked_yaml::parse_yaml_with_options(0, text, options).map_err(LoadFailure::Loader)
}

/// Loads a small settings file (permissions, notifications) whose top level is a mapping;
/// every problem goes into `d`, worded with `shape` (what the top level should be).
pub(crate) fn load_settings(
    d: &mut crate::Diagnostics,
    text: &str,
    shape: &str,
) -> Option<marked_yaml::types::MarkedMappingNode> {
    let root = match load(text, LoaderOptions::default()) {
        Ok(r) => r,
        Err(LoadFailure::Located(at, msg, hint)) => {
            d.error(at, msg, hint);
            return None;
        }
        Err(LoadFailure::Loader(e)) => {
            d.error(Loc::default(), format!("not valid YAML: {e}"), None);
            return None;
        }
    };
    match root.as_mapping() {
        Some(m) => Some(m.clone()),
        None => {
            d.error(Loc::of(root.span()), shape, None);
            None
        }
    }
}

fn loc_of(m: &Marker) -> Loc {
    Loc {
        line: m.line(),
        column: m.col() + 1,
    }
}

/// Walks the events once: depth, a second document, scanner errors.
fn precheck(text: &str) -> Result<(), LoadFailure> {
    let mut parser = Parser::new_from_str(text);
    // Where each open mapping and list starts, outermost first.
    let mut open: Vec<Loc> = Vec::new();
    let mut documents = 0usize;
    loop {
        let (event, mark) = match parser.next_token() {
            Ok(e) => e,
            Err(e) => return Err(scan_error(text, &e, &open)),
        };
        match event {
            Event::StreamEnd => return Ok(()),
            Event::DocumentStart => {
                documents += 1;
                if documents > 1 {
                    return Err(LoadFailure::Located(
                        loc_of(&mark),
                        "a second YAML document starts here; a file holds one".into(),
                        Some(
                            "remove the `---` line and what follows, or move it to its own file"
                                .into(),
                        ),
                    ));
                }
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                open.push(loc_of(&mark));
                if open.len() > MAX_YAML_DEPTH {
                    // A block mapping's start is marked one column past its first key's start:
                    // point at the key.
                    let mut at = loc_of(&mark);
                    if matches!(event, Event::MappingStart(..))
                        && let Ok((Event::Scalar(..), key)) = parser.peek()
                        && key.line() == mark.line()
                        && key.col() + 1 == mark.col()
                    {
                        at = loc_of(key);
                    }
                    return Err(too_deep(at));
                }
            }
            Event::MappingEnd | Event::SequenceEnd => {
                open.pop();
            }
            _ => {}
        }
    }
}

fn too_deep(at: Loc) -> LoadFailure {
    LoadFailure::Located(
        at,
        format!("this is nested more than {MAX_YAML_DEPTH} levels deep"),
        Some(format!(
            "sluice reads at most {MAX_YAML_DEPTH} levels of mappings and lists; flatten this part"
        )),
    )
}

fn earlier(a: Loc, b: Loc) -> bool {
    (a.line, a.column) < (b.line, b.column)
}

/// A scanner error, placed where the mistake is when the text shows it: at the `{`, `[` or
/// quote that is never closed, or at the flow opener that nests too deep (the scanner gives up
/// at 256 flow levels, reading ahead of the events that count depth).
fn scan_error(text: &str, e: &yaml_rust2::ScanError, open: &[Loc]) -> LoadFailure {
    let at = loc_of(e.marker());
    let info = e.info();
    let openers = openers(text);
    if info == "recursion limit exceeded" {
        // The flow openers still open where the scanner stopped, outermost first; the
        // mappings and lists whose events came before the first of them enclose it.
        let flow: Vec<Loc> = openers
            .iter()
            .filter(|o| matches!(o.ch, '{' | '[') && earlier(o.at, at))
            .filter(|o| o.closed_at.is_none_or(|c| !earlier(c, at)))
            .map(|o| o.at)
            .collect();
        let enclosing = flow
            .first()
            .map(|first| open.iter().filter(|l| earlier(**l, *first)).count())
            .unwrap_or(0);
        let deepest = MAX_YAML_DEPTH.saturating_sub(enclosing);
        return too_deep(flow.get(deepest).or(flow.last()).copied().unwrap_or(at));
    }
    // Still open at the end and opened before the error: the last such opened is innermost.
    let unclosed = openers
        .iter()
        .rfind(|o| o.closed_at.is_none() && earlier(o.at, at));
    match unclosed {
        Some(o) => {
            let (what, close) = match o.ch {
                '{' => ("`{`", "`}`"),
                '[' => ("`[`", "`]`"),
                '"' => ("`\"`", "`\"`"),
                _ => ("`'`", "`'`"),
            };
            LoadFailure::Located(
                o.at,
                format!("this {what} is never closed"),
                Some(format!(
                    "close it with {close}; the YAML reader gave up at line {}, column {}: {info}",
                    at.line, at.column
                )),
            )
        }
        None => LoadFailure::Located(at, format!("this is not valid YAML: {info}"), None),
    }
}

/// A flow opener (`{`, `[`) or the quote that starts a quoted scalar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Opener {
    ch: char,
    at: Loc,
    /// Where its closer is, if it has one.
    closed_at: Option<Loc>,
}

/// Every flow opener and quote in `text`, in order, with where each is closed. A light lexer:
/// it knows quoted scalars, comments, block scalars and where a plain scalar may hold a `{` as
/// text, which is enough to tell what the author opened even in text YAML rejects.
pub(crate) fn openers(text: &str) -> Vec<Opener> {
    let mut out: Vec<Opener> = Vec::new();
    let mut stack: Vec<usize> = Vec::new(); // indexes into `out` of open flow openers
    let mut quote: Option<usize> = None; // index into `out` of an open quote
    let mut chars = text.chars().peekable();
    let (mut line, mut column) = (1usize, 0usize);
    // Per line: indentation, whether still in the leading spaces, the last significant
    // character outside quotes and comments.
    let mut indent = 0usize;
    let mut leading = true;
    let mut last_sig: Option<char> = None;
    let mut prev: char = '\n';
    let mut comment = false;
    // A block scalar (`|`, `>`) holds the lines indented more than the line that opened it.
    let mut block_scalar: Option<usize> = None;

    while let Some(c) = chars.next() {
        if c == '\n' || (c == '\r' && chars.peek() != Some(&'\n')) {
            line += 1;
            column = 0;
            indent = 0;
            leading = true;
            last_sig = None;
            comment = false;
            prev = '\n';
            continue;
        }
        column += 1;
        if c == '\r' {
            continue;
        }
        if leading {
            if c == ' ' {
                indent += 1;
                prev = c;
                continue;
            }
            leading = false;
            if block_scalar.is_some_and(|b| indent > b) && quote.is_none() && stack.is_empty() {
                comment = true; // the whole line is the block scalar's text
            } else {
                block_scalar = None;
            }
        }
        if comment {
            continue;
        }
        let here = Loc { line, column };
        if let Some(q) = quote {
            let closes = match (out[q].ch, c) {
                ('\'', '\'') if chars.peek() == Some(&'\'') => {
                    chars.next(); // '' is a quote inside single quotes
                    column += 1;
                    false
                }
                ('"', '\\') => {
                    if chars.peek().is_some_and(|n| *n != '\n' && *n != '\r') {
                        chars.next();
                        column += 1;
                    }
                    false
                }
                (q, c) => q == c,
            };
            if closes {
                out[q].closed_at = Some(here);
                quote = None;
                last_sig = Some(c);
            }
            prev = c;
            continue;
        }
        let blank_before = matches!(prev, ' ' | '\t' | '\n');
        let in_flow = !stack.is_empty();
        let node_start = matches!(last_sig, None | Some(':' | '-' | '?' | ',' | '[' | '{'))
            && (blank_before || (in_flow && matches!(prev, '[' | '{' | ',')));
        match c {
            '#' if blank_before => comment = true,
            '\'' | '"' if node_start => {
                quote = Some(out.len());
                out.push(Opener {
                    ch: c,
                    at: here,
                    closed_at: None,
                });
            }
            '{' | '[' if in_flow || node_start => {
                stack.push(out.len());
                out.push(Opener {
                    ch: c,
                    at: here,
                    closed_at: None,
                });
            }
            '}' | ']' if in_flow => {
                if let Some(o) = stack.pop() {
                    out[o].closed_at = Some(here);
                }
            }
            '|' | '>' if !in_flow && node_start => {
                block_scalar = Some(indent);
                comment = true; // indicators and a comment may follow on this line
            }
            _ => {}
        }
        if !matches!(c, ' ' | '\t') && !comment {
            last_sig = Some(c);
        }
        prev = c;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(line: usize, column: usize) -> Loc {
        Loc { line, column }
    }

    /// The innermost opener never closed, as the error path picks it.
    fn unclosed(text: &str) -> Option<(char, Loc)> {
        openers(text)
            .into_iter()
            .rfind(|o| o.closed_at.is_none())
            .map(|o| (o.ch, o.at))
    }

    #[test]
    fn finds_the_opener_that_is_never_closed() {
        assert_eq!(unclosed("a: {b: 1\nc: {d: 2}\n"), Some(('{', at(1, 4))));
        assert_eq!(unclosed("a: [1, [2, 3]\nb: 4\n"), Some(('[', at(1, 4))));
        assert_eq!(unclosed("a: {b: [1]}\n"), None);
    }

    #[test]
    fn text_that_merely_holds_brackets_is_not_an_opener() {
        // Plain scalars may hold `{` and `[`; quoted ones and comments anything.
        assert_eq!(unclosed("a: x{y\nb: 'it{'\n"), None);
        assert_eq!(unclosed("a: \"{\\\"[\" # {\nb: it's [\n"), None);
        assert_eq!(unclosed("a: 'don''t {'\n"), None);
        assert_eq!(
            unclosed("a: |\n  if x {\n    y [\nb: {c: 1\n"),
            Some(('{', at(4, 4)))
        );
        assert_eq!(unclosed("- >-\n  {\n- [1]\n"), None);
    }

    #[test]
    fn an_unclosed_quote_is_found_too() {
        assert_eq!(unclosed("a: 'x\nb: 1\n"), Some(('\'', at(1, 4))));
    }
}
