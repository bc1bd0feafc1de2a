//! The server's store of *unpacked* package files for the install accelerator.
//!
//! Each npm tarball is unpacked once into SHA-512-addressed files plus one
//! per-package index (in-package path → digest, mode, size, and the parsed
//! `package.json`), so later installs can send files by digest without ever
//! opening the tarball again.
//!
//! Invariants guarded here:
//! - a file under `<root>/files/` always holds exactly the bytes its name is the
//!   SHA-512 of: bytes are hashed while being written to a private temp file and
//!   only then linked into place, and an existing file is never rewritten;
//! - an index row exists only for a tarball that unpacked completely under the
//!   tarball safety rules and the [`Limits`], matched its integrity, and whose
//!   files are all present: the row is inserted last, in one SQLite transaction;
//! - the index mirrors what pnpm 11.5.2 would record for the same tarball
//!   (placeholder `package.json`, `requiresBuild`, the bundled manifest subset),
//!   so rows re-encoded for clients are indistinguishable from pnpm's own.

mod cache;
mod db;
mod error;
mod evictable;
mod files;
mod index;
mod limits;
mod manifest;
mod store;
mod unpack;

pub use error::CafsError;
pub use evictable::derived_source;
pub use index::{FileEntry, PackageIndex};
pub use limits::Limits;
pub use store::{FileStore, DEFAULT_INDEX_CACHE_ENTRIES};
