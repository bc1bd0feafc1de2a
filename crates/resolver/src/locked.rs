//! Locked peer contexts: how a resolution that reuses the input lockfile keeps
//! the peer providers the lockfile recorded (RFC 0007, R16).
//!
//! pnpm 11.5.2 remembers, for every tree node it took from the lockfile, the
//! lockfile entry it came from (`previousDepPath`) and, when that entry has
//! peers, which entry provided each of them (`lockedPeerContext`). When any
//! node has such a context it runs the peers phase twice; in the second pass a
//! node's locked peer resolves to the node now standing for the old provider,
//! even where no provider is visible, as long as that provider still resolves
//! to the very same suffix-free entry, no current provider must win, and its
//! version satisfies the peer range. This module owns the two halves of that
//! bookkeeping: [`SeedTree`], filled by the tree phase (which occurrence of
//! each package reused which lockfile entry), and [`Reuse`], the per-walk
//! state of the peers phase. Invariant: nothing here changes a version pick;
//! it only decides which provider a peer of a reused occurrence resolves to,
//! and only providers whose key is a plain package id in both passes.

use std::collections::{BTreeMap, HashMap, HashSet};

use nodejs_semver::{Range, Version};
use pnpr_lockfile::{ImporterDep, Lockfile};

/// Where a package's children were resolved: its first occurrence in the
/// tree phase's breadth-first order (pnpm's "new" node of that package).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Origin {
    /// A direct dependency of importer `.0` under alias `.1`.
    Root(usize, String),
    /// The child under alias `.1` of package id `.0`'s first occurrence.
    Child(String, String),
}

/// What the tree phase took from the input lockfile, by position.
#[derive(Debug, Default)]
pub(crate) struct SeedTree {
    /// Importer → alias → the lockfile entry its reference names.
    roots: Vec<HashMap<String, String>>,
    /// (parent id, alias) → the entry the parent's lockfile entry names for
    /// that child, at the parent's first occurrence.
    children: HashMap<(String, String), String>,
    origin: HashMap<String, Origin>,
    /// Lockfile entry of each package's first occurrence (its children's
    /// references are read from it).
    keys: HashMap<String, String>,
    /// Ids whose first occurrence reused its entry (pnpm's `update === false`).
    locked: HashSet<String>,
    /// Entry → peer → entry of its recorded provider.
    contexts: HashMap<String, BTreeMap<String, String>>,
    /// Names resolved afresh (pnpm's `updatedSet`): their occurrences are
    /// never locked, and a provider of such a name must win.
    pub updated: HashSet<String>,
}

/// pnpm's `refToRelative`: the entry a lockfile reference names.
fn ref_path(alias: &str, reference: &str) -> Option<String> {
    if reference.starts_with("link:") || reference.starts_with("file:") {
        return None;
    }
    if reference.starts_with('@') {
        return Some(reference.to_string());
    }
    let at = reference.find('@');
    let before = |c: char| reference.find(c).is_none_or(|i| at.is_some_and(|a| a < i));
    match at {
        Some(_) if before(':') && before('(') => Some(reference.to_string()),
        _ => Some(format!("{alias}@{reference}")),
    }
}

/// The importer's lockfile entry for direct dependency `alias` of `dir`.
pub(crate) fn importer_dep<'l>(
    seed: &'l Lockfile,
    dir: &str,
    alias: &str,
) -> Option<&'l ImporterDep> {
    let imp = seed.importers.get(dir)?;
    imp.dependencies
        .get(alias)
        .or_else(|| imp.dev_dependencies.get(alias))
        .or_else(|| imp.optional_dependencies.get(alias))
}

/// The version of an entry key (`name@version(peers…)`).
fn entry_version(path: &str) -> Option<&str> {
    let id = crate::strip_suffix(path);
    crate::pick::split_name_range(id).1
}

impl SeedTree {
    /// Records the entry the importer's `reference` names for direct
    /// dependency `alias` of importer `idx`, when the lockfile holds it and
    /// its version still satisfies `range` (or, for a non-range specifier,
    /// the specifier is unchanged): pnpm's `referenceSatisfiesWantedSpec`.
    pub fn note_root(
        &mut self,
        seed: &Lockfile,
        at: (usize, &str),
        reference: &str,
        range: &str,
        spec_unchanged: bool,
    ) {
        let (idx, alias) = at;
        if self.roots.len() <= idx {
            self.roots.resize_with(idx + 1, HashMap::new);
        }
        if let Some(path) = self.reusable(seed, alias, reference, range, spec_unchanged) {
            self.roots[idx].insert(alias.to_string(), path);
        }
    }

    /// Records the entry `parent`'s lockfile entry names for its child `alias`.
    pub fn note_child(&mut self, seed: &Lockfile, parent: &str, alias: &str, range: &str) {
        let Some(snap) = self.keys.get(parent).and_then(|k| seed.snapshots.get(k)) else {
            return;
        };
        let Some(reference) = snap
            .dependencies
            .get(alias)
            .or_else(|| snap.optional_dependencies.get(alias))
            .cloned()
        else {
            return;
        };
        if let Some(path) = self.reusable(seed, alias, &reference, range, false) {
            self.children
                .insert((parent.to_string(), alias.to_string()), path);
        }
    }

    /// The entry `reference` names, if the lockfile holds it and it fits.
    fn reusable(
        &mut self,
        seed: &Lockfile,
        alias: &str,
        reference: &str,
        range: &str,
        spec_unchanged: bool,
    ) -> Option<String> {
        let path = ref_path(alias, reference)?;
        seed.snapshots.get(&path)?;
        let version = Version::parse(entry_version(&path)?).ok()?;
        let fits = match Range::parse(range) {
            Ok(r) => r.satisfies(&version),
            Err(_) => spec_unchanged,
        };
        if !fits {
            return None;
        }
        if !self.contexts.contains_key(&path) {
            let ctx = locked_context(seed, &path);
            if !ctx.is_empty() {
                self.contexts.insert(path.clone(), ctx);
            }
        }
        Some(path)
    }

    /// Records that `id` (package `name@version`) is first met at `at`;
    /// `updated`: its name is in pnpm's `updatedSet`.
    pub fn note_first(&mut self, id: &str, version: &str, at: Origin, updated: bool) {
        let path = match &at {
            Origin::Root(idx, alias) => self.roots.get(*idx).and_then(|m| m.get(alias)),
            Origin::Child(parent, alias) => self.children.get(&(parent.clone(), alias.clone())),
        }
        .cloned();
        self.origin.insert(id.to_string(), at);
        let Some(path) = path else { return };
        if !updated && entry_version(&path) == Some(version) {
            self.locked.insert(id.to_string());
        }
        self.keys.insert(id.to_string(), path);
    }

    /// Whether `id`'s first occurrence is recorded already.
    pub fn has_origin(&self, id: &str) -> bool {
        self.origin.contains_key(id)
    }
}

/// pnpm's `getLockedPeerContext`: peer → entry of the provider the lockfile
/// entry `path` recorded (its dependency of that name).
fn locked_context(seed: &Lockfile, path: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let (Some(info), Some(snap)) = (
        seed.packages.get(crate::strip_suffix(path)),
        seed.snapshots.get(path),
    ) else {
        return out;
    };
    for peer in info.peer_dependencies.keys() {
        let reference = snap
            .dependencies
            .get(peer)
            .or_else(|| snap.optional_dependencies.get(peer));
        if let Some(p) = reference.and_then(|r| ref_path(peer, r)) {
            out.insert(peer.clone(), p);
        }
    }
    out
}

/// Rank of an occurrence standing for a lockfile entry: pnpm looks providers
/// up in its tree's insertion order, where every first occurrence (resolved
/// node) precedes every later one (pending node); then by depth, then order.
type Rank = (bool, usize, usize);

/// One placement of a package in the peers walk, as [`Reuse`] records it.
pub(crate) struct Placement<'a> {
    pub occ: usize,
    pub id: &'a str,
    pub name: &'a str,
    pub fresh: bool,
    /// The package's closure has no peers (its one occurrence is shared).
    pub pure: bool,
    pub depth: usize,
}

/// Per-walk state of the peers phase (pnpm's `previousDepPath`,
/// `lockedPeerContext`, `nodeIdsByPreviousDepPath` and the providers that
/// must win).
#[derive(Debug, Default)]
pub(crate) struct Reuse {
    /// Occurrence → the lockfile entry it was taken from.
    previous: HashMap<usize, String>,
    /// Occurrences whose children's lockfile references apply (their
    /// package's first occurrence; the shared occurrence of a pure package).
    expanding: HashSet<usize>,
    /// Entry → the occurrence pnpm would find first for it.
    by_previous: HashMap<String, (Rank, usize)>,
    seq: usize,
    /// Second pass only: entries that may provide a locked peer (suffix-free,
    /// and the first pass resolved their occurrence to the same key).
    pub providers: Option<HashSet<String>>,
    /// The walked importer's direct occurrences: occ → (alias, reused).
    direct: HashMap<usize, Vec<(String, bool)>>,
    /// For each ancestor on the walk's stack, its children whose current
    /// provider must win (not reused from the parent's lockfile entry).
    must_win: Vec<HashSet<usize>>,
    /// Whether some placed occurrence carries a locked peer context.
    pub saw_context: bool,
}

impl Reuse {
    /// A new importer walk starts.
    pub fn start_importer(&mut self) {
        self.direct.clear();
    }

    /// Direct dependency `alias` of importer `idx` was placed.
    pub fn placed_root(&mut self, seed: &SeedTree, idx: usize, alias: &str, p: Placement<'_>) {
        let info = seed.roots.get(idx).and_then(|m| m.get(alias));
        let here = seed.origin.get(p.id) == Some(&Origin::Root(idx, alias.to_string()));
        let previous = self.record(seed, info, here, &p);
        self.direct
            .entry(p.occ)
            .or_default()
            .push((alias.to_string(), previous));
    }

    /// Child `alias` of occurrence `parent` (package `parent_id`) was placed;
    /// returns whether its provider must win over a locked one.
    pub fn placed_child(
        &mut self,
        seed: &SeedTree,
        parent: (usize, &str),
        alias: &str,
        p: Placement<'_>,
    ) -> bool {
        let (parent_occ, parent_id) = parent;
        if !self.expanding.contains(&parent_occ) {
            if p.fresh && p.pure {
                self.expanding.insert(p.occ);
            }
            return false;
        }
        let key = (parent_id.to_string(), alias.to_string());
        let info = seed.children.get(&key);
        let here = seed.origin.get(p.id) == Some(&Origin::Child(key.0, key.1));
        self.record(seed, info, here, &p);
        info.is_none() || seed.updated.contains(p.name)
    }

    /// Records what a placement reused; returns whether it has an entry.
    fn record(
        &mut self,
        seed: &SeedTree,
        info: Option<&String>,
        here: bool,
        p: &Placement<'_>,
    ) -> bool {
        // pnpm keeps the entry of a first occurrence only when it reused
        // it (`update === false`); later occurrences always keep theirs.
        let previous = info.filter(|_| !here || seed.locked.contains(p.id));
        if p.fresh && (here || p.pure) {
            self.expanding.insert(p.occ);
        }
        let Some(path) = previous else {
            return false;
        };
        if p.fresh {
            self.saw_context |= seed.contexts.contains_key(path);
            self.previous.insert(p.occ, path.clone());
        }
        self.seq += 1;
        let rank = (!here, p.depth, self.seq);
        let best = self
            .by_previous
            .entry(path.clone())
            .or_insert((rank, p.occ));
        if rank < best.0 {
            *best = (rank, p.occ);
        }
        true
    }

    /// Entries that may provide a locked peer in the second pass, given the
    /// first pass's key of each occurrence.
    pub fn usable_providers(&self, mut key_of: impl FnMut(usize) -> String) -> HashSet<String> {
        self.by_previous
            .iter()
            .filter(|(path, (_, occ))| !path.contains('(') && key_of(*occ) == **path)
            .map(|(path, _)| path.clone())
            .collect()
    }

    /// An ancestor's children were placed (entered before its children are
    /// filled, left after).
    pub fn enter(&mut self, must_win: HashSet<usize>) {
        self.must_win.push(must_win);
    }

    pub fn leave(&mut self) {
        self.must_win.pop();
    }

    /// pnpm's `hasCurrentPeerProviderThatMustWin` for the visible provider
    /// `visible` of `peer`: a direct dependency under another alias or not
    /// reused from the lockfile, or a child an ancestor did not reuse.
    fn must_win(&self, peer: &str, visible: Option<usize>) -> bool {
        let Some(v) = visible else {
            return false;
        };
        let direct = self
            .direct
            .get(&v)
            .is_some_and(|l| l.iter().any(|(alias, reused)| alias != peer || !reused));
        direct || self.must_win.iter().any(|s| s.contains(&v))
    }

    /// The locked peers of occurrence `occ` that apply in the second pass:
    /// peer → provider entry. `own` are the package's peers now (name →
    /// range), `visible` the provider each would otherwise see.
    pub fn locked_peers(
        &self,
        seed: &SeedTree,
        occ: usize,
        own: &BTreeMap<String, String>,
        visible: impl Fn(&str) -> Option<usize>,
    ) -> Vec<(String, String)> {
        let (Some(usable), Some(ctx)) = (
            self.providers.as_ref(),
            self.previous.get(&occ).and_then(|p| seed.contexts.get(p)),
        ) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (peer, path) in ctx {
            let Some(range) = own.get(peer) else { continue };
            if !usable.contains(path) || self.must_win(peer, visible(peer)) {
                continue;
            }
            let fits = entry_version(path)
                .and_then(|v| Version::parse(v).ok())
                .zip(Range::parse(range.trim_start_matches("workspace:")).ok())
                .is_some_and(|(v, r)| r.satisfies_with_prerelease(&v, true));
            if fits {
                out.push((peer.clone(), path.clone()));
            }
        }
        out
    }
}
