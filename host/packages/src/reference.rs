//! `oci://REGISTRY/REPOSITORY[:TAG][@sha256:HEX]`.

use crate::PackageError;

/// A package as a rule names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PackageRef {
    /// `ghcr.io`, `127.0.0.1:5000`.
    pub registry: String,
    /// `team-a/canary-check`.
    pub repository: String,
    /// `1.2.0`; `latest` when neither a tag nor a digest is written.
    pub tag: Option<String>,
    /// `sha256:...` of the manifest, when pinned.
    pub digest: Option<String>,
}

impl PackageRef {
    /// Reads `oci://...`; the `oci://` prefix may be left out on the command line.
    pub fn parse(s: &str) -> Result<PackageRef, PackageError> {
        let bad = |why: &str| PackageError::BadReference {
            reference: s.to_string(),
            why: why.to_string(),
        };
        let rest = s.strip_prefix("oci://").unwrap_or(s);
        let (rest, digest) = match rest.split_once('@') {
            Some((r, d)) => {
                let hex = d
                    .strip_prefix("sha256:")
                    .ok_or_else(|| bad("a digest is sha256:<64 hex digits>"))?;
                if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(bad("a digest is sha256:<64 hex digits>"));
                }
                (r, Some(d.to_ascii_lowercase()))
            }
            None => (rest, None),
        };
        let (registry, path) = rest
            .split_once('/')
            .ok_or_else(|| bad("it names no repository"))?;
        if registry.is_empty() || !registry.contains(['.', ':']) && registry != "localhost" {
            return Err(bad(
                "the registry must be a host such as ghcr.io or 127.0.0.1:5000",
            ));
        }
        let (repository, tag) = match path.rsplit_once(':') {
            Some((r, t)) if !t.contains('/') => (r, Some(t.to_string())),
            _ => (path, None),
        };
        let valid = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-/".contains(c);
        if repository.is_empty() || !repository.chars().all(valid) {
            return Err(bad(
                "a repository is lowercase letters, digits, `.`, `_`, `-` and `/`",
            ));
        }
        if tag
            .as_deref()
            .is_some_and(|t| t.is_empty() || t.len() > 128)
        {
            return Err(bad("a tag is 1 to 128 characters"));
        }
        let tag = if tag.is_none() && digest.is_none() {
            Some("latest".to_string())
        } else {
            tag
        };
        Ok(PackageRef {
            registry: registry.to_string(),
            repository: repository.to_string(),
            tag,
            digest,
        })
    }

    /// `REGISTRY/REPOSITORY`, what trust policies match.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The same package pinned to `digest`, without its tag.
    pub fn at(&self, digest: &str) -> PackageRef {
        PackageRef {
            tag: None,
            digest: Some(digest.to_string()),
            ..self.clone()
        }
    }

    /// Whether the registry is this machine, where plain HTTP is allowed.
    pub fn is_loopback(&self) -> bool {
        let host = self
            .registry
            .rsplit_once(':')
            .map_or(self.registry.as_str(), |(h, _)| h);
        matches!(host, "localhost" | "127.0.0.1" | "[::1]") || host.starts_with("127.")
    }

    /// The form oci-client reads: `REGISTRY/REPOSITORY[:TAG][@DIGEST]`.
    pub(crate) fn oci(&self) -> String {
        let mut s = self.name();
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(d);
        }
        s
    }
}

impl std::fmt::Display for PackageRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "oci://{}", self.oci())
    }
}

#[cfg(test)]
mod tests {
    use super::PackageRef;

    #[test]
    fn references_parse_and_print() {
        let r = PackageRef::parse("oci://127.0.0.1:5000/team-a/canary-check:1.2.0").unwrap();
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "team-a/canary-check");
        assert_eq!(r.tag.as_deref(), Some("1.2.0"));
        assert!(r.is_loopback());
        assert_eq!(
            r.to_string(),
            "oci://127.0.0.1:5000/team-a/canary-check:1.2.0"
        );

        let pinned = format!("ghcr.io/acme/deploy@sha256:{}", "ab".repeat(32));
        let r = PackageRef::parse(&pinned).unwrap();
        assert_eq!((r.tag, r.digest.is_some()), (None, true));
        assert!(
            !PackageRef::parse("ghcr.io/acme/deploy")
                .unwrap()
                .is_loopback()
        );
        assert_eq!(
            PackageRef::parse("ghcr.io/acme/deploy")
                .unwrap()
                .tag
                .as_deref(),
            Some("latest")
        );

        for bad in [
            "oci://deploy",
            "oci://acme/deploy:1",
            "oci://ghcr.io/Acme/deploy",
            "oci://ghcr.io/acme/deploy@sha256:abc",
        ] {
            assert!(PackageRef::parse(bad).is_err(), "{bad}");
        }
    }
}
