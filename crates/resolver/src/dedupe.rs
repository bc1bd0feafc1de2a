//! pnpm's `dedupePeerDependents` (on by default): when one package id ends up
//! under several dep paths, a dep path whose dependencies are all among
//! another's (and whose resolved peer names are too) is replaced by that
//! richer one. Example: `debug@4.4.0` under `body-parser` (optional peer
//! `supports-color` missing) becomes `debug@4.4.0(supports-color@5.5.0)`,
//! the variant another parent resolved, while `body-parser` keeps its own
//! key and transitive peers.
//!
//! Invariant: the result is a pure function of the nodes and the groups'
//! order (pnpm's order of first appearance); every round either resolves a
//! whole group or stops, so it ends after at most as many rounds as groups.
//! Mirrors `resolvePeers.js` (`deduplicateAll`, `deduplicateDepPaths`,
//! `isCompatibleAndHasMoreDeps`), including its quirk that a round which
//! resolves no group completely is applied to the importers only.

use std::collections::{BTreeSet, HashMap, HashSet};

/// One dep path as the dedupe sees it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Node {
    /// Dep paths of its children and own resolved peers, one per alias.
    pub children: Vec<String>,
    /// Names of every peer that shaped its key.
    pub peer_names: BTreeSet<String>,
}

impl Node {
    fn deps_count(&self) -> usize {
        self.children.len() + self.peer_names.len()
    }
}

/// Replacements found: `children` applies to references from snapshots,
/// `importers` (a superset) to the importers' direct dependencies.
#[derive(Debug, Default)]
pub(crate) struct Replacements {
    pub children: HashMap<String, String>,
    pub importers: HashMap<String, String>,
}

/// Runs pnpm's dedupe over `groups` (the dep paths of each package id that
/// has more than one, in order of first appearance), rewriting the nodes'
/// children as pnpm does between rounds.
pub(crate) fn dedupe_peer_dependents(
    nodes: &mut HashMap<String, Node>,
    mut groups: Vec<Vec<String>>,
) -> Replacements {
    let mut out = Replacements::default();
    while !groups.is_empty() {
        let (map, remaining) = one_round(nodes, &groups);
        let stalled = remaining.len() == groups.len();
        out.importers
            .extend(map.iter().map(|(a, b)| (a.clone(), b.clone())));
        if stalled || map.is_empty() {
            break;
        }
        for node in nodes.values_mut() {
            for child in &mut node.children {
                if let Some(to) = map.get(child) {
                    *child = to.clone();
                }
            }
        }
        out.children.extend(map);
        groups = remaining;
    }
    out
}

/// One `deduplicateDepPaths` pass: the mapping it finds and the groups that
/// keep some dep path no mapping touched.
fn one_round(
    nodes: &HashMap<String, Node>,
    groups: &[Vec<String>],
) -> (HashMap<String, String>, Vec<Vec<String>>) {
    let count = |p: &String| nodes.get(p).map_or(0, Node::deps_count);
    let mut map = HashMap::new();
    let mut remaining = Vec::new();
    for group in groups {
        let mut unresolved: Vec<String> = group.clone();
        let mut current = group.clone();
        // A stable sort by dependency count, taken from the end: the richest
        // (latest among equals) absorbs what it can.
        current.sort_by_key(count);
        while let Some(first) = current.pop() {
            let mut next = Vec::new();
            while let Some(second) = current.pop() {
                if compatible_and_richer(nodes, &first, &second) {
                    unresolved.retain(|p| *p != first && *p != second);
                    map.insert(second, first.clone());
                } else {
                    next.push(second);
                }
            }
            next.sort_by_key(count);
            current = next;
        }
        if !unresolved.is_empty() {
            remaining.push(unresolved);
        }
    }
    (map, remaining)
}

/// Whether `rich` can stand in for `poor`: at least as many dependencies,
/// every dependency of `poor` among its own, every peer name of `poor` too.
fn compatible_and_richer(nodes: &HashMap<String, Node>, rich: &str, poor: &str) -> bool {
    let (Some(a), Some(b)) = (nodes.get(rich), nodes.get(poor)) else {
        return false;
    };
    if a.deps_count() < b.deps_count() {
        return false;
    }
    let own: HashSet<&String> = a.children.iter().collect();
    b.children.iter().all(|c| own.contains(c)) && b.peer_names.is_subset(&a.peer_names)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(children: &[&str], peers: &[&str]) -> Node {
        Node {
            children: children.iter().map(|s| s.to_string()).collect(),
            peer_names: peers.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn the_richer_compatible_variant_absorbs_the_poorer_one() {
        let mut nodes: HashMap<String, Node> = [
            ("d@1".to_string(), node(&["ms@2"], &[])),
            ("d@1(s@5)".to_string(), node(&["ms@2", "s@5"], &["s"])),
            ("p@1".to_string(), node(&["d@1"], &[])),
        ]
        .into();
        let groups = vec![vec!["d@1".to_string(), "d@1(s@5)".to_string()]];
        let r = dedupe_peer_dependents(&mut nodes, groups);
        assert_eq!(r.children["d@1"], "d@1(s@5)");
        assert_eq!(nodes["p@1"].children, vec!["d@1(s@5)".to_string()]);
    }

    #[test]
    fn incompatible_variants_stay_and_a_stalled_round_reaches_importers_only() {
        let mut nodes: HashMap<String, Node> = [
            ("d@1(a@1)".to_string(), node(&["a@1"], &["a"])),
            ("d@1(a@2)".to_string(), node(&["a@2"], &["a"])),
        ]
        .into();
        let groups = vec![vec!["d@1(a@1)".to_string(), "d@1(a@2)".to_string()]];
        let r = dedupe_peer_dependents(&mut nodes, groups);
        assert!(r.children.is_empty() && r.importers.is_empty());

        // Three variants: two merge, one stays, so the group is not fully
        // resolved and the round only reaches the importers (pnpm's quirk).
        let mut nodes: HashMap<String, Node> = [
            ("e@1".to_string(), node(&["x@1"], &[])),
            ("e@1(s@5)".to_string(), node(&["x@1", "s@5"], &["s"])),
            ("e@1(t@1)".to_string(), node(&["y@1", "t@1"], &["t"])),
        ]
        .into();
        let groups = vec![vec![
            "e@1".to_string(),
            "e@1(s@5)".to_string(),
            "e@1(t@1)".to_string(),
        ]];
        let r = dedupe_peer_dependents(&mut nodes, groups);
        assert!(r.children.is_empty());
        assert_eq!(r.importers["e@1"], "e@1(s@5)");
    }
}
