use super::*;

fn hex_of(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha512::digest(bytes))
}

#[test]
fn put_lookup_remove_round_trip() {
    let dir = tempfile::tempdir().expect("tempdir");
    let blobs = Blobs::open(dir.path()).expect("open");
    let hex = hex_of(b"hello");
    assert!(blobs.lookup(&hex).expect("lookup").is_none());
    blobs.put(&hex, b"hello").expect("put");
    let stored = blobs.lookup(&hex).expect("lookup").expect("stored");
    assert_eq!(stored.len, 5);
    assert_eq!(fs::read(&stored.path).expect("read"), b"hello");
    // Idempotent.
    blobs.put(&hex, b"hello").expect("put again");
    blobs.remove(&hex);
    assert!(blobs.lookup(&hex).expect("lookup").is_none());
    assert_eq!(
        fs::read_dir(dir.path().join("tmp")).expect("tmp").count(),
        0
    );
}

#[test]
fn rejects_digests_that_could_escape_the_root() {
    let dir = tempfile::tempdir().expect("tempdir");
    let blobs = Blobs::open(dir.path()).expect("open");
    assert!(blobs.path("../etc").is_none());
    assert!(blobs.path(&"A".repeat(128)).is_none());
    assert!(blobs.put("..", b"x").is_err());
    assert!(blobs.lookup("../../x").expect("lookup").is_none());
}

#[test]
fn open_clears_leftover_temp_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::create_dir_all(dir.path().join("tmp")).expect("mkdir");
    fs::write(dir.path().join("tmp/partial.tmp"), b"half").expect("write");
    let _blobs = Blobs::open(dir.path()).expect("open");
    assert_eq!(
        fs::read_dir(dir.path().join("tmp")).expect("tmp").count(),
        0
    );
}
