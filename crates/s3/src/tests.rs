use super::*;

fn creds() -> Credentials {
    Credentials {
        access_key_id: Secret::new("AKIDSECRETID".into()),
        secret_access_key: Secret::new("very-secret-key-value".into()),
        session_token: Some(Secret::new("session-token-value".into())),
    }
}

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn opts(endpoint: &str) -> Options {
    let mut o = Options::new(
        "bucket".into(),
        Some(url::Url::parse(endpoint).unwrap()),
        "us-east-1".into(),
        "p/".into(),
    );
    o.max_retries = 0;
    o
}

#[test]
fn an_endpoint_with_userinfo_is_refused_without_echoing_it() {
    let err = S3Backend::new(opts("http://user:hunter22@127.0.0.1:9/"), creds()).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("must not carry credentials"), "{msg}");
    assert!(!msg.contains("hunter22"), "{msg}");
}

#[test]
fn an_unreachable_bucket_fails_fast_and_names_no_credential() {
    let port = closed_port();
    let b = S3Backend::new(opts(&format!("http://127.0.0.1:{port}")), creds()).unwrap();
    let debug = format!("{b:?}");
    assert!(
        debug.contains("bucket") && !debug.contains("AKIDSECRETID"),
        "{debug}"
    );
    let started = std::time::Instant::now();
    let err = pnpr_store::backend::block_on(b.exists("tarballs/x".into())).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(20));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f");
    std::fs::write(&file, b"bytes").unwrap();
    let put = pnpr_store::backend::block_on(b.put("hosted/k".into(), file)).unwrap_err();
    let get = pnpr_store::backend::block_on(b.get("hosted/k".into()))
        .err()
        .expect("get fails");
    for e in [err, put, get] {
        let msg = e.to_string();
        assert!(matches!(e, StoreError::Bucket(_)), "{msg}");
        for secret in [
            "AKIDSECRETID",
            "very-secret-key-value",
            "session-token-value",
        ] {
            assert!(!msg.contains(secret), "{msg}");
        }
    }
}

#[tokio::test]
async fn dropping_inside_a_runtime_does_not_panic() {
    let b = S3Backend::new(opts("http://127.0.0.1:9"), creds()).unwrap();
    drop(b);
}
