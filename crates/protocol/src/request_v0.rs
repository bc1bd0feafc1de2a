//! Parsing of the resolve protocol v0 bodies, `POST /-/pnpr/v0/resolve` and
//! `POST /-/pnpr/v0/verify-lockfile` (spec §5.0; shapes sent by pnpm 11.9
//! through 11.28 and pnpm 12, see RFC 0006).
//!
//! The fields both protocols share are parsed by the `/v1/install` parser
//! ([`crate::parse_request`]'s rules), so both endpoints key the shared
//! resolution cache the same way. What this module adds is the guard:
//!
//! Invariant: every field a v0 client sends either changes the result the
//! way pnpm would, or is refused with [`InstallError::Unsupported`] naming
//! it when it is set to anything but its default. A setting is never
//! silently ignored or reset; an unknown field is refused unless it looks
//! unset (`null`, `false`, `""`, `{}`, `[]`), so a newer client's new
//! setting cannot be dropped without a word.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::applied::AppliedPolicies;
use crate::request::Generation;
use crate::request::{parse_body, parse_object};
use crate::{InstallError, InstallRequest};

#[cfg(test)]
mod tests;

/// The only lockfile format this server writes.
pub const LOCKFILE_FORMAT: &str = "pnpm-lock/9.0";

/// What a field may hold for this server to honour the client's intent.
#[derive(Clone, Copy)]
enum Rule {
    /// Parsed by the shared parser; acted upon.
    Shared,
    /// `overrides`: shared, but every value must be a string (the `/v1`
    /// parser drops other values, which v0 must not do silently).
    StringValues,
    /// Accepted when absent, `null` or this boolean.
    Bool(bool, &'static str),
    /// Accepted when absent, `null` or an empty map (nested maps all empty).
    Empty(&'static str),
    /// Accepted when absent, `null`, an empty list or an empty map.
    EmptyList(&'static str),
    /// Accepted when absent, `null` or this string.
    Str(&'static str, &'static str),
    /// `acceptedLockfileFormats`: must include [`LOCKFILE_FORMAT`].
    Formats,
    /// Has no effect on the answer given the other refusals (documented
    /// per field); parsed for its type only.
    Inert,
    /// `authHeaders`, the `.npmrc` credentials pnpm 11.9.0 still sends
    /// (nerf-dart URI → `{"@": "<header>"}`, or → `"<header>"`): checked
    /// for shape, then dropped by [`parse_resolve_request`] before anything
    /// else sees it. pnpr never sends a client's credential upstream; it
    /// does not change the answer either, see [`drop_forwarded_credentials`].
    Credentials,
}

/// Every field a v0 client is known to send, with its rule.
fn rule(key: &str) -> Option<Rule> {
    use Rule::*;
    Some(match key {
        "projects"
        | "registry"
        | "lockfile"
        | "frozenLockfile"
        | "preferFrozenLockfile"
        | "ignoreManifestCheck"
        | "trustLockfile"
        | "minimumReleaseAge"
        | "minimumReleaseAgeExclude"
        | "nodeVersion"
        | "os"
        | "arch"
        | "dependencies"
        | "devDependencies"
        | "optionalDependencies" => Shared,
        "overrides" => StringValues,
        "minimumReleaseAgeIgnoreMissingTime" => Bool(
            true,
            "only `true` (versions without a publish time pass the age check) is implemented",
        ),
        "minimumReleaseAgeStrict" => Bool(
            false,
            "only the non-strict release-age check is implemented",
        ),
        "trustPolicy" => Str("off", "only `off` is implemented"),
        // Only consulted under `trustPolicy: no-downgrade`, which is refused.
        "trustPolicyExclude" | "trustPolicyIgnoreAfter" => Inert,
        "autoInstallPeers" => Bool(true, "only `true` (pnpm's default) is implemented"),
        "dedupePeers" => Bool(false, "peer deduplication is not implemented"),
        "excludeLinksFromLockfile" => Bool(false, "only `false` (pnpm's default) is implemented"),
        "addMissingPeerTypes" => Bool(false, "not implemented"),
        "projectScopedOptionalPeers" => Bool(false, "not implemented"),
        "fixLockfile" => Bool(
            false,
            "lockfile repair is not implemented (not advertised by GET /-/pnpr)",
        ),
        "updatePatches" => Bool(false, "not implemented"),
        // Only consulted when patches exist, and `patchedDependencies` is refused.
        "allowUnusedPatches" => Inert,
        "resolutionMode" => Str("highest", "only `highest` (pnpm's default) is implemented"),
        "catalogs" => Empty("catalogs are not implemented; resolve `catalog:` specifiers locally"),
        "patchedDependencies" => Empty("patched dependencies are not implemented"),
        "packageExtensions" => Empty("package extensions are not implemented"),
        // Parsed by [`scope_registries`]; which URLs are pnpr's own is the
        // server's decision (it knows its public base).
        "registries" => Shared,
        "namedRegistries" => Empty("named registries are not implemented"),
        "authHeaders" => Credentials,
        "storeIntegrities" => EmptyList("file delivery is `/v1/install` only"),
        "lockfileOnly" | "inlineFiles" => Bool(false, "file delivery is `/v1/install` only"),
        "acceptedLockfileFormats" => Formats,
        _ => return None,
    })
}

/// A parsed v0 body: the request both endpoints resolve with, and the
/// settings the `done` frame reports as applied.
#[derive(Debug, Clone)]
pub struct ResolveRequest {
    pub install: InstallRequest,
    pub applied: AppliedPolicies,
}

/// Parses a v0 body into the request shape both endpoints resolve with.
///
/// Errors: [`InstallError::Unsupported`] for a setting this server would
/// otherwise ignore; the [`crate::parse_request`] errors for the rest.
pub fn parse_resolve_request(
    body: &[u8],
    default_registry: &str,
) -> Result<ResolveRequest, InstallError> {
    let mut obj = parse_body(body)?;
    check_fields(&obj, "")?;
    drop_forwarded_credentials(&mut obj);
    let applied = AppliedPolicies::of(&obj);
    if let Some(Value::Array(projects)) = obj.get("projects") {
        for (i, p) in projects.iter().enumerate() {
            if let Value::Object(p) = p {
                check_project(p, i)?;
            }
        }
    }
    let pnpm12 = is_pnpm12(&obj);
    let scopes = scope_registries(obj.get("registries"))?;
    let mut install = parse_object(obj, default_registry)?;
    install.scope_registries = scopes;
    install.generation = if pnpm12 {
        Generation::V0ResolvePnpm12
    } else {
        Generation::V0Resolve
    };
    Ok(ResolveRequest { install, applied })
}

/// Whether the body asks for the pnpm 12 dialect (RFC 0007 R18: an array
/// `engines` is left out of the record) and early frames. The signal is
/// `acceptedLockfileFormats`, sent from pnpm 12.21 on; it follows the
/// behaviour, not the client line: pnpm 12.0.0 and 12.10.1 (which send no
/// `acceptedLockfileFormats`) still record an array `engines` as pnpm 11
/// does (real-world `angular-cli`, `jsonparse@1.3.1`: `{'0': node >=
/// 0.2.0}`), so they keep the 11.x dialect (RFC 0006 "Other released
/// clients").
fn is_pnpm12(obj: &Map<String, Value>) -> bool {
    obj.contains_key("acceptedLockfileFormats")
}

/// Removes `authHeaders` (already shape-checked) so that no stage after
/// parsing can reach a client-sent credential: the request's
/// `auth_headers` stay empty on v0, the log and the resolution cache key
/// never hold them, and only pnpr's own uplink credentials go upstream.
///
/// Dropping them is not ignoring a setting that changes the result. On v0
/// `registry` and every `registries` scope must be one of pnpr's own
/// endpoints (anything else is refused), so the only registry the client
/// could use these credentials on is pnpr itself, which identifies the
/// caller by the `Authorization` header the same client sends from the same
/// `.npmrc` entry. Every package is read under that identity with the
/// uplink credential pnpr holds, exactly what the client resolving directly
/// against pnpr gets; an entry for any other host names a registry this
/// request cannot reach.
fn drop_forwarded_credentials(obj: &mut Map<String, Value>) {
    obj.remove("authHeaders");
}

/// `registries` as pnpm 11.28 and 12 send it: registry URL → `{"scopes":
/// ["@corp", …]}` (the client's `@corp:registry=…` lines, minus the default
/// registry), turned into `@scope` → URL with a trailing `/`. A declaration
/// that routes anything but scopes (`prefix`/`aliases`: named registries) or
/// carries registry options is refused by name; so is a scope declared twice
/// or a malformed one. No URL or other value is echoed in an error.
fn scope_registries(v: Option<&Value>) -> Result<BTreeMap<String, String>, InstallError> {
    let mut out = BTreeMap::new();
    let decls = match v {
        None | Some(Value::Null) => return Ok(out),
        Some(Value::Object(m)) => m,
        Some(_) => return Err(invalid("registries", "must be an object")),
    };
    for (url, decl) in decls {
        let Value::Object(decl) = decl else {
            return Err(invalid("registries", "each registry must map to an object"));
        };
        for (key, value) in decl {
            match key.as_str() {
                "scopes" => {}
                "prefix" | "aliases" if !looks_unset(value) => {
                    return Err(InstallError::Unsupported {
                        field: format!("registries.*.{key}"),
                        reason: "named registries are not implemented; map scopes only",
                    })
                }
                _ if looks_unset(value) => {}
                _ => {
                    return Err(InstallError::Unsupported {
                        field: format!("registries.*.{key}"),
                        reason: "per-registry options are not implemented",
                    })
                }
            }
        }
        let scopes = match decl.get("scopes") {
            None | Some(Value::Null) => continue,
            Some(Value::Array(a)) => a,
            Some(_) => return Err(invalid("registries.*.scopes", "must be an array of scopes")),
        };
        for scope in scopes {
            let Some(scope) = scope.as_str().filter(|s| valid_scope(s)) else {
                return Err(invalid(
                    "registries.*.scopes",
                    "each scope must be `@` followed by a package scope name",
                ));
            };
            let mut url = url.clone();
            if !url.ends_with('/') {
                url.push('/');
            }
            if out.insert(scope.to_string(), url).is_some() {
                return Err(invalid("registries", "a scope is mapped to two registries"));
            }
        }
    }
    Ok(out)
}

/// `@name` where `name` is what npm allows in a scope.
fn valid_scope(s: &str) -> bool {
    s.strip_prefix('@').is_some_and(|n| {
        !n.is_empty()
            && n.len() <= 214
            && n.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
    })
}

fn invalid(field: &str, reason: &'static str) -> InstallError {
    InstallError::InvalidField {
        field: field.to_owned(),
        reason,
    }
}

/// Without a release-age policy (`minimumReleaseAge` absent or 0) its
/// strictness changes nothing, and pnpm 12 sends `minimumReleaseAgeStrict:
/// true` exactly then.
fn strictness_is_moot(obj: &Map<String, Value>) -> bool {
    obj.get("minimumReleaseAge")
        .is_none_or(|v| v.is_null() || v.as_u64() == Some(0))
}

fn check_fields(obj: &Map<String, Value>, prefix: &str) -> Result<(), InstallError> {
    for (key, value) in obj {
        let field = format!("{prefix}{key}");
        if key == "minimumReleaseAgeStrict" && strictness_is_moot(obj) {
            check(Rule::Inert, &field, value)?;
            continue;
        }
        match rule(key) {
            Some(r) => check(r, &field, value)?,
            None if looks_unset(value) => {}
            None => {
                return Err(InstallError::Unsupported {
                    field,
                    reason: "unknown field; refusing rather than ignoring it",
                })
            }
        }
    }
    Ok(())
}

/// Project keys pnpm sends: `name`/`version` name the importer for
/// `workspace:` references (matched by directory, see the resolver input),
/// the rest is parsed by the shared parser (`peerDependencies`, sent by
/// pnpm 12, are auto-installed into the importer as pnpm does, RFC 0007 R6).
fn check_project(p: &Map<String, Value>, i: usize) -> Result<(), InstallError> {
    for (key, value) in p {
        let known = matches!(
            key.as_str(),
            "dir"
                | "name"
                | "version"
                | "dependencies"
                | "devDependencies"
                | "optionalDependencies"
                | "peerDependencies"
        );
        if !known && !looks_unset(value) {
            return Err(InstallError::Unsupported {
                field: format!("projects[{i}].{key}"),
                reason: "unknown field; refusing rather than ignoring it",
            });
        }
        if known && names_a_catalog(value) {
            return Err(InstallError::Unsupported {
                field: format!("projects[{i}].{key}"),
                reason: "a `catalog:` specifier needs the workspace catalogs, and catalogs are not implemented; resolve `catalog:` specifiers locally",
            });
        }
    }
    Ok(())
}

/// Whether a dependency map holds a `catalog:` specifier. pnpm 11.9
/// through 11.22 send the manifest's specifiers as written but never the
/// `catalogs` they refer to (11.28 and 12 send `catalogs`, refused above),
/// so without this the resolver would fail on the specifier mid-request
/// instead of refusing the setting up front, for every client alike.
fn names_a_catalog(map: &Value) -> bool {
    map.as_object().is_some_and(|m| {
        m.values()
            .any(|spec| spec.as_str().is_some_and(|s| s.starts_with("catalog:")))
    })
}

fn check(rule: Rule, field: &str, value: &Value) -> Result<(), InstallError> {
    let unsupported = |reason| {
        Err(InstallError::Unsupported {
            field: field.to_owned(),
            reason,
        })
    };
    let wrong_type = |reason| {
        Err(InstallError::InvalidField {
            field: field.to_owned(),
            reason,
        })
    };
    match (rule, value) {
        (_, Value::Null) | (Rule::Shared | Rule::Inert, _) => Ok(()),
        (Rule::Credentials, Value::Object(m)) if m.values().all(is_credential) => Ok(()),
        (Rule::Credentials, _) => wrong_type(
            "must map registry URIs to a header string or to an object of header strings",
        ),
        (Rule::StringValues, Value::Object(m)) if m.values().all(Value::is_string) => Ok(()),
        (Rule::StringValues, _) => wrong_type("must be an object whose values are strings"),
        (Rule::Bool(ok, _), Value::Bool(b)) if *b == ok => Ok(()),
        (Rule::Bool(_, why), Value::Bool(_)) => unsupported(why),
        (Rule::Bool(..), _) => wrong_type("must be a boolean"),
        (Rule::Str(ok, _), Value::String(s)) if s == ok => Ok(()),
        (Rule::Str(_, why), Value::String(_)) => unsupported(why),
        (Rule::Str(..), _) => wrong_type("must be a string"),
        (Rule::Empty(why) | Rule::EmptyList(why), v) if !looks_unset(v) => match v {
            Value::Object(m) if m.values().all(looks_unset) => Ok(()),
            Value::Object(_) | Value::Array(_) => unsupported(why),
            _ => wrong_type("must be an object or an array"),
        },
        (Rule::Empty(_) | Rule::EmptyList(_), _) => Ok(()),
        (Rule::Formats, Value::Array(items)) if items.iter().any(|f| f == LOCKFILE_FORMAT) => {
            Ok(())
        }
        (Rule::Formats, Value::Array(_)) => {
            unsupported("this server writes `pnpm-lock/9.0` lockfiles only")
        }
        (Rule::Formats, _) => wrong_type("must be an array of strings"),
    }
}

/// One `authHeaders` value: a header string, or (pnpm 11.9.0) an object of
/// them keyed by scope (`"@"` for the registry's default).
fn is_credential(v: &Value) -> bool {
    match v {
        Value::String(_) => true,
        Value::Object(m) => m.values().all(Value::is_string),
        _ => false,
    }
}

/// `null`, `false`, `""`, `{}` or `[]`: what a client sends for a setting
/// it has not set.
fn looks_unset(v: &Value) -> bool {
    match v {
        Value::Null | Value::Bool(false) => true,
        Value::String(s) => s.is_empty(),
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Number(_) | Value::Bool(true) => false,
    }
}
