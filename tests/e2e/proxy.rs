//! The registry proxy end to end: the real pnpr binary in front of the real
//! registry-mock (Verdaccio + pnpm's fixture packages), driven by real
//! clients and raw HTTP.

#[path = "fake_upstream.rs"]
mod fake_upstream;

use std::time::{Duration, Instant};

use fake_upstream::count_files;
use pnpr_e2e::{Http, Pnpr, Project, RegistryMock};

const PKG: &str = "@pnpm.e2e/pkg-with-1-dep";

fn mirror_config(mock: &RegistryMock, extra_uplink: &str, packages: &str) -> String {
    format!(
        "uplinks:\n  mock:\n    url: {}\n{extra_uplink}packages:\n{packages}",
        mock.url
    )
}

const OPEN_PACKAGES: &str =
    "  '**':\n    access: $all\n    publish: $authenticated\n    proxy: mock\n";

fn tarball_dir(pnpr: &Pnpr) -> std::path::PathBuf {
    pnpr.data_dir.join(".pnpr-cache").join("tarballs")
}

#[test]
fn npm_and_pnpm_install_through_the_proxy() {
    let mock = RegistryMock::start();
    let pnpr = Pnpr::start(&mirror_config(&mock, "", OPEN_PACKAGES), &[]);

    let npm = Project::with_dependencies(&[(PKG, "^100.0.0"), ("@foo/no-deps", "*")]);
    npm.npm(&["install", "--registry", &pnpr.url])
        .assert_success();
    npm.node_require(PKG).assert_success();
    npm.node_require("@foo/no-deps/package.json")
        .assert_success();
    // The lockfile points at us, not at the upstream.
    let lock = npm.read_file("package-lock.json");
    assert!(lock.contains(&pnpr.url), "{lock}");
    assert!(!lock.contains(&mock.url), "{lock}");
    let cached = count_files(&tarball_dir(&pnpr).join("public"));
    assert!(cached >= 3, "tarballs were not cached by pnpr ({cached})");

    let pnpm12 = Project::with_dependencies(&[(PKG, "^100.0.0"), ("@pnpm.e2e/foo", "100.0.0")]);
    pnpm12
        .pnpm12(&["install", "--registry", &pnpr.url])
        .assert_success();
    pnpm12.node_require(PKG).assert_success();
    pnpm12
        .node_require("@pnpm.e2e/foo/package.json")
        .assert_success();

    let pnpm11 = Project::with_dependencies(&[(PKG, "^100.0.0")]);
    pnpm11
        .pnpm11(&["install", "--registry", &pnpr.url])
        .assert_success();
    pnpm11.node_require(PKG).assert_success();
}

#[tokio::test]
async fn read_api_shapes_etags_and_scoped_spellings() {
    let mock = RegistryMock::start();
    let pnpr = Pnpr::start(&mirror_config(&mock, "", OPEN_PACKAGES), &[]);
    let http = Http::new();
    let mut bodies = Vec::new();
    for path in [
        "@pnpm.e2e%2fpkg-with-1-dep",
        "@pnpm.e2e%2Fpkg-with-1-dep",
        "@pnpm.e2e/pkg-with-1-dep",
    ] {
        let r = http.get(&format!("{}{path}", pnpr.url)).await;
        r.assert_status(200);
        let doc = r.json();
        assert_eq!(doc["name"], PKG);
        for (_, v) in doc["versions"].as_object().expect("versions") {
            let t = v["dist"]["tarball"].as_str().unwrap_or_default();
            assert!(t.starts_with(&pnpr.url), "tarball not rewritten: {t}");
        }
        bodies.push(r.text());
    }
    assert_eq!(bodies[0], bodies[1]);

    // Abbreviated form.
    let r = http
        .send(
            "GET",
            &format!("{}@pnpm.e2e%2Fpkg-with-1-dep", pnpr.url),
            &[(
                "accept",
                "application/vnd.npm.install-v1+json; q=1.0, application/json; q=0.8, */*",
            )],
            None,
        )
        .await;
    r.assert_status(200);
    assert_eq!(
        r.header("content-type"),
        Some("application/vnd.npm.install-v1+json")
    );
    let doc = r.json();
    assert!(doc.get("readme").is_none());
    assert!(doc["versions"]["100.0.0"]["dist"]["integrity"].is_string());

    // ETag and 304.
    let r = http.get(&format!("{}{PKG}", pnpr.url)).await;
    let etag = r.header("etag").expect("etag").to_string();
    let r = http
        .send(
            "GET",
            &format!("{}{PKG}", pnpr.url),
            &[("if-none-match", &etag)],
            None,
        )
        .await;
    r.assert_status(304);

    // Version and tag documents.
    let r = http.get(&format!("{}{PKG}/100.0.0", pnpr.url)).await;
    r.assert_status(200);
    assert_eq!(r.json()["version"], "100.0.0");
    let r = http.get(&format!("{}{PKG}/latest", pnpr.url)).await;
    r.assert_status(200);
    assert_eq!(r.json()["version"], "100.1.0");

    // HEAD and tarballs (scoped with %2f too), identical bytes to upstream.
    let tgz = "@pnpm.e2e/pkg-with-1-dep/-/pkg-with-1-dep-100.0.0.tgz";
    let ours = http.get(&format!("{}{tgz}", pnpr.url)).await;
    ours.assert_status(200);
    let theirs = http.get(&format!("{}{tgz}", mock.url)).await;
    assert_eq!(ours.body, theirs.body);
    let again = http
        .get(&format!(
            "{}@pnpm.e2e%2fpkg-with-1-dep/-/pkg-with-1-dep-100.0.0.tgz",
            pnpr.url
        ))
        .await;
    assert_eq!(again.body, theirs.body);
    let head = http
        .send("HEAD", &format!("{}{PKG}", pnpr.url), &[], None)
        .await;
    head.assert_status(200);

    // Errors are npm-style JSON with the right status.
    for (path, status) in [
        ("@pnpm.e2e/does-not-exist", 404),
        ("%ff%fe", 400),
        ("@pnpm.e2e/pkg-with-1-dep/-/nope-1.0.0.tgz", 404),
        ("a/b/c/d", 400),
        ("-/nothing-here", 404),
    ] {
        let r = http.get(&format!("{}{path}", pnpr.url)).await;
        assert_eq!(r.status, status, "{path}: {}", r.text());
        assert!(r.json()["error"].is_string(), "{path}: {}", r.text());
    }
    let r = http
        .send("DELETE", &format!("{}{PKG}", pnpr.url), &[], None)
        .await;
    // Writes need an identified caller before anything else is looked at.
    assert_eq!(r.status, 401, "{}", r.text());
}

#[tokio::test]
async fn stale_metadata_is_served_while_the_uplink_is_down() {
    let mock = RegistryMock::start();
    let uplink = format!("  mock:\n    url: {}\n    maxage: 1s\n    max_fails: 1\n    fail_timeout: 1m\n    timeout: 5s\n", mock.url);
    let config = format!("uplinks:\n{uplink}packages:\n{OPEN_PACKAGES}");
    let pnpr = Pnpr::start(&config, &[]);
    let http = Http::new();
    let url = format!("{}{PKG}", pnpr.url);
    http.get(&url).await.assert_status(200);
    let tgz = format!(
        "{}@pnpm.e2e/pkg-with-1-dep/-/pkg-with-1-dep-100.0.0.tgz",
        pnpr.url
    );
    http.get(&tgz).await.assert_status(200);
    drop(mock);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    // Stale but served; the breaker then opens and answers stay fast.
    let r = http.get(&url).await;
    r.assert_status(200);
    let t = Instant::now();
    http.get(&url).await.assert_status(200);
    http.get(&tgz).await.assert_status(200);
    assert!(t.elapsed() < Duration::from_secs(3), "breaker did not open");
    // A package never seen is an error, not a hang.
    let r = http.get(&format!("{}@pnpm.e2e/foo", pnpr.url)).await;
    assert!(
        r.status == 503 || r.status == 502 || r.status == 504,
        "{} {}",
        r.status,
        r.text()
    );
}

#[tokio::test]
async fn users_tokens_and_whoami() {
    let pnpr = Pnpr::start("packages:\n  '**':\n    access: $authenticated\n", &[]);
    let http = Http::new();
    let login = |name: &str, pw: &str| {
        let body = serde_json::json!({"name": name, "password": pw, "type": "user"});
        let url = format!("{}-/user/org.couchdb.user:{name}", pnpr.url);
        let http = &http;
        async move { http.put_json(&url, &body, None).await }
    };
    let r = login("alice", "wonderland").await;
    assert_eq!(r.status, 201, "{}", r.text());
    let token = r.json()["token"].as_str().expect("token").to_string();
    // Logging in again with the right password works, with a wrong one not.
    assert_eq!(login("alice", "wonderland").await.status, 201);
    assert_eq!(login("alice", "nope").await.status, 401);
    // Garbage bodies are a clear 400, never a crash.
    let r = http
        .send(
            "PUT",
            &format!("{}-/user/org.couchdb.user:x", pnpr.url),
            &[("content-type", "application/json")],
            Some(b"{not json".to_vec()),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text());

    // The real npm CLI: whoami, token list, token revoke, logout.
    let host = pnpr.url.trim_start_matches("http:");
    let npmrc = format!("registry={}\n{host}:_authToken={token}\n", pnpr.url);
    let project = Project::new(
        &serde_json::json!({"name": "t", "version": "1.0.0"}),
        Some(&npmrc),
    );
    let out = project.npm(&["whoami"]);
    out.assert_success();
    assert_eq!(out.stdout.trim(), "alice");

    let created = http
        .post_json(
            &format!("{}-/npm/v1/tokens", pnpr.url),
            &serde_json::json!({"password": "wonderland", "readonly": false, "cidr_whitelist": []}),
            Some(&token),
        )
        .await;
    assert_eq!(created.status, 200, "{}", created.text());
    let second = created.json()["token"].as_str().expect("token").to_string();
    let key = created.json()["key"].as_str().expect("key").to_string();
    let out = project.npm(&["token", "list", "--json"]);
    out.assert_success();
    assert!(out.stdout.contains(&key[..6]), "{out}");
    assert!(!out.stdout.contains(&second), "plaintext token listed");
    project
        .npm(&["token", "revoke", &key[..8]])
        .assert_success();
    http.get_auth(&format!("{}-/whoami", pnpr.url), &second)
        .await
        .assert_status(401);

    // Tokens are stored as digests only.
    let db = std::fs::read(pnpr.data_dir.join("tokens.sqlite")).unwrap_or_default();
    let needle = token.as_bytes();
    assert!(
        !db.windows(needle.len()).any(|w| w == needle),
        "plaintext token on disk"
    );

    project.npm(&["logout"]).assert_success();
    http.get_auth(&format!("{}-/whoami", pnpr.url), &token)
        .await
        .assert_status(401);
    http.get(&format!("{}-/whoami", pnpr.url))
        .await
        .assert_status(401);
}

#[tokio::test]
async fn health_readiness_and_graceful_shutdown() {
    let mut pnpr = Pnpr::start("packages: {}\n", &[]);
    let http = Http::new();
    http.get(&format!("{}-/ping", pnpr.url))
        .await
        .assert_status(200);
    http.get(&format!("{}-/health", pnpr.url))
        .await
        .assert_status(200);
    http.get(&format!("{}-/ready", pnpr.url))
        .await
        .assert_status(200);
    let (status, graceful) = pnpr.stop();
    assert!(graceful, "pnpr did not exit on SIGTERM");
    assert!(
        status.is_some_and(|s| s.success()),
        "exit status {status:?}"
    );
}

#[tokio::test]
async fn invalid_config_fails_at_startup_naming_the_key() {
    let err =
        Pnpr::try_start("uplinks:\n  u:\n    url: not a url\n", &[]).expect_err("must refuse");
    assert!(err.logs.contains("uplinks.u.url"), "{}", err.logs);
    let err = Pnpr::try_start("secret: short\n", &[]).expect_err("must refuse");
    assert!(err.logs.contains("secret"), "{}", err.logs);
    // Unknown Verdaccio keys are accepted with a warning.
    let pnpr = Pnpr::start(
        "web:\n  enable: true\nmiddlewares:\n  audit: {enabled: true}\n",
        &[],
    );
    assert!(pnpr.logs().contains("web"), "{}", pnpr.logs());
}
