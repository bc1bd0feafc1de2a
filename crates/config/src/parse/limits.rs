//! Parsing of `limits:` (see [`crate::Limits`]).

use serde_yaml_ng::Value;

use crate::error::ConfigError;
use crate::path::child;
use crate::units::{duration_value, size_value};
use crate::walk::entries;
use crate::Limits;

pub(super) fn limits(v: &Value) -> Result<Limits, ConfigError> {
    let mut out = Limits::default();
    for (key, node) in entries(v, "limits")? {
        let path = child("limits", &key);
        let size = || positive(size_value(node)).map_err(|r| ConfigError::invalid(&path, r));
        let time = || {
            duration_value(node)
                .and_then(|d| {
                    if d.is_zero() {
                        Err("must be greater than 0".to_owned())
                    } else {
                        Ok(d)
                    }
                })
                .map_err(|r| ConfigError::invalid(&path, r))
        };
        let count = || {
            positive(size_value(node))
                .and_then(|n| usize::try_from(n).map_err(|_| "too large".to_owned()))
                .map_err(|r| ConfigError::invalid(&path, r))
        };
        match key.as_str() {
            "install_body" => out.install_body = size()?,
            "installs_in_flight" => out.installs_in_flight = count()?,
            "install_queue_timeout" => out.install_queue_timeout = time()?,
            "store_integrities" => out.store_integrities = count()?,
            "resolution_cache" => out.resolution_cache = size()?,
            "body_timeout" => out.body_timeout = time()?,
            "header_timeout" => out.header_timeout = time()?,
            "shutdown_grace" => out.shutdown_grace = time()?,
            "packument_max" => out.packument_max = size()?,
            "packument_in_memory" => out.packument_in_memory = size()?,
            _ => return Err(ConfigError::invalid(&path, "unknown limit")),
        }
    }
    Ok(out)
}

fn positive(v: Result<u64, String>) -> Result<u64, String> {
    match v? {
        0 => Err("must be greater than 0".to_owned()),
        n => Ok(n),
    }
}
