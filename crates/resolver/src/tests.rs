use super::*;
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

struct MemSource {
    docs: HashMap<String, Arc<Value>>,
    calls: Mutex<HashMap<String, usize>>,
    total: AtomicUsize,
}

impl MemSource {
    fn new(docs: Vec<Value>) -> Self {
        let docs = docs
            .into_iter()
            .map(|d| (d["name"].as_str().unwrap_or("").to_string(), Arc::new(d)))
            .collect();
        Self {
            docs,
            calls: Mutex::new(HashMap::new()),
            total: AtomicUsize::new(0),
        }
    }
}

impl MetadataSource for MemSource {
    fn packument<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Arc<Value>, ResolveError>> {
        Box::pin(async move {
            self.total.fetch_add(1, Ordering::SeqCst);
            *self
                .calls
                .lock()
                .unwrap()
                .entry(name.to_string())
                .or_default() += 1;
            self.docs
                .get(name)
                .cloned()
                .ok_or_else(|| ResolveError::NotFound(name.to_string()))
        })
    }
}

fn doc(name: &str, versions: &[(&str, Value)]) -> Value {
    let mut vs = serde_json::Map::new();
    let mut latest = "";
    for (v, extra) in versions {
        let mut m = json!({"name": name, "version": v, "dist": {"integrity": format!("sha512-{name}-{v}")}});
        if let (Some(o), Some(e)) = (m.as_object_mut(), extra.as_object()) {
            for (k, x) in e {
                o.insert(k.clone(), x.clone());
            }
        }
        vs.insert(v.to_string(), m);
        latest = v;
    }
    json!({"name": name, "dist-tags": {"latest": latest}, "versions": vs})
}

fn source() -> MemSource {
    MemSource::new(vec![
        doc(
            "a",
            &[
                ("1.0.0", json!({"dependencies": {"b": "^1.0.0"}})),
                ("1.1.0", json!({"dependencies": {"b": "^1.0.0"}})),
            ],
        ),
        doc("b", &[("1.0.0", json!({})), ("1.2.0", json!({}))]),
        doc(
            "p",
            &[("1.0.0", json!({"peerDependencies": {"b": "^1.0.0"}}))],
        ),
        doc("q", &[("1.0.0", json!({"dependencies": {"p": "1.0.0"}}))]),
    ])
}

fn project(deps: &[(&str, &str)]) -> ProjectInput {
    ProjectInput {
        dir: ".".into(),
        dependencies: deps
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
        ..Default::default()
    }
}

fn run<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

#[test]
fn resolves_highest_and_fetches_each_packument_once() {
    let src = source();
    let res = run(resolve(
        &[project(&[("a", "^1.0.0"), ("q", "1.0.0")])],
        &src,
        &ResolveOptions::default(),
    ))
    .unwrap();
    let lf = &res.lockfile;
    assert_eq!(lf.importers["."].dependencies["a"].version, "1.1.0");
    assert_eq!(lf.snapshots["a@1.1.0"].dependencies["b"], "1.2.0");
    // q's child p has a missing peer b: auto-installed b@1.2.0 (already in the graph).
    assert_eq!(
        lf.importers["."].dependencies["q"].version,
        "1.0.0(b@1.2.0)"
    );
    assert_eq!(
        lf.snapshots["q@1.0.0(b@1.2.0)"].transitive_peer_dependencies,
        vec!["b".to_string()]
    );
    assert_eq!(lf.snapshots["p@1.0.0(b@1.2.0)"].dependencies["b"], "1.2.0");
    assert!(src.calls.lock().unwrap().values().all(|n| *n == 1));
    assert_eq!(res.packages.len(), 4);
    let b = res.packages.iter().find(|p| p.name == "b").unwrap();
    assert_eq!(b.tarball_url, "http://127.0.0.1:4873/b/-/b-1.2.0.tgz");
}

#[test]
fn prefer_frozen_keeps_pins_of_unchanged_specifiers() {
    let src = source();
    let mut seed = pnpr_lockfile::Lockfile::default();
    let mut imp = pnpr_lockfile::Importer::default();
    imp.dependencies.insert(
        "a".into(),
        pnpr_lockfile::ImporterDep {
            specifier: "^1.0.0".into(),
            version: "1.0.0".into(),
        },
    );
    seed.importers.insert(".".into(), imp);
    seed.snapshots.insert(
        "a@1.0.0".into(),
        pnpr_lockfile::Snapshot {
            dependencies: [("b".to_string(), "1.0.0".to_string())].into(),
            ..Default::default()
        },
    );
    let opts = ResolveOptions {
        input_lockfile: Some(seed.clone()),
        ..Default::default()
    };
    let res = run(resolve(&[project(&[("a", "^1.0.0")])], &src, &opts)).unwrap();
    assert_eq!(
        res.lockfile.importers["."].dependencies["a"].version,
        "1.0.0"
    );
    assert_eq!(res.lockfile.snapshots["a@1.0.0"].dependencies["b"], "1.0.0");

    let changed = run(resolve(&[project(&[("a", "~1.1.0")])], &src, &opts)).unwrap();
    assert_eq!(
        changed.lockfile.importers["."].dependencies["a"].version,
        "1.1.0"
    );

    let frozen = ResolveOptions {
        frozen: true,
        ..opts
    };
    assert!(matches!(
        run(resolve(&[project(&[("a", "~1.1.0")])], &src, &frozen)),
        Err(ResolveError::FrozenMismatch)
    ));
    let ok = run(resolve(&[project(&[("a", "^1.0.0")])], &src, &frozen)).unwrap();
    assert_eq!(ok.lockfile, seed);
}

#[test]
fn overrides_and_errors() {
    let src = source();
    let opts = ResolveOptions {
        overrides: [("a>b".to_string(), "1.0.0".to_string())].into(),
        ..Default::default()
    };
    let res = run(resolve(
        &[project(&[("a", "1.1.0"), ("b", "^1.0.0")])],
        &src,
        &opts,
    ))
    .unwrap();
    assert_eq!(res.lockfile.snapshots["a@1.1.0"].dependencies["b"], "1.0.0");
    assert_eq!(
        res.lockfile.importers["."].dependencies["b"].version,
        "1.2.0"
    );
    assert_eq!(res.lockfile.overrides.len(), 1);

    let missing = run(resolve(
        &[project(&[("zzz", "1")])],
        &src,
        &ResolveOptions::default(),
    ));
    assert!(matches!(missing, Err(ResolveError::NotFound(n)) if n == "zzz"));
    let nomatch = run(resolve(
        &[project(&[("a", "^9")])],
        &src,
        &ResolveOptions::default(),
    ));
    assert!(matches!(
        nomatch,
        Err(ResolveError::NoMatchingVersion { .. })
    ));
    let bad_dir = ProjectInput {
        dir: "../x".into(),
        ..Default::default()
    };
    assert!(matches!(
        run(resolve(&[bad_dir], &src, &ResolveOptions::default())),
        Err(ResolveError::InvalidDir(_))
    ));
}

#[test]
fn workspace_links_are_relative_to_the_importer() {
    let src = source();
    let root = ProjectInput {
        dir: ".".into(),
        ..Default::default()
    };
    let a = ProjectInput {
        dir: "packages/a".into(),
        name: "pa".into(),
        dependencies: [("pb".to_string(), "workspace:*".to_string())].into(),
        ..Default::default()
    };
    let b = ProjectInput {
        dir: "packages/b".into(),
        name: "pb".into(),
        ..Default::default()
    };
    let res = run(resolve(&[root, a, b], &src, &ResolveOptions::default())).unwrap();
    assert_eq!(
        res.lockfile.importers["packages/a"].dependencies["pb"].version,
        "link:../b"
    );
    assert_eq!(relative_dir(".", "packages/lib"), "packages/lib");
    assert_eq!(join_dir("packages/a", "../b"), "packages/b");
}

/// A peer resolved below the root is hoisted to it: a later same-version
/// provider deeper down does not shadow it for the dependents of that provider.
#[test]
fn peers_resolved_below_the_root_stay_in_scope() {
    let src = MemSource::new(vec![
        doc(
            "a",
            &[
                ("1.0.0", json!({"dependencies": {"b": "1.0.0"}})),
                ("2.0.0", json!({"dependencies": {"b": "1.0.0"}})),
            ],
        ),
        doc("x", &[("1.0.0", json!({"dependencies": {"a": "2.0.0"}}))]),
        doc(
            "b",
            &[(
                "1.0.0",
                json!({"dependencies": {"c": "1.0.0"}, "peerDependencies": {"a": "*"}}),
            )],
        ),
        doc("c", &[("1.0.0", json!({"dependencies": {"d": "1.0.0"}}))]),
        doc("d", &[("1.0.0", json!({"peerDependencies": {"b": "*"}}))]),
    ]);
    let res = run(resolve(
        &[project(&[("a", "1.0.0"), ("x", "1.0.0")])],
        &src,
        &ResolveOptions::default(),
    ))
    .unwrap();
    let lf = &res.lockfile;
    let c = "1.0.0(b@1.0.0(a@1.0.0))";
    assert_eq!(lf.snapshots["b@1.0.0(a@1.0.0)"].dependencies["c"], c);
    assert_eq!(lf.snapshots["b@1.0.0(a@2.0.0)"].dependencies["c"], c);
    assert!(!lf.snapshots.contains_key("c@1.0.0(b@1.0.0(a@2.0.0))"));
    // The hoisted provider is not written to the importer.
    assert_eq!(lf.importers["."].dependencies.len(), 2);
}

mod locked_peers;
mod peer_rules;

#[test]
fn registry_for_follows_the_scope_mapping() {
    let mut opts = ResolveOptions::default();
    opts.scope_registries
        .insert("@corp".into(), "http://127.0.0.1:9/~corp/".into());
    assert_eq!(opts.registry_for("@corp/foo"), "http://127.0.0.1:9/~corp/");
    assert_eq!(opts.registry_for("@corpx/foo"), opts.registry);
    assert_eq!(opts.registry_for("corp"), opts.registry);
    assert_eq!(opts.registry_for("@corp"), opts.registry);
}

/// [`MemSource`] that also answers look-ahead, counting it apart.
struct AheadSource {
    inner: MemSource,
    ahead: Mutex<Vec<String>>,
}

impl MetadataSource for AheadSource {
    /// `q` takes longer than the others, so the look-ahead has a wait to
    /// run in (the in-memory documents are otherwise ready at once).
    fn packument<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Arc<Value>, ResolveError>> {
        Box::pin(async move {
            for _ in 0..if name == "q" { 8 } else { 1 } {
                tokio::task::yield_now().await;
            }
            self.inner.packument(name).await
        })
    }

    fn prefetch<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Option<Arc<Value>>> {
        self.ahead.lock().unwrap().push(name.to_string());
        Box::pin(async move { self.inner.docs.get(name).cloned() })
    }
}

#[test]
fn look_ahead_warms_the_next_levels_without_changing_reads_or_result() {
    let projects = [project(&[("a", "^1.0.0"), ("q", "1.0.0")])];
    let plain = source();
    let without = run(resolve(&projects, &plain, &ResolveOptions::default())).unwrap();
    let src = AheadSource {
        inner: source(),
        ahead: Mutex::new(Vec::new()),
    };
    let with = run(resolve(&projects, &src, &ResolveOptions::default())).unwrap();
    assert_eq!(
        serde_json::to_value(&with.lockfile).unwrap(),
        serde_json::to_value(&without.lockfile).unwrap()
    );
    // a's dependency was looked up ahead while q was still on its way (q's
    // arrived last: nothing was left to wait for); the resolution still read
    // every packument itself, exactly once, as without look-ahead.
    assert_eq!(*src.ahead.lock().unwrap(), ["b"]);
    assert_eq!(
        *src.inner.calls.lock().unwrap(),
        *plain.calls.lock().unwrap()
    );
}
