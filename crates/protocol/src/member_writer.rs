//! Writing one gzip member of consecutive file frames: a package's stored
//! member (RFC 0008 §4) or a partial group cut for one response (§5).
//!
//! A member is compressed whole by libdeflate when its frames fit in
//! [`WHOLE_BUFFER_CAP`]: on the large corpus that is both smaller and
//! faster than zlib-rs at the same level (RFC 0010 §3). A member that
//! outgrows the cap switches to streaming zlib-rs, so memory stays bounded
//! whatever a tarball holds.
//!
//! Invariants: the output is exactly one gzip member whose inflated bytes
//! are the frames in call order (so [`crate::FrameReader`] and every gzip
//! reader read it alike, whichever encoder made it); at most
//! [`WHOLE_BUFFER_CAP`] framed bytes (plus one compressed copy) are held in
//! memory (or the writer's own cap); nothing reaches the sink while the
//! member is still held whole.

use std::io::Write;

use flate2::write::GzEncoder;
use flate2::Compression;

use crate::response::frame_prefix;
use crate::InstallError;

#[cfg(test)]
mod tests;

/// The most framed bytes of one member held in memory for whole-buffer
/// compression by [`MemberWriter::new`]. 32 MiB holds every package of the
/// large corpus (the largest, typescript, frames 22.8 MB) while bounding
/// each concurrent writer; an 8 MiB cap would leave three packages and 43 of
/// the 156 MB to zlib-rs (RFC 0010 §3).
pub const WHOLE_BUFFER_CAP: usize = 32 << 20;

/// One gzip member of consecutive file frames (a
/// [`FrameGroup`](crate::FrameGroup)), written into `W`. Up to
/// [`WHOLE_BUFFER_CAP`] the frames are held and compressed whole at
/// [`MemberWriter::finish`]; past it they stream, and a `Vec` sink can be
/// drained between frames ([`MemberWriter::sink`]).
pub struct MemberWriter<W: Write> {
    out: W,
    level: u32,
    /// Framed bytes held at most before switching to streaming.
    cap: usize,
    /// Frames held for whole-buffer compression; `None` once streaming.
    whole: Option<Vec<u8>>,
    /// The streaming encoder once the frames outgrew the cap; its output
    /// moves to `out` after every frame.
    gz: Option<GzEncoder<Vec<u8>>>,
}

impl<W: Write> std::fmt::Debug for MemberWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemberWriter")
            .field("level", &self.level)
            .field("streaming", &self.gz.is_some())
            .finish_non_exhaustive()
    }
}

impl<W: Write> MemberWriter<W> {
    /// A member at `level`: libdeflate's 0–12 while held whole, zlib-rs's
    /// 0–9 (higher clamped to 9) once streaming.
    pub fn new(out: W, level: u32) -> Self {
        Self::with_cap(out, level, WHOLE_BUFFER_CAP)
    }

    /// As [`MemberWriter::new`], holding at most `cap` framed bytes whole.
    pub fn with_cap(out: W, level: u32, cap: usize) -> Self {
        MemberWriter {
            out,
            level,
            cap,
            whole: Some(Vec::new()),
            gz: None,
        }
    }

    /// Appends one frame; the caller guarantees `digest` is the SHA-512 of
    /// `content`. Refuses the terminator's digest and oversized content.
    pub fn frame(
        &mut self,
        digest: &[u8; 64],
        executable: bool,
        content: &[u8],
    ) -> Result<(), InstallError> {
        let prefix = frame_prefix(digest, executable, content)?;
        if let Some(raw) = &mut self.whole {
            let len = raw.len() + prefix.len() + content.len();
            if len <= self.cap {
                // Grow by doubling but never past the cap, so the buffer's
                // capacity stays within it too.
                if raw.capacity() < len {
                    let target = raw.capacity().saturating_mul(2).clamp(len, self.cap);
                    raw.reserve_exact(target - raw.len());
                }
                raw.extend_from_slice(&prefix);
                raw.extend_from_slice(content);
                return Ok(());
            }
        }
        let gz = self.streaming()?;
        gz.write_all(&prefix)?;
        gz.write_all(content)?;
        self.drain()
    }

    /// The streaming encoder, started (with every held frame) on first use.
    fn streaming(&mut self) -> Result<&mut GzEncoder<Vec<u8>>, InstallError> {
        let held = self.whole.take();
        let level = Compression::new(self.level.min(9));
        let gz = self
            .gz
            .get_or_insert_with(|| GzEncoder::new(Vec::new(), level));
        if let Some(raw) = held {
            gz.write_all(&raw)?;
        }
        Ok(gz)
    }

    /// Moves what the streaming encoder produced so far to the sink.
    fn drain(&mut self) -> Result<(), InstallError> {
        if let Some(gz) = &mut self.gz {
            self.out.write_all(gz.get_ref())?;
            gz.get_mut().clear();
        }
        Ok(())
    }

    /// The sink, to drain what was compressed so far (the writer only
    /// appends to it; its state lives in the writer). Empty while the
    /// member is held whole.
    pub fn sink(&mut self) -> &mut W {
        &mut self.out
    }

    /// Ends the member (whole-buffer compression, or deflate end and gzip
    /// trailer of the stream) and returns the sink.
    pub fn finish(mut self) -> Result<W, InstallError> {
        if let Some(raw) = self.whole.take() {
            let member = whole_member(&raw, self.level)?;
            self.out.write_all(&member)?;
            return Ok(self.out);
        }
        if let Some(gz) = self.gz.take() {
            self.out.write_all(&gz.finish()?)?;
        }
        Ok(self.out)
    }
}

/// One gzip member of `raw`, compressed whole by libdeflate at `level`
/// (clamped to its 0–12).
pub fn whole_member(raw: &[u8], level: u32) -> Result<Vec<u8>, InstallError> {
    let lvl = i32::try_from(level.min(12)).unwrap_or(12);
    let lvl = libdeflater::CompressionLvl::new(lvl)
        .map_err(|e| InstallError::Io(std::io::Error::other(format!("libdeflate level: {e:?}"))))?;
    let mut compressor = libdeflater::Compressor::new(lvl);
    let mut out = vec![0u8; compressor.gzip_compress_bound(raw.len())];
    let len = compressor
        .gzip_compress(raw, &mut out)
        .map_err(|e| InstallError::Io(std::io::Error::other(format!("libdeflate: {e}"))))?;
    out.truncate(len);
    Ok(out)
}
