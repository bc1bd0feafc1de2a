//! Server disk per tarball byte (issue 13, RFC 0008 §4): what a pnpr data
//! directory holds for the packages it served, against the bytes of those
//! packages' tarballs.
//!
//! The tarballs' bytes come from the upstream corpus (`--upstream-storage`:
//! every `.tgz` hashed once), matched by SHA-512 against every package the
//! server holds in any form: a CAS object or a file-store index row. Disk
//! figures are exact (file lengths), unlike the timings around them.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use base64::Engine as _;
use sha2::{Digest, Sha512};

/// Bytes of one pnpr data directory's package stores.
#[derive(Debug, Clone, Default)]
pub(crate) struct DiskUsage {
    /// Tarball CAS (`.pnpr-cache/tarballs`).
    pub(crate) tarballs: u64,
    /// Raw unpacked files (`.pnpr-cache/files/files`; gone since §4).
    pub(crate) files: u64,
    /// Package members and older per-file frames (`files/frames`).
    pub(crate) frames: u64,
    /// The file store's index (`files/index.sqlite*`).
    pub(crate) index: u64,
    /// Tarball bytes of the packages held, and how many were matched.
    pub(crate) tarball_bytes: u64,
    pub(crate) packages: usize,
    /// Packages held whose tarball the corpus does not have.
    pub(crate) unmatched: usize,
}

impl DiskUsage {
    pub(crate) fn total(&self) -> u64 {
        self.tarballs + self.files + self.frames + self.index
    }

    pub(crate) fn ratio(&self) -> f64 {
        if self.tarball_bytes == 0 {
            return 0.0;
        }
        self.total() as f64 / self.tarball_bytes as f64
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "tarballs": self.tarballs, "files": self.files, "frames": self.frames,
            "index": self.index, "total": self.total(), "tarball_bytes": self.tarball_bytes,
            "packages": self.packages, "unmatched": self.unmatched, "ratio": self.ratio(),
        })
    }
}

/// SHA-512 (hex) → length of every tarball under `storage`.
pub(crate) fn corpus_sizes(storage: &Path) -> HashMap<String, u64> {
    let mut out = HashMap::new();
    let mut stack = vec![storage.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "tgz") {
                if let Ok(bytes) = std::fs::read(&p) {
                    out.insert(hex_sha512(&bytes), bytes.len() as u64);
                }
            }
        }
    }
    out
}

fn hex_sha512(bytes: &[u8]) -> String {
    let digest = Sha512::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// What `data_dir` holds, against the corpus tarballs of what it holds.
pub(crate) fn measure(data_dir: &Path, sizes: &HashMap<String, u64>) -> DiskUsage {
    let cache = data_dir.join(".pnpr-cache");
    let store = cache.join("files");
    let mut u = DiskUsage {
        tarballs: bytes_under(&cache.join("tarballs")),
        files: bytes_under(&store.join("files")),
        frames: bytes_under(&store.join("frames")),
        ..DiskUsage::default()
    };
    if let Ok(rd) = std::fs::read_dir(&store) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("index.sqlite") {
                u.index += e.metadata().map_or(0, |m| m.len());
            }
        }
    }
    let mut held: HashSet<String> = cas_sha512(&cache.join("tarballs"));
    if let Ok(fs) = pnpr_cafs::FileStore::open_with_cache(&store, 0) {
        for integrity in fs.index_keys().unwrap_or_default() {
            if let Some(hex) = sri_sha512_hex(&integrity) {
                held.insert(hex);
            }
        }
    }
    for hex in held {
        match sizes.get(&hex) {
            Some(len) => {
                u.tarball_bytes += len;
                u.packages += 1;
            }
            None => u.unmatched += 1,
        }
    }
    u
}

/// `sha512-<base64>` → hex.
fn sri_sha512_hex(integrity: &str) -> Option<String> {
    let b64 = integrity
        .split_whitespace()
        .next()?
        .strip_prefix("sha512-")?;
    let raw = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    Some(raw.iter().map(|b| format!("{b:02x}")).collect())
}

/// SHA-512 hex of every CAS object (`<ns>/sha512/<hex[0..2]>/<hex[2..]>`).
fn cas_sha512(root: &Path) -> HashSet<String> {
    let mut out = HashSet::new();
    let Ok(namespaces) = std::fs::read_dir(root) else {
        return out;
    };
    for ns in namespaces.flatten() {
        let Ok(fans) = std::fs::read_dir(ns.path().join("sha512")) else {
            continue;
        };
        for fan in fans.flatten() {
            let Ok(objects) = std::fs::read_dir(fan.path()) else {
                continue;
            };
            for o in objects.flatten() {
                out.insert(format!(
                    "{}{}",
                    fan.file_name().to_string_lossy(),
                    o.file_name().to_string_lossy()
                ));
            }
        }
    }
    out
}

fn bytes_under(dir: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| {
            let p = e.path();
            match e.metadata() {
                Ok(m) if m.is_dir() => {
                    if p.file_name().is_some_and(|n| n == "tmp") {
                        0
                    } else {
                        bytes_under(&p)
                    }
                }
                Ok(m) => m.len(),
                Err(_) => 0,
            }
        })
        .sum()
}

/// The table of every measured target.
pub(crate) fn print(rows: &[(&str, &DiskUsage)]) {
    if rows.is_empty() {
        return;
    }
    println!("\nServer disk after the population install (cold server), MB:\n");
    println!("| target | tarballs | raw files | members + frames | index | total | tarball bytes (packages) | server disk / tarball bytes |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    let mb = |b: u64| b as f64 / 1e6;
    for (name, u) in rows {
        let unmatched = if u.unmatched > 0 {
            format!(", {} not in the corpus", u.unmatched)
        } else {
            String::new()
        };
        println!(
            "| {name} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} ({}{unmatched}) | {:.3}x |",
            mb(u.tarballs),
            mb(u.files),
            mb(u.frames),
            mb(u.index),
            mb(u.total()),
            mb(u.tarball_bytes),
            u.packages,
            u.ratio()
        );
    }
}
