//! The permissions file: groups of users, and who may decide at which kind of gate.
//!
//! ```yaml
//! groups:
//!   release-managers: [alice, bob]
//!   ops: [carol]
//! allow:
//!   approve: [group:release-managers]   # approve and reject at approvals
//!   resume: [group:ops]                 # resume pauses
//!   trap: [group:ops, alice]            # retry, skip, rollback, abort at traps
//!   cancel: [group:ops]
//!   annotate: ["*"]
//!   skip-window: [group:release-managers]  # start outside a deploy window or in a freeze
//! ```
//!
//! Without a file every user may do everything: the embedded, single-person default.

use std::collections::BTreeMap;

use marked_yaml::Node;

use crate::diag::{Diagnostics, Loc, did_you_mean};
use crate::yaml;

/// What can be allowed.
pub const ACTIONS: &[&str] = &[
    "approve",
    "resume",
    "trap",
    "cancel",
    "annotate",
    "skip-window",
];

/// Parsed permissions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Permissions {
    groups: BTreeMap<String, Vec<String>>,
    allow: BTreeMap<String, Vec<String>>,
}

impl Permissions {
    /// The groups `user` belongs to.
    pub fn groups_of(&self, user: &str) -> Vec<String> {
        self.groups
            .iter()
            .filter(|(_, m)| m.iter().any(|u| u == user))
            .map(|(g, _)| g.clone())
            .collect()
    }

    /// Whether `user` may do `action`; the refusal says who may.
    pub fn check(&self, user: &str, action: &str) -> Result<(), Denied> {
        self.check_member(user, &self.groups_of(user), action)
    }

    /// Whether `user`, a member of `groups` (their groups in this file and any their
    /// credentials add), may do `action`; the refusal says who may.
    pub fn check_member(&self, user: &str, groups: &[String], action: &str) -> Result<(), Denied> {
        let allowed = self.allow.get(action).map(Vec::as_slice).unwrap_or(&[]);
        let ok = allowed.iter().any(|a| match a.strip_prefix("group:") {
            Some(g) => groups.iter().any(|x| x == g),
            None => a == "*" || a == user,
        });
        if ok {
            return Ok(());
        }
        Err(Denied {
            user: user.to_string(),
            action: action.to_string(),
            allowed: allowed.to_vec(),
        })
    }
}

/// A refusal by the permissions file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", match .allowed.is_empty() {
    true => format!("nobody may {} (the permissions file allows it to no one)", .action),
    false => format!("{} may not {}; the permissions file allows {}", .user, .action, .allowed.join(", ")),
})]
pub struct Denied {
    /// Who asked.
    pub user: String,
    /// What for (`approve`, `cancel`...).
    pub action: String,
    /// Who may: users, `group:NAME`s, `*`.
    pub allowed: Vec<String>,
}

/// Parses a permissions file, reporting every problem at its place.
pub fn parse(text: &str, file: &str) -> Result<Permissions, Diagnostics> {
    let mut d = Diagnostics::new(file, text);
    let Some(m) = yaml::load_settings(
        &mut d,
        text,
        "a permissions file is a mapping with `groups` and `allow`",
    ) else {
        return Err(d);
    };
    let mut p = Permissions::default();
    for (k, v) in m.iter() {
        match k.as_str() {
            "groups" | "allow" => {
                let Some(entries) = v.as_mapping() else {
                    d.error(
                        Loc::of(v.span()),
                        format!("`{}` must be a mapping of names to lists", k.as_str()),
                        None,
                    );
                    continue;
                };
                for (name, list) in entries.iter() {
                    if k.as_str() == "allow" && !ACTIONS.contains(&name.as_str()) {
                        let hint = did_you_mean(name.as_str(), ACTIONS)
                            .map(|s| format!("did you mean `{s}`?"));
                        d.error(
                            Loc::of(name.span()),
                            format!("unknown action `{}`", name.as_str()),
                            hint.or(Some(format!("actions are {}", ACTIONS.join(", ")))),
                        );
                        continue;
                    }
                    let names = strings(list);
                    match names {
                        Some(n) => {
                            let target = if k.as_str() == "groups" {
                                &mut p.groups
                            } else {
                                &mut p.allow
                            };
                            target.insert(name.as_str().to_string(), n);
                        }
                        None => d.error(
                            Loc::of(list.span()),
                            format!("`{}` must be a list of names", name.as_str()),
                            None,
                        ),
                    }
                }
            }
            other => d.error(
                Loc::of(k.span()),
                format!("unknown field `{other}`"),
                Some("a permissions file has `groups` and `allow`".into()),
            ),
        }
    }
    if d.is_empty() { Ok(p) } else { Err(d) }
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
    fn groups_and_allow() {
        let p = parse("groups:\n  rm: [alice, bob]\nallow:\n  approve: [group:rm, carol]\n  annotate: ['*']\n", "p.yaml").unwrap();
        assert_eq!(p.check("bob", "approve"), Ok(()));
        assert_eq!(p.check("carol", "approve"), Ok(()));
        assert_eq!(
            p.check("dave", "approve").unwrap_err().to_string(),
            "dave may not approve; the permissions file allows group:rm, carol"
        );
        assert_eq!(
            p.check("bob", "trap").unwrap_err().to_string(),
            "nobody may trap (the permissions file allows it to no one)"
        );
        assert_eq!(p.check("dave", "annotate"), Ok(()));
        assert!(p.check("bob", "trap").is_err());
        assert_eq!(p.groups_of("alice"), ["rm"]);
        let e = parse("allow:\n  aprove: [x]\n", "p.yaml").unwrap_err();
        assert!(e.to_string().contains("did you mean `approve`?"), "{e}");
    }

    #[test]
    fn nesting_is_bounded_and_errors_are_placed() {
        let mut deep = String::from("groups:\n");
        for i in 0..12_000 {
            deep.push_str(&" ".repeat(2 + i));
            deep.push_str("g:\n");
        }
        let e = parse(&deep, "p.yaml").unwrap_err();
        assert_eq!(e.items.len(), 1);
        assert_eq!(
            e.items[0].message,
            "this is nested more than 64 levels deep"
        );
        assert_eq!(
            (e.items[0].loc.line, e.items[0].loc.column),
            (65, 2 + 63 + 1)
        );

        let flow = format!("groups: {}\n", "[".repeat(12_000));
        let e = parse(&flow, "p.yaml").unwrap_err();
        assert_eq!(
            e.items[0].message,
            "this is nested more than 64 levels deep"
        );
        assert_eq!((e.items[0].loc.line, e.items[0].loc.column), (1, 9 + 63));

        let e = parse("groups:\n  rm: [alice, bob\nallow: {}\n", "p.yaml").unwrap_err();
        assert_eq!(e.items[0].message, "this `[` is never closed");
        assert_eq!((e.items[0].loc.line, e.items[0].loc.column), (2, 7));
    }
}
