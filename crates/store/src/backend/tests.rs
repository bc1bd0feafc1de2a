use std::sync::Arc;

use bytes::Bytes;
use ssri::Integrity;

use super::*;
use crate::flight::fill_from;
use crate::Cas;

#[test]
fn keys_are_digest_shaped_and_namespaced() {
    let sri = Integrity::from(b"hello");
    let (_, hex) = sri.to_hex();
    assert_eq!(
        tarball_key("public", &sri).unwrap(),
        format!("tarballs/public/sha256/{}/{}", &hex[..2], &hex[2..])
    );
    assert_ne!(
        tarball_key("public", &sri).unwrap(),
        tarball_key("u-1", &sri).unwrap()
    );
    for ns in ["", "..", "a/b", "tmp", "A"] {
        assert!(tarball_key(ns, &sri).is_err(), "{ns}");
    }
    let hex = "ab".repeat(64);
    assert_eq!(
        hosted_key(&hex).unwrap(),
        format!("hosted/sha512/ab/{}", &hex[2..])
    );
    for bad in ["../x", &"AB".repeat(64), &"ab".repeat(63), ""] {
        assert!(hosted_key(bad).is_none(), "{bad}");
    }
}

#[test]
fn block_on_waits_for_another_thread() {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(20));
        tx.send(7).unwrap();
    });
    assert_eq!(block_on(rx).unwrap(), 7);
}

#[test]
fn a_bucket_object_is_placed_only_when_it_matches_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let cas = Cas::open(dir.path()).unwrap();
    let bucket = MemoryBackend::default();
    let sri = Integrity::from(b"the real bytes");
    let key = tarball_key("public", &sri).unwrap();

    // Absent: nothing, no error.
    let got = block_on(fill_from(&bucket, &cas, "public", &sri, &key, 1 << 20)).unwrap();
    assert!(got.is_none());

    // Corrupt: refused, nothing placed, no temp file left.
    bucket.insert(&key, b"evil bytes".to_vec());
    let err = block_on(fill_from(&bucket, &cas, "public", &sri, &key, 1 << 20)).unwrap_err();
    assert!(matches!(err, StoreError::IntegrityMismatch { .. }), "{err}");
    assert!(cas.lookup("public", &sri).unwrap().is_none());
    assert_eq!(
        std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
        0
    );

    // Over the size cap: refused.
    bucket.insert(&key, b"the real bytes".to_vec());
    let err = block_on(fill_from(&bucket, &cas, "public", &sri, &key, 4)).unwrap_err();
    assert!(matches!(err, StoreError::TooLarge(4)), "{err}");

    // Matching: placed and readable locally.
    let stored = block_on(fill_from(&bucket, &cas, "public", &sri, &key, 1 << 20))
        .unwrap()
        .unwrap();
    assert_eq!(std::fs::read(stored.path).unwrap(), b"the real bytes");
    assert!(cas.lookup("public", &sri).unwrap().is_some());
}

#[tokio::test]
async fn a_fetch_goes_to_the_bucket_and_a_corrupt_object_is_refetched() {
    use crate::flight::{ByteStream, TarballFetches};
    use crate::TarballBody;
    use futures_util::StreamExt;

    let bucket = Arc::new(MemoryBackend::default());
    let body = b"tarball bytes from the uplink".to_vec();
    let sri = Integrity::from(&body);
    let key = tarball_key("public", &sri).unwrap();
    let upstream = |b: Vec<u8>| {
        move || async move {
            Ok(Box::pin(futures_util::stream::iter(vec![Ok(Bytes::from(b))])) as ByteStream)
        }
    };
    async fn drain(body: TarballBody) -> Vec<u8> {
        match body {
            TarballBody::Stored(s) => std::fs::read(s.path).unwrap(),
            TarballBody::Streaming(mut s) => {
                let mut out = Vec::new();
                while let Some(c) = s.next().await {
                    out.extend_from_slice(&c.unwrap());
                }
                out
            }
        }
    }

    // Node A fetches through its uplink: the bucket gets the bytes.
    let dir_a = tempfile::tempdir().unwrap();
    let a = Arc::new(
        TarballFetches::new(Arc::new(Cas::open(dir_a.path()).unwrap()), 1 << 20)
            .with_backend(Arc::clone(&bucket) as Arc<dyn BlobBackend>),
    );
    let got = a
        .get("public", &sri, true, upstream(body.clone()))
        .await
        .unwrap();
    assert_eq!(drain(got).await, body);
    for _ in 0..100 {
        if a.cas().lookup("public", &sri).unwrap().is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(bucket.object(&key).as_ref(), Some(&body));

    // Node B, empty disk, no uplink: served from the bucket.
    let dir_b = tempfile::tempdir().unwrap();
    let b = Arc::new(
        TarballFetches::new(Arc::new(Cas::open(dir_b.path()).unwrap()), 1 << 20)
            .with_backend(Arc::clone(&bucket) as Arc<dyn BlobBackend>),
    );
    let no_uplink = || async { Err(crate::FetchFailure::Interrupted("no uplink")) };
    let got = b.get("public", &sri, true, no_uplink).await.unwrap();
    assert!(matches!(got, TarballBody::Stored(_)));
    assert_eq!(drain(got).await, body);

    // Node C, the bucket object corrupted: the uplink's bytes are served
    // and heal the bucket.
    bucket.insert(&key, b"corrupt".to_vec());
    let dir_c = tempfile::tempdir().unwrap();
    let c = Arc::new(
        TarballFetches::new(Arc::new(Cas::open(dir_c.path()).unwrap()), 1 << 20)
            .with_backend(Arc::clone(&bucket) as Arc<dyn BlobBackend>),
    );
    let got = c
        .get("public", &sri, true, upstream(body.clone()))
        .await
        .unwrap();
    assert_eq!(drain(got).await, body);
    for _ in 0..100 {
        if c.cas().lookup("public", &sri).unwrap().is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(bucket.object(&key).as_ref(), Some(&body));
}

#[test]
fn copy_uploads_matching_local_blobs_once_and_never_damaged_ones() {
    use super::copy::{cas_objects, hosted_objects, upload_missing, CopyCounts};

    let dir = tempfile::tempdir().unwrap();
    let cas = Cas::open(&dir.path().join("tarballs")).unwrap();
    let good = Integrity::from(b"good tarball");
    let bad = Integrity::from(b"bad tarball");
    for (sri, bytes) in [(&good, &b"good tarball"[..]), (&bad, &b"bad tarball"[..])] {
        let mut w = cas.writer("public", sri.clone()).unwrap();
        w.write(bytes).unwrap();
        w.finish(true).unwrap();
    }
    // Damage one object on disk; leave junk that is not a content address.
    std::fs::write(cas.path("public", &bad).unwrap(), b"bit rot").unwrap();
    std::fs::write(cas.root().join("tmp").join("x.tmp"), b"partial").unwrap();
    std::fs::create_dir_all(cas.root().join("public/sha256/zz")).unwrap();
    std::fs::write(cas.root().join("public/sha256/zz/not-hex"), b"?").unwrap();

    let hosted_root = dir.path().join("hosted-tarballs");
    let hosted_hex = {
        use sha2::Digest;
        hex::encode(sha2::Sha512::digest(b"hosted bytes"))
    };
    let hosted_path = hosted_root
        .join("sha512")
        .join(&hosted_hex[..2])
        .join(&hosted_hex[2..]);
    std::fs::create_dir_all(hosted_path.parent().unwrap()).unwrap();
    std::fs::write(&hosted_path, b"hosted bytes").unwrap();

    let mut blobs = cas_objects(cas.root());
    blobs.extend(hosted_objects(&hosted_root));
    assert_eq!(blobs.len(), 3, "{blobs:?}");
    let bucket = MemoryBackend::default();
    let first = upload_missing(&bucket, &blobs).unwrap();
    assert_eq!(
        first,
        CopyCounts {
            uploaded: 2,
            present: 0,
            damaged: 1
        }
    );
    assert_eq!(
        bucket.object(&tarball_key("public", &good).unwrap()),
        Some(b"good tarball".to_vec())
    );
    assert!(bucket
        .object(&tarball_key("public", &bad).unwrap())
        .is_none());
    assert_eq!(
        bucket.object(&hosted_key(&hosted_hex).unwrap()),
        Some(b"hosted bytes".to_vec())
    );
    // A re-run finds what it copied.
    let again = upload_missing(&bucket, &blobs).unwrap();
    assert_eq!(
        again,
        CopyCounts {
            uploaded: 0,
            present: 2,
            damaged: 1
        }
    );
    // A bucket outage is an error, not a silent skip.
    bucket.set_down(true);
    assert!(upload_missing(&bucket, &blobs).is_err());
}

#[tokio::test]
async fn an_unreachable_bucket_is_skipped_for_a_while_and_the_uplink_serves() {
    use crate::flight::{ByteStream, TarballFetches};
    use crate::TarballBody;

    let bucket = Arc::new(MemoryBackend::default());
    bucket.set_down(true);
    let dir = tempfile::tempdir().unwrap();
    let fetches = Arc::new(
        TarballFetches::new(Arc::new(Cas::open(dir.path()).unwrap()), 1 << 20)
            .with_backend(Arc::clone(&bucket) as Arc<dyn BlobBackend>),
    );
    for i in 0..3u8 {
        let body = vec![i; 100];
        let sri = Integrity::from(&body);
        let got = fetches
            .get("public", &sri, true, move || async move {
                Ok(Box::pin(futures_util::stream::iter(vec![Ok(Bytes::from(body))])) as ByteStream)
            })
            .await
            .unwrap();
        assert!(matches!(got, TarballBody::Streaming(_)));
    }
    // One failed read, then the pause: the other misses went straight to
    // the uplink.
    assert_eq!(bucket.get_calls(), 1);
}
