//! `pnpr-hosted`: packages published to pnpr itself (`npm publish`), their
//! packuments and tarballs, durable under `<storage>`.
//!
//! Owns the hosted packument documents (one SQLite row per package in
//! `<storage>/hosted.sqlite`) and their tarballs (content-addressed files under
//! `<storage>/hosted-tarballs/`). Knows nothing about HTTP or callers: the
//! server authorizes, this crate edits documents and keeps them consistent.
//!
//! Invariants guarded here:
//! - a packument row never references a missing or unverified tarball: bytes
//!   are verified against the version's `dist.integrity`/`dist.shasum`,
//!   written, fsynced and renamed into place before the transaction that
//!   references them commits (a tarball without a row is harmless garbage);
//! - every write is one SQLite transaction applied to the document as stored
//!   at that moment (writers are serialized), so concurrent publishes of
//!   different versions both land and nothing is last-writer-wins on the whole
//!   document; a stale `_rev` on an update that could drop data is a conflict;
//! - a published version's content (manifest, dist) never changes after the
//!   fact: updates may only deprecate, retag, re-own or remove it.

mod blobs;
pub mod doc;
pub mod search;
mod store;

pub use blobs::StoredTarball;
pub use doc::Permission;
pub use search::{SearchHit, SearchQuery};
pub use store::{HostedStore, Packument, UpdateOutcome};

/// Errors of the hosted store. The `String` payloads are client-facing
/// explanations (package names, versions; never credentials).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HostedError {
    #[error("storage I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("hosted database error: {0}")]
    Db(#[from] rusqlite::Error),
    /// The request is malformed or inconsistent (400).
    #[error("{0}")]
    BadRequest(String),
    /// No such package, version, tag or tarball (404).
    #[error("{0}")]
    NotFound(String),
    /// The write conflicts with the stored state (409): republishing a
    /// version, or an update based on a stale `_rev`.
    #[error("{0}")]
    Conflict(String),
    /// Attachment bytes do not match the declared integrity (400).
    #[error("integrity mismatch for {file}: {detail}")]
    IntegrityMismatch { file: String, detail: String },
    /// The caller lacks a permission the write turned out to need.
    #[error("permission denied: {permission:?} on {package}")]
    Denied {
        permission: Permission,
        package: String,
        /// True when the caller is anonymous (401 rather than 403).
        unauthenticated: bool,
    },
    /// A stored document does not parse (should never happen).
    #[error("corrupt stored document for {0}")]
    Corrupt(String),
}

pub type Result<T, E = HostedError> = std::result::Result<T, E>;

#[cfg(test)]
mod testutil;
