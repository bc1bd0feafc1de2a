//! The fetch allowlist and connect-time guard, end to end: the real pnpr
//! binary with hostile upstreams. Every refusal must come back as a clear
//! npm-style error and must not reach the refused host at all.

#[path = "fake_upstream.rs"]
mod fake_upstream;

use fake_upstream::{count_files, packument, sri, FakeUpstream, Reply};
use pnpr_e2e::{Http, Pnpr};

fn config_for(uplink_url: &str, extra: &str) -> String {
    format!(
        "uplinks:\n  up:\n    url: {uplink_url}\n    max_fails: 100\n{extra}packages:\n  '**':\n    access: $all\n    publish: $authenticated\n    proxy: up\n"
    )
}

#[tokio::test]
async fn tarball_on_an_off_list_host_is_refused_without_a_fetch() {
    let target = FakeUpstream::start(|_| Reply::bytes(b"secret".to_vec()));
    let off_list = format!("{}@x/pkg/-/pkg-1.0.0.tgz", target.url);
    let doc = packument("@x/pkg", &off_list, &sri(b"secret"));
    let up = FakeUpstream::start(move |_| Reply::json(&doc));
    // `target` listens on 127.0.0.1 too, so the literal-IP guard would let
    // it through; only the allowlist (origin incl. port) stops it.
    let pnpr = Pnpr::start(&config_for(&up.url, ""), &[]);
    let http = Http::new();
    let r = http
        .get(&format!("{}@x/pkg/-/pkg-1.0.0.tgz", pnpr.url))
        .await;
    assert!(
        r.status == 403 || r.status == 502,
        "{} {}",
        r.status,
        r.text()
    );
    assert!(r.json()["error"].is_string(), "{}", r.text());
    assert_eq!(target.accepts(), 0, "the off-list host was contacted");
}

#[tokio::test]
async fn redirect_to_an_off_list_host_is_refused() {
    let target = FakeUpstream::start(|_| Reply::json(&serde_json::json!({"name": "@x/pkg"})));
    let location = format!("{}@x%2fpkg", target.url);
    let up = FakeUpstream::start(move |_| Reply::redirect(&location));
    let pnpr = Pnpr::start(&config_for(&up.url, ""), &[]);
    let r = Http::new().get(&format!("{}@x%2fpkg", pnpr.url)).await;
    assert_eq!(r.status, 403, "{}", r.text());
    let msg = r.json()["error"].as_str().unwrap_or_default().to_string();
    assert!(msg.contains("redirect"), "unclear error: {msg}");
    assert!(up.accepts() >= 1);
    assert_eq!(target.accepts(), 0, "the redirect target was contacted");
}

#[tokio::test]
async fn userinfo_and_dot_segments_in_tarball_urls_are_refused() {
    let holder = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let h2 = std::sync::Arc::clone(&holder);
    let up = FakeUpstream::start(move |path| {
        let base = h2.lock().unwrap().clone();
        if path.contains("userinfo") {
            let url =
                base.replacen("http://", "http://user:pa55word@", 1) + "t/-/userinfo-1.0.0.tgz";
            Reply::json(&packument("@x/userinfo", &url, &sri(b"x")))
        } else if path.contains("dots") {
            let url = format!("{base}a/../@x/dots/-/dots-1.0.0.tgz");
            Reply::json(&packument("@x/dots", &url, &sri(b"x")))
        } else if path.contains("encoded") {
            let url = format!("{base}a/%2e%2e/@x/encoded/-/encoded-1.0.0.tgz");
            Reply::json(&packument("@x/encoded", &url, &sri(b"x")))
        } else {
            Reply::bytes(b"x".to_vec())
        }
    });
    *holder.lock().unwrap() = up.url.clone();
    let pnpr = Pnpr::start(&config_for(&up.url, ""), &[]);
    let http = Http::new();
    for (name, file) in [
        ("@x/userinfo", "userinfo-1.0.0.tgz"),
        ("@x/dots", "dots-1.0.0.tgz"),
        ("@x/encoded", "encoded-1.0.0.tgz"),
    ] {
        let before = up.accepts();
        let r = http.get(&format!("{}{name}/-/{file}", pnpr.url)).await;
        assert!(r.status >= 400, "{name}: {} {}", r.status, r.text());
        let text = r.text();
        assert!(r.json()["error"].is_string(), "{text}");
        assert!(!text.contains("pa55word"), "credential echoed: {text}");
        // One connection for the packument, none for the tarball.
        assert_eq!(
            up.accepts() - before,
            1,
            "{name}: tarball fetch reached the wire"
        );
    }
    assert!(!pnpr.logs().contains("pa55word"), "credential in logs");
}

#[tokio::test]
async fn a_name_resolving_to_the_metadata_address_is_refused() {
    // `network.hosts` is the injected resolver: it answers before DNS.
    let extra = "network:\n  hosts:\n    metadata.test: 169.254.169.254\n";
    let pnpr = Pnpr::start(&config_for("http://metadata.test/", extra), &[]);
    let r = Http::new().get(&format!("{}@x%2fpkg", pnpr.url)).await;
    assert_eq!(r.status, 403, "{}", r.text());
    let msg = r.json()["error"].as_str().unwrap_or_default().to_string();
    assert!(msg.contains("169.254.169.254"), "unclear error: {msg}");
}

#[tokio::test]
async fn a_name_resolving_to_loopback_is_refused_unless_allowed() {
    let up = FakeUpstream::start(|_| Reply::json(&packument("@x/pkg", "http://x/", &sri(b"x"))));
    let url = format!("http://internal.test:{}/", up.port);
    let extra = "network:\n  hosts:\n    internal.test: 127.0.0.1\n";
    let pnpr = Pnpr::start(&config_for(&url, extra), &[]);
    let r = Http::new().get(&format!("{}@x%2fpkg", pnpr.url)).await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(up.accepts(), 0);
    drop(pnpr);

    let extra =
        "network:\n  hosts:\n    internal.test: 127.0.0.1\n  allow_private: [127.0.0.1/32]\n";
    let pnpr = Pnpr::start(&config_for(&url, extra), &[]);
    let r = Http::new().get(&format!("{}@x%2fpkg", pnpr.url)).await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test]
async fn tarball_with_wrong_integrity_is_refused_and_not_cached() {
    let small_claimed = sri(b"the bytes the packument promises");
    let big: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let big_claimed = sri(b"something else entirely");
    let holder = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let h2 = std::sync::Arc::clone(&holder);
    let big2 = big.clone();
    let up = FakeUpstream::start(move |path| {
        let base = h2.lock().unwrap().clone();
        if path.ends_with(".tgz") {
            if path.contains("big") {
                Reply::bytes(big2.clone())
            } else {
                Reply::bytes(b"different bytes".to_vec())
            }
        } else if path.contains("big") {
            Reply::json(&packument(
                "@x/big",
                &format!("{base}@x/big/-/big-1.0.0.tgz"),
                &big_claimed,
            ))
        } else {
            Reply::json(&packument(
                "@x/small",
                &format!("{base}@x/small/-/small-1.0.0.tgz"),
                &small_claimed,
            ))
        }
    });
    *holder.lock().unwrap() = up.url.clone();
    let pnpr = Pnpr::start(&config_for(&up.url, ""), &[]);
    let http = Http::new();
    let r = http
        .get(&format!("{}@x/small/-/small-1.0.0.tgz", pnpr.url))
        .await;
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(r.json()["error"]
        .as_str()
        .unwrap_or_default()
        .contains("verification"));

    // A large body has started streaming before the mismatch shows: the
    // response must then be cut short, never completed.
    let raw = reqwest::get(format!("{}@x/big/-/big-1.0.0.tgz", pnpr.url)).await;
    let complete = match raw {
        Ok(resp) if resp.status().is_success() => match resp.bytes().await {
            Ok(b) => b.len() == big.len(),
            Err(_) => false,
        },
        _ => false,
    };
    assert!(
        !complete,
        "a body failing verification was delivered complete"
    );

    let tarballs = pnpr.data_dir.join(".pnpr-cache").join("tarballs");
    assert_eq!(count_files(&tarballs), 0, "something was cached");
}
