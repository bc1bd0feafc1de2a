//! What an audit request may tell the audit uplink: the request bodies of
//! the three audit endpoints with every package name the caller may not
//! name upstream removed.
//!
//! Invariant guarded: no key naming a package survives unless `keep`
//! accepted it, at any depth of the body; fields that could carry private
//! names or URLs in values (`resolved`, the root project's `name`) are
//! dropped or replaced. A body that is not the documented shape is refused,
//! never forwarded as it is.

use serde_json::{Map, Value};

/// Which audit endpoint a body belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditKind {
    /// `POST /-/npm/v1/security/advisories/bulk`: `{name: [versions]}`.
    Bulk,
    /// `POST /-/npm/v1/security/audits/quick`: an npm v1 audit tree.
    Quick,
    /// `POST /-/npm/v1/security/audits`: the same tree, full report.
    Full,
}

impl AuditKind {
    /// The path under a registry URL.
    pub fn path(self) -> &'static str {
        match self {
            Self::Bulk => "-/npm/v1/security/advisories/bulk",
            Self::Quick => "-/npm/v1/security/audits/quick",
            Self::Full => "-/npm/v1/security/audits",
        }
    }
}

/// Why a body cannot be forwarded.
#[derive(Debug, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

/// How many package names (at all depths) one request may carry.
pub const MAX_NAMES: usize = 100_000;

/// The body to send upstream and how many names were withheld.
#[derive(Debug)]
pub struct Filtered {
    pub body: Value,
    pub withheld: usize,
}

/// Removes every name `keep` refuses from `body`.
pub fn filter(
    kind: AuditKind,
    body: Value,
    keep: &dyn Fn(&str) -> bool,
) -> Result<Filtered, Malformed> {
    let mut counter = Counter::default();
    let body = match kind {
        AuditKind::Bulk => bulk(body, keep, &mut counter)?,
        AuditKind::Quick | AuditKind::Full => tree(body, keep, &mut counter)?,
    };
    Ok(Filtered {
        body,
        withheld: counter.withheld,
    })
}

#[derive(Default)]
struct Counter {
    seen: usize,
    withheld: usize,
}

impl Counter {
    fn admit(&mut self, name: &str, keep: &dyn Fn(&str) -> bool) -> Result<bool, Malformed> {
        self.seen += 1;
        if self.seen > MAX_NAMES {
            return Err(Malformed("too many packages in one audit request"));
        }
        let ok = keep(name);
        if !ok {
            self.withheld += 1;
        }
        Ok(ok)
    }
}

fn bulk(body: Value, keep: &dyn Fn(&str) -> bool, c: &mut Counter) -> Result<Value, Malformed> {
    let Value::Object(map) = body else {
        return Err(Malformed("expected an object of package names to versions"));
    };
    let mut out = Map::new();
    for (name, versions) in map {
        let Value::Array(list) = &versions else {
            return Err(Malformed("expected a list of versions for each package"));
        };
        if !list.iter().all(Value::is_string) {
            return Err(Malformed("versions must be strings"));
        }
        if c.admit(&name, keep)? {
            out.insert(name, versions);
        }
    }
    Ok(Value::Object(out))
}

/// Placeholder for the root project's name, which is the caller's own and
/// may be private.
const ROOT_NAME: &str = "pnpr-audit";

fn tree(body: Value, keep: &dyn Fn(&str) -> bool, c: &mut Counter) -> Result<Value, Malformed> {
    let Value::Object(mut root) = body else {
        return Err(Malformed("expected an npm audit report object"));
    };
    root.insert("name".into(), Value::String(ROOT_NAME.into()));
    // `install`/`remove` list names of the action that triggered the audit.
    for key in ["install", "remove"] {
        if let Some(v) = root.get_mut(key) {
            *v = names_list(std::mem::take(v), keep, c)?;
        }
    }
    filter_requires(&mut root, keep, c)?;
    filter_dependencies(&mut root, keep, c)?;
    Ok(Value::Object(root))
}

fn names_list(v: Value, keep: &dyn Fn(&str) -> bool, c: &mut Counter) -> Result<Value, Malformed> {
    let Value::Array(items) = v else {
        return Ok(Value::Array(Vec::new()));
    };
    let mut out = Vec::new();
    for item in items {
        // Entries look like `name@spec` or `@scope/name@spec`.
        let Some(s) = item.as_str() else { continue };
        let name = match s.strip_prefix('@') {
            Some(rest) => rest.split_once('@').map_or(s, |(n, _)| &s[..n.len() + 1]),
            None => s.split_once('@').map_or(s, |(n, _)| n),
        };
        if c.admit(name, keep)? {
            out.push(item);
        }
    }
    Ok(Value::Array(out))
}

fn filter_requires(
    node: &mut Map<String, Value>,
    keep: &dyn Fn(&str) -> bool,
    c: &mut Counter,
) -> Result<(), Malformed> {
    let Some(req) = node.get_mut("requires") else {
        return Ok(());
    };
    let Value::Object(map) = std::mem::take(req) else {
        // npm's lockfile v1 `requires: true` flag.
        node.remove("requires");
        return Ok(());
    };
    let mut out = Map::new();
    for (name, spec) in map {
        if c.admit(&name, keep)? {
            out.insert(name, spec);
        }
    }
    node.insert("requires".into(), Value::Object(out));
    Ok(())
}

fn filter_dependencies(
    node: &mut Map<String, Value>,
    keep: &dyn Fn(&str) -> bool,
    c: &mut Counter,
) -> Result<(), Malformed> {
    let Some(deps) = node.remove("dependencies") else {
        return Ok(());
    };
    let Value::Object(map) = deps else {
        return Err(Malformed("dependencies must be an object"));
    };
    let mut out = Map::new();
    for (name, dep) in map {
        let Value::Object(mut dep) = dep else {
            return Err(Malformed("each dependency must be an object"));
        };
        if !c.admit(&name, keep)? {
            continue;
        }
        // A tarball URL names the registry path it came from.
        dep.remove("resolved");
        filter_requires(&mut dep, keep, c)?;
        filter_dependencies(&mut dep, keep, c)?;
        out.insert(name, Value::Object(dep));
    }
    node.insert("dependencies".into(), Value::Object(out));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn public(name: &str) -> bool {
        !name.starts_with("@corp/") && name != "hosted-thing"
    }

    #[test]
    fn bulk_drops_private_names() {
        let body =
            json!({"lodash": ["4.17.20"], "@corp/secret": ["1.0.0"], "hosted-thing": ["2.0.0"]});
        let f = filter(AuditKind::Bulk, body, &public).expect("ok");
        assert_eq!(f.body, json!({"lodash": ["4.17.20"]}));
        assert_eq!(f.withheld, 2);
        assert!(filter(AuditKind::Bulk, json!({"a": "1.0.0"}), &public).is_err());
        assert!(filter(AuditKind::Bulk, json!([1]), &public).is_err());
    }

    #[test]
    fn trees_drop_private_names_at_every_depth() {
        let body = json!({
            "name": "@corp/app", "version": "1.0.0",
            "install": ["@corp/secret@1.0.0", "lodash@4"], "remove": [],
            "requires": {"lodash": "^4", "@corp/secret": "^1"},
            "dependencies": {
                "lodash": {"version": "4.17.20", "resolved": "http://h/~corp/x.tgz",
                           "requires": {"@corp/secret": "^1"},
                           "dependencies": {"@corp/secret": {"version": "1.0.0"}}},
                "@corp/secret": {"version": "1.0.0", "requires": {"lodash": "^4"}}
            },
            "metadata": {}
        });
        let f = filter(AuditKind::Quick, body, &public).expect("ok");
        let text = f.body.to_string();
        assert!(!text.contains("corp"), "{text}");
        assert!(!text.contains("resolved"), "{text}");
        assert_eq!(f.body["dependencies"]["lodash"]["version"], "4.17.20");
        assert_eq!(f.body["install"], json!(["lodash@4"]));
        assert_eq!(f.body["name"], ROOT_NAME);
        assert_eq!(f.withheld, 5);
    }
}
