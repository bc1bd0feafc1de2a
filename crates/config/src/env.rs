//! `Env`, the injected view of the process environment, and `${VAR}` substitution.
//!
//! Invariants: library code never calls `std::env`; the binary hands us an [`Env`].
//! Substitution replaces `${NAME}` in every string *value* of the YAML tree before any
//! key is interpreted, and an unset variable becomes `""` plus a warning that names the
//! variable and the key, never a value.

use std::collections::BTreeMap;

use serde_yaml_ng::Value;

use crate::path::child;

/// A snapshot of environment variables, passed in by the caller.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Env {
    vars: BTreeMap<String, String>,
}

impl Env {
    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, String)>) -> Env {
        Env {
            vars: pairs.into_iter().collect(),
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }

    /// The variable when it is set to something other than the empty string: an
    /// exported-but-empty `PNPR_*` override counts as unset.
    pub(crate) fn non_empty(&self, name: &str) -> Option<&str> {
        self.get(name).filter(|v| !v.is_empty())
    }
}

impl FromIterator<(String, String)> for Env {
    fn from_iter<T: IntoIterator<Item = (String, String)>>(iter: T) -> Self {
        Env::from_pairs(iter)
    }
}

/// Substitutes `${VAR}` in every string value of `value` (mapping keys are left alone:
/// they name policy entries and must be literally visible in the file).
pub(crate) fn substitute_tree(
    value: &mut Value,
    path: &str,
    env: &Env,
    warnings: &mut Vec<String>,
) {
    match value {
        Value::String(s) => {
            if s.contains("${") {
                *s = substitute_str(s, path, env, warnings);
            }
        }
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                substitute_tree(item, &format!("{path}[{i}]"), env, warnings);
            }
        }
        Value::Mapping(map) => {
            for (k, v) in map.iter_mut() {
                let key = crate::walk::scalar_string(k).unwrap_or_else(|| "?".to_owned());
                substitute_tree(v, &child(path, &key), env, warnings);
            }
        }
        Value::Tagged(tagged) => substitute_tree(&mut tagged.value, path, env, warnings),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// Replaces each well-formed `${NAME}` (NAME = `[A-Za-z_][A-Za-z0-9_]*`); anything
/// else that merely looks similar (`${`, `${not valid}`) is kept literally.
pub(crate) fn substitute_str(s: &str, path: &str, env: &Env, warnings: &mut Vec<String>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find('}') {
            Some(end) if is_var_name(&after[..end]) => {
                let name = &after[..end];
                match env.get(name) {
                    Some(v) => out.push_str(v),
                    None => {
                        let at = if path.is_empty() { "(root)" } else { path };
                        warnings.push(format!(
                            "{at}: environment variable ${{{name}}} is not set; substituted an empty string"
                        ));
                    }
                }
                rest = &after[end + 1..];
            }
            _ => {
                out.push_str("${");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn is_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests;
