//! The service layer of a `sluice server` elsewhere: the same operations as [`App`](crate::App)
//! for the commands that make sense on a team's server (start, list, show, logs, decide,
//! cancel, annotate), over its HTTP API with an API token. The server checks everything; the
//! token says who acts.
//!
//! Where to connect: `SLUICE_SERVER` and `SLUICE_TOKEN`, else what `sluice login` saved
//! (`$XDG_CONFIG_HOME/sluice/login.json`, or `~/.config/sluice/login.json`, readable by its
//! owner only).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sluice_model::{Actor, DecisionKind, JobState};
use sluice_store::{JobRow, LogRow};

use crate::{AppError, MAX_ANNOTATION_BYTES, Note};

/// A server and the token to talk to it with.
pub struct Remote {
    base: String,
    token: String,
    client: reqwest::Client,
}

/// What `sluice login` saves.
#[derive(Serialize, Deserialize)]
struct Login {
    server: String,
    token: String,
}

/// Where `sluice login` saves the server and token.
pub fn login_file() -> Option<PathBuf> {
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(config.join("sluice").join("login.json"))
}

fn unreachable(base: &str, e: reqwest::Error) -> AppError {
    AppError::Internal(format!(
        "cannot reach the sluice server at {base}: {e}: check that it runs and that SLUICE_SERVER (or `sluice login`) names it"
    ))
}

impl Remote {
    /// The server to use, if the environment or a saved login names one.
    pub fn configured() -> Result<Option<Remote>, AppError> {
        let env_server = std::env::var("SLUICE_SERVER")
            .ok()
            .filter(|s| !s.is_empty());
        let env_token = std::env::var("SLUICE_TOKEN").ok().filter(|s| !s.is_empty());
        let saved = match login_file() {
            Some(f) => match std::fs::read(&f) {
                Ok(bytes) => Some(serde_json::from_slice::<Login>(&bytes).map_err(|e| {
                    AppError::Usage(format!(
                        "{} is not a saved login ({e}): run `sluice login URL` again, or remove it",
                        f.display()
                    ))
                })?),
                Err(_) => None,
            },
            None => None,
        };
        let (server, token) = match (env_server, env_token, saved) {
            (None, None, None) => return Ok(None),
            (Some(s), Some(t), _) => (s, t),
            (Some(s), None, Some(l)) if l.server == s.trim_end_matches('/') => (s, l.token),
            (Some(s), None, _) => {
                return Err(AppError::Usage(format!(
                    "SLUICE_SERVER names {s} but there is no token for it: set SLUICE_TOKEN, or run `sluice login {s}`"
                )));
            }
            (None, Some(_), _) => {
                return Err(AppError::Usage(
                    "SLUICE_TOKEN is set but SLUICE_SERVER is not: set both, or unset SLUICE_TOKEN to use the local home".into(),
                ));
            }
            (None, None, Some(l)) => (l.server, l.token),
        };
        Remote::new(&server, &token).map(Some)
    }

    /// A client of the server at `base` (`http://` or `https://`) with `token`.
    pub fn new(base: &str, token: &str) -> Result<Remote, AppError> {
        let base = base.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(AppError::Usage(format!(
                "`{base}` is not a server address: write it as http://HOST:PORT or https://HOST"
            )));
        }
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| AppError::Internal(format!("no HTTP client: {e}")))?;
        Ok(Remote {
            base,
            token: token.trim().to_string(),
            client,
        })
    }

    /// The server's address.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Checks the token with the server and saves both for later commands.
    pub async fn login(&self, file: &Path) -> Result<Actor, AppError> {
        let me = self.whoami().await?;
        let body = serde_json::to_vec_pretty(&Login {
            server: self.base.clone(),
            token: self.token.clone(),
        })
        .map_err(|e| AppError::Internal(e.to_string()))?;
        let dir = file.parent().unwrap_or(Path::new("."));
        let write = || -> std::io::Result<()> {
            use std::io::Write as _;
            use std::os::unix::fs::OpenOptionsExt as _;
            std::fs::create_dir_all(dir)?;
            let tmp = file.with_extension("json.tmp");
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(&body)?;
            f.sync_all()?;
            std::fs::rename(&tmp, file)
        };
        write().map_err(|e| {
            AppError::Usage(format!("cannot save the login in {}: {e}", file.display()))
        })?;
        Ok(me)
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<Value, AppError> {
        let r = req
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| unreachable(&self.base, e))?;
        let status = r.status();
        let text = r.text().await.map_err(|e| unreachable(&self.base, e))?;
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if status.is_success() {
            return Ok(body);
        }
        // The server's problem detail is the message the local command would print.
        let detail = body["detail"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| format!("the server answered {status}: {body}"));
        Err(match status.as_u16() {
            401 => AppError::Unauthenticated(detail),
            403 => AppError::Forbidden(detail),
            404 => AppError::NotFound(detail),
            409 => AppError::Refused(detail),
            400 => AppError::BadDecision(detail),
            413 | 422 => AppError::Usage(detail),
            _ => AppError::Internal(detail),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.base)
    }

    /// Who the token authenticates.
    pub async fn whoami(&self) -> Result<Actor, AppError> {
        let v = self.send(self.client.get(self.url("/whoami"))).await?;
        serde_json::from_value(v)
            .map_err(|e| AppError::Internal(format!("the server's whoami is not an actor: {e}")))
    }

    /// Starts a job of the rule the server knows as `rule` with `params` (`NAME=VALUE`);
    /// returns its id once it is in the server's journal.
    pub async fn start(&self, rule: &str, params: &[String]) -> Result<String, AppError> {
        let mut map = Map::new();
        for p in params {
            let Some((k, v)) = p.split_once('=') else {
                return Err(AppError::Usage(format!("-p {p}: write NAME=VALUE")));
            };
            map.insert(k.to_string(), Value::String(v.to_string()));
        }
        let v = self
            .send(
                self.client
                    .post(self.url("/jobs"))
                    .json(&json!({ "rule": rule, "params": map })),
            )
            .await?;
        v["id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| AppError::Internal(format!("the server started no job: {v}")))
    }

    /// The job as `sluice show --json` prints it.
    pub async fn job(&self, job: &str) -> Result<Value, AppError> {
        self.send(self.client.get(self.url(&format!("/jobs/{job}"))))
            .await
    }

    /// The job once it stopped moving: waiting, queued or ended (it is read every 200 ms).
    pub async fn settled(&self, job: &str) -> Result<(JobState, Value), AppError> {
        loop {
            let v = self.job(job).await?;
            let state: JobState = v["status"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| AppError::Internal(format!("a job without a status: {v}")))?;
            if !state.is_active() {
                return Ok((state, v));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The newest `limit` jobs.
    pub async fn jobs(&self, limit: usize) -> Result<Vec<JobRow>, AppError> {
        let v = self
            .send(
                self.client
                    .get(self.url("/jobs"))
                    .query(&[("limit", limit)]),
            )
            .await?;
        serde_json::from_value(v["jobs"].clone())
            .map_err(|e| AppError::Internal(format!("the server's job list is not one: {e}")))
    }

    /// Log lines of `job` after log id `after`.
    pub async fn logs(&self, job: &str, after: i64) -> Result<Vec<LogRow>, AppError> {
        let v = self
            .send(
                self.client
                    .get(self.url(&format!("/jobs/{job}/logs")))
                    .query(&[("after", after)]),
            )
            .await?;
        let lines = if v.is_array() { v } else { v["logs"].clone() };
        serde_json::from_value(lines)
            .map_err(|e| AppError::Internal(format!("the server's log is not one: {e}")))
    }

    /// Records a decision; the server drives the job on.
    pub async fn decide(
        &self,
        job: &str,
        kind: DecisionKind,
        step: Option<&str>,
        comment: &str,
        inputs: Map<String, Value>,
    ) -> Result<(), AppError> {
        self.send(
            self.client
                .post(self.url(&format!("/jobs/{job}/decisions")))
                .json(&json!({ "decision": kind, "step": step, "comment": comment, "inputs": inputs })),
        )
        .await
        .map(drop)
    }

    /// Cancels `job`.
    pub async fn cancel(&self, job: &str, reason: &str) -> Result<(), AppError> {
        self.send(
            self.client
                .post(self.url(&format!("/jobs/{job}/cancel")))
                .json(&json!({ "reason": reason })),
        )
        .await
        .map(drop)
    }

    /// Attaches a comment or a file to `job`; returns its id.
    pub async fn annotate(&self, job: &str, note: Note) -> Result<i64, AppError> {
        let url = self.url(&format!("/jobs/{job}/annotations"));
        let v = match note {
            Note::Comment(c) => {
                self.send(self.client.post(url).json(&json!({ "comment": c })))
                    .await?
            }
            Note::File(path) => {
                let meta = std::fs::metadata(&path)
                    .map_err(|e| AppError::Usage(format!("cannot read {}: {e}", path.display())))?;
                if !meta.is_file() || meta.len() > MAX_ANNOTATION_BYTES {
                    return Err(AppError::Usage(format!(
                        "{}: attach a regular file of at most {} MiB",
                        path.display(),
                        MAX_ANNOTATION_BYTES >> 20
                    )));
                }
                let bytes = tokio::fs::read(&path)
                    .await
                    .map_err(|e| AppError::Usage(format!("cannot read {}: {e}", path.display())))?;
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "file".into());
                let form = reqwest::multipart::Form::new().part(
                    "file",
                    reqwest::multipart::Part::bytes(bytes).file_name(name),
                );
                self.send(self.client.post(url).multipart(form)).await?
            }
            Note::Log(_) => {
                return Err(AppError::Usage(
                    "--log is not supported through a server yet: attach it with --file, or unset SLUICE_SERVER to use the local home".into(),
                ));
            }
        };
        v["ids"][0]
            .as_i64()
            .or_else(|| v["id"].as_i64())
            .ok_or_else(|| AppError::Internal(format!("the server attached nothing: {v}")))
    }
}
