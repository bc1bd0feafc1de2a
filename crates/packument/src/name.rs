//! Request-path parsing for registry routes.
//!
//! Accepts the three spellings clients use for scoped names (`@s%2fn`,
//! `@s%2Fn`, `@s/n`) and the `/~<uplink>/` prefix. Names are validated
//! before they reach storage keys or upstream URLs, so a path can never
//! smuggle `..`, a second path segment or control characters upstream.

use crate::PackumentError;

/// Which document a registry path asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryTarget {
    Packument,
    Version(String),
    Tarball(String),
}

/// A parsed registry request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryPath {
    /// `Some(name)` for `/~name/...`.
    pub uplink: Option<String>,
    pub name: String,
    pub target: RegistryTarget,
}

fn decode(seg: &str) -> Result<String, PackumentError> {
    percent_encoding::percent_decode_str(seg)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| PackumentError::BadName(seg.to_string()))
}

/// A decoded version, dist-tag, tarball file or uplink segment: one segment,
/// so no `/` or `\` that an encoded `%2f`/`%5c` would smuggle in, and no
/// control characters (which would reach logs and upstream URLs).
fn decode_segment(seg: &str) -> Result<String, PackumentError> {
    let s = decode(seg)?;
    if s.contains(['/', '\\']) || s.chars().any(char::is_control) {
        return Err(PackumentError::BadName(seg.to_string()));
    }
    Ok(s)
}

/// Parses the raw (still percent-encoded) path of a registry GET.
pub fn parse_registry_path(raw: &str) -> Result<RegistryPath, PackumentError> {
    let trimmed = raw.strip_prefix('/').unwrap_or(raw);
    let mut segs: Vec<&str> = trimmed.split('/').collect();
    if segs.last() == Some(&"") && segs.len() > 1 {
        segs.pop();
    }
    let mut uplink = None;
    if let Some(first) = segs.first() {
        if let Some(u) = first.strip_prefix('~') {
            let u = decode_segment(u)?;
            if u.is_empty() {
                return Err(PackumentError::BadName(raw.to_string()));
            }
            uplink = Some(u);
            segs.remove(0);
        }
    }
    let Some(first) = segs.first().copied() else {
        return Err(PackumentError::BadName(raw.to_string()));
    };
    let first_dec = decode(first)?;
    let (name, rest) = if first_dec.starts_with('@') && !first_dec.contains('/') {
        let Some(second) = segs.get(1) else {
            return Err(PackumentError::BadName(first_dec));
        };
        (format!("{first_dec}/{}", decode(second)?), &segs[2..])
    } else {
        (first_dec, &segs[1..])
    };
    validate_name(&name)?;
    let target = match rest {
        [] => RegistryTarget::Packument,
        [v] => RegistryTarget::Version(decode_segment(v)?),
        ["-", file] => {
            let file = decode_segment(file)?;
            if file.is_empty()
                || file.contains('/')
                || file.starts_with('.')
                || !file.ends_with(".tgz")
            {
                return Err(PackumentError::BadName(file));
            }
            RegistryTarget::Tarball(file)
        }
        _ => return Err(PackumentError::BadName(raw.to_string())),
    };
    Ok(RegistryPath {
        uplink,
        name,
        target,
    })
}

/// npm package-name rules that matter for safety: length, one optional
/// scope, URL-safe characters, no leading dot or underscore.
pub fn validate_name(name: &str) -> Result<(), PackumentError> {
    let bad = || PackumentError::BadName(name.to_string());
    if name.is_empty() || name.len() > 214 {
        return Err(bad());
    }
    let (scope, bare) = match name.strip_prefix('@') {
        Some(rest) => {
            let (s, b) = rest.split_once('/').ok_or_else(bad)?;
            (Some(s), b)
        }
        None => (None, name),
    };
    let part_ok = |p: &str| {
        !p.is_empty()
            && !p.starts_with('.')
            && !p.starts_with('_')
            && p.bytes().all(|b| {
                b.is_ascii_alphanumeric()
                    || matches!(
                        b,
                        b'-' | b'.' | b'_' | b'~' | b'!' | b'*' | b'\'' | b'(' | b')'
                    )
            })
    };
    if let Some(s) = scope {
        if !part_ok(s) {
            return Err(bad());
        }
    }
    if !part_ok(bare) {
        return Err(bad());
    }
    Ok(())
}
