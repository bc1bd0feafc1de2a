//! `OfflineRegistry`: Verdaccio 6 (tests/.deps) on 127.0.0.1 serving a copy
//! of the frozen real-world storage with no uplink.
//!
//! Invariant guarded: the corpus storage is never written to (tarballs are
//! hardlinked, everything else copied into a private folder), nothing beyond
//! loopback is ever asked: the instance has `uplinks: {}` and the copied
//! packuments lose `_distfiles` (Verdaccio fetches a tarball it lacks from
//! the URL recorded there even without an uplink, so a platform package the
//! corpus build never downloaded would be fetched from the network; without
//! it Verdaccio answers 404), and the process is killed before its folder is
//! deleted.

use std::path::Path;

use tempfile::TempDir;

use crate::proc::Server;

const CONFIG: &str =
    "storage: ./storage\nauth:\n  htpasswd:\n    file: ./htpasswd\n    max_users: -1\n\
uplinks: {}\nweb:\n  enable: false\nserver:\n  keepAliveTimeout: 60\n\
packages:\n  '**':\n    access: $all\n    publish: $authenticated\n\
log:\n  type: stdout\n  format: pretty\n  level: warn\n";

/// A running offline Verdaccio. Killed on drop.
#[derive(Debug)]
pub struct OfflineRegistry {
    /// `http://127.0.0.1:PORT/`.
    pub url: String,
    server: Server,
    // Dropped after `server` (field order).
    _dir: TempDir,
}

impl OfflineRegistry {
    /// Serves a private copy of `storage` (a Verdaccio storage folder).
    pub fn start(storage: &Path) -> Result<OfflineRegistry, String> {
        if !storage.is_dir() {
            return Err(format!(
                "{} is missing: run tests/build-real-world.sh (tests/setup.sh does)",
                storage.display()
            ));
        }
        let dir = tempfile::Builder::new()
            .prefix("pnpr-parity-verdaccio-")
            .tempdir()
            .map_err(|e| format!("temp dir: {e}"))?;
        link_tree(storage, &dir.path().join("storage"))
            .map_err(|e| format!("copying {}: {e}", storage.display()))?;
        let (server, port) = crate::verdaccio::spawn(dir.path(), CONFIG)
            .map_err(|e| format!("offline Verdaccio did not start:\n{e}"))?;
        Ok(OfflineRegistry {
            url: format!("http://127.0.0.1:{port}/"),
            server,
            _dir: dir,
        })
    }

    /// Everything Verdaccio printed so far.
    pub fn logs(&self) -> String {
        self.server.logs()
    }
}

/// Recreates `from` under `to`: tarballs hardlinked (copied across file
/// systems), packuments copied without `_distfiles`, everything else copied,
/// so Verdaccio can never alter the corpus nor leave loopback.
fn link_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let src = entry.path();
        let dst = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            link_tree(&src, &dst)?;
        } else {
            let tarball = src.extension().is_some_and(|e| e == "tgz");
            if entry.file_name() == "package.json" {
                copy_without_distfiles(&src, &dst)?;
            } else if !tarball || std::fs::hard_link(&src, &dst).is_err() {
                std::fs::copy(&src, &dst)?;
            }
        }
    }
    Ok(())
}

/// Copies a Verdaccio packument, dropping `_distfiles` (the upstream URLs
/// Verdaccio would fetch a missing tarball from).
fn copy_without_distfiles(src: &Path, dst: &Path) -> std::io::Result<()> {
    let bytes = std::fs::read(src)?;
    let mut doc: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| std::io::Error::other(format!("{}: {e}", src.display())))?;
    if let Some(obj) = doc.as_object_mut() {
        obj.remove("_distfiles");
    }
    let out = serde_json::to_vec(&doc).map_err(std::io::Error::other)?;
    std::fs::write(dst, out)
}
