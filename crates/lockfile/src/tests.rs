use super::*;

#[test]
fn default_lockfile_serialises_minimal_shape() {
    let mut lf = Lockfile::default();
    lf.importers.insert(".".into(), Importer::default());
    let v = serde_json::to_value(&lf).unwrap();
    assert_eq!(
        v,
        serde_json::json!({
            "lockfileVersion": "9.0",
            "settings": {"autoInstallPeers": true, "excludeLinksFromLockfile": false},
            "importers": {".": {}}
        })
    );
}

#[test]
fn round_trips_full_entries_and_omits_empty_fields() {
    let src = serde_json::json!({
        "lockfileVersion": "9.0",
        "settings": {"autoInstallPeers": true, "excludeLinksFromLockfile": false},
        "overrides": {"a": "1.0.0"},
        "importers": {".": {"dependencies": {"a": {"specifier": "^1", "version": "1.0.0(b@2.0.0)"}}}},
        "packages": {"a@1.0.0": {
            "resolution": {"integrity": "sha512-x"},
            "engines": {"node": ">=8"}, "cpu": ["x64"], "os": ["linux"], "libc": ["glibc"],
            "deprecated": "old", "hasBin": true,
            "peerDependencies": {"b": "*"}, "peerDependenciesMeta": {"b": {"optional": true}},
            "bundledDependencies": ["c"]
        }},
        "snapshots": {"a@1.0.0(b@2.0.0)": {
            "dependencies": {"b": "2.0.0"}, "optionalDependencies": {"c": "1.0.0"},
            "transitivePeerDependencies": ["d"], "optional": true
        }, "b@2.0.0": {}}
    });
    let lf = Lockfile::from_json(src.to_string().as_bytes()).unwrap();
    assert_eq!(serde_json::to_value(&lf).unwrap(), src);
    assert_eq!(lf.snapshots["b@2.0.0"], Snapshot::default());
}

#[test]
fn rejects_other_major_versions() {
    let err = Lockfile::from_json(br#"{"lockfileVersion":"6.0","importers":{}}"#).unwrap_err();
    assert!(matches!(err, LockfileError::UnsupportedVersion(v) if v == "6.0"));
    assert!(matches!(
        Lockfile::from_json(b"not json"),
        Err(LockfileError::Json(_))
    ));
}
