//! Tarball builders for the integration tests: raw headers so that hostile
//! entries (absolute paths, `..`, devices) can be written, which the `tar`
//! crate's safe builder API would refuse.

#![allow(dead_code)]

use std::io::Write;

use sha2::{Digest, Sha512};
use tar::{EntryType, Header};

/// A tar archive under construction.
pub struct TarBuilder {
    builder: tar::Builder<Vec<u8>>,
}

impl Default for TarBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl TarBuilder {
    pub fn new() -> Self {
        Self {
            builder: tar::Builder::new(Vec::new()),
        }
    }

    /// A regular file at raw archive path `name` (<= 100 bytes).
    pub fn file(self, name: &str, mode: u32, data: &[u8]) -> Self {
        self.raw(name.as_bytes(), EntryType::Regular, mode, data, None)
    }

    pub fn dir(self, name: &str) -> Self {
        self.raw(name.as_bytes(), EntryType::Directory, 0o755, b"", None)
    }

    pub fn symlink(self, name: &str, target: &str) -> Self {
        self.raw(
            name.as_bytes(),
            EntryType::Symlink,
            0o777,
            b"",
            Some(target.as_bytes()),
        )
    }

    pub fn hardlink(self, name: &str, target: &str) -> Self {
        self.raw(
            name.as_bytes(),
            EntryType::Link,
            0o644,
            b"",
            Some(target.as_bytes()),
        )
    }

    /// An entry with arbitrary name bytes and type.
    pub fn raw(
        mut self,
        name: &[u8],
        kind: EntryType,
        mode: u32,
        data: &[u8],
        link: Option<&[u8]>,
    ) -> Self {
        let mut header = Header::new_gnu();
        header.as_old_mut().name[..name.len()].copy_from_slice(name);
        if let Some(link) = link {
            header.as_old_mut().linkname[..link.len()].copy_from_slice(link);
        }
        header.set_size(data.len() as u64);
        header.set_mode(mode);
        header.set_entry_type(kind);
        header.set_mtime(0);
        header.set_cksum();
        self.builder.append(&header, data).expect("append entry");
        self
    }

    /// A PAX extended header whose `path` record is `path` (any bytes),
    /// followed by a regular file it applies to.
    pub fn pax_file(mut self, path: &[u8], data: &[u8]) -> Self {
        let mut record = Vec::new();
        let body_len = b" path=".len() + path.len() + 1;
        // The length prefix counts itself.
        let mut total = body_len + 1;
        while total != body_len + total.to_string().len() {
            total = body_len + total.to_string().len();
        }
        record.extend_from_slice(total.to_string().as_bytes());
        record.extend_from_slice(b" path=");
        record.extend_from_slice(path);
        record.push(b'\n');
        self = self.raw(b"PaxHeader", EntryType::XHeader, 0o644, &record, None);
        self.file("package/placeholder-name", 0o644, data)
    }

    pub fn tar_bytes(self) -> Vec<u8> {
        self.builder.into_inner().expect("finish tar")
    }

    pub fn tgz(self) -> Vec<u8> {
        gzip(&self.tar_bytes())
    }
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).expect("gzip");
    enc.finish().expect("gzip finish")
}

/// `sha512-<base64>` of the tarball bytes, as registries publish it.
pub fn sri(bytes: &[u8]) -> String {
    ssri::IntegrityOpts::new()
        .algorithm(ssri::Algorithm::Sha512)
        .chain(bytes)
        .result()
        .to_string()
}

pub fn sha512_hex(bytes: &[u8]) -> String {
    hex::encode(Sha512::digest(bytes))
}
