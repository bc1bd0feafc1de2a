//! Parsing of the `POST /v1/install` request body (spec §1.2, §1.3).
//!
//! Invariants guarded here:
//! * the body is read as untyped JSON first and every field is extracted by
//!   hand, so no error message can echo a request value (serde's "invalid
//!   type: string \"…\"" would, and a misplaced token could leak that way);
//! * unknown keys are ignored, `null` means "absent" for every field;
//! * project dirs are normalised and validated exactly once, here, so later
//!   stages can use them as workspace-relative POSIX paths without rechecking;
//! * credentials (`authHeaders` values, URL userinfo, the lockfile body) never
//!   appear in `Debug` output.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use serde_json::{Map, Value};

use crate::InstallError;

#[cfg(test)]
mod tests;

/// One workspace importer of the request.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Project {
    /// Normalised POSIX dir relative to the lockfile dir; `"."` is the root.
    pub dir: String,
    /// Production dependencies, name → spec.
    pub dependencies: BTreeMap<String, String>,
    /// Dev dependencies, name → spec.
    pub dev_dependencies: BTreeMap<String, String>,
    /// Optional dependencies, name → spec.
    pub optional_dependencies: BTreeMap<String, String>,
    /// The project's own `peerDependencies`, name → range (pnpm 12 sends
    /// them on v0; pnpm 11.5.2 never does). Omitted from the serialized
    /// request (the resolution cache key) when empty, so keys of requests
    /// without them stay what they were.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub peer_dependencies: BTreeMap<String, String>,
}

/// Forwarded upstream credentials: nerf-darted registry URI → complete
/// `Authorization` header value. `Debug` shows the URIs only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AuthHeaders(BTreeMap<String, String>);

impl AuthHeaders {
    /// Wraps a map of nerf-dart URI → header value.
    pub fn new(map: BTreeMap<String, String>) -> Self {
        AuthHeaders(map)
    }

    /// The header value forwarded for exactly this nerf-dart URI.
    pub fn get(&self, nerf_dart: &str) -> Option<&str> {
        self.0.get(nerf_dart).map(String::as_str)
    }

    /// All (URI, header value) pairs, sorted by URI.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Number of forwarded credentials.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no credential was forwarded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for AuthHeaders {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.keys().map(|k| (k, Redacted)))
            .finish()
    }
}

struct Redacted;

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The client's supply-chain trust policy (`trustPolicy`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub enum TrustPolicy {
    /// No trust check (`"off"`, the default).
    #[default]
    Off,
    /// Reject trust downgrades (`"no-downgrade"`).
    NoDowngrade,
}

/// A parsed `/v1/install` request. Field meanings: spec §1.2.
/// `Serialize` gives the resolution-relevant view of a request (cache keys):
/// fields that identify the caller or describe its store are skipped, and
/// the lockfile is keyed separately by its content hash.
#[derive(Clone, PartialEq, serde::Serialize)]
pub struct InstallRequest {
    /// Importers; never empty (legacy top-level maps form a `"."` project).
    pub projects: Vec<Project>,
    /// Default registry URL, always ending in `/`.
    pub registry: String,
    /// `namedRegistries` alias → URL, as sent.
    pub named_registries: BTreeMap<String, String>,
    /// Per-scope registries (v0 `registries`): `@scope` → URL with a
    /// trailing `/`. Empty on `/v1/install` (pnpm 11.5.2 sends none) and
    /// then left out of the serialized request, so existing cache keys stay.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub scope_registries: BTreeMap<String, String>,
    /// Forwarded upstream credentials.
    #[serde(skip)]
    pub auth_headers: AuthHeaders,
    /// `overrides` with non-string values dropped; `None` when absent or not an object.
    pub overrides: Option<BTreeMap<String, String>>,
    /// The client's wanted lockfile (v9 on-disk shape as JSON).
    #[serde(skip)]
    pub lockfile: Option<Value>,
    /// Use the lockfile as-is.
    pub frozen_lockfile: bool,
    /// `None` means the server default (true).
    pub prefer_frozen_lockfile: Option<bool>,
    /// Skip the manifest-vs-lockfile freshness check.
    pub ignore_manifest_check: bool,
    /// Skip server-side verification of the input lockfile.
    pub trust_lockfile: bool,
    /// Resolve only; no files.
    #[serde(skip)]
    pub lockfile_only: bool,
    /// Minimum release age in minutes.
    pub minimum_release_age: Option<u64>,
    /// Names (globs) exempt from the age rule.
    pub minimum_release_age_exclude: Option<Vec<String>>,
    /// `None` means the server default (true).
    pub minimum_release_age_ignore_missing_time: Option<bool>,
    /// Trust downgrade policy.
    pub trust_policy: TrustPolicy,
    /// Names (globs) exempt from the trust check.
    pub trust_policy_exclude: Option<Vec<String>>,
    /// Packages older than this many minutes skip the trust check.
    pub trust_policy_ignore_after: Option<u64>,
    /// SRI integrities of packages the client store already holds, as sent.
    #[serde(skip)]
    pub store_integrities: Vec<String>,
    /// Informational only (TS client); never acted upon.
    pub node_version: Option<String>,
    /// Informational only (TS client); never acted upon.
    pub os: Option<String>,
    /// Informational only (TS client); never acted upon.
    pub arch: Option<String>,
    /// Which pnpm generation asked (set by the endpoint, not the body): the
    /// lockfile a client expects differs in small, documented ways between
    /// pnpm 11.5.2 and the pnpm 11.9+/12 clients of the resolve protocol, so
    /// it is part of the cache key too.
    pub generation: Generation,
}

/// The pnpm generations whose resolution rules pnpr reproduces.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub enum Generation {
    /// pnpm 11.5.2, the one client of `POST /v1/install`.
    #[default]
    V1Install,
    /// pnpm 11.9+ (11.x), a client of `POST /-/pnpr/v0/resolve`.
    V0Resolve,
    /// pnpm 12 on the same endpoint, told apart by `acceptedLockfileFormats`,
    /// which only pnpm 12 sends (pnpm 11.28.10 sends `nodeVersion`/`os`/
    /// `arch` instead); its resolver differs in small ways (RFC 0007 R18).
    V0ResolvePnpm12,
}

impl fmt::Debug for InstallRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let named: BTreeMap<&str, String> = self
            .named_registries
            .iter()
            .map(|(k, v)| (k.as_str(), redact_userinfo(v)))
            .collect();
        f.debug_struct("InstallRequest")
            .field("projects", &self.projects)
            .field("registry", &redact_userinfo(&self.registry))
            .field("named_registries", &named)
            .field(
                "scope_registries",
                &self
                    .scope_registries
                    .iter()
                    .map(|(k, v)| (k.as_str(), redact_userinfo(v)))
                    .collect::<BTreeMap<_, _>>(),
            )
            .field("auth_headers", &self.auth_headers)
            .field("overrides", &self.overrides)
            // The lockfile can carry tarball URLs with userinfo; show presence only.
            .field("lockfile", &self.lockfile.as_ref().map(|_| Redacted))
            .field("frozen_lockfile", &self.frozen_lockfile)
            .field("prefer_frozen_lockfile", &self.prefer_frozen_lockfile)
            .field("ignore_manifest_check", &self.ignore_manifest_check)
            .field("trust_lockfile", &self.trust_lockfile)
            .field("lockfile_only", &self.lockfile_only)
            .field("minimum_release_age", &self.minimum_release_age)
            .field(
                "minimum_release_age_exclude",
                &self.minimum_release_age_exclude,
            )
            .field(
                "minimum_release_age_ignore_missing_time",
                &self.minimum_release_age_ignore_missing_time,
            )
            .field("trust_policy", &self.trust_policy)
            .field("trust_policy_exclude", &self.trust_policy_exclude)
            .field("trust_policy_ignore_after", &self.trust_policy_ignore_after)
            .field("store_integrities", &self.store_integrities.len())
            .field("node_version", &self.node_version)
            .field("os", &self.os)
            .field("arch", &self.arch)
            .finish()
    }
}

/// Replaces `user:pass@` in `scheme://user:pass@host/…` by `<redacted>@`.
fn redact_userinfo(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{}<redacted>{}", &url[..scheme_end + 3], &rest[at..]),
        None => url.to_owned(),
    }
}

/// Parses a request body. `default_registry` is used when the body has no
/// `registry`; a trailing `/` is enforced on whichever URL wins.
///
/// Errors: [`InstallError::InvalidJson`] / [`InstallError::InvalidField`]
/// (a 400 in the spec), [`InstallError::InvalidProjectDir`] /
/// [`InstallError::DuplicateProjectDir`] (a resolution-class error in the spec).
pub fn parse_request(body: &[u8], default_registry: &str) -> Result<InstallRequest, InstallError> {
    parse_object(parse_body(body)?, default_registry)
}

/// The body as a JSON object (the first step of every request parser).
pub(crate) fn parse_body(body: &[u8]) -> Result<Map<String, Value>, InstallError> {
    let root: Value =
        serde_json::from_slice(body).map_err(|e| InstallError::InvalidJson(e.to_string()))?;
    match root {
        Value::Object(obj) => Ok(obj),
        _ => Err(field_err("(body)", "must be a JSON object")),
    }
}

/// [`parse_request`] on an already-parsed body object.
pub(crate) fn parse_object(
    mut obj: Map<String, Value>,
    default_registry: &str,
) -> Result<InstallRequest, InstallError> {
    let projects = match get(&obj, "projects") {
        Some(Value::Array(items)) if !items.is_empty() => parse_projects(items)?,
        Some(Value::Array(_)) | None => vec![Project {
            dir: ".".to_owned(),
            dependencies: string_map(&obj, "dependencies", "dependencies")?,
            dev_dependencies: string_map(&obj, "devDependencies", "devDependencies")?,
            optional_dependencies: string_map(
                &obj,
                "optionalDependencies",
                "optionalDependencies",
            )?,
            peer_dependencies: BTreeMap::new(),
        }],
        Some(_) => return Err(field_err("projects", "must be an array")),
    };

    let registry = match opt_string(&obj, "registry")? {
        Some(r) if !r.is_empty() => r,
        _ => default_registry.to_owned(),
    };

    let overrides = match get(&obj, "overrides") {
        Some(Value::Object(m)) => Some(
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_owned())))
                .collect(),
        ),
        _ => None,
    };

    let trust_policy = match opt_string(&obj, "trustPolicy")?.as_deref() {
        None | Some("off") => TrustPolicy::Off,
        Some("no-downgrade") => TrustPolicy::NoDowngrade,
        Some(_) => {
            return Err(field_err(
                "trustPolicy",
                "must be \"off\" or \"no-downgrade\"",
            ))
        }
    };

    // Moved out rather than cloned: the lockfile is the bulk of a warm request.
    let lockfile = obj.remove("lockfile").filter(|v| !v.is_null());

    Ok(InstallRequest {
        projects,
        registry: with_trailing_slash(registry),
        named_registries: string_map(&obj, "namedRegistries", "namedRegistries")?,
        scope_registries: BTreeMap::new(),
        auth_headers: AuthHeaders(string_map(&obj, "authHeaders", "authHeaders")?),
        overrides,
        lockfile,
        frozen_lockfile: opt_bool(&obj, "frozenLockfile")?.unwrap_or(false),
        prefer_frozen_lockfile: opt_bool(&obj, "preferFrozenLockfile")?,
        ignore_manifest_check: opt_bool(&obj, "ignoreManifestCheck")?.unwrap_or(false),
        trust_lockfile: opt_bool(&obj, "trustLockfile")?.unwrap_or(false),
        lockfile_only: opt_bool(&obj, "lockfileOnly")?.unwrap_or(false),
        minimum_release_age: opt_u64(&obj, "minimumReleaseAge")?,
        minimum_release_age_exclude: opt_string_list(&obj, "minimumReleaseAgeExclude")?,
        minimum_release_age_ignore_missing_time: opt_bool(
            &obj,
            "minimumReleaseAgeIgnoreMissingTime",
        )?,
        trust_policy,
        trust_policy_exclude: opt_string_list(&obj, "trustPolicyExclude")?,
        trust_policy_ignore_after: opt_u64(&obj, "trustPolicyIgnoreAfter")?,
        store_integrities: opt_string_list(&obj, "storeIntegrities")?.unwrap_or_default(),
        // Informational fields: tolerate any type, keep strings only.
        node_version: get(&obj, "nodeVersion").and_then(as_owned_str),
        os: get(&obj, "os").and_then(as_owned_str),
        arch: get(&obj, "arch").and_then(as_owned_str),
        generation: Generation::default(),
    })
}

fn parse_projects(items: &[Value]) -> Result<Vec<Project>, InstallError> {
    let mut seen = HashSet::with_capacity(items.len());
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let Value::Object(p) = item else {
            return Err(InstallError::InvalidField {
                field: format!("projects[{i}]"),
                reason: "must be an object",
            });
        };
        let dir = match get(p, "dir") {
            None => ".".to_owned(),
            Some(Value::String(raw)) => normalize_dir(raw)?,
            Some(_) => {
                return Err(InstallError::InvalidField {
                    field: format!("projects[{i}].dir"),
                    reason: "must be a string",
                })
            }
        };
        if !seen.insert(dir.clone()) {
            return Err(InstallError::DuplicateProjectDir(dir));
        }
        out.push(Project {
            dependencies: string_map(p, "dependencies", &format!("projects[{i}].dependencies"))?,
            dev_dependencies: string_map(
                p,
                "devDependencies",
                &format!("projects[{i}].devDependencies"),
            )?,
            optional_dependencies: string_map(
                p,
                "optionalDependencies",
                &format!("projects[{i}].optionalDependencies"),
            )?,
            peer_dependencies: string_map(
                p,
                "peerDependencies",
                &format!("projects[{i}].peerDependencies"),
            )?,
            dir,
        });
    }
    Ok(out)
}

/// Normalises a project dir per spec §1.3: `""`/`"."` is the root, trailing
/// slashes are trimmed; absolute paths, backslashes, empty or `..`
/// components and slash-only input are rejected.
pub fn normalize_dir(raw: &str) -> Result<String, InstallError> {
    let bad = |reason| InstallError::InvalidProjectDir {
        dir: raw.to_owned(),
        reason,
    };
    if raw.is_empty() || raw == "." {
        return Ok(".".to_owned());
    }
    let trimmed = raw.trim_end_matches('/');
    if trimmed.is_empty() {
        return Err(bad("consists only of slashes"));
    }
    if trimmed.starts_with('/') {
        return Err(bad("must be relative"));
    }
    if trimmed.contains('\\') {
        return Err(bad("must not contain a backslash"));
    }
    if trimmed.contains('\0') {
        return Err(bad("must not contain a NUL byte"));
    }
    if trimmed == "." {
        return Ok(".".to_owned());
    }
    for component in trimmed.split('/') {
        if component.is_empty() {
            return Err(bad("has an empty path component"));
        }
        if component == ".." {
            return Err(bad("must not contain `..`"));
        }
    }
    Ok(trimmed.to_owned())
}

fn with_trailing_slash(mut url: String) -> String {
    if !url.ends_with('/') {
        url.push('/');
    }
    url
}

fn field_err(field: &str, reason: &'static str) -> InstallError {
    InstallError::InvalidField {
        field: field.to_owned(),
        reason,
    }
}

/// A present, non-null field.
fn get<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).filter(|v| !v.is_null())
}

fn as_owned_str(v: &Value) -> Option<String> {
    v.as_str().map(str::to_owned)
}

fn string_map(
    obj: &Map<String, Value>,
    key: &str,
    field: &str,
) -> Result<BTreeMap<String, String>, InstallError> {
    match get(obj, key) {
        None => Ok(BTreeMap::new()),
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                _ => Err(field_err(field, "values must be strings")),
            })
            .collect(),
        Some(_) => Err(field_err(field, "must be an object")),
    }
}

fn opt_string(obj: &Map<String, Value>, key: &str) -> Result<Option<String>, InstallError> {
    match get(obj, key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(field_err(key, "must be a string")),
    }
}

fn opt_bool(obj: &Map<String, Value>, key: &str) -> Result<Option<bool>, InstallError> {
    match get(obj, key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(field_err(key, "must be a boolean")),
    }
}

/// A non-negative integer, or one written in decimal digits as a string:
/// pnpm sends a setting given on its command line
/// (`--config.minimum-release-age=0`) as the string it parsed, and uses it
/// as that number.
fn opt_u64(obj: &Map<String, Value>, key: &str) -> Result<Option<u64>, InstallError> {
    let number = |v: &Value| match v {
        Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            s.parse().ok()
        }
        v => v.as_u64(),
    };
    match get(obj, key) {
        None => Ok(None),
        Some(v) => number(v)
            .map(Some)
            .ok_or_else(|| field_err(key, "must be a non-negative integer")),
    }
}

fn opt_string_list(
    obj: &Map<String, Value>,
    key: &str,
) -> Result<Option<Vec<String>>, InstallError> {
    match get(obj, key) {
        None => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| as_owned_str(v).ok_or_else(|| field_err(key, "entries must be strings")))
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(field_err(key, "must be an array of strings")),
    }
}
