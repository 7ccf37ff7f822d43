//! `notify`: posts a message about the job to a webhook, as Slack-compatible JSON
//! (`{"text": ...}`, which Slack, Mattermost, Rocket.Chat and Teams workflows accept).
use serde::{Deserialize, Serialize};
use sluice_op::action::HttpSpec;
use sluice_op::schemars::{self, JsonSchema};
use sluice_op::serde_json::{Map, Value, json};
use sluice_op::{Capability, Context, Duration, Error, Op, Outcome, export_op};

/// The input of `notify`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Input {
    /// The webhook URL (its origin must be granted as `http:`).
    #[serde(default)]
    webhook: Option<String>,
    /// Or: the name of a granted secret holding the webhook URL (Slack URLs are secrets).
    #[serde(default)]
    webhook_secret: Option<String>,
    /// The message; by default one line naming the job, the rule, the step and how the step
    /// before it ended.
    #[serde(default)]
    text: Option<String>,
    /// Slack's `username`, `channel` and `icon_emoji` (written `icon-emoji`), passed through.
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    icon_emoji: Option<String>,
    /// Give up waiting for the webhook after this long (10s by default).
    #[serde(default)]
    timeout: Option<Duration>,
}

/// The output of `notify`.
#[derive(Serialize, Deserialize, JsonSchema)]
struct Output {
    /// The webhook's HTTP status.
    status: u16,
    /// The text sent.
    text: String,
}

struct Notify;

impl Op for Notify {
    type Input = Input;
    type Output = Output;
    const NAME: &'static str = "notify";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str =
        "Posts a message about the job to a webhook (Slack-compatible JSON)";
    // A repeated message is a nuisance, not harm: the host may run it again after a crash.
    const IDEMPOTENT: bool = true;

    fn needs() -> Vec<Capability> {
        vec![Capability::Http("*".into())]
    }

    fn run(ctx: &Context, input: Input) -> Result<Outcome<Output>, Error> {
        let url = match (&input.webhook, &input.webhook_secret) {
            (Some(u), None) => u.clone(),
            (None, Some(name)) => sluice_op::secret(name)?,
            _ => {
                return Err(Error::new(
                    "give exactly one of `webhook` (a URL) or `webhook-secret` (a secret's name)",
                ));
            }
        };
        let text = input.text.clone().unwrap_or_else(|| default_text(ctx));
        let mut body = Map::new();
        body.insert("text".into(), json!(text));
        for (k, v) in [
            ("username", &input.username),
            ("channel", &input.channel),
            ("icon_emoji", &input.icon_emoji),
        ] {
            if let Some(v) = v {
                body.insert(k.into(), json!(v));
            }
        }
        let spec = HttpSpec {
            url,
            method: "POST".into(),
            headers: Default::default(),
            body: Some(Value::Object(body)),
            timeout: Some(input.timeout.unwrap_or(Duration::from_secs(10))),
        };
        // The URL may be a secret: errors name only its origin.
        let r = spec.send_ok().map_err(|e| {
            let origin = spec.url.split('/').take(3).collect::<Vec<_>>().join("/");
            let why = e.message.replace(&spec.url, &format!("{origin}/..."));
            Error {
                message: format!("notifying the webhook failed: {why}"),
                ..e
            }
        })?;
        Ok(Outcome::Success(Output {
            status: r.status,
            text,
        }))
    }
}

fn default_text(ctx: &Context) -> String {
    let how = ctx.previous.as_deref().unwrap_or("started");
    if ctx.job_id.is_empty() {
        return format!("sluice: step `{}` ({how})", ctx.step_id);
    }
    format!(
        "sluice: job {} of rule `{}` by {}: step `{}`, previous step {how}",
        ctx.job_id, ctx.rule, ctx.started_by, ctx.step_id
    )
}

export_op!(Notify);
