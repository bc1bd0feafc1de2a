//! `pnpr-protocol`: the byte-level protocol of `POST /v1/install` as spoken by
//! the pnpm 11.5.2 client (the "G1 inline" generation, spec §1–§3).
//!
//! What this crate owns, and nothing more (no HTTP, no resolution, no store
//! I/O):
//! * [`parse_request`]: the request body → [`InstallRequest`];
//! * [`encode_index`]: store-index values in pnpm's msgpackr "records"
//!   dialect, byte-identical to what pnpm writes;
//! * [`plan()`]: the diff of resolved packages against the client's
//!   `storeIntegrities` (which files and index rows to send, and the stats);
//! * [`header_json`], [`violations_json`], [`InlineBody`]: the gzip inline
//!   response body;
//! * [`MemberWriter`], [`FrameReader`]: one gzip member of file frames (a
//!   package's stored member or a cut group), libdeflate when held whole;
//! * [`parse_resolve_request`] and [`ndjson`]: the resolve protocol v0
//!   (`/-/pnpr/v0/resolve`, `/-/pnpr/v0/verify-lockfile`), which shares the
//!   request shape and refuses every setting it does not implement.
//!
//! The lockfile travels as an opaque `serde_json::Value`.
//!
//! Typical server flow:
//! ```no_run
//! # use pnpr_protocol::*;
//! # fn read_file(_: &str) -> Vec<u8> { Vec::new() }
//! # fn demo(body: &[u8], lockfile: serde_json::Value, pkgs: Vec<PackageRef>, store: &dyn IndexLookup) -> Result<(), InstallError> {
//! let req = parse_request(body, "http://127.0.0.1:4873/")?;
//! let plan = plan(&pkgs, &req.store_integrities, store)?;
//! let mut body = InlineBody::new(&header_json(&lockfile, &plan)?, DEFAULT_GZIP_LEVEL)?;
//! for f in &plan.frames {
//!     body.frame(&f.digest, f.executable, &read_file(&f.digest_hex))?;
//!     let _chunk = body.take_output(); // send it
//! }
//! let _last = body.finish()?; // send it
//! # Ok(()) }
//! ```

mod applied;
mod error;
pub mod index;
pub mod member;
pub mod member_writer;
pub mod ndjson;
pub mod plan;
pub mod request;
pub mod request_v0;
pub mod response;

pub use applied::AppliedPolicies;
pub use error::InstallError;
pub use index::{encode_index, FileMeta, IndexValue};
pub use member::{FrameHeader, FrameReader};
pub use member_writer::{whole_member, MemberWriter, WHOLE_BUFFER_CAP};
pub use plan::{
    lockfile_only_stats, member_key, parse_digest, plan, FrameGroup, FrameRef, IndexEntry,
    IndexLookup, PackageRef, Plan, Stats,
};
pub use request::{
    normalize_dir, parse_request, AuthHeaders, Generation, InstallRequest, Project, TrustPolicy,
};
pub use request_v0::{parse_resolve_request, ResolveRequest, LOCKFILE_FORMAT};
pub use response::{
    empty_file_section, end_member, frame_bytes, gzip_member, header_json, header_member,
    header_only_body, violations_json, InlineBody, Violation, CONTENT_TYPE, DEFAULT_GZIP_LEVEL,
    MEMBER_GZIP_LEVEL,
};
