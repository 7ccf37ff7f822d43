//! `sluice package push|pull|inspect|list|sign|keygen` (alias `plugin`, its old name) and
//! `sluice lock`: ops shared as OCI
//! artifacts, pinned by digest in `sluice.lock`, checked against `$SLUICE_HOME/trust.yaml`.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::job::app_read as app;
use crate::output::{self, print_json};
use crate::{CmdResult, Global};

#[derive(Debug, Subcommand)]
pub(crate) enum PackageCommand {
    /// Push an op component to a registry: FILE.wasm oci://REGISTRY/REPO:TAG.
    Push {
        /// The component.
        file: PathBuf,
        /// Where: oci://REGISTRY/REPOSITORY:TAG.
        reference: String,
        /// Allow plain HTTP to a registry that is not on this machine.
        #[arg(long)]
        insecure: bool,
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Pull a package into the local cache, checking its digests and the trust policy.
    Pull {
        /// oci://REGISTRY/REPOSITORY:TAG or @sha256:...
        reference: String,
        /// Allow plain HTTP to a registry that is not on this machine.
        #[arg(long)]
        insecure: bool,
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Show a package: name, version, WIT world, capabilities, digest, signer.
    Inspect {
        /// oci://REGISTRY/REPOSITORY:TAG or @sha256:...
        reference: String,
        /// Allow plain HTTP to a registry that is not on this machine.
        #[arg(long)]
        insecure: bool,
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// List the packages in the local cache.
    List {
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Sign a pushed package with a private key, pushing the signature beside it.
    Sign {
        /// oci://REGISTRY/REPOSITORY:TAG or @sha256:...
        reference: String,
        /// The private key file (from `sluice package keygen`).
        #[arg(long)]
        key: PathBuf,
        /// Allow plain HTTP to a registry that is not on this machine.
        #[arg(long)]
        insecure: bool,
    },
    /// Make a signing key pair: NAME.key (private) and NAME.pub (for trust policies).
    Keygen {
        /// The files' path without extension.
        name: PathBuf,
    },
}

#[derive(Debug, Args)]
pub(crate) struct LockArgs {
    /// The rule file; `sluice.lock` is written beside it.
    rule: PathBuf,
    /// Allow plain HTTP to registries that are not on this machine.
    #[arg(long)]
    insecure: bool,
}

/// The trust policy's verdict on a package, as `pull` and `inspect` say it.
fn signer_text(trust: &Result<Option<String>, String>) -> String {
    match trust {
        Ok(Some(k)) => format!("signed by {k}"),
        Ok(None) => "unsigned (allowed by the trust policy)".into(),
        Err(e) => format!("NOT TRUSTED: {e}"),
    }
}

pub(crate) async fn run(global: &Global, cmd: PackageCommand) -> CmdResult {
    let app = app(global)?;
    match cmd {
        PackageCommand::Push {
            file,
            reference,
            insecure,
            json,
        } => {
            let pushed = app.push(&file, &reference, insecure).await?;
            if json {
                print_json(&serde_json::json!({
                    "reference": pushed.reference,
                    "manifest": pushed.manifest,
                    "component": pushed.component,
                }))?;
            } else {
                output::print(&format!(
                    "pushed {} {} as {}@{}\n",
                    pushed.metadata.name,
                    pushed.metadata.version,
                    pushed.reference,
                    pushed.manifest
                ))?;
            }
            Ok(0)
        }
        PackageCommand::Pull {
            reference,
            insecure,
            json,
        } => {
            let cached = app.pull(&reference, insecure).await?;
            if json {
                print_json(&cached)?;
            } else {
                output::print(&format!(
                    "pulled {}@{} ({} {}), {}\n",
                    cached.reference,
                    cached.manifest,
                    cached.metadata.name,
                    cached.metadata.version,
                    signer_text(&app.trust_of(&cached)?)
                ))?;
            }
            Ok(0)
        }
        PackageCommand::Inspect {
            reference,
            insecure,
            json,
        } => {
            let got = app.inspect(&reference, insecure).await?;
            let cached = &got.package;
            if json {
                print_json(&serde_json::json!({
                    "reference": cached.reference,
                    "name": cached.metadata.name,
                    "version": cached.metadata.version,
                    "description": cached.metadata.description,
                    "world": cached.metadata.world,
                    "needs": cached.metadata.needs,
                    "manifest": cached.manifest,
                    "component": cached.component,
                    "signed": cached.signature.is_some(),
                    "signer": got.trust.as_ref().ok().cloned().flatten(),
                    "trusted": got.trust.is_ok(),
                    "why": got.trust.as_ref().err(),
                }))?;
            } else {
                let m = &cached.metadata;
                output::print(&format!(
                    "{}\nname:        {}\nversion:     {}\ndescription: {}\nworld:       {}\nneeds:       {}\nmanifest:    {}\ncomponent:   {}\nsigner:      {}\n",
                    cached.reference,
                    m.name,
                    m.version,
                    m.description,
                    m.world,
                    if m.needs.is_empty() {
                        "nothing".into()
                    } else {
                        m.needs.join(", ")
                    },
                    cached.manifest,
                    cached.component,
                    signer_text(&got.trust),
                ))?;
            }
            Ok(0)
        }
        PackageCommand::List { json } => {
            let all = app.packages()?;
            if json {
                print_json(&all)?;
            } else if all.is_empty() {
                output::print(
                    "no packages pulled yet: `sluice package pull oci://...` or `sluice lock RULE`\n",
                )?;
            } else {
                let mut text = String::new();
                for p in &all {
                    text.push_str(&format!(
                        "{:<50} {:<16} {:<8} {}\n",
                        p.reference,
                        p.metadata.name,
                        p.metadata.version,
                        &p.manifest[..19.min(p.manifest.len())]
                    ));
                }
                output::print(&text)?;
            }
            Ok(0)
        }
        PackageCommand::Sign {
            reference,
            key,
            insecure,
        } => {
            let manifest = app.sign(&reference, &key, insecure).await?;
            output::print(&format!(
                "signed {reference}@{manifest} with {}\n",
                key.display()
            ))?;
            Ok(0)
        }
        PackageCommand::Keygen { name } => {
            let (key, pubfile, public) = app.keygen(&name)?;
            output::print(&format!(
                "wrote {} (keep it secret) and {}\ntrust it in $SLUICE_HOME/trust.yaml:\n  keys:\n    my-team: {public}\n",
                key.display(),
                pubfile.display()
            ))?;
            Ok(0)
        }
    }
}

/// `sluice lock RULE`: resolves every package the rule uses, pulls and checks it, and writes
/// `sluice.lock` beside the rule.
pub(crate) async fn lock(global: &Global, args: LockArgs) -> CmdResult {
    let (path, n) = app(global)?.lock(&args.rule, args.insecure).await?;
    output::print(&format!(
        "locked {n} package(s) of {} in {}\n",
        args.rule.display(),
        path.display()
    ))?;
    Ok(0)
}
