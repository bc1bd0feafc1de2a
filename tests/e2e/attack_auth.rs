//! Attacks on authentication against the real server (issue 9, classes 4, 6
//! and 9, and the exposed-listener default), each with a control showing the
//! legitimate path still works:
//! - class 6: a wrong `Basic` password is a 401, never an anonymous caller;
//!   guessing is limited per user name and per address (429 + Retry-After,
//!   also on `npm login` and token creation); bad-password floods do not
//!   stall `/-/ping`;
//! - class 4: a user cannot register a group's name (or a policy token), and
//!   an account that carries a group's name gets none of the group's rights;
//! - class 9: removing a user from htpasswd ends their tokens (and purges
//!   them); a name registered again starts without the old tokens or grants;
//! - exposure: a non-loopback listener without an explicit registration
//!   policy refuses to start.
//!
//! Every loop is bounded and every server listens on 127.0.0.1 only.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use base64::Engine;
use pnpr_e2e::{add_user, Http, Pnpr, Response};

fn config(per_user: u32, per_address: u32) -> String {
    format!(
        "auth:\n  htpasswd:\n    file: ./htpasswd\n  rate_limit:\n    per_user: {per_user}\n    per_address: {per_address}\n    window: 5m\n\
         groups:\n  team: [alice]\n\
         packages:\n  '@team/*':\n    access: team\n    publish: team\n  '**':\n    access: $all\n    publish: $authenticated\n\
         log:\n  level: warn\n"
    )
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

async fn get_with(http: &Http, url: &str, authorization: &str) -> Response {
    http.send("GET", url, &[("authorization", authorization)], None)
        .await
}

fn htpasswd_path(pnpr: &Pnpr) -> PathBuf {
    pnpr.config_path
        .parent()
        .expect("config dir")
        .join("htpasswd")
}

/// Rewrites the htpasswd file by hand, as an operator would.
fn edit_htpasswd(pnpr: &Pnpr, edit: impl FnOnce(Vec<String>) -> Vec<String>) {
    let path = htpasswd_path(pnpr);
    let lines: Vec<String> = std::fs::read_to_string(&path)
        .expect("read htpasswd")
        .lines()
        .map(str::to_owned)
        .collect();
    let out: String = edit(lines).iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&path, out).expect("write htpasswd");
}

fn assert_npm_error(r: &Response, status: u16) {
    r.assert_status(status);
    assert!(
        r.json()["error"].as_str().is_some_and(|e| !e.is_empty()),
        "npm-style error body expected: {}",
        r.text()
    );
}

async fn npm_login(http: &Http, pnpr: &Pnpr, name: &str, password: &str) -> Response {
    let body = serde_json::json!({"name": name, "password": password});
    http.put_json(
        &format!("{}-/user/org.couchdb.user:{name}", pnpr.url),
        &body,
        None,
    )
    .await
}

/// Polls `cond` every 250 ms for at most `limit`.
async fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn token_rows(pnpr: &Pnpr, user: &str) -> i64 {
    let conn =
        rusqlite::Connection::open(pnpr.data_dir().join("tokens.sqlite")).expect("tokens db");
    conn.query_row("SELECT COUNT(*) FROM tokens WHERE user = ?1", [user], |r| {
        r.get(0)
    })
    .expect("count")
}

fn grants_db(pnpr: &Pnpr) -> rusqlite::Connection {
    rusqlite::Connection::open(
        pnpr.data_dir()
            .join(".pnpr-cache")
            .join("install-grants.sqlite"),
    )
    .expect("grants db")
}

/// A minimal `npm publish` body for `name@1.0.0`.
async fn publish(http: &Http, pnpr: &Pnpr, token: &str, name: &str) -> Response {
    let tgz = pnpr_e2e::publish::tarball(name, "1.0.0", &[]);
    let b64 = base64::engine::general_purpose::STANDARD;
    let integrity = pnpr_e2e::publish::sri(&tgz);
    let file = format!("{}-1.0.0.tgz", name.rsplit('/').next().unwrap_or(name));
    let doc = serde_json::json!({
        "_id": name, "name": name, "dist-tags": {"latest": "1.0.0"},
        "versions": {"1.0.0": {"name": name, "version": "1.0.0",
            "dist": {"integrity": integrity, "tarball": format!("{}{name}/-/{file}", pnpr.url)}}},
        "_attachments": {file: {"content_type": "application/octet-stream",
            "data": b64.encode(&tgz), "length": tgz.len()}}
    });
    http.put_json(
        &format!("{}{}", pnpr.url, name.replace('/', "%2f")),
        &doc,
        Some(token),
    )
    .await
}

// ---------------------------------------------------------------- class 6

#[tokio::test]
async fn wrong_basic_password_is_refused_never_anonymous() {
    let pnpr = Pnpr::start(&config(50, 500), &[]);
    let http = Http::new();
    add_user(&http, &pnpr, "alice").await;
    let ping = format!("{}-/ping", pnpr.url);
    let whoami = format!("{}-/whoami", pnpr.url);

    // Routes an anonymous caller may use still refuse a wrong credential.
    for url in [&ping, &whoami, &format!("{}some-package", pnpr.url)] {
        let r = get_with(&http, url, &basic("alice", "wrong")).await;
        assert_npm_error(&r, 401);
    }
    // Unknown users and malformed values are refused too.
    assert_npm_error(&get_with(&http, &ping, &basic("mallory", "x")).await, 401);
    assert_npm_error(&get_with(&http, &ping, "Basic !!!not-base64").await, 401);
    assert_npm_error(&get_with(&http, &ping, "Basic").await, 401);

    // Control: the right password works, repeatedly (served from the cache).
    for _ in 0..3 {
        let r = get_with(&http, &whoami, &basic("alice", "alice-pw")).await;
        r.assert_status(200);
        assert_eq!(r.json()["username"], "alice");
    }
    // Control: no credential at all is still an anonymous caller.
    http.get(&ping).await.assert_status(200);
    assert!(!pnpr.logs().contains("alice-pw"), "password in logs");
}

#[tokio::test]
async fn basic_guessing_is_limited_per_user() {
    let pnpr = Pnpr::start(&config(5, 500), &[]);
    let http = Http::new();
    let alice_token = add_user(&http, &pnpr, "alice").await;
    let whoami = format!("{}-/whoami", pnpr.url);
    // alice's real credential, verified before the attack.
    get_with(&http, &whoami, &basic("alice", "alice-pw"))
        .await
        .assert_status(200);

    for i in 0..5 {
        let r = get_with(&http, &whoami, &basic("alice", &format!("guess-{i}"))).await;
        assert_npm_error(&r, 401);
    }
    let r = get_with(&http, &whoami, &basic("alice", "guess-5")).await;
    assert_npm_error(&r, 429);
    let retry: u64 = r
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("numeric Retry-After");
    assert!((1..=300).contains(&retry), "Retry-After {retry}");
    // Over budget, even an unverified right password waits: no hash runs.
    let started = Instant::now();
    for _ in 0..20 {
        let r = get_with(&http, &whoami, &basic("alice", "maybe-right")).await;
        assert_npm_error(&r, 429);
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "refusals over budget must be cheap: {:?}",
        started.elapsed()
    );
    // npm login and token creation share the budget.
    assert_npm_error(&npm_login(&http, &pnpr, "alice", "guess").await, 429);
    let r = http
        .post_json(
            &format!("{}-/npm/v1/tokens", pnpr.url),
            &serde_json::json!({"password": "guess"}),
            Some(&alice_token),
        )
        .await;
    assert_npm_error(&r, 429);

    // Controls: alice's verified credential and her token keep working, and
    // another user is not locked out.
    get_with(&http, &whoami, &basic("alice", "alice-pw"))
        .await
        .assert_status(200);
    http.get_auth(&whoami, &alice_token)
        .await
        .assert_status(200);
    add_user(&http, &pnpr, "bob").await;
    get_with(&http, &whoami, &basic("bob", "bob-pw"))
        .await
        .assert_status(200);
}

#[tokio::test]
async fn guessing_is_limited_per_address_and_on_npm_login() {
    let pnpr = Pnpr::start(&config(3, 8), &[]);
    let http = Http::new();
    add_user(&http, &pnpr, "alice").await;
    let bob = add_user(&http, &pnpr, "bob").await;

    // npm login with wrong passwords: per-user budget (3).
    for _ in 0..3 {
        assert_npm_error(&npm_login(&http, &pnpr, "alice", "nope").await, 401);
    }
    assert_npm_error(&npm_login(&http, &pnpr, "alice", "nope").await, 429);
    // Spraying over user names from one address: per-address budget (8,
    // three of which are already spent).
    let ping = format!("{}-/ping", pnpr.url);
    let mut statuses = Vec::new();
    for i in 0..6 {
        let r = get_with(&http, &ping, &basic(&format!("user{i}"), "pw")).await;
        statuses.push(r.status);
    }
    assert_eq!(statuses, [401, 401, 401, 401, 401, 429], "{statuses:?}");
    // Controls: tokens are never limited, and another address would not be
    // affected (only the budget of this one is spent).
    let r = http.get_auth(&format!("{}-/whoami", pnpr.url), &bob).await;
    r.assert_status(200);
    assert_eq!(r.json()["username"], "bob");
}

#[tokio::test]
async fn bad_password_flood_does_not_stall_ping() {
    // Budgets high enough that every bad password runs bcrypt: what is
    // measured is the isolation of hashing from the request workers.
    let pnpr = Pnpr::start(&config(100_000, 100_000), &[]);
    let http = Http::new();
    add_user(&http, &pnpr, "alice").await;
    let url = pnpr.url.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut attackers = Vec::new();
    for c in 0..8 {
        let (url, stop, http) = (url.clone(), std::sync::Arc::clone(&stop), http.clone());
        attackers.push(tokio::spawn(async move {
            let mut sent = 0u32;
            while sent < 200 && !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let r = get_with(
                    &http,
                    &format!("{url}-/whoami"),
                    &basic("alice", &format!("bad-{c}-{sent}")),
                )
                .await;
                assert!(matches!(r.status, 401 | 503), "{}", r.status);
                sent += 1;
            }
            sent
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut samples = Vec::new();
    for _ in 0..40 {
        let started = Instant::now();
        http.get(&format!("{url}-/ping")).await.assert_status(200);
        samples.push(started.elapsed());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut sent = 0;
    for a in attackers {
        sent += a.await.expect("attacker");
    }
    samples.sort();
    let p50 = samples[samples.len() / 2];
    assert!(sent > 8, "the flood ran ({sent} requests)");
    // Generous for a debug build on a shared machine; the benchmark
    // (`pnpr-bench login-storm`, release build) holds the 10 ms goal.
    assert!(
        p50 < Duration::from_millis(50),
        "ping p50 {p50:?} under a bad-password flood"
    );
}

// ---------------------------------------------------------------- class 4

#[tokio::test]
async fn group_names_cannot_be_registered_or_borrowed() {
    let pnpr = Pnpr::start(&config(50, 500), &[]);
    let http = Http::new();
    let alice = add_user(&http, &pnpr, "alice").await;

    // Registration of a group's name or a policy token is refused.
    let r = npm_login(&http, &pnpr, "team", "team-pw").await;
    assert_npm_error(&r, 403);
    assert!(r.text().contains("reserved"), "{}", r.text());
    for name in [
        "all",
        "authenticated",
        "anonymous",
        "$all",
        "@all",
        "$authenticated",
    ] {
        let r = npm_login(&http, &pnpr, name, "pw").await;
        assert!(
            (400..500).contains(&r.status) && r.status != 404,
            "{name}: {} {}",
            r.status,
            r.text()
        );
    }
    let htpasswd = std::fs::read_to_string(htpasswd_path(&pnpr)).expect("htpasswd");
    assert!(!htpasswd.lines().any(|l| l.starts_with("team:")));

    // An account named like the group that exists anyway (created by hand,
    // or before the group was configured) gets none of its rights.
    let teamx = add_user(&http, &pnpr, "teamx").await;
    drop(teamx);
    edit_htpasswd(&pnpr, |mut lines| {
        let hash = lines
            .iter()
            .find_map(|l| l.strip_prefix("teamx:"))
            .expect("teamx line")
            .to_owned();
        lines.push(format!("team:{hash}"));
        lines
    });
    let r = npm_login(&http, &pnpr, "team", "teamx-pw").await;
    r.assert_status(201);
    let team = r.json()["token"].as_str().expect("token").to_string();
    let r = publish(&http, &pnpr, &team, "@team/by-impostor").await;
    assert_npm_error(&r, 403);

    // Control: the real member publishes and reads; the impostor cannot read.
    let r = publish(&http, &pnpr, &alice, "@team/pkg").await;
    assert!(
        r.status == 200 || r.status == 201,
        "{} {}",
        r.status,
        r.text()
    );
    let doc = format!("{}@team%2fpkg", pnpr.url);
    http.get_auth(&doc, &alice).await.assert_status(200);
    http.get_auth(&doc, &team).await.assert_status(403);
    get_with(&http, &doc, &basic("team", "teamx-pw"))
        .await
        .assert_status(403);
}

// ---------------------------------------------------------------- class 9

#[tokio::test]
async fn removed_user_tokens_stop_working_and_are_purged() {
    let pnpr = Pnpr::start(&config(50, 500), &[]);
    let http = Http::new();
    let alice = add_user(&http, &pnpr, "alice").await;
    let bob = add_user(&http, &pnpr, "bob").await;
    let whoami = format!("{}-/whoami", pnpr.url);
    http.get_auth(&whoami, &bob).await.assert_status(200);
    assert_eq!(token_rows(&pnpr, "bob"), 1);

    edit_htpasswd(&pnpr, |lines| {
        lines
            .into_iter()
            .filter(|l| !l.starts_with("bob:"))
            .collect()
    });
    // At once: the token identifies nobody.
    assert_npm_error(&http.get_auth(&whoami, &bob).await, 401);
    // Soon (the file settles, the sweep runs): its row is gone.
    assert!(
        eventually(Duration::from_secs(15), || token_rows(&pnpr, "bob") == 0).await,
        "bob's token rows were not purged"
    );
    // Control: alice is untouched.
    http.get_auth(&whoami, &alice).await.assert_status(200);
    assert_eq!(token_rows(&pnpr, "alice"), 1);
}

#[tokio::test]
async fn reregistered_name_inherits_no_tokens_or_grants() {
    let pnpr = Pnpr::start(&config(50, 500), &[]);
    let http = Http::new();
    let old = add_user(&http, &pnpr, "carol").await;
    let whoami = format!("{}-/whoami", pnpr.url);
    http.get_auth(&whoami, &old).await.assert_status(200);
    // A grant the old carol earned on the install accelerator's forwarded
    // path (spec 4.5), as the server records it.
    grants_db(&pnpr)
        .execute(
            "INSERT INTO grants(user, pkg, granted_at_ms) VALUES ('carol', '@corp/secret@1.0.0', 1)",
            [],
        )
        .expect("grant row");

    // The operator removes carol; someone else registers the name.
    edit_htpasswd(&pnpr, |lines| {
        lines
            .into_iter()
            .filter(|l| !l.starts_with("carol:"))
            .collect()
    });
    let r = npm_login(&http, &pnpr, "carol", "new-carol-pw").await;
    r.assert_status(201);
    assert!(r.text().contains("created"), "{}", r.text());
    let new = r.json()["token"].as_str().expect("token").to_string();

    assert_npm_error(&http.get_auth(&whoami, &old).await, 401);
    assert_eq!(token_rows(&pnpr, "carol"), 1, "only the newcomer's token");
    let grants: i64 = grants_db(&pnpr)
        .query_row(
            "SELECT COUNT(*) FROM grants WHERE user = 'carol'",
            [],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(grants, 0, "grants of the old carol survived");
    // Control: the new token works.
    let r = http.get_auth(&whoami, &new).await;
    r.assert_status(200);
    assert_eq!(r.json()["username"], "carol");

    // Replaced by hand (removed and re-added with another password between
    // two requests): the tokens of the previous entry end too.
    let other = add_user(&http, &pnpr, "dave").await;
    edit_htpasswd(&pnpr, |lines| {
        let hash = lines
            .iter()
            .find_map(|l| l.strip_prefix("carol:"))
            .expect("carol line")
            .to_owned();
        lines
            .into_iter()
            .filter(|l| !l.starts_with("dave:"))
            .chain(std::iter::once(format!("dave:{hash}")))
            .collect()
    });
    assert_npm_error(&http.get_auth(&whoami, &other).await, 401);
    // Control: dave's new entry logs in and gets a working token.
    let r = npm_login(&http, &pnpr, "dave", "new-carol-pw").await;
    r.assert_status(201);
    let dave = r.json()["token"].as_str().expect("token").to_string();
    http.get_auth(&whoami, &dave).await.assert_status(200);
}

// ---------------------------------------------------------------- exposure

#[tokio::test]
async fn exposed_listener_needs_explicit_registration_policy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config_path = dir.path().join("config.yaml");
    std::fs::write(&config_path, "auth:\n  htpasswd:\n    file: ./htpasswd\n").expect("config");
    // A TEST-NET address: even if the check regressed, nothing could bind.
    let out = run_bounded(
        std::process::Command::new(pnpr_e2e::pnpr::binary_path())
            .arg("--config")
            .arg(&config_path)
            .arg("--listen")
            .arg("192.0.2.1:0")
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .env_clear(),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("auth.htpasswd.max_users") && stderr.contains("not a loopback"),
        "the refusal says what to set: {stderr}"
    );
    // Control: on loopback the same config starts (open registration stays
    // the default there).
    let pnpr = Pnpr::start("auth:\n  htpasswd:\n    file: ./htpasswd\n", &[]);
    add_user(&Http::new(), &pnpr, "alice").await;
}

/// Runs a command that is expected to exit by itself, killing it after 20 s.
fn run_bounded(cmd: &mut std::process::Command) -> std::process::Output {
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn pnpr");
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("output")
}
