//! Peer-dependency resolution and lockfile assembly.
//!
//! Walks each importer's tree of package occurrences, resolves every peer from the
//! packages visible at that position (the node's ancestors' children), propagates
//! peers resolved from above into the parent's suffix (pnpm v9 keys
//! `name@version(peer@version)`), and writes `packages`/`snapshots`. Peers resolved
//! below an importer's root are hoisted into its root scope, and a child equal to
//! the provider already visible under its alias does not shadow it. Invariant: a
//! snapshot key is a pure function of the package id and the resolved peer targets;
//! a peer that can reach the node back through peer edges is written without its own
//! suffix, so keys stay finite on peer cycles.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::rc::Rc;

use rustc_hash::{FxHashMap, FxHashSet};

use pnpr_lockfile::{Importer, ImporterDep, Lockfile, PackageInfo, PeerMeta, Snapshot};
use serde_json::Value;

use crate::{Dialect, Graph, Group, Pkg, ResolveOptions, ResolvedPackage, Target};

#[derive(Debug, Clone)]
enum OccRef {
    Occ(usize),
    Link(String),
}

#[derive(Debug, Default)]
struct Occ {
    pkg_id: String,
    children: Vec<(String, OccRef, bool)>,
    /// Own peers resolved from above: name → (target, optional peer).
    own_peers: BTreeMap<String, (usize, bool)>,
    /// All peers that shape the key: name → target.
    suffix: BTreeMap<String, usize>,
    transitive: BTreeSet<String>,
    missing: BTreeSet<String>,
    /// A reference to a locked peer's provider ([`crate::locked`]): it only
    /// names the provider's suffix-free key; its snapshot comes from the
    /// provider's own occurrence.
    detached: bool,
}

/// The children of one occurrence once placed.
#[derive(Default)]
struct PlacedChildren {
    /// alias, reference, optional — in manifest order.
    children: Vec<(String, OccRef, bool)>,
    /// Occurrences placed fresh, still to be filled.
    to_fill: Vec<usize>,
    /// alias → occurrence of every registry child.
    child_map: FxHashMap<String, usize>,
    /// Children whose provider must win over a locked peer's.
    must_win: HashSet<usize>,
}

/// A declared peer: name, range, optional.
type PeerSpec = (String, String, bool);

fn own_peer_specs(manifest: &Value, self_name: &str, dialect: Dialect) -> Vec<PeerSpec> {
    crate::normalized_peers(manifest, self_name, dialect)
        .into_iter()
        .map(|(k, (range, optional))| (k, range, optional))
        .collect()
}

struct Builder<'g> {
    g: &'g Graph,
    occs: Vec<Occ>,
    impure: FxHashSet<String>,
    /// Each package's own peers ([`own_peer_specs`]), read once per walk
    /// instead of once per occurrence; packages without peers are absent.
    peer_specs: FxHashMap<&'g str, Rc<[PeerSpec]>>,
    pure_occ: FxHashMap<String, usize>,
    /// Required peers no provider satisfies: name → wanted ranges.
    missing: BTreeMap<String, Vec<String>>,
    /// Optional peers no provider satisfies that take part in the tree
    /// phase's peer collection ([`Builder::collects`]): name → wanted ranges
    /// (candidates for pnpm's optional-peer hoisting).
    missing_optional: BTreeMap<String, Vec<String>>,
    scope: Vec<FxHashMap<String, usize>>,
    ancestors: Vec<(String, usize)>,
    /// Peers resolved from a provider below the root scope: name → package id
    /// (the last resolution wins, as in pnpm's merge of resolved peers).
    resolved_below: BTreeMap<String, String>,
    /// Occurrences in the order their fill finished (children before
    /// parents, as pnpm adds dep paths to its graph).
    finished: Vec<usize>,
    /// Lockfile-reuse state (locked peer contexts).
    reuse: crate::locked::Reuse,
    /// Detached provider occurrence of each impure package id.
    detached: FxHashMap<String, usize>,
}

impl<'g> Builder<'g> {
    fn new(g: &'g Graph) -> Self {
        let peer_specs: FxHashMap<&'g str, Rc<[PeerSpec]>> = g
            .pkgs
            .iter()
            .map(|(id, p)| (id.as_str(), own_peer_specs(&p.manifest, &p.name, g.dialect)))
            .filter(|(_, specs)| !specs.is_empty())
            .map(|(id, specs)| (id, specs.into()))
            .collect();
        // A package is impure when its closure contains any peer dependency.
        let mut impure: FxHashSet<String> = peer_specs.keys().map(|id| id.to_string()).collect();
        loop {
            let mut changed = false;
            for (id, p) in &g.pkgs {
                if impure.contains(id) {
                    continue;
                }
                if p.children
                    .iter()
                    .any(|c| matches!(&c.target, Target::Pkg(t) if impure.contains(t)))
                {
                    impure.insert(id.clone());
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        Self {
            g,
            occs: Vec::new(),
            impure,
            peer_specs,
            pure_occ: FxHashMap::default(),
            missing: BTreeMap::new(),
            missing_optional: BTreeMap::new(),
            scope: Vec::new(),
            ancestors: Vec::new(),
            resolved_below: BTreeMap::new(),
            finished: Vec::new(),
            reuse: crate::locked::Reuse::default(),
            detached: FxHashMap::default(),
        }
    }

    /// Whether the tree phase collects `peer` of `manifest` as missing or
    /// resolved-from-above (and so hoists it): pnpm 11.5.2 reads
    /// `peerDependencies` only (R3, R9); pnpm 11.9+ reads the materialized
    /// peer set, which adds `peerDependenciesMeta`-only optional peers (R17).
    fn collects(&self, manifest: &Value, peer: &str) -> bool {
        self.g.dialect.newer() || declares_peer(manifest, peer)
    }

    /// The own peers of package `id`.
    fn peer_specs(&self, id: &str) -> Rc<[PeerSpec]> {
        self.peer_specs
            .get(id)
            .cloned()
            .unwrap_or_else(|| Rc::new([]))
    }

    fn alloc(&mut self, pkg_id: &str) -> usize {
        self.occs.push(Occ {
            pkg_id: pkg_id.to_string(),
            ..Default::default()
        });
        self.occs.len() - 1
    }

    /// Occurrence for `pkg_id` placed under the current scope; returns it and whether
    /// it still needs filling.
    fn place(&mut self, pkg_id: &str) -> (usize, bool) {
        if let Some((_, occ)) = self.ancestors.iter().find(|(id, _)| id == pkg_id) {
            return (*occ, false);
        }
        if !self.impure.contains(pkg_id) {
            if let Some(o) = self.pure_occ.get(pkg_id) {
                return (*o, false);
            }
            let o = self.alloc(pkg_id);
            self.pure_occ.insert(pkg_id.to_string(), o);
            return (o, true);
        }
        (self.alloc(pkg_id), true)
    }

    /// The provider of `name` visible here, and whether it sits in the root scope.
    fn lookup(&self, name: &str) -> Option<(usize, bool)> {
        self.scope
            .iter()
            .enumerate()
            .rev()
            .find_map(|(i, m)| m.get(name).map(|o| (*o, i == 0)))
    }

    /// The scope a node's children open: a child equal (same alias, same package)
    /// to the provider already visible under that alias does not shadow it, so
    /// dependents keep resolving to the outer provider, as pnpm does.
    fn child_scope(&self, child_map: &FxHashMap<String, usize>) -> FxHashMap<String, usize> {
        child_map
            .iter()
            .filter(|(alias, o)| {
                self.lookup(alias)
                    .is_none_or(|(v, _)| self.occs[v].pkg_id != self.occs[**o].pkg_id)
            })
            .map(|(a, o)| (a.clone(), *o))
            .collect()
    }

    /// Fills an occurrence: places its children, resolves its own peers in
    /// the visible scope, fills fresh children under its scope, then takes
    /// on the peers its children could not resolve themselves.
    fn fill(&mut self, occ: usize) {
        let g = self.g;
        let pkg_id = self.occs[occ].pkg_id.clone();
        let Some(pkg) = g.pkgs.get(&pkg_id) else {
            return;
        };
        let placed = self.place_children(occ, pkg);
        // Locked peers override every other provider, own children included
        // (pnpm replaces the entry in `parentPkgs`).
        let locked = self.locked_peers(occ, &placed.child_map);
        self.scope.push(locked.clone());
        let own_names = self.resolve_own_peers(occ, pkg, &placed.child_map);
        self.scope.pop();
        let mut scope = self.child_scope(&placed.child_map);
        scope.extend(locked);
        self.scope.push(scope);
        self.ancestors.push((pkg_id, occ));
        self.reuse.enter(placed.must_win.clone());
        for o in &placed.to_fill {
            self.fill(*o);
        }
        self.reuse.leave();
        self.ancestors.pop();
        self.scope.pop();
        self.inherit_child_peers(occ, &pkg.name, &placed, &own_names);
        self.occs[occ].children = placed.children;
        self.finished.push(occ);
    }

    /// Places every child of `pkg` (at occurrence `occ`) under the current scope.
    fn place_children(&mut self, occ: usize, pkg: &Pkg) -> PlacedChildren {
        let mut placed = PlacedChildren::default();
        let pkg_id = self.occs[occ].pkg_id.clone();
        for c in &pkg.children {
            match &c.target {
                Target::Link(p) => {
                    placed
                        .children
                        .push((c.alias.clone(), OccRef::Link(p.clone()), c.optional))
                }
                Target::Pkg(id) => {
                    let (o, fresh) = self.place(id);
                    if fresh {
                        placed.to_fill.push(o);
                    }
                    let at = self.placement(o, id, fresh);
                    let g = self.g;
                    if self
                        .reuse
                        .placed_child(&g.seed, (occ, &pkg_id), &c.alias, at)
                    {
                        placed.must_win.insert(o);
                    }
                    placed.child_map.insert(c.alias.clone(), o);
                    placed
                        .children
                        .push((c.alias.clone(), OccRef::Occ(o), c.optional));
                }
            }
        }
        placed
    }

    /// Resolves the peers `pkg` declares itself (unless a child of the same
    /// alias provides them) to the provider visible here, or records them as
    /// missing; returns their names.
    fn resolve_own_peers(
        &mut self,
        occ: usize,
        pkg: &Pkg,
        child_map: &FxHashMap<String, usize>,
    ) -> BTreeSet<String> {
        let own = self.peer_specs(&self.occs[occ].pkg_id);
        let own_names: BTreeSet<String> = own.iter().map(|(n, _, _)| n.clone()).collect();
        for (name, range, optional) in own.iter() {
            if child_map.contains_key(name) {
                continue;
            }
            match self.lookup(name) {
                Some((t, at_root)) => {
                    // Only peers that take part in pnpm's tree-phase peer
                    // resolution are hoisted (R9, R17).
                    if !at_root && self.collects(&pkg.manifest, name) {
                        let id = self.occs[t].pkg_id.clone();
                        self.resolved_below.insert(name.clone(), id);
                    }
                    self.occs[occ]
                        .own_peers
                        .insert(name.clone(), (t, *optional));
                    self.occs[occ].suffix.insert(name.clone(), t);
                }
                None => {
                    // pnpm keeps optional peers among the missing ones too:
                    // they are not auto-installed but every dependent lists
                    // them under `transitivePeerDependencies`.
                    let target = if !optional {
                        &mut self.missing
                    } else if self.collects(&pkg.manifest, name) {
                        &mut self.missing_optional
                    } else {
                        self.occs[occ].missing.insert(name.clone());
                        continue;
                    };
                    let ranges = target.entry(name.clone()).or_default();
                    if !ranges.contains(range) {
                        ranges.push(range.clone());
                    }
                    self.occs[occ].missing.insert(name.clone());
                }
            }
        }
        own_names
    }

    /// Peers of the children that `occ` does not provide become its own
    /// suffix entries (and transitive peers unless it declares them).
    fn inherit_child_peers(
        &mut self,
        occ: usize,
        pkg_name: &str,
        placed: &PlacedChildren,
        own_names: &BTreeSet<String>,
    ) {
        for (_, r, _) in &placed.children {
            let OccRef::Occ(c) = r else { continue };
            if *c == occ {
                continue;
            }
            // Taken out and put back rather than cloned: `c != occ`.
            let suffix = std::mem::take(&mut self.occs[*c].suffix);
            let missing = std::mem::take(&mut self.occs[*c].missing);
            for (name, &t) in &suffix {
                // A package never lists itself among its peers (pnpm drops the
                // own name even when the provider is another occurrence), nor
                // a peer named like one of its own children: pnpm drops those
                // by alias, whichever occurrence provided them (the child may
                // have deferred to an equal provider further up).
                if t == occ || name == pkg_name || placed.children.iter().any(|(a, _, _)| a == name)
                {
                    continue;
                }
                let o = &mut self.occs[occ];
                if !o.suffix.contains_key(name) {
                    o.suffix.insert(name.clone(), t);
                }
                if !own_names.contains(name) && !o.transitive.contains(name) {
                    o.transitive.insert(name.clone());
                }
            }
            for name in &missing {
                let o = &mut self.occs[occ];
                if !own_names.contains(name) && !o.transitive.contains(name) {
                    o.transitive.insert(name.clone());
                }
                if !o.missing.contains(name) {
                    o.missing.insert(name.clone());
                }
            }
            self.occs[*c].suffix = suffix;
            self.occs[*c].missing = missing;
        }
    }

    /// What [`crate::locked::Reuse`] records about placing `id` at `o`.
    fn placement<'p>(&self, o: usize, id: &'p str, fresh: bool) -> crate::locked::Placement<'p>
    where
        'g: 'p,
    {
        crate::locked::Placement {
            occ: o,
            id,
            name: self.g.pkgs.get(id).map_or("", |p| p.name.as_str()),
            fresh,
            pure: !self.impure.contains(id),
            depth: self.ancestors.len(),
        }
    }

    /// The locked peers of `occ` that apply (second pass only): peer → the
    /// occurrence standing for the provider the lockfile recorded.
    fn locked_peers(
        &mut self,
        occ: usize,

        child_map: &FxHashMap<String, usize>,
    ) -> FxHashMap<String, usize> {
        if self.reuse.providers.is_none() {
            return FxHashMap::default();
        }
        let own: BTreeMap<String, String> = self
            .peer_specs(&self.occs[occ].pkg_id)
            .iter()
            .map(|(name, range, _)| (name.clone(), range.clone()))
            .collect();
        let visible = |name: &str| {
            child_map
                .get(name)
                .copied()
                .or_else(|| self.lookup(name).map(|(o, _)| o))
        };
        let found = self.reuse.locked_peers(&self.g.seed, occ, &own, visible);
        let mut out = FxHashMap::default();
        for (peer, key) in found {
            if let Some(o) = self.provider_occ(&key) {
                out.insert(peer, o);
            }
        }
        out
    }

    /// The occurrence a locked peer points at: the shared occurrence of a
    /// pure package (filled if new), else a detached reference whose key is
    /// the package id.
    fn provider_occ(&mut self, id: &str) -> Option<usize> {
        if !self.g.pkgs.contains_key(id) {
            return None;
        }
        if !self.impure.contains(id) {
            let (o, fresh) = self.place(id);
            if fresh {
                self.fill(o);
            }
            return Some(o);
        }
        if let Some(o) = self.detached.get(id) {
            return Some(*o);
        }
        let o = self.alloc(id);
        self.occs[o].detached = true;
        self.detached.insert(id.to_string(), o);
        Some(o)
    }

    /// Places and fills the importer's root dependencies; returns alias → ref.
    fn importer(&mut self, idx: usize) -> Vec<(String, Group, OccRef, String)> {
        let g = self.g;
        let imp = &g.importers[idx];
        let mut root: FxHashMap<String, usize> = FxHashMap::default();
        let mut out = Vec::new();
        let mut to_fill = Vec::new();
        let hoisted = imp
            .hoisted
            .iter()
            .filter(|(name, _)| !imp.hidden.contains_key(*name));
        for (name, id) in imp.hidden.iter().chain(hoisted) {
            let (o, fresh) = self.place(id);
            if fresh {
                to_fill.push(o);
            }
            root.insert(name.clone(), o);
        }
        self.reuse.start_importer();
        for d in &imp.direct {
            let r = match &d.target {
                Target::Link(p) => OccRef::Link(p.clone()),
                Target::Pkg(id) => {
                    let (o, fresh) = self.place(id);
                    if fresh {
                        to_fill.push(o);
                    }
                    let at = self.placement(o, id, fresh);
                    self.reuse.placed_root(&g.seed, idx, &d.alias, at);
                    root.insert(d.alias.clone(), o);
                    OccRef::Occ(o)
                }
            };
            out.push((d.alias.clone(), d.group, r, d.specifier.clone()));
        }
        self.scope.push(root);
        for o in to_fill {
            self.fill(o);
        }
        self.scope.pop();
        out
    }
}

/// What one walk of importer `idx`'s tree finds: the peers it leaves
/// unresolved and those resolved from a provider below its root. The tree
/// phase asks for both on the same graph, so one walk serves both.
pub(crate) fn walk_importer(g: &Graph, idx: usize) -> ImporterWalk {
    let mut b = Builder::new(g);
    b.importer(idx);
    let imp = &g.importers[idx];
    let below = b
        .resolved_below
        .into_iter()
        .filter(|(name, _)| {
            !imp.hidden.contains_key(name) && !imp.direct.iter().any(|d| &d.alias == name)
        })
        .collect();
    ImporterWalk {
        missing: MissingPeers {
            required: b.missing,
            optional: b.missing_optional,
        },
        below,
    }
}

/// The outcome of [`walk_importer`].
#[derive(Clone)]
pub(crate) struct ImporterWalk {
    pub missing: MissingPeers,
    /// Peers resolved from a provider below the root and not named by a root
    /// dependency: name → provider package id.
    pub below: BTreeMap<String, String>,
}

/// The peers an importer's tree leaves unresolved: the required ones and
/// the optional ones the tree phase collects (`Builder::collects`), each
/// name → wanted ranges.
#[derive(Clone)]
pub(crate) struct MissingPeers {
    pub required: BTreeMap<String, Vec<String>>,
    pub optional: BTreeMap<String, Vec<String>>,
}

/// Whether the manifest names `peer` in `peerDependencies` (not only in
/// `peerDependenciesMeta`).
fn declares_peer(manifest: &Value, peer: &str) -> bool {
    manifest
        .get("peerDependencies")
        .and_then(Value::as_object)
        .is_some_and(|m| m.contains_key(peer))
}

struct Paths<'b> {
    occs: &'b [Occ],
    pkgs: &'b Graph,
    memo: FxHashMap<usize, String>,
    in_progress: FxHashSet<usize>,
    /// Dep paths replaced by `dedupePeerDependents`, for snapshot references.
    replace: HashMap<String, String>,
    /// Memo of [`Paths::in_peer_cycle`].
    cyclic: FxHashMap<usize, bool>,
    /// The same for importer references (a superset, see [`crate::dedupe`]).
    replace_in_importers: HashMap<String, String>,
}

impl<'b> Paths<'b> {
    fn new(occs: &'b [Occ], pkgs: &'b Graph) -> Self {
        Paths {
            occs,
            pkgs,
            memo: FxHashMap::default(),
            in_progress: FxHashSet::default(),
            replace: HashMap::new(),
            cyclic: FxHashMap::default(),
            replace_in_importers: HashMap::new(),
        }
    }

    /// Whether `occ` lies on a cycle of peer edges. pnpm short-circuits such
    /// a peer to its bare `name@version` for every dependent whose key waited
    /// on it (`calculateDepPath` resolves the cyclic peer's pending path with
    /// the bare id, and that deferred value is what later waiters read), while
    /// references to it as a dependency keep its full dep path.
    fn in_peer_cycle(&mut self, occ: usize) -> bool {
        if let Some(v) = self.cyclic.get(&occ) {
            return *v;
        }
        let mut seen = FxHashSet::default();
        let mut stack: Vec<usize> = self.occs[occ].suffix.values().copied().collect();
        let mut found = false;
        while let Some(o) = stack.pop() {
            if o == occ {
                found = true;
                break;
            }
            if seen.insert(o) {
                stack.extend(self.occs[o].suffix.values().copied());
            }
        }
        self.cyclic.insert(occ, found);
        found
    }

    fn name_of(&self, occ: usize) -> &str {
        let id = &self.occs[occ].pkg_id;
        self.pkgs
            .pkgs
            .get(id)
            .map_or(id.as_str(), |p| p.name.as_str())
    }

    fn dep_path(&mut self, occ: usize) -> String {
        if let Some(p) = self.memo.get(&occ) {
            return p.clone();
        }
        let base = self.occs[occ].pkg_id.clone();
        if !self.in_progress.insert(occ) {
            return base;
        }
        let suffix: Vec<(String, usize)> = self.occs[occ]
            .suffix
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        let mut ids = Vec::with_capacity(suffix.len());
        for (name, t) in suffix {
            let full = if self.in_peer_cycle(t) {
                self.occs[t].pkg_id.clone()
            } else {
                self.dep_path(t)
            };
            ids.push(self.reference(&name, t, &full));
        }
        let out = if ids.is_empty() {
            base
        } else {
            format!("{base}({})", peer_graph_hash(ids))
        };
        self.in_progress.remove(&occ);
        self.memo.insert(occ, out.clone());
        out
    }

    /// `name@<ref>` where ref drops the package name when it equals `alias`.
    fn reference(&self, alias: &str, target: usize, full: &str) -> String {
        let name = self.name_of(target);
        if name == alias {
            format!("{alias}@{}", &full[name.len() + 1..])
        } else {
            format!("{alias}@{full}")
        }
    }

    fn version_ref(&mut self, alias: &str, target: usize) -> String {
        let full = self.dep_path(target);
        let full = self.replace.get(&full).cloned().unwrap_or(full);
        self.strip_alias(alias, target, full)
    }

    fn importer_ref(&mut self, alias: &str, target: usize) -> String {
        let full = self.dep_path(target);
        let full = self
            .replace_in_importers
            .get(&full)
            .cloned()
            .unwrap_or(full);
        self.strip_alias(alias, target, full)
    }

    /// The reference drops `name@` when the alias is the package's name.
    fn strip_alias(&self, alias: &str, target: usize, full: String) -> String {
        let name = self.name_of(target);
        if name == alias {
            full[name.len() + 1..].to_string()
        } else {
            full
        }
    }
}

/// The inside of a peer suffix: the peers' ids sorted as strings (so
/// `react-dom@1(react@1)` sorts before `react@1`) and joined by `)(`; past
/// [`PEERS_SUFFIX_MAX_LENGTH`] characters, the first 32 hex digits of its
/// SHA-256 instead (pnpm's `createPeerDepGraphHash`).
pub(crate) fn peer_graph_hash(mut ids: Vec<String>) -> String {
    use sha2::Digest;
    ids.sort();
    let joined = ids.join(")(");
    if joined.encode_utf16().count() <= PEERS_SUFFIX_MAX_LENGTH {
        return joined;
    }
    let digest = hex::encode(sha2::Sha256::digest(joined.as_bytes()));
    digest[..32].to_string()
}

/// pnpm's default `peersSuffixMaxLength`.
const PEERS_SUFFIX_MAX_LENGTH: usize = 1000;

fn package_info(manifest: &Value, name: &str, registry: &str, dialect: Dialect) -> PackageInfo {
    let peers: BTreeMap<String, String> = crate::peers_as_recorded(manifest, name, dialect)
        .iter()
        .map(|(k, (r, _))| (k.clone(), r.clone()))
        .collect();
    let peer_meta = peer_meta(manifest, &peers);
    let mut bundled = manifest_strs(manifest, "bundleDependencies");
    if bundled.is_empty() {
        bundled = manifest_strs(manifest, "bundledDependencies");
    }
    PackageInfo {
        resolution: resolution(manifest, name, registry),
        engines: engines(manifest, dialect),
        cpu: manifest_strs(manifest, "cpu"),
        os: manifest_strs(manifest, "os"),
        libc: manifest_strs(manifest, "libc"),
        deprecated: manifest
            .get("deprecated")
            .and_then(Value::as_str)
            .map(str::to_string),
        has_bin: has_bin(manifest).then_some(true),
        peer_dependencies: peers,
        peer_dependencies_meta: peer_meta,
        bundled_dependencies: bundled,
        prepare: None,
    }
}

/// Integrity, and the tarball URL only when it is not the registry's default.
fn resolution(manifest: &Value, name: &str, registry: &str) -> pnpr_lockfile::Resolution {
    let dist = manifest.get("dist");
    let version = manifest
        .get("version")
        .and_then(Value::as_str)
        .unwrap_or("");
    let tarball = dist.and_then(|d| d.get("tarball")).and_then(Value::as_str);
    let default_tarball = default_tarball_url(registry, name, version);
    pnpr_lockfile::Resolution {
        integrity: dist
            .and_then(|d| d.get("integrity"))
            .and_then(Value::as_str)
            .map(str::to_string),
        tarball: tarball
            .filter(|t| *t != default_tarball)
            .map(str::to_string),
    }
}

/// A string-list field (a lone string counts as a list of one).
fn manifest_strs(manifest: &Value, key: &str) -> Vec<String> {
    match manifest.get(key) {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect(),
        Some(Value::String(s)) => vec![s.clone()],
        _ => Vec::new(),
    }
}

/// `engines` as pnpm writes it: the entries of whatever the field holds
/// (an array's indexes and a string's characters become keys, as
/// JavaScript's `Object.entries` makes them), minus values of `*`
/// (`toLockfileDependency`). Non-string values are skipped.
fn engines(manifest: &Value, dialect: Dialect) -> BTreeMap<String, String> {
    let entries: Vec<(String, String)> = match manifest.get("engines") {
        // pnpm 12 reads `engines` as a map only.
        Some(Value::Array(_)) if dialect == Dialect::Pnpm12 => Vec::new(),
        Some(Value::Object(m)) => m
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
            .collect(),
        Some(Value::Array(a)) => a
            .iter()
            .enumerate()
            .filter_map(|(i, v)| Some((i.to_string(), v.as_str()?.to_string())))
            .collect(),
        Some(Value::String(s)) => s
            .encode_utf16()
            .enumerate()
            .map(|(i, u)| (i.to_string(), String::from_utf16_lossy(&[u])))
            .collect(),
        _ => Vec::new(),
    };
    entries.into_iter().filter(|(_, v)| v != "*").collect()
}

/// Whether the package links binaries (`bin`, or a `directories.bin`).
fn has_bin(manifest: &Value) -> bool {
    match manifest.get("bin") {
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Object(m)) => !m.is_empty(),
        _ => manifest
            .get("directories")
            .and_then(|d| d.get("bin"))
            .is_some(),
    }
}

/// `peerDependenciesMeta` entries of effective peers only.
fn peer_meta(manifest: &Value, peers: &BTreeMap<String, String>) -> BTreeMap<String, PeerMeta> {
    manifest
        .get("peerDependenciesMeta")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter(|(k, _)| peers.contains_key(k.as_str()))
                .map(|(k, v)| {
                    let optional = v.get("optional").and_then(Value::as_bool).unwrap_or(false);
                    (k.clone(), PeerMeta { optional })
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `<registry><name>/-/<unscoped>-<version>.tgz`.
pub(crate) fn default_tarball_url(registry: &str, name: &str, version: &str) -> String {
    let unscoped = name.rsplit('/').next().unwrap_or(name);
    let sep = if registry.ends_with('/') { "" } else { "/" };
    format!("{registry}{sep}{name}/-/{unscoped}-{version}.tgz")
}

/// Assembles the lockfile from the resolved graph.
pub(crate) fn build_lockfile(g: &Graph, opts: &ResolveOptions) -> Lockfile {
    let (b, roots) = walk_with_locked_peers(g);
    let occs = b.occs;
    let mut paths = Paths::new(&occs, g);
    let replacements = dedupe(&occs, &b.finished, &mut paths);
    paths.replace = replacements.children;
    paths.replace_in_importers = replacements.importers;
    let mut lf = Lockfile {
        overrides: opts.overrides.clone(),
        ..Default::default()
    };
    let mut queue = write_importers(&mut lf, g, &roots, &mut paths);
    // Hidden (auto-installed) peers are required roots as well.
    for (_, starts) in &roots {
        for o in starts {
            let id = &occs[*o].pkg_id;
            let required_hidden = |i: &crate::ImporterGraph| {
                i.hidden
                    .iter()
                    .any(|(name, h)| h == id && !i.optional_hidden.contains(name))
            };
            if g.importers.iter().any(required_hidden) {
                queue.push_back(*o);
            }
        }
    }
    let required = required_paths(&occs, &mut paths, queue);
    for (o, occ) in occs.iter().enumerate() {
        if occ.detached {
            continue;
        }
        let key = paths.dep_path(o);
        if lf.snapshots.contains_key(&key) || paths.replace.contains_key(&key) {
            continue;
        }
        let mut snap = snapshot(occ, &mut paths);
        snap.optional = !required.contains(&key);
        lf.snapshots.insert(key, snap);
    }
    prune_unreachable(&mut lf);
    let kept: HashSet<&str> = lf
        .snapshots
        .keys()
        .map(|k| crate::strip_suffix(k))
        .collect();
    let mut packages = BTreeMap::new();
    for occ in &occs {
        if let (Some(p), true) = (g.pkgs.get(&occ.pkg_id), kept.contains(occ.pkg_id.as_str())) {
            packages.entry(occ.pkg_id.clone()).or_insert_with(|| {
                package_info(
                    &p.manifest,
                    &p.name,
                    opts.registry_for(&p.name),
                    opts.dialect,
                )
            });
        }
    }
    lf.packages = packages;
    lf
}

/// Walks every importer; when an occurrence reused a lockfile entry that
/// recorded peer providers, walks again with those locked peers applied,
/// as pnpm runs `resolvePeers` a second time with the first pass's paths.
fn walk_with_locked_peers(g: &Graph) -> (Builder<'_>, Vec<ImporterRoots>) {
    let mut first = Builder::new(g);
    let roots = place_importers(&mut first, g);
    if !first.reuse.saw_context {
        return (first, roots);
    }
    let mut paths = Paths::new(&first.occs, g);
    let providers = first.reuse.usable_providers(|o| paths.dep_path(o));
    if providers.is_empty() {
        return (first, roots);
    }
    let mut second = Builder::new(g);
    second.reuse.providers = Some(providers);
    let roots = place_importers(&mut second, g);
    (second, roots)
}

/// pnpm's `dedupePeerDependents` over the occurrences' dep paths: the
/// package ids with several dep paths, grouped in the order pnpm first adds
/// them (fill completion order).
fn dedupe(occs: &[Occ], finished: &[usize], paths: &mut Paths<'_>) -> crate::dedupe::Replacements {
    let mut nodes: HashMap<String, crate::dedupe::Node> = HashMap::new();
    let mut groups: Vec<Vec<String>> = Vec::new();
    let mut group_of: HashMap<&str, usize> = HashMap::new();
    for &o in finished {
        let key = paths.dep_path(o);
        if nodes.contains_key(&key) {
            continue;
        }
        let occ = &occs[o];
        let mut children: BTreeMap<&str, String> = BTreeMap::new();
        for (alias, r, _) in &occ.children {
            let to = match r {
                OccRef::Link(p) => format!("link:{p}"),
                OccRef::Occ(c) => paths.dep_path(*c),
            };
            children.insert(alias, to);
        }
        for (name, (t, _)) in &occ.own_peers {
            children.insert(name, paths.dep_path(*t));
        }
        let node = crate::dedupe::Node {
            children: children.into_values().collect(),
            peer_names: occ.suffix.keys().cloned().collect(),
        };
        nodes.insert(key.clone(), node);
        let g = *group_of.entry(occ.pkg_id.as_str()).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[g].push(key);
    }
    groups.retain(|g| g.len() > 1);
    crate::dedupe::dedupe_peer_dependents(&mut nodes, groups)
}

/// Drops snapshots no importer reaches (pnpm's `pruneSharedLockfile`), e.g.
/// a dep path only importers referred to before the dedupe replaced it.
fn prune_unreachable(lf: &mut Lockfile) {
    let mut seen: HashSet<String> = HashSet::new();
    let mut stack: Vec<String> = Vec::new();
    let push_ref = |stack: &mut Vec<String>, alias: &str, v: &str| {
        if v.starts_with("link:") {
            return;
        }
        // A reference is `version(...)` under its own name, or a full dep path.
        let starts_like_version = v.chars().next().is_some_and(|c| c.is_ascii_digit());
        stack.push(if starts_like_version {
            format!("{alias}@{v}")
        } else {
            v.to_string()
        });
    };
    for imp in lf.importers.values() {
        for (alias, d) in imp
            .dependencies
            .iter()
            .chain(&imp.dev_dependencies)
            .chain(&imp.optional_dependencies)
        {
            push_ref(&mut stack, alias, &d.version);
        }
    }
    while let Some(key) = stack.pop() {
        if !seen.insert(key.clone()) {
            continue;
        }
        if let Some(snap) = lf.snapshots.get(&key) {
            for (alias, v) in snap.dependencies.iter().chain(&snap.optional_dependencies) {
                push_ref(&mut stack, alias, v);
            }
        }
    }
    lf.snapshots.retain(|k, _| seen.contains(k));
}

/// An importer's root references and the occurrences its walk starts from.
type ImporterRoots = (Vec<(String, Group, OccRef, String)>, Vec<usize>);

/// Places and fills every importer's tree, in importer order.
fn place_importers(b: &mut Builder<'_>, g: &Graph) -> Vec<ImporterRoots> {
    let mut roots = Vec::new();
    for idx in 0..g.importers.len() {
        let hidden: Vec<usize> = g.importers[idx]
            .hidden
            .values()
            .filter_map(|id| b.pure_occ.get(id).copied())
            .collect();
        let before = b.occs.len();
        let deps = b.importer(idx);
        // Hidden roots are non-optional starting points too.
        let mut starts: Vec<usize> = hidden;
        starts.extend(before..b.occs.len());
        roots.push((deps, starts));
    }
    roots
}

/// Writes each importer's dependencies; returns the non-optional roots the
/// `required` walk starts from.
fn write_importers(
    lf: &mut Lockfile,
    g: &Graph,
    roots: &[ImporterRoots],
    paths: &mut Paths<'_>,
) -> VecDeque<usize> {
    let mut queue = VecDeque::new();
    for (idx, (deps, _)) in roots.iter().enumerate() {
        let dir = &g.importers[idx].dir;
        let mut imp = Importer::default();
        for (alias, group, r, specifier) in deps {
            let version = match r {
                OccRef::Link(p) => format!("link:{p}"),
                OccRef::Occ(o) => {
                    if *group != Group::Optional {
                        queue.push_back(*o);
                    }
                    paths.importer_ref(alias, *o)
                }
            };
            let entry = ImporterDep {
                specifier: specifier.clone(),
                version,
            };
            let target = match group {
                Group::Prod => &mut imp.dependencies,
                Group::Dev => &mut imp.dev_dependencies,
                Group::Optional => &mut imp.optional_dependencies,
            };
            target.insert(alias.clone(), entry);
        }
        lf.importers.insert(dir.clone(), imp);
    }
    queue
}

/// Dep paths reachable from `queue` over non-optional edges (children and
/// own peers): every other snapshot is `optional`.
fn required_paths(
    occs: &[Occ],
    paths: &mut Paths<'_>,
    mut queue: VecDeque<usize>,
) -> HashSet<String> {
    let mut required = HashSet::new();
    let mut seen = HashSet::new();
    // A detached provider reference stands for the occurrence with its key.
    let mut real: HashMap<String, usize> = HashMap::new();
    if occs.iter().any(|o| o.detached) {
        for o in (0..occs.len()).rev().filter(|o| !occs[*o].detached) {
            real.insert(paths.dep_path(o), o);
        }
    }
    while let Some(o) = queue.pop_front() {
        let o = match occs[o].detached {
            true => match real.get(&paths.dep_path(o)) {
                Some(r) => *r,
                None => continue,
            },
            false => o,
        };
        if !seen.insert(o) {
            continue;
        }
        let key = paths.dep_path(o);
        for map in [&paths.replace, &paths.replace_in_importers] {
            if let Some(to) = map.get(&key) {
                required.insert(to.clone());
            }
        }
        required.insert(key);
        for (_, r, optional) in &occs[o].children {
            if let (OccRef::Occ(c), false) = (r, optional) {
                queue.push_back(*c);
            }
        }
        for (t, optional) in occs[o].own_peers.values() {
            if !optional {
                queue.push_back(*t);
            }
        }
    }
    required
}

/// The snapshot of one occurrence (its `optional` flag is set by the caller).
fn snapshot(occ: &Occ, paths: &mut Paths<'_>) -> Snapshot {
    let mut snap = Snapshot::default();
    for (alias, r, optional) in &occ.children {
        let v = match r {
            OccRef::Link(p) => format!("link:{p}"),
            OccRef::Occ(c) => paths.version_ref(alias, *c),
        };
        if *optional {
            snap.optional_dependencies.insert(alias.clone(), v);
        } else {
            snap.dependencies.insert(alias.clone(), v);
        }
    }
    for (name, (t, optional)) in &occ.own_peers {
        let v = paths.version_ref(name, *t);
        if *optional {
            snap.optional_dependencies.insert(name.clone(), v);
        } else {
            snap.dependencies.insert(name.clone(), v);
        }
    }
    snap.transitive_peer_dependencies = occ.transitive.iter().cloned().collect();
    snap
}

/// Registry packages referenced by a lockfile, with their tarball URLs.
pub(crate) fn collect_packages(lf: &Lockfile, opts: &ResolveOptions) -> Vec<ResolvedPackage> {
    lf.packages
        .iter()
        .filter_map(|(key, info)| {
            let (name, version) = crate::pick::split_name_range(key);
            let version = version?;
            Some(ResolvedPackage {
                name: name.to_string(),
                version: version.to_string(),
                integrity: info.resolution.integrity.clone(),
                tarball_url: info
                    .resolution
                    .tarball
                    .clone()
                    .unwrap_or_else(|| default_tarball_url(opts.registry_for(name), name, version)),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests;
