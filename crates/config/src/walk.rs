//! Small helpers for walking a `serde_yaml_ng::Value` by hand.
//!
//! Invariant: every failure is reported against the key path the caller passes in, and
//! values are never copied into error text (a value may be a substituted secret).

use serde_yaml_ng::{Mapping, Value};

use crate::error::ConfigError;

/// A scalar as text: strings verbatim, numbers and booleans in their YAML spelling.
pub(crate) fn scalar_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Short, value-free description of a node's type for "expected X, found Y" errors.
pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

/// The mapping at `path`; `null` (an empty block such as `uplinks:`) is `None`.
pub(crate) fn opt_mapping<'a>(
    v: &'a Value,
    path: &str,
) -> Result<Option<&'a Mapping>, ConfigError> {
    match v {
        Value::Null => Ok(None),
        Value::Mapping(m) => Ok(Some(m)),
        other => Err(ConfigError::invalid(
            path,
            format!("expected a mapping, found {}", kind(other)),
        )),
    }
}

/// The entries of the mapping at `path` in file order, keys rendered as strings.
pub(crate) fn entries<'a>(
    v: &'a Value,
    path: &str,
) -> Result<Vec<(String, &'a Value)>, ConfigError> {
    let Some(map) = opt_mapping(v, path)? else {
        return Ok(Vec::new());
    };
    map.iter()
        .map(|(k, v)| match scalar_string(k) {
            Some(key) => Ok((key, v)),
            None => Err(ConfigError::invalid(
                path,
                format!("mapping keys must be scalars, found {}", kind(k)),
            )),
        })
        .collect()
}

/// A scalar rendered as a string (numbers are accepted for things like usernames).
pub(crate) fn string(v: &Value, path: &str) -> Result<String, ConfigError> {
    scalar_string(v)
        .ok_or_else(|| ConfigError::invalid(path, format!("expected a string, found {}", kind(v))))
}

/// Like [`string`] but `null` and `""` mean "not set".
pub(crate) fn opt_string(v: &Value, path: &str) -> Result<Option<String>, ConfigError> {
    match v {
        Value::Null => Ok(None),
        _ => string(v, path).map(|s| Some(s).filter(|s| !s.is_empty())),
    }
}

/// A boolean; the strings `true`/`false` are accepted because `${VAR}` substitution
/// always yields strings.
pub(crate) fn boolean(v: &Value, path: &str) -> Result<bool, ConfigError> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(false),
        other => Err(ConfigError::invalid(
            path,
            format!("expected true or false, found {}", kind(other)),
        )),
    }
}

/// An integer, also from a numeric string (for `${VAR}` values).
pub(crate) fn integer(v: &Value, path: &str) -> Result<i64, ConfigError> {
    let parsed = match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    };
    parsed.ok_or_else(|| ConfigError::invalid(path, "expected a whole number"))
}

/// A Verdaccio access list: one whitespace-separated string, or a list whose items
/// are again split on whitespace. `null` is the empty list (admits nobody), which is
/// the fail-closed reading of `access:` with nothing after it.
pub(crate) fn token_list(v: &Value, path: &str) -> Result<Vec<String>, ConfigError> {
    let split = |s: &str| s.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
    match v {
        Value::Null => Ok(Vec::new()),
        Value::Sequence(items) => {
            let mut out = Vec::new();
            for (i, item) in items.iter().enumerate() {
                match item {
                    Value::String(_) | Value::Number(_) => {
                        out.extend(split(&scalar_string(item).unwrap_or_default()));
                    }
                    other => {
                        return Err(ConfigError::invalid(
                            crate::path::index(path, i),
                            format!("expected a name, found {}", kind(other)),
                        ))
                    }
                }
            }
            Ok(out)
        }
        Value::String(_) | Value::Number(_) => Ok(split(&scalar_string(v).unwrap_or_default())),
        other => Err(ConfigError::invalid(
            path,
            format!(
                "expected a space-separated string or a list, found {}",
                kind(other)
            ),
        )),
    }
}

/// Rejects `!tag` nodes anywhere in the tree: Verdaccio configs never use them and a
/// tag would otherwise change how a value is read in ways the operator cannot see.
pub(crate) fn reject_tags(v: &Value, path: &str) -> Result<(), ConfigError> {
    match v {
        Value::Tagged(_) => Err(ConfigError::invalid(
            if path.is_empty() { "(root)" } else { path },
            "YAML tags (!tag) are not supported",
        )),
        Value::Sequence(items) => items
            .iter()
            .enumerate()
            .try_for_each(|(i, item)| reject_tags(item, &crate::path::index(path, i))),
        Value::Mapping(map) => map.iter().try_for_each(|(k, v)| {
            let key = scalar_string(k).unwrap_or_else(|| "?".to_owned());
            reject_tags(k, path)?;
            reject_tags(v, &crate::path::child(path, &key))
        }),
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => Ok(()),
    }
}
