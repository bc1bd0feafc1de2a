//! `OfflineRegistry`: Verdaccio 6 (tests/.deps) on 127.0.0.1 serving a copy
//! of the frozen real-world storage with no uplink.
//!
//! Invariant guarded: the corpus storage is never written to (tarballs are
//! hardlinked, everything else copied into a private folder), the instance
//! has `uplinks: {}` so nothing beyond loopback is ever asked, and the
//! process is killed before its folder is deleted.

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
/// systems), everything else copied, so Verdaccio can never alter the corpus.
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
            if !tarball || std::fs::hard_link(&src, &dst).is_err() {
                std::fs::copy(&src, &dst)?;
            }
        }
    }
    Ok(())
}
