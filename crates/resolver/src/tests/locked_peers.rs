//! R16 (RFC 0007): a resolution that reuses the input lockfile keeps the peer
//! providers its entries recorded (pnpm's locked peer contexts), while a fresh
//! resolution of the same manifests does not.

use super::*;

/// `debug` has a `peerDependenciesMeta`-only optional peer that only `mon`
/// provides (as a sibling); `web` reaches `debug` directly, through `fin`,
/// and through `st → fin`; `bp` (another `debug` user) is the dependency
/// the update adds.
fn express_like() -> MemSource {
    let uses_debug = || json!({"dependencies": {"debug": "^4.0.0"}});
    MemSource::new(vec![
        doc(
            "debug",
            &[(
                "4.0.0",
                json!({"peerDependenciesMeta": {"supports-color": {"optional": true}}}),
            )],
        ),
        doc("supports-color", &[("5.0.0", json!({}))]),
        doc(
            "mon",
            &[(
                "1.0.0",
                json!({"dependencies": {"debug": "^4.0.0", "supports-color": "5.0.0"}}),
            )],
        ),
        doc("fin", &[("1.0.0", uses_debug())]),
        doc("bp", &[("1.0.0", uses_debug())]),
        doc(
            "st",
            &[("1.0.0", json!({"dependencies": {"fin": "1.0.0"}}))],
        ),
        doc(
            "web",
            &[(
                "1.0.0",
                json!({"dependencies": {"debug": "^4.0.0", "fin": "1.0.0", "bp": "1.0.0", "st": "1.0.0"}}),
            )],
        ),
    ])
}

fn lockfile(
    src: &MemSource,
    deps: &[(&str, &str)],
    seed: Option<pnpr_lockfile::Lockfile>,
) -> pnpr_lockfile::Lockfile {
    let opts = ResolveOptions {
        input_lockfile: seed,
        ..Default::default()
    };
    run(resolve(&[project(deps)], src, &opts)).unwrap().lockfile
}

#[test]
fn reused_entries_keep_the_peer_providers_their_lockfile_recorded() {
    let src = express_like();
    let base = [("web", "1.0.0"), ("mon", "1.0.0")];
    let seed = lockfile(&src, &base, None);
    // The first resolution: `debug` finds `supports-color` only under `mon`;
    // the poorer variants are deduped into it, `web` keeps no suffix.
    assert_eq!(seed.importers["."].dependencies["web"].version, "1.0.0");
    assert_eq!(
        seed.snapshots["web@1.0.0"].dependencies["debug"],
        "4.0.0(supports-color@5.0.0)"
    );

    // pnpm never re-resolves an up-to-date lockfile, so nothing is locked then.
    let again = lockfile(&src, &base, Some(seed.clone()));
    assert_eq!(again.importers["."].dependencies["web"].version, "1.0.0");

    let added = [("web", "1.0.0"), ("mon", "1.0.0"), ("bp", "1.0.0")];
    let fresh = lockfile(&src, &added, None);
    assert_eq!(fresh.importers["."].dependencies["web"].version, "1.0.0");
    assert!(fresh.snapshots.contains_key("fin@1.0.0"));

    let reused = lockfile(&src, &added, Some(seed));
    let deps = &reused.importers["."].dependencies;
    // `web` and `fin` were reused from entries whose `debug` recorded
    // `supports-color@5.0.0`: that provider is kept, so they gain its suffix.
    assert_eq!(deps["web"].version, "1.0.0(supports-color@5.0.0)");
    let web = &reused.snapshots["web@1.0.0(supports-color@5.0.0)"];
    assert_eq!(web.dependencies["fin"], "1.0.0(supports-color@5.0.0)");
    assert_eq!(web.dependencies["debug"], "4.0.0(supports-color@5.0.0)");
    // `bp` is new (resolved afresh: its `debug` misses the peer), and `st`'s
    // `fin` is a later occurrence whose children nothing locked; `st` keeps
    // no suffix and its `fin` is deduped into the richer variant.
    assert_eq!(deps["bp"].version, "1.0.0");
    assert_eq!(web.dependencies["bp"], "1.0.0");
    assert_eq!(web.dependencies["st"], "1.0.0");
    assert_eq!(
        reused.snapshots["st@1.0.0"].dependencies["fin"],
        "1.0.0(supports-color@5.0.0)"
    );
    // Still missing below `bp` and `st`, so still a transitive peer of `web`.
    assert_eq!(
        web.transitive_peer_dependencies,
        vec!["supports-color".to_string()]
    );
    assert!(!reused.snapshots.contains_key("web@1.0.0"));
}
