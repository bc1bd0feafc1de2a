//! pnpm 11.9.0 on the resolve protocol v0: the only released client that
//! still sends its `.npmrc` credentials in the body (`authHeaders`, every
//! registry's token, the pnpr token included; RFC 0006 "Other released
//! clients"). pnpr accepts the body and drops the field while parsing, so
//! the install works and no client-sent credential ever reaches an
//! upstream or widens what a caller may read. Raw bodies of 11.9.0's shape
//! against a fake uplink: no pnpm runs here, so this adds no client time.

#[path = "fake_upstream.rs"]
mod fake_upstream;

use std::sync::{Arc, Mutex};

use fake_upstream::{FakeUpstream, Reply};
use pnpr_e2e::{add_user, Http, Pnpr};

/// Every request the fake uplink saw: (path, request head).
type Seen = Arc<Mutex<Vec<(String, String)>>>;

/// A private uplink serving `@fake/pkg@1.0.0`, recording each request.
fn fake_uplink(tarball: Vec<u8>) -> (FakeUpstream, Seen, String) {
    let integrity = fake_upstream::sri(&tarball);
    let seen: Seen = Default::default();
    let (log, sri) = (Arc::clone(&seen), integrity.clone());
    let up = FakeUpstream::start_with_head(move |path, head| {
        log.lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((path.to_string(), head.to_string()));
        if path.ends_with(".tgz") {
            return Reply::bytes(tarball.clone());
        }
        let at = format!("{}@fake/pkg/-/pkg-1.0.0.tgz", host_url(head));
        Reply::json(&fake_upstream::packument("@fake/pkg", &at, &sri))
    });
    (up, seen, integrity)
}

/// `http://<Host header>/` of a request head.
fn host_url(head: &str) -> String {
    let host = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case("host"))
        .map_or("", |(_, v)| v.trim());
    format!("http://{host}/")
}

/// The body pnpm 11.9.0 sends (captured shape,
/// `crates/protocol/tests/fixtures/pnpr-v0-resolve-request.pnpm-11.9.0.body.json`),
/// with `auth` as its `authHeaders`.
fn body_of_11_9(registry: &str, auth: serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "projects": [{"dir": ".", "dependencies": {"@fake/pkg": "1.0.0"}}],
        "registry": registry,
        "authHeaders": auth,
        "nodeVersion": "22.23.3", "os": "linux", "arch": "x64",
        "minimumReleaseAge": 1440
    })
}

/// Control: alice (admitted by the uplink) sends 11.9.0's body whose
/// `authHeaders` hold a made-up token for the uplink's host next to her
/// pnpr token: the package resolves, the uplink is asked with pnpr's own
/// credential only, and the client's token appears in no upstream request.
/// Attack: bob (not admitted) sends the uplink's real token in
/// `authHeaders`: he is refused as without it, with no integrity or
/// tarball in the answer and nothing fetched for him. A malformed
/// `authHeaders` is a 400 naming the field.
#[tokio::test]
async fn pnpm_11_9_credentials_are_dropped_never_forwarded() {
    let (up, seen, integrity) = fake_uplink(b"11.9 credentials fixture".to_vec());
    let config = format!(
        "auth:\n  htpasswd:\n    file: ./htpasswd\ngroups:\n  team: [alice]\nuplinks:\n  fake:\n    url: {u}\n    access: team\n    auth:\n      type: bearer\n      token_env: FAKE_TOKEN\npackages:\n  '@fake/*':\n    access: $authenticated\n    proxy: fake\n  '**':\n    access: $all\n    publish: $authenticated\n",
        u = up.url
    );
    let pnpr = Pnpr::start(&config, &[("FAKE_TOKEN", "uplink-secret")]);
    let http = Http::new();
    let alice = add_user(&http, &pnpr, "alice").await;
    let bob = add_user(&http, &pnpr, "bob").await;
    let url = pnpr.url.clone();
    let resolve = format!("{url}-/pnpr/v0/resolve");
    let nerf = |u: &str| u.trim_start_matches("http:").to_string();

    // Attack first, so any upstream request is bob's doing.
    let stolen = serde_json::json!({
        nerf(&up.url): {"@": "Bearer uplink-secret"},
        nerf(&url): {"@": format!("Bearer {bob}")},
    });
    let r = http
        .post_json(&resolve, &body_of_11_9(&url, stolen), Some(&bob))
        .await;
    let text = r.text();
    assert!(
        r.status != 200 || !text.contains("\"type\":\"done\""),
        "bob resolved with a client-sent credential: {text}"
    );
    for secret in [integrity.as_str(), "pkg-1.0.0.tgz"] {
        assert!(!text.contains(secret), "leaked {secret}: {text}");
    }

    // Control.
    let made_up = serde_json::json!({
        nerf(&up.url): {"@": "Bearer client-upstream-secret"},
        nerf(&url): {"@": format!("Bearer {alice}")},
    });
    let r = http
        .post_json(&resolve, &body_of_11_9(&url, made_up), Some(&alice))
        .await;
    r.assert_status(200);
    assert!(
        r.text().contains("\"type\":\"done\"") && r.text().contains(&integrity),
        "control: {}",
        r.text()
    );
    let heads = seen.lock().unwrap_or_else(|p| p.into_inner()).clone();
    assert!(!heads.is_empty(), "the uplink was never asked");
    for (path, head) in &heads {
        let lower = head.to_ascii_lowercase();
        assert!(
            !lower.contains("client-upstream-secret"),
            "{path} carried a client-sent credential"
        );
        for token in [&alice, &bob] {
            assert!(
                !head.contains(token.as_str()),
                "{path} carried a caller's token"
            );
        }
        assert!(
            lower.contains("bearer uplink-secret"),
            "{path} without the uplink's own credential"
        );
    }

    let bad = body_of_11_9(&url, serde_json::json!({"//x/": {"@": 1}}));
    let r = http.post_json(&resolve, &bad, Some(&alice)).await;
    r.assert_status(400);
    assert!(r.text().contains("authHeaders"), "{}", r.text());
}
