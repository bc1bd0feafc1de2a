//! `pnpr-hosted`: packages published to pnpr itself (`npm publish`), their
//! packuments and tarballs, durable under `<storage>`.
//!
//! Owns the hosted packument documents (one row per package: SQLite in
//! `<storage>/hosted.sqlite` by default, or the PostgreSQL database several
//! nodes share, behind [`HostedBackend`]) and their tarballs
//! (content-addressed files under `<storage>/hosted-tarballs/`). Knows
//! nothing about HTTP or callers: the server authorizes, this crate edits
//! documents and keeps them consistent.
//!
//! Invariants guarded here:
//! - a packument row never references a missing or unverified tarball: bytes
//!   are verified against the version's `dist.integrity`/`dist.shasum`,
//!   written, fsynced and renamed into place before the transaction that
//!   references them commits (a tarball without a row is harmless garbage);
//! - every write is one backend transaction applied to the document as stored
//!   at that moment (writers are serialized), so concurrent publishes of
//!   different versions both land and nothing is last-writer-wins on the whole
//!   document; a stale `_rev` on an update that could drop data is a conflict;
//! - a published version's content (manifest, dist) never changes after the
//!   fact: updates may only deprecate, retag, re-own or remove it;
//! - an existing package is changed only by a caller that [`ownership`]
//!   admits, decided against the stored document inside the write
//!   transaction.

mod backend;
mod blobs;
pub mod doc;
pub mod ownership;
pub mod postgres;
pub mod search;
mod store;

pub use backend::{ChangeSink, Decide, HostedBackend, RowWrite, StoredRow};
pub use blobs::StoredTarball;
pub use doc::Permission;
pub use ownership::{Actor, Change, Groups, Ownership, OwnershipMode, UplinkAnswer};
pub use search::{SearchHit, SearchQuery};
pub use store::{ChangeHook, HostedStore, Packument, UpdateGate, UpdateOutcome};

/// Errors of the hosted store. The `String` payloads are client-facing
/// explanations (package names, versions; never credentials).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HostedError {
    #[error("storage I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("hosted database error: {0}")]
    Db(#[from] rusqlite::Error),
    /// The shared database failed (no credential in the text).
    #[error("hosted database error: {0}")]
    Pg(#[from] pnpr_pg::PgError),
    /// The metadata mirror's rows could not be read (search).
    #[error("metadata cache error: {0}")]
    Mirror(#[from] pnpr_store::StoreError),
    /// The shared blob bucket failed or holds bytes that do not match
    /// their digest (503; names the key, never a credential).
    #[error("blob storage unavailable: {0}")]
    Bucket(String),
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
    /// The caller is neither a maintainer of the package nor an admin (403).
    #[error("{user} is not a maintainer of {package} and cannot {verb} it", verb = change.verb())]
    NotOwner {
        package: String,
        user: String,
        change: Change,
    },
    /// An owner change names a user that does not exist (400).
    #[error("cannot add {0} as a maintainer: no such user")]
    UnknownUser(String),
    /// First publish of a name whose rule proxies to an access-bearing
    /// uplink that does not admit the publisher (403).
    #[error("{package} is in the namespace of uplink {uplink}, which does not admit you; only its users may claim new names there")]
    ClaimNotAdmitted { package: String, uplink: String },
    /// First publish of a name an uplink already serves (403): a hosted
    /// copy would shadow it for everyone.
    #[error("{package} is already served by an uplink ({}); publishing it here would shadow it", uplinks.join(", "))]
    NameServedUpstream {
        package: String,
        uplinks: Vec<String>,
    },
    /// First publish while an uplink of the name's rule cannot be asked
    /// (503): the claim cannot be verified, so it is refused.
    #[error("cannot verify that no uplink serves {package} ({} could not be asked); try again later", uplinks.join(", "))]
    ClaimUnverifiable {
        package: String,
        uplinks: Vec<String>,
    },
    /// A stored document does not parse (should never happen).
    #[error("corrupt stored document for {0}")]
    Corrupt(String),
}

pub type Result<T, E = HostedError> = std::result::Result<T, E>;

#[cfg(test)]
mod testutil;
