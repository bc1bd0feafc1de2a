//! One test per pnpm peer rule of RFC 0007, on in-process metadata: optional
//! peers that stay missing, optional-peer hoisting from the graph, peers
//! named like an own child, a project's own peers, the suffix order and
//! length bound, and `engines` as pnpm writes it.

use super::*;

fn resolve_one(src: &MemSource, deps: &[(&str, &str)]) -> pnpr_lockfile::Lockfile {
    run(resolve(&[project(deps)], src, &ResolveOptions::default()))
        .unwrap()
        .lockfile
}

/// `peerDependenciesMeta`-only optional peers are peers `*` of the package
/// and, while nothing provides them, transitive peers of every dependent.
#[test]
fn missing_optional_peers_are_transitive_peers_of_dependents() {
    let src = MemSource::new(vec![
        doc(
            "debug",
            &[(
                "4.0.0",
                json!({"peerDependenciesMeta": {"supports-color": {"optional": true}}}),
            )],
        ),
        doc(
            "agent",
            &[("1.0.0", json!({"dependencies": {"debug": "^4"}}))],
        ),
        doc(
            "top",
            &[("1.0.0", json!({"dependencies": {"agent": "1.0.0"}}))],
        ),
    ]);
    let lf = resolve_one(&src, &[("top", "1.0.0")]);
    let debug = &lf.packages["debug@4.0.0"];
    assert_eq!(debug.peer_dependencies["supports-color"], "*");
    assert!(debug.peer_dependencies_meta["supports-color"].optional);
    assert!(lf.snapshots["debug@4.0.0"]
        .transitive_peer_dependencies
        .is_empty());
    for dependent in ["agent@1.0.0", "top@1.0.0"] {
        assert_eq!(
            lf.snapshots[dependent].transitive_peer_dependencies,
            vec!["supports-color".to_string()],
            "{dependent}"
        );
    }
    // Missing optional peers are never auto-installed.
    assert_eq!(lf.packages.len(), 3);
}

/// A declared optional peer that nothing provides is hoisted to the importer
/// from the graph (the highest version there satisfying every range), and
/// left unresolved when no version in the graph fits.
#[test]
fn optional_peers_are_hoisted_only_from_versions_in_the_graph() {
    let src = MemSource::new(vec![
        doc(
            "core",
            &[
                ("7.1.0", json!({})),
                ("7.2.0", json!({})),
                ("8.0.0", json!({})),
            ],
        ),
        doc(
            "uses-71",
            &[("1.0.0", json!({"dependencies": {"core": "7.1.0"}}))],
        ),
        doc(
            "uses-8",
            &[("1.0.0", json!({"dependencies": {"core": "8.0.0"}}))],
        ),
        doc(
            "plugin",
            &[(
                "1.0.0",
                json!({"peerDependencies": {"core": "^7.0.0", "absent": "^1"},
                       "peerDependenciesMeta": {"core": {"optional": true}, "absent": {"optional": true}}}),
            )],
        ),
        doc("absent", &[("1.0.0", json!({}))]),
        doc(
            "host",
            &[("1.0.0", json!({"dependencies": {"plugin": "1.0.0"}}))],
        ),
    ]);
    let lf = resolve_one(
        &src,
        &[("uses-71", "1.0.0"), ("uses-8", "1.0.0"), ("host", "1.0.0")],
    );
    // 7.2.0 is in the registry but not in the graph: 7.1.0 is chosen.
    assert_eq!(
        lf.importers["."].dependencies["host"].version,
        "1.0.0(core@7.1.0)"
    );
    let plugin = &lf.snapshots["plugin@1.0.0(core@7.1.0)"];
    assert_eq!(plugin.optional_dependencies["core"], "7.1.0");
    assert_eq!(
        lf.snapshots["host@1.0.0(core@7.1.0)"].transitive_peer_dependencies,
        vec!["absent".to_string(), "core".to_string()]
    );
    assert!(!lf.packages.contains_key("absent@1.0.0"));
    assert!(!lf.packages.contains_key("core@7.2.0"));
    // Hoisted optional peers are not written to the importer.
    assert_eq!(lf.importers["."].dependencies.len(), 3);
}

/// A peer a child resolved is not a peer of the parent when the parent has
/// a child of that name, even if the child deferred to an equal provider
/// further up.
#[test]
fn peers_named_like_an_own_child_stay_inside_the_parent() {
    let src = MemSource::new(vec![
        doc(
            "core",
            &[("1.0.0", json!({"dependencies": {"helper": "1.0.0"}}))],
        ),
        doc(
            "helper",
            &[("1.0.0", json!({"peerDependencies": {"core": "*"}}))],
        ),
        doc(
            "preset",
            &[("1.0.0", json!({"peerDependencies": {"core": "*"}}))],
        ),
        doc(
            "snapshot",
            &[(
                "1.0.0",
                json!({"dependencies": {"core": "1.0.0", "preset": "1.0.0"}}),
            )],
        ),
        doc(
            "config",
            &[(
                "1.0.0",
                json!({"dependencies": {"core": "1.0.0", "snapshot": "1.0.0"}}),
            )],
        ),
    ]);
    let lf = resolve_one(&src, &[("config", "1.0.0")]);
    assert_eq!(lf.importers["."].dependencies["config"].version, "1.0.0");
    assert_eq!(
        lf.snapshots["config@1.0.0"].dependencies["snapshot"],
        "1.0.0"
    );
    assert_eq!(
        lf.snapshots["snapshot@1.0.0"].dependencies["preset"],
        "1.0.0(core@1.0.0)"
    );
}

/// With auto-installed peers a project's own `peerDependencies` become
/// production dependencies with the peer range as specifier, unless another
/// group names them.
#[test]
fn a_projects_own_peers_are_installed_into_its_importer() {
    let src = source();
    let p = ProjectInput {
        dir: ".".into(),
        dev_dependencies: [("a".to_string(), "1.0.0".to_string())].into(),
        peer_dependencies: [
            ("a".to_string(), "^1.0.0".to_string()),
            ("b".to_string(), "^1.0.0".to_string()),
        ]
        .into(),
        ..Default::default()
    };
    let lf = run(resolve(
        std::slice::from_ref(&p),
        &src,
        &ResolveOptions::default(),
    ))
    .unwrap()
    .lockfile;
    let imp = &lf.importers["."];
    assert_eq!(imp.dependencies["b"].specifier, "^1.0.0");
    assert_eq!(imp.dependencies["b"].version, "1.2.0");
    assert_eq!(imp.dev_dependencies["a"].specifier, "1.0.0");
    assert!(!imp.dependencies.contains_key("a"));
    // That lockfile is up to date for the same project: a frozen install
    // takes it as it is (its importer lists the auto-installed peer).
    let frozen = ResolveOptions {
        frozen: true,
        input_lockfile: Some(lf.clone()),
        ..ResolveOptions::default()
    };
    let again = run(resolve(std::slice::from_ref(&p), &src, &frozen)).unwrap();
    assert_eq!(again.lockfile, lf);
    let off = ResolveOptions {
        auto_install_peers: false,
        ..Default::default()
    };
    let lf = run(resolve(&[p], &src, &off)).unwrap().lockfile;
    assert!(lf.importers["."].dependencies.is_empty());
}

/// Peer ids inside a suffix sort as whole strings, and a suffix longer than
/// 1000 characters becomes the first 32 hex digits of its SHA-256.
#[test]
fn peer_suffixes_sort_as_strings_and_are_bounded() {
    let src = MemSource::new(vec![
        doc("react", &[("1.0.0", json!({}))]),
        doc(
            "react-dom",
            &[("1.0.0", json!({"peerDependencies": {"react": "*"}}))],
        ),
        doc(
            "next",
            &[(
                "1.0.0",
                json!({"peerDependencies": {"react": "*", "react-dom": "*"}}),
            )],
        ),
    ]);
    let lf = resolve_one(
        &src,
        &[
            ("react", "1.0.0"),
            ("react-dom", "1.0.0"),
            ("next", "1.0.0"),
        ],
    );
    assert_eq!(
        lf.importers["."].dependencies["next"].version,
        "1.0.0(react-dom@1.0.0(react@1.0.0))(react@1.0.0)"
    );
    let long: Vec<String> = (0..40)
        .map(|i| format!("some-rather-long-peer-package-name-{i:02}@1.0.0"))
        .collect();
    let hashed = crate::peers::peer_graph_hash(long.clone());
    assert_eq!(hashed.len(), 32);
    assert!(hashed.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(
        crate::peers::peer_graph_hash(long[..2].to_vec()),
        long[..2].join(")(")
    );
}

/// `engines` entries of `*` are left out; an array's entries are keyed by
/// index, as pnpm's `Object.entries` writes them.
#[test]
fn engines_are_written_as_pnpm_writes_them() {
    let src = MemSource::new(vec![
        doc("glob", &[("7.0.0", json!({"engines": {"node": "*"}}))]),
        doc("concat", &[("1.0.0", json!({"engines": ["node >= 0.8"]}))]),
        doc(
            "both",
            &[("1.0.0", json!({"engines": {"node": ">=6", "npm": "*"}}))],
        ),
    ]);
    let lf = resolve_one(
        &src,
        &[("glob", "7.0.0"), ("concat", "1.0.0"), ("both", "1.0.0")],
    );
    assert!(lf.packages["glob@7.0.0"].engines.is_empty());
    assert_eq!(lf.packages["concat@1.0.0"].engines["0"], "node >= 0.8");
    assert_eq!(lf.packages["both@1.0.0"].engines.len(), 1);
}

/// A peer known only from `peerDependenciesMeta` and resolved below the root
/// is not hoisted to it; the dependency resolved without it is then replaced
/// by the variant that has it (`dedupePeerDependents`), while its dependent
/// keeps its own key and lists the peer as transitive.
#[test]
fn meta_only_peers_are_not_hoisted_and_poorer_variants_are_deduped() {
    let src = MemSource::new(vec![
        doc(
            "debug",
            &[(
                "4.0.0",
                json!({"dependencies": {"ms": "^2"},
                       "peerDependenciesMeta": {"supports-color": {"optional": true}}}),
            )],
        ),
        doc("ms", &[("2.0.0", json!({}))]),
        doc("supports-color", &[("5.0.0", json!({}))]),
        doc(
            "nodemon",
            &[(
                "1.0.0",
                json!({"dependencies": {"debug": "^4", "supports-color": "^5"}}),
            )],
        ),
        doc(
            "body",
            &[("1.0.0", json!({"dependencies": {"debug": "^4"}}))],
        ),
        doc(
            "express",
            &[("1.0.0", json!({"dependencies": {"body": "1.0.0"}}))],
        ),
    ]);
    let lf = resolve_one(&src, &[("express", "1.0.0"), ("nodemon", "1.0.0")]);
    assert_eq!(lf.importers["."].dependencies["express"].version, "1.0.0");
    let body = &lf.snapshots["body@1.0.0"];
    assert_eq!(body.dependencies["debug"], "4.0.0(supports-color@5.0.0)");
    assert_eq!(
        body.transitive_peer_dependencies,
        vec!["supports-color".to_string()]
    );
    assert!(!lf.snapshots.contains_key("debug@4.0.0"));
    assert!(lf
        .snapshots
        .contains_key("debug@4.0.0(supports-color@5.0.0)"));
}

/// R17: pnpm 11.9+ collects a `peerDependenciesMeta`-only optional peer in
/// the tree phase like a declared one, so a version of it already in the
/// graph is hoisted to the importer (R3) and suffixes every dependent;
/// pnpm 11.5.2 leaves it missing. (`@angular/cli`'s `debug` and the
/// `supports-color@7` its `chalk@4` brings.)
#[test]
fn meta_only_optional_peers_are_hoisted_by_the_newer_pnpm_only() {
    let src = MemSource::new(vec![
        doc(
            "debug",
            &[(
                "4.0.0",
                json!({"peerDependenciesMeta": {"supports-color": {"optional": true}}}),
            )],
        ),
        doc(
            "chalk",
            &[("4.0.0", json!({"dependencies": {"supports-color": "^7"}}))],
        ),
        doc("supports-color", &[("7.2.0", json!({}))]),
        doc(
            "cli",
            &[(
                "1.0.0",
                json!({"dependencies": {"debug": "^4", "chalk": "^4"}}),
            )],
        ),
    ]);
    let with = |dialect| {
        let opts = ResolveOptions {
            dialect,
            ..ResolveOptions::default()
        };
        run(resolve(&[project(&[("cli", "1.0.0")])], &src, &opts))
            .unwrap()
            .lockfile
    };
    let old = with(Dialect::Pnpm11_5);
    assert_eq!(old.importers["."].dependencies["cli"].version, "1.0.0");
    assert_eq!(
        old.snapshots["cli@1.0.0"].transitive_peer_dependencies,
        vec!["supports-color".to_string()]
    );
    assert!(old.snapshots.contains_key("debug@4.0.0"));

    let new = with(Dialect::Pnpm11_9);
    assert_eq!(
        new.importers["."].dependencies["cli"].version,
        "1.0.0(supports-color@7.2.0)"
    );
    let cli = &new.snapshots["cli@1.0.0(supports-color@7.2.0)"];
    assert_eq!(cli.dependencies["debug"], "4.0.0(supports-color@7.2.0)");
    assert_eq!(
        cli.transitive_peer_dependencies,
        vec!["supports-color".to_string()]
    );
    assert!(!new.snapshots.contains_key("debug@4.0.0"));
    // Hoisted, not a dependency the importer lists.
    assert!(!new.importers["."]
        .dependencies
        .contains_key("supports-color"));
}

/// R17 with a provider below the root: `nodemon` provides `supports-color`
/// to its own `debug`; pnpm 11.9+ hoists that resolution to the importer,
/// so the `debug` under `body` gets it too (pnpm 11.5.2 does not, R9).
#[test]
fn meta_only_peers_resolved_below_are_hoisted_by_the_newer_pnpm_only() {
    let src = MemSource::new(vec![
        doc(
            "debug",
            &[(
                "4.0.0",
                json!({"peerDependenciesMeta": {"supports-color": {"optional": true}}}),
            )],
        ),
        doc("supports-color", &[("5.0.0", json!({}))]),
        doc(
            "nodemon",
            &[(
                "1.0.0",
                json!({"dependencies": {"debug": "^4", "supports-color": "^5"}}),
            )],
        ),
        doc(
            "body",
            &[("1.0.0", json!({"dependencies": {"debug": "^4"}}))],
        ),
    ]);
    let opts = ResolveOptions {
        dialect: Dialect::Pnpm11_9,
        ..ResolveOptions::default()
    };
    let lf = run(resolve(
        &[project(&[("body", "1.0.0"), ("nodemon", "1.0.0")])],
        &src,
        &opts,
    ))
    .unwrap()
    .lockfile;
    assert_eq!(
        lf.importers["."].dependencies["body"].version,
        "1.0.0(supports-color@5.0.0)"
    );
    assert_eq!(
        lf.snapshots["body@1.0.0(supports-color@5.0.0)"].dependencies["debug"],
        "4.0.0(supports-color@5.0.0)"
    );
}

/// A peer that sits on a cycle of peers (webpack ⇄ webpack-cli) appears as
/// its bare `name@version` inside every other key, while dependency
/// references keep its full dep path.
#[test]
fn peers_on_a_peer_cycle_appear_bare_inside_keys() {
    let src = MemSource::new(vec![
        doc(
            "webpack",
            &[(
                "5.0.0",
                json!({"dependencies": {"plugin": "1.0.0"},
                       "peerDependenciesMeta": {"webpack-cli": {"optional": true}}}),
            )],
        ),
        doc(
            "webpack-cli",
            &[("6.0.0", json!({"peerDependencies": {"webpack": "5"}}))],
        ),
        doc(
            "plugin",
            &[("1.0.0", json!({"peerDependencies": {"webpack": "5"}}))],
        ),
        doc(
            "loader",
            &[("1.0.0", json!({"peerDependencies": {"webpack": "5"}}))],
        ),
    ]);
    let lf = resolve_one(
        &src,
        &[
            ("webpack", "5.0.0"),
            ("webpack-cli", "6.0.0"),
            ("loader", "1.0.0"),
        ],
    );
    let imp = &lf.importers["."].dependencies;
    assert_eq!(imp["webpack"].version, "5.0.0(webpack-cli@6.0.0)");
    assert_eq!(imp["webpack-cli"].version, "6.0.0(webpack@5.0.0)");
    assert_eq!(imp["loader"].version, "1.0.0(webpack@5.0.0)");
    let loader = &lf.snapshots["loader@1.0.0(webpack@5.0.0)"];
    assert_eq!(loader.dependencies["webpack"], "5.0.0(webpack-cli@6.0.0)");
    assert_eq!(
        lf.snapshots["webpack@5.0.0(webpack-cli@6.0.0)"].dependencies["plugin"],
        "1.0.0(webpack@5.0.0)"
    );
}

/// `package_extensions` reach the lockfile as if the manifest declared them:
/// an optional peer added to `debug@<4.2.0` is a peer `*` of `debug@2.6.9`
/// and a transitive peer of its dependents.
#[test]
fn package_extensions_shape_peers_like_declared_ones() {
    let src = MemSource::new(vec![
        doc("debug", &[("2.6.9", json!({}))]),
        doc(
            "express",
            &[("4.0.0", json!({"dependencies": {"debug": "2.6.9"}}))],
        ),
    ]);
    let opts = ResolveOptions {
        package_extensions: vec![(
            "debug@<4.2.0".to_string(),
            json!({"peerDependenciesMeta": {"supports-color": {"optional": true}}}),
        )],
        ..Default::default()
    };
    let lf = run(resolve(&[project(&[("express", "4.0.0")])], &src, &opts))
        .unwrap()
        .lockfile;
    assert_eq!(
        lf.packages["debug@2.6.9"].peer_dependencies["supports-color"],
        "*"
    );
    assert_eq!(
        lf.snapshots["express@4.0.0"].transitive_peer_dependencies,
        vec!["supports-color".to_string()]
    );
}

/// Adding a direct dependency unpins every transitive occurrence of its name
/// in the seed lockfile (pnpm's `updatedSet`), so they prefer the new direct
/// version; names the update did not touch keep their pins.
#[test]
fn a_new_direct_dependency_unpins_its_name_below() {
    let src = source();
    let mut seed = pnpr_lockfile::Lockfile::default();
    let mut imp = pnpr_lockfile::Importer::default();
    imp.dependencies.insert(
        "a".into(),
        pnpr_lockfile::ImporterDep {
            specifier: "^1.0.0".into(),
            version: "1.1.0".into(),
        },
    );
    seed.importers.insert(".".into(), imp);
    seed.snapshots.insert(
        "a@1.1.0".into(),
        pnpr_lockfile::Snapshot {
            dependencies: [("b".to_string(), "1.2.0".to_string())].into(),
            ..Default::default()
        },
    );
    let opts = ResolveOptions {
        input_lockfile: Some(seed),
        ..Default::default()
    };
    let same = run(resolve(&[project(&[("a", "^1.0.0")])], &src, &opts)).unwrap();
    assert_eq!(
        same.lockfile.snapshots["a@1.1.0"].dependencies["b"],
        "1.2.0"
    );
    let added = run(resolve(
        &[project(&[("a", "^1.0.0"), ("b", "1.0.0")])],
        &src,
        &opts,
    ))
    .unwrap();
    assert_eq!(
        added.lockfile.snapshots["a@1.1.0"].dependencies["b"],
        "1.0.0"
    );
}

/// R18: pnpm 11.9+ and 12 resolve an optional peer that is also a regular
/// dependency as that dependency (a plain child, no suffix), where pnpm
/// 11.5.2 drops the dependency and resolves the peer from the parent
/// (`ajv-formats`' `ajv` under `@fastify/ajv-compiler`). pnpm 12 alone
/// records no `engines` given as an array (R8 writes `{'0': …}`).
#[test]
fn a_dependency_that_is_also_a_peer_stays_a_child_for_the_newer_pnpm() {
    let src = MemSource::new(vec![
        doc("ajv", &[("8.0.0", json!({}))]),
        doc(
            "ajv-formats",
            &[(
                "3.0.1",
                json!({"dependencies": {"ajv": "^8.0.0"},
                       "peerDependencies": {"ajv": "^8.0.0"},
                       "peerDependenciesMeta": {"ajv": {"optional": true}},
                       "engines": ["node >= 0.2.0"]}),
            )],
        ),
        doc(
            "compiler",
            &[(
                "4.0.0",
                json!({"dependencies": {"ajv": "^8.0.0", "ajv-formats": "^3.0.0"}}),
            )],
        ),
    ]);
    let with = |dialect| {
        let opts = ResolveOptions {
            dialect,
            ..ResolveOptions::default()
        };
        run(resolve(&[project(&[("compiler", "4.0.0")])], &src, &opts))
            .unwrap()
            .lockfile
    };
    let old = with(Dialect::Pnpm11_5);
    assert_eq!(
        old.snapshots["compiler@4.0.0"].dependencies["ajv-formats"],
        "3.0.1(ajv@8.0.0)"
    );
    let eleven = with(Dialect::Pnpm11_9);
    assert_eq!(
        eleven.snapshots["compiler@4.0.0"].dependencies["ajv-formats"],
        "3.0.1"
    );
    assert_eq!(
        eleven.packages["ajv-formats@3.0.1"].engines["0"],
        "node >= 0.2.0"
    );
    let twelve = with(Dialect::Pnpm12);
    let compiler = &twelve.snapshots["compiler@4.0.0"];
    assert_eq!(compiler.dependencies["ajv-formats"], "3.0.1");
    assert_eq!(
        twelve.snapshots["ajv-formats@3.0.1"].dependencies["ajv"],
        "8.0.0"
    );
    let record = &twelve.packages["ajv-formats@3.0.1"];
    assert_eq!(record.peer_dependencies["ajv"], "^8.0.0");
    assert!(record.engines.is_empty());
}
