//! The per-package file index: what one unpacked tarball consists of.
//!
//! Invariant: `files` keys are normalised in-package paths (no leading folder,
//! no `.`/`..`/empty components) and every digest names a file present in the
//! package's stored member; `mode` is exactly 0o644 or 0o755 so
//! executability is unambiguous.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::manifest;

/// One regular file of a package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Lowercase hex SHA-512 of the content (128 chars): the store address.
    #[serde(rename = "digest")]
    pub digest_hex: String,
    /// 0o644 (420) or 0o755 (493): executable iff the tar mode had any x bit.
    pub mode: u32,
    /// Content length in bytes.
    pub size: u64,
}

impl FileEntry {
    /// Whether clients must materialise this file as executable.
    pub fn is_executable(&self) -> bool {
        self.mode & 0o111 != 0
    }
}

/// Everything the store knows about one package tarball.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PackageIndex {
    /// In-package path → file.
    pub files: BTreeMap<String, FileEntry>,
    /// The whole parsed `package.json`; `{}` when the tarball had none.
    pub manifest: Value,
    /// pnpm's `requiresBuild` for this package.
    pub requires_build: bool,
    /// When the files were hashed (ms since the Unix epoch); pnpm's per-file
    /// `checkedAt`, kept as a float because pnpm encodes it as float64.
    #[serde(rename = "checkedAt")]
    pub checked_at_ms: f64,
}

impl PackageIndex {
    /// The manifest subset pnpm keeps in its own index rows (`version` first,
    /// then the dependency/platform/bin fields it needs to link, then the
    /// lifecycle scripts), or `None` when pnpm omits the manifest.
    pub fn index_manifest(&self) -> Option<Value> {
        manifest::bundled_manifest(&self.manifest)
    }

    /// The row as the wire owner encodes it for pnpm's store index (and
    /// plans its frames from).
    pub fn index_value(&self) -> pnpr_protocol::IndexValue {
        pnpr_protocol::IndexValue {
            requires_build: Some(self.requires_build),
            manifest: self.index_manifest(),
            algo: "sha512".to_string(),
            files: self
                .files
                .iter()
                .map(|(path, f)| {
                    (
                        path.clone(),
                        pnpr_protocol::FileMeta {
                            digest_hex: f.digest_hex.clone(),
                            mode: f.mode,
                            size: f.size,
                            checked_at: Some(self.checked_at_ms),
                        },
                    )
                })
                .collect(),
        }
    }

    /// Number of files and their total size in bytes.
    pub fn totals(&self) -> (usize, u64) {
        let bytes = self.files.values().map(|f| f.size).sum();
        (self.files.len(), bytes)
    }
}
