//! Everyday client commands beyond install (issue 16): the bodies of token
//! and dist-tag writes as npm's registry shapes them, `npm login` / `whoami`
//! / `logout` on `/~<uplink>/` endpoints (the same users and tokens as `/`,
//! still read-only for packages), and JSON compression negotiated by
//! `Accept-Encoding` (never for tarballs).

use pnpr_e2e::{add_user, Http, Pnpr, Project, RegistryMock};
use serde_json::{json, Value};

const OPEN_POLICY: &str = "packages:\n  '**':\n    access: $all\n    publish: $authenticated\n";

fn config(extra: &str) -> String {
    format!("auth:\n  htpasswd:\n    file: ./htpasswd\n{OPEN_POLICY}{extra}")
}

fn npmrc(pnpr: &Pnpr, token: Option<&str>) -> String {
    let host = pnpr.url.trim_start_matches("http:");
    let mut rc = format!("registry={}\n", pnpr.url);
    if let Some(t) = token {
        rc.push_str(&format!("{host}:_authToken={t}\n"));
    }
    rc
}

fn package(pnpr: &Pnpr, token: &str, name: &str, version: &str) -> Project {
    let project = Project::new(
        &json!({"name": name, "version": version, "main": "index.js"}),
        Some(&npmrc(pnpr, Some(token))),
    );
    project.write_file("index.js", "module.exports = 1;\n");
    project
}

/// `npm token create --name` keeps the name; `npm token list` shows it and
/// the start of each token (never `undefined`, never the whole token), and
/// `npm token rm` takes the id it printed.
#[tokio::test]
async fn npm_token_list_shows_names_and_token_starts() {
    let pnpr = Pnpr::start(&config(""), &[]);
    let http = Http::new();
    let alice = add_user(&http, &pnpr, "alice").await;
    let project = package(&pnpr, &alice, "unused", "1.0.0");
    let created = project.npm(&[
        "token",
        "create",
        "--name",
        "ci-bot",
        "--password",
        "alice-pw",
        "--json",
    ]);
    created.assert_success();
    let made: Value = serde_json::from_str(&created.stdout).expect("token create --json");
    let plaintext = made["token"].as_str().expect("token").to_string();
    assert!(plaintext.starts_with("pnpr_"), "{made}");

    let list = project.npm(&["token", "list"]);
    list.assert_success();
    assert!(!list.stdout.contains("undefined"), "{list}");
    assert!(list.stdout.contains("name ci-bot"), "{list}");
    assert!(list.stdout.contains("name login"), "{list}");
    assert!(
        list.stdout.contains(&format!("{}…", &plaintext[..8])),
        "{list}"
    );
    assert!(
        !list.stdout.contains(&plaintext),
        "whole token listed: {list}"
    );
    assert!(!list.stdout.contains("IP whitelist"), "{list}");

    // Revoking by the full token value (npm matches it against `token`).
    project.npm(&["token", "rm", &plaintext]).assert_success();
    http.get_auth(&format!("{}-/whoami", pnpr.url), &plaintext)
        .await
        .assert_status(401);
    // Control: the login token still works.
    http.get_auth(&format!("{}-/whoami", pnpr.url), &alice)
        .await
        .assert_status(200);
}

/// Dist-tag writes answer `{"ok": …}` like the npm registry (yarn 1 `tag
/// add` fails without it); refusals stay npm-style errors.
#[tokio::test]
async fn dist_tag_writes_answer_ok() {
    let pnpr = Pnpr::start(&config(""), &[]);
    let http = Http::new();
    let alice = add_user(&http, &pnpr, "alice").await;
    let bob = add_user(&http, &pnpr, "bob").await;
    let pkg = package(&pnpr, &alice, "tagged-pkg", "1.0.0");
    pkg.npm(&["publish"]).assert_success();
    let url = format!("{}-/package/tagged-pkg/dist-tags/beta", pnpr.url);
    let put = |token: String| {
        let http = &http;
        let url = url.clone();
        async move {
            http.send(
                "PUT",
                &url,
                &[
                    ("content-type", "application/json"),
                    ("authorization", &format!("Bearer {token}")),
                ],
                Some(b"\"1.0.0\"".to_vec()),
            )
            .await
        }
    };
    let r = put(alice.clone()).await;
    r.assert_status(201);
    assert!(r.json()["ok"].is_string(), "{}", r.text());
    // Control: someone else's package stays refused, with an error body.
    let r = put(bob).await;
    r.assert_status(403);
    assert!(r.json().get("ok").is_none(), "{}", r.text());
    assert!(r.json()["error"].is_string(), "{}", r.text());

    let r = http
        .send(
            "DELETE",
            &url,
            &[("authorization", &format!("Bearer {alice}"))],
            None,
        )
        .await;
    r.assert_status(200);
    assert!(r.json()["ok"].is_string(), "{}", r.text());
    let tags = http
        .get(&format!("{}-/package/tagged-pkg/dist-tags", pnpr.url))
        .await;
    assert_eq!(tags.json(), json!({"latest": "1.0.0"}));
}

/// `corp` is an access-bearing uplink over registry-mock (its `@private/*`
/// packages need the server-held token); `mock` is the shared mirror.
fn corp_config(mock: &RegistryMock) -> String {
    format!(
        "auth:\n  htpasswd:\n    file: ./htpasswd\nuplinks:\n  mock:\n    url: {u}\n  corp:\n    url: {u}\n    access: $authenticated\n    auth:\n      type: bearer\n      token_env: CORP_TOKEN\n{OPEN_POLICY}    proxy: mock\n",
        u = mock.url
    )
}

async fn corp_pnpr(mock: &RegistryMock) -> Pnpr {
    let (user, password) = RegistryMock::private_credentials();
    let upstream_token = mock.login(user, password).await;
    Pnpr::start(&corp_config(mock), &[("CORP_TOKEN", &upstream_token)])
}

/// `npm login --scope=@private --registry=…/~corp/` logs a pnpr user in on
/// the endpoint (same users and tokens as `/`), the scope then installs,
/// `whoami` and `logout` work there; the endpoint stays read-only for
/// packages and unexposed names stay 404.
#[tokio::test]
async fn npm_login_on_an_uplink_endpoint_configures_the_scope() {
    let mock = RegistryMock::start();
    let pnpr = corp_pnpr(&mock).await;
    let http = Http::new();
    let alice_root = add_user(&http, &pnpr, "alice").await;
    let endpoint = format!("{}~corp/", pnpr.url);
    let project = Project::new(
        &json!({"name": "consumer", "version": "1.0.0", "private": true}),
        Some(&npmrc(&pnpr, None)),
    );
    let login = project.npm_answering(
        &["login", "--scope=@private", "--registry", &endpoint],
        &[("Username:", "alice"), ("Password:", "alice-pw")],
    );
    login.assert_success();
    let userrc = std::fs::read_to_string(project.home().join(".npmrc")).expect("user npmrc");
    assert!(
        userrc.contains(&format!("@private:registry={endpoint}")),
        "{userrc}"
    );
    let token = userrc
        .lines()
        .find_map(|l| l.split_once("~corp/:_authToken="))
        .map(|(_, t)| t.trim().to_string())
        .unwrap_or_else(|| panic!("no endpoint token saved: {userrc}"));

    let who = project.npm(&["whoami", "--registry", &endpoint]);
    who.assert_success();
    assert_eq!(who.stdout.trim(), "alice", "{who}");
    // The same token works on `/`, and the `/` token on the endpoint.
    let r = http
        .get_auth(&format!("{}-/whoami", pnpr.url), &token)
        .await;
    assert_eq!(r.json()["username"], "alice");
    let r = http
        .get_auth(&format!("{endpoint}-/whoami"), &alice_root)
        .await;
    assert_eq!(r.json()["username"], "alice");

    project
        .npm(&["install", "@private/foo", "@pnpm.e2e/pkg-with-1-dep"])
        .assert_success();
    project
        .node_require("@private/foo/package.json")
        .assert_success();

    // Still read-only for packages: publishing or tagging through the
    // endpoint is refused even with a valid token.
    let publish = http
        .put_json(
            &format!("{endpoint}@private%2fbar"),
            &json!({"name": "@private/bar"}),
            Some(&token),
        )
        .await;
    publish.assert_status(405);
    let tag = http
        .send(
            "PUT",
            &format!("{endpoint}-/package/@private%2ffoo/dist-tags/x"),
            &[("authorization", &format!("Bearer {token}"))],
            Some(b"\"1.0.0\"".to_vec()),
        )
        .await;
    tag.assert_status(405);
    // Unexposed endpoints (unknown, or an uplink without `access`) keep 404.
    for u in ["nope", "mock"] {
        let r = http
            .get_auth(&format!("{}~{u}/-/whoami", pnpr.url), &token)
            .await;
        r.assert_status(404);
        let r = http
            .put_json(
                &format!("{}~{u}/-/user/org.couchdb.user:alice", pnpr.url),
                &json!({"name": "alice", "password": "alice-pw"}),
                None,
            )
            .await;
        assert_eq!(r.status, 405, "{}", r.text());
    }

    let out = project.npm(&["logout", "--scope=@private", "--registry", &endpoint]);
    out.assert_success();
    http.get_auth(&format!("{}-/whoami", pnpr.url), &token)
        .await
        .assert_status(401);
    // Control: the token from `/` is untouched.
    http.get_auth(&format!("{}-/whoami", pnpr.url), &alice_root)
        .await
        .assert_status(200);
    assert!(!pnpr.logs().contains(&token), "a token reached the log");
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .expect("valid gzip");
    out
}

/// JSON is compressed as the client's `Accept-Encoding` asks (gzip, br and
/// zstd are offered; the body decodes to the identity bytes); tarballs are
/// never re-encoded; npm, pnpm 12 and pnpm 11.5.2 install through it.
#[tokio::test]
async fn json_is_compressed_by_negotiation_and_tarballs_never_are() {
    let mock = RegistryMock::start();
    let pnpr = Pnpr::start(
        &format!(
            "uplinks:\n  mock:\n    url: {}\n{OPEN_POLICY}    proxy: mock\n",
            mock.url
        ),
        &[],
    );
    let raw = Http::raw();
    let url = format!("{}@pnpm.e2e%2ffoo", pnpr.url);
    let plain = raw.send("GET", &url, &[], None).await;
    plain.assert_status(200);
    assert_eq!(plain.header("content-encoding"), None);
    let doc: Value = serde_json::from_slice(&plain.body).expect("json");
    assert!(plain.body.len() > 1024, "probe document too small");

    let gz = raw
        .send("GET", &url, &[("accept-encoding", "gzip")], None)
        .await;
    gz.assert_status(200);
    assert_eq!(gz.header("content-encoding"), Some("gzip"));
    assert!(gz
        .header("vary")
        .unwrap_or_default()
        .to_ascii_lowercase()
        .contains("accept-encoding"));
    assert!(gz.body.len() < plain.body.len());
    assert_eq!(gunzip(&gz.body), plain.body.to_vec());
    // Compressed once per document: a second request gets the same bytes;
    // revalidation still answers 304.
    let gz2 = raw
        .send("GET", &url, &[("accept-encoding", "gzip")], None)
        .await;
    assert_eq!(gz2.body, gz.body);
    let etag = gz.header("etag").expect("etag").to_string();
    raw.send(
        "GET",
        &url,
        &[("accept-encoding", "gzip"), ("if-none-match", &etag)],
        None,
    )
    .await
    .assert_status(304);

    for (offer, expect) in [
        ("br", "br"),
        ("zstd", "zstd"),
        ("gzip, deflate, br, zstd", "zstd"),
        ("gzip;q=1.0, br;q=0.5", "gzip"),
    ] {
        let r = raw
            .send("GET", &url, &[("accept-encoding", offer)], None)
            .await;
        r.assert_status(200);
        assert_eq!(r.header("content-encoding"), Some(expect), "offer {offer}");
        assert!(r.body.len() < plain.body.len(), "offer {offer}");
    }
    // Abbreviated documents too.
    let r = raw
        .send(
            "GET",
            &url,
            &[
                ("accept", "application/vnd.npm.install-v1+json"),
                ("accept-encoding", "gzip"),
            ],
            None,
        )
        .await;
    assert_eq!(r.header("content-encoding"), Some("gzip"));

    // Tarballs keep their bytes, whatever the client offers.
    let latest = doc["dist-tags"]["latest"].as_str().expect("latest");
    let tarball = doc["versions"][latest]["dist"]["tarball"]
        .as_str()
        .expect("tarball");
    let t = raw
        .send(
            "GET",
            tarball,
            &[("accept-encoding", "gzip, br, zstd")],
            None,
        )
        .await;
    t.assert_status(200);
    assert_eq!(t.header("content-encoding"), None);
    let t_plain = raw.send("GET", tarball, &[], None).await;
    assert_eq!(t.body, t_plain.body);

    // Real clients decode it.
    let project = Project::new(
        &json!({"name": "c", "version": "1.0.0", "private": true,
                "dependencies": {"@pnpm.e2e/foo": "*", "@pnpm.e2e/pkg-with-1-dep": "*"}}),
        Some(&npmrc(&pnpr, None)),
    );
    project.npm(&["install"]).assert_success();
    project
        .node_require("@pnpm.e2e/pkg-with-1-dep")
        .assert_success();
    let again = Project::new(
        &json!({"name": "c", "version": "1.0.0", "private": true,
                "dependencies": {"@pnpm.e2e/pkg-with-1-dep": "*"}}),
        Some(&npmrc(&pnpr, None)),
    );
    again.pnpm12(&["install"]).assert_success();
    again
        .node_require("@pnpm.e2e/pkg-with-1-dep")
        .assert_success();
}

/// `pnpm login --scope=@private --registry=…/~corp/` with pnpm 11.5.2,
/// 11.28.10 and 12.23.0: each logs a pnpr user in on the endpoint, records
/// the scope mapping and the endpoint's token, and then installs the
/// private package through the scope. Attack: a wrong password saves no
/// token and the scope stays closed.
#[tokio::test]
async fn pnpm_login_on_an_uplink_endpoint_configures_the_scope() {
    let mock = RegistryMock::start();
    let pnpr = corp_pnpr(&mock).await;
    let http = Http::new();
    add_user(&http, &pnpr, "alice").await;
    let endpoint = format!("{}~corp/", pnpr.url);
    for version in ["11.5.2", "11.28.10", "12.23.0"] {
        let project = Project::new(
            &json!({"name": "consumer", "version": "1.0.0", "private": true}),
            Some(&npmrc(&pnpr, None)),
        );
        let login = |password: &str| {
            project.pnpm_v_answering(
                version,
                &["login", "--scope=@private", "--registry", &endpoint],
                &[
                    ("sername", "alice"),
                    ("assword", password),
                    ("mail", "alice@example.test"),
                ],
            )
        };
        let bad = login("wrong-pw");
        assert!(!bad.success(), "pnpm {version} wrong password: {bad}");
        let saved = pnpm_user_config(&project);
        assert!(!saved.contains("_authToken"), "pnpm {version}: {saved}");
        project
            .pnpm_v(version, &["add", "@private/foo"])
            .assert_failure();

        login("alice-pw").assert_success();
        // pnpm keeps login state in its own user config (`auth.ini`, and
        // pnpm 12 the scope mapping in `config.yaml`); 11.28+ qualifies
        // the token key with the scope.
        let saved = pnpm_user_config(&project);
        assert!(
            saved.contains(&format!("@private:registry={endpoint}"))
                || saved.contains(&format!("{endpoint}:\n    scopes:\n    - '@private'")),
            "pnpm {version}: {saved}"
        );
        let token = saved
            .lines()
            .find_map(|l| {
                l.split_once("~corp/:_authToken=")
                    .or_else(|| l.split_once("~corp/:@private:_authToken="))
            })
            .map(|(_, t)| t.trim().to_string())
            .unwrap_or_else(|| panic!("pnpm {version}: no endpoint token saved: {saved}"));
        let r = http.get_auth(&format!("{endpoint}-/whoami"), &token).await;
        assert_eq!(r.json()["username"], "alice", "pnpm {version}");

        project
            .pnpm_v(version, &["add", "@private/foo"])
            .assert_success();
        project
            .node_require("@private/foo/package.json")
            .assert_success();
        assert!(!pnpr.logs().contains(&token), "a token reached the log");
    }
}

/// What pnpm's login wrote into the user's pnpm config files.
fn pnpm_user_config(project: &Project) -> String {
    let dir = project.home().join(".config/pnpm");
    ["auth.ini", "config.yaml", "rc"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(dir.join(f)).ok())
        .chain(std::fs::read_to_string(project.home().join(".npmrc")).ok())
        .collect::<Vec<_>>()
        .join("\n")
}
