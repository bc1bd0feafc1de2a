use std::os::unix::fs::MetadataExt;

use super::*;

#[test]
fn copy_storage_links_tarballs_and_copies_metadata() {
    let src = tempfile::tempdir().expect("src");
    let pkg = src.path().join("@scope").join("pkg");
    std::fs::create_dir_all(&pkg).expect("mkdir");
    std::fs::write(pkg.join("package.json"), "{}").expect("write");
    std::fs::write(pkg.join("pkg-1.0.0.tgz"), b"tgz").expect("write");
    std::fs::write(src.path().join(".verdaccio-db.json"), "{}").expect("write");
    let bare = src.path().join("@scope").join("other-platform");
    std::fs::create_dir_all(&bare).expect("mkdir");
    std::fs::write(bare.join("package.json"), "{}").expect("write");

    let dst = tempfile::tempdir().expect("dst");
    let to = dst.path().join("storage");
    copy_storage(src.path(), &to).expect("copy");

    let ino = |p: &Path| std::fs::metadata(p).expect("stat").ino();
    let copied = to.join("@scope").join("pkg");
    assert_eq!(
        ino(&copied.join("pkg-1.0.0.tgz")),
        ino(&pkg.join("pkg-1.0.0.tgz"))
    );
    assert_ne!(
        ino(&copied.join("package.json")),
        ino(&pkg.join("package.json"))
    );
    // Writing the copy's metadata leaves the source alone.
    std::fs::write(copied.join("package.json"), "{\"x\":1}").expect("write");
    assert_eq!(
        std::fs::read_to_string(pkg.join("package.json")).expect("read"),
        "{}"
    );
    assert!(to.join(".verdaccio-db.json").exists());
    // A package without any stored tarball is left out (404 upstream).
    assert!(!to.join("@scope").join("other-platform").exists());
}

#[test]
fn prune_keeps_stored_versions_and_repoints_latest() {
    let text = r#"{"name":"t","dist-tags":{"latest":"2.9.1","next":"3.0.0-rc.1"},
      "_distfiles":{"t-2.9.1.tgz":{"url":"http://127.0.0.1:1/t/-/t-2.9.1.tgz"}},
      "versions":{
        "2.8.0":{"dist":{"tarball":"http://127.0.0.1:1/t/-/t-2.8.0.tgz"}},
        "2.8.1":{"dist":{"tarball":"http://127.0.0.1:1/t/-/t-2.8.1.tgz"}},
        "2.9.1":{"dist":{"tarball":"http://127.0.0.1:1/t/-/t-2.9.1.tgz"}},
        "3.0.0-rc.1":{"dist":{"tarball":"http://127.0.0.1:1/t/-/t-3.0.0-rc.1.tgz"}}}}"#;
    let stored = ["t-2.8.0.tgz", "t-2.8.1.tgz"];
    let out = prune_packument(text, |f| stored.contains(&f)).expect("pruned");
    let doc: serde_json::Value = serde_json::from_str(&out).expect("json");
    let versions: Vec<&String> = doc["versions"].as_object().expect("obj").keys().collect();
    assert_eq!(versions, ["2.8.0", "2.8.1"]);
    assert_eq!(doc["dist-tags"], serde_json::json!({"latest": "2.8.1"}));
    assert!(doc.get("_distfiles").is_none(), "{out}");
    // Nothing stored, or not a packument: served unchanged.
    assert!(prune_packument(text, |_| false).is_none());
    assert!(prune_packument("not json", |_| true).is_none());
}
