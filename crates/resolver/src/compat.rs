//! pnpm's compatibility database (`data/compat-db.json`, from
//! `@yarnpkg/extensions`): package extensions pnpm merges into manifests
//! before the user's own `packageExtensions` (pnpm's read-package hook
//! order, `createReadPackageHook`).
//!
//! Invariant: the entries a request gets are exactly those of the database
//! version its client bundles ([`Dialect`]), in the database's order, and
//! none when the client set `ignoreCompatibilityDb`.

use std::sync::OnceLock;

use serde_json::Value;

use crate::Dialect;

/// The embedded database; validated by the unit test below.
const DATA: &str = include_str!("../data/compat-db.json");

/// `(selector, extension, since 2.0.7)` in database order.
fn database() -> &'static [(String, Value, bool)] {
    static DB: OnceLock<Vec<(String, Value, bool)>> = OnceLock::new();
    DB.get_or_init(|| {
        let entries: Vec<Value> = serde_json::from_str(DATA).unwrap_or_default();
        entries
            .into_iter()
            .filter_map(|e| {
                let selector = e.get("selector")?.as_str()?.to_string();
                let newer = e.get("since").and_then(Value::as_str) == Some("2.0.7");
                Some((selector, e.get("extension")?.clone(), newer))
            })
            .collect()
    })
}

/// The extensions a resolution applies: the database of `dialect`'s pnpm
/// (unless ignored), then the request's own, in that order.
pub(crate) fn with_database(
    dialect: Dialect,
    ignore: bool,
    own: &[(String, Value)],
) -> Vec<(String, Value)> {
    let mut out: Vec<(String, Value)> = if ignore {
        Vec::new()
    } else {
        database()
            .iter()
            .filter(|(_, _, newer)| !newer || dialect.newer())
            .map(|(s, e, _)| (s.clone(), e.clone()))
            .collect()
    };
    out.extend(own.iter().cloned());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_parses_whole_and_versions_differ_by_the_newer_entries() {
        let all: Vec<Value> = serde_json::from_str(DATA).expect("valid JSON");
        assert_eq!(database().len(), all.len());
        let old = with_database(Dialect::Pnpm11_5, false, &[]);
        let new = with_database(Dialect::Pnpm11_9, false, &[]);
        assert_eq!(new.len(), all.len());
        assert_eq!(new.len() - old.len(), 8, "2.0.7 adds 8 entries to 2.0.6");
        assert!(old.iter().any(|(s, _)| s == "debug@<4.2.0"));
        assert!(!old.iter().any(|(s, _)| s == "@volar/typescript@*"));
        assert!(with_database(Dialect::Pnpm11_9, true, &[]).is_empty());
    }

    #[test]
    fn the_requests_own_extensions_come_after_the_database() {
        let own = vec![("debug".to_string(), serde_json::json!({}))];
        let list = with_database(Dialect::Pnpm11_5, false, &own);
        assert_eq!(list.last(), own.last());
    }
}
