//! Property tests for how the resolver reads a client's input lockfile: with
//! `frozen` (the lockfile is returned as is and its packages are listed for
//! serving) and with `prefer_frozen` (snapshot pins seed the resolution).
//! Hostile keys and versions must never panic, and the work and output must
//! stay proportional to the lockfile.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use futures_util::future::BoxFuture;
use proptest::prelude::*;
use serde_json::{json, Value};

use pnpr_lockfile::{Importer, ImporterDep, Lockfile, PackageInfo, Resolution, Snapshot};
use pnpr_resolver::{resolve, MetadataSource, ProjectInput, ResolveError, ResolveOptions};

const REGISTRY: &str = "http://127.0.0.1:1/";

/// Knows one package, `a@1.0.0`, and counts lookups.
struct OneDoc {
    calls: AtomicUsize,
}

impl MetadataSource for OneDoc {
    fn packument<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Arc<Value>, ResolveError>> {
        Box::pin(async move {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if name == "a" {
                Ok(Arc::new(json!({
                    "name": "a",
                    "dist-tags": {"latest": "1.0.0"},
                    "versions": {"1.0.0": {"name": "a", "version": "1.0.0",
                        "dist": {"integrity": "sha512-a", "tarball": "http://127.0.0.1:1/a/-/a-1.0.0.tgz"}}}
                })))
            } else {
                Err(ResolveError::NotFound(name.to_owned()))
            }
        })
    }
}

fn hostile() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z@/()._0-9^~<>=|: -]{0,20}",
        ".{0,12}",
        Just("@".to_owned()),
        Just("@@".to_owned()),
        Just("a@".to_owned()),
        Just("a@1.0.0(".to_owned()),
        Just("a@npm:b@1".to_owned()),
        Just("../../x@1".to_owned()),
    ]
}

fn str_map() -> impl Strategy<Value = BTreeMap<String, String>> {
    prop::collection::btree_map(hostile(), hostile(), 0..4)
}

fn lockfile() -> impl Strategy<Value = Lockfile> {
    let dep =
        (hostile(), hostile()).prop_map(|(specifier, version)| ImporterDep { specifier, version });
    let importer = prop::collection::btree_map(hostile(), dep, 0..4).prop_map(|deps| Importer {
        dependencies: deps,
        ..Importer::default()
    });
    let package = (prop::option::of(hostile()), prop::option::of(hostile())).prop_map(
        |(integrity, tarball)| PackageInfo {
            resolution: Resolution { integrity, tarball },
            ..PackageInfo::default()
        },
    );
    let snapshot =
        (str_map(), str_map()).prop_map(|(dependencies, optional_dependencies)| Snapshot {
            dependencies,
            optional_dependencies,
            ..Snapshot::default()
        });
    (
        prop::collection::btree_map(
            prop_oneof![3 => Just(".".to_owned()), 1 => "[a-z]{1,4}", 1 => hostile()],
            importer,
            1..3,
        ),
        prop::collection::btree_map(hostile(), package, 0..6),
        prop::collection::btree_map(hostile(), snapshot, 0..6),
    )
        .prop_map(|(importers, packages, snapshots)| Lockfile {
            importers,
            packages,
            snapshots,
            ..Lockfile::default()
        })
}

/// The projects the lockfile's importers describe (so `frozen` matches).
fn projects_of(lf: &Lockfile) -> Vec<ProjectInput> {
    lf.importers
        .iter()
        .map(|(dir, imp)| ProjectInput {
            dir: dir.clone(),
            dependencies: imp
                .dependencies
                .iter()
                .map(|(k, d)| (k.clone(), d.specifier.clone()))
                .collect(),
            ..ProjectInput::default()
        })
        .collect()
}

fn run<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn frozen_lockfiles_are_listed_not_trusted_blindly(lf in lockfile()) {
        let src = OneDoc { calls: AtomicUsize::new(0) };
        let opts = ResolveOptions {
            registry: REGISTRY.to_owned(),
            input_lockfile: Some(lf.clone()),
            frozen: true,
            ..ResolveOptions::default()
        };
        let projects = projects_of(&lf);
        if let Ok(res) = run(resolve(&projects, &src, &opts)) {
            prop_assert_eq!(&res.lockfile, &lf);
            prop_assert!(res.packages.len() <= lf.packages.len());
            for p in &res.packages {
                prop_assert!(lf.packages.keys().any(|k| k.starts_with(&p.name)));
            }
        }
        // Frozen mode never fetches metadata.
        prop_assert_eq!(src.calls.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn hostile_pins_only_seed_resolution(lf in lockfile(), spec in prop_oneof![Just("^1.0.0".to_owned()), hostile()]) {
        let src = OneDoc { calls: AtomicUsize::new(0) };
        let opts = ResolveOptions {
            registry: REGISTRY.to_owned(),
            input_lockfile: Some(lf.clone()),
            prefer_frozen: true,
            ..ResolveOptions::default()
        };
        let project = ProjectInput {
            dir: ".".to_owned(),
            dependencies: [("a".to_owned(), spec)].into_iter().collect(),
            ..ProjectInput::default()
        };
        let res = run(resolve(&[project], &src, &opts));
        // Pins name versions; they never add packages beyond what the one
        // known document can supply.
        if let Ok(res) = res {
            prop_assert!(res.packages.len() <= 1, "{:?}", res.packages);
        }
        prop_assert!(src.calls.load(Ordering::SeqCst) <= 2);
    }
}

/// The frozen property must reach its success path, not only refusals.
#[test]
fn frozen_generator_reaches_the_success_path() {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = lockfile();
    let ok = (0..100)
        .filter(|_| {
            let lf = strategy.new_tree(&mut runner).expect("value").current();
            let src = OneDoc {
                calls: AtomicUsize::new(0),
            };
            let opts = ResolveOptions {
                registry: REGISTRY.to_owned(),
                input_lockfile: Some(lf.clone()),
                frozen: true,
                ..ResolveOptions::default()
            };
            run(resolve(&projects_of(&lf), &src, &opts)).is_ok()
        })
        .count();
    assert!(ok >= 10, "only {ok} of 100 frozen lockfiles matched");
}
