//! The chat file: who is who in chat, and what chat may do (Clarive's TalkBack).
//!
//! ```yaml
//! users:                        # chat user -> sluice user; an unmapped one talks, decides nothing
//!   slack:U024BE7LH: alice
//!   "matrix:@bob:example.org": bob
//! commands: [follow, unfollow, status, logs, annotate, approve, reject, resume]
//! actions:                      # named actions: start a rule with fixed and allowed params
//!   restart-canary:
//!     rule: restart-canary      # a rule of the server's --rules
//!     params: { env: production }
//!     allow: [region]           # `restart-canary region=eu` sets it; nothing else can be set
//! ```
//!
//! Anything not listed is refused with the list of what is.

use std::collections::BTreeMap;

use marked_yaml::Node;

use crate::diag::{Diagnostics, Loc, did_you_mean};
use crate::yaml;

/// Every command chat can be allowed.
pub const COMMANDS: &[&str] = &[
    "follow",
    "unfollow",
    "status",
    "logs",
    "annotate",
    "approve",
    "reject",
    "resume",
    "retry",
    "skip",
    "rollback",
    "abort",
    "cancel",
    "skip-window",
];

/// Parsed chat settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChatSettings {
    /// `backend:chat-user-id` -> sluice user.
    pub users: BTreeMap<String, String>,
    /// The commands chat may use (of [`COMMANDS`]).
    pub commands: Vec<String>,
    /// Named actions by name.
    pub actions: BTreeMap<String, ChatAction>,
}

/// A named action: starts a rule with fixed params and the ones the chat user may set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChatAction {
    /// The rule's name, in the server's `--rules`.
    pub rule: String,
    /// Params always given.
    pub params: BTreeMap<String, String>,
    /// Params the chat user may set, as `NAME=VALUE`.
    pub allow: Vec<String>,
}

impl ChatSettings {
    /// The sluice user a chat user is, if mapped.
    pub fn user(&self, backend: &str, chat_user: &str) -> Option<&str> {
        self.users
            .get(&format!("{backend}:{chat_user}"))
            .map(String::as_str)
    }

    /// Whether chat may use `command` (a command word or an action name).
    pub fn allows(&self, command: &str) -> bool {
        self.commands.iter().any(|c| c == command) || self.actions.contains_key(command)
    }

    /// What chat may use, for a refusal: the commands, then the actions.
    pub fn allowed(&self) -> Vec<String> {
        self.commands
            .iter()
            .cloned()
            .chain(self.actions.keys().cloned())
            .collect()
    }
}

/// Parses a chat file, reporting every problem at its place.
pub fn parse(text: &str, file: &str) -> Result<ChatSettings, Diagnostics> {
    let mut d = Diagnostics::new(file, text);
    let Some(m) = yaml::load_settings(
        &mut d,
        text,
        "a chat file is a mapping with `users`, `commands` and `actions`",
    ) else {
        return Err(d);
    };
    let mut s = ChatSettings::default();
    for (k, v) in m.iter() {
        match k.as_str() {
            "users" => {
                let Some(users) = v.as_mapping() else {
                    d.error(
                        Loc::of(v.span()),
                        "`users` maps chat users (`slack:U024BE7LH`) to sluice users",
                        None,
                    );
                    continue;
                };
                for (chat, user) in users.iter() {
                    let key = chat.as_str();
                    if !key.starts_with("slack:") && !key.starts_with("matrix:") {
                        d.error(
                            Loc::of(chat.span()),
                            format!("`{key}` does not say which chat it is in"),
                            Some("write `slack:USER_ID` or `matrix:@user:server`".into()),
                        );
                        continue;
                    }
                    match user.as_scalar().map(|u| u.as_str()) {
                        Some(u) if !u.is_empty() => {
                            s.users.insert(key.to_string(), u.to_string());
                        }
                        _ => d.error(
                            Loc::of(user.span()),
                            "a chat user maps to a sluice user's name",
                            None,
                        ),
                    }
                }
            }
            "commands" => {
                let Some(list) = v.as_sequence() else {
                    d.error(
                        Loc::of(v.span()),
                        "`commands` must be a list of commands",
                        Some(format!("commands are {}", COMMANDS.join(", "))),
                    );
                    continue;
                };
                for c in list.iter() {
                    let word = c.as_scalar().map(|x| x.as_str()).unwrap_or("");
                    if COMMANDS.contains(&word) {
                        s.commands.push(word.to_string());
                    } else {
                        d.error(
                            Loc::of(c.span()),
                            format!("`{word}` is not a chat command"),
                            Some(match did_you_mean(word, COMMANDS) {
                                Some(w) => format!("did you mean `{w}`?"),
                                None => format!(
                                    "commands are {}; anything else is a named action under `actions`",
                                    COMMANDS.join(", ")
                                ),
                            }),
                        );
                    }
                }
            }
            "actions" => {
                let Some(actions) = v.as_mapping() else {
                    d.error(
                        Loc::of(v.span()),
                        "`actions` must be a mapping of names to actions",
                        None,
                    );
                    continue;
                };
                for (name, a) in actions.iter() {
                    if COMMANDS.contains(&name.as_str()) {
                        d.error(
                            Loc::of(name.span()),
                            format!(
                                "`{}` is a command; name the action otherwise",
                                name.as_str()
                            ),
                            None,
                        );
                        continue;
                    }
                    if let Some(a) = action(&mut d, a) {
                        s.actions.insert(name.as_str().to_string(), a);
                    }
                }
            }
            other => d.error(
                Loc::of(k.span()),
                format!("unknown field `{other}`"),
                Some("a chat file has `users`, `commands` and `actions`".into()),
            ),
        }
    }
    if d.is_empty() { Ok(s) } else { Err(d) }
}

fn action(d: &mut Diagnostics, node: &Node) -> Option<ChatAction> {
    const FIELDS: &[&str] = &["rule", "params", "allow"];
    let Some(m) = node.as_mapping() else {
        d.error(
            Loc::of(node.span()),
            "an action is a mapping with `rule` (and `params`, `allow`)",
            None,
        );
        return None;
    };
    let before = d.items.len();
    let mut a = ChatAction::default();
    for (k, v) in m.iter() {
        match k.as_str() {
            "rule" => match v.as_scalar().map(|s| s.as_str()) {
                Some(r) if !r.is_empty() => a.rule = r.to_string(),
                _ => d.error(Loc::of(v.span()), "`rule` is a rule's name", None),
            },
            "params" => match v.as_mapping() {
                Some(p) => {
                    for (name, value) in p.iter() {
                        match value.as_scalar() {
                            Some(x) => {
                                a.params
                                    .insert(name.as_str().to_string(), x.as_str().to_string());
                            }
                            None => {
                                d.error(Loc::of(value.span()), "a fixed param is a value", None)
                            }
                        }
                    }
                }
                None => d.error(
                    Loc::of(v.span()),
                    "`params` maps names to fixed values",
                    None,
                ),
            },
            "allow" => match v.as_sequence() {
                Some(list) => {
                    for x in list.iter() {
                        match x.as_scalar() {
                            Some(n) => a.allow.push(n.as_str().to_string()),
                            None => d.error(Loc::of(x.span()), "a param's name", None),
                        }
                    }
                }
                None => d.error(
                    Loc::of(v.span()),
                    "`allow` lists the params chat may set",
                    None,
                ),
            },
            other => d.error(
                Loc::of(k.span()),
                format!("unknown field `{other}`"),
                Some(
                    did_you_mean(other, FIELDS)
                        .map(|s| format!("did you mean `{s}`?"))
                        .unwrap_or_else(|| format!("an action has {}", FIELDS.join(", "))),
                ),
            ),
        }
    }
    if a.rule.is_empty() && d.items.len() == before {
        d.error(
            Loc::of(node.span()),
            "this action names no `rule`",
            Some("add `rule: NAME`, a rule of the server's --rules".into()),
        );
    }
    if let Some(both) = a.allow.iter().find(|p| a.params.contains_key(*p)) {
        d.error(
            Loc::of(node.span()),
            format!("`{both}` is both fixed and allowed"),
            Some("a fixed param cannot be set from chat; drop it from one".into()),
        );
    }
    (d.items.len() == before).then_some(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_commands_and_actions() {
        let s = parse(
            "users:\n  slack:U1: alice\n  \"matrix:@bob:example.org\": bob\ncommands: [follow, status, approve]\nactions:\n  restart-canary:\n    rule: restart-canary\n    params: { env: production }\n    allow: [region]\n",
            "chat.yaml",
        )
        .unwrap();
        assert_eq!(s.user("slack", "U1"), Some("alice"));
        assert_eq!(s.user("matrix", "@bob:example.org"), Some("bob"));
        assert_eq!(s.user("slack", "U2"), None);
        assert!(s.allows("approve") && s.allows("restart-canary"));
        assert!(!s.allows("reject"));
        assert_eq!(
            s.allowed(),
            ["follow", "status", "approve", "restart-canary"]
        );
    }

    #[test]
    fn rules_name_rooms_by_their_chat() {
        let opts = crate::ParseOptions {
            file: "r.yaml",
            std_ops: &["log"],
        };
        let r = crate::parse(
            "rule: r\nchat: { follow: [slack:C1, \"matrix:!a:hs\"] }\nphases:\n  run: [{ op: log }]\n",
            &opts,
        )
        .unwrap();
        assert_eq!(r.chat_follow, ["slack:C1", "matrix:!a:hs"]);
        let e = crate::parse(
            "rule: r\nchat: { follow: [\"#releases\"] }\nphases:\n  run: [{ op: log }]\n",
            &opts,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("r.yaml:2:18"), "{e}");
        assert!(e.contains("does not say which chat room"), "{e}");
    }

    #[test]
    fn problems_are_placed() {
        let e = parse(
            "users:\n  U1: alice\ncommands: [aprove, deploy]\nactions:\n  approve: { rule: x }\n  a: { params: { env: x }, allow: [env] }\n",
            "chat.yaml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("chat.yaml:2:3"), "{e}");
        assert!(e.contains("does not say which chat"), "{e}");
        assert!(e.contains("did you mean `approve`?"), "{e}");
        assert!(e.contains("`deploy` is not a chat command"), "{e}");
        assert!(e.contains("`approve` is a command"), "{e}");
        assert!(e.contains("this action names no `rule`"), "{e}");
        assert!(e.contains("`env` is both fixed and allowed"), "{e}");
    }
}
