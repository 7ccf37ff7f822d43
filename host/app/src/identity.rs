//! Who acts, and what they may do: the [`Actor`] a front end hands in, its groups from the
//! permissions file, and the permission each operation needs.

use std::path::Path;

use sluice_model::{Actor, AuthMethod};
use sluice_rule::permissions::{self, Permissions};

use crate::AppError;

/// The actor of a command-line call: the name `claimed` (`--as`), else `SLUICE_USER`, else the
/// process's OS account name (getpwuid). An empty or padded name is refused. The OS account is
/// recorded beside the name in everything the actor decides.
pub fn command_line_actor(claimed: Option<&str>) -> Result<Actor, AppError> {
    let os_user = os_account();
    let (name, from, via) = match claimed {
        Some(u) => (u.to_string(), "--as", AuthMethod::Claimed),
        None => match std::env::var("SLUICE_USER") {
            Ok(u) => (u, "SLUICE_USER", AuthMethod::Claimed),
            Err(std::env::VarError::NotPresent) => {
                (os_user.clone(), "the OS account", AuthMethod::OsUser)
            }
            Err(std::env::VarError::NotUnicode(_)) => {
                return Err(AppError::Usage(format!(
                    "SLUICE_USER is not valid text: set it to a user name, or unset it to act as `{os_user}`"
                )));
            }
        },
    };
    if name.trim().is_empty() {
        return Err(AppError::Usage(format!(
            "the identity from {from} is empty: name a user, or unset SLUICE_USER to act as the OS account `{os_user}`"
        )));
    }
    if name.trim() != name || name.chars().any(char::is_control) {
        return Err(AppError::Usage(format!(
            "the identity `{}` from {from} has spaces around it or control characters: name a user",
            name.escape_debug()
        )));
    }
    let via = if via == AuthMethod::Claimed && name == os_user {
        AuthMethod::OsUser
    } else {
        via
    };
    Ok(Actor {
        name,
        groups: Vec::new(),
        via,
        os_user,
        chat: None,
    })
}

/// This process's OS account name, from the password database (`uid N` when it has none).
fn os_account() -> String {
    let uid = nix::unistd::getuid();
    match nix::unistd::User::from_uid(uid) {
        Ok(Some(u)) if !u.name.is_empty() => u.name,
        _ => format!("uid {uid}"),
    }
}

/// What an actor may be allowed to do (the keys of the permissions file's `allow:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// Approve or reject at approvals (and abort one).
    Approve,
    /// Resume a pause (and abort one).
    Resume,
    /// Retry, skip, roll back or abort at a trap.
    Trap,
    /// Cancel a job.
    Cancel,
    /// Annotate a job.
    Annotate,
    /// Start outside a deploy window.
    SkipWindow,
}

impl Permission {
    /// The key in the permissions file.
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Approve => "approve",
            Permission::Resume => "resume",
            Permission::Trap => "trap",
            Permission::Cancel => "cancel",
            Permission::Annotate => "annotate",
            Permission::SkipWindow => "skip-window",
        }
    }
}

/// The permissions file, when there is one (without it everyone may do everything).
pub(crate) fn load(path: &Path) -> Result<Option<Permissions>, AppError> {
    read_settings(path, "permissions file", permissions::parse)
}

/// A settings file of `$SLUICE_HOME` (permissions, notifications) parsed by `parse`; `None`
/// when there is none. A file that cannot be read or parsed says where and why.
pub(crate) fn read_settings<T>(
    path: &Path,
    what: &str,
    parse: fn(&str, &str) -> Result<T, sluice_rule::Diagnostics>,
) -> Result<Option<T>, AppError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(AppError::Usage(format!(
                "cannot read {what} {}: {e}",
                path.display()
            )));
        }
    };
    let file = path.display().to_string();
    let text = sluice_rule::decode_utf8(bytes, &file).map_err(AppError::Invalid)?;
    parse(&text, &file).map(Some).map_err(AppError::Invalid)
}

/// Checks `actor` may do `what` and fills in their groups (the permissions file's, and those
/// their token adds); refused with who may.
pub(crate) fn allow(
    perms: &Option<Permissions>,
    actor: &mut Actor,
    what: Permission,
) -> Result<(), AppError> {
    let Some(p) = perms else {
        return Ok(());
    };
    let mut groups = p.groups_of(&actor.name);
    for g in &actor.groups {
        if !groups.contains(g) {
            groups.push(g.clone());
        }
    }
    p.check_member(&actor.name, &groups, what.as_str())
        .map_err(|e| AppError::Forbidden(e.to_string()))?;
    actor.groups = groups;
    Ok(())
}
