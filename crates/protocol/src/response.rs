//! The G1 inline response body (spec §2.1–2.3): header JSON builders and
//! the gzip stream writer.
//!
//! Invariants: the decompressed body is always `u32 BE len | header JSON |
//! 00 00 00 02 "{}" | frames… | 64 zero bytes`; the terminator is written by
//! [`InlineBody::finish`] and nowhere else, and no frame can impersonate it
//! (all-zero digests are refused) or overflow its u32 length prefix.

use std::io::Write;

use base64::Engine as _;
use flate2::write::GzEncoder;
use flate2::Compression;
use serde::Serialize;

use crate::member_writer::whole_member;
use crate::plan::{Plan, Stats};
use crate::InstallError;

#[cfg(test)]
mod tests;

/// `Content-Type` of the inline response.
pub const CONTENT_TYPE: &str = "application/x-pnpr-protocol-inline";

/// Default gzip level (spec §2.1).
pub const DEFAULT_GZIP_LEVEL: u32 = 6;

/// Level of a package's member (RFC 0008): made once and stored, so a
/// slower, tighter level is paid once per package, not per response.
pub const MEMBER_GZIP_LEVEL: u32 = 6;

/// The always-empty JSON sub-header that opens the file section.
const FILE_SECTION_PREFIX: [u8; 6] = [0, 0, 0, 2, b'{', b'}'];

/// The terminator: an all-zero digest.
const END_MARKER: [u8; 64] = [0; 64];

/// The exact file section of a response without files (lockfile-only,
/// violations): `00 00 00 02 7b 7d` + 64 zero bytes, 70 bytes.
pub fn empty_file_section() -> [u8; 70] {
    let mut out = [0u8; 70];
    out[..6].copy_from_slice(&FILE_SECTION_PREFIX);
    out
}

/// A policy violation reported instead of a lockfile (spec §2.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// Package name.
    pub name: String,
    /// Package version.
    pub version: String,
    /// Machine code, e.g. `MINIMUM_RELEASE_AGE_VIOLATION`.
    pub code: String,
    /// Human-readable reason.
    pub reason: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SuccessHeader<'a, L: Serialize> {
    lockfile: &'a L,
    stats: &'a Stats,
    index_entries: Vec<EntryOut<'a>>,
}

#[derive(Serialize)]
struct EntryOut<'a> {
    key: &'a str,
    b64: String,
}

#[derive(Serialize)]
struct ViolationsHeader<'a> {
    violations: &'a [Violation],
}

/// Success header: `{"lockfile","stats","indexEntries":[{"key","b64"}]}`.
pub fn header_json<L: Serialize>(lockfile: &L, plan: &Plan) -> Result<Vec<u8>, InstallError> {
    let header = SuccessHeader {
        lockfile,
        stats: &plan.stats,
        index_entries: plan
            .index_entries
            .iter()
            .map(|e| EntryOut {
                key: &e.key,
                b64: base64::engine::general_purpose::STANDARD.encode(&e.value),
            })
            .collect(),
    };
    serde_json::to_vec(&header).map_err(InstallError::Json)
}

/// Violations header: `{"violations":[{"name","version","code","reason"}]}`.
pub fn violations_json(violations: &[Violation]) -> Result<Vec<u8>, InstallError> {
    serde_json::to_vec(&ViolationsHeader { violations }).map_err(InstallError::Json)
}

/// The first gzip member of a streamed body: length-prefixed header JSON and
/// the file-section prefix. A streamed body is this member, one member per
/// file frame ([`frame_bytes`], compressed by whoever caches it) and
/// [`end_member`]; concatenated gzip members are one valid gzip stream.
///
/// Made per request and already whole in memory, so it is compressed whole
/// by libdeflate: about three times zlib-rs's speed at the same level and no
/// larger (RFC 0010 §3).
pub fn header_member(header: &[u8], level: u32) -> Result<Vec<u8>, InstallError> {
    whole_member(&header_bytes(header, &[])?, level)
}

/// `u32 BE len | header | file-section prefix | tail`, uncompressed.
fn header_bytes(header: &[u8], tail: &[u8]) -> Result<Vec<u8>, InstallError> {
    let len = u32::try_from(header.len()).map_err(|_| InstallError::TooLarge {
        what: "header",
        size: header.len() as u64,
    })?;
    let mut raw = Vec::with_capacity(4 + header.len() + FILE_SECTION_PREFIX.len() + tail.len());
    raw.extend_from_slice(&len.to_be_bytes());
    raw.extend_from_slice(header);
    raw.extend_from_slice(&FILE_SECTION_PREFIX);
    raw.extend_from_slice(tail);
    Ok(raw)
}

/// The uncompressed bytes of one file frame: digest, u32 BE length,
/// executable flag, content.
pub fn frame_bytes(
    digest: &[u8; 64],
    executable: bool,
    content: &[u8],
) -> Result<Vec<u8>, InstallError> {
    let prefix = frame_prefix(digest, executable, content)?;
    let mut out = Vec::with_capacity(content.len() + FRAME_PREFIX_LEN);
    out.extend_from_slice(&prefix);
    out.extend_from_slice(content);
    Ok(out)
}

/// Digest, u32 BE length and executable flag.
const FRAME_PREFIX_LEN: usize = 64 + 4 + 1;

/// The bytes of a frame before its content. Refuses the terminator's digest
/// (it would end the body early) and content too long for the u32 length.
/// Writes one file frame (prefix, then content) into an encoder.
fn write_frame(
    out: &mut impl Write,
    digest: &[u8; 64],
    executable: bool,
    content: &[u8],
) -> Result<(), InstallError> {
    out.write_all(&frame_prefix(digest, executable, content)?)?;
    out.write_all(content)?;
    Ok(())
}

pub(crate) fn frame_prefix(
    digest: &[u8; 64],
    executable: bool,
    content: &[u8],
) -> Result<[u8; FRAME_PREFIX_LEN], InstallError> {
    if *digest == END_MARKER {
        return Err(InstallError::ReservedDigest);
    }
    let len = u32::try_from(content.len()).map_err(|_| InstallError::TooLarge {
        what: "file",
        size: content.len() as u64,
    })?;
    let mut prefix = [0u8; FRAME_PREFIX_LEN];
    prefix[..64].copy_from_slice(digest);
    prefix[64..68].copy_from_slice(&len.to_be_bytes());
    prefix[68] = u8::from(executable);
    Ok(prefix)
}

/// One gzip member of `data` at `level`.
pub fn gzip_member(data: &[u8], level: u32) -> Result<Vec<u8>, InstallError> {
    let mut gz = GzEncoder::new(
        Vec::with_capacity(data.len() / 4 + 64),
        Compression::new(level.min(9)),
    );
    gz.write_all(data)?;
    Ok(gz.finish()?)
}

/// The last gzip member of a streamed body: the terminator.
pub fn end_member(level: u32) -> Result<Vec<u8>, InstallError> {
    gzip_member(&END_MARKER, level)
}

/// A complete body carrying only a header and no files (lockfile-only,
/// violations).
pub fn header_only_body(header: &[u8], level: u32) -> Result<Vec<u8>, InstallError> {
    whole_member(&header_bytes(header, &END_MARKER)?, level)
}

/// Streaming writer of the gzip-compressed inline body.
///
/// Usage: [`InlineBody::new`] with the header, [`InlineBody::frame`] per
/// file (draining [`InlineBody::take_output`] whenever convenient to stream),
/// then [`InlineBody::finish`] for the rest including the terminator.
pub struct InlineBody {
    gz: GzEncoder<Vec<u8>>,
}

impl std::fmt::Debug for InlineBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InlineBody")
            .field("pending_bytes", &self.gz.get_ref().len())
            .finish()
    }
}

impl InlineBody {
    /// Starts a body with `header` (JSON bytes) and the file-section prefix.
    /// `level` is the gzip level, clamped to 0..=9.
    pub fn new(header: &[u8], level: u32) -> Result<Self, InstallError> {
        let len = u32::try_from(header.len()).map_err(|_| InstallError::TooLarge {
            what: "header",
            size: header.len() as u64,
        })?;
        let mut gz = GzEncoder::new(Vec::new(), Compression::new(level.min(9)));
        gz.write_all(&len.to_be_bytes())?;
        gz.write_all(header)?;
        gz.write_all(&FILE_SECTION_PREFIX)?;
        Ok(InlineBody { gz })
    }

    /// Appends one file frame. The caller guarantees `digest` is the SHA-512
    /// of `content` (the client writes it to its store without re-hashing).
    pub fn frame(
        &mut self,
        digest: &[u8; 64],
        executable: bool,
        content: &[u8],
    ) -> Result<(), InstallError> {
        write_frame(&mut self.gz, digest, executable, content)
    }

    /// Compressed bytes produced so far and not yet taken.
    pub fn take_output(&mut self) -> Vec<u8> {
        // The encoder only ever appends to its sink (CRC and deflate state
        // live inside the encoder), so draining the sink is safe.
        std::mem::take(self.gz.get_mut())
    }

    /// Writes the terminator, flushes the deflate stream and the gzip trailer,
    /// and returns every compressed byte not yet taken.
    pub fn finish(mut self) -> Result<Vec<u8>, InstallError> {
        self.gz.write_all(&END_MARKER)?;
        Ok(self.gz.finish()?)
    }
}
