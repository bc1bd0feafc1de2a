//! `Verdaccio`: Verdaccio 6.10.4 (from `tests/.deps`) on 127.0.0.1, either
//! as the peer proxy of one upstream (the thing pnpr is compared to) or as an
//! offline registry serving a prebuilt storage folder (the large corpus).
//!
//! Invariant guarded: each proxy instance starts with its own empty storage
//! (a "cold server" really is cold) and has exactly one loopback uplink; an
//! offline instance has no uplink and serves a private copy of the source
//! storage, which is never written to; every instance is killed on drop
//! before its temporary folder is deleted.

use std::path::{Path, PathBuf};

use pnpr_e2e::proc::Server;

#[cfg(test)]
mod tests;

/// A running Verdaccio proxy.
pub struct Verdaccio {
    pub url: String,
    pub port: u16,
    server: Server,
    dir: tempfile::TempDir,
}

impl Verdaccio {
    /// Starts Verdaccio proxying `upstream` (a loopback URL ending in `/`).
    pub fn start(upstream: &str) -> Result<Verdaccio, String> {
        if !upstream.starts_with("http://127.0.0.1:") {
            return Err(format!("refusing non-loopback upstream {upstream}"));
        }
        let dir = temp_dir()?;
        std::fs::create_dir_all(dir.path().join("storage")).map_err(|e| e.to_string())?;
        // Same uplink tuning as the reference launcher: keep-alive, 40
        // sockets, so Verdaccio is not handicapped by its defaults.
        let config = format!(
            "storage: ./storage\nauth:\n  htpasswd:\n    file: ./htpasswd\n    max_users: -1\n\
             uplinks:\n  upstream:\n    url: {upstream}\n    timeout: 30s\n    maxage: 1h\n    max_fails: 100\n    fail_timeout: 10s\n\
             \x20   agent_options:\n      keepAlive: true\n      maxSockets: 40\n      maxFreeSockets: 10\n\
             web:\n  enable: false\nserver:\n  keepAliveTimeout: 60\n\
             packages:\n  '**':\n    access: $all\n    publish: $authenticated\n    proxy: upstream\n\
             log:\n  type: stdout\n  format: pretty\n  level: warn\n"
        );
        Self::spawn(dir, &config)
    }

    /// Starts Verdaccio offline (no uplink) serving a copy of `source`, a
    /// Verdaccio storage folder. The copy hardlinks tarballs (never
    /// rewritten by Verdaccio) and copies everything else, so `source` stays
    /// untouched whatever Verdaccio writes. Packuments are pruned to the
    /// versions whose tarball is stored (see [`prune_packument`]).
    pub fn start_offline(source: &Path) -> Result<Verdaccio, String> {
        if !source.is_dir() {
            return Err(format!("{} is not a storage folder", source.display()));
        }
        let dir = temp_dir()?;
        copy_storage(source, &dir.path().join("storage"))
            .map_err(|e| format!("copying {}: {e}", source.display()))?;
        let config =
            "storage: ./storage\nauth:\n  htpasswd:\n    file: ./htpasswd\n    max_users: -1\n\
             uplinks: {}\n\
             web:\n  enable: false\nserver:\n  keepAliveTimeout: 60\n\
             packages:\n  '**':\n    access: $all\n    publish: $authenticated\n\
             log:\n  type: stdout\n  format: pretty\n  level: warn\n";
        Self::spawn(dir, config)
    }

    fn spawn(dir: tempfile::TempDir, config: &str) -> Result<Verdaccio, String> {
        let (server, port) = pnpr_e2e::verdaccio::spawn(dir.path(), config)?;
        Ok(Verdaccio {
            url: format!("http://127.0.0.1:{port}/"),
            port,
            server,
            dir,
        })
    }

    /// The storage folder (empty until something was proxied).
    pub fn storage(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    pub fn pid(&self) -> u32 {
        self.server.pid()
    }
}

fn temp_dir() -> Result<tempfile::TempDir, String> {
    tempfile::Builder::new()
        .prefix("pnpr-bench-verdaccio-")
        .tempdir()
        .map_err(|e| format!("temp dir: {e}"))
}

/// Recreates `from` under `to`: `.tgz` files hardlinked (falling back to a
/// copy across file systems), `package.json` packuments pruned by
/// [`prune_packument`], all other files copied. A package folder without
/// any tarball (metadata the corpus build only looked at: other platforms'
/// optional binaries, optional peers) is left out, so it answers 404 like
/// an unknown package instead of advertising versions that would 500.
pub(crate) fn copy_storage(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let src = entry.path();
        let dst = to.join(entry.file_name());
        let kind = entry.file_type()?;
        if kind.is_dir() {
            if src.join("package.json").is_file() && !has_tarball(&src)? {
                continue;
            }
            copy_storage(&src, &dst)?;
        } else if kind.is_file() && entry.file_name() == "package.json" {
            let text = std::fs::read_to_string(&src)?;
            let pruned = prune_packument(&text, |file| from.join(file).is_file());
            std::fs::write(&dst, pruned.as_deref().unwrap_or(&text))?;
        } else if kind.is_file() {
            let is_tarball = src.extension().is_some_and(|e| e == "tgz");
            if !is_tarball || std::fs::hard_link(&src, &dst).is_err() {
                std::fs::copy(&src, &dst)?;
            }
        }
    }
    Ok(())
}

fn has_tarball(dir: &Path) -> std::io::Result<bool> {
    for entry in std::fs::read_dir(dir)? {
        if entry?.path().extension().is_some_and(|e| e == "tgz") {
            return Ok(true);
        }
    }
    Ok(false)
}

/// A corpus storage holds full packuments but only the tarballs the corpus
/// build installed; offline, any other version would resolve and then fail
/// with a 500 on its tarball. Keeps only versions whose tarball file
/// (`has_file(basename of dist.tarball)`) exists and repoints dist-tags at
/// the highest kept version, and drops `_distfiles`. Returns `None` (serve as is) when the text is
/// not a packument or no tarball at all is stored.
pub(crate) fn prune_packument(text: &str, has_file: impl Fn(&str) -> bool) -> Option<String> {
    let mut doc: serde_json::Value = serde_json::from_str(text).ok()?;
    // The upstream URLs Verdaccio would fetch a missing tarball from even
    // without an uplink: offline means nothing beyond loopback.
    doc.as_object_mut()?.remove("_distfiles");
    let versions = doc.get_mut("versions")?.as_object_mut()?;
    let stored = |meta: &serde_json::Value| {
        meta.pointer("/dist/tarball")
            .and_then(|t| t.as_str())
            .and_then(|t| t.rsplit('/').next())
            .is_some_and(&has_file)
    };
    if !versions.values().any(stored) {
        return None;
    }
    versions.retain(|_, meta| stored(meta));
    let highest = versions
        .keys()
        .filter_map(|v| nodejs_semver::Version::parse(v).ok())
        .filter(|v| v.pre_release.is_empty())
        .max()
        .map(|v| v.to_string());
    let kept: Vec<String> = versions.keys().cloned().collect();
    if let Some(tags) = doc.get_mut("dist-tags").and_then(|t| t.as_object_mut()) {
        tags.retain(|_, v| v.as_str().is_some_and(|v| kept.iter().any(|k| k == v)));
        if !tags.contains_key("latest") {
            if let Some(h) = highest {
                tags.insert("latest".to_string(), serde_json::Value::String(h));
            }
        }
    }
    serde_json::to_string(&doc).ok()
}
