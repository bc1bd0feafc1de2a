//! Pure edits of hosted packument documents: validating a publish body and
//! its attachments, merging it into the stored document, applying npm's
//! "modified packument" updates (unpublish of a version, deprecate, owners),
//! and dist-tag changes.
//!
//! Invariants guarded here:
//! - an existing version's manifest is immutable; an update may only change
//!   its `deprecated` field or remove it;
//! - every attachment is checked against the declared `dist.integrity` and
//!   `dist.shasum` before it can become part of a document, and a stored
//!   version always carries a `sha512` `dist.integrity` naming its blob;
//! - versions absent from an update body are removed only when the caller
//!   proved it saw the current revision (`_rev`), so a stale snapshot can
//!   never silently drop a version published in the meantime;
//! - every non-empty document has a `latest` tag pointing at an existing
//!   version, and no tag points at a missing version.

use base64::Engine;
use serde_json::{json, Map, Value};
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha512};

use crate::ownership::{maintainer_names, Change};
use crate::{HostedError, Result};

/// A permission an edit needs beyond plain publish rights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Permission {
    Publish,
    Unpublish,
}

/// Top-level fields refreshed from the `latest` version's manifest, so
/// `npm view` and search show the current description.
const MIRRORED_FIELDS: &[&str] = &[
    "description",
    "keywords",
    "homepage",
    "repository",
    "bugs",
    "license",
    "author",
];

/// One verified tarball of a publish.
#[derive(Debug, Clone)]
pub struct Attachment {
    pub version: String,
    /// Lowercase hex SHA-512 of `bytes` (the blob address).
    pub sha512_hex: String,
    pub bytes: Vec<u8>,
}

/// A validated publish body: manifests with normalized `dist`, and their
/// verified tarballs.
#[derive(Debug, Clone)]
pub struct PreparedPublish {
    pub name: String,
    pub versions: Vec<(String, Map<String, Value>)>,
    pub tags: Vec<(String, String)>,
    pub readme: Option<String>,
    pub attachments: Vec<Attachment>,
}

fn bad(msg: impl Into<String>) -> HostedError {
    HostedError::BadRequest(msg.into())
}

/// Strict semver check: the string must be its own canonical form.
pub fn valid_version(v: &str) -> bool {
    nodejs_semver::Version::parse(v).is_ok_and(|p| p.to_string() == v)
}

/// npm's tarball name: `<bare name>-<version>.tgz`.
pub fn tarball_file(name: &str, version: &str) -> String {
    let bare = name.rsplit('/').next().unwrap_or(name);
    format!("{bare}-{version}.tgz")
}

fn last_segment(s: &str) -> &str {
    s.rsplit('/').next().unwrap_or(s)
}

/// Validates a `PUT /<name>` publish body and verifies every tarball it
/// attaches. CPU-heavy (base64 + hashing): run off the async executor.
pub fn prepare_publish(name: &str, body: &Value) -> Result<PreparedPublish> {
    let obj = body
        .as_object()
        .ok_or_else(|| bad("publish body must be a JSON object"))?;
    if let Some(n) = obj.get("name") {
        if n.as_str() != Some(name) {
            return Err(bad("package name in the body does not match the URL"));
        }
    }
    let versions = obj
        .get("versions")
        .and_then(Value::as_object)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| bad("publish body has no versions"))?;
    let attachments = obj
        .get("_attachments")
        .and_then(Value::as_object)
        .ok_or_else(|| bad("publish body has no _attachments"))?;

    let mut out = PreparedPublish {
        name: name.to_string(),
        versions: Vec::new(),
        tags: Vec::new(),
        readme: obj
            .get("readme")
            .and_then(Value::as_str)
            .map(str::to_string),
        attachments: Vec::new(),
    };
    for (version, manifest) in versions {
        let (manifest, attachment) = prepare_version(name, version, manifest, attachments)?;
        out.attachments.push(attachment);
        out.versions.push((version.clone(), manifest));
    }
    if let Some(tags) = obj.get("dist-tags").and_then(Value::as_object) {
        out.tags = checked_tags(tags)?;
    }
    Ok(out)
}

/// One published version: its manifest checked against the URL's name and
/// its own key, its attached tarball decoded and verified, `dist` rewritten
/// to the hosted tarball path.
fn prepare_version(
    name: &str,
    version: &str,
    manifest: &Value,
    attachments: &Map<String, Value>,
) -> Result<(Map<String, Value>, Attachment)> {
    let mut manifest = checked_manifest(name, version, manifest)?;
    let file = tarball_file(name, version);
    let declared_file = manifest
        .get("dist")
        .and_then(|d| d.get("tarball"))
        .and_then(Value::as_str)
        .map(|u| last_segment(u.split(['?', '#']).next().unwrap_or(u)).to_string());
    let (key, att) = attachments
        .iter()
        .find(|(k, _)| {
            let seg = last_segment(k);
            seg == file || declared_file.as_deref() == Some(seg)
        })
        .ok_or_else(|| bad(format!("no tarball attached for version {version}")))?;
    let bytes = decode_attachment(key, att)?;
    let (sha512_hex, mut dist) = verify_dist(&file, manifest.get("dist"), &bytes)?;
    dist.insert("tarball".into(), json!(format!("{name}/-/{file}")));
    manifest.insert("dist".into(), Value::Object(dist));
    manifest.insert("_id".into(), json!(format!("{name}@{version}")));
    manifest.retain(|k, _| !k.starts_with("_pnpr") && k != "_attachments");
    let attachment = Attachment {
        version: version.to_string(),
        sha512_hex,
        bytes,
    };
    Ok((manifest, attachment))
}

/// A version's manifest whose `version` and `name` fields (filled in when
/// absent) agree with its key and the package.
fn checked_manifest(name: &str, version: &str, manifest: &Value) -> Result<Map<String, Value>> {
    if !valid_version(version) {
        return Err(bad(format!("invalid version {version:?}")));
    }
    let mut manifest = manifest
        .as_object()
        .cloned()
        .ok_or_else(|| bad(format!("version {version} is not an object")))?;
    match manifest.get("version").map(Value::as_str) {
        None => {
            manifest.insert("version".into(), json!(version));
        }
        Some(Some(v)) if v == version => {}
        _ => {
            return Err(bad(format!(
                "version {version} has a different version field"
            )))
        }
    }
    match manifest.get("name").map(Value::as_str) {
        None => {
            manifest.insert("name".into(), json!(name));
        }
        Some(Some(n)) if n == name => {}
        _ => return Err(bad(format!("version {version} names another package"))),
    }
    Ok(manifest)
}

/// `dist-tags` of a body: every value a version string, every tag a valid
/// tag name.
fn checked_tags(tags: &Map<String, Value>) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for (tag, v) in tags {
        let Some(v) = v.as_str() else {
            return Err(bad(format!("dist-tag {tag} is not a version string")));
        };
        check_tag_name(tag)?;
        out.push((tag.clone(), v.to_string()));
    }
    Ok(out)
}

fn decode_attachment(key: &str, att: &Value) -> Result<Vec<u8>> {
    let data = att
        .get("data")
        .and_then(Value::as_str)
        .ok_or_else(|| bad(format!("attachment {key} has no data")))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data)
        .map_err(|_| bad(format!("attachment {key} is not valid base64")))?;
    if let Some(len) = att.get("length") {
        if len.as_u64() != Some(bytes.len() as u64) {
            return Err(bad(format!(
                "attachment {key} is {} bytes, but its length says {len}",
                bytes.len()
            )));
        }
    }
    if bytes.is_empty() {
        return Err(bad(format!("attachment {key} is empty")));
    }
    Ok(bytes)
}

/// Checks the bytes against the declared `integrity` and `shasum` and
/// returns (sha512 hex, normalized dist with both set from the bytes).
fn verify_dist(
    file: &str,
    dist: Option<&Value>,
    bytes: &[u8],
) -> Result<(String, Map<String, Value>)> {
    let mismatch = |detail: &str| HostedError::IntegrityMismatch {
        file: file.to_string(),
        detail: detail.to_string(),
    };
    let mut dist = match dist {
        None => Map::new(),
        Some(Value::Object(d)) => d.clone(),
        Some(_) => return Err(bad(format!("dist of {file} is not an object"))),
    };
    let sha512 = Sha512::digest(bytes);
    let sha1_hex = hex::encode(Sha1::digest(bytes));
    if let Some(declared) = dist.get("integrity") {
        let sri: ssri::Integrity = declared
            .as_str()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad(format!("dist.integrity of {file} is not an SRI string")))?;
        // Every hash listed must match, not just the strongest one.
        for hash in &sri.hashes {
            let single = ssri::Integrity {
                hashes: vec![hash.clone()],
            };
            single
                .check(bytes)
                .map_err(|_| mismatch("bytes do not match dist.integrity"))?;
        }
    }
    if let Some(declared) = dist.get("shasum") {
        let ok = declared
            .as_str()
            .is_some_and(|s| s.eq_ignore_ascii_case(&sha1_hex));
        if !ok {
            return Err(mismatch("bytes do not match dist.shasum"));
        }
    }
    let sri = format!(
        "sha512-{}",
        base64::engine::general_purpose::STANDARD.encode(sha512)
    );
    dist.insert("integrity".into(), json!(sri));
    dist.insert("shasum".into(), json!(sha1_hex));
    Ok((hex::encode(sha512), dist))
}

fn check_tag_name(tag: &str) -> Result<()> {
    // A tag that parses as a version would be ambiguous in `name@<spec>`.
    if tag.is_empty()
        || tag.len() > 128
        || valid_version(tag)
        || tag.chars().any(|c| c.is_control() || c == '/' || c == ' ')
    {
        return Err(bad(format!("invalid dist-tag name {tag:?}")));
    }
    Ok(())
}

/// RFC 3339 UTC with milliseconds, as registries write `time` entries.
pub fn iso8601(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60
    )
}

/// Proleptic Gregorian date of a day count since 1970-01-01, computed in
/// 400-year eras (146 097 days each) shifted to start on March 1st so the
/// leap day is the last day of the shifted year.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let shifted = days + 719_468; // days from 0000-03-01 to 1970-01-01
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153; // 0 = March
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The next CouchDB-style revision `N-<hex>` after `prev`, derived from the
/// document content.
pub fn next_rev(prev: Option<&str>, doc: &Value) -> String {
    let n = prev
        .and_then(|r| r.split('-').next())
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0)
        + 1;
    let mut copy = doc.clone();
    if let Some(o) = copy.as_object_mut() {
        o.remove("_rev");
    }
    let digest = Sha256::digest(serde_json::to_vec(&copy).unwrap_or_default());
    format!("{n}-{}", &hex::encode(digest)[..32])
}

fn obj_mut<'a>(doc: &'a mut Value, key: &str) -> Option<&'a mut Map<String, Value>> {
    let entry = doc
        .as_object_mut()?
        .entry(key)
        .or_insert_with(|| Value::Object(Map::new()));
    if !entry.is_object() {
        *entry = Value::Object(Map::new());
    }
    entry.as_object_mut()
}

fn set(doc: &mut Value, key: &str, value: Value) {
    if let Some(root) = doc.as_object_mut() {
        root.insert(key.to_string(), value);
    }
}

/// The versions a document holds.
pub fn version_keys(doc: &Value) -> Vec<String> {
    doc.get("versions")
        .and_then(Value::as_object)
        .map(|v| v.keys().cloned().collect())
        .unwrap_or_default()
}

/// Merges a prepared publish into the stored document (or a new one).
/// Refuses with npm's wording when any version already exists.
pub fn merge_publish(
    current: Option<Value>,
    prep: &PreparedPublish,
    publisher: &str,
    now_ms: i64,
) -> Result<Value> {
    let now = iso8601(now_ms);
    let mut doc = current.unwrap_or_else(|| {
        json!({
            "_id": prep.name,
            "name": prep.name,
            "dist-tags": {},
            "versions": {},
            "time": { "created": now },
            "maintainers": [ { "name": publisher, "email": "" } ],
        })
    });
    let existing: Vec<&str> = prep
        .versions
        .iter()
        .map(|(v, _)| v.as_str())
        .filter(|v| doc.get("versions").and_then(|vs| vs.get(*v)).is_some())
        .collect();
    if !existing.is_empty() {
        return Err(HostedError::Conflict(format!(
            "You cannot publish over the previously published versions: {}.",
            existing.join(", ")
        )));
    }
    for (version, manifest) in &prep.versions {
        let mut manifest = manifest.clone();
        manifest.insert("_npmUser".into(), json!({ "name": publisher, "email": "" }));
        if let Some(m) = obj_mut(&mut doc, "versions") {
            m.insert(version.clone(), Value::Object(manifest));
        }
        if let Some(m) = obj_mut(&mut doc, "time") {
            m.insert(version.clone(), json!(now));
        }
    }
    for (tag, version) in &prep.tags {
        if doc.get("versions").and_then(|v| v.get(version)).is_none() {
            return Err(bad(format!(
                "dist-tag {tag} points at {version}, which is not published"
            )));
        }
        if let Some(m) = obj_mut(&mut doc, "dist-tags") {
            m.insert(tag.clone(), json!(version));
        }
    }
    if let Some(readme) = &prep.readme {
        set(&mut doc, "readme", json!(readme));
    }
    finish(&mut doc, now_ms);
    Ok(doc)
}

/// What an update did, for authorization and blob garbage collection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpdateEffect {
    /// Versions removed (needs [`Permission::Unpublish`]).
    pub removed: Vec<String>,
    /// Whether the set of maintainer names changed.
    pub owners_changed: bool,
    /// Maintainer names the update added (each must be an existing user).
    pub added_maintainers: Vec<String>,
}

impl UpdateEffect {
    /// The kind of change, for ownership checks and their messages.
    pub fn change(&self, deleted: bool) -> Change {
        if deleted || !self.removed.is_empty() {
            Change::Unpublish
        } else if self.owners_changed {
            Change::Owners
        } else {
            Change::Update
        }
    }
}

/// Applies npm's "PUT the modified packument" writes (`npm deprecate`,
/// `npm owner add/rm`, the first half of `npm unpublish <name>@<v>`).
///
/// `rev` is the revision the client claims to have edited (from the URL
/// `/-rev/<rev>` or the body's `_rev`). Fields absent from the body are left
/// alone; versions absent from the body's `versions` are removed only when a
/// matching `rev` was given. Returns `None` when no version remains.
pub fn apply_update(
    mut doc: Value,
    body: &Value,
    rev: Option<&str>,
    now_ms: i64,
) -> Result<(Option<Value>, UpdateEffect)> {
    let body = body
        .as_object()
        .ok_or_else(|| bad("update body must be a JSON object"))?;
    let name = doc
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if let Some(n) = body.get("name").or_else(|| body.get("_id")) {
        if n.as_str() != Some(name.as_str()) {
            return Err(bad("package name in the body does not match the URL"));
        }
    }
    let claimed = rev.or_else(|| body.get("_rev").and_then(Value::as_str));
    check_rev(&doc, claimed)?;
    let mut effect = UpdateEffect::default();
    if let Some(incoming) = body.get("versions") {
        effect.removed = update_versions(&mut doc, incoming, claimed.is_some())?;
    }
    if let Some(tags) = body.get("dist-tags") {
        let tags = tags
            .as_object()
            .ok_or_else(|| bad("dist-tags must be an object"))?;
        let next: Map<String, Value> = checked_tags(tags)?
            .into_iter()
            .map(|(tag, version)| (tag, json!(version)))
            .collect();
        set(&mut doc, "dist-tags", Value::Object(next));
    }
    if let Some(maintainers) = body.get("maintainers") {
        update_maintainers(&mut doc, maintainers, &mut effect)?;
    }
    for version in &effect.removed {
        remove_version_entry(&mut doc, version);
    }
    if version_keys(&doc).is_empty() {
        return Ok((None, effect));
    }
    check_tags_resolve(&doc, &effect.removed)?;
    finish(&mut doc, now_ms);
    Ok((Some(doc), effect))
}

/// Applies `deprecated` of each incoming version (all must be published);
/// with a claimed revision, returns the stored versions the body left out.
fn update_versions(doc: &mut Value, incoming: &Value, claimed: bool) -> Result<Vec<String>> {
    let incoming = incoming
        .as_object()
        .ok_or_else(|| bad("versions must be an object"))?;
    let stored = version_keys(doc);
    if let Some(unknown) = incoming.keys().find(|v| !stored.contains(v)) {
        return Err(bad(format!(
            "version {unknown} is not published; publish it with its tarball"
        )));
    }
    for (version, manifest) in incoming {
        let deprecated = manifest
            .get("deprecated")
            .and_then(Value::as_str)
            .filter(|m| !m.is_empty())
            .map(str::to_string);
        if let Some(Value::Object(stored)) =
            obj_mut(doc, "versions").and_then(|vs| vs.get_mut(version))
        {
            match deprecated {
                Some(msg) => {
                    stored.insert("deprecated".into(), json!(msg));
                }
                None => {
                    stored.remove("deprecated");
                }
            }
        }
    }
    if !claimed {
        return Ok(Vec::new());
    }
    Ok(stored
        .into_iter()
        .filter(|v| !incoming.contains_key(v))
        .collect())
}

/// Replaces `maintainers` and records who was added and whether owners
/// changed at all.
fn update_maintainers(
    doc: &mut Value,
    maintainers: &Value,
    effect: &mut UpdateEffect,
) -> Result<()> {
    let before = maintainer_names(doc);
    set(doc, "maintainers", normalize_maintainers(maintainers)?);
    let after = maintainer_names(doc);
    effect.added_maintainers = after
        .iter()
        .filter(|n| !before.contains(n))
        .cloned()
        .collect();
    effect.owners_changed =
        !effect.added_maintainers.is_empty() || before.iter().any(|n| !after.contains(n));
    Ok(())
}

/// Tags the body set must name versions that exist after the edit (a tag on
/// a version this edit removed is dropped later, not refused).
fn check_tags_resolve(doc: &Value, removed: &[String]) -> Result<()> {
    let Some(tags) = doc.get("dist-tags").and_then(Value::as_object) else {
        return Ok(());
    };
    if let Some((tag, v)) = tags.iter().find(|(_, v)| {
        v.as_str()
            .is_none_or(|v| doc.get("versions").and_then(|vs| vs.get(v)).is_none())
    }) {
        if !removed.iter().any(|r| Some(r.as_str()) == v.as_str()) {
            return Err(bad(format!("dist-tag {tag} points at a missing version")));
        }
    }
    Ok(())
}

pub(crate) fn check_rev(doc: &Value, claimed: Option<&str>) -> Result<()> {
    if let Some(claimed) = claimed {
        let current = doc.get("_rev").and_then(Value::as_str).unwrap_or_default();
        if claimed != current {
            return Err(HostedError::Conflict(format!(
                "document update conflict: revision {claimed} is not the current one ({current}); fetch the package again"
            )));
        }
    }
    Ok(())
}

fn normalize_maintainers(v: &Value) -> Result<Value> {
    let list = v
        .as_array()
        .ok_or_else(|| bad("maintainers must be an array"))?;
    let mut out: Vec<Value> = Vec::new();
    for m in list {
        let name = m
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| bad("every maintainer needs a name"))?;
        if out.iter().any(|o| o["name"] == name) {
            continue;
        }
        let email = m.get("email").and_then(Value::as_str).unwrap_or_default();
        out.push(json!({ "name": name, "email": email }));
    }
    if out.is_empty() {
        return Err(bad("a package needs at least one maintainer"));
    }
    Ok(Value::Array(out))
}

fn remove_version_entry(doc: &mut Value, version: &str) {
    for key in ["versions", "time"] {
        if let Some(m) = obj_mut(doc, key) {
            m.remove(version);
        }
    }
    if let Some(tags) = obj_mut(doc, "dist-tags") {
        tags.retain(|_, v| v.as_str() != Some(version));
    }
}

/// Removes one version (the tarball `DELETE` of `npm unpublish`, when the
/// version is still listed). Returns `None` when no version remains.
pub fn remove_version(mut doc: Value, version: &str, now_ms: i64) -> Result<Option<Value>> {
    if doc.get("versions").and_then(|v| v.get(version)).is_none() {
        return Err(HostedError::NotFound(format!(
            "version {version} not found"
        )));
    }
    remove_version_entry(&mut doc, version);
    if version_keys(&doc).is_empty() {
        return Ok(None);
    }
    finish(&mut doc, now_ms);
    Ok(Some(doc))
}

/// `npm dist-tag add`.
pub fn set_tag(mut doc: Value, tag: &str, version: &str, now_ms: i64) -> Result<Value> {
    check_tag_name(tag)?;
    if doc.get("versions").and_then(|v| v.get(version)).is_none() {
        return Err(HostedError::NotFound(format!(
            "version {version} is not published"
        )));
    }
    if let Some(m) = obj_mut(&mut doc, "dist-tags") {
        m.insert(tag.to_string(), json!(version));
    }
    finish(&mut doc, now_ms);
    Ok(doc)
}

/// `npm dist-tag rm`; `latest` cannot be removed (every package needs one).
pub fn remove_tag(mut doc: Value, tag: &str, now_ms: i64) -> Result<Value> {
    if tag == "latest" {
        return Err(bad("the latest tag cannot be removed"));
    }
    let removed = obj_mut(&mut doc, "dist-tags").and_then(|tags| tags.remove(tag));
    if removed.is_none() {
        return Err(HostedError::NotFound(format!("dist-tag {tag} not found")));
    }
    finish(&mut doc, now_ms);
    Ok(doc)
}

/// Restores the document-level invariants after an edit: `latest` exists
/// and names the highest stable version when it was missing, mirrored
/// fields follow `latest`, and `time.modified` is now.
fn finish(doc: &mut Value, now_ms: i64) {
    let versions = version_keys(doc);
    let mut latest = None;
    if let Some(tags) = obj_mut(doc, "dist-tags") {
        tags.retain(|_, v| v.as_str().is_some_and(|v| versions.iter().any(|x| x == v)));
        if !tags.contains_key("latest") {
            if let Some(best) = highest(&versions) {
                tags.insert("latest".into(), json!(best));
            }
        }
        latest = tags
            .get("latest")
            .and_then(Value::as_str)
            .map(str::to_string);
    }
    if let Some(latest) = latest {
        let manifest = doc
            .get("versions")
            .and_then(|v| v.get(&latest))
            .cloned()
            .unwrap_or(Value::Null);
        if let Some(root) = doc.as_object_mut() {
            for field in MIRRORED_FIELDS {
                match manifest.get(*field) {
                    Some(v) => {
                        root.insert((*field).into(), v.clone());
                    }
                    None => {
                        root.remove(*field);
                    }
                }
            }
        }
    }
    if let Some(m) = obj_mut(doc, "time") {
        m.insert("modified".into(), json!(iso8601(now_ms)));
    }
}

/// Highest stable version, else highest prerelease.
fn highest(versions: &[String]) -> Option<String> {
    let mut parsed: Vec<nodejs_semver::Version> = versions
        .iter()
        .filter_map(|v| nodejs_semver::Version::parse(v).ok())
        .collect();
    parsed.sort();
    parsed
        .iter()
        .rev()
        .find(|v| !v.is_prerelease())
        .or_else(|| parsed.last())
        .map(ToString::to_string)
}

/// The sha512 hex address of a stored version's tarball.
pub fn version_blob(manifest: &Value) -> Option<String> {
    let sri: ssri::Integrity = manifest
        .get("dist")?
        .get("integrity")?
        .as_str()?
        .parse()
        .ok()?;
    sri.hashes
        .iter()
        .find(|h| h.algorithm == ssri::Algorithm::Sha512)
        .and_then(|h| {
            base64::engine::general_purpose::STANDARD
                .decode(&h.digest)
                .ok()
        })
        .map(hex::encode)
}

#[cfg(test)]
mod tests;
