//! Pushing and pulling op packages with the Wasm OCI artifact layout.

use std::collections::BTreeMap;

use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::errors::OciDistributionError;
use oci_client::manifest::OciImageManifest;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use serde::{Deserialize, Serialize};

use crate::sign::Signature;
use crate::{PackageError, PackageRef, digest};

/// The layer of a Wasm component artifact.
pub const WASM_LAYER: &str = "application/wasm";
/// The config of a Wasm artifact (wasm-pkg-tools, oci-wasm).
pub const WASM_CONFIG: &str = "application/vnd.wasm.config.v0+json";
/// The layer of a cosign signature artifact.
const SIGNATURE_LAYER: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";

/// What a package says about its op, carried in the manifest's annotations.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    /// The op's name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// One sentence.
    pub description: String,
    /// The WIT world it implements.
    pub world: String,
    /// The capabilities it declares, as grants are written (`exec:kubectl`).
    pub needs: Vec<String>,
}

impl Metadata {
    fn annotations(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("org.opencontainers.image.title".into(), self.name.clone()),
            (
                "org.opencontainers.image.version".into(),
                self.version.clone(),
            ),
            (
                "org.opencontainers.image.description".into(),
                self.description.clone(),
            ),
            ("dev.sluice.op.world".into(), self.world.clone()),
            ("dev.sluice.op.needs".into(), self.needs.join(" ")),
        ])
    }

    fn from_annotations(a: &BTreeMap<String, String>) -> Metadata {
        let get = |k: &str| a.get(k).cloned().unwrap_or_default();
        Metadata {
            name: get("org.opencontainers.image.title"),
            version: get("org.opencontainers.image.version"),
            description: get("org.opencontainers.image.description"),
            world: get("dev.sluice.op.world"),
            needs: get("dev.sluice.op.needs")
                .split_whitespace()
                .map(String::from)
                .collect(),
        }
    }
}

/// A package as pulled: checked against its digests, not yet against any trust policy.
#[derive(Debug, Clone)]
pub struct Pulled {
    /// The manifest's digest.
    pub manifest: String,
    /// The component.
    pub component: Vec<u8>,
    /// Its digest, checked against the manifest.
    pub component_digest: String,
    /// From the manifest's annotations (empty for a package pushed by another tool).
    pub metadata: Metadata,
    /// Its signature, when one was pushed beside it.
    pub signature: Option<Signature>,
}

/// A registry client: docker `config.json` credentials, HTTPS except to loopback registries
/// (or everywhere when `insecure`).
pub struct Registry {
    insecure: bool,
}

impl Registry {
    /// A client; `insecure` allows plain HTTP to any registry.
    pub fn new(insecure: bool) -> Registry {
        Registry { insecure }
    }

    fn client(&self, pkg: &PackageRef) -> Client {
        let protocol = if self.insecure || pkg.is_loopback() {
            ClientProtocol::Http
        } else {
            ClientProtocol::Https
        };
        Client::new(ClientConfig {
            protocol,
            ..Default::default()
        })
    }

    fn reference(pkg: &PackageRef) -> Result<Reference, PackageError> {
        pkg.oci()
            .parse()
            .map_err(|e: oci_client::ParseError| PackageError::BadReference {
                reference: pkg.to_string(),
                why: e.to_string(),
            })
    }

    fn err(pkg: &PackageRef, e: OciDistributionError) -> PackageError {
        let message = match &e {
            OciDistributionError::UnauthorizedError { .. }
            | OciDistributionError::AuthenticationFailure(_) => format!(
                "{e}: log in with `docker login {}` (sluice reads ~/.docker/config.json) or set SLUICE_REGISTRY_USER and SLUICE_REGISTRY_PASSWORD",
                pkg.registry
            ),
            OciDistributionError::RequestError(r) if r.is_connect() => format!(
                "cannot connect: {r}{}",
                if pkg.is_loopback() {
                    ""
                } else {
                    " (plain HTTP needs --insecure)"
                }
            ),
            _ => e.to_string(),
        };
        PackageError::Registry {
            registry: pkg.registry.clone(),
            message,
        }
    }

    /// Pushes `component` as `pkg` with `metadata`; returns the manifest's digest.
    pub async fn push(
        &self,
        pkg: &PackageRef,
        component: &[u8],
        metadata: &Metadata,
    ) -> Result<String, PackageError> {
        let reference = Self::reference(pkg)?;
        let layer_digest = digest(component);
        let config = serde_json::json!({
            "created": rfc3339_now(),
            "architecture": "wasm",
            "os": "wasip2",
            "layerDigests": [layer_digest],
            "component": { "target": metadata.world, "exports": [], "imports": [] },
        });
        let layers = [ImageLayer::new(component.to_vec(), WASM_LAYER.into(), None)];
        let config = Config::new(config.to_string().into_bytes(), WASM_CONFIG.into(), None);
        let manifest = OciImageManifest::build(&layers, &config, Some(metadata.annotations()));
        let client = self.client(pkg);
        client
            .push(&reference, &layers, config, &auth(pkg), Some(manifest))
            .await
            .map_err(|e| Self::err(pkg, e))?;
        client
            .fetch_manifest_digest(&reference, &auth(pkg))
            .await
            .map_err(|e| Self::err(pkg, e))
    }

    /// Pulls `pkg`: the manifest (checked against the reference's digest when pinned), the
    /// component (checked against the manifest), and its signature if one was pushed.
    pub async fn pull(&self, pkg: &PackageRef) -> Result<Pulled, PackageError> {
        let reference = Self::reference(pkg)?;
        let client = self.client(pkg);
        let data = client
            .pull(&reference, &auth(pkg), vec![WASM_LAYER])
            .await
            .map_err(|e| match e {
                OciDistributionError::IncompatibleLayerMediaTypeError(t) => PackageError::NotAnOp {
                    reference: pkg.to_string(),
                    why: format!("its layer is `{t}`, not `{WASM_LAYER}`"),
                },
                e => Self::err(pkg, e),
            })?;
        let manifest_digest = data.digest.clone().ok_or_else(|| PackageError::Registry {
            registry: pkg.registry.clone(),
            message: "the registry sent no manifest digest".into(),
        })?;
        if let Some(pinned) = &pkg.digest
            && *pinned != manifest_digest
        {
            return Err(PackageError::DigestMismatch {
                what: format!("the manifest of {pkg}"),
                expected: pinned.clone(),
                actual: manifest_digest,
            });
        }
        let manifest = data.manifest.ok_or_else(|| PackageError::NotAnOp {
            reference: pkg.to_string(),
            why: "no image manifest".into(),
        })?;
        let [layer] = data.layers.as_slice() else {
            return Err(PackageError::NotAnOp {
                reference: pkg.to_string(),
                why: format!("{} layers, where an op has one", data.layers.len()),
            });
        };
        let component_digest = digest(&layer.data);
        let declared = &manifest.layers[0].digest;
        if *declared != component_digest {
            return Err(PackageError::DigestMismatch {
                what: format!("the component of {pkg}"),
                expected: declared.clone(),
                actual: component_digest,
            });
        }
        let metadata =
            Metadata::from_annotations(&manifest.annotations.clone().unwrap_or_default());
        let signature = self.pull_signature(pkg, &manifest_digest).await?;
        Ok(Pulled {
            manifest: manifest_digest,
            component: layer.data.to_vec(),
            component_digest,
            metadata,
            signature,
        })
    }

    fn signature_ref(pkg: &PackageRef, manifest_digest: &str) -> PackageRef {
        PackageRef {
            tag: Some(manifest_digest.replace(':', "-") + ".sig"),
            digest: None,
            ..pkg.clone()
        }
    }

    async fn pull_signature(
        &self,
        pkg: &PackageRef,
        manifest_digest: &str,
    ) -> Result<Option<Signature>, PackageError> {
        let sig_ref = Self::signature_ref(pkg, manifest_digest);
        let reference = Self::reference(&sig_ref)?;
        match self
            .client(pkg)
            .pull(&reference, &auth(pkg), vec![SIGNATURE_LAYER])
            .await
        {
            Ok(data) => {
                let Some(layer) = data.layers.first() else {
                    return Ok(None);
                };
                let signature = layer
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(SIGNATURE_ANNOTATION))
                    .cloned()
                    .unwrap_or_default();
                Ok(Some(Signature {
                    payload: String::from_utf8_lossy(&layer.data).into_owned(),
                    signature,
                }))
            }
            Err(OciDistributionError::ImageManifestNotFoundError(_)) => Ok(None),
            Err(OciDistributionError::RegistryError { envelope, .. })
                if envelope.errors.iter().any(|e| {
                    matches!(e.code, oci_client::errors::OciErrorCode::ManifestUnknown)
                }) =>
            {
                Ok(None)
            }
            Err(e) => Err(Self::err(pkg, e)),
        }
    }

    /// The digest of the manifest `pkg` names now.
    pub async fn manifest_digest(&self, pkg: &PackageRef) -> Result<String, PackageError> {
        if let Some(d) = &pkg.digest {
            return Ok(d.clone());
        }
        let reference = Self::reference(pkg)?;
        self.client(pkg)
            .fetch_manifest_digest(&reference, &auth(pkg))
            .await
            .map_err(|e| Self::err(pkg, e))
    }

    /// Pushes `signature` of `pkg` at `manifest_digest` beside it, as cosign does.
    pub async fn push_signature(
        &self,
        pkg: &PackageRef,
        manifest_digest: &str,
        signature: &Signature,
    ) -> Result<(), PackageError> {
        let sig_ref = Self::signature_ref(pkg, manifest_digest);
        let reference = Self::reference(&sig_ref)?;
        let layers = [ImageLayer::new(
            signature.payload.clone().into_bytes(),
            SIGNATURE_LAYER.into(),
            Some(BTreeMap::from([(
                SIGNATURE_ANNOTATION.to_string(),
                signature.signature.clone(),
            )])),
        )];
        let config = Config::new(
            b"{}".to_vec(),
            "application/vnd.oci.image.config.v1+json".into(),
            None,
        );
        self.client(pkg)
            .push(&reference, &layers, config, &auth(pkg), None)
            .await
            .map_err(|e| Self::err(pkg, e))?;
        Ok(())
    }
}

/// Credentials for `pkg`'s registry: SLUICE_REGISTRY_USER/PASSWORD, else docker's
/// `config.json` (`$DOCKER_CONFIG` or `~/.docker`), else anonymous.
fn auth(pkg: &PackageRef) -> RegistryAuth {
    if let (Ok(u), Ok(p)) = (
        std::env::var("SLUICE_REGISTRY_USER"),
        std::env::var("SLUICE_REGISTRY_PASSWORD"),
    ) {
        return RegistryAuth::Basic(u, p);
    }
    docker_auth(&pkg.registry).unwrap_or(RegistryAuth::Anonymous)
}

fn docker_auth(registry: &str) -> Option<RegistryAuth> {
    use base64::Engine as _;
    let dir = std::env::var_os("DOCKER_CONFIG")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".docker")))?;
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("config.json")).ok()?).ok()?;
    let auths = config.get("auths")?.as_object()?;
    let entry = auths.get(registry).or_else(|| {
        auths
            .iter()
            .find(|(k, _)| {
                k.trim_start_matches("https://")
                    .trim_start_matches("http://")
                    .trim_end_matches('/')
                    == registry
            })
            .map(|(_, v)| v)
    })?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(entry.get("auth")?.as_str()?)
        .ok()?;
    let (user, pass) = std::str::from_utf8(&decoded).ok()?.split_once(':')?;
    Some(RegistryAuth::Basic(user.to_string(), pass.to_string()))
}

/// Now as RFC 3339 UTC, to the second.
fn rfc3339_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let [y, mo, d, h, mi, s] = sluice_model::utc_parts(secs);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}
