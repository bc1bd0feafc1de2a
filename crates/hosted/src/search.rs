//! `npm search` (`GET /-/v1/search`) over hosted packuments and the
//! packuments cached from uplinks in the shared public mirror.
//!
//! Invariants guarded here: the metadata cache is only read (search
//! never changes what the proxy serves); only documents of the shared
//! public namespace are searched, never a private uplink namespace; a
//! hosted name hides any cached document of the same name (the same
//! ownership rule as reads); the caller-supplied `allowed` filter runs
//! before results are counted, so totals never leak hidden names.

use std::collections::HashSet;

use serde_json::{json, Map, Value};

use crate::doc::iso8601;
use crate::Result;

/// Largest page a client may ask for (npm's own limit is 250).
pub const MAX_SIZE: usize = 250;
/// Bound on cached documents parsed per search.
const MAX_CACHED_CANDIDATES: usize = 2000;
/// Cached documents larger than this are matched by name only: scanning the
/// body of every huge packument per query would let one search request cost
/// as much as reading the whole cache.
const MAX_SCANNED_BODY: usize = 256 * 1024;

/// A parsed search request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchQuery {
    pub text: String,
    pub size: usize,
    pub from: usize,
}

impl SearchQuery {
    /// From `text`, `size` (default 20, at most [`MAX_SIZE`]) and `from`.
    pub fn new(text: &str, size: Option<&str>, from: Option<&str>) -> Self {
        let size = size
            .and_then(|s| s.parse::<usize>().ok())
            .unwrap_or(20)
            .clamp(1, MAX_SIZE);
        let from = from.and_then(|s| s.parse::<usize>().ok()).unwrap_or(0);
        Self {
            text: text.to_string(),
            size,
            from,
        }
    }
}

/// One matching package.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchHit {
    pub name: String,
    pub score: f64,
    /// The npm search result object (`{package, score, searchScore}`).
    pub object: Value,
}

#[derive(Debug, Default)]
struct Terms {
    words: Vec<String>,
    keywords: Vec<String>,
    scope: Option<String>,
    people: Vec<String>,
}

fn parse_terms(text: &str) -> Terms {
    let mut t = Terms::default();
    for raw in text.split_whitespace() {
        let word = raw.to_lowercase();
        if let Some(k) = word.strip_prefix("keywords:") {
            t.keywords
                .extend(k.split(',').filter(|s| !s.is_empty()).map(str::to_string));
        } else if let Some(s) = word.strip_prefix("scope:") {
            t.scope = Some(s.trim_start_matches('@').to_string());
        } else if let Some(p) = word
            .strip_prefix("author:")
            .or_else(|| word.strip_prefix("maintainer:"))
        {
            t.people.push(p.to_string());
        } else if word.contains(':') && !word.starts_with('@') {
            // Other qualifiers (`not:`, `is:`, `boost-exact:`) are ignored.
        } else {
            t.words.push(word);
        }
    }
    t
}

fn latest_manifest(doc: &Value) -> Option<&Value> {
    let latest = doc.get("dist-tags")?.get("latest")?.as_str()?;
    doc.get("versions")?.get(latest)
}

fn field<'a>(doc: &'a Value, key: &str) -> Option<&'a Value> {
    latest_manifest(doc)
        .and_then(|m| m.get(key))
        .or_else(|| doc.get(key))
}

fn keywords_of(doc: &Value) -> Vec<String> {
    match field(doc, "keywords") {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        Some(Value::String(s)) => s
            .split([',', ' '])
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

fn maintainer_names(doc: &Value) -> Vec<String> {
    doc.get("maintainers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|m| {
                    m.get("name")
                        .or_else(|| m.get("username"))
                        .and_then(Value::as_str)
                })
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Relevance in (0, 1], or `None` when the document does not match every
/// term and qualifier.
fn score(doc: &Value, terms: &Terms) -> Option<f64> {
    let name = doc.get("name")?.as_str()?.to_lowercase();
    let bare = name.rsplit('/').next().unwrap_or(&name).to_string();
    if let Some(scope) = &terms.scope {
        if !name.starts_with(&format!("@{scope}/")) {
            return None;
        }
    }
    let keywords: Vec<String> = keywords_of(doc).iter().map(|k| k.to_lowercase()).collect();
    if !terms.keywords.iter().all(|k| keywords.contains(k)) {
        return None;
    }
    let people: Vec<String> = maintainer_names(doc)
        .iter()
        .map(|p| p.to_lowercase())
        .collect();
    if !terms.people.iter().all(|p| people.contains(p)) {
        return None;
    }
    if terms.words.is_empty() {
        return Some(1.0);
    }
    let description = field(doc, "description")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_lowercase();
    let mut total = 0.0;
    for w in &terms.words {
        let s = if name == *w || bare == *w {
            1.0
        } else if bare.starts_with(w.as_str()) || name.starts_with(w.as_str()) {
            0.8
        } else if name.contains(w.as_str()) {
            0.6
        } else if keywords.contains(w) {
            0.5
        } else if description.contains(w.as_str()) {
            0.3
        } else {
            return None;
        };
        total += s;
    }
    Some(total / terms.words.len() as f64)
}

fn person(name: &str, email: Option<&str>) -> Value {
    json!({ "username": name, "email": email.unwrap_or_default() })
}

/// The npm search result object for a packument.
fn object(doc: &Value, score: f64) -> Value {
    let name = doc.get("name").and_then(Value::as_str).unwrap_or_default();
    let latest = latest_manifest(doc);
    let version = latest
        .and_then(|m| m.get("version"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    let time = doc.get("time");
    let date = time
        .and_then(|t| t.get(version))
        .or_else(|| time.and_then(|t| t.get("modified")))
        .cloned()
        .unwrap_or(Value::Null);
    let mut links = Map::new();
    if let Some(h) = field(doc, "homepage").and_then(Value::as_str) {
        links.insert("homepage".into(), json!(h));
    }
    let url_of = |v: Option<&Value>| {
        v.and_then(|r| r.as_str().or_else(|| r.get("url").and_then(Value::as_str)))
            .map(str::to_string)
    };
    if let Some(r) = url_of(field(doc, "repository")) {
        links.insert("repository".into(), json!(r));
    }
    if let Some(b) = url_of(field(doc, "bugs")) {
        links.insert("bugs".into(), json!(b));
    }
    let maintainers: Vec<Value> = doc
        .get("maintainers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|m| {
                    let n = m
                        .get("name")
                        .or_else(|| m.get("username"))
                        .and_then(Value::as_str)?;
                    Some(person(n, m.get("email").and_then(Value::as_str)))
                })
                .collect()
        })
        .unwrap_or_default();
    let publisher = latest
        .and_then(|m| m.get("_npmUser"))
        .and_then(|u| {
            let n = u.get("name").and_then(Value::as_str)?;
            Some(person(n, u.get("email").and_then(Value::as_str)))
        })
        .or_else(|| maintainers.first().cloned())
        .unwrap_or(Value::Null);
    let scope = name
        .strip_prefix('@')
        .and_then(|r| r.split_once('/'))
        .map_or("unscoped", |(s, _)| s);
    let mut package = json!({
        "name": name,
        "scope": scope,
        "version": version,
        "description": field(doc, "description").cloned().unwrap_or(Value::Null),
        "keywords": keywords_of(doc),
        "date": date,
        "links": links,
        "maintainers": maintainers,
    });
    if !publisher.is_null() {
        package["publisher"] = publisher;
    }
    json!({
        "package": package,
        "score": {
            "final": score,
            "detail": { "quality": score, "popularity": score, "maintenance": score }
        },
        "searchScore": score,
    })
}

/// Ranks hosted and cached documents for `query`. Hosted documents win over
/// cached ones of the same name; `allowed` hides names the caller may not
/// read. Returns npm's response shape.
pub fn run(
    query: &SearchQuery,
    hosted: &[Value],
    cached: &[Value],
    allowed: &dyn Fn(&str) -> bool,
    now_ms: i64,
) -> Value {
    let terms = parse_terms(&query.text);
    let mut seen = HashSet::new();
    let mut hits: Vec<SearchHit> = Vec::new();
    for doc in hosted.iter().chain(cached) {
        let Some(name) = doc.get("name").and_then(Value::as_str) else {
            continue;
        };
        if !seen.insert(name.to_string()) || !allowed(name) {
            continue;
        }
        if let Some(s) = score(doc, &terms) {
            hits.push(SearchHit {
                name: name.to_string(),
                score: s,
                object: object(doc, s),
            });
        }
    }
    hits.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| a.name.cmp(&b.name))
    });
    let total = hits.len();
    let objects: Vec<Value> = hits
        .into_iter()
        .skip(query.from)
        .take(query.size)
        .map(|h| h.object)
        .collect();
    json!({ "objects": objects, "total": total, "time": iso8601(now_ms) })
}

/// Candidate documents of the shared public mirror, from wherever its rows
/// live (the node's SQLite, or PostgreSQL shared by every node): only the
/// public namespace, read-only.
pub fn cached_public(meta: &dyn pnpr_store::MetaBackend, text: &str) -> Result<Vec<Value>> {
    // A cheap prefilter on the first plain word; `score` decides exactly.
    let first = parse_terms(text)
        .words
        .into_iter()
        .next()
        .unwrap_or_default();
    let rows = meta.public_search_candidates(&first, MAX_CACHED_CANDIDATES, MAX_SCANNED_BODY)?;
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    for (name, body) in rows {
        if !seen.insert(name.clone()) {
            continue;
        }
        match serde_json::from_slice::<Value>(&body) {
            Ok(mut doc) if doc.is_object() => {
                // Cached documents may lack `name`; the row key is the truth.
                doc["name"] = json!(name);
                out.push(doc);
            }
            _ => tracing::debug!(name, "skipping unparsable cached packument in search"),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
