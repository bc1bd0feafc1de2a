//! Durable state of the proxy: the metadata rows (the embedded SQLite
//! database, or PostgreSQL shared by several nodes, behind
//! [`meta::MetaBackend`]) and the content-addressable tarball store (CAS).
//!
//! Invariants guarded here:
//! - bytes enter the CAS only through [`cas::CasWriter::finish`], which places a
//!   temp file (through [`blob`], the writer every content-addressed store of
//!   pnpr shares) only when its digest matches the expected SRI, so a CAS path
//!   always holds verified bytes and a hit is never re-hashed;
//! - every namespace (the shared public mirror, each private uplink namespace)
//!   has its own CAS root and its own metadata rows, so nothing fetched for one
//!   namespace is ever found by a lookup in another;
//! - metadata writes are single transactions, in SQLite or PostgreSQL (no
//!   partial rows);
//! - with a shared bucket ([`backend`]), local disk is a read-through cache:
//!   bytes read from the bucket pass the same verifying writer before they
//!   are placed or served, and a fetched tarball goes to the bucket before
//!   it is placed on disk.

pub mod backend;
pub mod blob;
pub mod cas;
pub mod db;
pub mod flight;
pub mod meta;
pub mod postgres;

pub use backend::BlobBackend;
pub use cas::{Cas, CasWriter, Stored};
pub use db::{MetaDb, PackumentEntry, PackumentMeta, PackumentRow, StoredBody};
pub use flight::{TarballBody, TarballFetches};
pub use meta::MetaBackend;

/// Errors of the store crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("storage I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("metadata database error: {0}")]
    Db(#[from] rusqlite::Error),
    /// The shared metadata database (its message never carries the
    /// password or connection URL).
    #[error("metadata database: {0}")]
    Pg(#[from] pnpr_pg::PgError),
    #[error("integrity mismatch: expected {expected}, got {actual}")]
    IntegrityMismatch { expected: String, actual: String },
    #[error("invalid integrity string")]
    BadIntegrity,
    #[error("invalid namespace name {0:?}")]
    BadNamespace(String),
    #[error("upstream fetch failed: {0}")]
    Fetch(FetchFailure),
    #[error("tarball exceeds the size limit of {0} bytes")]
    TooLarge(u64),
    /// The shared blob bucket failed (its message names the key, never a
    /// credential).
    #[error("blob storage: {0}")]
    Bucket(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Why a tarball flight failed; cloned to every reader of the flight, so
/// causes are shared behind `Arc`.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum FetchFailure {
    /// The upstream fetch failed (its error is redacted by its producer).
    #[error(transparent)]
    Upstream(std::sync::Arc<dyn std::error::Error + Send + Sync>),
    /// The upstream answered something other than `200`.
    #[error("upstream answered {status} for the tarball of {what}")]
    Status { status: u16, what: String },
    /// More bytes than the configured cap.
    #[error("tarball exceeds the size limit of {0} bytes")]
    TooLarge(u64),
    /// The temp file could not be written or promoted.
    #[error("storage: {0}")]
    Storage(std::sync::Arc<StoreError>),
    /// The flight ended without a result (task gone, file shrank).
    #[error("{0}")]
    Interrupted(&'static str),
}

impl FetchFailure {
    pub fn upstream(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Upstream(std::sync::Arc::new(e))
    }

    pub fn status(status: u16, what: &str) -> Self {
        Self::Status {
            status,
            what: what.to_string(),
        }
    }

    fn storage(e: StoreError) -> Self {
        Self::Storage(std::sync::Arc::new(e))
    }
}

/// Milliseconds since the Unix epoch, the unit every timestamp column uses
/// (the one clock, re-exported so storage callers need not name it).
pub use pnpr_clock::now_ms;
