//! Jobs as the journal and the front ends see them: how a job stands, how it ended, and who
//! acts on it.

use serde::{Deserialize, Serialize};

/// How a job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JobStatus {
    /// Every step succeeded (or failed with `on-error: continue`), post too.
    Succeeded,
    /// Post failed after a successful run, a person aborted at a gate, or a step failed with
    /// nothing to roll back to.
    Failed,
    /// A step failed; completed steps were undone and `rollback:` ran; post ran.
    RolledBack,
    /// A step failed and rollback failed too; post ran.
    RollbackFailed,
    /// Someone cancelled it (or its concurrency group pushed it out); post ran if it had started.
    Cancelled,
    /// A `check` step failed: the job was never created.
    CheckFailed,
    /// An approver rejected it (or an approval timed out to reject): no rollback; post ran.
    Rejected,
}

impl JobStatus {
    /// Every status, for parsing and listing.
    pub const ALL: [JobStatus; 7] = [
        JobStatus::Succeeded,
        JobStatus::Failed,
        JobStatus::RolledBack,
        JobStatus::RollbackFailed,
        JobStatus::Cancelled,
        JobStatus::CheckFailed,
        JobStatus::Rejected,
    ];

    /// The kebab-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
            JobStatus::RolledBack => "rolled-back",
            JobStatus::RollbackFailed => "rollback-failed",
            JobStatus::Cancelled => "cancelled",
            JobStatus::CheckFailed => "check-failed",
            JobStatus::Rejected => "rejected",
        }
    }
}

impl std::fmt::Display for JobStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a job stands, as the job index keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobState {
    /// Waiting in line for locks or its concurrency group.
    Queued,
    /// Decided (`--detach`) and left for a worker to drive.
    Ready,
    /// Steps run.
    Running,
    /// Every live branch waits at a gate: the job hibernates.
    Waiting,
    /// A cancel was asked; running steps finish, then post.
    Cancelling,
    /// Undoing completed steps and running `rollback:`.
    RollingBack,
    /// Over.
    Ended(JobStatus),
}

impl JobState {
    /// The word stored and shown (`running`, `waiting`, `succeeded`...).
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Ready => "ready",
            JobState::Running => "running",
            JobState::Waiting => "waiting",
            JobState::Cancelling => "cancelling",
            JobState::RollingBack => "rolling-back",
            JobState::Ended(s) => s.as_str(),
        }
    }

    /// Whether something should be driving the job now (a process, or a worker soon).
    pub fn is_active(self) -> bool {
        matches!(
            self,
            JobState::Ready | JobState::Running | JobState::Cancelling | JobState::RollingBack
        )
    }

    /// Whether the job is over.
    pub fn is_ended(self) -> bool {
        matches!(self, JobState::Ended(_))
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for JobState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "queued" => JobState::Queued,
            "ready" => JobState::Ready,
            "running" => JobState::Running,
            "waiting" => JobState::Waiting,
            "cancelling" => JobState::Cancelling,
            "rolling-back" => JobState::RollingBack,
            other => JobState::Ended(
                JobStatus::ALL
                    .into_iter()
                    .find(|st| st.as_str() == other)
                    .ok_or_else(|| format!("`{other}` is not a job state"))?,
            ),
        })
    }
}

impl Serialize for JobState {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for JobState {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// How sluice knows who an [`Actor`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuthMethod {
    /// The operating-system account of the process (nothing claimed).
    OsUser,
    /// A name claimed on the command line (`--as`, `SLUICE_USER`): not authenticated.
    Claimed,
    /// An API token.
    Token,
    /// A user name and password (the job monitor's sign-in).
    Password,
    /// A header set by a trusted reverse proxy (single sign-on in front of the server).
    Proxy,
    /// A chat account mapped to a user.
    Chat,
    /// sluice itself: a timeout, a concurrency group.
    System,
}

/// Who acts on a job: starts it, decides at a gate, cancels it, annotates it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// The name permissions and approvers are checked against.
    pub name: String,
    /// Their groups (from the permissions file) when they acted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// How sluice knows the name.
    pub via: AuthMethod,
    /// The OS account of the process that recorded the act, when a process did.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub os_user: String,
    /// Where in chat they acted, when they did it from chat.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat: Option<ChatSource>,
}

/// The chat message an act came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatSource {
    /// `slack` or `matrix`.
    pub source: String,
    /// The channel or room id.
    pub room: String,
    /// The message's id (Slack's `ts` or trigger id, Matrix's event id).
    pub message: String,
}

impl Actor {
    /// sluice itself (`timeout`, `concurrency`).
    pub fn system(name: &str) -> Self {
        Actor {
            name: name.to_string(),
            groups: Vec::new(),
            via: AuthMethod::System,
            os_user: String::new(),
            chat: None,
        }
    }

    /// `name (as OS user x)` when the OS account is not the name, else `name`.
    pub fn described(&self) -> String {
        if self.os_user.is_empty() || self.os_user == self.name {
            self.name.clone()
        } else {
            format!("{} (as OS user {})", self.name, self.os_user)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_read_back_from_their_words() {
        for st in [
            JobState::Queued,
            JobState::Ready,
            JobState::Running,
            JobState::Waiting,
            JobState::Cancelling,
            JobState::RollingBack,
        ]
        .into_iter()
        .chain(JobStatus::ALL.map(JobState::Ended))
        {
            assert_eq!(st.as_str().parse::<JobState>(), Ok(st));
        }
        assert!("finished".parse::<JobState>().is_err());
    }
}
