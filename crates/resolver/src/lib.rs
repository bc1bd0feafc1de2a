//! Server-side dependency resolution producing a pnpm-identical lockfile v9.
//!
//! Owns the public API ([`resolve`]) and the tree phase: turning importer manifests
//! into a graph of `name@version` packages, each with its children resolved exactly
//! once (first encounter in breadth-first order, as pnpm does). Invariant: every
//! package id in the graph exists in fetched metadata; peer suffixes and the lockfile
//! shape are computed afterwards by [`peers`].

mod compat;
mod dedupe;
mod extend;
mod locked;
mod lookahead;
mod peers;
mod pick;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use futures_util::future::BoxFuture;
use futures_util::stream::{self, StreamExt};
use nodejs_semver::Range;
use serde_json::Value;

use pick::{parse_spec, pick_missing_peer, pick_version, split_name_range, PickPolicy, Wanted};

/// Errors of the resolver.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResolveError {
    /// The metadata source failed for a package; `source` is the source's
    /// own typed error, so its caller can recover it (e.g. an access
    /// denial) by downcasting instead of through a side channel.
    #[error("failed to fetch metadata of {name}: {source}")]
    Metadata {
        name: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The package does not exist in the registry.
    #[error("package {0} not found")]
    NotFound(String),
    /// No version satisfies the wanted range.
    #[error("no version of {name} matches {spec}")]
    NoMatchingVersion { name: String, spec: String },
    /// The specifier kind is not supported (git, file, tarball URLs, ...).
    #[error("unsupported specifier {spec:?} for {name}")]
    UnsupportedSpec { name: String, spec: String },
    /// A `workspace:` dependency names no project of the workspace.
    #[error("no workspace project named {0}")]
    WorkspaceNotFound(String),
    /// Invalid project directory.
    #[error("invalid project dir {0:?}")]
    InvalidDir(String),
    /// `frozen` was requested but the lockfile is missing or out of date.
    #[error("frozen lockfile is missing or does not match the manifests")]
    FrozenMismatch,
}

/// Source of packuments (abbreviated form, including `time`).
pub trait MetadataSource: Send + Sync {
    /// Returns the packument of `name`, or [`ResolveError::NotFound`].
    fn packument<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Arc<Value>, ResolveError>>;

    /// Called once per `name@version` the resolution picks, with its
    /// manifest (`dist` included), so the caller can start work on it while
    /// the rest of the tree resolves (the install accelerator starts its
    /// tarball fetch). A picked version may still be left out of the final
    /// tree. Must not block. Default: nothing.
    fn picked(&self, _name: &str, _version: &str, _manifest: &Value) {}

    /// Warms the source for `name`, which the resolution may read soon
    /// (a dependency of a document it already read), without counting it as
    /// read: no access is recorded and nothing reaches a client. Returns the
    /// document when it was fetched, so its own dependencies can be looked
    /// up ahead too; a name the caller may not read, or any failure, gives
    /// `None`. Default: nothing (no look-ahead).
    fn prefetch<'a>(&'a self, _name: &'a str) -> BoxFuture<'a, Option<Arc<Value>>> {
        Box::pin(std::future::ready(None))
    }
}

/// Resolution settings (mirror of the client's config).
#[derive(Debug, Clone)]
pub struct ResolveOptions {
    /// Default registry URL, with trailing `/`.
    pub registry: String,
    /// Per-scope registries (`@scope` → URL with trailing `/`), as the
    /// client's `@scope:registry=…` lines: a package of such a scope gets
    /// its lockfile tarball judged against that registry, as pnpm does.
    pub scope_registries: BTreeMap<String, String>,
    /// `overrides` selector → spec.
    pub overrides: BTreeMap<String, String>,
    /// Versions younger than this are skipped.
    pub minimum_release_age_minutes: Option<u64>,
    /// Names (`*` globs) the age rule does not apply to.
    pub minimum_release_age_exclude: Vec<String>,
    /// Current time, epoch ms (passed in so resolution is reproducible).
    pub now_ms: i64,
    pub node_version: String,
    pub os: String,
    pub cpu: String,
    pub libc: Option<String>,
    pub auto_install_peers: bool,
    /// Maximum concurrent metadata requests.
    pub concurrency: usize,
    /// Seed lockfile.
    pub input_lockfile: Option<pnpr_lockfile::Lockfile>,
    /// Keep pins of unchanged specifiers from `input_lockfile`.
    pub prefer_frozen: bool,
    /// Return `input_lockfile` unchanged; fail if it does not match.
    pub frozen: bool,
    /// pnpm's `packageExtensions`: selector (`name` or `name@range`) → an
    /// object whose `dependencies`, `optionalDependencies`,
    /// `peerDependencies` and `peerDependenciesMeta` are merged under every
    /// matching manifest (the manifest's own entries win), in order, before
    /// anything else reads the manifest. pnpm puts its compatibility database
    /// first in this list unless `ignoreCompatibilityDb` is set.
    pub package_extensions: Vec<(String, Value)>,
    /// pnpm's `ignoreCompatibilityDb`: skip the built-in database
    /// ([`compat`]) that otherwise precedes `package_extensions`.
    pub ignore_compatibility_db: bool,
    /// Whose observable rules to reproduce where pnpm releases differ.
    pub dialect: Dialect,
}

/// The pnpm releases whose lockfiles differ in small, documented ways
/// (RFC 0007): which compatibility database they bundle and how they record
/// and hoist an optional peer declared only in `peerDependenciesMeta`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Dialect {
    /// pnpm 11.5.2: `@yarnpkg/extensions` 2.0.6; a meta-only optional peer
    /// that is also a regular dependency is not recorded as a peer.
    #[default]
    Pnpm11_5,
    /// pnpm 11.9+ and 12: `@yarnpkg/extensions` 2.0.7; the lockfile records
    /// such a peer as `'*'` (optional) even when it is also a dependency,
    /// and `peerDependenciesMeta`-only optional peers take part in the tree
    /// phase's peer collection like declared ones (hoisted, R17); a
    /// dependency that is also an optional peer stays a plain child (R18).
    Pnpm11_9,
    /// pnpm 12 (Rust): everything of [`Dialect::Pnpm11_9`], and `engines`
    /// given as an array is not recorded (R8).
    Pnpm12,
}

impl Dialect {
    /// pnpm 11.9+ and 12 (R15, R17, R18 and the newer compatibility database).
    pub(crate) fn newer(self) -> bool {
        self != Dialect::Pnpm11_5
    }
}

impl ResolveOptions {
    /// The registry a client with these settings fetches `name` from: its
    /// scope's registry if one is mapped, else the default one.
    pub fn registry_for(&self, name: &str) -> &str {
        name.strip_prefix('@')
            .and_then(|_| name.split_once('/'))
            .and_then(|(scope, _)| self.scope_registries.get(scope))
            .unwrap_or(&self.registry)
    }
}

impl Default for ResolveOptions {
    fn default() -> Self {
        Self {
            registry: "http://127.0.0.1:4873/".into(),
            scope_registries: BTreeMap::new(),
            overrides: BTreeMap::new(),
            minimum_release_age_minutes: None,
            minimum_release_age_exclude: Vec::new(),
            now_ms: 0,
            node_version: "22.0.0".into(),
            os: "linux".into(),
            cpu: "x64".into(),
            libc: Some("glibc".into()),
            auto_install_peers: true,
            concurrency: 16,
            input_lockfile: None,
            prefer_frozen: true,
            frozen: false,
            package_extensions: Vec::new(),
            ignore_compatibility_db: false,
            dialect: Dialect::default(),
        }
    }
}

/// One workspace importer.
#[derive(Debug, Clone, Default)]
pub struct ProjectInput {
    /// POSIX dir relative to the lockfile dir (`"."` for the root).
    pub dir: String,
    /// Package name (used for `workspace:` references); may be empty.
    pub name: String,
    /// Package version (informational).
    pub version: String,
    pub dependencies: BTreeMap<String, String>,
    pub dev_dependencies: BTreeMap<String, String>,
    pub optional_dependencies: BTreeMap<String, String>,
    /// The project's own `peerDependencies`: with `auto_install_peers` each
    /// one no other group names is installed as a production dependency
    /// with the peer range as its specifier, as pnpm does.
    pub peer_dependencies: BTreeMap<String, String>,
}

/// A registry package the lockfile references.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedPackage {
    pub name: String,
    pub version: String,
    pub integrity: Option<String>,
    pub tarball_url: String,
}

/// Result of [`resolve`].
#[derive(Debug, Clone)]
pub struct Resolution {
    pub lockfile: pnpr_lockfile::Lockfile,
    pub packages: Vec<ResolvedPackage>,
}

/// Which importer group a direct dependency belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Group {
    Prod,
    Dev,
    Optional,
}

/// Where an edge points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    Pkg(String),
    /// Path relative to the importer dir, as written after `link:`.
    Link(String),
}

#[derive(Debug, Clone)]
pub(crate) struct Child {
    pub alias: String,
    pub target: Target,
    pub optional: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct Pkg {
    pub name: String,
    pub version: String,
    pub manifest: Value,
    pub children: Vec<Child>,
}

#[derive(Debug, Clone)]
pub(crate) struct DirectDep {
    pub alias: String,
    pub specifier: String,
    pub group: Group,
    pub target: Target,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct ImporterGraph {
    pub dir: String,
    pub direct: Vec<DirectDep>,
    /// Auto-installed missing peers: name → package id (not written to the importer).
    pub hidden: BTreeMap<String, String>,
    /// Names in `hidden` that were hoisted as optional peers (pnpm's
    /// `getHoistableOptionalPeers`): they join the root scope but do not
    /// make their package required.
    pub optional_hidden: BTreeSet<String>,
    /// Peers resolved below the importer's root, hoisted to it: name → package id.
    /// They join the root scope (so later same-version providers do not shadow
    /// them) but are neither written to the importer nor required roots.
    pub hoisted: BTreeMap<String, String>,
}

/// A parsed `overrides` selector.
#[derive(Debug, Clone)]
struct Override {
    parent: Option<String>,
    name: String,
    range: Option<String>,
    spec: String,
}

/// Chain of preferred versions: a package's children prefer what its ancestors' levels use.
#[derive(Default)]
struct Preferred {
    parent: Option<Arc<Preferred>>,
    map: HashMap<String, Vec<String>>,
}

impl Preferred {
    fn versions(&self, name: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut cur = Some(self);
        while let Some(p) = cur {
            if let Some(v) = p.map.get(name) {
                out.extend(v.iter().cloned());
            }
            cur = p.parent.as_deref();
        }
        out
    }
}

pub(crate) struct Graph {
    pub pkgs: BTreeMap<String, Pkg>,
    pub importers: Vec<ImporterGraph>,
    /// What the tree phase reused from the input lockfile, by position.
    pub seed: locked::SeedTree,
    /// Which pnpm's peer rules the peers phase follows (R17).
    pub dialect: Dialect,
}

struct Resolver<'a> {
    source: &'a dyn MetadataSource,
    opts: &'a ResolveOptions,
    policy: PickPolicy,
    packuments: HashMap<String, Arc<Value>>,
    overrides: Vec<Override>,
    pkgs: BTreeMap<String, Pkg>,
    /// Package ids whose children are scheduled or resolved.
    expanded: HashSet<String>,
    /// Pins from the input lockfile: package id → child alias → version.
    locked_children: HashMap<String, BTreeMap<String, String>>,
    /// Parsed `package_extensions`.
    extensions: Vec<extend::Extension>,
    /// Names of direct dependencies the seed did not pin to the version
    /// picked now; their transitive lockfile pins are ignored.
    updated: HashSet<String>,
    /// Which lockfile entry each position reused (locked peer contexts).
    seed_tree: locked::SeedTree,
    /// The input lockfile is reused by a resolution pnpm would run: it does
    /// not match the manifests already (else pnpm skips resolving).
    reuse_seed: bool,
    /// Each packument's versions the policy allows, parsed once per name
    /// (a packument never changes during one resolution).
    candidates: HashMap<String, Arc<[nodejs_semver::Version]>>,
    /// Bumped whenever a package or a package's children enter the graph.
    graph_gen: u64,
    /// Last peers walk per importer, keyed by (`graph_gen`, hidden peers).
    walks: HashMap<usize, ((u64, usize), peers::ImporterWalk)>,
    /// Dependencies' packuments fetched ahead of the expansion.
    ahead: lookahead::Lookahead<'a>,
}

fn parse_overrides(map: &BTreeMap<String, String>) -> Vec<Override> {
    map.iter()
        .map(|(sel, spec)| {
            let (parent, child) = match sel.rfind('>') {
                Some(i) if i > 0 => (
                    Some(split_name_range(&sel[..i]).0.to_string()),
                    &sel[i + 1..],
                ),
                _ => (None, sel.as_str()),
            };
            let (name, range) = split_name_range(child);
            Override {
                parent,
                name: name.to_string(),
                range: range.map(str::to_string),
                spec: spec.clone(),
            }
        })
        .collect()
}

impl<'a> Resolver<'a> {
    /// Fetches every packument not held yet, `concurrency` at a time.
    /// Each document that arrives offers its dependencies to the look-ahead,
    /// which runs while this level waits.
    async fn fetch_missing(
        &mut self,
        names: impl IntoIterator<Item = String>,
    ) -> Vec<(String, Result<Arc<Value>, ResolveError>)> {
        let missing: BTreeSet<String> = names
            .into_iter()
            .filter(|n| !self.packuments.contains_key(n))
            .collect();
        for name in &missing {
            self.ahead.requested(name);
        }
        let source = self.source;
        let mut arriving = stream::iter(missing)
            .map(|name| async move {
                let r = source.packument(&name).await;
                (name, r)
            })
            .buffer_unordered(self.opts.concurrency.max(1));
        let mut out = Vec::new();
        while let Some((name, r)) = self.ahead.alongside(arriving.next()).await {
            if let Ok(doc) = &r {
                self.ahead.offer(doc);
            }
            out.push((name, r));
        }
        out
    }

    /// Fetches every missing packument; failures are returned, not cached.
    async fn fetch_lenient(&mut self, names: Vec<String>) -> HashMap<String, ResolveError> {
        let mut failed = HashMap::new();
        for (name, r) in self.fetch_missing(names).await {
            match r {
                Ok(doc) => {
                    self.packuments.insert(name, doc);
                }
                Err(e) => {
                    failed.insert(name, e);
                }
            }
        }
        failed
    }

    async fn fetch_all(
        &mut self,
        names: impl IntoIterator<Item = String>,
    ) -> Result<(), ResolveError> {
        for (name, r) in self.fetch_missing(names).await {
            self.packuments.insert(name, r?);
        }
        Ok(())
    }

    fn apply_override(&self, parent: Option<&str>, name: &str, spec: &str) -> String {
        let matches = |o: &Override| {
            o.name == name
                && o.range.as_deref().is_none_or(|r| {
                    r == spec
                        || match (Range::parse(r), Range::parse(spec)) {
                            (Ok(a), Ok(b)) => a.allows_any(&b),
                            _ => false,
                        }
                })
        };
        let scoped = self
            .overrides
            .iter()
            .find(|o| o.parent.is_some() && o.parent.as_deref() == parent && matches(o));
        let plain = || {
            self.overrides
                .iter()
                .find(|o| o.parent.is_none() && matches(o))
        };
        match scoped.or_else(plain) {
            Some(o) if o.spec != "-" => o.spec.clone(),
            _ => spec.to_string(),
        }
    }

    /// Resolves `name@spec` to a package id, registering the package.
    fn pick(
        &mut self,
        name: &str,
        spec: &str,
        preferred: &[String],
        optional: bool,
    ) -> Result<String, ResolveError> {
        let packument = self
            .packuments
            .get(name)
            .cloned()
            .ok_or_else(|| ResolveError::NotFound(name.to_string()))?;
        let candidates = self.candidates(name, &packument);
        let version = pick_version(&packument, &candidates, spec, preferred, &self.policy)
            .ok_or_else(|| ResolveError::NoMatchingVersion {
                name: name.to_string(),
                spec: spec.to_string(),
            })?;
        Ok(self.register(name, &version, &packument, optional))
    }

    /// The allowed versions of `name`, parsed and sorted on first use.
    fn candidates(&mut self, name: &str, packument: &Value) -> Arc<[nodejs_semver::Version]> {
        if let Some(c) = self.candidates.get(name) {
            return Arc::clone(c);
        }
        let c: Arc<[nodejs_semver::Version]> =
            pick::candidate_versions(packument, &self.policy).into();
        self.candidates.insert(name.to_string(), Arc::clone(&c));
        c
    }

    /// Records a picked version; the first registration of an id decides its
    /// manifest. pnpm reads optional dependencies from full metadata and all
    /// others from abbreviated metadata, which carries no `libc`; keeping
    /// `libc` only for packages first met through an optional edge reproduces
    /// the lockfile pnpm writes against the same registry.
    fn register(&mut self, name: &str, version: &str, packument: &Value, optional: bool) -> String {
        let id = format!("{name}@{version}");
        if !self.pkgs.contains_key(&id) {
            let mut manifest = packument
                .get("versions")
                .and_then(|v| v.get(version))
                .cloned()
                .unwrap_or(Value::Null);
            if !optional {
                if let Some(m) = manifest.as_object_mut() {
                    m.remove("libc");
                }
            }
            extend::apply(&self.extensions, name, version, &mut manifest);
            self.source.picked(name, version, &manifest);
            self.graph_gen += 1;
            self.pkgs.insert(
                id.clone(),
                Pkg {
                    name: name.into(),
                    version: version.into(),
                    manifest,
                    children: Vec::new(),
                },
            );
        }
        id
    }

    /// Registry children of a manifest: deps ∪ optional deps, minus bundled and
    /// minus deps that are also (non-optional-dep) peers, as pnpm drops those.
    fn child_specs(manifest: &Value, dialect: Dialect) -> Vec<(String, String, bool)> {
        let obj = |k: &str| manifest.get(k).and_then(Value::as_object);
        let optional: BTreeMap<&String, &Value> =
            obj("optionalDependencies").into_iter().flatten().collect();
        let self_name = manifest.get("name").and_then(Value::as_str).unwrap_or("");
        let peers = normalized_peers(manifest, self_name, dialect);
        let bundled: BTreeSet<String> = ["bundleDependencies", "bundledDependencies"]
            .iter()
            .filter_map(|k| manifest.get(*k).and_then(Value::as_array))
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect();
        let mut out: BTreeMap<String, (String, bool)> = BTreeMap::new();
        for (k, v) in obj("dependencies").into_iter().flatten() {
            if let Some(s) = v.as_str() {
                out.insert(k.clone(), (s.to_string(), false));
            }
        }
        for (k, v) in &optional {
            if let Some(s) = v.as_str() {
                out.insert((*k).clone(), (s.to_string(), true));
            }
        }
        out.into_iter()
            .filter(|(k, _)| !bundled.contains(k))
            .filter(|(k, _)| optional.contains_key(k) || !peers.contains_key(k))
            .map(|(k, (s, o))| (k, s, o))
            .collect()
    }

    /// Breadth-first expansion of `roots` (package ids with the preference chain
    /// their children should use).
    async fn expand(&mut self, roots: Vec<(String, Arc<Preferred>)>) -> Result<(), ResolveError> {
        let mut level: Vec<(String, Arc<Preferred>)> = Vec::new();
        for (id, pref) in roots {
            if self.expanded.insert(id.clone()) {
                level.push((id, pref));
            }
        }
        while !level.is_empty() {
            let (wanted, names) = self.wanted_children(&level)?;
            for w in &wanted {
                if let Some(Wanted::Registry { name, spec }) = parse_spec(&w.alias, &w.spec) {
                    self.ahead.hint(&name, &spec);
                }
            }
            // Optional dependencies that cannot be resolved are skipped, as pnpm does.
            let failed = self.fetch_lenient(names).await;
            let children_of = self.resolve_children(&level, wanted, failed)?;
            level = self.adopt_children(level, children_of);
        }
        Ok(())
    }

    /// The (overridden) child specs of every package of `level`, and the
    /// registry names they need; a spec of an unsupported kind fails the level.
    fn wanted_children(
        &self,
        level: &[(String, Arc<Preferred>)],
    ) -> Result<(Vec<WantedChild>, Vec<String>), ResolveError> {
        let mut wanted = Vec::new();
        for (parent, (id, _)) in level.iter().enumerate() {
            let Some(pkg) = self.pkgs.get(id) else {
                continue;
            };
            for (alias, spec, optional) in Self::child_specs(&pkg.manifest, self.opts.dialect) {
                let spec = self.apply_override(Some(&pkg.name), &alias, &spec);
                wanted.push(WantedChild {
                    parent,
                    alias,
                    spec,
                    optional,
                });
            }
        }
        let mut names = Vec::new();
        for w in &wanted {
            match parse_spec(&w.alias, &w.spec) {
                Some(Wanted::Registry { name, .. }) => names.push(name),
                Some(Wanted::Link(_)) => {}
                _ => {
                    return Err(ResolveError::UnsupportedSpec {
                        name: w.alias.clone(),
                        spec: w.spec.clone(),
                    })
                }
            }
        }
        Ok((wanted, names))
    }

    /// Picks a version for every wanted child, per parent of `level`; optional
    /// children whose metadata failed or has no match are dropped.
    fn resolve_children(
        &mut self,
        level: &[(String, Arc<Preferred>)],
        wanted: Vec<WantedChild>,
        mut failed: HashMap<String, ResolveError>,
    ) -> Result<Vec<Vec<Child>>, ResolveError> {
        let mut children_of: Vec<Vec<Child>> = vec![Vec::new(); level.len()];
        for WantedChild {
            parent: i,
            alias,
            spec,
            optional,
        } in wanted
        {
            let (name, range) = match parse_spec(&alias, &spec) {
                Some(Wanted::Registry { name, spec }) => (name, spec),
                Some(Wanted::Link(path)) => {
                    // Links inside registry packages are kept verbatim, `.` as empty.
                    let p = join_dir(".", &path);
                    let target = Target::Link(if p == "." { String::new() } else { p });
                    children_of[i].push(Child {
                        alias,
                        target,
                        optional,
                    });
                    continue;
                }
                _ => continue,
            };
            let mut preferred = level[i].1.versions(&name);
            let pinned = self
                .locked_children
                .get(&level[i].0)
                .and_then(|m| m.get(&alias))
                .filter(|_| !self.updated.contains(&name));
            if let Some(v) = pinned {
                preferred.insert(0, v.clone());
            }
            if let Some(e) = failed.remove(&name) {
                if optional {
                    continue;
                }
                return Err(e);
            }
            let id = match self.pick(&name, &range, &preferred, optional) {
                Ok(id) => id,
                Err(_) if optional => continue,
                Err(e) => return Err(e),
            };
            if let Some(seed) = self.seed() {
                self.seed_tree.note_child(seed, &level[i].0, &alias, &range);
            }
            children_of[i].push(Child {
                alias,
                target: Target::Pkg(id),
                optional,
            });
        }
        Ok(children_of)
    }

    /// Records each package's children and returns the next level: children
    /// not expanded yet, preferring the versions their siblings use.
    fn adopt_children(
        &mut self,
        level: Vec<(String, Arc<Preferred>)>,
        children_of: Vec<Vec<Child>>,
    ) -> Vec<(String, Arc<Preferred>)> {
        let mut next = Vec::new();
        for ((id, pref), children) in level.into_iter().zip(children_of) {
            let mut map: HashMap<String, Vec<String>> = HashMap::new();
            for c in &children {
                if let Target::Pkg(cid) = &c.target {
                    if let Some(p) = self.pkgs.get(cid) {
                        map.entry(p.name.clone())
                            .or_default()
                            .push(p.version.clone());
                    }
                }
            }
            let child_pref = Arc::new(Preferred {
                parent: Some(Arc::clone(&pref)),
                map,
            });
            for c in &children {
                if let Target::Pkg(cid) = &c.target {
                    if self.expanded.insert(cid.clone()) {
                        let at = locked::Origin::Child(id.clone(), c.alias.clone());
                        self.note_first(cid, at);
                        next.push((cid.clone(), Arc::clone(&child_pref)));
                    }
                }
            }
            if let Some(p) = self.pkgs.get_mut(&id) {
                p.children = children;
                self.graph_gen += 1;
            }
        }
        next
    }
}

/// A child edge of a package of the current level, before it is picked.
struct WantedChild {
    /// Index of the parent in the level.
    parent: usize,
    alias: String,
    spec: String,
    optional: bool,
}

/// Effective peer dependencies of a manifest as pnpm records them: declared peers
/// minus names that are also optional dependencies (those stay plain optional
/// children), plus `peerDependenciesMeta`-only optional entries as `*` unless the
/// name is a regular or optional dependency. Self-peers are dropped.
/// Returns name → (range, optional).
///
/// pnpm 11.9+ and 12 resolve an optional peer that is also a regular
/// dependency as that dependency (a plain child, no suffix; R18), where
/// pnpm 11.5.2 drops the dependency and keeps the peer. A required peer
/// keeps the 11.5.2 rule in every release (auto-installed, dependency
/// dropped).
pub(crate) fn normalized_peers(
    manifest: &Value,
    self_name: &str,
    dialect: Dialect,
) -> BTreeMap<String, (String, bool)> {
    let mut peers = peers_as_recorded(manifest, self_name, Dialect::Pnpm11_5);
    if dialect.newer() {
        let deps = manifest.get("dependencies").and_then(Value::as_object);
        peers.retain(|name, (_, optional)| {
            !*optional || !deps.is_some_and(|d| d.contains_key(name))
        });
    }
    peers
}

/// [`normalized_peers`] as `dialect`'s pnpm writes them into the lockfile's
/// `packages` entry: pnpm 11.9+ also records a `peerDependenciesMeta`-only
/// optional peer that is a regular dependency (still a plain child, never a
/// suffix; only the record differs).
pub(crate) fn peers_as_recorded(
    manifest: &Value,
    self_name: &str,
    dialect: Dialect,
) -> BTreeMap<String, (String, bool)> {
    let obj = |k: &str| manifest.get(k).and_then(Value::as_object);
    let is_dep = |n: &str| obj("dependencies").is_some_and(|m| m.contains_key(n));
    let is_opt = |n: &str| obj("optionalDependencies").is_some_and(|m| m.contains_key(n));
    let meta_optional = |n: &str| {
        obj("peerDependenciesMeta")
            .and_then(|m| m.get(n))
            .and_then(|x| x.get("optional"))
            .and_then(Value::as_bool)
            .unwrap_or(false)
    };
    let mut out = BTreeMap::new();
    for (k, v) in obj("peerDependencies").into_iter().flatten() {
        if k == self_name || is_opt(k) {
            continue;
        }
        out.insert(
            k.clone(),
            (v.as_str().unwrap_or("*").to_string(), meta_optional(k)),
        );
    }
    for k in obj("peerDependenciesMeta")
        .into_iter()
        .flatten()
        .map(|(k, _)| k)
    {
        let shadowed_by_dep = is_dep(k) && dialect == Dialect::Pnpm11_5;
        if k == self_name
            || out.contains_key(k)
            || shadowed_by_dep
            || is_opt(k)
            || !meta_optional(k)
        {
            continue;
        }
        out.insert(k.clone(), ("*".to_string(), true));
    }
    out
}

/// Normalises an importer dir (spec §1.3).
fn normalize_dir(dir: &str) -> Result<String, ResolveError> {
    if dir.is_empty() || dir == "." {
        return Ok(".".into());
    }
    let trimmed = dir.trim_end_matches('/');
    if trimmed.is_empty()
        || trimmed.starts_with('/')
        || trimmed.contains('\\')
        || trimmed
            .split('/')
            .any(|c| c.is_empty() || c == ".." || c == ".")
    {
        return Err(ResolveError::InvalidDir(dir.to_string()));
    }
    Ok(trimmed.to_string())
}

/// Relative POSIX path from importer dir `from` to dir `to`.
pub(crate) fn relative_dir(from: &str, to: &str) -> String {
    let parts = |d: &str| -> Vec<String> {
        if d == "." {
            Vec::new()
        } else {
            d.split('/').map(str::to_string).collect()
        }
    };
    let (a, b) = (parts(from), parts(to));
    let common = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let mut out: Vec<String> = vec!["..".to_string(); a.len() - common];
    out.extend(b[common..].iter().cloned());
    if out.is_empty() {
        ".".into()
    } else {
        out.join("/")
    }
}

/// Joins importer dir and a relative `link:` path, normalising `..`.
pub(crate) fn join_dir(base: &str, rel: &str) -> String {
    let mut parts: Vec<&str> = if base == "." {
        Vec::new()
    } else {
        base.split('/').collect()
    };
    for c in rel.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    if parts.is_empty() {
        ".".into()
    } else {
        parts.join("/")
    }
}

/// Whether every importer of `lf` lists exactly the specifiers its project
/// wants, group by group as [`grouped_deps`] assigns them (a project's own
/// peers, auto-installed, are production dependencies).
fn frozen_matches(
    lf: &pnpr_lockfile::Lockfile,
    projects: &[ProjectInput],
    auto_install_peers: bool,
) -> bool {
    projects.iter().all(|p| {
        let dir = normalize_dir(&p.dir).unwrap_or_default();
        let Some(imp) = lf.importers.get(&dir) else {
            return false;
        };
        let wanted = grouped_deps(p, auto_install_peers);
        let same = |group: Group, have: &pnpr_lockfile::ImporterDeps| {
            let want: Vec<_> = wanted.iter().filter(|(_, (_, g))| *g == group).collect();
            want.len() == have.len()
                && want
                    .iter()
                    .all(|(k, (v, _))| have.get(k.as_str()).is_some_and(|d| &d.specifier == v))
        };
        same(Group::Prod, &imp.dependencies)
            && same(Group::Dev, &imp.dev_dependencies)
            && same(Group::Optional, &imp.optional_dependencies)
    })
}

/// Strips the peer suffix from a lockfile version reference.
fn strip_suffix(v: &str) -> &str {
    v.split('(').next().unwrap_or(v)
}

/// Resolves the projects into a lockfile identical to what pnpm 11.5.2 writes.
pub async fn resolve(
    projects: &[ProjectInput],
    source: &dyn MetadataSource,
    opts: &ResolveOptions,
) -> Result<Resolution, ResolveError> {
    if opts.frozen {
        return frozen_resolution(projects, opts);
    }
    let seed = if opts.prefer_frozen {
        opts.input_lockfile.as_ref()
    } else {
        None
    };
    let mut r = Resolver::new(source, opts, locked_children(seed));
    // An up-to-date lockfile is never re-resolved by pnpm (it installs it
    // as it is), so only a changed project keeps locked peer providers.
    r.reuse_seed = seed.is_some_and(|lf| {
        !(frozen_matches(lf, projects, opts.auto_install_peers) && lf.overrides == opts.overrides)
    });
    let by_name = workspace_dirs(projects)?;
    let (mut importers, pending) = r.direct_deps(projects, &by_name)?;
    for p in &pending {
        r.ahead.hint(&p.name, &p.range);
    }
    r.fetch_all(pending.iter().map(|p| p.name.clone())).await?;
    let roots = r.pick_direct(&mut importers, pending, seed)?;
    r.expand(roots).await?;
    if opts.auto_install_peers {
        r.auto_install_peers(&mut importers).await?;
    }
    r.seed_tree.updated = std::mem::take(&mut r.updated);
    let below = r.current_below(&importers);
    let mut graph = Graph {
        pkgs: r.pkgs,
        importers,
        seed: r.seed_tree,
        dialect: opts.dialect,
    };
    if opts.auto_install_peers {
        hoist_peers(&mut graph, below);
    }
    let lockfile = peers::build_lockfile(&graph, opts);
    let packages = peers::collect_packages(&lockfile, opts);
    Ok(Resolution { lockfile, packages })
}

/// A frozen install takes the input lockfile as it is, if it still matches
/// every project's manifest.
fn frozen_resolution(
    projects: &[ProjectInput],
    opts: &ResolveOptions,
) -> Result<Resolution, ResolveError> {
    let lf = opts
        .input_lockfile
        .as_ref()
        .ok_or(ResolveError::FrozenMismatch)?;
    if !frozen_matches(lf, projects, opts.auto_install_peers) {
        return Err(ResolveError::FrozenMismatch);
    }
    let packages = peers::collect_packages(lf, opts);
    Ok(Resolution {
        lockfile: lf.clone(),
        packages,
    })
}

/// Pins of the seed lockfile: package id → child alias → version.
fn locked_children(
    seed: Option<&pnpr_lockfile::Lockfile>,
) -> HashMap<String, BTreeMap<String, String>> {
    let mut locked = HashMap::new();
    let Some(lf) = seed else {
        return locked;
    };
    for (key, snap) in &lf.snapshots {
        let id = strip_suffix(key).to_string();
        let entry: &mut BTreeMap<String, String> = locked.entry(id).or_default();
        for (alias, v) in snap.dependencies.iter().chain(&snap.optional_dependencies) {
            let v = strip_suffix(v);
            // Aliased references carry `name@version`; keep only the version.
            let version = if v.contains('@') {
                split_name_range(v).1.unwrap_or(v)
            } else {
                v
            };
            entry.insert(alias.clone(), version.to_string());
        }
    }
    locked
}

/// Normalized project dirs by project name (for `workspace:`); a dir given
/// twice is refused.
fn workspace_dirs(projects: &[ProjectInput]) -> Result<HashMap<&str, String>, ResolveError> {
    let mut dirs = BTreeSet::new();
    let mut by_name: HashMap<&str, String> = HashMap::new();
    for p in projects {
        let dir = normalize_dir(&p.dir)?;
        if !dirs.insert(dir.clone()) {
            return Err(ResolveError::InvalidDir(p.dir.clone()));
        }
        if !p.name.is_empty() {
            by_name.insert(p.name.as_str(), dir);
        }
    }
    Ok(by_name)
}

/// The version the seed lockfile pinned for a direct dependency, if its
/// specifier is `specifier` (any specifier when `None`).
fn locked_direct_version(
    seed: Option<&pnpr_lockfile::Lockfile>,
    dir: &str,
    alias: &str,
    specifier: Option<&str>,
) -> Option<String> {
    let imp = seed?.importers.get(dir)?;
    let d = imp
        .dependencies
        .get(alias)
        .or_else(|| imp.dev_dependencies.get(alias))
        .or_else(|| imp.optional_dependencies.get(alias))?;
    specifier.is_none_or(|s| d.specifier == s).then(|| {
        let v = strip_suffix(&d.version);
        if v.starts_with('@') || (v.contains('@')) {
            split_name_range(v).1.unwrap_or(v).to_string()
        } else {
            v.to_string()
        }
    })
}

/// pnpm (with auto-install-peers) hoists every peer that was resolved from a
/// provider below an importer's root to that root, so the provider stays in
/// scope for the whole importer tree.
/// `known` holds each importer's set when a walk of the unchanged graph
/// already found it.
fn hoist_peers(graph: &mut Graph, known: Vec<Option<BTreeMap<String, String>>>) {
    for (idx, known) in known.into_iter().enumerate() {
        let hoisted = known.unwrap_or_else(|| peers::walk_importer(graph, idx).below);
        graph.importers[idx].hoisted = hoisted;
    }
}

/// A registry dependency of an importer, waiting for its packument.
struct PendingDirect {
    importer: usize,
    alias: String,
    specifier: String,
    group: Group,
    name: String,
    range: String,
}

impl<'a> Resolver<'a> {
    fn new(
        source: &'a dyn MetadataSource,
        opts: &'a ResolveOptions,
        locked_children: HashMap<String, BTreeMap<String, String>>,
    ) -> Self {
        Resolver {
            source,
            opts,
            policy: PickPolicy {
                min_age_ms: opts
                    .minimum_release_age_minutes
                    .map(|m| (m as i64).saturating_mul(60_000)),
                now_ms: opts.now_ms,
                age_exempt: pick::exemptions(&opts.minimum_release_age_exclude),
            },
            packuments: HashMap::new(),
            overrides: parse_overrides(&opts.overrides),
            pkgs: BTreeMap::new(),
            expanded: HashSet::new(),
            locked_children,
            extensions: extend::parse(&compat::with_database(
                opts.dialect,
                opts.ignore_compatibility_db,
                &opts.package_extensions,
            )),
            updated: HashSet::new(),
            seed_tree: locked::SeedTree::default(),
            reuse_seed: false,
            candidates: HashMap::new(),
            graph_gen: 0,
            walks: HashMap::new(),
            ahead: lookahead::Lookahead::new(source, opts.concurrency),
        }
    }

    /// The input lockfile when a changed project reuses its entries.
    fn seed(&self) -> Option<&'a pnpr_lockfile::Lockfile> {
        let opts: &'a ResolveOptions = self.opts;
        opts.input_lockfile
            .as_ref()
            .filter(|_| opts.prefer_frozen && self.reuse_seed)
    }

    /// Records `id`'s first occurrence (where its children are resolved).
    fn note_first(&mut self, id: &str, at: locked::Origin) {
        if self.seed().is_none() || self.seed_tree.has_origin(id) {
            return;
        }
        if let Some(p) = self.pkgs.get(id) {
            let updated = self.updated.contains(&p.name);
            self.seed_tree.note_first(id, &p.version, at, updated);
        }
    }

    /// Records the lockfile entry direct dependency `d` of importer `idx`
    /// reuses, and where `id` is first met.
    fn note_root(&mut self, idx: usize, dir: &str, d: &PendingDirect, id: &str) {
        let Some(seed) = self.seed() else { return };
        if let Some(dep) = locked::importer_dep(seed, dir, &d.alias) {
            let unchanged = dep.specifier == d.specifier;
            self.seed_tree
                .note_root(seed, (idx, &d.alias), &dep.version, &d.range, unchanged);
        }
        self.note_first(id, locked::Origin::Root(idx, d.alias.clone()));
    }

    /// Direct dependencies of every importer: workspace and `link:` targets
    /// are settled here; registry ones are returned to be picked once their
    /// packuments are fetched.
    fn direct_deps(
        &self,
        projects: &[ProjectInput],
        by_name: &HashMap<&str, String>,
    ) -> Result<(Vec<ImporterGraph>, Vec<PendingDirect>), ResolveError> {
        let mut importers: Vec<ImporterGraph> = Vec::new();
        let mut pending = Vec::new();
        for p in projects {
            let dir = normalize_dir(&p.dir)?;
            let idx = importers.len();
            let mut importer = ImporterGraph {
                dir: dir.clone(),
                ..Default::default()
            };
            for (alias, (specifier, group)) in grouped_deps(p, self.opts.auto_install_peers) {
                let spec = self.apply_override(None, &alias, &specifier);
                let target = match parse_spec(&alias, &spec) {
                    Some(Wanted::Registry { name, spec: range }) => {
                        pending.push(PendingDirect {
                            importer: idx,
                            alias,
                            specifier,
                            group,
                            name,
                            range,
                        });
                        continue;
                    }
                    Some(Wanted::Workspace) => {
                        let target_dir = by_name
                            .get(alias.as_str())
                            .ok_or_else(|| ResolveError::WorkspaceNotFound(alias.clone()))?;
                        Target::Link(relative_dir(&dir, target_dir))
                    }
                    Some(Wanted::Link(path)) => {
                        Target::Link(relative_dir(&dir, &join_dir(&dir, &path)))
                    }
                    None => return Err(ResolveError::UnsupportedSpec { name: alias, spec }),
                };
                importer.direct.push(DirectDep {
                    alias,
                    specifier,
                    group,
                    target,
                });
            }
            importers.push(importer);
        }
        Ok((importers, pending))
    }

    /// Picks every registry direct dependency (preferring the seed's pin) and
    /// returns the expansion roots, each importer's picks preferred below it.
    fn pick_direct(
        &mut self,
        importers: &mut [ImporterGraph],
        pending: Vec<PendingDirect>,
        seed: Option<&pnpr_lockfile::Lockfile>,
    ) -> Result<Vec<(String, Arc<Preferred>)>, ResolveError> {
        let mut per_importer_pref: Vec<HashMap<String, Vec<String>>> =
            vec![HashMap::new(); importers.len()];
        for d in pending {
            let idx = d.importer;
            let locked =
                locked_direct_version(seed, &importers[idx].dir, &d.alias, Some(&d.specifier));
            let preferred: Vec<String> = locked.into_iter().collect();
            let id = self.pick(&d.name, &d.range, &preferred, d.group == Group::Optional)?;
            let was = locked_direct_version(seed, &importers[idx].dir, &d.alias, None);
            if seed.is_some() && was.as_deref() != self.pkgs.get(&id).map(|p| p.version.as_str()) {
                // pnpm's `updatedSet`: a direct dependency that is new or
                // resolved to another version unpins every transitive
                // occurrence of its name from the lockfile.
                self.updated.insert(d.name.clone());
            }
            let dir = importers[idx].dir.clone();
            self.note_root(idx, &dir, &d, &id);
            if let Some(p) = self.pkgs.get(&id) {
                per_importer_pref[idx]
                    .entry(p.name.clone())
                    .or_default()
                    .push(p.version.clone());
            }
            importers[idx].direct.push(DirectDep {
                alias: d.alias,
                specifier: d.specifier,
                group: d.group,
                target: Target::Pkg(id),
            });
        }
        let mut roots = Vec::new();
        for (imp, map) in importers.iter().zip(per_importer_pref) {
            let pref = Arc::new(Preferred { parent: None, map });
            for d in &imp.direct {
                if let Target::Pkg(id) = &d.target {
                    roots.push((id.clone(), Arc::clone(&pref)));
                }
            }
        }
        Ok(roots)
    }

    /// Auto-installs missing required peers, importer by importer, until
    /// stable; then hoists missing optional peers the graph already holds
    /// (pnpm's `resolveRootDependencies` loop). Bounded: at most 8 outer
    /// and 8 inner rounds.
    async fn auto_install_peers(
        &mut self,
        importers: &mut [ImporterGraph],
    ) -> Result<(), ResolveError> {
        for _outer in 0..8 {
            for idx in 0..importers.len() {
                for _round in 0..8 {
                    let added = self.add_missing_peers(importers, idx).await?;
                    if added.is_empty() {
                        break;
                    }
                    self.expand(added).await?;
                }
            }
            let mut added = Vec::new();
            for idx in 0..importers.len() {
                added.extend(self.hoist_optional_peers(importers, idx));
            }
            if added.is_empty() {
                break;
            }
            self.expand(added).await?;
        }
        Ok(())
    }

    /// The importer's unresolved peers, computed on the graph so far.
    fn importer_missing_peers(
        &mut self,
        importers: &[ImporterGraph],
        idx: usize,
    ) -> peers::MissingPeers {
        self.importer_walk(importers, idx).missing
    }

    /// A walk of importer `idx`'s tree on the graph so far, reused while
    /// neither the graph nor the importer's hidden peers changed (a walk is
    /// a pure function of both).
    fn importer_walk(&mut self, importers: &[ImporterGraph], idx: usize) -> peers::ImporterWalk {
        let key = (self.graph_gen, importers[idx].hidden.len());
        if let Some((k, walk)) = self.walks.get(&idx) {
            if *k == key {
                return walk.clone();
            }
        }
        let graph = Graph {
            pkgs: std::mem::take(&mut self.pkgs),
            importers: importers.to_vec(),
            seed: locked::SeedTree::default(),
            dialect: self.opts.dialect,
        };
        let walk = peers::walk_importer(&graph, idx);
        self.pkgs = graph.pkgs;
        self.walks.insert(idx, (key, walk.clone()));
        walk
    }

    /// The peers each importer resolves below its root, from the last walk
    /// when nothing changed since (else `None`, to be walked again).
    fn current_below(&self, importers: &[ImporterGraph]) -> Vec<Option<BTreeMap<String, String>>> {
        (0..importers.len())
            .map(|idx| {
                let key = (self.graph_gen, importers[idx].hidden.len());
                self.walks
                    .get(&idx)
                    .filter(|(k, _)| *k == key)
                    .map(|(_, w)| w.below.clone())
            })
            .collect()
    }

    /// Optional peers (declared in `peerDependencies`) that importer `idx`
    /// leaves unresolved are hoisted to its root when some version already
    /// in the graph satisfies every range that asks for them: the highest
    /// such version (pnpm's `getHoistableOptionalPeers`). Others stay
    /// unresolved. Returns the packages to expand.
    fn hoist_optional_peers(
        &mut self,
        importers: &mut [ImporterGraph],
        idx: usize,
    ) -> Vec<(String, Arc<Preferred>)> {
        let missing = self.importer_missing_peers(importers, idx).optional;
        let mut added = Vec::new();
        for (name, ranges) in missing {
            if importers[idx].hidden.contains_key(&name) {
                continue;
            }
            let Some(version) = pick::highest_in_graph(&self.graph_versions(&name), &ranges) else {
                continue;
            };
            let id = format!("{name}@{version}");
            if !self.pkgs.contains_key(&id) {
                continue;
            }
            importers[idx].hidden.insert(name.clone(), id.clone());
            importers[idx].optional_hidden.insert(name);
            added.push((id, Arc::new(Preferred::default())));
        }
        added
    }

    /// Versions of `name` resolved so far.
    fn graph_versions(&self, name: &str) -> Vec<String> {
        self.pkgs
            .values()
            .filter(|p| p.name == name)
            .map(|p| p.version.clone())
            .collect()
    }

    /// One round: picks a version for each peer importer `idx` misses and
    /// records it as hidden; returns the new packages to expand.
    async fn add_missing_peers(
        &mut self,
        importers: &mut [ImporterGraph],
        idx: usize,
    ) -> Result<Vec<(String, Arc<Preferred>)>, ResolveError> {
        let missing = self.importer_missing_peers(importers, idx).required;
        let mut added = Vec::new();
        for (name, ranges) in missing {
            if importers[idx].hidden.contains_key(&name) {
                continue;
            }
            let Some(id) = self.pick_peer(&name, &ranges).await? else {
                continue;
            };
            importers[idx].hidden.insert(name, id.clone());
            added.push((id, Arc::new(Preferred::default())));
        }
        Ok(added)
    }

    /// The package a missing peer is auto-installed as, if every requested
    /// range parses and some version fits.
    async fn pick_peer(
        &mut self,
        name: &str,
        ranges: &[String],
    ) -> Result<Option<String>, ResolveError> {
        let parsed: Vec<Range> = ranges.iter().filter_map(|s| Range::parse(s).ok()).collect();
        if parsed.len() != ranges.len() {
            return Ok(None);
        }
        let in_graph = self.graph_versions(name);
        self.fetch_all([name.to_string()]).await?;
        let Some(packument) = self.packuments.get(name).cloned() else {
            return Ok(None);
        };
        // The merged wanted range is an exact version only when every
        // requester names the same one.
        let exact: Option<nodejs_semver::Version> = ranges
            .iter()
            .map(|s| nodejs_semver::Version::parse(s.trim()).ok())
            .reduce(|a, b| if a == b { a } else { None })
            .flatten();
        let candidates = self.candidates(name, &packument);
        let Some(version) =
            pick_missing_peer(&packument, &candidates, &parsed, exact.as_ref(), &in_graph)
        else {
            return Ok(None);
        };
        Ok(Some(self.register(name, &version, &packument, false)))
    }
}

/// A project's dependencies by alias with their group; an alias in several
/// groups keeps the last of dev, prod, optional (pnpm's precedence). With
/// auto-installed peers the project's own peers come first, as production
/// dependencies, so any other group naming them wins (pnpm's
/// `getWantedDependencies`).
fn grouped_deps(p: &ProjectInput, auto_install_peers: bool) -> BTreeMap<String, (String, Group)> {
    let mut deps = BTreeMap::new();
    let peers = auto_install_peers.then_some((Group::Prod, &p.peer_dependencies));
    for (group, map) in peers.into_iter().chain([
        (Group::Dev, &p.dev_dependencies),
        (Group::Prod, &p.dependencies),
        (Group::Optional, &p.optional_dependencies),
    ]) {
        for (k, v) in map {
            deps.insert(k.clone(), (v.clone(), group));
        }
    }
    deps
}

#[cfg(test)]
mod tests;
