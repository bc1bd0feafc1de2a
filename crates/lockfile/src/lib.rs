//! Serde model of the pnpm lockfile v9 on-disk shape (spec §3), serialised as JSON.
//!
//! Invariant guarded here: every map is a `BTreeMap` (so keys come out sorted, as
//! pnpm writes them) and every optional section or field that is absent or empty is
//! omitted, so `serde_json::to_value(&lockfile)` equals pnpm's `pnpm-lock.yaml`
//! converted to JSON.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The only lockfile major this crate understands.
pub const LOCKFILE_VERSION: &str = "9.0";

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LockfileError {
    /// The JSON could not be parsed into the v9 shape.
    #[error("invalid lockfile JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// `lockfileVersion` has a major other than 9.
    #[error("unsupported lockfile version {0:?}")]
    UnsupportedVersion(String),
}

/// Name → `{specifier, version}` map of one dependency group of an importer.
pub type ImporterDeps = BTreeMap<String, ImporterDep>;

/// Top-level lockfile document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Lockfile {
    pub lockfile_version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<Settings>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub overrides: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package_extensions_checksum: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignored_optional_dependencies: Vec<String>,
    #[serde(default)]
    pub importers: BTreeMap<String, Importer>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub packages: BTreeMap<String, PackageInfo>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub snapshots: BTreeMap<String, Snapshot>,
}

impl Default for Lockfile {
    fn default() -> Self {
        Self {
            lockfile_version: LOCKFILE_VERSION.to_string(),
            settings: Some(Settings::default()),
            overrides: BTreeMap::new(),
            package_extensions_checksum: None,
            ignored_optional_dependencies: Vec::new(),
            importers: BTreeMap::new(),
            packages: BTreeMap::new(),
            snapshots: BTreeMap::new(),
        }
    }
}

impl Lockfile {
    /// Parses a JSON lockfile and checks that its major version is 9.
    pub fn from_json(bytes: &[u8]) -> Result<Self, LockfileError> {
        let lf: Lockfile = serde_json::from_slice(bytes)?;
        let major = lf.lockfile_version.split('.').next().unwrap_or("");
        if major != "9" {
            return Err(LockfileError::UnsupportedVersion(lf.lockfile_version));
        }
        Ok(lf)
    }

    /// Serialises to compact JSON with sorted keys.
    pub fn to_json(&self) -> Result<Vec<u8>, LockfileError> {
        Ok(serde_json::to_vec(self)?)
    }
}

/// `settings:` block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Settings {
    pub auto_install_peers: bool,
    pub exclude_links_from_lockfile: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedupe_peers: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inject_workspace_packages: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peers_suffix_max_length: Option<u64>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            auto_install_peers: true,
            exclude_links_from_lockfile: false,
            dedupe_peers: None,
            inject_workspace_packages: None,
            peers_suffix_max_length: None,
        }
    }
}

/// One importer (workspace project) entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Importer {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub dependencies: ImporterDeps,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub dev_dependencies: ImporterDeps,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub optional_dependencies: ImporterDeps,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dependencies_meta: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish_directory: Option<String>,
}

/// `{specifier, version}` of a direct dependency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImporterDep {
    pub specifier: String,
    pub version: String,
}

/// How a package's tarball is found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolution {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integrity: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tarball: Option<String>,
}

/// `peerDependenciesMeta` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerMeta {
    #[serde(default)]
    pub optional: bool,
}

/// A `packages:` entry (keyed `name@version`, no peer suffix).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PackageInfo {
    pub resolution: Resolution,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub engines: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cpu: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub os: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub libc: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deprecated: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub has_bin: Option<bool>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub peer_dependencies: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub peer_dependencies_meta: BTreeMap<String, PeerMeta>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bundled_dependencies: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prepare: Option<bool>,
}

/// A `snapshots:` entry (keyed `name@version(peer@ver)…`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub dependencies: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub optional_dependencies: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transitive_peer_dependencies: Vec<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub optional: bool,
}

#[cfg(test)]
mod tests;
