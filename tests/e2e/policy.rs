//! Access policy end to end: the `/~<uplink>/` endpoint of an uplink that
//! holds a server-side credential, who may use it, where its data is cached,
//! and live edits of the policy without a restart.

#[path = "fake_upstream.rs"]
mod fake_upstream;

use std::time::{Duration, Instant};

use fake_upstream::count_files;
use pnpr_e2e::{add_user, Http, Pnpr, Project, RegistryMock};

const PRIVATE: &str = "@private/foo";

fn corp_config(mock: &RegistryMock, corp_access: &str) -> String {
    format!(
        "auth:\n  htpasswd:\n    file: ./htpasswd\ngroups:\n  team: [alice]\nuplinks:\n  mock:\n    url: {u}\n  corp:\n    url: {u}\n    access: {corp_access}\n    auth:\n      type: bearer\n      token_env: CORP_TOKEN\npackages:\n  '**':\n    access: $all\n    publish: $authenticated\n    proxy: mock\n",
        u = mock.url
    )
}

fn sha512_hex_of_sri(sri: &str) -> String {
    use base64::Engine;
    let b64 = sri.strip_prefix("sha512-").expect("sha512 integrity");
    hex::encode(
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .expect("base64"),
    )
}

#[tokio::test]
async fn private_uplink_endpoint_serves_only_admitted_callers() {
    let mock = RegistryMock::start();
    let (user, password) = RegistryMock::private_credentials();
    let upstream_token = mock.login(user, password).await;
    let pnpr = Pnpr::start(
        &corp_config(&mock, "team"),
        &[("CORP_TOKEN", &upstream_token)],
    );
    let http = Http::new();
    let alice = add_user(&http, &pnpr, "alice").await;
    let bob = add_user(&http, &pnpr, "bob").await;

    let endpoint = format!("{}~corp/@private%2ffoo", pnpr.url);
    http.get(&endpoint).await.assert_status(401);
    http.get_auth(&endpoint, &bob).await.assert_status(403);
    let r = http.get_auth(&endpoint, &alice).await;
    r.assert_status(200);
    assert_eq!(r.header("cache-control"), Some("private, no-store"));
    assert_eq!(r.header("vary"), Some("Authorization"));
    let doc = r.json();
    let latest = doc["dist-tags"]["latest"]
        .as_str()
        .expect("latest")
        .to_string();
    let dist = &doc["versions"][&latest]["dist"];
    let tarball = dist["tarball"].as_str().expect("tarball").to_string();
    assert!(
        tarball.starts_with(&format!("{}~corp/@private/foo/-/", pnpr.url)),
        "tarball not on the endpoint: {tarball}"
    );
    let integrity = dist["integrity"].as_str().expect("integrity").to_string();
    http.get(&tarball).await.assert_status(401);
    http.get_auth(&tarball, &bob).await.assert_status(403);
    let t = http.get_auth(&tarball, &alice).await;
    t.assert_status(200);
    assert_eq!(t.header("cache-control"), Some("private, no-store"));

    // Not exposed: unknown uplinks and uplinks without `access`.
    http.get_auth(&format!("{}~nope/@private%2ffoo", pnpr.url), &alice)
        .await
        .assert_status(404);
    http.get_auth(&format!("{}~mock/@private%2ffoo", pnpr.url), &alice)
        .await
        .assert_status(404);
    // The shared path never uses the corp credential.
    let r = http
        .get_auth(&format!("{}@private%2ffoo", pnpr.url), &alice)
        .await;
    assert_eq!(r.status, 404, "{}", r.text());

    // Cached only in corp's own namespace, never in the shared mirror.
    let hex = sha512_hex_of_sri(&integrity);
    let tarballs = pnpr.data_dir.join(".pnpr-cache").join("tarballs");
    let public = tarballs
        .join("public")
        .join("sha512")
        .join(&hex[..2])
        .join(&hex[2..]);
    assert!(!public.exists(), "private tarball in the public mirror");
    let total = count_files(&tarballs);
    let in_public = count_files(&tarballs.join("public"));
    assert!(
        total - in_public >= 1,
        "private tarball not cached in its namespace"
    );
    assert!(
        !pnpr.logs().contains(&upstream_token),
        "upstream token in logs"
    );

    // Real pnpm 12: a scope pointed at /~corp/ with the token in .npmrc.
    let host = pnpr.url.trim_start_matches("http:");
    let npmrc = format!(
        "@private:registry={}~corp/\n{host}~corp/:_authToken={alice}\n",
        pnpr.url
    );
    let pkg = serde_json::json!({"name": "t", "version": "1.0.0", "private": true,
        "dependencies": {PRIVATE: "*", "@pnpm.e2e/pkg-with-1-dep": "^100.0.0"}});
    let project = Project::new(&pkg, Some(&npmrc));
    project
        .pnpm12(&["install", "--registry", &pnpr.url])
        .assert_success();
    // @private/foo ships only a package.json.
    project
        .node_require("@private/foo/package.json")
        .assert_success();
    project
        .node_require("@pnpm.e2e/pkg-with-1-dep")
        .assert_success();

    // Anonymous callers are refused by the endpoint.
    let npmrc = format!("@private:registry={}~corp/\n", pnpr.url);
    let anon = Project::new(&pkg, Some(&npmrc));
    let out = anon.pnpm12(&["install", "--registry", &pnpr.url]);
    out.assert_failure();
}

async fn wait_for_status(http: &Http, url: &str, token: Option<&str>, want: u16) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let r = match token {
            Some(t) => http.get_auth(url, t).await,
            None => http.get(url).await,
        };
        if r.status == want {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

#[tokio::test]
async fn policy_edits_apply_without_restart() {
    let mock = RegistryMock::start();
    let (user, password) = RegistryMock::private_credentials();
    let upstream_token = mock.login(user, password).await;
    let pnpr = Pnpr::start(
        &corp_config(&mock, "team"),
        &[("CORP_TOKEN", &upstream_token)],
    );
    let http = Http::new();
    let alice = add_user(&http, &pnpr, "alice").await;
    let public = format!("{}@pnpm.e2e%2fpkg-with-1-dep", pnpr.url);
    let private = format!("{}~corp/@private%2ffoo", pnpr.url);
    http.get(&public).await.assert_status(200);
    http.get_auth(&private, &alice).await.assert_status(200);

    // File edit: packages need authentication, corp is for bob only.
    let edited =
        corp_config(&mock, "bob").replace("    access: $all\n", "    access: $authenticated\n");
    pnpr.write_config(&edited);
    assert!(
        wait_for_status(&http, &public, None, 401).await,
        "package policy edit not applied"
    );
    assert!(
        wait_for_status(&http, &private, Some(&alice), 403).await,
        "uplink access edit not applied"
    );
    http.get_auth(&public, &alice).await.assert_status(200);

    // An invalid edit keeps the last good policy and says why.
    pnpr.write_config("packages: [this is: not valid\n");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    http.get(&public).await.assert_status(401);
    assert!(
        pnpr.logs().contains("keeping the current policy"),
        "{}",
        pnpr.logs()
    );

    // SIGHUP reload.
    pnpr.write_config(&corp_config(&mock, "team"));
    pnpr.signal_hup();
    assert!(
        wait_for_status(&http, &public, None, 200).await,
        "SIGHUP reload not applied"
    );
    assert!(wait_for_status(&http, &private, Some(&alice), 200).await);
}
