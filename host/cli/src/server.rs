//! `sluice server` (the HTTP API and the worker in one process) and `sluice token` (the API's
//! credentials).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand};

use crate::job::app;
use crate::output::{self, print_json};
use crate::{CmdResult, Failed, Global};

#[derive(Debug, Args)]
pub(crate) struct ServerArgs {
    /// Where to listen (port 0 picks a free one; the first line printed says which).
    #[arg(long, default_value = "127.0.0.1:8700")]
    listen: SocketAddr,
    /// The directory of rule files jobs may be started from over the API.
    #[arg(long)]
    rules: Option<PathBuf>,
    /// How often the worker looks for due work, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    worker_interval_ms: u64,
    /// On SIGTERM, how long running steps may take to finish, in seconds; a step still
    /// running then is recovered by the next sluice process.
    #[arg(long, default_value_t = 30)]
    grace_s: u64,
    /// Serve HTTPS with this certificate chain (PEM, the server's certificate first).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Take the user from this header (for example `X-Forwarded-User`) when a request comes
    /// from a --trusted-proxy: for teams behind a single sign-on proxy.
    #[arg(long, requires = "trusted_proxy")]
    auth_header: Option<sluice_server::HeaderName>,
    /// The address of a reverse proxy whose --auth-header is believed (repeat for several).
    #[arg(long, requires = "auth_header")]
    trusted_proxy: Vec<std::net::IpAddr>,
    /// Slack's Web API, for ChatOps (set SLUICE_SLACK_SIGNING_SECRET and
    /// SLUICE_SLACK_BOT_TOKEN to turn Slack on; docs/chatops.md).
    #[arg(long, default_value = "https://slack.com/api")]
    slack_api_url: String,
    /// A Matrix homeserver for ChatOps (`https://matrix.example.org`), with the bot account in
    /// SLUICE_MATRIX_USER and SLUICE_MATRIX_PASSWORD (docs/chatops.md).
    #[arg(long)]
    matrix_homeserver: Option<String>,
}

pub(crate) async fn server(global: &Global, args: ServerArgs) -> CmdResult {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).map_err(Failed::internal)?;
    let mut int = signal(SignalKind::interrupt()).map_err(Failed::internal)?;
    let stop = async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    };
    if let Some(dir) = &args.rules
        && !dir.is_dir()
    {
        return Err(Failed::usage(anyhow::anyhow!(
            "--rules {}: not a directory: name the directory holding the rule files",
            dir.display()
        )));
    }
    let tls = match (args.tls_cert, args.tls_key) {
        (Some(cert), Some(key)) => Some(sluice_server::Tls { cert, key }),
        _ => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let config = sluice_server::Config {
        rules: args.rules,
        worker_every: Duration::from_millis(args.worker_interval_ms.max(1)),
        grace: Duration::from_secs(args.grace_s),
        tls,
        auth_header: args.auth_header,
        trusted_proxies: args.trusted_proxy,
        slack: sluice_app::SlackApp::from_env(&args.slack_api_url),
        matrix: sluice_app::matrix::MatrixBot::from_env(args.matrix_homeserver.as_deref()),
        ..sluice_server::Config::new(args.listen)
    };
    sluice_server::serve(
        Arc::new(app(global)?),
        config,
        |addr| {
            // The first line, for people and for scripts that started it on port 0.
            println!("sluice server listening on {scheme}://{addr}");
        },
        stop,
    )
    .await
    .map_err(|e| match e {
        sluice_server::ServerError::Bind { .. } | sluice_server::ServerError::Tls(_) => {
            Failed::usage(e)
        }
        sluice_server::ServerError::Worker(e) => e.into(),
        e => Failed::internal(e),
    })?;
    eprintln!("sluice server stopped");
    Ok(0)
}

#[derive(Debug, Subcommand)]
pub(crate) enum TokenCommand {
    /// Make an API token for a user; the token is printed once, on stdout.
    Create(CreateArgs),
    /// List tokens (never their secrets).
    List(ListArgs),
    /// Revoke a token: it authenticates nobody from now on.
    Revoke(RevokeArgs),
}

#[derive(Debug, Args)]
pub(crate) struct CreateArgs {
    /// The user the token authenticates (the name in the permissions file and in approvers).
    #[arg(long)]
    user: String,
    /// Groups the token adds to the user's groups in the permissions file (comma-separated).
    #[arg(long, value_delimiter = ',')]
    groups: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct RevokeArgs {
    /// The token's id (`tok_...`, from `sluice token list`).
    id: String,
}

pub(crate) async fn token(global: &Global, cmd: TokenCommand) -> CmdResult {
    match cmd {
        TokenCommand::Create(a) => {
            let by = sluice_app::command_line_actor(None)?;
            let made = app(global)?.create_token(&a.user, &a.groups, &by).await?;
            println!("{}", made.secret);
            eprintln!(
                "token {} for {}: shown once, store it now (send it as `Authorization: Bearer TOKEN`)",
                made.row.id, made.row.user
            );
            Ok(0)
        }
        TokenCommand::List(a) => {
            let rows = app(global)?.tokens().await?;
            if a.json {
                print_json(&rows)?;
                return Ok(0);
            }
            let mut out = format!(
                "{:<18} {:<16} {:<20} {:<20} {}\n",
                "ID", "USER", "GROUPS", "CREATED", "REVOKED"
            );
            for r in rows {
                out.push_str(&format!(
                    "{:<18} {:<16} {:<20} {:<20} {}\n",
                    r.id,
                    r.user,
                    r.groups.join(","),
                    crate::job::time(r.created_at),
                    r.revoked_at.map(crate::job::time).unwrap_or_default()
                ));
            }
            output::print(&out)?;
            Ok(0)
        }
        TokenCommand::Revoke(a) => {
            app(global)?.revoke_token(&a.id).await?;
            eprintln!("token {} revoked", a.id);
            Ok(0)
        }
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum PasswordCommand {
    /// Set a user's password for signing in to the job monitor; it is read from the first
    /// line of stdin (for example `read -rs P && echo "$P" | sluice password set --user ann`).
    Set(PasswordArgs),
    /// Remove a user's password: they sign in with a token only.
    Remove(PasswordArgs),
}

#[derive(Debug, Args)]
pub(crate) struct PasswordArgs {
    /// The user (the name in the permissions file and in approvers).
    #[arg(long)]
    user: String,
}

pub(crate) async fn password(global: &Global, cmd: PasswordCommand) -> CmdResult {
    match cmd {
        PasswordCommand::Set(a) => {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).map_err(|e| {
                Failed::usage(anyhow::anyhow!("cannot read the password from stdin: {e}"))
            })?;
            let password = line.trim_end_matches(['\n', '\r']);
            app(global)?.set_password(&a.user, password).await?;
            eprintln!("password of {} set", a.user);
            Ok(0)
        }
        PasswordCommand::Remove(a) => {
            app(global)?.remove_password(&a.user).await?;
            eprintln!("password of {} removed", a.user);
            Ok(0)
        }
    }
}
