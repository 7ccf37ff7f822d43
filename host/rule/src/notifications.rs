//! The notifications file: webhooks called when a job starts waiting at a gate, and sinks of
//! CloudEvents that get every transition of every job.
//!
//! ```yaml
//! monitor: https://sluice.example.com   # the job monitor's address, for links
//! webhooks:
//!   releases:
//!     url: https://hooks.slack.com/services/T000/B000/XXXX
//!     format: slack                      # slack (Slack's incoming webhooks) or json
//!     rules: [web-release]               # only jobs of these rules (default: all)
//!     gates: [approval, trap]            # only these kinds (default: all)
//!   events:
//!     url: https://events.example.com/sluice
//!     format: cloudevents                # every transition, CloudEvents 1.0 structured mode
//! ```

use std::collections::BTreeMap;

use marked_yaml::Node;

use crate::diag::{Diagnostics, Loc, did_you_mean};
use crate::yaml;

/// Parsed notifications.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Notifications {
    /// The job monitor's address (`https://host`), for links; without it messages carry none.
    pub monitor: Option<String>,
    /// Webhooks by name.
    pub webhooks: BTreeMap<String, Webhook>,
}

/// One webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    /// Where to POST.
    pub url: String,
    /// What to POST.
    pub format: Format,
    /// Only jobs of these rules (empty: all).
    pub rules: Vec<String>,
    /// Only gates of these kinds, `approval`, `pause` or `trap` (empty: all).
    pub gates: Vec<String>,
}

/// The body a webhook gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `{"text": ..., "blocks": [...]}`, as Slack's incoming webhooks (and Mattermost's, and
    /// Matrix bridges') take.
    Slack,
    /// sluice's own JSON: the job, the gate and the link.
    Json,
    /// Every transition of a job (not only gates) as a CloudEvent 1.0, structured mode.
    CloudEvents,
}

const FIELDS: &[&str] = &["url", "format", "rules", "gates"];
const GATE_KINDS: &[&str] = &["approval", "pause", "trap"];

impl Webhook {
    /// Whether a gate of `kind` in a job of `rule` is notified here.
    pub fn wants(&self, rule: &str, kind: &str) -> bool {
        (self.rules.is_empty() || self.rules.iter().any(|r| r == rule))
            && (self.gates.is_empty() || self.gates.iter().any(|g| g == kind))
    }
}

/// Whether `url` is an absolute http or https address with a host.
fn is_http_url(url: &str) -> bool {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    rest.is_some_and(|r| {
        let host = r.split(['/', '?', '#']).next().unwrap_or("");
        !host.is_empty() && !r.chars().any(|c| c.is_whitespace() || c.is_control())
    })
}

/// Parses a notifications file, reporting every problem at its place.
pub fn parse(text: &str, file: &str) -> Result<Notifications, Diagnostics> {
    let mut d = Diagnostics::new(file, text);
    let Some(m) = yaml::load_settings(
        &mut d,
        text,
        "a notifications file is a mapping with `monitor` and `webhooks`",
    ) else {
        return Err(d);
    };
    let mut n = Notifications::default();
    for (k, v) in m.iter() {
        match k.as_str() {
            "monitor" => match v.as_scalar().map(|s| s.as_str()) {
                Some(url) if is_http_url(url) => {
                    n.monitor = Some(url.trim_end_matches('/').to_string())
                }
                _ => d.error(
                    Loc::of(v.span()),
                    "`monitor` must be the monitor's http or https address",
                    Some("for example `monitor: https://sluice.example.com`".into()),
                ),
            },
            "webhooks" => {
                let Some(hooks) = v.as_mapping() else {
                    d.error(
                        Loc::of(v.span()),
                        "`webhooks` must be a mapping of names to webhooks",
                        None,
                    );
                    continue;
                };
                for (name, hook) in hooks.iter() {
                    if let Some(w) = webhook(&mut d, hook) {
                        n.webhooks.insert(name.as_str().to_string(), w);
                    }
                }
            }
            other => d.error(
                Loc::of(k.span()),
                format!("unknown field `{other}`"),
                Some("a notifications file has `monitor` and `webhooks`".into()),
            ),
        }
    }
    if d.is_empty() { Ok(n) } else { Err(d) }
}

fn webhook(d: &mut Diagnostics, node: &Node) -> Option<Webhook> {
    let Some(m) = node.as_mapping() else {
        d.error(
            Loc::of(node.span()),
            "a webhook is a mapping with `url` (and `format`, `rules`, `gates`)",
            None,
        );
        return None;
    };
    let mut w = Webhook {
        url: String::new(),
        format: Format::Json,
        rules: vec![],
        gates: vec![],
    };
    let before = d.items.len();
    for (k, v) in m.iter() {
        match k.as_str() {
            "url" => match v.as_scalar().map(|s| s.as_str()) {
                Some(url) if is_http_url(url) => w.url = url.to_string(),
                _ => d.error(
                    Loc::of(v.span()),
                    "`url` must be an http or https address",
                    None,
                ),
            },
            "format" => match v.as_scalar().map(|s| s.as_str()) {
                Some("slack") => w.format = Format::Slack,
                Some("json") => w.format = Format::Json,
                Some("cloudevents") => w.format = Format::CloudEvents,
                _ => d.error(
                    Loc::of(v.span()),
                    "`format` is `slack`, `json` or `cloudevents`",
                    None,
                ),
            },
            "rules" | "gates" => {
                let Some(list) = strings(v) else {
                    d.error(
                        Loc::of(v.span()),
                        format!("`{}` must be a list of names", k.as_str()),
                        None,
                    );
                    continue;
                };
                if k.as_str() == "gates" {
                    if let Some(bad) = list.iter().find(|g| !GATE_KINDS.contains(&g.as_str())) {
                        d.error(
                            Loc::of(v.span()),
                            format!("unknown gate kind `{bad}`"),
                            Some(format!("gate kinds are {}", GATE_KINDS.join(", "))),
                        );
                    }
                    w.gates = list;
                } else {
                    w.rules = list;
                }
            }
            other => {
                let hint = did_you_mean(other, FIELDS)
                    .map(|s| format!("did you mean `{s}`?"))
                    .unwrap_or_else(|| format!("a webhook has {}", FIELDS.join(", ")));
                d.error(
                    Loc::of(k.span()),
                    format!("unknown field `{other}`"),
                    Some(hint),
                );
            }
        }
    }
    if w.format == Format::CloudEvents && !w.gates.is_empty() {
        d.error(
            Loc::of(node.span()),
            "`gates` chooses which gates are notified; a `cloudevents` webhook gets every transition",
            Some("remove `gates`, or filter on the event `type` where the events arrive".into()),
        );
    }
    if w.url.is_empty() && d.items.len() == before {
        d.error(
            Loc::of(node.span()),
            "this webhook has no `url`",
            Some("add `url: https://...`".into()),
        );
    }
    (d.items.len() == before).then_some(w)
}

fn strings(n: &Node) -> Option<Vec<String>> {
    n.as_sequence()?
        .iter()
        .map(|x| x.as_scalar().map(|s| s.as_str().to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhooks_and_their_filters() {
        let n = parse(
            "monitor: https://sluice.example.com/\nwebhooks:\n  releases:\n    url: https://hooks.slack.com/services/T/B/X\n    format: slack\n    gates: [approval]\n  audit:\n    url: http://127.0.0.1:9000/hook\n    rules: [web]\n",
            "n.yaml",
        )
        .unwrap();
        assert_eq!(n.monitor.as_deref(), Some("https://sluice.example.com"));
        let r = &n.webhooks["releases"];
        assert_eq!(r.format, Format::Slack);
        assert!(r.wants("web", "approval"));
        assert!(!r.wants("web", "trap"));
        let a = &n.webhooks["audit"];
        assert_eq!(a.format, Format::Json);
        assert!(a.wants("web", "trap"));
        assert!(!a.wants("api", "approval"));
    }

    #[test]
    fn problems_are_placed() {
        let e = parse(
            "webhooks:\n  a:\n    url: ftp://x\n    fromat: json\n  b:\n    format: json\n  c:\n    url: https://x\n    gates: [aproval]\n",
            "n.yaml",
        )
        .unwrap_err();
        let text = e.to_string();
        assert!(text.contains("n.yaml:3:10"), "{text}");
        assert!(
            text.contains("`url` must be an http or https address"),
            "{text}"
        );
        assert!(text.contains("did you mean `format`?"), "{text}");
        assert!(text.contains("this webhook has no `url`"), "{text}");
        assert!(text.contains("unknown gate kind `aproval`"), "{text}");
        let e = parse(
            "webhooks:\n  e:\n    url: https://x\n    format: cloudevents\n    gates: [trap]\n",
            "n.yaml",
        )
        .unwrap_err();
        assert!(e.to_string().contains("gets every transition"), "{e}");
    }
}
