use super::release_age::{parse_rfc3339_ms, split_package_key};
use super::select::{installable_here, optional_only_packages};

#[test]
fn parses_registry_timestamps() {
    assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00.000Z"), Some(0));
    assert_eq!(
        parse_rfc3339_ms("2023-11-14T22:13:20.123Z"),
        Some(1_700_000_000_123)
    );
    assert_eq!(
        parse_rfc3339_ms("2000-02-29T00:00:00Z"),
        Some(951_782_400_000)
    );
    assert_eq!(parse_rfc3339_ms("garbage"), None);
}

#[test]
fn splits_lockfile_keys() {
    assert_eq!(split_package_key("@a/b@1.0.0"), Some(("@a/b", "1.0.0")));
    assert_eq!(split_package_key("a@1.0.0(b@2.0.0)"), Some(("a", "1.0.0")));
    assert_eq!(split_package_key("nope"), None);
}

#[test]
fn optional_platform_packages_are_recognised() {
    let lockfile: pnpr_lockfile::Lockfile = serde_json::from_value(serde_json::json!({
        "lockfileVersion": "9.0",
        "packages": {
            "a@1.0.0": {"resolution": {"integrity": "sha512-a"}, "os": ["darwin"], "cpu": ["arm64"]},
            "b@1.0.0": {"resolution": {"integrity": "sha512-b"}, "os": ["linux"], "cpu": ["x64"], "libc": ["musl"]},
            "c@1.0.0": {"resolution": {"integrity": "sha512-c"}, "os": ["!win32"]},
            "d@1.0.0": {"resolution": {"integrity": "sha512-d"}}
        },
        "snapshots": {
            "a@1.0.0": {"optional": true},
            "b@1.0.0": {"optional": true},
            "c@1.0.0(x@1.0.0)": {"optional": true},
            "c@1.0.0": {},
            "d@1.0.0": {"optional": true}
        }
    }))
    .unwrap();
    let only = optional_only_packages(&lockfile);
    assert!(only.contains("a@1.0.0") && only.contains("b@1.0.0") && only.contains("d@1.0.0"));
    assert!(!only.contains("c@1.0.0"), "one snapshot is not optional");
    let req = pnpr_protocol::parse_request(
        br#"{"projects":[],"os":"linux","arch":"x64"}"#,
        "http://127.0.0.1:1/",
    )
    .unwrap();
    assert!(!installable_here(&lockfile, "a@1.0.0", &req));
    assert!(!installable_here(&lockfile, "b@1.0.0", &req), "musl only");
    assert!(installable_here(&lockfile, "c@1.0.0", &req));
    assert!(installable_here(&lockfile, "d@1.0.0", &req));
}
