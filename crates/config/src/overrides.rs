//! `PNPR_*` environment overrides (the table is in the crate docs).
//!
//! Invariants: an override is validated exactly like the key it replaces and an
//! invalid value is an error naming the variable (never echoing it); applying the
//! overrides twice gives the same result as applying them once.

use std::path::PathBuf;

use crate::env::Env;
use crate::error::ConfigError;
use crate::parse::{
    default_packages, http_url, log_format, log_level, parse_listen, validate_secret,
};
use crate::units::parse_size;
use crate::{Config, UplinkConfig};

/// Name of the uplink `PNPR_UPLINK` creates or re-points.
pub const DEFAULT_UPLINK_NAME: &str = "default";

pub(crate) fn apply(cfg: &mut Config, env: &Env) -> Result<(), ConfigError> {
    if let Some(v) = env.non_empty("PNPR_LISTEN") {
        cfg.listen = Some(parse_listen(v).map_err(|r| ConfigError::env("PNPR_LISTEN", r))?);
    }
    if let Some(v) = env.non_empty("PNPR_PUBLIC_URL") {
        cfg.public_url = Some(http_url(v).map_err(|r| ConfigError::env("PNPR_PUBLIC_URL", r))?);
    }
    if let Some(v) = env.non_empty("PNPR_STORAGE") {
        let storage = absolute("PNPR_STORAGE", v)?;
        // A cache that was only defaulted from the old storage follows the new one.
        if cfg.cache == cfg.storage.join(".pnpr-cache") {
            cfg.cache = storage.join(".pnpr-cache");
        }
        cfg.storage = storage;
    }
    if let Some(v) = env.non_empty("PNPR_CACHE") {
        cfg.cache = absolute("PNPR_CACHE", v)?;
    }
    if let Some(v) = env.non_empty("PNPR_SECRET") {
        cfg.secret =
            Some(validate_secret(v.to_owned()).map_err(|r| ConfigError::env("PNPR_SECRET", r))?);
    }
    if let Some(v) = env.non_empty("PNPR_LOG_LEVEL") {
        cfg.log.level = log_level(v).map_err(|r| ConfigError::env("PNPR_LOG_LEVEL", r))?;
    }
    if let Some(v) = env.non_empty("PNPR_LOG_FORMAT") {
        cfg.log.format = log_format(v).map_err(|r| ConfigError::env("PNPR_LOG_FORMAT", r))?;
    }
    if let Some(v) = env.non_empty("PNPR_MAX_BODY_SIZE") {
        cfg.max_body_size = match parse_size(v) {
            Ok(0) => Err("must be greater than 0".to_owned()),
            other => other,
        }
        .map_err(|r| ConfigError::env("PNPR_MAX_BODY_SIZE", r))?;
    }
    if let Some(v) = env.non_empty("PNPR_UPLINK") {
        let url = http_url(v).map_err(|r| ConfigError::env("PNPR_UPLINK", r))?;
        let was_auto = cfg.packages == default_packages(&uplink_names(cfg));
        match cfg
            .uplinks
            .iter_mut()
            .find(|u| u.name == DEFAULT_UPLINK_NAME)
        {
            Some(up) => up.url = url,
            None => cfg
                .uplinks
                .push(UplinkConfig::new(DEFAULT_UPLINK_NAME, url)),
        }
        if was_auto {
            cfg.packages = default_packages(&uplink_names(cfg));
        }
    }
    Ok(())
}

fn uplink_names(cfg: &Config) -> Vec<String> {
    cfg.uplinks.iter().map(|u| u.name.clone()).collect()
}

/// Override paths must be absolute: an environment variable has no file directory to
/// anchor a relative path to, and guessing one would make the result depend on how
/// the process was started.
fn absolute(var: &str, v: &str) -> Result<PathBuf, ConfigError> {
    let p = PathBuf::from(v);
    if !p.is_absolute() {
        return Err(ConfigError::env(var, "must be an absolute path"));
    }
    Ok(crate::parse::resolve(&p, v))
}

#[cfg(test)]
mod tests;
