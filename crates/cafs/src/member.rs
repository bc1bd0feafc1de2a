//! A package's stored member (RFC 0008): the one gzip member of all its
//! file frames, in the wire owner's (`pnpr-protocol`) layout and under its
//! key. Since RFC 0008 §4 it is the only copy of a package's file bytes the
//! server keeps, so it is made here, from the unpacker's verified spool,
//! before the package's index row is written.
//!
//! Invariants: the key and the frame order come from `pnpr_protocol::plan`
//! over the package alone (so a response's complete group for the package
//! names exactly this member); every frame's content is the spooled content
//! of its digest, which the unpacker hashed while writing it; reading a
//! member back checks each wanted frame's length against the index row
//! before buffering it.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::Arc;

use pnpr_protocol::{FrameReader, MemberWriter, MEMBER_GZIP_LEVEL};

use crate::error::CafsError;
use crate::index::PackageIndex;
use crate::spool::Spool;

/// The frames of a package's whole member, in member order.
pub(crate) fn frames(index: &PackageIndex) -> Result<Vec<pnpr_protocol::FrameRef>, CafsError> {
    struct One(Arc<pnpr_protocol::IndexValue>);
    impl pnpr_protocol::IndexLookup for One {
        fn lookup(&self, _: &str) -> Option<Arc<pnpr_protocol::IndexValue>> {
            Some(Arc::clone(&self.0))
        }
    }
    let refs = [pnpr_protocol::PackageRef {
        integrity: String::new(),
        pkg_id: String::new(),
    }];
    let plan =
        pnpr_protocol::plan(&refs, &[], &One(Arc::new(index.index_value()))).map_err(|e| {
            CafsError::BadIndexRow {
                integrity: String::new(),
                message: e.to_string(),
            }
        })?;
    Ok(plan.frames)
}

/// The key a package's whole member is stored under.
pub(crate) fn key(index: &PackageIndex) -> Result<String, CafsError> {
    Ok(key_of(&frames(index)?))
}

/// The key a member of exactly `frames` is stored under.
pub(crate) fn key_of(frames: &[pnpr_protocol::FrameRef]) -> String {
    pnpr_protocol::member_key(frames)
}

/// Writes the package's whole member from its spooled contents.
pub(crate) fn encode(
    frames: &[pnpr_protocol::FrameRef],
    spool: &mut Spool,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let mut member = MemberWriter::new(out, MEMBER_GZIP_LEVEL);
    for f in frames {
        let content = spool.read(&f.digest_hex)?;
        if content.len() as u64 != f.size {
            return Err(std::io::Error::other(format!(
                "spooled file {} has {} bytes, the index says {}",
                f.digest_hex,
                content.len(),
                f.size
            )));
        }
        member
            .frame(&f.digest, f.executable, &content)
            .map_err(std::io::Error::other)?;
    }
    member.finish().map_err(std::io::Error::other).map(drop)
}

/// Reads the frames of the member in `gz` that `wanted` names (digest and
/// executable flag → expected length), calling `keep` for each in member
/// order; fails when one of them is missing or has another length.
pub(crate) fn cut(
    gz: impl Read,
    wanted: &HashMap<([u8; 64], bool), u64>,
    mut keep: impl FnMut(&[u8; 64], bool, Vec<u8>) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let mut reader = FrameReader::new(flate2::read::GzDecoder::new(std::io::BufReader::new(gz)));
    let mut found = 0usize;
    while let Some(h) = reader.next_header()? {
        let Some(&size) = wanted.get(&(h.digest, h.executable)) else {
            continue;
        };
        if u64::from(h.len) != size {
            return Err(std::io::Error::other(format!(
                "member frame {} has {} bytes, the index says {size}",
                hex::encode(h.digest),
                h.len
            )));
        }
        keep(&h.digest, h.executable, reader.read_content()?)?;
        found += 1;
    }
    if found != wanted.len() {
        return Err(std::io::Error::other(format!(
            "member holds {found} of the {} frames asked for",
            wanted.len()
        )));
    }
    Ok(())
}
