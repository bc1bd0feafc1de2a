use serde_json::json;

use super::*;

#[test]
fn clean_version_matches_node_semver_loose() {
    let cases = [
        ("1.2.3", Some("1.2.3")),
        ("  =v1.2.3  ", Some("1.2.3")),
        ("v 1.2.3", Some("1.2.3")),
        ("01.002.0003", Some("1.2.3")),
        ("1.2.3-beta.01", Some("1.2.3-beta.1")),
        ("1.2.3beta", Some("1.2.3-beta")),
        ("1.2.3-rc.1+build.5", Some("1.2.3-rc.1")),
        ("1.2.3+build", Some("1.2.3")),
        ("1.2.34.x", Some("1.2.3-4.x")),
        ("1.2.3-", Some("1.2.3--")),
        (
            "1.2.3-beta.9007199254740991",
            Some("1.2.3-beta.9007199254740991"),
        ),
        ("1.2", None),
        ("1.2.x", None),
        ("", None),
        ("1.2.3 junk", None),
        ("9007199254740992.0.0", None),
        ("9007199254740991.0.0", Some("9007199254740991.0.0")),
        ("1.2.3+", None),
    ];
    for (raw, want) in cases {
        assert_eq!(clean_version(raw).as_deref(), want, "clean({raw:?})");
    }
    let long = format!("1.2.3-{}", "a".repeat(300));
    assert_eq!(clean_version(&long), None);
}

#[test]
fn bundled_manifest_keeps_pnpm_subset_in_pnpm_order() {
    let manifest = json!({
        "name": "@pnpm.e2e/pkg-with-1-dep",
        "version": "100.1.0",
        "description": "dropped",
        "main": "index.js",
        "dependencies": { "@pnpm.e2e/dep-of-pkg-with-1-dep": "^100.0.0" },
        "license": null,
        "os": null,
        "scripts": { "test": "x", "install": "node-gyp rebuild", "postinstall": "" },
    });
    let bundled = bundled_manifest(&manifest).expect("has fields");
    let keys: Vec<&str> = bundled
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["version", "dependencies", "name", "scripts"]);
    assert_eq!(bundled["scripts"], json!({ "install": "node-gyp rebuild" }));
    assert_eq!(bundled["version"], "100.1.0");
}

#[test]
fn bundled_manifest_is_absent_without_bundled_fields() {
    assert_eq!(bundled_manifest(&json!({})), None);
    assert_eq!(bundled_manifest(&json!({ "version": "1.0.0" })), None);
    assert_eq!(
        bundled_manifest(&json!({ "version": "1.0.0", "scripts": { "test": "x" } })),
        None
    );
    // A lifecycle script alone is enough; the version falls back to 0.0.0.
    assert_eq!(
        bundled_manifest(&json!({ "scripts": { "preinstall": "x" } })),
        Some(json!({ "version": "0.0.0", "scripts": { "preinstall": "x" } }))
    );
    // An unparsable version is kept verbatim.
    assert_eq!(
        bundled_manifest(&json!({ "name": "a", "version": "latest" })),
        Some(json!({ "version": "latest", "name": "a" }))
    );
}

#[test]
fn requires_build_follows_pnpm() {
    let none: [&str; 0] = [];
    assert!(!requires_build(None, none.iter().copied()));
    let with_script = json!({ "version": "1.0.0", "scripts": { "postinstall": "x" } });
    assert!(requires_build(Some(&with_script), none.iter().copied()));
    let gyp = ["index.js", "binding.gyp"];
    assert!(requires_build(None, gyp.iter().copied()));
    let nested_gyp = ["src/binding.gyp"];
    assert!(!requires_build(None, nested_gyp.iter().copied()));
    let hooks = [".hooks/pre"];
    assert!(requires_build(None, hooks.iter().copied()));
    let not_hooks = [".hooksx/pre", "a/.hooks/pre"];
    assert!(!requires_build(None, not_hooks.iter().copied()));
}

#[test]
fn parse_manifest_strips_bom_and_rejects_garbage() {
    let parsed = parse_manifest(b"\xef\xbb\xbf{\"name\":\"a\"}").expect("parses");
    assert_eq!(parsed, json!({ "name": "a" }));
    assert_eq!(parse_manifest(b"null").expect("parses"), json!({}));
    let err = parse_manifest(b"{ nope").expect_err("invalid");
    assert!(
        err.to_string().contains("package.json is not valid JSON"),
        "{err}"
    );
}
