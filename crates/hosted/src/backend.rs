//! The seam between the hosted store's rules and where its rows live: the
//! [`HostedBackend`] trait, with the embedded SQLite implementation
//! ([`sqlite`]) and the shared PostgreSQL one ([`crate::postgres`]).
//!
//! Owns the row model: one document row per package (`rev`, JSON body) and
//! one `(package, version) -> sha512` reference per version's tarball.
//! Invariants every backend keeps:
//! - [`HostedBackend::transact`] is one transaction: it reads the stored row
//!   and references with every other writer of that package shut out (on
//!   every node sharing the backend), lets the caller decide, and writes the
//!   document and its references together or not at all;
//! - [`HostedBackend::collect`] decides "no row references this blob" while
//!   no write transaction that could add a reference is in flight, so a
//!   blob is never removed under a commit that is about to reference it;
//! - a backend shared by several nodes tells every node about each commit
//!   ([`HostedBackend::watch`]); a single-writer backend has nothing to say.

pub(crate) mod sqlite;

use std::collections::HashSet;
use std::sync::Arc;

use crate::Result;

/// A package's stored row.
#[derive(Debug, Clone)]
pub struct StoredRow {
    pub rev: String,
    /// The document as JSON bytes.
    pub body: Vec<u8>,
}

/// What a write transaction commits.
#[derive(Debug)]
pub enum RowWrite {
    /// Replace the document and all its tarball references.
    Put {
        rev: String,
        body: Vec<u8>,
        /// `(version, sha512 hex)` for every version of the document.
        tarballs: Vec<(String, String)>,
    },
    /// Remove the package and its references.
    Delete,
    /// Nothing to write (the transaction is rolled back).
    Keep,
}

/// The caller's decision inside a transaction: sees the stored row and the
/// blobs it references, returns what to write (or an error, which rolls
/// the transaction back).
pub type Decide<'a> = Box<dyn FnOnce(Option<StoredRow>, HashSet<String>) -> Result<RowWrite> + 'a>;

/// Told about changes another node committed (and, on a shared backend,
/// this node's own, which arrive the same way).
pub trait ChangeSink: Send + Sync {
    /// `name` changed; `hosted` is whether it exists now as far as the
    /// notice knows (a later [`ChangeSink::package`] or
    /// [`ChangeSink::all`] corrects it).
    fn package(&self, name: &str, hosted: bool);
    /// Changes may have been missed (a reconnect, a lost notice): here is
    /// every hosted name; drop everything derived.
    fn all(&self, names: HashSet<String>);
}

/// Where hosted rows live.
pub trait HostedBackend: Send + Sync + std::fmt::Debug {
    /// Every hosted package name.
    fn names(&self) -> Result<HashSet<String>>;

    /// The stored row of `name`.
    fn row(&self, name: &str) -> Result<Option<StoredRow>>;

    /// Every `(name, body)`, ordered by name (search).
    fn rows(&self) -> Result<Vec<(String, Vec<u8>)>>;

    /// One write transaction on `name` (see the module invariants).
    /// Returns whether anything was committed (`false` for
    /// [`RowWrite::Keep`]).
    fn transact(&self, name: &str, decide: Decide<'_>) -> Result<bool>;

    /// Calls `remove` for each of `candidates` no row references any more,
    /// while no write can add a reference to it.
    fn collect(&self, candidates: HashSet<String>, remove: &mut dyn FnMut(&str)) -> Result<()>;

    /// Whether other processes write through this backend too (the set of
    /// names a node holds may then lag behind a commit elsewhere).
    fn shared(&self) -> bool {
        false
    }

    /// Starts telling `sink` about commits made through other handles of
    /// this backend (other nodes). The default, for a single writer: none.
    fn watch(&self, sink: Arc<dyn ChangeSink>) -> Result<()> {
        let _ = sink;
        Ok(())
    }
}
