//! Ops shared across teams as OCI artifacts.
//!
//! - [`PackageRef`]: `oci://REGISTRY/REPOSITORY:TAG` (optionally `@sha256:...`), as rules
//!   write them.
//! - [`Registry`]: push and pull with the Wasm artifact layout of wasm-pkg-tools and oci-wasm
//!   (config `application/vnd.wasm.config.v0+json`, one `application/wasm` layer), the op's
//!   `describe` in the manifest's annotations; auth from docker's `config.json`; plain HTTP
//!   only to loopback or when asked (`insecure`).
//! - [`Cache`]: `$SLUICE_HOME/packages`, content-addressed by sha256, so runs work offline
//!   once pulled.
//! - [`Lock`]: `sluice.lock` beside a rule, the resolved digests every run uses.
//! - [`sign`]: cosign-style signatures (an ed25519 signature of the manifest digest, pushed
//!   as `sha256-<hex>.sig` beside it) and the [`sign::TrustPolicy`] that says which keys may
//!   sign which repositories and what to do with unsigned packages.
//!
//! Architecture Invariant: nothing here runs a component. Bytes come in and go out, checked
//! against digests; loading and running is `sluice-runtime`'s job.

mod cache;
mod lock;
mod reference;
mod registry;
pub mod sign;

pub use cache::{Cache, CachedPackage};
pub use lock::{Lock, Locked};
pub use reference::PackageRef;
pub use registry::{Metadata, Pulled, Registry};

/// What went wrong with a package.
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    /// A reference that does not parse.
    #[error("`{reference}` is not a package reference: {why}; write oci://REGISTRY/REPOSITORY:TAG")]
    BadReference {
        /// As written.
        reference: String,
        /// Why.
        why: String,
    },
    /// The registry refused or could not be reached.
    #[error("registry {registry}: {message}")]
    Registry {
        /// The registry host.
        registry: String,
        /// What it said.
        message: String,
    },
    /// Content that does not match the digest it should have.
    #[error(
        "{what} has digest {actual}, not {expected}: refused (the content changed since it was locked or signed)"
    )]
    DigestMismatch {
        /// What was checked.
        what: String,
        /// The digest expected.
        expected: String,
        /// The digest found.
        actual: String,
    },
    /// Not a sluice op package.
    #[error("{reference} is not a Wasm component package: {why}")]
    NotAnOp {
        /// The reference.
        reference: String,
        /// Why.
        why: String,
    },
    /// The trust policy refuses it.
    #[error("{reference} is not trusted: {why}")]
    Untrusted {
        /// The reference.
        reference: String,
        /// Why.
        why: String,
    },
    /// A file could not be read or written.
    #[error("{path}: {message}")]
    Io {
        /// The file.
        path: String,
        /// What happened.
        message: String,
    },
    /// A key, a signature or a policy that does not parse.
    #[error("{0}")]
    Invalid(String),
}

/// `sha256:<hex>` of `bytes`.
pub fn digest(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

pub(crate) fn io(path: &std::path::Path, e: impl std::fmt::Display) -> PackageError {
    PackageError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}
