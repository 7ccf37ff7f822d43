//! `sluice plugin push|pull|inspect|list|sign|keygen` and `sluice lock`: ops shared as OCI
//! artifacts, pinned by digest in `sluice.lock`, checked against `$SLUICE_HOME/trust.yaml`.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow};
use clap::{Args, Subcommand};
use sluice_packages::sign::{self, TrustPolicy};
use sluice_packages::{
    Cache, CachedPackage, Lock, Locked, Metadata, PackageError, PackageRef, Registry,
};
use sluice_runtime::{Runtime, RuntimeConfig};

use crate::output::{self, print_json};
use crate::{CmdResult, Failed, Global};

#[derive(Debug, Subcommand)]
pub(crate) enum PluginCommand {
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
        /// The private key file (from `sluice plugin keygen`).
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

/// `$SLUICE_HOME/trust.yaml`.
fn policy(global: &Global) -> Result<TrustPolicy, Failed> {
    TrustPolicy::load(&global.home.join("trust.yaml")).map_err(Failed::usage)
}

fn parse_ref(s: &str) -> Result<PackageRef, Failed> {
    PackageRef::parse(s).map_err(Failed::usage)
}

/// A package error with the exit code it maps to: refused (5) for trust and digests, load (4)
/// for the rest.
fn failed(e: PackageError) -> Failed {
    match e {
        PackageError::Untrusted { .. } | PackageError::DigestMismatch { .. } => Failed {
            code: Failed::REFUSED,
            error: e.into(),
            raw: false,
        },
        PackageError::BadReference { .. } | PackageError::Invalid(_) => Failed::usage(e),
        e => Failed::load(e),
    }
}

pub(crate) async fn run(global: &Global, cmd: PluginCommand) -> CmdResult {
    let cache = Cache::new(&global.home);
    match cmd {
        PluginCommand::Push {
            file,
            reference,
            insecure,
            json,
        } => {
            let pkg = parse_ref(&reference)?;
            let bytes = std::fs::read(&file)
                .with_context(|| format!("cannot read {}", file.display()))
                .map_err(Failed::usage)?;
            // Only a component that loads and describes itself as an op is pushed.
            let runtime =
                Runtime::new(RuntimeConfig::new(&global.home)).map_err(Failed::internal)?;
            let (op, _) = runtime
                .load(&bytes)
                .with_context(|| format!("{} is not a sluice op", file.display()))
                .map_err(Failed::load)?;
            let info = runtime
                .describe(&op)
                .await
                .with_context(|| format!("{} is not a sluice op", file.display()))
                .map_err(Failed::load)?;
            let metadata = Metadata {
                name: info.name,
                version: info.version,
                description: info.description,
                world: "sluice:op/op@0.1.0".into(),
                needs: info.needs.iter().map(ToString::to_string).collect(),
            };
            let manifest = Registry::new(insecure)
                .push(&pkg, &bytes, &metadata)
                .await
                .map_err(failed)?;
            if json {
                print_json(&serde_json::json!({
                    "reference": pkg.to_string(),
                    "manifest": manifest,
                    "component": sluice_packages::digest(&bytes),
                }))?;
            } else {
                output::print(&format!(
                    "pushed {} {} as {pkg}@{manifest}\n",
                    metadata.name, metadata.version
                ))?;
            }
            Ok(0)
        }
        PluginCommand::Pull {
            reference,
            insecure,
            json,
        } => {
            let pkg = parse_ref(&reference)?;
            let cached = pull(global, &cache, &pkg, insecure).await?;
            if json {
                print_json(&cached)?;
            } else {
                output::print(&format!(
                    "pulled {pkg}@{} ({} {}), {}\n",
                    cached.manifest,
                    cached.metadata.name,
                    cached.metadata.version,
                    signer_text(&policy(global)?, &pkg, &cached)
                ))?;
            }
            Ok(0)
        }
        PluginCommand::Inspect {
            reference,
            insecure,
            json,
        } => {
            let pkg = parse_ref(&reference)?;
            let cached = match cache
                .find(&pkg.to_string(), pkg.digest.as_deref())
                .map_err(failed)?
            {
                Some(c) => c,
                None => {
                    let pulled = Registry::new(insecure).pull(&pkg).await.map_err(failed)?;
                    CachedPackage {
                        reference: pkg.to_string(),
                        manifest: pulled.manifest,
                        component: pulled.component_digest,
                        metadata: pulled.metadata,
                        signature: pulled.signature,
                    }
                }
            };
            let trust = policy(global)?;
            if json {
                let verdict = trust.check(&pkg, &cached.manifest, cached.signature.as_ref());
                print_json(&serde_json::json!({
                    "reference": pkg.to_string(),
                    "name": cached.metadata.name,
                    "version": cached.metadata.version,
                    "description": cached.metadata.description,
                    "world": cached.metadata.world,
                    "needs": cached.metadata.needs,
                    "manifest": cached.manifest,
                    "component": cached.component,
                    "signed": cached.signature.is_some(),
                    "signer": verdict.as_ref().ok().cloned().flatten(),
                    "trusted": verdict.is_ok(),
                    "why": verdict.err().map(|e| e.to_string()),
                }))?;
            } else {
                let m = &cached.metadata;
                output::print(&format!(
                    "{pkg}\nname:        {}\nversion:     {}\ndescription: {}\nworld:       {}\nneeds:       {}\nmanifest:    {}\ncomponent:   {}\nsigner:      {}\n",
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
                    signer_text(&trust, &pkg, &cached),
                ))?;
            }
            Ok(0)
        }
        PluginCommand::List { json } => {
            let all = cache.list().map_err(failed)?;
            if json {
                print_json(&all.values().collect::<Vec<_>>())?;
            } else if all.is_empty() {
                output::print(
                    "no packages pulled yet: `sluice plugin pull oci://...` or `sluice lock RULE`\n",
                )?;
            } else {
                let mut text = String::new();
                for p in all.values() {
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
        PluginCommand::Sign {
            reference,
            key,
            insecure,
        } => {
            let pkg = parse_ref(&reference)?;
            let registry = Registry::new(insecure);
            let manifest = registry.manifest_digest(&pkg).await.map_err(failed)?;
            let signature = sign::sign(&key, &pkg, &manifest).map_err(failed)?;
            registry
                .push_signature(&pkg, &manifest, &signature)
                .await
                .map_err(failed)?;
            output::print(&format!("signed {pkg}@{manifest} with {}\n", key.display()))?;
            Ok(0)
        }
        PluginCommand::Keygen { name } => {
            let (private, public) = sign::generate_key().map_err(failed)?;
            let (key, pubfile) = (name.with_extension("key"), name.with_extension("pub"));
            for f in [&key, &pubfile] {
                if f.exists() {
                    return Err(Failed::usage(anyhow!(
                        "{} exists: pick another name",
                        f.display()
                    )));
                }
            }
            write_private(&key, &private)?;
            std::fs::write(&pubfile, format!("{public}\n"))
                .with_context(|| format!("writing {}", pubfile.display()))
                .map_err(Failed::usage)?;
            output::print(&format!(
                "wrote {} (keep it secret) and {}\ntrust it in $SLUICE_HOME/trust.yaml:\n  keys:\n    my-team: {public}\n",
                key.display(),
                pubfile.display()
            ))?;
            Ok(0)
        }
    }
}

fn write_private(path: &Path, text: &str) -> Result<(), Failed> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))
        .map_err(Failed::usage)?;
    writeln!(f, "{text}")
        .with_context(|| format!("writing {}", path.display()))
        .map_err(Failed::usage)
}

fn signer_text(policy: &TrustPolicy, pkg: &PackageRef, p: &CachedPackage) -> String {
    match policy.check(pkg, &p.manifest, p.signature.as_ref()) {
        Ok(Some(k)) => format!("signed by {k}"),
        Ok(None) => "unsigned (allowed by the trust policy)".into(),
        Err(e) => format!("NOT TRUSTED: {e}"),
    }
}

/// Pulls `pkg`, checks it against the trust policy, and caches it.
async fn pull(
    global: &Global,
    cache: &Cache,
    pkg: &PackageRef,
    insecure: bool,
) -> Result<CachedPackage, Failed> {
    let pulled = Registry::new(insecure).pull(pkg).await.map_err(failed)?;
    policy(global)?
        .check(pkg, &pulled.manifest, pulled.signature.as_ref())
        .map_err(failed)?;
    cache.store(&pkg.to_string(), pulled).map_err(failed)
}

/// `sluice lock RULE`: resolves every package the rule uses, pulls and checks it, and writes
/// `sluice.lock` beside the rule.
pub(crate) async fn lock(global: &Global, args: LockArgs) -> CmdResult {
    let rule = crate::rule::read_rule(&args.rule)?;
    let cache = Cache::new(&global.home);
    let mut lock = Lock {
        version: 1,
        ..Default::default()
    };
    let trust = policy(global)?;
    for (name, src) in &rule.ops {
        let sluice_rule::OpSource::Package(reference) = src else {
            continue;
        };
        let pkg = parse_ref(reference)?;
        let cached = pull(global, &cache, &pkg, args.insecure)
            .await
            .map_err(|f| Failed {
                error: f.error.context(format!("op `{name}`")),
                ..f
            })?;
        let signer = trust
            .check(&pkg, &cached.manifest, cached.signature.as_ref())
            .map_err(failed)?;
        lock.packages.insert(
            reference.clone(),
            Locked {
                manifest: cached.manifest,
                component: cached.component,
                signer,
            },
        );
    }
    let path = Lock::path_for(&args.rule);
    lock.write(&path).map_err(failed)?;
    output::print(&format!(
        "locked {} package(s) of {} in {}\n",
        lock.packages.len(),
        args.rule.display(),
        path.display()
    ))?;
    Ok(0)
}

/// Replaces every `package:` op of `rule` with the cached component its `sluice.lock` pins:
/// pulled by digest when not cached, checked against the lock's digests and the trust policy.
pub(crate) async fn resolve(
    global: &Global,
    rule: &mut sluice_rule::Rule,
    rule_path: &Path,
) -> Result<(), Failed> {
    if !rule
        .ops
        .values()
        .any(|s| matches!(s, sluice_rule::OpSource::Package(_)))
    {
        return Ok(());
    }
    let lock_path = Lock::path_for(rule_path);
    let lock = Lock::read(&lock_path).map_err(failed)?.unwrap_or_default();
    let cache = Cache::new(&global.home);
    let trust = policy(global)?;
    for (name, src) in rule.ops.iter_mut() {
        let sluice_rule::OpSource::Package(reference) = src else {
            continue;
        };
        let Some(locked) = lock.packages.get(reference.as_str()) else {
            return Err(Failed::usage(anyhow!(
                "op `{name}`: package {reference} is not in {}: run `sluice lock {}`",
                lock_path.display(),
                rule_path.display()
            )));
        };
        let pkg = parse_ref(reference)?;
        let path = match cache.get(&locked.component).map_err(failed)? {
            Some(p) => p,
            None => {
                let pulled = Registry::new(false)
                    .pull(&pkg.at(&locked.manifest))
                    .await
                    .map_err(failed)?;
                if pulled.component_digest != locked.component {
                    return Err(failed(PackageError::DigestMismatch {
                        what: format!("the component of {pkg}"),
                        expected: locked.component.clone(),
                        actual: pulled.component_digest,
                    }));
                }
                cache.store(&pkg.to_string(), pulled).map_err(failed)?;
                cache.blob_path(&locked.component)
            }
        };
        let signature = cache
            .find(&pkg.to_string(), Some(&locked.manifest))
            .map_err(failed)?
            .and_then(|c| c.signature);
        trust
            .check(&pkg, &locked.manifest, signature.as_ref())
            .map_err(|e| {
                let f = failed(e);
                Failed {
                    error: f.error.context(format!("op `{name}`")),
                    ..f
                }
            })?;
        *src = sluice_rule::OpSource::Path(path.display().to_string());
    }
    Ok(())
}
