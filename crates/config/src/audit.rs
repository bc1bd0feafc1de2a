//! `audit:` (pnpr's own key): which uplink answers `npm audit` / `pnpm
//! audit`, how long identical answers are reused, and how large an audit
//! request may be.
//!
//! Invariant guarded: a named audit uplink exists (checked against
//! `uplinks:` here, so a typo stops startup instead of silently disabling
//! audits), and the bounds are positive.

use std::time::Duration;

use serde_yaml_ng::Value;

use crate::error::ConfigError;
use crate::path::child;
use crate::units::{duration_value, size_value};
use crate::walk::{entries, kind, scalar_string};

/// Default reuse time of an identical audit answer.
pub const DEFAULT_AUDIT_CACHE_TTL: Duration = Duration::from_secs(300);

/// Default bound on an audit request body (decoded).
pub const DEFAULT_AUDIT_MAX_BODY: u64 = 8 * 1024 * 1024;

/// Which uplink audits.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum AuditUplink {
    /// The shared mirror's first uplink (the first without `access:`).
    #[default]
    FirstMirror,
    /// This uplink.
    Named(String),
    /// `uplink: false`: audits are answered with an error.
    Disabled,
}

/// `audit:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditConfig {
    pub uplink: AuditUplink,
    /// `cache_ttl`: identical requests within this time are answered from
    /// the cache (`0` turns the cache off).
    pub cache_ttl: Duration,
    /// `max_body`: largest audit request, after gzip decoding.
    pub max_body: u64,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            uplink: AuditUplink::default(),
            cache_ttl: DEFAULT_AUDIT_CACHE_TTL,
            max_body: DEFAULT_AUDIT_MAX_BODY,
        }
    }
}

/// Parses `audit:` given the configured uplink names.
pub(crate) fn audit(v: &Value, uplinks: &[String]) -> Result<AuditConfig, ConfigError> {
    let mut out = AuditConfig::default();
    for (key, node) in entries(v, "audit")? {
        let path = child("audit", &key);
        match key.as_str() {
            "uplink" => out.uplink = uplink(node, &path, uplinks)?,
            "cache_ttl" => {
                out.cache_ttl = duration_value(node).map_err(|r| ConfigError::invalid(path, r))?
            }
            "max_body" => {
                out.max_body = size_value(node)
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| ConfigError::invalid(path, "must be a positive size"))?
            }
            _ => {
                return Err(ConfigError::invalid(
                    path,
                    "unknown key in audit (expected uplink, cache_ttl or max_body)",
                ))
            }
        }
    }
    Ok(out)
}

fn uplink(node: &Value, path: &str, uplinks: &[String]) -> Result<AuditUplink, ConfigError> {
    if matches!(node, Value::Bool(false)) {
        return Ok(AuditUplink::Disabled);
    }
    let name = match node {
        Value::Bool(_) | Value::Null => None,
        v => scalar_string(v),
    }
    .ok_or_else(|| {
        ConfigError::invalid(
            path,
            format!("expected an uplink name or false, found {}", kind(node)),
        )
    })?;
    if !uplinks.contains(&name) {
        return Err(ConfigError::invalid(
            path,
            format!("'{name}' is not an uplink under uplinks:"),
        ));
    }
    Ok(AuditUplink::Named(name))
}
