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

/// A loopback listener that counts the connections made to it (and drops
/// each at once).
fn counting_listener() -> (u16, Arc<std::sync::atomic::AtomicUsize>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = Arc::clone(&seen);
    std::thread::spawn(move || {
        for conn in l.incoming() {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            drop(conn);
        }
    });
    (port, seen)
}

/// Set in the child process [`proxy_variables_do_not_divert_bucket_requests`]
/// starts; the child runs [`proxy_check_in_child`]'s body only then.
const CHILD_MARKER: &str = "PNPR_S3_PROXY_CHECK_CHILD";

/// The proxy variables are set only in a child process (this test binary,
/// filtered to [`proxy_check_in_child`]), so no other test of this process
/// sees them.
#[test]
fn proxy_variables_do_not_divert_bucket_requests() {
    let (proxy, diverted) = counting_listener();
    let proxy_url = format!("http://127.0.0.1:{proxy}");
    let mut child = std::process::Command::new(std::env::current_exe().unwrap());
    child
        .args(["--exact", "tests::proxy_check_in_child", "--nocapture"])
        .env(CHILD_MARKER, "1");
    for var in [
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
    ] {
        child.env(var, &proxy_url);
    }
    for var in ["NO_PROXY", "no_proxy", "REQUEST_METHOD"] {
        child.env_remove(var);
    }
    let out = child.output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("1 passed"), "the check did not run: {text}");
    assert_eq!(
        diverted.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "a bucket request went to the proxy the environment names"
    );
}

/// Runs in the child of [`proxy_variables_do_not_divert_bucket_requests`]:
/// a bucket call reaches the endpoint (the parent checks that its proxy saw
/// nothing).
#[test]
fn proxy_check_in_child() {
    if std::env::var_os(CHILD_MARKER).is_none() {
        return;
    }
    let (bucket, reached) = counting_listener();
    let b = S3Backend::new(opts(&format!("http://127.0.0.1:{bucket}")), creds()).unwrap();
    // The listener drops every connection: the call fails, after trying.
    assert!(pnpr_store::backend::block_on(b.exists("tarballs/x".into())).is_err());
    assert!(reached.load(std::sync::atomic::Ordering::SeqCst) >= 1);
}
