//! Ops shared as OCI packages: push, pull, inspect, list, sign, keygen, `sluice.lock`, and
//! resolving a rule's `package:` ops to cached, trusted components.

use std::path::{Path, PathBuf};

use sluice_packages::sign::{self, TrustPolicy};
use sluice_packages::{
    Cache, CachedPackage, Lock, Locked, Metadata, PackageError, PackageRef, Registry,
};
use sluice_rule::{OpSource, Rule};

use crate::{App, AppError};

/// What a push sent.
#[derive(Debug, Clone)]
pub struct Pushed {
    /// Where.
    pub reference: String,
    /// The manifest's digest.
    pub manifest: String,
    /// The component's digest.
    pub component: String,
    /// What the op says of itself.
    pub metadata: Metadata,
}

/// A package as `inspect` shows it, and what the trust policy says of it.
#[derive(Debug, Clone)]
pub struct Inspected {
    /// The package.
    pub package: CachedPackage,
    /// Whose key signed it (`None`: unsigned and allowed), or why it is not trusted.
    pub trust: Result<Option<String>, String>,
}

/// A package error with the class it maps to: refused for trust and digests, usage for a bad
/// reference, load for the rest.
fn failed(e: PackageError) -> AppError {
    match e {
        PackageError::Untrusted { .. } | PackageError::DigestMismatch { .. } => {
            AppError::Refused(e.to_string())
        }
        PackageError::BadReference { .. } | PackageError::Invalid(_) => {
            AppError::Usage(e.to_string())
        }
        e => AppError::Load(e.to_string()),
    }
}

fn parse_ref(s: &str) -> Result<PackageRef, AppError> {
    PackageRef::parse(s).map_err(|e| AppError::Usage(e.to_string()))
}

impl App {
    fn trust(&self) -> Result<TrustPolicy, AppError> {
        TrustPolicy::load(&self.home.join("trust.yaml")).map_err(|e| AppError::Usage(e.to_string()))
    }

    fn cache(&self) -> Cache {
        Cache::new(&self.home)
    }

    /// What the trust policy says of `p`: its signer, or why it is not trusted.
    pub fn trust_of(&self, p: &CachedPackage) -> Result<Result<Option<String>, String>, AppError> {
        let pkg = parse_ref(&p.reference)?;
        Ok(self
            .trust()?
            .check(&pkg, &p.manifest, p.signature.as_ref())
            .map_err(|e| e.to_string()))
    }

    /// Pushes the component `file` (checked to load and describe itself as an op) to
    /// `reference`.
    pub async fn push(
        &self,
        file: &Path,
        reference: &str,
        insecure: bool,
    ) -> Result<Pushed, AppError> {
        let pkg = parse_ref(reference)?;
        let bytes = std::fs::read(file)
            .map_err(|e| AppError::Usage(format!("cannot read {}: {e}", file.display())))?;
        let not_op = |e: &dyn std::fmt::Display| {
            AppError::Load(format!("{} is not a sluice op: {e}", file.display()))
        };
        let runtime = self.runtime()?;
        let (op, _) = runtime.load(&bytes).map_err(|e| not_op(&e))?;
        let info = runtime.describe(&op).await.map_err(|e| not_op(&e))?;
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
        Ok(Pushed {
            reference: pkg.to_string(),
            manifest,
            component: sluice_packages::digest(&bytes),
            metadata,
        })
    }

    /// Pulls `reference` into the cache, checking its digests and the trust policy.
    pub async fn pull(&self, reference: &str, insecure: bool) -> Result<CachedPackage, AppError> {
        let pkg = parse_ref(reference)?;
        self.pull_ref(&pkg, insecure).await
    }

    async fn pull_ref(&self, pkg: &PackageRef, insecure: bool) -> Result<CachedPackage, AppError> {
        let pulled = Registry::new(insecure).pull(pkg).await.map_err(failed)?;
        self.trust()?
            .check(pkg, &pulled.manifest, pulled.signature.as_ref())
            .map_err(failed)?;
        self.cache().store(&pkg.to_string(), pulled).map_err(failed)
    }

    /// A package from the cache, or from its registry without caching it (an untrusted one is
    /// shown, never cached).
    pub async fn inspect(&self, reference: &str, insecure: bool) -> Result<Inspected, AppError> {
        let pkg = parse_ref(reference)?;
        let package = match self
            .cache()
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
        let trust = self
            .trust()?
            .check(&pkg, &package.manifest, package.signature.as_ref())
            .map_err(|e| e.to_string());
        Ok(Inspected { package, trust })
    }

    /// The packages pulled.
    pub fn packages(&self) -> Result<Vec<CachedPackage>, AppError> {
        Ok(self.cache().list().map_err(failed)?.into_values().collect())
    }

    /// Signs the pushed package `reference` with the private key at `key`; returns the
    /// manifest digest signed.
    pub async fn sign(
        &self,
        reference: &str,
        key: &Path,
        insecure: bool,
    ) -> Result<String, AppError> {
        let pkg = parse_ref(reference)?;
        let registry = Registry::new(insecure);
        let manifest = registry.manifest_digest(&pkg).await.map_err(failed)?;
        let signature = sign::sign(key, &pkg, &manifest).map_err(failed)?;
        registry
            .push_signature(&pkg, &manifest, &signature)
            .await
            .map_err(failed)?;
        Ok(manifest)
    }

    /// Writes a signing key pair `NAME.key` (mode 600) and `NAME.pub`; returns their paths and
    /// the public key.
    pub fn keygen(&self, name: &Path) -> Result<(PathBuf, PathBuf, String), AppError> {
        let (private, public) = sign::generate_key().map_err(failed)?;
        let (key, pubfile) = (name.with_extension("key"), name.with_extension("pub"));
        for f in [&key, &pubfile] {
            if f.exists() {
                return Err(AppError::Usage(format!(
                    "{} exists: pick another name",
                    f.display()
                )));
            }
        }
        write_private(&key, &private)?;
        std::fs::write(&pubfile, format!("{public}\n"))
            .map_err(|e| AppError::Usage(format!("writing {}: {e}", pubfile.display())))?;
        Ok((key, pubfile, public))
    }

    /// Resolves every package the rule at `rule_path` uses, pulls and checks it, and writes
    /// `sluice.lock` beside the rule; returns the lock's path and how many packages it pins.
    pub async fn lock(
        &self,
        rule_path: &Path,
        insecure: bool,
    ) -> Result<(PathBuf, usize), AppError> {
        let rule = self.read_rule(rule_path)?;
        let mut lock = Lock {
            version: 1,
            ..Default::default()
        };
        let trust = self.trust()?;
        for (name, src) in &rule.ops {
            let OpSource::Package(reference) = src else {
                continue;
            };
            let pkg = parse_ref(reference)?;
            let cached = self
                .pull_ref(&pkg, insecure)
                .await
                .map_err(|e| e.context(format!("op `{name}`")))?;
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
        let path = Lock::path_for(rule_path);
        lock.write(&path).map_err(failed)?;
        Ok((path, lock.packages.len()))
    }

    /// Replaces every `package:` op of `rule` with the cached component its `sluice.lock` pins:
    /// pulled by digest when not cached, checked against the lock's digests and the trust
    /// policy.
    pub async fn resolve_packages(
        &self,
        rule: &mut Rule,
        rule_path: &Path,
    ) -> Result<(), AppError> {
        if !rule.ops.values().any(|s| matches!(s, OpSource::Package(_))) {
            return Ok(());
        }
        let lock_path = Lock::path_for(rule_path);
        let lock = Lock::read(&lock_path).map_err(failed)?.unwrap_or_default();
        let cache = self.cache();
        let trust = self.trust()?;
        for (name, src) in rule.ops.iter_mut() {
            let OpSource::Package(reference) = src else {
                continue;
            };
            let Some(locked) = lock.packages.get(reference.as_str()) else {
                return Err(AppError::Usage(format!(
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
                .map_err(|e| failed(e).context(format!("op `{name}`")))?;
            *src = OpSource::Path(path.display().to_string());
        }
        Ok(())
    }
}

fn write_private(path: &Path, text: &str) -> Result<(), AppError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let err = |e: std::io::Error| AppError::Usage(format!("writing {}: {e}", path.display()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(err)?;
    writeln!(f, "{text}").map_err(err)
}
