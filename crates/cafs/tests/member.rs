//! `FileStore::member`: derived bytes stored once under a 64-hex key, never
//! visible half-written, and refused under any other name.

use std::io::Read;

use pnpr_cafs::FileStore;

fn read_all(mut f: std::fs::File) -> Vec<u8> {
    let mut out = Vec::new();
    f.read_to_end(&mut out).unwrap();
    out
}

#[test]
fn a_member_is_made_once_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    let key = "ab".repeat(32);
    assert!(!store.has_member(&key));
    let (f, len) = store
        .member(&key, |w| w.write_all(b"member bytes"))
        .unwrap();
    assert_eq!(len, 12);
    assert_eq!(read_all(f), b"member bytes");
    assert!(store.has_member(&key));
    // Found again: the encoder is not run a second time.
    let (f, _) = store
        .member(&key, |_| Err(std::io::Error::other("must not run")))
        .unwrap();
    assert_eq!(read_all(f), b"member bytes");
}

#[test]
fn failed_encodes_leave_nothing_and_bad_keys_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    let key = "cd".repeat(32);
    let failed = store.member(&key, |w| {
        w.write_all(b"half")?;
        Err(std::io::Error::other("encoder failed"))
    });
    assert!(failed.is_err());
    assert!(!store.has_member(&key));
    // The temp file of the failed encode is gone too.
    assert_eq!(
        std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
        0
    );
    for bad in [
        "../etc",
        "AB".repeat(32).as_str(),
        &"a".repeat(63),
        &"a".repeat(128),
    ] {
        assert!(store.member(bad, |w| w.write_all(b"x")).is_err(), "{bad}");
        assert!(!store.has_member(bad));
    }
}
