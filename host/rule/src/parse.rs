//! YAML text to a checked [`Rule`], collecting every problem with its place.

use std::collections::{BTreeMap, BTreeSet};

use marked_yaml::types::{MarkedMappingNode, MarkedScalarNode};
use marked_yaml::{LoaderOptions, Node};
use serde_json::Value;

use crate::diag::{Diagnostics, Loc, did_you_mean};
use crate::expr::{self, Evaluator, JOB_FIELDS, STEP_FIELDS};
use crate::yaml::{self, LoadFailure};
use crate::*;
use sluice_model::JobStatus;

/// What the parser needs to know from outside.
#[derive(Debug, Clone, Copy)]
pub struct ParseOptions<'a> {
    /// The file name shown in diagnostics and kept in the rule.
    pub file: &'a str,
    /// Names of the standard ops, callable without an `ops:` entry.
    pub std_ops: &'a [&'a str],
}

const TOP_KEYS: &[&str] = &[
    "rule",
    "description",
    "params",
    "ops",
    "grants",
    "phases",
    "rollback",
    "concurrency",
    "locks",
    "defaults",
    "on",
    "windows",
    "chat",
];
const JOB_FINISHED_KEYS: &[&str] = &["rule", "status", "params-match", "params"];
const CLOUDEVENT_KEYS: &[&str] = &["type", "source", "filter", "params"];
const WEBHOOK_KEYS: &[&str] = &["name", "secret", "filter", "params"];
const SCHEDULE_KEYS: &[&str] = &["cron", "timezone", "missed", "params"];
const WINDOWS_KEYS: &[&str] = &["timezone", "allow", "freeze"];
const TRIGGER_KEYS: &[&str] = &["job-finished", "cloudevent", "webhook", "schedule"];
const PARAM_KEYS: &[&str] = &["type", "required", "default", "allowed", "description"];
const PHASE_KEYS: &[&str] = &["check", "init", "pre", "run", "post"];
const STEP_KEYS: &[&str] = &[
    "id",
    "op",
    "with",
    "when",
    "timeout",
    "retry",
    "on-error",
    "trap",
    "parallel",
    "fail-fast",
    "windows",
];
const RETRY_KEYS: &[&str] = &["attempts", "delay", "max-delay"];

/// Parses and checks a rule. Every problem is reported at once; nothing half-checked is returned.
pub fn parse(text: &str, opts: &ParseOptions<'_>) -> Result<Rule, Diagnostics> {
    let mut p = Parser {
        d: Diagnostics::new(opts.file, text),
        opts: *opts,
        ids: BTreeSet::new(),
        places: Places::default(),
    };
    let root = match yaml::load(
        text,
        LoaderOptions::default()
            .error_on_duplicate_keys(true)
            .prevent_coercion(true),
    ) {
        Ok(root) => root,
        Err(LoadFailure::Located(at, msg, hint)) => {
            p.err(at, msg, hint);
            return Err(p.d);
        }
        Err(LoadFailure::Loader(e)) => {
            p.load_error(e);
            return Err(p.d);
        }
    };
    // Reference checks run even after other errors, so one run reports everything.
    let rule = p.rule(&root);
    if let Some(rule) = &rule {
        p.check_references(rule);
    }
    match rule {
        Some(rule) if p.d.is_empty() => Ok(rule),
        _ => Err(p.d),
    }
}

struct Parser<'a> {
    d: Diagnostics,
    opts: ParseOptions<'a>,
    ids: BTreeSet<String>,
    /// Where the rule-wide settings checked after parsing were written: each `grants:` key
    /// (by op), the `concurrency:` group and each lock (in order).
    places: Places,
}

#[derive(Default)]
struct Places {
    grants: BTreeMap<String, Loc>,
    concurrency: Loc,
    locks: Vec<Loc>,
}

fn loc(n: &Node) -> Loc {
    let at = Loc::of(n.span());
    // yaml-rust2 marks a block mapping at its first key's `:`; point at the key instead.
    if let Node::Mapping(m) = n
        && let Some((k, _)) = m.iter().next()
    {
        let key = Loc::of(k.span());
        if key.line == at.line && key.column < at.column {
            return key;
        }
    }
    at
}

fn kind_name(n: &Node) -> &'static str {
    match n {
        Node::Scalar(_) => "a single value",
        Node::Mapping(_) => "a mapping",
        Node::Sequence(_) => "a list",
    }
}

impl Parser<'_> {
    fn err(&mut self, at: Loc, msg: impl Into<String>, hint: Option<String>) {
        self.d.error(at, msg, hint);
    }

    fn load_error(&mut self, e: marked_yaml::LoadError) {
        use marked_yaml::LoadError::*;
        let at = |m: &marked_yaml::Marker| Loc {
            line: m.line(),
            column: m.column(),
        };
        match e {
            TopLevelMustBeMapping(m) | TopLevelMustBeSequence(m) => self.err(
                at(&m),
                "a rule is a mapping",
                Some("start with `rule: NAME`".into()),
            ),
            UnexpectedAnchor(m) => {
                self.err(at(&m), "YAML anchors are not supported in rules", None)
            }
            MappingKeyMustBeScalar(m) => self.err(at(&m), "mapping keys must be plain names", None),
            UnexpectedTag(m) => self.err(at(&m), "YAML tags are not supported in rules", None),
            ScanError(m, e) => self.err(
                at(&m),
                format!("this is not valid YAML: {}", e.info()),
                None,
            ),
            DuplicateKey(inner) => {
                let first = Loc::of(inner.prev_key.span());
                self.err(
                    Loc::of(inner.key.span()),
                    format!("`{}` is given twice", inner.key.as_str()),
                    Some(format!("the first is at line {}; keep one", first.line)),
                )
            }
            #[allow(unreachable_patterns)]
            other => self.err(Loc::default(), other.to_string(), None),
        }
    }

    /// The node as a mapping whose keys are all in `allowed`; unknown keys are reported.
    fn mapping<'n>(
        &mut self,
        n: &'n Node,
        what: &str,
        allowed: &[&str],
    ) -> Option<&'n MarkedMappingNode> {
        let Some(m) = n.as_mapping() else {
            self.err(
                loc(n),
                format!("{what} must be a mapping, not {}", kind_name(n)),
                None,
            );
            return None;
        };
        for (k, _) in m.iter() {
            if !allowed.contains(&k.as_str()) {
                let hint = match (k.as_str(), did_you_mean(k.as_str(), allowed)) {
                    ("finally" | "always" | "on-exit" | "onExit", _)
                        if allowed.contains(&"post") =>
                    {
                        "use `post`: it always runs, like finally".to_string()
                    }
                    (_, Some(s)) => format!("did you mean `{s}`?"),
                    (_, None) => format!("{what} takes {}", allowed.join(", ")),
                };
                self.err(
                    Loc::of(k.span()),
                    format!("unknown field `{}` in {what}", k.as_str()),
                    Some(hint),
                );
            }
        }
        Some(m)
    }

    fn string(&mut self, n: &Node, what: &str) -> Option<String> {
        match n.as_scalar() {
            Some(s) => Some(s.as_str().to_string()),
            None => {
                self.err(
                    loc(n),
                    format!("{what} must be text, not {}", kind_name(n)),
                    None,
                );
                None
            }
        }
    }

    fn boolean(&mut self, n: &Node, what: &str) -> Option<bool> {
        match n.as_scalar().and_then(MarkedScalarNode::as_bool) {
            Some(b) => Some(b),
            None => {
                self.err(loc(n), format!("{what} must be true or false"), None);
                None
            }
        }
    }

    fn duration_ms(&mut self, n: &Node, what: &str) -> Option<u64> {
        let text = self.string(n, what)?;
        match sluice_duration::parse_millis(&text) {
            Ok(ms) => Some(ms),
            Err(_) => {
                self.err(
                    loc(n),
                    format!("{what} `{text}` is not a duration"),
                    Some(sluice_duration::HINT.into()),
                );
                None
            }
        }
    }

    fn rule(&mut self, root: &Node) -> Option<Rule> {
        let m = self.mapping(root, "a rule", TOP_KEYS)?;
        let name = match m.get_node("rule") {
            Some(n) => self.string(n, "`rule`").unwrap_or_default(),
            None => {
                self.err(
                    loc(root),
                    "the rule has no name",
                    Some("add `rule: NAME` at the top".into()),
                );
                String::new()
            }
        };
        if !name.is_empty() && !valid_id(&name) {
            let at = m.get_node("rule").map(loc).unwrap_or_default();
            self.err(
                at,
                format!("rule name `{name}` is not a plain name"),
                Some("use lowercase letters, digits and `-`".into()),
            );
        }
        let description = m
            .get_node("description")
            .and_then(|n| self.string(n, "`description`"))
            .unwrap_or_default();
        let params = m
            .get_node("params")
            .map(|n| self.params(n))
            .unwrap_or_default();
        let ops = m.get_node("ops").map(|n| self.ops(n)).unwrap_or_default();
        let defaults = m
            .get_node("defaults")
            .map(|n| self.defaults(n))
            .unwrap_or_default();

        let mut phases = Phases::default();
        if let Some(n) = m.get_node("phases")
            && let Some(pm) = self.mapping(n, "`phases`", PHASE_KEYS)
        {
            for (k, v) in pm.iter() {
                let phase = match k.as_str() {
                    "check" => Phase::Check,
                    "init" => Phase::Init,
                    "pre" => Phase::Pre,
                    "run" => Phase::Run,
                    "post" => Phase::Post,
                    _ => continue,
                };
                let steps = self.steps(v, phase, &defaults);
                match phase {
                    Phase::Check => phases.check = steps,
                    Phase::Init => phases.init = steps,
                    Phase::Pre => phases.pre = steps,
                    Phase::Run => phases.run = steps,
                    Phase::Post => phases.post = steps,
                    Phase::Rollback => {}
                }
            }
        } else if m.get_node("phases").is_none() {
            self.err(
                loc(root),
                "the rule has no `phases`",
                Some("add `phases:` with at least `run:`".into()),
            );
        }
        let rollback = m
            .get_node("rollback")
            .map(|n| self.steps(n, Phase::Rollback, &defaults))
            .unwrap_or_default();
        let concurrency = m.get_node("concurrency").and_then(|n| self.concurrency(n));
        let grants = m
            .get_node("grants")
            .map(|n| self.grants(n))
            .unwrap_or_default();
        let locks = m
            .get_node("locks")
            .map(|n| self.locks(n))
            .unwrap_or_default();
        let on = m
            .get_node("on")
            .map(|n| self.triggers(n, &name, &params))
            .unwrap_or_default();
        let windows = m.get_node("windows").and_then(|n| self.windows(n));
        let chat_follow = m
            .get_node("chat")
            .map(|n| self.chat_rooms(n))
            .unwrap_or_default();

        Some(Rule {
            name,
            description,
            file: self.opts.file.to_string(),
            params,
            ops,
            phases,
            rollback,
            concurrency,
            locks,
            defaults,
            grants,
            on,
            windows,
            chat_follow,
        })
    }

    /// `on:`: a list of triggers, each a mapping with one key (`job-finished`).
    fn triggers(&mut self, n: &Node, own: &str, params: &[Param]) -> Vec<Trigger> {
        let Some(seq) = n.as_sequence() else {
            self.err(
                loc(n),
                "`on` must be a list of triggers",
                Some("for example `on: [{ job-finished: { rule: qa-delivery } }]`".into()),
            );
            return vec![];
        };
        let mut out = Vec::new();
        for item in seq.iter() {
            let Some(m) = self.mapping(item, "a trigger", TRIGGER_KEYS) else {
                continue;
            };
            if m.iter().count() > 1 {
                self.err(
                    loc(item),
                    "a trigger names one thing that starts the job",
                    Some("give each its own list item: `on: [{ cloudevent: ... }, { schedule: ... }]`".into()),
                );
            }
            if let Some(body) = m.get_node("cloudevent") {
                if let Some(t) = self.cloudevent_trigger(body, params) {
                    out.push(Trigger::Cloudevent(t));
                }
                continue;
            }
            if let Some(body) = m.get_node("webhook") {
                if let Some(t) = self.webhook_trigger(body, params) {
                    out.push(Trigger::Webhook(t));
                }
                continue;
            }
            if let Some(body) = m.get_node("schedule") {
                if let Some(t) = self.schedule_trigger(body, params) {
                    out.push(Trigger::Schedule(t));
                }
                continue;
            }
            let Some(body) = m.get_node("job-finished") else {
                self.err(
                    loc(item),
                    "a trigger names what starts the job: `job-finished`, `cloudevent`, `webhook` or `schedule`",
                    None,
                );
                continue;
            };
            let Some(t) = self.mapping(body, "`job-finished`", JOB_FINISHED_KEYS) else {
                continue;
            };
            let Some(rule) = t.get_node("rule").and_then(|x| self.string(x, "`rule`")) else {
                self.err(
                    loc(body),
                    "`job-finished` needs the `rule` whose jobs it follows",
                    None,
                );
                continue;
            };
            if rule == own {
                self.err(
                    t.get_node("rule").map(loc).unwrap_or_default(),
                    format!("`{rule}` would start itself each time one of its jobs ends"),
                    Some("follow another rule; a chain back to this one is bounded at run time, a rule naming itself is refused".into()),
                );
            }
            let mut status = Vec::new();
            match t.get_node("status") {
                None => status.push(JobStatus::Succeeded),
                Some(s) => {
                    let items: Vec<&Node> = match s.as_sequence() {
                        Some(seq) => seq.iter().collect(),
                        None => vec![s],
                    };
                    for i in items {
                        let word = i.as_scalar().map(|x| x.as_str()).unwrap_or("");
                        match JobStatus::ALL.iter().find(|st| st.as_str() == word) {
                            Some(st) => status.push(*st),
                            None => {
                                let words: Vec<&str> =
                                    JobStatus::ALL.iter().map(|s| s.as_str()).collect();
                                self.err(
                                    loc(i),
                                    format!("`{word}` is not how a job ends"),
                                    Some(match did_you_mean(word, &words) {
                                        Some(w) => format!("did you mean `{w}`?"),
                                        None => format!("endings are {}", words.join(", ")),
                                    }),
                                );
                            }
                        }
                    }
                }
            }
            let params_match = t
                .get_node("params-match")
                .map(|x| self.text_map(x, "`params-match`"))
                .unwrap_or_default();
            let mapped = self.trigger_params(t, params);
            out.push(Trigger::JobFinished(JobFinished {
                rule,
                status,
                params_match,
                params: mapped,
            }));
        }
        out
    }

    /// `cloudevent: { type, source, filter, params }`.
    fn cloudevent_trigger(&mut self, body: &Node, params: &[Param]) -> Option<CloudEventTrigger> {
        let t = self.mapping(body, "`cloudevent`", CLOUDEVENT_KEYS)?;
        let Some(ty) = t.get_node("type").and_then(|x| self.string(x, "`type`")) else {
            self.err(
                loc(body),
                "`cloudevent` needs the event `type` that starts a job",
                Some("for example `type: com.example.artifact.published`".into()),
            );
            return None;
        };
        let source = t
            .get_node("source")
            .and_then(|x| self.string(x, "`source`"));
        let filter = self.trigger_filter(t);
        let mapped = self.trigger_params(t, params);
        Some(CloudEventTrigger {
            ty,
            source,
            filter,
            params: mapped,
        })
    }

    /// `chat: { follow: [slack:C0123, "matrix:!room:server"] }`.
    fn chat_rooms(&mut self, n: &Node) -> Vec<String> {
        let Some(m) = self.mapping(n, "`chat`", &["follow"]) else {
            return vec![];
        };
        let Some(f) = m.get_node("follow") else {
            return vec![];
        };
        let Some(seq) = f.as_sequence() else {
            self.err(
                loc(f),
                "`follow` must be a list of rooms",
                Some("for example `follow: [slack:C0123]`".into()),
            );
            return vec![];
        };
        let mut rooms = Vec::new();
        for r in seq.iter() {
            let room = r.as_scalar().map(|s| s.as_str()).unwrap_or("");
            match room.split_once(':') {
                Some(("slack" | "matrix", id)) if !id.is_empty() => rooms.push(room.to_string()),
                _ => self.err(
                    loc(r),
                    format!("`{room}` does not say which chat room"),
                    Some("write slack:CHANNEL_ID or matrix:!room:server".into()),
                ),
            }
        }
        rooms
    }

    /// `webhook: { name, secret, filter, params }`.
    fn webhook_trigger(&mut self, body: &Node, params: &[Param]) -> Option<WebhookTrigger> {
        let t = self.mapping(body, "`webhook`", WEBHOOK_KEYS)?;
        let Some(name) = t.get_node("name").and_then(|x| self.string(x, "`name`")) else {
            self.err(
                loc(body),
                "`webhook` needs the `name` it is posted to (`POST /hooks/NAME`)",
                Some("for example `name: github-push`".into()),
            );
            return None;
        };
        if !valid_id(&name) {
            self.err(
                t.get_node("name").map(loc).unwrap_or_default(),
                format!("`{name}` cannot stand in a URL path as it is"),
                Some("use lowercase letters, digits and `-`".into()),
            );
        }
        let Some(secret) = t
            .get_node("secret")
            .and_then(|x| self.string(x, "`secret`"))
        else {
            self.err(
                loc(body),
                "`webhook` needs the name of the `secret` its deliveries are signed with",
                Some("every delivery is checked against it (GitHub's X-Hub-Signature-256); the server reads it from SLUICE_SECRET_<NAME>".into()),
            );
            return None;
        };
        let filter = self.trigger_filter(t);
        let mapped = self.trigger_params(t, params);
        Some(WebhookTrigger {
            name,
            secret,
            filter,
            params: mapped,
        })
    }

    /// `schedule: { cron, timezone, missed, params }`.
    fn schedule_trigger(&mut self, body: &Node, params: &[Param]) -> Option<calendar::Schedule> {
        let t = self.mapping(body, "`schedule`", SCHEDULE_KEYS)?;
        let Some(cron) = t.get_node("cron").and_then(|x| self.string(x, "`cron`")) else {
            self.err(
                loc(body),
                "`schedule` needs a `cron` pattern",
                Some("for example `cron: \"0 3 * * 1-5\"` (03:00 on weekdays)".into()),
            );
            return None;
        };
        if let Err(e) = calendar::cron(&cron) {
            self.err(t.get_node("cron").map(loc).unwrap_or_default(), e, None);
        }
        let timezone = self.timezone(t)?;
        let missed = match t
            .get_scalar("missed")
            .map(|s| (s.as_str(), Loc::of(s.span())))
        {
            None | Some(("run-once", _)) => calendar::Missed::RunOnce,
            Some(("skip", _)) => calendar::Missed::Skip,
            Some((other, l)) => {
                self.err(
                    l,
                    format!("`missed: {other}` is not a choice"),
                    Some(
                        "use run-once (the latest missed run runs when a server is back) or skip"
                            .into(),
                    ),
                );
                calendar::Missed::RunOnce
            }
        };
        let mapped = self.trigger_params(t, params);
        Some(calendar::Schedule {
            cron,
            timezone,
            missed,
            params: mapped,
        })
    }

    /// A trigger's `filter:`, a condition checked when the rule is read.
    fn trigger_filter(&mut self, t: &MarkedMappingNode) -> Option<String> {
        let filter = t
            .get_node("filter")
            .and_then(|x| self.string(x, "`filter`"));
        if let Some(f) = &filter
            && let Err(e) =
                expr::condition_expr(f).and_then(|x| Evaluator::new().names(x).map(|_| ()))
        {
            let at = t.get_node("filter").map(loc).unwrap_or_default();
            self.err(at, format!("`filter`: {e}"), None);
        }
        filter
    }

    /// `windows:` of a rule or a step: `timezone`, `allow` (days and hours), `freeze` (dates).
    fn windows(&mut self, n: &Node) -> Option<calendar::Windows> {
        let m = self.mapping(n, "`windows`", WINDOWS_KEYS)?;
        let timezone = self.timezone(m)?;
        let mut allow = Vec::new();
        if let Some(a) = m.get_node("allow") {
            let items: Vec<&Node> = match a.as_sequence() {
                Some(seq) => seq.iter().collect(),
                None => vec![a],
            };
            for item in items {
                let Some(am) = self.mapping(item, "an `allow` range", &["days", "hours"]) else {
                    continue;
                };
                let mut days = Vec::new();
                if let Some(d) = am.get_node("days") {
                    let ds: Vec<&Node> = match d.as_sequence() {
                        Some(seq) => seq.iter().collect(),
                        None => vec![d],
                    };
                    for x in ds {
                        let word = x
                            .as_scalar()
                            .map(|s| s.as_str().to_lowercase())
                            .unwrap_or_default();
                        // `mon-fri` is a range of days.
                        let range = word
                            .split_once('-')
                            .and_then(|(a, b)| Some((calendar::day(a)?, calendar::day(b)?)));
                        match (calendar::day(&word), range) {
                            (Some(_), _) => days.push(word),
                            (None, Some((a, b))) if a <= b => {
                                days.extend((a..=b).map(|i| calendar::DAYS[i as usize].to_string()))
                            }
                            _ => self.err(
                                loc(x),
                                format!("`{word}` is not a day of the week"),
                                Some(match did_you_mean(&word, &calendar::DAYS) {
                                    Some(w) => format!("did you mean `{w}`?"),
                                    None => format!(
                                        "use {} or a range such as mon-fri",
                                        calendar::DAYS.join(", ")
                                    ),
                                }),
                            ),
                        }
                    }
                }
                let hours = am.get_node("hours").and_then(|h| {
                    let text = self.string(h, "`hours`")?;
                    if let Err(e) = calendar::hours(&text) {
                        self.err(loc(h), e, None);
                    }
                    Some(text)
                });
                allow.push(calendar::Allow { days, hours });
            }
        }
        let mut freeze = Vec::new();
        if let Some(f) = m.get_node("freeze") {
            let Some(seq) = f.as_sequence() else {
                self.err(loc(f), "`freeze` must be a list of periods", Some("for example `freeze: [{ from: 2026-12-22, to: 2027-01-06, reason: holidays }]`".into()));
                return None;
            };
            for item in seq.iter() {
                let Some(fm) = self.mapping(item, "a freeze", &["from", "to", "reason"]) else {
                    continue;
                };
                let day_of = |p: &mut Self, key: &str| -> Option<String> {
                    let Some(x) = fm.get_node(key) else {
                        p.err(
                            loc(item),
                            format!("a freeze needs `{key}` (a date, YYYY-MM-DD)"),
                            None,
                        );
                        return None;
                    };
                    let text = p.string(x, key)?;
                    if let Err(e) = calendar::date(&text) {
                        p.err(loc(x), e, None);
                        return None;
                    }
                    Some(text)
                };
                let (Some(from), Some(to)) = (day_of(self, "from"), day_of(self, "to")) else {
                    continue;
                };
                if calendar::date(&to).ok() < calendar::date(&from).ok() {
                    self.err(
                        loc(item),
                        format!("the freeze ends ({to}) before it starts ({from})"),
                        None,
                    );
                }
                let reason = fm
                    .get_node("reason")
                    .and_then(|r| self.string(r, "`reason`"))
                    .unwrap_or_default();
                freeze.push(calendar::Freeze { from, to, reason });
            }
        }
        if allow.is_empty() && freeze.is_empty() {
            self.err(
                loc(n),
                "`windows` says neither when to run (`allow`) nor when not to (`freeze`)",
                Some("for example `allow: [{ days: mon-fri, hours: \"09:00-17:00\" }]`".into()),
            );
            return None;
        }
        Some(calendar::Windows {
            timezone,
            allow,
            freeze,
        })
    }

    /// A trigger's `params:`: templates by param name, checked.
    fn trigger_params(
        &mut self,
        t: &MarkedMappingNode,
        params: &[Param],
    ) -> BTreeMap<String, String> {
        let Some(pm) = t.get_node("params") else {
            return BTreeMap::new();
        };
        let mapped = self.text_map(pm, "`params`");
        self.check_trigger_params(pm, params);
        mapped
    }

    /// `timezone:` of windows and schedules, an IANA name (`UTC` when not given).
    fn timezone(&mut self, m: &MarkedMappingNode) -> Option<String> {
        let Some(t) = m.get_node("timezone") else {
            return Some("UTC".to_string());
        };
        let tz = self.string(t, "`timezone`")?;
        if let Err(e) = calendar::zone(&tz) {
            self.err(loc(t), e, None);
        }
        Some(tz)
    }

    /// A trigger's `params:` names params of this rule, with templates that parse.
    fn check_trigger_params(&mut self, pm: &Node, params: &[Param]) {
        let Some(pm) = pm.as_mapping() else {
            return;
        };
        let names: Vec<&str> = params.iter().map(|p| p.name.as_str()).collect();
        for (k, v) in pm.iter() {
            if !names.contains(&k.as_str()) {
                self.err(
                    Loc::of(k.span()),
                    format!("this rule has no param `{}`", k.as_str()),
                    Some(match did_you_mean(k.as_str(), &names) {
                        Some(w) => format!("did you mean `{w}`?"),
                        None => format!("its params are {}", names.join(", ")),
                    }),
                );
            }
            if let Some(text) = v.as_scalar().map(|s| s.as_str())
                && let Err(e) = crate::expr::find(text)
            {
                self.err(Loc::of(v.span()), e.to_string(), None);
            }
        }
    }

    /// A mapping of names to text (numbers and booleans are taken as written).
    fn text_map(&mut self, n: &Node, what: &str) -> BTreeMap<String, String> {
        let Some(m) = n.as_mapping() else {
            self.err(
                loc(n),
                format!("{what} must be a mapping of names to values"),
                None,
            );
            return BTreeMap::new();
        };
        let mut out = BTreeMap::new();
        for (k, v) in m.iter() {
            match v.as_scalar() {
                Some(s) => {
                    out.insert(k.as_str().to_string(), s.as_str().to_string());
                }
                None => self.err(
                    loc(v),
                    format!("{what}: `{}` must be one value", k.as_str()),
                    None,
                ),
            }
        }
        out
    }

    fn params(&mut self, n: &Node) -> Vec<Param> {
        // Param names are free, so no key check here.
        let Some(m) = n.as_mapping() else {
            self.err(
                loc(n),
                "`params` must be a mapping of names to types",
                Some("for example `image: { type: string }`".into()),
            );
            return vec![];
        };
        let mut out = Vec::new();
        for (k, v) in m.iter() {
            let name = k.as_str().to_string();
            if !valid_param(&name) {
                self.err(
                    Loc::of(k.span()),
                    format!("param name `{name}` is not a plain name"),
                    Some("use letters, digits and `_`".into()),
                );
            }
            let what = format!("param `{name}`");
            // `image: string` is short for `image: { type: string, required: true }`.
            if let Some(s) = v.as_scalar() {
                if let Some(kind) = self.param_type(s, &what) {
                    out.push(Param {
                        name,
                        kind,
                        required: true,
                        default: None,
                        allowed: vec![],
                        description: String::new(),
                    });
                }
                continue;
            }
            let Some(pm) = self.mapping(v, &what, PARAM_KEYS) else {
                continue;
            };
            let kind = match pm.get_scalar("type") {
                Some(s) => self.param_type(s, &what),
                None => Some(ParamType::String),
            };
            let Some(kind) = kind else { continue };
            let default = pm
                .get_node("default")
                .and_then(|d| self.param_value(d, kind, &what));
            let required = match pm.get_node("required") {
                Some(r) => self
                    .boolean(r, &format!("`required` of {what}"))
                    .unwrap_or(false),
                None => default.is_none(),
            };
            let allowed = match pm.get_node("allowed") {
                Some(a) => match a.as_sequence() {
                    Some(seq) => seq
                        .iter()
                        .filter_map(|x| self.param_value(x, kind, &what))
                        .collect(),
                    None => {
                        self.err(loc(a), format!("`allowed` of {what} must be a list"), None);
                        vec![]
                    }
                },
                None => vec![],
            };
            if let (Some(d), false) = (&default, allowed.is_empty())
                && !allowed.contains(d)
            {
                let at = pm.get_node("default").map(loc).unwrap_or_default();
                self.err(
                    at,
                    format!("the default of {what} is not one of its allowed values"),
                    None,
                );
            }
            let description = pm
                .get_node("description")
                .and_then(|d| self.string(d, "`description`"))
                .unwrap_or_default();
            out.push(Param {
                name,
                kind,
                required,
                default,
                allowed,
                description,
            });
        }
        out
    }

    fn param_type(&mut self, s: &MarkedScalarNode, what: &str) -> Option<ParamType> {
        match s.as_str() {
            "string" => Some(ParamType::String),
            "number" => Some(ParamType::Number),
            "boolean" | "bool" => Some(ParamType::Boolean),
            other => {
                self.err(
                    Loc::of(s.span()),
                    format!("{what} has unknown type `{other}`"),
                    Some("use string, number or boolean".into()),
                );
                None
            }
        }
    }

    fn param_value(&mut self, n: &Node, kind: ParamType, what: &str) -> Option<Value> {
        let v = to_json(n);
        let ok = match kind {
            ParamType::String => v.is_string(),
            ParamType::Number => v.is_number(),
            ParamType::Boolean => v.is_boolean(),
        };
        if ok {
            Some(v)
        } else {
            let k = match kind {
                ParamType::String => "text",
                ParamType::Number => "a number",
                ParamType::Boolean => "true or false",
            };
            self.err(loc(n), format!("{what} takes {k}, and {v} is not"), None);
            None
        }
    }

    fn ops(&mut self, n: &Node) -> BTreeMap<String, OpSource> {
        let mut out = BTreeMap::new();
        let Some(m) = n.as_mapping() else {
            self.err(
                loc(n),
                "`ops` must be a mapping of op names to sources",
                None,
            );
            return out;
        };
        for (k, v) in m.iter() {
            let name = k.as_str().to_string();
            if self.opts.std_ops.contains(&name.as_str()) {
                self.err(
                    Loc::of(k.span()),
                    format!("`{name}` is a standard op"),
                    Some("pick another name for your op".into()),
                );
            }
            let what = format!("op `{name}`");
            let Some(om) = self.mapping(v, &what, &["path", "package"]) else {
                continue;
            };
            if let Some(p) = om.get_node("path") {
                if let Some(path) = self.string(p, "`path`") {
                    out.insert(name, OpSource::Path(path));
                }
            } else if let Some(p) = om.get_node("package") {
                if let Some(reference) = self.string(p, "`package`") {
                    if reference.starts_with("oci://") && reference[6..].contains('/') {
                        out.insert(name, OpSource::Package(reference));
                    } else {
                        self.err(
                            loc(p),
                            format!("`{reference}` is not a package reference"),
                            Some("write oci://REGISTRY/REPOSITORY:TAG".into()),
                        );
                    }
                }
            } else {
                self.err(
                    loc(v),
                    format!(
                        "{what} needs `path: FILE.wasm` or `package: oci://REGISTRY/REPOSITORY:TAG`"
                    ),
                    None,
                );
            }
        }
        out
    }

    fn grants(&mut self, n: &Node) -> BTreeMap<String, Vec<sluice_model::Capability>> {
        let mut out = BTreeMap::new();
        let Some(m) = n.as_mapping() else {
            self.err(
                loc(n),
                "`grants` must map op names to lists such as [exec:kubectl, secret:token]",
                None,
            );
            return out;
        };
        for (op, list) in m.iter() {
            self.places
                .grants
                .insert(op.as_str().to_string(), Loc::of(op.span()));
            let Some(seq) = list.as_sequence() else {
                self.err(
                    loc(list),
                    format!("the grants of `{}` must be a list", op.as_str()),
                    None,
                );
                continue;
            };
            let mut caps = Vec::new();
            for item in seq.iter() {
                let Some(text) = self.string(item, "a grant") else {
                    continue;
                };
                match text.parse::<sluice_model::Capability>() {
                    Ok(sluice_model::Capability::Http(o)) if o == "*" => self.err(
                        loc(item),
                        "`http:*` cannot be granted: sluice grants HTTP per origin",
                        Some("grant each origin the op calls, e.g. http:https://api.example.com (a leading `*.` covers subdomains)".into()),
                    ),
                    Ok(c) => caps.push(c),
                    Err(e) => self.err(loc(item), e, None),
                }
            }
            out.insert(op.as_str().to_string(), caps);
        }
        out
    }

    fn defaults(&mut self, n: &Node) -> Defaults {
        let Some(m) = self.mapping(n, "`defaults`", &["timeout", "retry"]) else {
            return Defaults::default();
        };
        Defaults {
            timeout_ms: m
                .get_node("timeout")
                .and_then(|t| self.duration_ms(t, "`timeout`")),
            retry: m.get_node("retry").and_then(|r| self.retry(r)),
        }
    }

    fn retry(&mut self, n: &Node) -> Option<Retry> {
        // `retry: 3` is short for `retry: { attempts: 3 }`.
        if let Some(s) = n.as_scalar() {
            return match s.as_str().parse::<u32>() {
                Ok(a) if a >= 1 => Some(Retry {
                    attempts: a,
                    delay_ms: 1000,
                    max_delay_ms: 60_000,
                }),
                _ => {
                    self.err(
                        loc(n),
                        "`retry` must be a number of attempts of 1 or more",
                        None,
                    );
                    None
                }
            };
        }
        let m = self.mapping(n, "`retry`", RETRY_KEYS)?;
        let attempts = match m.get_scalar("attempts").map(|s| s.as_str().parse::<u32>()) {
            Some(Ok(a)) if a >= 1 => a,
            _ => {
                self.err(
                    loc(n),
                    "`retry` needs `attempts`: a number of 1 or more, the first attempt included",
                    None,
                );
                return None;
            }
        };
        let delay_ms = m
            .get_node("delay")
            .and_then(|d| self.duration_ms(d, "`delay`"))
            .unwrap_or(1000);
        let max_delay_ms = m
            .get_node("max-delay")
            .and_then(|d| self.duration_ms(d, "`max-delay`"))
            .unwrap_or(60_000);
        Some(Retry {
            attempts,
            delay_ms,
            max_delay_ms: max_delay_ms.max(delay_ms),
        })
    }

    fn trap_policy(&mut self, n: &Node) -> TrapPolicy {
        let Some(m) = self.mapping(n, "`trap`", &["timeout", "on-timeout", "max-retries"]) else {
            return TrapPolicy::default();
        };
        let on_timeout = m.get_scalar("on-timeout").and_then(|s| match s.as_str() {
            "abort" => Some(sluice_model::DecisionKind::Abort),
            "skip" => Some(sluice_model::DecisionKind::Skip),
            "retry" => Some(sluice_model::DecisionKind::Retry),
            "rollback" => Some(sluice_model::DecisionKind::Rollback),
            other => {
                self.err(
                    Loc::of(s.span()),
                    format!("trap `on-timeout: {other}` is not a choice"),
                    Some("use abort, skip, retry or rollback".into()),
                );
                None
            }
        });
        let max_retries =
            m.get_scalar("max-retries")
                .and_then(|s| match s.as_str().parse::<u32>() {
                    Ok(n) => Some(n),
                    Err(_) => {
                        self.err(Loc::of(s.span()), "`max-retries` must be a number", None);
                        None
                    }
                });
        TrapPolicy {
            timeout_ms: m
                .get_node("timeout")
                .and_then(|t| self.duration_ms(t, "`timeout`")),
            on_timeout,
            max_retries,
        }
    }

    fn steps(&mut self, n: &Node, phase: Phase, defaults: &Defaults) -> Vec<Step> {
        let Some(seq) = n.as_sequence() else {
            self.err(
                loc(n),
                format!("`{}` must be a list of steps", phase.as_str()),
                None,
            );
            return vec![];
        };
        seq.iter()
            .filter_map(|s| self.step(s, phase, defaults))
            .collect()
    }

    fn step(&mut self, n: &Node, phase: Phase, defaults: &Defaults) -> Option<Step> {
        let m = self.mapping(n, "a step", STEP_KEYS)?;
        let at = loc(n);
        let when = m.get_node("when").and_then(|w| match w.as_scalar() {
            Some(s) => Some(s.as_str().to_string()),
            None => {
                self.err(
                    loc(w),
                    "`when` must be a condition such as `${{ params.env == 'prod' }}`",
                    None,
                );
                None
            }
        });
        let kind = match (m.get_node("op"), m.get_node("parallel")) {
            (Some(_), Some(p)) => {
                self.err(
                    loc(p),
                    "a step is either an `op` or a `parallel` group, not both",
                    None,
                );
                return None;
            }
            (None, None) => {
                self.err(at, "a step needs `op: NAME` or `parallel:`", None);
                return None;
            }
            (Some(op), None) => {
                for k in ["fail-fast"] {
                    if let Some(x) = m.get_node(k) {
                        self.err(
                            loc(x),
                            format!("`{k}` belongs to a `parallel` group, not an op step"),
                            None,
                        );
                    }
                }
                let op_name = self.string(op, "`op`")?;
                if let Some(deep) = m
                    .get_node("with")
                    .and_then(|w| deeper_than(w, MAX_WITH_DEPTH))
                {
                    self.err(
                        loc(deep),
                        format!("`with` is nested more than {MAX_WITH_DEPTH} levels deep here"),
                        Some(format!(
                            "an op's input nests at most {MAX_WITH_DEPTH} mappings and lists, so a job can always be read back; flatten it"
                        )),
                    );
                }
                let with = m
                    .get_node("with")
                    .map(to_json)
                    .unwrap_or(Value::Object(Default::default()));
                let mut with_locs = InputLocs::default();
                let with_key = m.iter().find(|(k, _)| k.as_str() == "with");
                with_locs.insert(
                    String::new(),
                    with_key.map(|(k, _)| Loc::of(k.span())).unwrap_or(at),
                );
                if let Some((_, w)) = with_key {
                    record_locs(w, &mut String::new(), &mut with_locs);
                }
                let timeout_ms = match m.get_node("timeout") {
                    Some(t) => self.duration_ms(t, "`timeout`"),
                    None => defaults.timeout_ms,
                };
                let retry = match m.get_node("retry") {
                    Some(r) => self.retry(r),
                    None => defaults.retry,
                };
                let on_error = match m
                    .get_scalar("on-error")
                    .map(|s| (s.as_str(), Loc::of(s.span())))
                {
                    None | Some(("fail", _)) => OnError::Fail,
                    Some(("continue", _)) => OnError::Continue,
                    Some(("trap", l)) => {
                        if !matches!(phase, Phase::Init | Phase::Pre | Phase::Run) {
                            self.err(
                                l,
                                format!("`on-error: trap` cannot stand in `{}`: nobody may stop it there", phase.as_str()),
                                Some("traps belong in init, pre and run".into()),
                            );
                        }
                        OnError::Trap
                    }
                    Some((other, l)) => {
                        self.err(
                            l,
                            format!("`on-error: {other}` is not a choice"),
                            Some("use fail, continue or trap".into()),
                        );
                        OnError::Fail
                    }
                };
                if GATE_OPS.contains(&op_name.as_str())
                    && !matches!(phase, Phase::Init | Phase::Pre | Phase::Run)
                {
                    let hint = match phase {
                        Phase::Check => "a gate right after check is the first step of `init`",
                        Phase::Post => "post always runs to the end; put the gate before it",
                        _ => "gates belong in init, pre and run",
                    };
                    self.err(
                        loc(op),
                        format!("`{op_name}` cannot stand in `{}`", phase.as_str()),
                        Some(hint.into()),
                    );
                }
                let trap = m
                    .get_node("trap")
                    .map(|t| self.trap_policy(t))
                    .unwrap_or_default();
                let windows = match m.get_node("windows") {
                    Some(w) if !matches!(phase, Phase::Init | Phase::Pre | Phase::Run) => {
                        self.err(
                            loc(w),
                            format!(
                                "a step of `{}` cannot wait for a deploy window",
                                phase.as_str()
                            ),
                            Some(
                                "windows belong on steps of init, pre and run, or on the rule"
                                    .into(),
                            ),
                        );
                        None
                    }
                    Some(w) => self.windows(w).map(Box::new),
                    None => None,
                };
                StepKind::Op(OpCall {
                    op: op_name,
                    with,
                    timeout_ms,
                    retry,
                    on_error,
                    trap,
                    windows,
                    with_locs,
                })
            }
            (None, Some(p)) => {
                for k in ["with", "timeout", "retry", "on-error", "trap", "windows"] {
                    if let Some(x) = m.get_node(k) {
                        self.err(
                            loc(x),
                            format!(
                                "`{k}` belongs to an op step; put it on the steps inside the group"
                            ),
                            None,
                        );
                    }
                }
                let Some(branches) = p.as_sequence() else {
                    self.err(loc(p), "`parallel` must be a list of branches", None);
                    return None;
                };
                if branches.is_empty() {
                    self.err(loc(p), "`parallel` has no branches", None);
                }
                let branches = branches
                    .iter()
                    .map(|b| match b {
                        Node::Sequence(_) => self.steps(b, phase, defaults),
                        _ => self.step(b, phase, defaults).into_iter().collect(),
                    })
                    .collect();
                let fail_fast = m
                    .get_node("fail-fast")
                    .and_then(|f| self.boolean(f, "`fail-fast`"))
                    .unwrap_or(false);
                StepKind::Parallel(Parallel {
                    branches,
                    fail_fast,
                })
            }
        };
        let id = match m.get_node("id") {
            Some(idn) => {
                let id = self.string(idn, "`id`")?;
                if !valid_id(&id) {
                    self.err(
                        loc(idn),
                        format!("step id `{id}` is not a plain name"),
                        Some("use lowercase letters, digits and `-`".into()),
                    );
                }
                if !self.ids.insert(id.clone()) {
                    self.err(
                        loc(idn),
                        format!("step id `{id}` is used twice"),
                        Some("step ids are unique in a rule".into()),
                    );
                }
                id
            }
            None => self.fresh_id(match &kind {
                StepKind::Op(c) => &c.op,
                StepKind::Parallel(_) => "parallel",
            }),
        };
        Some(Step {
            id,
            when,
            loc: at,
            kind,
        })
    }

    /// `base`, or `base-2`, `base-3`... whichever is free. Explicit ids win over later ones
    /// because they are checked as they come; a clash is reported.
    fn fresh_id(&mut self, base: &str) -> String {
        let base: String = base
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .collect();
        let mut id = base.clone();
        let mut n = 2;
        while self.ids.contains(&id) {
            id = format!("{base}-{n}");
            n += 1;
        }
        self.ids.insert(id.clone());
        id
    }

    fn concurrency(&mut self, n: &Node) -> Option<Concurrency> {
        self.places.concurrency = loc(n);
        let m = self.mapping(n, "`concurrency`", &["group", "mode"])?;
        let group = match m.get_node("group") {
            Some(g) => self.string(g, "`group`")?,
            None => {
                self.err(
                    loc(n),
                    "`concurrency` needs a `group` name",
                    Some("for example `group: deploy-${{ params.env }}`".into()),
                );
                return None;
            }
        };
        let mode = match m
            .get_scalar("mode")
            .map(|s| (s.as_str(), Loc::of(s.span())))
        {
            None | Some(("queue", _)) => ConcurrencyMode::Queue,
            Some(("reject", _)) => ConcurrencyMode::Reject,
            Some(("cancel-pending", _)) => ConcurrencyMode::CancelPending,
            Some((other, l)) => {
                self.err(
                    l,
                    format!("concurrency mode `{other}` is not a choice"),
                    Some("use queue, reject or cancel-pending".into()),
                );
                return None;
            }
        };
        Some(Concurrency { group, mode })
    }

    fn locks(&mut self, n: &Node) -> Vec<Lock> {
        let Some(seq) = n.as_sequence() else {
            self.err(
                loc(n),
                "`locks` must be a list such as `[{ name: env-qa, mode: exclusive }]`",
                None,
            );
            return vec![];
        };
        let mut out = Vec::new();
        for item in seq.iter() {
            // `- env-qa` is short for `- { name: env-qa, mode: exclusive }`.
            if let Some(s) = item.as_scalar() {
                self.places.locks.push(loc(item));
                out.push(Lock {
                    name: s.as_str().to_string(),
                    mode: LockMode::Exclusive,
                });
                continue;
            }
            let Some(m) = self.mapping(item, "a lock", &["name", "mode"]) else {
                continue;
            };
            let Some(name) = m.get_node("name").and_then(|x| self.string(x, "`name`")) else {
                self.err(loc(item), "a lock needs a `name`", None);
                continue;
            };
            let mode = match m
                .get_scalar("mode")
                .map(|s| (s.as_str(), Loc::of(s.span())))
            {
                None | Some(("exclusive", _)) => LockMode::Exclusive,
                Some(("shared", _)) => LockMode::Shared,
                Some((other, l)) => {
                    self.err(
                        l,
                        format!("lock mode `{other}` is not a choice"),
                        Some("use exclusive or shared".into()),
                    );
                    continue;
                }
            };
            self.places.locks.push(loc(item));
            out.push(Lock { name, mode });
        }
        out
    }

    /// Checks what needs the whole rule: ops exist, expressions compile and name only known
    /// params, job fields and step ids.
    fn check_references(&mut self, rule: &Rule) {
        let ev = Evaluator::new();
        let step_ids: BTreeSet<&str> = rule
            .all_steps()
            .iter()
            .map(|(_, s)| s.id.as_str())
            .collect();
        let params: Vec<&str> = rule.params.iter().map(|p| p.name.as_str()).collect();
        let mut known_ops: Vec<&str> = self.opts.std_ops.to_vec();
        known_ops.extend(rule.ops.keys().map(String::as_str));

        let mut problems: Vec<(Loc, String, Option<String>)> = Vec::new();
        let check_expr =
            |text: &str,
             at: Loc,
             allow_steps: bool,
             problems: &mut Vec<(Loc, String, Option<String>)>| {
                let found = match expr::find(text) {
                    Ok(f) => f,
                    Err(e) => {
                        problems.push((at, e.to_string(), None));
                        return;
                    }
                };
                for f in found {
                    check_names(&ev, f.expr, at, allow_steps, &params, &step_ids, problems);
                }
            };

        for (_, step) in rule.all_steps() {
            if let Some(w) = &step.when {
                match expr::condition_expr(w) {
                    Ok(e) => check_names(&ev, e, step.loc, true, &params, &step_ids, &mut problems),
                    Err(e) => problems.push((
                        step.loc,
                        format!("`when` of step `{}`: {e}", step.id),
                        None,
                    )),
                }
            }
            if let StepKind::Op(call) = &step.kind {
                if !known_ops.contains(&call.op.as_str()) {
                    let hint = match did_you_mean(&call.op, &known_ops) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None => format!(
                            "the standard ops are {}; declare your own under `ops:`",
                            self.opts.std_ops.join(", ")
                        ),
                    };
                    problems.push((
                        step.loc,
                        format!("step `{}` calls unknown op `{}`", step.id, call.op),
                        Some(hint),
                    ));
                }
                for s in strings(&call.with) {
                    check_expr(s, step.loc, true, &mut problems);
                }
            }
        }
        let called = rule.op_names();
        for op in rule.grants.keys() {
            if !called.contains(op) {
                problems.push((
                    self.places.grants.get(op).copied().unwrap_or_default(),
                    format!("`grants` names op `{op}`, which no step calls"),
                    did_you_mean(op, &called.iter().map(String::as_str).collect::<Vec<_>>())
                        .map(|s| format!("did you mean `{s}`?")),
                ));
            }
        }
        if let Some(c) = &rule.concurrency {
            check_expr(&c.group, self.places.concurrency, false, &mut problems);
        }
        for (i, l) in rule.locks.iter().enumerate() {
            let at = self.places.locks.get(i).copied().unwrap_or_default();
            check_expr(&l.name, at, false, &mut problems);
        }
        for (at, msg, hint) in problems {
            self.err(at, msg, hint);
        }
    }
}

/// The longest expression, in characters, that a rule may hold.
const MAX_EXPR_CHARS: usize = 1000;

#[allow(clippy::too_many_arguments)]
fn check_names(
    ev: &Evaluator,
    expr: &str,
    at: Loc,
    allow_steps: bool,
    params: &[&str],
    step_ids: &BTreeSet<&str>,
    problems: &mut Vec<(Loc, String, Option<String>)>,
) {
    // minijinja's parser recurses once per prefix `not` and `-` without a limit: 8,000 of
    // them overflowed a 2 MiB stack. No expression a person writes comes near this.
    let chars = expr.chars().count();
    if chars > MAX_EXPR_CHARS {
        problems.push((
            at,
            format!(
                "an expression of {chars} characters is too long: sluice reads at most {MAX_EXPR_CHARS}"
            ),
            Some("split it over several steps, or work the value out in an op".into()),
        ));
        return;
    }
    let mut names = match ev.names(expr) {
        Ok(n) => n,
        Err(e) => {
            problems.push((at, format!("bad expression `{expr}`: {e}"), None));
            return;
        }
    };
    // `steps["a-b"]` hides the id from minijinja's names: read `steps.ID` from the text too.
    for id in expr::step_refs(expr) {
        if !names
            .iter()
            .any(|n| n == &format!("steps.{id}") || n.starts_with(&format!("steps.{id}.")))
        {
            names.push(format!("steps.{id}"));
        }
    }
    names.retain(|n| n != "steps");
    for name in names {
        let parts: Vec<&str> = name.split('.').collect();
        let problem = match parts.as_slice() {
            ["params", p, ..] if !params.contains(p) => Some((
                format!("`{name}`: the rule has no param `{p}`"),
                did_you_mean(p, params)
                    .map(|s| format!("did you mean `params.{s}`?"))
                    .or_else(|| Some("declare it under `params:`".into())),
            )),
            ["job", f, ..] if !JOB_FIELDS.contains(f) => Some((
                format!("`{name}`: a job has no field `{f}`"),
                Some(format!("job fields are {}", JOB_FIELDS.join(", "))),
            )),
            ["steps", ..] if !allow_steps => Some((
                format!("`{name}`: step results are not known yet here"),
                Some("use only params and job".into()),
            )),
            ["steps", id, rest @ ..] => {
                if !step_ids.contains(id) {
                    let ids: Vec<&str> = step_ids.iter().copied().collect();
                    Some((
                        format!("`{name}`: there is no step `{id}`"),
                        did_you_mean(id, &ids).map(|s| format!("did you mean `steps.{s}`?")),
                    ))
                } else {
                    rest.first().filter(|f| !STEP_FIELDS.contains(f)).map(|f| {
                        (
                            format!("`{name}`: a step has no field `{f}`"),
                            Some(format!("step fields are {}", STEP_FIELDS.join(", "))),
                        )
                    })
                }
            }
            ["params"] | ["job"] | ["steps"] | ["params", ..] | ["job", ..] => None,
            [root, ..] => Some((
                format!("unknown name `{root}` in `{expr}`"),
                Some(
                    "expressions read `params.NAME`, `job.FIELD` and `steps.ID.outcome|output`"
                        .into(),
                ),
            )),
            [] => None,
        };
        if let Some((msg, hint)) = problem {
            problems.push((at, msg, hint));
        }
    }
}

/// The first mapping or list in `n` (which counts as the first level) that lies more than
/// `limit` levels deep.
fn deeper_than(n: &Node, limit: usize) -> Option<&Node> {
    let children: Vec<&Node> = match n {
        Node::Scalar(_) => return None,
        Node::Sequence(seq) => seq.iter().collect(),
        Node::Mapping(m) => m.values().collect(),
    };
    if limit == 0 {
        return Some(n);
    }
    children.into_iter().find_map(|c| deeper_than(c, limit - 1))
}

/// Records where the entries and items under `n` (at `pointer`) are.
fn record_locs(n: &Node, pointer: &mut String, out: &mut InputLocs) {
    let len = pointer.len();
    match n {
        Node::Scalar(_) => {}
        Node::Sequence(seq) => {
            for (i, item) in seq.iter().enumerate() {
                pointer.push('/');
                pointer.push_str(&i.to_string());
                out.insert(pointer.clone(), loc(item));
                record_locs(item, pointer, out);
                pointer.truncate(len);
            }
        }
        Node::Mapping(m) => {
            for (k, v) in m.iter() {
                pointer.push('/');
                pointer.push_str(&pointer_segment(k.as_str()));
                out.insert(pointer.clone(), Loc::of(k.span()));
                record_locs(v, pointer, out);
                pointer.truncate(len);
            }
        }
    }
}

/// Every string inside a JSON value.
fn strings(v: &Value) -> Vec<&str> {
    let mut out = Vec::new();
    fn walk<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::String(s) => out.push(s),
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            Value::Object(m) => m.values().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    walk(v, &mut out);
    out
}

/// YAML to JSON: plain scalars become null, booleans and numbers where they read as such;
/// quoted scalars stay text.
pub(crate) fn to_json(n: &Node) -> Value {
    match n {
        Node::Scalar(s) => {
            let t = s.as_str();
            if !s.may_coerce() {
                return Value::String(t.to_string());
            }
            match t {
                "null" | "~" | "" => Value::Null,
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                _ => t
                    .parse::<i64>()
                    .map(Value::from)
                    .ok()
                    .or_else(|| {
                        t.parse::<f64>()
                            .ok()
                            .filter(|f| f.is_finite())
                            .map(Value::from)
                    })
                    .unwrap_or_else(|| Value::String(t.to_string())),
            }
        }
        Node::Sequence(seq) => Value::Array(seq.iter().map(to_json).collect()),
        Node::Mapping(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.as_str().to_string(), to_json(v)))
                .collect(),
        ),
    }
}

fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

fn valid_param(s: &str) -> bool {
    s.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_scalars_stay_text_and_plain_ones_are_typed() {
        let r = parse(
            "rule: r\nphases:\n  run: [{ op: log, with: { a: [\"31.5\", 31.5, 'true', true, \"null\", ~] } }]\n",
            &ParseOptions { file: "r.yaml", std_ops: &["log"] },
        )
        .unwrap();
        let StepKind::Op(c) = &r.phases.run[0].kind else {
            panic!()
        };
        assert_eq!(
            c.with,
            serde_json::json!({ "a": ["31.5", 31.5, "true", true, "null", null] })
        );
    }

    const OPTS: ParseOptions<'static> = ParseOptions {
        file: "r.yaml",
        std_ops: &["log", "trap"],
    };

    /// The one problem `text` has: line, column, message and hint.
    fn problem(text: &str) -> (usize, usize, String, Option<String>) {
        let d = parse(text, &OPTS).expect_err("the rule should not parse");
        assert_eq!(d.items.len(), 1, "{d}");
        let i = &d.items[0];
        (i.loc.line, i.loc.column, i.message.clone(), i.hint.clone())
    }

    /// A rule whose one step's `with:` is `value`, starting on line 6 at column 9.
    fn with_block(value: &str) -> String {
        format!("rule: r\nphases:\n  run:\n    - op: log\n      with:\n{value}")
    }

    #[test]
    fn block_nesting_is_bounded_before_loading() {
        // 12,000 levels, one space of indent each: this overflowed the stack.
        let mut deep = String::new();
        for i in 0..12_000 {
            deep.push_str(&" ".repeat(8 + i));
            deep.push_str("a:\n");
        }
        let (line, column, msg, hint) = problem(&with_block(&deep));
        // The root, `phases`, `run` and the step hold 4 levels, `with` starts the 5th on line 6:
        // the 65th is the mapping on line 66, at its key.
        assert_eq!((line, column), (66, 8 + 60 + 1));
        assert_eq!(msg, "this is nested more than 64 levels deep");
        assert!(hint.unwrap().contains("flatten"));
    }

    #[test]
    fn flow_nesting_is_bounded_before_loading() {
        for (open, close) in [("[", "]"), ("{a: ", "}")] {
            for n in [100, 12_000] {
                let value = format!("        x: {}1{}\n", open.repeat(n), close.repeat(n));
                let (line, column, msg, _) = problem(&with_block(&value));
                // `with`'s mapping is the 5th level: the 60th opener is the 65th.
                assert_eq!(line, 6, "{open} {n}");
                assert_eq!(column, 12 + 59 * open.len(), "{open} {n}");
                assert_eq!(msg, "this is nested more than 64 levels deep", "{open} {n}");
            }
        }
        // Never closed at all.
        let value = format!("        x: {}\n", "[".repeat(12_000));
        let (line, column, msg, _) = problem(&with_block(&value));
        assert_eq!((line, column), (6, 12 + 59));
        assert_eq!(msg, "this is nested more than 64 levels deep");
    }

    #[test]
    fn sequences_on_one_line_are_bounded() {
        let value = format!("        x:\n          {}1\n", "- ".repeat(12_000));
        let (line, column, msg, _) = problem(&with_block(&value));
        assert_eq!((line, column), (7, 11 + 2 * 59));
        assert_eq!(msg, "this is nested more than 64 levels deep");
    }

    #[test]
    fn a_rule_nested_64_deep_still_parses() {
        // The root, `phases` and `run` hold 3 levels; each parallel group adds a step and a
        // list of branches; the innermost step, its `with` and a list add 3: 3 + 2 * 29 + 3.
        let nested = |groups: usize| {
            format!(
                "rule: r\nphases:\n  run: [{}{{ op: log, with: {{ a: [1] }} }}{}]\n",
                "{ parallel: [".repeat(groups),
                "] }".repeat(groups)
            )
        };
        let r = parse(&nested(29), &OPTS).unwrap();
        assert_eq!(r.all_steps().len(), 30);
        let (_, _, msg, _) = problem(&nested(30));
        assert_eq!(msg, "this is nested more than 64 levels deep");
    }

    #[test]
    fn with_is_bounded_to_32_levels() {
        let nested =
            |n: usize| with_block(&format!("        x: {}1{}\n", "[".repeat(n), "]".repeat(n)));
        // `with` is the first level, so 31 lists in it make 32.
        let r = parse(&nested(31), &OPTS).unwrap();
        let StepKind::Op(c) = &r.phases.run[0].kind else {
            panic!()
        };
        let json = serde_json::to_string(&c.with).unwrap();
        // Inside an event, wrapped a few levels more, it still reads back.
        let event = format!("{{\"a\":{{\"b\":[{{\"c\":{json}}}]}}}}");
        assert!(serde_json::from_str::<Value>(&event).is_ok());

        let (line, column, msg, hint) = problem(&nested(32));
        assert_eq!((line, column), (6, 12 + 31));
        assert_eq!(msg, "`with` is nested more than 32 levels deep here");
        assert!(hint.unwrap().contains("flatten"));
        // Deeper still, as deep as the file may be, the same.
        let (_, _, msg, _) = problem(&nested(59));
        assert_eq!(msg, "`with` is nested more than 32 levels deep here");
    }

    #[test]
    fn a_second_document_is_refused() {
        let (line, column, msg, _) =
            problem("rule: r\nphases: { run: [{ op: log }] }\n---\nrule: s\n");
        assert_eq!((line, column), (3, 1));
        assert!(msg.contains("second YAML document"), "{msg}");
    }

    #[test]
    fn an_unclosed_brace_is_reported_where_it_opens() {
        let text = "rule: r\nphases:\n  run:\n    - op: log\n      with: {a: 1\n    - op: log\n";
        let (line, column, msg, hint) = problem(text);
        assert_eq!((line, column), (5, 13));
        assert_eq!(msg, "this `{` is never closed");
        let hint = hint.unwrap();
        assert!(hint.starts_with("close it with `}`"), "{hint}");
        assert!(hint.contains("line 6, column 9"), "{hint}");

        let text = "rule: r\nphases:\n  run: [{ op: log, with: { a: '{' } },\n  post: []\n";
        let (line, column, msg, _) = problem(text);
        assert_eq!((line, column), (3, 8));
        assert_eq!(msg, "this `[` is never closed");
    }

    #[test]
    fn other_syntax_errors_keep_the_scanner_place() {
        let (line, column, msg, hint) = problem("rule: r\nphases: a: b\n");
        assert_eq!((line, column), (2, 10));
        assert_eq!(
            msg,
            "this is not valid YAML: mapping values are not allowed in this context"
        );
        assert_eq!(hint, None);
    }

    #[test]
    fn block_mappings_are_placed_at_their_first_key() {
        let (line, column, msg, _) = problem("rule: r\nphases:\n  run:\n    - op: nope\n");
        assert_eq!(msg, "step `nope` calls unknown op `nope`");
        assert_eq!((line, column), (4, 7));
        let (line, column, _, _) = problem("rule: r\nphases:\n  run:\n    - { op: nope }\n");
        assert_eq!((line, column), (4, 7));
        let (line, column, msg, _) = problem("phases:\n  run: []\n");
        assert_eq!(msg, "the rule has no name");
        assert_eq!((line, column), (1, 1));
    }

    #[test]
    fn long_expressions_are_refused_before_minijinja_reads_them() {
        // 16,000 prefix `not`s overflowed the stack in minijinja's parser.
        let deep = format!("{}true", "not ".repeat(16_000));
        let minus = format!("{}1", "-".repeat(16_000));
        let text = format!(
            "rule: r\nphases:\n  run:\n    - op: log\n      when: \"{deep}\"\n      with: {{ m: \"${{{{ {minus} }}}}\" }}\n"
        );
        let d = parse(&text, &OPTS).unwrap_err();
        let messages: Vec<&str> = d.items.iter().map(|i| i.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "an expression of 64004 characters is too long: sluice reads at most 1000",
                "an expression of 16001 characters is too long: sluice reads at most 1000",
            ]
        );
        // At the limit, the worst nesting still reads and evaluates on a test thread's stack.
        let at_limit = format!("{}1", "-".repeat(999));
        let text = format!(
            "rule: r\nphases:\n  run:\n    - op: log\n      when: \"{}true\"\n      with: {{ m: \"${{{{ {at_limit} }}}}\" }}\n",
            "not ".repeat(249)
        );
        let r = parse(&text, &OPTS).unwrap();
        let ev = Evaluator::new();
        assert!(
            !ev.condition(r.phases.run[0].when.as_deref().unwrap(), &Value::Null)
                .unwrap()
        );
        assert_eq!(
            ev.eval(&at_limit, &Value::Null).unwrap(),
            serde_json::json!(-1)
        );
    }
}
