//! The server's store of *unpacked* packages for the install accelerator.
//!
//! Each npm tarball is unpacked once into one gzip member of all its file
//! frames (RFC 0008: the `/v1/install` wire layout, stored under the wire
//! owner's key) plus one per-package index (in-package path → digest, mode,
//! size, and the parsed `package.json`), so later installs send a package
//! without ever opening the tarball again. No raw copy of the files is kept
//! (RFC 0008 §4): a client that lacks only part of a package gets those
//! frames cut from the member.
//!
//! Invariants guarded here:
//! - a frame in a member holds exactly the bytes its digest is the SHA-512
//!   of: bytes are hashed while being spooled from the verified tarball,
//!   and the member is named by its frames' (digest, executable) sequence;
//! - an index row exists only for a tarball that unpacked completely under the
//!   tarball safety rules and the [`Limits`], matched its integrity, and whose
//!   member is in place: the row is inserted last, in one SQLite transaction;
//! - the index mirrors what pnpm 11.5.2 would record for the same tarball
//!   (placeholder `package.json`, `requiresBuild`, the bundled manifest subset),
//!   so rows re-encoded for clients are indistinguishable from pnpm's own;
//! - a member is only ever replaced by a denser encoding of exactly the same
//!   frames, under the same key ([`FileStore::recompress`], RFC 0010 §4b).

mod cache;
mod cuts;
mod db;
mod error;
mod evictable;
mod files;
mod index;
mod limits;
mod manifest;
mod member;
mod recompress;
mod spool;
mod store;
mod unpack;

pub use error::CafsError;
pub use evictable::{derived_source, member_key_of_path};
pub use index::{FileEntry, PackageIndex};
pub use limits::Limits;
pub use recompress::{RecompressCandidate, Recompressed, MAX_RECOMPRESS_LEVEL};
pub use store::{FileStore, DEFAULT_INDEX_CACHE_ENTRIES};
