//! `packageExtensions`: extra dependency fields merged into registry
//! manifests that match a `name@range` selector (pnpm's read-package hook,
//! `hooks/read-package-hook/lib/createPackageExtender.js`).
//!
//! Invariant: an extension only adds entries — for each of the four fields
//! the manifest's own entries win over the extension's — and it is applied
//! once, where a package version first enters the graph, so every later
//! reader (children, peers, the lockfile's `peerDependencies`) sees the same
//! manifest.

use nodejs_semver::{Range, Version};
use serde_json::{Map, Value};

use crate::pick::split_name_range;

/// The manifest fields an extension may add to.
const FIELDS: [&str; 4] = [
    "dependencies",
    "optionalDependencies",
    "peerDependencies",
    "peerDependenciesMeta",
];

/// One parsed selector with its extension object.
#[derive(Debug, Clone)]
pub(crate) struct Extension {
    name: String,
    /// `None`: every version. A range that does not parse matches nothing.
    range: Option<Option<Range>>,
    fields: Map<String, Value>,
}

/// Parses `(selector, extension)` pairs; non-object extensions are skipped.
pub(crate) fn parse(list: &[(String, Value)]) -> Vec<Extension> {
    list.iter()
        .filter_map(|(selector, ext)| {
            let fields = ext.as_object()?.clone();
            let (name, range) = split_name_range(selector);
            Some(Extension {
                name: name.to_string(),
                range: range.map(|r| Range::parse(r.trim()).ok()),
                fields,
            })
        })
        .collect()
}

/// Merges every matching extension into `manifest`, in list order.
pub(crate) fn apply(exts: &[Extension], name: &str, version: &str, manifest: &mut Value) {
    let Some(m) = manifest.as_object_mut() else {
        return;
    };
    let parsed = Version::parse(version).ok();
    for ext in exts.iter().filter(|e| e.name == name) {
        let matches = match &ext.range {
            None => true,
            Some(Some(r)) => parsed.as_ref().is_some_and(|v| r.satisfies(v)),
            Some(None) => false,
        };
        if !matches {
            continue;
        }
        for field in FIELDS {
            let Some(Value::Object(add)) = ext.fields.get(field) else {
                continue;
            };
            let mut merged = add.clone();
            if let Some(Value::Object(own)) = m.get(field) {
                for (k, v) in own {
                    merged.insert(k.clone(), v.clone());
                }
            }
            m.insert(field.to_string(), Value::Object(merged));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn extensions_add_entries_the_manifest_lacks_for_matching_versions() {
        let exts = parse(&[
            (
                "debug@<4.2.0".to_string(),
                json!({"peerDependenciesMeta": {"supports-color": {"optional": true}}}),
            ),
            (
                "x".to_string(),
                json!({"dependencies": {"a": "1", "b": "2"}}),
            ),
            (
                "y@not a range".to_string(),
                json!({"dependencies": {"a": "1"}}),
            ),
        ]);
        let mut old = json!({"name": "debug", "version": "2.6.9"});
        apply(&exts, "debug", "2.6.9", &mut old);
        assert_eq!(
            old["peerDependenciesMeta"]["supports-color"]["optional"],
            true
        );
        let mut new = json!({"name": "debug", "version": "4.3.0"});
        apply(&exts, "debug", "4.3.0", &mut new);
        assert!(new.get("peerDependenciesMeta").is_none());
        let mut x = json!({"dependencies": {"a": "9"}});
        apply(&exts, "x", "1.0.0", &mut x);
        assert_eq!(x["dependencies"], json!({"a": "9", "b": "2"}));
        let mut y = json!({});
        apply(&exts, "y", "1.0.0", &mut y);
        assert_eq!(y, json!({}));
    }
}
