//! Idle-time recompression of stored members (RFC 0010 §4b): a member made
//! on the cold path at `MEMBER_GZIP_LEVEL` (libdeflate 6) is re-encoded
//! whole at a denser libdeflate level and put back under the same key, so
//! later cold clients get fewer body bytes for the same frames. Too slow
//! for the cold path (7.5–18x its CPU), so the server runs it while idle.
//!
//! Invariants guarded here:
//! - the frames never change: a member is re-encoded only after its stored
//!   bytes decoded (to at most the whole-buffer cap of framed bytes, never
//!   more in memory) to frames whose contents hash to their digests and
//!   whose (digest, executable) sequence is the member's key, and the new
//!   member is placed only after it decoded back to exactly those bytes;
//!   anything else is refused ([`CafsError::Recompress`]) and the stored
//!   member is left as it was;
//! - the key, the index rows and every reader stay as they were: the new
//!   member replaces the old one by one rename (a reader holds the old file
//!   or opens the new one, each whole), under the unpack gate held shared,
//!   so eviction (which holds it exclusively) never sees a member come back
//!   after it removed it;
//! - only a smaller member replaces the stored one, and each outcome is
//!   recorded (key, level, length) in the index database, so the pass never
//!   repeats work, across restarts too; a record whose length differs from
//!   the stored member (evicted and made again since) counts as absent.

use std::collections::HashSet;
use std::fs;
use std::io::{BufReader, Read, Write};

use pnpr_protocol::{FrameReader, FrameRef, WHOLE_BUFFER_CAP};
use sha2::{Digest, Sha512};

use crate::error::CafsError;
use crate::member;
use crate::store::FileStore;

#[cfg(test)]
mod tests;

/// libdeflate's densest level; higher requests are clamped to it.
pub const MAX_RECOMPRESS_LEVEL: u32 = 12;

/// Bytes of a frame before its content: digest, u32 length, flag.
const FRAME_PREFIX: u64 = 64 + 4 + 1;

/// A stored member the pass may still re-encode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecompressCandidate {
    /// The member key (64 lowercase hex).
    pub key: String,
    /// Its stored (compressed) length.
    pub stored_bytes: u64,
    /// Its frames' bytes (prefixes and contents), from the index row; 0 for
    /// a stored cut (RFC 0010 §4c), which no row describes.
    pub framed_bytes: u64,
}

/// What [`FileStore::recompress`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recompressed {
    /// The denser member replaced the stored one.
    Replaced { before: u64, after: u64 },
    /// The denser member was not smaller; the stored one was kept.
    Kept { before: u64, after: u64 },
    /// Already recorded at this level (or denser): nothing was read.
    AlreadyDone { bytes: u64 },
    /// No member is stored under the key (evicted), or it changed while it
    /// was being re-encoded; nothing was written.
    Gone,
}

impl FileStore {
    /// Every stored member not yet recorded at `level`, at most the
    /// whole-buffer cap of framed bytes (larger ones were streamed on the
    /// cold path and are left so), and every stored cut, largest stored
    /// first. Also forgets the records of members nothing names any more.
    pub fn recompress_candidates(&self, level: u32) -> Result<Vec<RecompressCandidate>, CafsError> {
        let level = level.min(MAX_RECOMPRESS_LEVEL);
        let done = self.db.member_levels()?;
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for integrity in self.db.keys()? {
            // Uncached: a scan over every package must not evict hot rows.
            let Some(index) = self.index_uncached(&integrity)? else {
                continue;
            };
            let Ok(frames) = member::frames(&index) else {
                continue;
            };
            let key = pnpr_protocol::member_key(&frames);
            if !seen.insert(key.clone()) {
                continue;
            }
            let framed_bytes: u64 = frames.iter().map(|f| FRAME_PREFIX + f.size).sum();
            if framed_bytes > WHOLE_BUFFER_CAP as u64 {
                continue;
            }
            let path = self.member_path(&key)?;
            out.extend(pending(&done, level, key, &path, framed_bytes));
        }
        // Stored cuts (their frames are in no row: sized by their bytes).
        for key in self.cut_keys() {
            seen.insert(key.clone());
            let path = self.cut_path(&key)?;
            out.extend(pending(&done, level, key, &path, 0));
        }
        let stale: Vec<String> = done
            .into_keys()
            .filter(|k| !seen.contains(k.as_str()))
            .collect();
        if !stale.is_empty() {
            self.db.forget_member_levels(&stale)?;
        }
        out.sort_by(|a, b| {
            b.stored_bytes
                .cmp(&a.stored_bytes)
                .then_with(|| a.key.cmp(&b.key))
        });
        Ok(out)
    }

    /// Re-encodes the member `key` whole at libdeflate `level` (blocking,
    /// CPU-heavy: run it on a blocking thread, one at a time) and puts it
    /// back under the same key if it is smaller. A member of more than
    /// `WHOLE_BUFFER_CAP` framed bytes, or one that does not decode to the
    /// frames its key names, is refused and left as it was.
    pub fn recompress(&self, key: &str, level: u32) -> Result<Recompressed, CafsError> {
        self.recompress_within(key, level, WHOLE_BUFFER_CAP)
    }

    /// [`FileStore::recompress`] holding at most `cap` framed bytes.
    pub(crate) fn recompress_within(
        &self,
        key: &str,
        level: u32,
        cap: usize,
    ) -> Result<Recompressed, CafsError> {
        let level = level.min(MAX_RECOMPRESS_LEVEL);
        let path = self.stored_path(key)?;
        let Ok(file) = fs::File::open(&path) else {
            return Ok(Recompressed::Gone);
        };
        let before = file
            .metadata()
            .map_err(|e| CafsError::io(format!("reading member {key}"), e))?
            .len();
        if self
            .db
            .member_level(key)?
            .is_some_and(|(at, len)| at >= level && len == before)
        {
            return Ok(Recompressed::AlreadyDone { bytes: before });
        }
        let refuse = |reason: String| CafsError::Recompress {
            key: key.to_owned(),
            reason,
        };
        let limit = u64::try_from(cap).unwrap_or(u64::MAX);
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(BufReader::new(file))
            .take(limit.saturating_add(1))
            .read_to_end(&mut raw)
            .map_err(|e| refuse(format!("the stored member does not decode: {e}")))?;
        if raw.len() > cap {
            return Err(refuse(format!("more than {cap} framed bytes")));
        }
        let frames = frames_of(&raw).map_err(refuse)?;
        if pnpr_protocol::member_key(&frames) != key {
            return Err(refuse("its frames are not the ones its key names".into()));
        }
        let dense = pnpr_protocol::whole_member(&raw, level)
            .map_err(|e| refuse(format!("encoding: {e}")))?;
        decodes_to(&dense, &raw).map_err(refuse)?;
        drop(raw);
        let after = dense.len() as u64;
        if after >= before {
            self.db.set_member_level(key, level, before)?;
            return Ok(Recompressed::Kept { before, after });
        }
        let mut writer = self
            .files
            .derived_writer()
            .map_err(|e| CafsError::io("creating a member temp file".to_owned(), e))?;
        writer
            .write_all(&dense)
            .map_err(|e| CafsError::io(format!("writing recompressed member {key}"), e))?;
        let _gate = self.gate.read().unwrap_or_else(|p| p.into_inner());
        // Still the member that was read: eviction may have removed it
        // meanwhile, and it must not come back without its row.
        if !fs::metadata(&path).is_ok_and(|m| m.len() == before) {
            return Ok(Recompressed::Gone);
        }
        writer
            .replace(&path)
            .map_err(|e| CafsError::io(format!("placing recompressed member {key}"), e))?;
        self.db.set_member_level(key, level, after)?;
        Ok(Recompressed::Replaced { before, after })
    }
}

/// The candidate for the member or cut `key` stored at `path`, unless it is
/// gone or already recorded at `level` (or denser) with its current length.
fn pending(
    done: &std::collections::HashMap<String, (u32, u64)>,
    level: u32,
    key: String,
    path: &std::path::Path,
    framed_bytes: u64,
) -> Option<RecompressCandidate> {
    let stored_bytes = fs::metadata(path).ok()?.len();
    if done
        .get(&key)
        .is_some_and(|&(at, len)| at >= level && len == stored_bytes)
    {
        return None;
    }
    Some(RecompressCandidate {
        key,
        stored_bytes,
        framed_bytes,
    })
}

/// The frames of a decoded member, each content checked against its
/// digest; a length past the end of `raw` is an error before anything is
/// buffered, so a corrupt header cannot make this allocate more than `raw`.
fn frames_of(raw: &[u8]) -> Result<Vec<FrameRef>, String> {
    let mut reader = FrameReader::new(raw);
    let mut consumed = 0u64;
    let mut out = Vec::new();
    while let Some(h) = reader
        .next_header()
        .map_err(|e| format!("bad frame header: {e}"))?
    {
        consumed += FRAME_PREFIX;
        let len = u64::from(h.len);
        if consumed + len > raw.len() as u64 {
            return Err("a frame runs past the end of the member".into());
        }
        let content = reader
            .read_content()
            .map_err(|e| format!("bad frame content: {e}"))?;
        consumed += len;
        if Sha512::digest(&content).as_slice() != h.digest.as_slice() {
            return Err(format!(
                "frame {} does not hash to its digest",
                hex::encode(h.digest)
            ));
        }
        out.push(FrameRef {
            digest: h.digest,
            digest_hex: hex::encode(h.digest),
            executable: h.executable,
            size: len,
        });
    }
    Ok(out)
}

/// Whether the gzip member `gz` inflates to exactly `raw`, compared in
/// chunks (never a second copy of the frames).
fn decodes_to(gz: &[u8], raw: &[u8]) -> Result<(), String> {
    let mut decoder = flate2::read::GzDecoder::new(gz);
    let mut buf = vec![0u8; 64 << 10];
    let mut at = 0usize;
    loop {
        let n = decoder
            .read(&mut buf)
            .map_err(|e| format!("the dense member does not decode: {e}"))?;
        if n == 0 {
            break;
        }
        if raw.get(at..at + n) != Some(&buf[..n]) {
            return Err("the dense member decodes to other bytes".into());
        }
        at += n;
    }
    if at != raw.len() {
        return Err("the dense member decodes to fewer bytes".into());
    }
    Ok(())
}
