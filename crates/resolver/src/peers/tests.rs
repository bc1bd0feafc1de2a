use super::*;
use serde_json::json;

#[test]
fn package_info_records_platform_bin_and_peer_fields() {
    let m = json!({
        "name": "x", "version": "1.0.0",
        "dist": {"integrity": "sha512-a", "tarball": "http://127.0.0.1:1/x/-/x-1.0.0.tgz"},
        "os": ["linux"], "cpu": ["x64"], "libc": ["glibc"], "engines": {"node": ">=8", "runtime": {"name": "node"}},
        "bin": {"x": "cli.js"}, "deprecated": "old",
        "peerDependencies": {"x": "*", "y": "^1"}, "peerDependenciesMeta": {"y": {"optional": true}, "z": {"optional": true}},
        "bundleDependencies": ["w"]
    });
    let info = package_info(&m, "x", "http://127.0.0.1:1/", Dialect::Pnpm11_5);
    assert_eq!(info.resolution.tarball, None);
    assert_eq!(info.os, vec!["linux"]);
    assert_eq!(info.libc, vec!["glibc"]);
    assert_eq!(info.engines.len(), 1);
    assert_eq!(info.has_bin, Some(true));
    assert_eq!(
        info.peer_dependencies.keys().collect::<Vec<_>>(),
        vec!["y", "z"]
    );
    assert_eq!(info.peer_dependencies["z"], "*");
    assert!(info.peer_dependencies_meta["y"].optional);
    assert_eq!(info.bundled_dependencies, vec!["w"]);
    let moved = package_info(&m, "x", "http://127.0.0.1:2/", Dialect::Pnpm11_5);
    assert_eq!(
        moved.resolution.tarball.as_deref(),
        Some("http://127.0.0.1:1/x/-/x-1.0.0.tgz")
    );
}

#[test]
fn default_tarball_url_uses_unscoped_file_name() {
    assert_eq!(
        default_tarball_url("http://127.0.0.1:1", "@s/n", "2.0.0"),
        "http://127.0.0.1:1/@s/n/-/n-2.0.0.tgz"
    );
}

#[test]
fn a_meta_only_optional_peer_that_is_a_dependency_is_recorded_by_the_newer_pnpm_only() {
    let m = json!({
        "name": "x", "version": "1.0.0",
        "dist": {"integrity": "sha512-a", "tarball": "http://127.0.0.1:1/x/-/x-1.0.0.tgz"},
        "dependencies": {"bravo": "1.0.0"},
        "peerDependenciesMeta": {"bravo": {"optional": true}}
    });
    let old = package_info(&m, "x", "http://127.0.0.1:1/", Dialect::Pnpm11_5);
    assert!(old.peer_dependencies.is_empty());
    let new = package_info(&m, "x", "http://127.0.0.1:1/", Dialect::Pnpm11_9);
    assert_eq!(new.peer_dependencies["bravo"], "*");
    assert!(new.peer_dependencies_meta["bravo"].optional);
}
