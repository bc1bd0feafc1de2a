//! The diff between resolved packages and the client's store (spec §2.8).
//!
//! Invariants: a package the client already has (by integrity) contributes
//! nothing but a counter; each (digest, executable) pair is framed at most
//! once per response and never when the client provably has it; every
//! package whose files are framed also gets its index entry, because pnpm
//! 11.5.2 crashes on files without a row. Digests and sizes are validated
//! here, before any byte is streamed, so a corrupt store row fails the
//! request up front instead of truncating a response mid-body.

use std::collections::HashSet;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::index::{encode_index, IndexValue};
use crate::InstallError;

#[cfg(test)]
mod tests;

/// A package of the resolved lockfile that is backed by a tarball.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageRef {
    /// SRI integrity of the tarball (`sha512-…`).
    pub integrity: String,
    /// `name@version`, no peer suffix.
    pub pkg_id: String,
}

/// Access to the server's store index by package integrity. When several
/// rows share an integrity the implementation returns the first one.
pub trait IndexLookup {
    /// The decoded index value stored for `integrity`, if any.
    fn lookup(&self, integrity: &str) -> Option<Arc<IndexValue>>;
}

/// The seven response counters (spec §2.2), serialised in camelCase.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    /// Every package considered.
    pub total_packages: u64,
    /// Packages whose integrity the client listed.
    pub already_in_store: u64,
    /// Packages whose index entry is sent.
    pub packages_to_fetch: u64,
    /// Files of the packages to fetch.
    pub files_in_new_packages: u64,
    /// Files of those packages not framed (client or an earlier frame has them).
    pub files_already_in_cafs: u64,
    /// Framed files.
    pub files_to_download: u64,
    /// Sum of framed file sizes, uncompressed.
    pub download_bytes: u64,
}

/// One store-index row to send: key `<integrity>\t<pkgId>` and the
/// msgpackr-encoded value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    /// Store-index key.
    pub key: String,
    /// [`encode_index`] bytes of the value.
    pub value: Vec<u8>,
}

/// One file to frame in the response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameRef {
    /// Raw SHA-512 of the content (what goes on the wire).
    pub digest: [u8; 64],
    /// Lowercase hex of `digest` (the CAFS address).
    pub digest_hex: String,
    /// Framed with the executable flag.
    pub executable: bool,
    /// Content length recorded in the index; the reader should check it.
    pub size: u64,
}

/// The frames one package contributes to a [`Plan`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FrameGroup {
    /// Its frames: `plan.frames[frames]`.
    pub frames: std::ops::Range<usize>,
    /// Every distinct (digest, executable) pair of the package is framed
    /// here, in the package's own order: the group is the package's whole
    /// member, the same for every cold client, so it is worth storing
    /// (under [`member_key`]). An incomplete group (the client or an
    /// earlier package had some of its files) is particular to one request.
    pub complete: bool,
    /// Index into the `packages` given to [`plan`] of the package these
    /// frames belong to (an incomplete group is cut from that package's
    /// stored member).
    pub package: usize,
}

/// The outcome of [`plan`]: what the response carries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Counters for the header.
    pub stats: Stats,
    /// Index entries in package order.
    pub index_entries: Vec<IndexEntry>,
    /// Files to frame, grouped by package, largest package first.
    pub frames: Vec<FrameRef>,
    /// `frames` cut by package, in that order; empty groups are left out.
    pub groups: Vec<FrameGroup>,
}

/// The name a group's gzip member is stored under: SHA-256 (hex) of its
/// frames' (digest, executable) sequence. A stored member is thereby
/// addressed by exactly the frames it holds, so it can only ever be served
/// for a group that names those frames in that order.
pub fn member_key(frames: &[FrameRef]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for f in frames {
        h.update(f.digest);
        h.update([u8::from(f.executable)]);
    }
    hex::encode(h.finalize())
}

/// Computes the diff of spec §2.8 for `packages` (resolution order) against
/// the integrities the client reported in `client_has`.
///
/// Packages the server has no index row for are skipped silently (counted
/// only in `totalPackages`). Fails on a digest that is not 128 lowercase hex
/// or the all-zero terminator digest, and on a file too large to frame.
pub fn plan(
    packages: &[PackageRef],
    client_has: &[String],
    lookup: &dyn IndexLookup,
) -> Result<Plan, InstallError> {
    let client: HashSet<&str> = client_has.iter().map(String::as_str).collect();

    let mut known: HashSet<([u8; 64], bool)> = HashSet::new();
    for integrity in &client {
        if let Some(value) = lookup.lookup(integrity) {
            // A corrupt row of a package the client already has must not
            // fail the request: its digests could never match a frame anyway.
            for (_, f) in &value.files {
                if let Ok(digest) = parse_digest(&f.digest_hex) {
                    known.insert((digest, f.is_executable()));
                }
            }
        }
    }

    let mut out = Plan::default();
    let mut to_frame: Vec<(usize, Arc<IndexValue>)> = Vec::new();
    for (package, p) in packages.iter().enumerate() {
        out.stats.total_packages += 1;
        if client.contains(p.integrity.as_str()) {
            out.stats.already_in_store += 1;
            continue;
        }
        let Some(value) = lookup.lookup(&p.integrity) else {
            continue;
        };
        out.stats.packages_to_fetch += 1;
        out.index_entries.push(IndexEntry {
            key: format!("{}\t{}", p.integrity, p.pkg_id),
            value: encode_index(&value),
        });
        to_frame.push((package, value));
    }
    // Largest packages claim their files first: a file two packages share
    // goes out with the larger, whose group stays whole (sent as its stored
    // member), and the smaller one's is cut per response. In resolution
    // order about half the framed bytes of a real tree were cut; largest
    // first, about a fifth (RFC 0010 §4c). Frame order means nothing to
    // the client (§2.8); the sort is stable, so equal sizes keep their order.
    to_frame.sort_by_key(|(_, value)| {
        std::cmp::Reverse(value.files.iter().map(|(_, f)| f.size).sum::<u64>())
    });
    for (package, value) in to_frame {
        frame_package(&mut out, &mut known, package, &value)?;
    }
    Ok(out)
}

/// Frames the pairs of one package nobody framed before (the client's
/// store, an earlier package) and records its group.
fn frame_package(
    out: &mut Plan,
    known: &mut HashSet<([u8; 64], bool)>,
    package: usize,
    value: &IndexValue,
) -> Result<(), InstallError> {
    let first = out.frames.len();
    // Pairs of this package seen so far (its own duplicates are not what
    // makes a group incomplete).
    let mut own: HashSet<([u8; 64], bool)> = HashSet::new();
    let mut complete = true;
    for (_, f) in &value.files {
        out.stats.files_in_new_packages += 1;
        let digest = parse_digest(&f.digest_hex)?;
        let executable = f.is_executable();
        let new_here = own.insert((digest, executable));
        if !known.insert((digest, executable)) {
            out.stats.files_already_in_cafs += 1;
            complete &= !new_here;
            continue;
        }
        if f.size > u64::from(u32::MAX) {
            return Err(InstallError::TooLarge {
                what: "file",
                size: f.size,
            });
        }
        out.stats.files_to_download += 1;
        out.stats.download_bytes += f.size;
        out.frames.push(FrameRef {
            digest,
            digest_hex: f.digest_hex.clone(),
            executable,
            size: f.size,
        });
    }
    if out.frames.len() > first {
        out.groups.push(FrameGroup {
            frames: first..out.frames.len(),
            complete,
            package,
        });
    }
    Ok(())
}

/// Stats of a `lockfileOnly` response (spec §1.7): only `totalPackages` set.
pub fn lockfile_only_stats(total: u64) -> Stats {
    Stats {
        total_packages: total,
        ..Stats::default()
    }
}

/// Decodes a 128-char lowercase hex digest. Uppercase is refused because the
/// CAFS path the client derives from it is case-sensitive.
pub fn parse_digest(hex_digest: &str) -> Result<[u8; 64], InstallError> {
    let bytes = hex_digest.as_bytes();
    if bytes.len() != 128 || !bytes.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(InstallError::InvalidDigest);
    }
    let mut out = [0u8; 64];
    hex::decode_to_slice(bytes, &mut out).map_err(|_| InstallError::InvalidDigest)?;
    if out == [0u8; 64] {
        return Err(InstallError::ReservedDigest);
    }
    Ok(out)
}
