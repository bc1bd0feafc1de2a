use super::*;

#[test]
fn promotes_only_on_match() {
    let dir = tempfile::tempdir().unwrap();
    let cas = Cas::open(dir.path()).unwrap();
    let sri = Integrity::from(b"hello");
    let mut w = cas.writer("public", sri.clone()).unwrap();
    w.write(b"hel").unwrap();
    w.write(b"lo").unwrap();
    let stored = w.finish(true).unwrap();
    assert_eq!(std::fs::read(&stored.path).unwrap(), b"hello");
    assert_eq!(cas.lookup("public", &sri).unwrap().unwrap().len, 5);
    assert!(cas.lookup("other", &sri).unwrap().is_none());

    let bad = Integrity::from(b"something else");
    let mut w = cas.writer("public", bad.clone()).unwrap();
    w.write(b"hello").unwrap();
    assert!(matches!(
        w.finish(true),
        Err(StoreError::IntegrityMismatch { .. })
    ));
    assert!(cas.lookup("public", &bad).unwrap().is_none());
    assert_eq!(
        std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
        0
    );
    assert_eq!(cas.count("public"), 1);
}

#[test]
fn rejects_hostile_namespaces() {
    let dir = tempfile::tempdir().unwrap();
    let cas = Cas::open(dir.path()).unwrap();
    let sri = Integrity::from(b"x");
    for ns in ["", "..", "a/b", "tmp", "A"] {
        assert!(cas.path(ns, &sri).is_err(), "{ns}");
    }
}
