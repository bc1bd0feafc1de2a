//! The crate's single error type.
//!
//! Invariant: every message names *where* the problem is (a key path such as
//! `uplinks.corp.url`, or an environment variable such as `PNPR_UPLINK`) and *why*,
//! but never echoes a value that could be a credential (tokens, header values, URL
//! userinfo, the `secret:`).

use std::path::PathBuf;

/// Why a config could not be loaded. Display is meant for operators at startup.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The text is not well-formed YAML (or uses a YAML feature we refuse, such as tags).
    #[error("config is not valid YAML: {message}")]
    Yaml { message: String },
    /// A key has a value we cannot accept; `key` is the dotted path, e.g.
    /// `packages.'@internal/*'.proxy`.
    #[error("{key}: {reason}")]
    Invalid { key: String, reason: String },
    /// A `PNPR_*` override variable has a value we cannot accept.
    #[error("{var}: {reason}")]
    Env { var: String, reason: String },
}

impl ConfigError {
    pub(crate) fn invalid(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid {
            key: key.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn env(var: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Env {
            var: var.into(),
            reason: reason.into(),
        }
    }
}
