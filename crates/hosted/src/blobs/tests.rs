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

mod with_bucket {
    use std::sync::Arc;

    use pnpr_store::backend::{hosted_key, MemoryBackend};

    use super::*;

    fn bucketed(dir: &Path) -> (Blobs, Arc<MemoryBackend>) {
        let bucket = Arc::new(MemoryBackend::default());
        let mut blobs = Blobs::open(dir).expect("open");
        blobs.set_backend(Arc::clone(&bucket) as Arc<dyn BlobBackend>);
        (blobs, bucket)
    }

    #[test]
    fn put_goes_to_the_bucket_first_and_fails_whole_when_it_is_down() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (blobs, bucket) = bucketed(dir.path());
        let hex = hex_of(b"published");
        blobs.put(&hex, b"published").expect("put");
        let key = hosted_key(&hex).expect("key");
        assert_eq!(bucket.object(&key).as_deref(), Some(&b"published"[..]));
        assert!(blobs.lookup(&hex).expect("lookup").is_some());

        bucket.set_down(true);
        let other = hex_of(b"second");
        let err = blobs.put(&other, b"second").expect_err("bucket down");
        assert!(matches!(err, HostedError::Bucket(_)), "{err}");
        // Nothing placed, no temp file left.
        assert!(blobs.path(&other).is_some_and(|p| !p.exists()));
        assert_eq!(
            fs::read_dir(dir.path().join("tmp")).expect("tmp").count(),
            0
        );
    }

    #[test]
    fn a_local_miss_fills_from_the_bucket_only_with_matching_bytes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (blobs, bucket) = bucketed(dir.path());
        let hex = hex_of(b"the tarball");
        let key = hosted_key(&hex).expect("key");
        assert!(blobs.lookup(&hex).expect("absent everywhere").is_none());

        bucket.insert(&key, b"forged bytes".to_vec());
        let err = blobs.lookup(&hex).expect_err("corrupt object refused");
        assert!(matches!(err, HostedError::Bucket(_)), "{err}");
        assert!(blobs.path(&hex).is_some_and(|p| !p.exists()));

        bucket.insert(&key, b"the tarball".to_vec());
        let stored = blobs.lookup(&hex).expect("lookup").expect("filled");
        assert_eq!(fs::read(&stored.path).expect("read"), b"the tarball");
        // Now local: served even with the bucket gone.
        bucket.set_down(true);
        assert!(blobs.lookup(&hex).expect("local hit").is_some());
    }

    #[test]
    fn a_collected_object_leaves_the_bucket_and_a_stale_local_copy_vouches_for_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (blobs, bucket) = bucketed(dir.path());
        let hex = hex_of(b"collected");
        let key = hosted_key(&hex).expect("key");
        blobs.put(&hex, b"collected").expect("put");
        assert!(blobs.durable(&hex).expect("durable"));
        // Another node collected it: gone from the bucket, still on this
        // node's disk. A new reference must not rely on the local copy.
        block_on(bucket.delete(key.clone())).expect("delete");
        block_on(bucket.delete(key.clone())).expect("idempotent delete");
        assert!(bucket.object(&key).is_none());
        assert!(blobs.lookup(&hex).expect("local").is_some());
        assert!(!blobs.durable(&hex).expect("checked in the bucket"));
        // This node's own collection removes both.
        blobs.put(&hex, b"collected").expect("put again");
        blobs.remove(&hex);
        blobs.remove_from_bucket(&hex);
        assert!(bucket.object(&key).is_none());
        assert!(blobs.path(&hex).is_some_and(|p| !p.exists()));
        // A bucket that fails the delete leaves the object (logged), no panic.
        blobs.put(&hex, b"collected").expect("put");
        bucket.set_down(true);
        blobs.remove_from_bucket(&hex);
        bucket.set_down(false);
        assert!(bucket.object(&key).is_some());
        assert!(!blobs.durable(&"0".repeat(128)).expect("absent"));
    }
}
