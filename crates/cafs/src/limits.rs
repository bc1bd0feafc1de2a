//! Resource limits applied while unpacking one tarball.
//!
//! Invariant: a hostile tarball (decompression bomb, millions of entries, one
//! giant file, a giant `package.json`) is stopped by these bounds before it can
//! exhaust disk or memory.

/// Unpacking bounds for one tarball. `Default` gives the production values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Sum of all regular-file sizes (duplicates counted each time).
    pub max_unpacked_bytes: u64,
    /// Tar entries of any kind (files, directories, links).
    pub max_entries: u64,
    /// Decompressed ÷ compressed bytes; only enforced once more than
    /// [`Limits::RATIO_GRACE_BYTES`] were decompressed, because tiny
    /// all-whitespace files legitimately compress extremely well.
    pub max_ratio: u64,
    /// Size of a single file.
    pub max_file_bytes: u64,
    /// Size of the root `package.json`, which is held in memory whole to be
    /// parsed; a larger one refuses the tarball
    /// ([`crate::CafsError::ManifestTooLarge`]). Far below
    /// [`Limits::max_file_bytes`] because every concurrent unpack may hold
    /// one, and its parsed form costs a multiple of its size.
    pub max_manifest_bytes: u64,
}

impl Limits {
    /// Decompressed bytes below which the ratio is not checked.
    pub const RATIO_GRACE_BYTES: u64 = 10 * 1024 * 1024;

    /// Cap on the raw decompressed tar stream (headers, padding and PAX data
    /// included): the file bytes plus 1 KiB of framing per entry and 1 MiB
    /// for end-of-archive record padding. This is what stops a bomb hidden in
    /// metadata the tar reader buffers itself (long names, PAX records).
    pub(crate) fn max_stream_bytes(&self) -> u64 {
        self.max_unpacked_bytes
            .saturating_add(self.max_entries.saturating_mul(1024))
            .saturating_add(1024 * 1024)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_unpacked_bytes: 1024 * 1024 * 1024,
            max_entries: 100_000,
            max_ratio: 200,
            max_file_bytes: 512 * 1024 * 1024,
            // The largest manifests published are well under 1 MiB.
            max_manifest_bytes: 4 * 1024 * 1024,
        }
    }
}
