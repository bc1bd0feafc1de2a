//! Reading the frames back out of a stored package member (RFC 0008 §4):
//! the server keeps no raw copy of a package's files, so a group the
//! client only partly lacks is cut from the package's whole member.
//!
//! Invariants: the reader only parses what [`crate::MemberWriter`] wrote
//! (digest, u32 BE length, executable flag, content; no terminator inside
//! a member); a frame's content is read into memory only at the length
//! the caller checked against its index row, and a frame the caller does
//! not want is skipped without being buffered, so a corrupt length cannot
//! make the reader allocate more than the caller allowed.

use std::io::{self, Read};

/// The fixed part of one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Raw SHA-512 of the content.
    pub digest: [u8; 64],
    /// Framed with the executable flag.
    pub executable: bool,
    /// Content length.
    pub len: u32,
}

/// Frames of one decompressed member, in order.
pub struct FrameReader<R: Read> {
    inner: R,
    /// Content bytes of the current frame not yet read or skipped.
    pending: u64,
}

impl<R: Read> std::fmt::Debug for FrameReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameReader")
            .field("pending", &self.pending)
            .finish_non_exhaustive()
    }
}

impl<R: Read> FrameReader<R> {
    /// Frames of the decompressed bytes `inner`.
    pub fn new(inner: R) -> Self {
        Self { inner, pending: 0 }
    }

    /// The next frame's header (skipping what is left of the current
    /// frame's content), or `None` at the end of the member. A member cut
    /// inside a header is an `UnexpectedEof` error.
    pub fn next_header(&mut self) -> io::Result<Option<FrameHeader>> {
        self.skip_content()?;
        let mut prefix = [0u8; 64 + 4 + 1];
        let mut got = 0;
        while got < prefix.len() {
            let n = self.inner.read(&mut prefix[got..])?;
            if n == 0 {
                if got == 0 {
                    return Ok(None);
                }
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            got += n;
        }
        let mut digest = [0u8; 64];
        digest.copy_from_slice(&prefix[..64]);
        let len = u32::from_be_bytes([prefix[64], prefix[65], prefix[66], prefix[67]]);
        let executable = match prefix[68] {
            0 => false,
            1 => true,
            other => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("frame executable flag {other}"),
                ))
            }
        };
        self.pending = u64::from(len);
        Ok(Some(FrameHeader {
            digest,
            executable,
            len,
        }))
    }

    /// The current frame's whole content (the caller checked its length).
    pub fn read_content(&mut self) -> io::Result<Vec<u8>> {
        let len = usize::try_from(self.pending).map_err(io::Error::other)?;
        let mut buf = vec![0u8; len];
        self.inner.read_exact(&mut buf)?;
        self.pending = 0;
        Ok(buf)
    }

    /// Drops the rest of the current frame's content without buffering it.
    pub fn skip_content(&mut self) -> io::Result<()> {
        if self.pending == 0 {
            return Ok(());
        }
        let want = self.pending;
        let skipped = io::copy(&mut (&mut self.inner).take(want), &mut io::sink())?;
        if skipped != want {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.pending = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemberWriter;

    #[test]
    fn reads_back_what_the_member_writer_wrote() {
        let mut w = MemberWriter::new(Vec::new(), 6);
        w.frame(&[1; 64], false, b"hello").expect("frame");
        w.frame(&[2; 64], true, b"").expect("frame");
        w.frame(&[3; 64], false, b"world!").expect("frame");
        let gz = w.finish().expect("finish");
        let mut r = FrameReader::new(flate2::read::GzDecoder::new(gz.as_slice()));
        let a = r.next_header().expect("read").expect("first");
        assert_eq!((a.digest, a.executable, a.len), ([1; 64], false, 5));
        assert_eq!(r.read_content().expect("content"), b"hello");
        let b = r.next_header().expect("read").expect("second");
        assert_eq!((b.digest, b.executable, b.len), ([2; 64], true, 0));
        // The third is skipped unread by asking for the next header.
        let c = r.next_header().expect("read").expect("third");
        assert_eq!(c.len, 6);
        assert!(r.next_header().expect("read").is_none());
    }

    #[test]
    fn a_cut_member_is_an_error() {
        let mut w = MemberWriter::new(Vec::new(), 6);
        w.frame(&[1; 64], false, b"hello").expect("frame");
        let gz = w.finish().expect("finish");
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(gz.as_slice())
            .read_to_end(&mut raw)
            .expect("gunzip");
        let mut r = FrameReader::new(&raw[..raw.len() - 2]);
        r.next_header().expect("read").expect("header");
        assert!(r.read_content().is_err());
        let mut r = FrameReader::new(&raw[..30]);
        assert!(r.next_header().is_err());
        let mut bad = raw.clone();
        bad[68] = 7;
        assert!(FrameReader::new(bad.as_slice()).next_header().is_err());
    }
}
