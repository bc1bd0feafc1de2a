//! `installAccelerator.recompress` (pnpr's own key): the idle-time pass that
//! re-encodes stored package members at a denser libdeflate level (RFC 0010
//! §4b), so cold `/v1/install` bodies shrink from about 1.07x to about 1.02x
//! the tarballs without slowing the cold path.
//!
//! ```yaml
//! installAccelerator:
//!   recompress:
//!     enabled: true   # default; false leaves members as the cold path wrote them
//!     level: 12       # libdeflate level, 7..=12 (the cold path writes 6)
//! ```
//!
//! `recompress: false` / `true` is the short form of `enabled`. Invariant
//! guarded: a level outside 7..=12 or an unknown key is an error (a typo
//! must not silently burn CPU for nothing or turn the pass off).

use serde_yaml_ng::Value;

use crate::error::ConfigError;
use crate::path::child;
use crate::walk::{boolean, entries, integer};

/// `installAccelerator.recompress`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecompressConfig {
    /// Whether the server runs the pass (only while no install or resolve
    /// is in flight, one member at a time on one core). Default `true`.
    pub enabled: bool,
    /// libdeflate level members are re-encoded at; default
    /// [`RecompressConfig::DEFAULT_LEVEL`].
    pub level: u32,
}

impl RecompressConfig {
    /// libdeflate's densest level: 1.019x the tarballs on the large corpus
    /// (RFC 0010 §3), and the CPU is spent once per member, while idle.
    pub const DEFAULT_LEVEL: u32 = 12;
    /// Levels accepted: above the cold path's 6, up to libdeflate's 12.
    pub const LEVELS: std::ops::RangeInclusive<u32> = 7..=12;
}

impl Default for RecompressConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            level: Self::DEFAULT_LEVEL,
        }
    }
}

/// Parses the node at `path` (`installAccelerator.recompress`).
pub(crate) fn recompress(v: &Value, path: &str) -> Result<RecompressConfig, ConfigError> {
    let mut out = RecompressConfig::default();
    match v {
        Value::Null => return Ok(out),
        Value::Bool(_) | Value::String(_) => {
            out.enabled = boolean(v, path)?;
            return Ok(out);
        }
        _ => {}
    }
    for (key, node) in entries(v, path)? {
        let at = child(path, &key);
        match key.as_str() {
            "enabled" => out.enabled = boolean(node, &at)?,
            "level" => {
                out.level = integer(node, &at)
                    .ok()
                    .and_then(|n| u32::try_from(n).ok())
                    .filter(|n| RecompressConfig::LEVELS.contains(n))
                    .ok_or_else(|| {
                        ConfigError::invalid(&at, "must be a libdeflate level from 7 to 12")
                    })?;
            }
            _ => {
                return Err(ConfigError::invalid(
                    at,
                    "unknown key in recompress (expected enabled, level)",
                ))
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<RecompressConfig, ConfigError> {
        let v: Value = serde_yaml_ng::from_str(yaml).unwrap();
        recompress(&v, "installAccelerator.recompress")
    }

    #[test]
    fn defaults_short_form_and_values() {
        assert_eq!(parse("~").unwrap(), RecompressConfig::default());
        assert_eq!(
            RecompressConfig::default(),
            RecompressConfig {
                enabled: true,
                level: 12
            }
        );
        assert!(!parse("false").unwrap().enabled);
        assert!(parse("'true'").unwrap().enabled);
        assert_eq!(
            parse("{enabled: false, level: 10}").unwrap(),
            RecompressConfig {
                enabled: false,
                level: 10
            }
        );
        assert_eq!(parse("{level: '9'}").unwrap().level, 9);
    }

    #[test]
    fn bad_values_are_errors() {
        for bad in [
            "{level: 6}",
            "{level: 13}",
            "{level: -1}",
            "{level: high}",
            "{enabled: maybe}",
            "{enable: true}",
            "[12]",
            "12",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
