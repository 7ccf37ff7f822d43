//! Property tests over rule text: whatever the bytes, reading a rule never panics, never
//! overflows the stack and stays bounded. Cases start from the example rules (read at test
//! time) and small rules of our own, then mutate them: flipped bytes, YAML indicators
//! inserted, deletions, duplicated lines, deep nesting, long lines, NULs and bytes that are
//! not UTF-8. Arbitrary strings and bytes run too. Every input is at most 64 KiB.
//!
//! A longer run: `PROPTEST_CASES=20000 cargo test -p sluice-rule --release --test
//! parse_never_panics` (docs/rules.md).

use std::collections::BTreeMap;
use std::path::Path;

use proptest::prelude::*;
use sluice_rule::{InputSchema, ParseOptions, check_rule_inputs, decode_utf8, parse, permissions};

const MAX_INPUT: usize = 64 * 1024;

const STD_OPS: &[&str] = &[
    "approve", "assert", "cleanup", "deploy", "evaluate", "log", "notify", "pause", "set", "test",
    "trap",
];

/// Small rules that reach the corners the examples do not.
const OWN: &[&str] = &[
    "rule: r\nphases:\n  run: [{ op: log, with: { message: hi } }]\n",
    "rule: r\nparams:\n  n: number\n  s: { type: string, default: a, allowed: [a, b] }\nphases:\n  run:\n    - op: trap\n      with:\n        that: \"${{ params.n > 1 }}\"\n        timeout: \"${{ params.n }}\"\n        message: 'n is ${{ params.n }}'\n",
    "rule: r\nphases:\n  run:\n    - parallel:\n        - { op: log }\n        - [ { op: log, id: b1 }, { op: set, id: b2, with: { a: [1, { b: c }] } } ]\n      fail-fast: true\n  post:\n    - op: log\n      when: steps.b1.outcome == 'failure'\n",
    "rule: r\n# a comment { [\ndescription: |\n  text { with [ brackets\n  and 'quotes\nphases:\n  run: [{ op: log, with: { m: \"a \\\" {\" } }]\n",
    "rule: r\ndefaults: { timeout: 5m, retry: { attempts: 2, delay: 5s } }\nconcurrency: { group: \"g-${{ params.e }}\", mode: queue }\nlocks: [ l1, { name: l2, mode: shared } ]\nparams: { e: string }\nphases:\n  init: [{ op: approve, trap: { timeout: 1h, on-timeout: skip, max-retries: 2 } }]\nrollback: [{ op: log }]\n",
    "groups:\n  rm: [alice, bob]\nallow:\n  approve: [group:rm]\n  annotate: ['*']\n",
    "op: x.wasm\ncases:\n  - name: a\n    input: { n: 1 }\n    grants: [exec:git, \"secret:t\", \"http:https://a.example\"]\n    secrets: { t: v }\n    exec: [{ program: git, args: [log], code: 1, stdout: x }]\n    http: [{ method: get, url: \"https://a.example/x\", status: 500, headers: { a: b }, body: { ok: false } }]\n    expect: { outcome: suspend, gate: { kind: approval, message: m } }\n    resume: { decision: timed-out, expect: { outcome: failure, message: x, retryable: true, logs: [a], annotations: [b] } }\n",
];

/// Like the `trap` and `deploy` ops' input schemas.
const SCHEMAS: &[(&str, &str)] = &[
    (
        "trap",
        r#"{"type":"object","properties":{"that":true,"message":{"type":["string","null"]},"timeout":{"type":["integer","null"],"minimum":0},"on-timeout":{"type":["string","null"]}},"required":["that"],"additionalProperties":false}"#,
    ),
    (
        "set",
        r##"{"type":"object","properties":{"a":{"type":"array","items":{"anyOf":[{"$ref":"#/$defs/X"},{"type":"null"}]}}},"additionalProperties":false,"$defs":{"X":{"type":"object","properties":{"b":{"enum":["c","d"]}},"required":["b"],"additionalProperties":false}}}"##,
    ),
    (
        "log",
        r#"{"type":"object","properties":{"message":{"type":"string","minLength":1}},"additionalProperties":false}"#,
    ),
];

fn seeds() -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = OWN.iter().map(|s| s.as_bytes().to_vec()).collect();
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut files: Vec<_> = std::fs::read_dir(&examples)
        .expect("examples/ is there")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no example rules in {}",
        examples.display()
    );
    out.extend(files.iter().map(|f| std::fs::read(f).unwrap()));
    out
}

/// Bits of YAML (and not) that break things when dropped in anywhere.
const TOKENS: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b"- ",
    b": ",
    b":",
    b"\"",
    b"'",
    b"&a ",
    b"*a",
    b"!t ",
    b"%YAML 1.2\n",
    b"#",
    b"|",
    b">",
    b"\n",
    b"\t",
    b"\0",
    b"\r",
    b"---\n",
    b"...\n",
    b"${{",
    b"}}",
    b"? ",
    b",",
    b"\xff",
    b"\xc3",
    b"\xe2\x82",
    b"\xef\xbb\xbf",
    b"\\",
    b"~",
    b"null",
    b"1e999",
];

#[derive(Debug, Clone)]
enum Mutation {
    Flip {
        at: usize,
        bit: u8,
    },
    Insert {
        at: usize,
        token: usize,
    },
    Delete {
        at: usize,
        len: usize,
    },
    DuplicateLine {
        line: usize,
    },
    Nest {
        at: usize,
        kind: u8,
        depth: usize,
    },
    /// Replaces the `nth` plain value after a `: ` with deep nesting, so it lands where the
    /// parser reads values (a `with:` entry, a `when:`).
    NestValue {
        nth: usize,
        kind: u8,
        depth: usize,
    },
    LongLine {
        at: usize,
        len: usize,
        byte: u8,
    },
    Truncate {
        at: usize,
    },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let at = any::<usize>();
    prop_oneof![
        2 => (at, 0u8..8).prop_map(|(at, bit)| Mutation::Flip { at, bit }),
        4 => (at, 0..TOKENS.len()).prop_map(|(at, token)| Mutation::Insert { at, token }),
        2 => (at, 1usize..32).prop_map(|(at, len)| Mutation::Delete { at, len }),
        1 => any::<usize>().prop_map(|line| Mutation::DuplicateLine { line }),
        1 => (at, 0u8..7, 1usize..4000)
            .prop_map(|(at, kind, depth)| Mutation::Nest { at, kind, depth }),
        3 => (any::<usize>(), 0u8..7, 1usize..4000)
            .prop_map(|(nth, kind, depth)| Mutation::NestValue { nth, kind, depth }),
        1 => (at, 1usize..20_000, any::<u8>())
            .prop_map(|(at, len, byte)| Mutation::LongLine { at, len, byte }),
        1 => at.prop_map(|at| Mutation::Truncate { at }),
    ]
}

fn apply(text: &mut Vec<u8>, m: &Mutation) {
    let pos = |at: usize, len: usize| if len == 0 { 0 } else { at % (len + 1) };
    match *m {
        Mutation::Flip { at, bit } => {
            if !text.is_empty() {
                let i = at % text.len();
                text[i] ^= 1 << bit;
            }
        }
        Mutation::Insert { at, token } => {
            let i = pos(at, text.len());
            text.splice(i..i, TOKENS[token].iter().copied());
        }
        Mutation::Delete { at, len } => {
            let i = pos(at, text.len());
            let end = (i + len).min(text.len());
            text.drain(i..end);
        }
        Mutation::DuplicateLine { line } => {
            let lines: Vec<&[u8]> = text.split(|b| *b == b'\n').collect();
            let n = line % lines.len();
            let mut out = Vec::with_capacity(text.len() * 2);
            for (i, l) in lines.iter().enumerate() {
                out.extend_from_slice(l);
                out.push(b'\n');
                if i == n {
                    out.extend_from_slice(l);
                    out.push(b'\n');
                }
            }
            *text = out;
        }
        Mutation::Nest { at, kind, depth } => {
            let i = pos(at, text.len());
            text.splice(i..i, nested(kind, depth));
        }
        Mutation::NestValue { nth, kind, depth } => {
            let starts: Vec<usize> = text
                .windows(2)
                .enumerate()
                .filter(|(_, w)| w == b": ")
                .map(|(i, _)| i + 2)
                .collect();
            if !starts.is_empty() {
                let start = starts[nth % starts.len()];
                let end = text[start..]
                    .iter()
                    .position(|b| matches!(b, b',' | b'}' | b']' | b'\n'))
                    .map_or(text.len(), |n| start + n);
                text.splice(start..end, nested(kind, depth));
            }
        }
        Mutation::LongLine { at, len, byte } => {
            let i = pos(at, text.len());
            text.splice(i..i, std::iter::repeat_n(byte, len));
        }
        Mutation::Truncate { at } => {
            let i = pos(at, text.len());
            text.truncate(i);
        }
    }
}

/// `depth` levels of one kind of nesting: YAML, or an expression in a quoted string.
fn nested(kind: u8, depth: usize) -> Vec<u8> {
    match kind {
        0 => b"[".repeat(depth),
        1 => b"{a: ".repeat(depth),
        2 => b"- ".repeat(depth),
        3 => [
            b"\"${{ ".as_slice(),
            &b"not ".repeat(depth * 2),
            b"true }}\"",
        ]
        .concat(),
        4 => [b"\"${{ ".as_slice(), &b"-".repeat(depth * 4), b"1 }}\""].concat(),
        5 => [b"\"".as_slice(), &b"(".repeat(depth), b"1\""].concat(),
        _ => (0..depth.min(300))
            .flat_map(|d| {
                let mut l = vec![b' '; d];
                l.extend_from_slice(b"k:\n");
                l
            })
            .collect(),
    }
}

/// Reads `bytes` as every caller does: decode, parse, check inputs, render the diagnostics.
fn read_everything(bytes: Vec<u8>, schemas: &BTreeMap<String, InputSchema>) {
    let mut bytes = bytes;
    bytes.truncate(MAX_INPUT);
    let text = match decode_utf8(bytes, "r.yaml") {
        Ok(text) => text,
        Err(d) => {
            assert_eq!(d.items.len(), 1);
            let _ = d.to_string();
            return;
        }
    };
    let opts = ParseOptions {
        file: "r.yaml",
        std_ops: STD_OPS,
    };
    match parse(&text, &opts) {
        Ok(rule) => {
            let _ = check_rule_inputs(&rule, schemas);
            // What a job snapshots reads back.
            let json = serde_json::to_string(&rule).unwrap();
            let back: sluice_rule::Rule = serde_json::from_str(&json).unwrap();
            assert_eq!(back, rule);
        }
        Err(d) => {
            assert!(!d.items.is_empty(), "an error with no diagnostic");
            let _ = d.to_string();
        }
    }
    match permissions::parse(&text, "p.yaml") {
        Ok(_) => {}
        Err(d) => {
            let _ = d.to_string();
        }
    }
    // `sluice op test` files go through the same reader.
    if let Err(d) = sluice_rule::optest::parse(&text, "op-test.yaml") {
        assert!(!d.items.is_empty(), "an op test error with no diagnostic");
        let _ = d.to_string();
    }
}

fn schemas() -> BTreeMap<String, InputSchema> {
    SCHEMAS
        .iter()
        .map(|(op, s)| (op.to_string(), InputSchema::compile(s).unwrap()))
        .collect()
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(96)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn mutated_rules_never_panic(
        seed in any::<prop::sample::Index>(),
        mutations in prop::collection::vec(mutation(), 1..6),
    ) {
        let seeds = seeds();
        let mut text = seeds[seed.index(seeds.len())].clone();
        for m in &mutations {
            apply(&mut text, m);
            text.truncate(MAX_INPUT);
        }
        read_everything(text, &schemas());
    }

    #[test]
    fn deep_values_never_panic(kind in 0u8..7, depth in 1usize..16_000, place in 0usize..3) {
        let value = String::from_utf8(nested(kind, depth)).unwrap();
        let text = match place {
            0 => format!("rule: r\nphases:\n  run:\n    - op: log\n      with:\n        m: {value}\n"),
            1 => format!("rule: r\nphases:\n  run:\n    - op: log\n      when: {value}\n"),
            _ => format!("rule: r\nphases:\n  run: [{{ op: set, with: {{ a: [ {value} ] }} }}]\n"),
        };
        read_everything(text.into_bytes(), &schemas());
    }

    #[test]
    fn arbitrary_text_never_panics(text in ".{0,400}") {
        read_everything(text.into_bytes(), &schemas());
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        read_everything(bytes, &schemas());
    }
}
