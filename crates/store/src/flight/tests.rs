use super::*;
use std::sync::atomic::{AtomicUsize, Ordering};

async fn collect(body: TarballBody) -> Result<Vec<u8>> {
    match body {
        TarballBody::Stored(s) => Ok(std::fs::read(s.path)?),
        TarballBody::Streaming(mut s) => {
            let mut out = Vec::new();
            while let Some(c) = s.next().await {
                out.extend_from_slice(&c?);
            }
            Ok(out)
        }
    }
}

fn payload() -> Vec<u8> {
    (0..200_000u32).map(|i| (i % 251) as u8).collect()
}

#[tokio::test]
async fn concurrent_misses_share_one_fetch_and_then_hit() {
    let dir = tempfile::tempdir().unwrap();
    let cas = Arc::new(Cas::open(dir.path()).unwrap());
    let fetches = Arc::new(TarballFetches::new(cas, 1 << 30));
    let data = payload();
    let sri = Integrity::from(&data);
    let calls = Arc::new(AtomicUsize::new(0));
    let mut handles = Vec::new();
    for _ in 0..4 {
        let f = Arc::clone(&fetches);
        let sri = sri.clone();
        let data = data.clone();
        let calls = Arc::clone(&calls);
        handles.push(tokio::spawn(async move {
            let body = f
                .get("public", &sri, true, move || async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    let chunks: Vec<Result<Bytes, crate::FetchFailure>> = data
                        .chunks(7000)
                        .map(|c| Ok(Bytes::copy_from_slice(c)))
                        .collect();
                    Ok(Box::pin(futures_util::stream::iter(chunks)) as ByteStream)
                })
                .await
                .unwrap();
            collect(body).await.unwrap()
        }));
    }
    for h in handles {
        assert_eq!(h.await.unwrap(), data);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let hit = fetches
        .get("public", &sri, true, || async {
            Err::<ByteStream, _>(crate::FetchFailure::Interrupted("no"))
        })
        .await
        .unwrap();
    assert!(matches!(hit, TarballBody::Stored(_)));
}

#[tokio::test]
async fn mismatch_fails_every_reader_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cas = Arc::new(Cas::open(dir.path()).unwrap());
    let fetches = Arc::new(TarballFetches::new(Arc::clone(&cas), 1 << 30));
    let data = payload();
    let sri = Integrity::from(b"the real bytes");
    let body = fetches
        .get("public", &sri, true, move || async move {
            Ok(Box::pin(futures_util::stream::iter(vec![Ok(Bytes::from(data))])) as ByteStream)
        })
        .await
        .unwrap();
    let got = collect(body).await;
    assert!(got.is_err());
    assert!(cas.lookup("public", &sri).unwrap().is_none());
    assert_eq!(cas.count("public"), 0);
}

#[tokio::test]
async fn uncached_mode_streams_verified_bytes_without_storing() {
    let dir = tempfile::tempdir().unwrap();
    let cas = Arc::new(Cas::open(dir.path()).unwrap());
    let fetches = Arc::new(TarballFetches::new(Arc::clone(&cas), 1 << 30));
    let data = payload();
    let sri = Integrity::from(&data);
    let d2 = data.clone();
    let body = fetches
        .get("public", &sri, false, move || async move {
            Ok(Box::pin(futures_util::stream::iter(vec![Ok(Bytes::from(d2))])) as ByteStream)
        })
        .await
        .unwrap();
    assert_eq!(collect(body).await.unwrap(), data);
    assert_eq!(cas.count("public"), 0);
}
