use super::*;

#[test]
fn versions_are_exact_and_path_free() {
    assert!(validate_version("a", "1.2.3").is_ok());
    assert!(validate_version("a", "1.0.0-beta.1+build_7").is_ok());
    for bad in [
        "", "../1.0.0", "1.0.0/x", "1.0.0 ", "^1.0.0", "1.0.0?x", "1.0.0#x",
    ] {
        assert!(validate_version("a", bad).is_err(), "{bad:?}");
    }
    assert!(validate_version("a", &"1".repeat(300)).is_err());
}

#[test]
fn integrity_must_match_the_readable_metadata() {
    let sri = ssri::Integrity::from(b"real bytes").to_string();
    let other = ssri::Integrity::from(b"private bytes").to_string();
    let vdoc = serde_json::json!({"dist": {"integrity": sri}});
    assert!(integrity_matches(&vdoc, &sri));
    assert!(!integrity_matches(&vdoc, &other));
    assert!(!integrity_matches(&vdoc, "not an sri"));
    assert!(!integrity_matches(&serde_json::json!({}), &sri), "no dist");
    // A sha1-only document binds only the same sha1.
    let sha1 = ssri::IntegrityOpts::new()
        .algorithm(ssri::Algorithm::Sha1)
        .chain(b"real bytes")
        .result();
    let legacy = serde_json::json!({"dist": {"shasum": sha1.to_hex().1}});
    assert!(integrity_matches(&legacy, &sha1.to_string()));
    assert!(!integrity_matches(&legacy, &other));
}
