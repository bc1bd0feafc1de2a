//! Key paths for error and warning messages (`uplinks.corp.url`,
//! `packages.'@internal/*'.proxy`, `routes.public[0].registry`).
//!
//! Invariant: a path is built only from mapping *keys* and indices, which are policy
//! names, never from values, so it cannot leak a credential.

/// `parent.key`, quoting the key YAML-style when it is not a plain identifier so a
/// glob like `@scope/*` stays readable and unambiguous.
pub(crate) fn child(parent: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    let seg = if plain {
        key.to_owned()
    } else {
        format!("'{}'", key.replace('\'', "''"))
    };
    if parent.is_empty() {
        seg
    } else {
        format!("{parent}.{seg}")
    }
}

/// `parent[i]`.
pub(crate) fn index(parent: &str, i: usize) -> String {
    format!("{parent}[{i}]")
}

#[cfg(test)]
mod tests;
