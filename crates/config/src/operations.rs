//! Operator-facing keys (pnpr's own): `cache_max_size` (the disk budget of
//! the disposable caches), `metrics:` (who may scrape `/-/metrics`) and
//! `status:` (who may read `/-/pnpr/status`).
//!
//! Invariants guarded: the budget is a positive size; access lists are
//! strict (an unknown key or `$`-token is an error, never a silently wider
//! audience), and the status page has no anonymous or "everyone" form: it
//! names users and groups only.

use serde_yaml_ng::Value;

use crate::error::ConfigError;
use crate::path::child;
use crate::units::size_value;
use crate::walk::{entries, token_list};

/// The token that admits any caller connected from a loopback address.
pub const LOOPBACK: &str = "$loopback";

/// Tokens `metrics.access` accepts besides user and group names.
const METRICS_TOKENS: &[&str] = &[LOOPBACK, "$all", "$authenticated"];

/// `cache_max_size`, `metrics:` and `status:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperationsConfig {
    /// Disk budget in bytes over the tarball CAS, the unpacked-file store and
    /// the pre-compressed frames; `None` = unbounded.
    pub cache_max_size: Option<u64>,
    /// Who may scrape `/-/metrics`: `$loopback`, `$all`, `$authenticated`,
    /// user and group names. Default `[$loopback]`.
    pub metrics_access: Vec<String>,
    /// Who may read `/-/pnpr/status`: user and group names; `None` means the
    /// `ownership.admins` list.
    pub status_access: Option<Vec<String>>,
}

impl Default for OperationsConfig {
    fn default() -> Self {
        Self {
            cache_max_size: None,
            metrics_access: vec![LOOPBACK.to_string()],
            status_access: None,
        }
    }
}

/// The three top-level nodes, any of them absent.
pub(crate) struct OperationsNodes<'a> {
    pub cache_max_size: Option<&'a Value>,
    pub metrics: Option<&'a Value>,
    pub status: Option<&'a Value>,
}

pub(crate) fn operations(nodes: OperationsNodes<'_>) -> Result<OperationsConfig, ConfigError> {
    let mut out = OperationsConfig::default();
    if let Some(v) = nodes.cache_max_size.filter(|v| !v.is_null()) {
        out.cache_max_size = Some(size_value(v).ok().filter(|n| *n > 0).ok_or_else(|| {
            ConfigError::invalid("cache_max_size", "must be a positive size (e.g. 20gb)")
        })?);
    }
    if let Some(v) = nodes.metrics.filter(|v| !v.is_null()) {
        out.metrics_access = access(v, "metrics", METRICS_TOKENS)?.unwrap_or(out.metrics_access);
    }
    if let Some(v) = nodes.status.filter(|v| !v.is_null()) {
        out.status_access = access(v, "status", &[])?;
    }
    Ok(out)
}

/// `<section>: {access: [...]}` with only `allowed` `$`-tokens.
fn access(v: &Value, section: &str, allowed: &[&str]) -> Result<Option<Vec<String>>, ConfigError> {
    let mut out = None;
    for (key, node) in entries(v, section)? {
        let path = child(section, &key);
        if key != "access" {
            return Err(ConfigError::invalid(
                path,
                format!("unknown key in {section} (expected access)"),
            ));
        }
        let tokens = token_list(node, &path)?;
        if let Some(t) = tokens
            .iter()
            .find(|t| t.starts_with('$') && !allowed.contains(&t.as_str()))
        {
            let expected = if allowed.is_empty() {
                "user and group names only".to_string()
            } else {
                format!("{} or user and group names", allowed.join(", "))
            };
            return Err(ConfigError::invalid(
                path,
                format!("'{t}' is not allowed here ({expected})"),
            ));
        }
        out = Some(tokens);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<OperationsConfig, ConfigError> {
        let v: Value = serde_yaml_ng::from_str(yaml).unwrap();
        operations(OperationsNodes {
            cache_max_size: v.get("cache_max_size"),
            metrics: v.get("metrics"),
            status: v.get("status"),
        })
    }

    #[test]
    fn defaults_and_values() {
        let d = parse("{}").unwrap();
        assert_eq!(d, OperationsConfig::default());
        let c = parse(
            "cache_max_size: 20gb\nmetrics: {access: [$loopback, ops]}\nstatus: {access: [admins]}",
        )
        .unwrap();
        assert_eq!(c.cache_max_size, Some(20 * 1024 * 1024 * 1024));
        assert_eq!(c.metrics_access, ["$loopback", "ops"]);
        assert_eq!(c.status_access, Some(vec!["admins".to_string()]));
    }

    #[test]
    fn widening_typos_are_errors() {
        for bad in [
            "cache_max_size: 0",
            "cache_max_size: lots",
            "metrics: {acess: [ops]}",
            "metrics: {access: [$anonymous]}",
            "status: {access: [$all]}",
            "status: {access: [$loopback]}",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
