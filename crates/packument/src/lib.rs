//! Pure packument transformations: package-name parsing from request paths,
//! merging uplink documents in `proxy:` order, npm's abbreviated
//! ("corgi") form, and `dist.tarball` rewriting onto our own URL.
//!
//! Invariant: a served document never carries an upstream tarball URL (every
//! `dist.tarball` is rewritten onto the base the caller reached us through), and
//! internal bookkeeping fields (prefixed `_pnpr`) never leave the process.

use serde_json::{Map, Value};

mod name;
mod stream;
pub use name::{parse_registry_path, validate_name, RegistryPath, RegistryTarget};
pub use stream::{render_streaming, validate_streaming, StreamForm};

/// Errors of the packument crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PackumentError {
    #[error("invalid package name: {0}")]
    BadName(String),
    #[error("malformed packument JSON: {0}")]
    BadJson(String),
    /// A streaming pass could not write its output.
    #[error("writing a rendered packument: {0}")]
    Io(String),
}

/// Internal field naming which uplink supplied a version; stripped on output.
pub const UPLINK_FIELD: &str = "_pnprUplink";

/// Fields kept per version in abbreviated metadata: the install fields npm and
/// Verdaccio serve. `libc` is deliberately absent, as in Verdaccio's form:
/// pnpm reads `libc` only from full metadata (which it requests for optional
/// dependencies), so the lockfile it writes against us matches the one it
/// writes against such an upstream, and our resolver mirrors that split.
const ABBREVIATED_VERSION_FIELDS: &[&str] = &[
    "name",
    "version",
    "deprecated",
    "dependencies",
    "optionalDependencies",
    "devDependencies",
    "bundleDependencies",
    "bundledDependencies",
    "peerDependencies",
    "peerDependenciesMeta",
    "bin",
    "directories",
    "dist",
    "engines",
    "_hasShrinkwrap",
    "hasInstallScript",
    "os",
    "cpu",
    "funding",
    "acceptDependencies",
];

/// Parses a packument and checks the shape we rely on.
pub fn parse(bytes: &[u8]) -> Result<Value, PackumentError> {
    let v: Value =
        serde_json::from_slice(bytes).map_err(|e| PackumentError::BadJson(e.to_string()))?;
    if !v.is_object() {
        return Err(PackumentError::BadJson("top level is not an object".into()));
    }
    Ok(v)
}

/// [`parse`] from a reader (a body file), without holding its bytes;
/// buffered and not generic, so the parser is optimised with this crate.
pub fn parse_reader(r: &mut dyn std::io::Read) -> Result<Value, PackumentError> {
    let r = std::io::BufReader::with_capacity(1 << 20, r);
    let v: Value =
        serde_json::from_reader(r).map_err(|e| PackumentError::BadJson(e.to_string()))?;
    if !v.is_object() {
        return Err(PackumentError::BadJson("top level is not an object".into()));
    }
    Ok(v)
}

/// Merges uplink documents, first one wins per version and per dist-tag (the
/// order is the `proxy:` order). Each version is tagged with the uplink it came
/// from so tarball fetches go back to the same origin.
pub fn merge(docs: Vec<(String, Value)>) -> Option<Value> {
    let mut iter = docs.into_iter();
    let (first_uplink, mut base) = iter.next()?;
    tag_versions(&mut base, &first_uplink);
    for (uplink, mut doc) in iter {
        tag_versions(&mut doc, &uplink);
        let Some(obj) = doc.as_object_mut() else {
            continue;
        };
        let versions = obj.remove("versions");
        let tags = obj.remove("dist-tags");
        let time = obj.remove("time");
        let Some(base_obj) = base.as_object_mut() else {
            break;
        };
        for (key, incoming) in [("versions", versions), ("dist-tags", tags), ("time", time)] {
            let Some(Value::Object(incoming)) = incoming else {
                continue;
            };
            let target = base_obj
                .entry(key)
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(target) = target {
                for (k, v) in incoming {
                    target.entry(k).or_insert(v);
                }
            }
        }
    }
    Some(base)
}

fn tag_versions(doc: &mut Value, uplink: &str) {
    if let Some(Value::Object(versions)) = doc.get_mut("versions") {
        for v in versions.values_mut() {
            if let Value::Object(v) = v {
                v.insert(UPLINK_FIELD.into(), Value::String(uplink.to_string()));
            }
        }
    }
}

/// The file name part of a tarball URL (`pkg-1.0.0.tgz`).
pub fn tarball_file_name(url: &str) -> Option<&str> {
    let path = url.split(['?', '#']).next()?;
    let file = path.rsplit('/').next()?;
    (!file.is_empty()).then_some(file)
}

/// Finds the version whose `dist.tarball` file name is `file`; returns
/// (version, version object).
pub fn find_by_file<'a>(doc: &'a Value, file: &str) -> Option<(&'a str, &'a Value)> {
    let versions = doc.get("versions")?.as_object()?;
    versions.iter().find_map(|(ver, v)| {
        let url = v.get("dist")?.get("tarball")?.as_str()?;
        (tarball_file_name(url) == Some(file)).then_some((ver.as_str(), v))
    })
}

/// Rewrites every `dist.tarball` onto `<base><name>/-/<file>` and strips
/// internal fields. `base` must end with `/`.
pub fn rewrite_tarballs(doc: &mut Value, base: &str) {
    let name = doc.get("name").and_then(Value::as_str).map(str::to_string);
    let Some(Value::Object(versions)) = doc.get_mut("versions") else {
        return;
    };
    for (ver, v) in versions.iter_mut() {
        if let Value::Object(v) = v {
            rewrite_version(ver, v, base, name.as_deref());
        }
    }
}

/// [`rewrite_tarballs`] for one version object; `doc_name` is the
/// document's `name`, used when the version carries no valid one.
pub fn rewrite_version(ver: &str, v: &mut Map<String, Value>, base: &str, doc_name: Option<&str>) {
    v.remove(UPLINK_FIELD);
    // Only a valid package name may shape a URL under `base`; without
    // one the upstream URL is dropped rather than served.
    let pkg = v
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| validate_name(n).is_ok())
        .or_else(|| doc_name.filter(|n| validate_name(n).is_ok()))
        .map(str::to_string);
    let Some(Value::Object(dist)) = v.get_mut("dist") else {
        return;
    };
    let Some(pkg) = pkg else {
        dist.remove("tarball");
        return;
    };
    let file = dist
        .get("tarball")
        .and_then(Value::as_str)
        .and_then(tarball_file_name)
        .map(str::to_string)
        .unwrap_or_else(|| default_file_name(&pkg, ver));
    dist.insert(
        "tarball".into(),
        Value::String(format!("{base}{pkg}/-/{file}")),
    );
}

/// `name-version.tgz` with the scope dropped, as npm names tarballs.
pub fn default_file_name(name: &str, version: &str) -> String {
    let bare = name.rsplit('/').next().unwrap_or(name);
    format!("{bare}-{version}.tgz")
}

/// npm's abbreviated install metadata, keeping `time` (pnpm needs publish
/// times for `minimumReleaseAge`).
pub fn abbreviate(doc: &Value) -> Value {
    let mut out = Map::new();
    for key in ["name", "dist-tags"] {
        if let Some(v) = doc.get(key) {
            out.insert(key.into(), v.clone());
        }
    }
    if let Some(modified) = doc.get("time").and_then(|t| t.get("modified")) {
        out.insert("modified".into(), modified.clone());
    }
    if let Some(time) = doc.get("time") {
        out.insert("time".into(), time.clone());
    }
    let mut versions = Map::new();
    if let Some(Value::Object(all)) = doc.get("versions") {
        for (ver, v) in all {
            let Value::Object(v) = v else { continue };
            versions.insert(ver.clone(), Value::Object(abbreviate_version(v)));
        }
    }
    out.insert("versions".into(), Value::Object(versions));
    Value::Object(out)
}

/// The install fields of one version object (see [`abbreviate`]).
pub fn abbreviate_version(v: &Map<String, Value>) -> Map<String, Value> {
    let mut slim = Map::new();
    for f in ABBREVIATED_VERSION_FIELDS {
        if let Some(x) = v.get(*f) {
            slim.insert((*f).into(), x.clone());
        }
    }
    if !slim.contains_key("hasInstallScript") {
        if let Some(Value::Object(scripts)) = v.get("scripts") {
            if ["preinstall", "install", "postinstall"]
                .iter()
                .any(|s| scripts.contains_key(*s))
            {
                slim.insert("hasInstallScript".into(), Value::Bool(true));
            }
        }
    }
    slim
}

/// Picks the document for `/<name>/<version-or-tag>`.
pub fn version_doc(doc: &Value, spec: &str) -> Option<Value> {
    let versions = doc.get("versions")?.as_object()?;
    if let Some(v) = versions.get(spec) {
        return Some(v.clone());
    }
    let tagged = doc.get("dist-tags")?.get(spec)?.as_str()?;
    versions.get(tagged).cloned()
}

#[cfg(test)]
mod tests;
