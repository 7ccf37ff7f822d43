//! Signatures and trust.
//!
//! A signature is cosign's "simple signing" payload (the repository and the manifest digest,
//! as JSON) signed with an ed25519 key, pushed beside the package as the artifact tagged
//! `sha256-<hex>.sig`. A [`TrustPolicy`] (`$SLUICE_HOME/trust.yaml`) says which keys may sign
//! which repositories and whether unsigned packages are accepted; the first entry whose
//! pattern matches decides, and a package no entry matches is refused.

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ring::signature::{self, Ed25519KeyPair, KeyPair};
use serde::{Deserialize, Serialize};

use crate::{PackageError, PackageRef, io};

/// A signature as pushed and cached: the signed payload and the signature, base64.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    /// cosign simple-signing JSON naming the repository and the manifest digest.
    pub payload: String,
    /// ed25519 over `payload`, base64.
    pub signature: String,
}

/// The payload that binds a signature to one manifest of one repository.
pub fn payload(package: &PackageRef, manifest_digest: &str) -> String {
    serde_json::json!({
        "critical": {
            "identity": { "docker-reference": package.name() },
            "image": { "docker-manifest-digest": manifest_digest },
            "type": "cosign container image signature"
        },
        "optional": null
    })
    .to_string()
}

/// A new key pair: the private key (PKCS#8, base64, one line) and the public key
/// (`ed25519:BASE64`).
pub fn generate_key() -> Result<(String, String), PackageError> {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng)
        .map_err(|_| PackageError::Invalid("could not generate a key".into()))?;
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
        .map_err(|_| PackageError::Invalid("could not read the generated key".into()))?;
    Ok((
        B64.encode(pkcs8.as_ref()),
        format!("ed25519:{}", B64.encode(pair.public_key().as_ref())),
    ))
}

/// Signs `package` at `manifest_digest` with the private key file at `key`.
pub fn sign(
    key: &Path,
    package: &PackageRef,
    manifest_digest: &str,
) -> Result<Signature, PackageError> {
    let text = std::fs::read_to_string(key).map_err(|e| io(key, e))?;
    let pkcs8 = B64.decode(text.trim()).map_err(|_| {
        PackageError::Invalid(format!(
            "{} is not a sluice private key (make one with `sluice package keygen`)",
            key.display()
        ))
    })?;
    let pair = Ed25519KeyPair::from_pkcs8(&pkcs8).map_err(|_| {
        PackageError::Invalid(format!("{} is not an ed25519 PKCS#8 key", key.display()))
    })?;
    let payload = payload(package, manifest_digest);
    Ok(Signature {
        signature: B64.encode(pair.sign(payload.as_bytes()).as_ref()),
        payload,
    })
}

/// Whether `sig` is `public` (`ed25519:BASE64`) signing `package` at `manifest_digest`.
pub fn verify(public: &str, sig: &Signature, package: &PackageRef, manifest_digest: &str) -> bool {
    let Some(key) = public
        .strip_prefix("ed25519:")
        .and_then(|k| B64.decode(k).ok())
    else {
        return false;
    };
    let Ok(bytes) = B64.decode(&sig.signature) else {
        return false;
    };
    // The payload must name this very repository and manifest, or a signature of one package
    // could be replayed on another.
    let Ok(p) = serde_json::from_str::<serde_json::Value>(&sig.payload) else {
        return false;
    };
    p["critical"]["image"]["docker-manifest-digest"] == manifest_digest
        && p["critical"]["identity"]["docker-reference"] == package.name()
        && signature::UnparsedPublicKey::new(&signature::ED25519, key)
            .verify(sig.payload.as_bytes(), &bytes)
            .is_ok()
}

/// `$SLUICE_HOME/trust.yaml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustPolicy {
    /// Named public keys: `platform: ed25519:BASE64`.
    #[serde(default)]
    pub keys: BTreeMap<String, String>,
    /// Entries in order; the first whose `match` fits the package decides.
    #[serde(default)]
    pub trust: Vec<TrustEntry>,
}

/// One entry of a [`TrustPolicy`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustEntry {
    /// `REGISTRY/REPOSITORY` pattern; `*` matches anything (`ghcr.io/acme/*`, `*`).
    #[serde(rename = "match")]
    pub pattern: String,
    /// Key names, one of which must have signed the package.
    #[serde(default)]
    pub keys: Vec<String>,
    /// `allow` accepts unsigned packages here; `refuse` (the default) does not.
    #[serde(default)]
    pub unsigned: Unsigned,
}

/// What to do with an unsigned package.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Unsigned {
    /// Accept it.
    Allow,
    /// Refuse it.
    #[default]
    Refuse,
}

impl TrustPolicy {
    /// Reads the policy at `path`; a missing file is an empty policy (which trusts nothing).
    pub fn load(path: &Path) -> Result<TrustPolicy, PackageError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(TrustPolicy::default()),
            Err(e) => return Err(io(path, e)),
        };
        let policy: TrustPolicy = marked_yaml::from_yaml(0, &text)
            .map_err(|e| PackageError::Invalid(format!("{}: {e}", path.display())))?;
        for entry in &policy.trust {
            for k in &entry.keys {
                if !policy.keys.contains_key(k) {
                    return Err(PackageError::Invalid(format!(
                        "{}: entry `{}` names key `{k}`, which `keys:` does not define",
                        path.display(),
                        entry.pattern
                    )));
                }
            }
        }
        Ok(policy)
    }

    /// Checks `package` at `manifest_digest` with its `signature`: the name of the key that
    /// signed it, `None` when unsigned and allowed, or why it is refused.
    pub fn check(
        &self,
        package: &PackageRef,
        manifest_digest: &str,
        signature: Option<&Signature>,
    ) -> Result<Option<String>, PackageError> {
        let untrusted = |why: String| PackageError::Untrusted {
            reference: package.to_string(),
            why,
        };
        let name = package.name();
        let Some(entry) = self.trust.iter().find(|e| glob(&e.pattern, &name)) else {
            return Err(untrusted(format!(
                "no entry of the trust policy matches {name}: add one to $SLUICE_HOME/trust.yaml (docs/sharing-ops.md)"
            )));
        };
        let signer = signature.and_then(|sig| {
            entry
                .keys
                .iter()
                .find(|k| verify(&self.keys[*k], sig, package, manifest_digest))
                .cloned()
        });
        match (signer, signature, entry.unsigned) {
            (Some(k), _, _) => Ok(Some(k)),
            (None, None, Unsigned::Allow) => Ok(None),
            (None, None, Unsigned::Refuse) => Err(untrusted(format!(
                "it is unsigned, and the trust policy entry `{}` wants a signature by {}",
                entry.pattern,
                if entry.keys.is_empty() {
                    "a key it names".to_string()
                } else {
                    entry.keys.join(" or ")
                }
            ))),
            (None, Some(_), _) => Err(untrusted(format!(
                "its signature is not by a key the trust policy entry `{}` accepts ({})",
                entry.pattern,
                if entry.keys.is_empty() {
                    "none".to_string()
                } else {
                    entry.keys.join(", ")
                }
            ))),
        }
    }
}

/// `*` matches any run of characters, `/` included.
fn glob(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, tail)) => {
            text.starts_with(head)
                && (0..=text.len() - head.len()).any(|i| {
                    text.is_char_boundary(head.len() + i) && glob(tail, &text[head.len() + i..])
                })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_bind_the_repository_and_the_digest_and_the_policy_decides() {
        let dir = tempfile::tempdir().unwrap();
        let (private, public) = generate_key().unwrap();
        let key = dir.path().join("team.key");
        std::fs::write(&key, &private).unwrap();
        let pkg = PackageRef::parse("oci://127.0.0.1:5000/team-a/check:1").unwrap();
        let digest = format!("sha256:{}", "1".repeat(64));
        let sig = sign(&key, &pkg, &digest).unwrap();
        assert!(verify(&public, &sig, &pkg, &digest));
        assert!(!verify(
            &public,
            &sig,
            &pkg,
            &format!("sha256:{}", "2".repeat(64))
        ));
        let other = PackageRef::parse("oci://127.0.0.1:5000/team-b/check:1").unwrap();
        assert!(
            !verify(&public, &sig, &other, &digest),
            "no replay on another repository"
        );

        let (_, stranger) = generate_key().unwrap();
        let policy_file = dir.path().join("trust.yaml");
        std::fs::write(
            &policy_file,
            format!(
                "keys:\n  team-a: {public}\n  stranger: {stranger}\ntrust:\n  - {{ match: \"127.0.0.1:5000/team-a/*\", keys: [team-a] }}\n  - {{ match: \"127.0.0.1:5000/sandbox/*\", unsigned: allow }}\n"
            ),
        )
        .unwrap();
        let policy = TrustPolicy::load(&policy_file).unwrap();
        assert_eq!(
            policy.check(&pkg, &digest, Some(&sig)).unwrap(),
            Some("team-a".into())
        );
        let e = policy.check(&pkg, &digest, None).unwrap_err().to_string();
        assert!(e.contains("it is unsigned, and the trust policy entry `127.0.0.1:5000/team-a/*` wants a signature by team-a"), "{e}");
        let sandbox = PackageRef::parse("oci://127.0.0.1:5000/sandbox/x:1").unwrap();
        assert_eq!(policy.check(&sandbox, &digest, None).unwrap(), None);
        let e = policy
            .check(&other, &digest, Some(&sig))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no entry of the trust policy matches 127.0.0.1:5000/team-b/check"),
            "{e}"
        );
    }

    #[test]
    fn globs() {
        assert!(glob("*", "a/b"));
        assert!(glob("ghcr.io/acme/*", "ghcr.io/acme/x/y"));
        assert!(!glob("ghcr.io/acme/*", "ghcr.io/acmex/y"));
        assert!(glob("*/ops/*", "r.io/ops/deploy"));
        assert!(!glob("r.io/ops", "r.io/ops/x"));
    }
}
