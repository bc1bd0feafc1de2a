//! Hosted packages end to end with the real npm 11 CLI: publish, install
//! (npm and pnpm 12), dist-tags, deprecate, owners, unpublish and search;
//! name ownership against an uplink; concurrent publishes; and crash safety
//! of a large publish killed with SIGKILL mid-flight.

use std::time::{Duration, Instant};

use base64::Engine;
use pnpr_e2e::publish::noise;
use pnpr_e2e::{add_user, Http, Pnpr, Project, RegistryMock};
use serde_json::{json, Value};
use sha2::{Digest, Sha512};

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

/// A publishable package directory for `name@version`, authenticated as
/// the owner of `token`.
fn package(pnpr: &Pnpr, token: &str, name: &str, version: &str) -> Project {
    let project = Project::new(
        &json!({
            "name": name,
            "version": version,
            "main": "index.js",
            "description": "a greeting published to pnpr",
            "keywords": ["pnpr-hosted-e2e"],
        }),
        Some(&npmrc(pnpr, Some(token))),
    );
    project.write_file(
        "index.js",
        &format!("module.exports = {};\n", json!(format!("{name}@{version}"))),
    );
    project
}

fn set_version(project: &Project, name: &str, version: &str) {
    let mut pkg: Value = serde_json::from_str(&project.read_file("package.json")).expect("json");
    pkg["version"] = json!(version);
    project.write_file("package.json", &pkg.to_string());
    project.write_file(
        "index.js",
        &format!("module.exports = {};\n", json!(format!("{name}@{version}"))),
    );
}

/// `@scope/name` → `@scope%2fname`.
fn enc(name: &str) -> String {
    name.replace('/', "%2f")
}

async fn packument(http: &Http, pnpr: &Pnpr, name: &str) -> Value {
    let r = http.get(&format!("{}{}", pnpr.url, enc(name))).await;
    r.assert_status(200);
    r.json()
}

fn sri(bytes: &[u8]) -> String {
    format!(
        "sha512-{}",
        base64::engine::general_purpose::STANDARD.encode(Sha512::digest(bytes))
    )
}

/// What `npm publish` sends, for raw-HTTP tests.
fn publish_body(name: &str, version: &str, tarball: &[u8]) -> Value {
    let bare = name.rsplit('/').next().unwrap_or(name);
    let file = format!("{bare}-{version}.tgz");
    json!({
        "_id": name,
        "name": name,
        "dist-tags": { "latest": version },
        "versions": { version: {
            "name": name, "version": version,
            "dist": { "integrity": sri(tarball), "tarball": format!("http://127.0.0.1:1/{name}/-/{file}") }
        } },
        "_attachments": { format!("{name}-{version}.tgz"): {
            "content_type": "application/octet-stream",
            "data": base64::engine::general_purpose::STANDARD.encode(tarball),
            "length": tarball.len()
        } }
    })
}

#[tokio::test]
async fn npm_publishes_and_npm_and_pnpm_install_it() {
    let pnpr = Pnpr::start(&config(""), &[]);
    let http = Http::new();
    let alice = add_user(&http, &pnpr, "alice").await;
    let scoped = "@acme/greet";

    let pkg = package(&pnpr, &alice, scoped, "1.0.0");
    pkg.npm(&["publish", "--access", "public"]).assert_success();
    let plain = package(&pnpr, &alice, "pnpr-plain-greet", "1.0.0");
    plain.npm(&["publish"]).assert_success();

    let doc = packument(&http, &pnpr, scoped).await;
    assert_eq!(doc["_id"], scoped);
    assert!(doc["_rev"].as_str().is_some_and(|r| r.starts_with("1-")));
    assert_eq!(doc["dist-tags"]["latest"], "1.0.0");
    assert_eq!(doc["maintainers"][0]["name"], "alice");
    for key in ["created", "modified", "1.0.0"] {
        assert!(doc["time"][key].is_string(), "time.{key} missing: {doc}");
    }
    let dist = &doc["versions"]["1.0.0"]["dist"];
    let tarball = dist["tarball"].as_str().expect("tarball");
    assert_eq!(
        tarball,
        format!("{}@acme/greet/-/greet-1.0.0.tgz", pnpr.url)
    );
    let t = http.get(tarball).await;
    t.assert_status(200);
    assert_eq!(sri(&t.body), dist["integrity"].as_str().expect("integrity"));

    // Abbreviated form and revalidation.
    let url = format!("{}{}", pnpr.url, enc(scoped));
    let accept = [("accept", "application/vnd.npm.install-v1+json")];
    let r = http.send("GET", &url, &accept, None).await;
    r.assert_status(200);
    assert_eq!(
        r.header("content-type"),
        Some("application/vnd.npm.install-v1+json")
    );
    assert!(r.json()["versions"]["1.0.0"]["dist"]["integrity"].is_string());
    let etag = r.header("etag").expect("etag").to_string();
    let r = http
        .send("GET", &url, &[accept[0], ("if-none-match", &etag)], None)
        .await;
    r.assert_status(304);

    // Consumers: npm and pnpm 12 install it and node can require it.
    let consumer = Project::new(
        &json!({"name": "consumer", "version": "1.0.0", "private": true,
                "dependencies": {scoped: "^1.0.0", "pnpr-plain-greet": "1.0.0"}}),
        Some(&npmrc(&pnpr, None)),
    );
    consumer.npm(&["install"]).assert_success();
    let out = consumer.node(&[
        "-e",
        "console.log(require('@acme/greet'), require('pnpr-plain-greet'))",
    ]);
    out.assert_success();
    assert!(
        out.stdout
            .contains("@acme/greet@1.0.0 pnpr-plain-greet@1.0.0"),
        "{out}"
    );

    let consumer = Project::new(
        &json!({"name": "consumer", "version": "1.0.0", "private": true,
                "dependencies": {scoped: "^1.0.0"}}),
        Some(&npmrc(&pnpr, None)),
    );
    consumer.write_file("pnpm-workspace.yaml", "minimumReleaseAge: 0\n");
    consumer.pnpm12(&["install"]).assert_success();
    consumer.node_require(scoped).assert_success();

    // Republishing is refused, by npm itself and by the server.
    let again = pkg.npm(&["publish", "--access", "public"]);
    again.assert_failure();
    assert!(
        again
            .combined()
            .contains("cannot publish over the previously published versions: 1.0.0"),
        "{again}"
    );
    let r = http
        .put_json(
            &url,
            &publish_body(scoped, "1.0.0", b"other bytes"),
            Some(&alice),
        )
        .await;
    r.assert_status(409);
    assert_eq!(
        r.json()["error"],
        "You cannot publish over the previously published versions: 1.0.0."
    );
}

#[tokio::test]
async fn publish_is_authorized_and_verified() {
    let pnpr = Pnpr::start(&config("max_body_size: 1mb\n"), &[]);
    let http = Http::new();
    let alice = add_user(&http, &pnpr, "alice").await;
    let url = format!("{}raw-pkg", pnpr.url);
    let body = publish_body("raw-pkg", "1.0.0", b"tarball");

    http.put_json(&url, &body, None).await.assert_status(401);

    let mut bad = body.clone();
    bad["versions"]["1.0.0"]["dist"]["integrity"] = json!(sri(b"something else"));
    let r = http.put_json(&url, &bad, Some(&alice)).await;
    r.assert_status(400);
    assert!(r.json()["error"]
        .as_str()
        .expect("error")
        .contains("integrity"));
    http.get(&url).await.assert_status(404);

    // Read-only tokens never publish.
    let r = http
        .send(
            "POST",
            &format!("{}-/npm/v1/tokens", pnpr.url),
            &[
                ("content-type", "application/json"),
                ("authorization", &format!("Bearer {alice}")),
            ],
            Some(
                json!({"password": "alice-pw", "readonly": true})
                    .to_string()
                    .into_bytes(),
            ),
        )
        .await;
    r.assert_status(200);
    let readonly = r.json()["token"].as_str().expect("token").to_string();
    http.put_json(&url, &body, Some(&readonly))
        .await
        .assert_status(403);

    // Over max_body_size: 413 with an npm-style JSON error.
    let big = publish_body("raw-pkg", "1.0.0", &vec![7u8; 1024 * 1024]);
    let r = http.put_json(&url, &big, Some(&alice)).await;
    r.assert_status(413);
    assert!(r.json()["error"].is_string());

    http.put_json(&url, &body, Some(&alice))
        .await
        .assert_status(201);
    assert_eq!(
        packument(&http, &pnpr, "raw-pkg").await["versions"]["1.0.0"]["_npmUser"]["name"],
        "alice"
    );
}

#[tokio::test]
async fn dist_tags_deprecate_owners_and_unpublish_through_npm() {
    let pnpr = Pnpr::start(&config(""), &[]);
    let http = Http::new();
    let alice = add_user(&http, &pnpr, "alice").await;
    let bob = add_user(&http, &pnpr, "bob").await;
    let name = "pnpr-lifecycle";
    let pkg = package(&pnpr, &alice, name, "1.0.0");
    pkg.npm(&["publish"]).assert_success();
    set_version(&pkg, name, "1.1.0");
    pkg.npm(&["publish"]).assert_success();

    let view = pkg.npm(&["view", name, "dist-tags.latest"]);
    view.assert_success();
    assert_eq!(view.stdout.trim(), "1.1.0", "{view}");

    // dist-tag add / ls / rm
    pkg.npm(&["dist-tag", "add", &format!("{name}@1.0.0"), "stable"])
        .assert_success();
    let ls = pkg.npm(&["dist-tag", "ls", name]);
    ls.assert_success();
    assert!(
        ls.stdout.contains("stable: 1.0.0") && ls.stdout.contains("latest: 1.1.0"),
        "{ls}"
    );
    pkg.npm(&["dist-tag", "rm", name, "stable"])
        .assert_success();
    let ls = pkg.npm(&["dist-tag", "ls", name]);
    assert!(!ls.stdout.contains("stable"), "{ls}");

    // deprecate: the warning shows on install; undeprecate removes it.
    pkg.npm(&["deprecate", &format!("{name}@1.0.0"), "use 1.1.0 instead"])
        .assert_success();
    let consumer = Project::new(
        &json!({"name": "consumer", "version": "1.0.0", "private": true,
                "dependencies": {name: "1.0.0"}}),
        Some(&npmrc(&pnpr, None)),
    );
    let out = consumer.npm(&["install"]);
    out.assert_success();
    assert!(out.combined().contains("use 1.1.0 instead"), "{out}");
    pkg.npm(&["deprecate", &format!("{name}@1.0.0"), ""])
        .assert_success();
    let doc = packument(&http, &pnpr, name).await;
    assert!(
        doc["versions"]["1.0.0"].get("deprecated").is_none(),
        "{doc}"
    );

    // owners: alice (the owner) adds bob, then removes herself; bob owns
    // the package from then on.
    let ls = pkg.npm(&["owner", "ls", name]);
    ls.assert_success();
    assert!(ls.stdout.contains("alice"), "{ls}");
    let as_bob = package(&pnpr, &bob, name, "1.1.0");
    pkg.npm(&["owner", "add", "bob", name]).assert_success();
    let ls = pkg.npm(&["owner", "ls", name]);
    assert!(
        ls.stdout.contains("alice") && ls.stdout.contains("bob"),
        "{ls}"
    );
    pkg.npm(&["owner", "rm", "alice", name]).assert_success();
    let doc = packument(&http, &pnpr, name).await;
    assert_eq!(doc["maintainers"], json!([{"name": "bob", "email": ""}]));

    // search
    let s = pkg.npm(&["search", "pnpr-lifecycle"]);
    s.assert_success();
    assert!(s.stdout.contains(name), "{s}");

    // unpublish one version, then the whole package (as the new owner).
    as_bob
        .npm(&["unpublish", &format!("{name}@1.1.0")])
        .assert_success();
    let doc = packument(&http, &pnpr, name).await;
    let versions: Vec<&String> = doc["versions"]
        .as_object()
        .expect("versions")
        .keys()
        .collect();
    assert_eq!(versions, vec!["1.0.0"]);
    assert_eq!(doc["dist-tags"]["latest"], "1.0.0");
    http.get(&format!("{}{name}/-/{name}-1.1.0.tgz", pnpr.url))
        .await
        .assert_status(404);
    as_bob.npm(&["unpublish", name, "--force"]).assert_success();
    http.get(&format!("{}{name}", pnpr.url))
        .await
        .assert_status(404);
}

#[tokio::test]
async fn a_hosted_name_never_comes_from_an_uplink_and_cannot_shadow_one() {
    let mock = RegistryMock::start();
    let pnpr = Pnpr::start(
        &format!(
            "auth:\n  htpasswd:\n    file: ./htpasswd\nuplinks:\n  mock:\n    url: {}\npackages:\n  '**':\n    access: $all\n    publish: $authenticated\n    proxy: mock\n",
            mock.url
        ),
        &[],
    );
    let http = Http::new();
    let alice = add_user(&http, &pnpr, "alice").await;

    // The uplink serves this name: a first publish would shadow it.
    let r = http
        .put_json(
            &format!("{}@pnpm.e2e%2ffoo", pnpr.url),
            &publish_body("@pnpm.e2e/foo", "999.0.0", b"evil"),
            Some(&alice),
        )
        .await;
    r.assert_status(403);
    let doc = packument(&http, &pnpr, "@pnpm.e2e/foo").await;
    assert!(doc["versions"].get("999.0.0").is_none());

    // A name the uplink does not know is claimed by its first publish.
    http.put_json(
        &format!("{}@pnpm.e2e%2fmine", pnpr.url),
        &publish_body("@pnpm.e2e/mine", "1.0.0", b"mine"),
        Some(&alice),
    )
    .await
    .assert_status(201);
    let doc = packument(&http, &pnpr, "@pnpm.e2e/mine").await;
    assert_eq!(doc["versions"]["1.0.0"]["_npmUser"]["name"], "alice");

    // search covers hosted packages and packages cached from the uplink.
    packument(&http, &pnpr, "@pnpm.e2e/pkg-with-1-dep").await;
    let r = http
        .get(&format!("{}-/v1/search?text=pnpm.e2e&size=100", pnpr.url))
        .await;
    r.assert_status(200);
    let found: Vec<String> = r.json()["objects"]
        .as_array()
        .expect("objects")
        .iter()
        .map(|o| {
            o["package"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    for want in [
        "@pnpm.e2e/mine",
        "@pnpm.e2e/pkg-with-1-dep",
        "@pnpm.e2e/foo",
    ] {
        assert!(found.iter().any(|n| n == want), "{want} not in {found:?}");
    }
}

#[tokio::test]
async fn concurrent_npm_publishes_of_one_package_both_land() {
    let pnpr = Pnpr::start(&config(""), &[]);
    let http = Http::new();
    let alice = add_user(&http, &pnpr, "alice").await;
    let name = "pnpr-concurrent";
    package(&pnpr, &alice, name, "1.0.0")
        .npm(&["publish"])
        .assert_success();
    let a = package(&pnpr, &alice, name, "2.0.0");
    let b = package(&pnpr, &alice, name, "3.0.0");
    let (ra, rb) = std::thread::scope(|s| {
        let ta = s.spawn(|| a.npm(&["publish", "--tag", "next-a"]));
        let tb = s.spawn(|| b.npm(&["publish", "--tag", "next-b"]));
        (ta.join().expect("thread a"), tb.join().expect("thread b"))
    });
    ra.assert_success();
    rb.assert_success();
    let doc = packument(&http, &pnpr, name).await;
    let mut versions: Vec<&String> = doc["versions"]
        .as_object()
        .expect("versions")
        .keys()
        .collect();
    versions.sort();
    assert_eq!(versions, vec!["1.0.0", "2.0.0", "3.0.0"]);
    assert_eq!(doc["dist-tags"]["next-a"], "2.0.0");
    assert_eq!(doc["dist-tags"]["next-b"], "3.0.0");
    assert_eq!(doc["dist-tags"]["latest"], "1.0.0");
}

/// Every version listed in the packument has a tarball whose bytes match
/// its integrity; returns the versions.
async fn assert_consistent(http: &Http, pnpr: &Pnpr, name: &str) -> Vec<String> {
    let r = http.get(&format!("{}{name}", pnpr.url)).await;
    if r.status == 404 {
        return Vec::new();
    }
    r.assert_status(200);
    let doc = r.json();
    let mut versions = Vec::new();
    for (v, m) in doc["versions"].as_object().expect("versions") {
        let dist = &m["dist"];
        let t = http.get(dist["tarball"].as_str().expect("tarball")).await;
        t.assert_status(200);
        assert_eq!(
            sri(&t.body),
            dist["integrity"].as_str().expect("integrity"),
            "{name}@{v}: tarball bytes do not match the integrity"
        );
        versions.push(v.clone());
    }
    versions
}

#[tokio::test]
async fn a_publish_killed_mid_flight_leaves_old_or_new_state() {
    let mut pnpr = Pnpr::start(&config("max_body_size: 100mb\n"), &[]);
    let mut http = Http::new();
    let alice = add_user(&http, &pnpr, "alice").await;
    let name = "pnpr-crash";
    let url = format!("{}{name}", pnpr.url);
    let raw = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client");

    let mut landed = 0;
    for (i, delay_ms) in [5u64, 40, 120, 300, 700].into_iter().enumerate() {
        let version = format!("1.0.{i}");
        let body = serde_json::to_vec(&publish_body(
            name,
            &version,
            &noise(30 << 20, i as u64 + 1),
        ))
        .expect("body");
        let client = raw.clone();
        let target = url.clone();
        let token = alice.clone();
        let upload = tokio::spawn(async move {
            client
                .put(&target)
                .header("content-type", "application/json")
                .header("authorization", format!("Bearer {token}"))
                .body(body)
                .send()
                .await
                .map(|r| r.status().as_u16())
        });
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        pnpr.kill_hard();
        let status = upload.await.expect("upload task");
        pnpr.restart();
        // A fresh client: pooled connections died with the old process.
        http = Http::new();
        let versions = assert_consistent(&http, &pnpr, name).await;
        if versions.contains(&version) {
            landed += 1;
        } else {
            assert!(
                !matches!(status, Ok(201)),
                "publish of {version} answered 201 but did not survive the crash"
            );
        }
    }

    // Nothing half-written: every tarball row names an existing blob.
    let db = rusqlite::Connection::open(pnpr.data_dir().join("hosted.sqlite")).expect("db");
    let mut stmt = db.prepare("SELECT sha512 FROM tarballs").expect("query");
    let hexes: Vec<String> = stmt
        .query_map([], |r| r.get(0))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("rows");
    for hex in &hexes {
        let path = pnpr
            .data_dir()
            .join("hosted-tarballs/sha512")
            .join(&hex[..2])
            .join(&hex[2..]);
        let bytes = std::fs::read(&path).expect("blob of a row exists");
        assert_eq!(hex::encode(Sha512::digest(&bytes)), *hex);
    }

    // And the store still takes publishes afterwards.
    let started = Instant::now();
    let r = http
        .put_json(
            &url,
            &publish_body(name, "2.0.0", &noise(1 << 20, 99)),
            Some(&alice),
        )
        .await;
    r.assert_status(201);
    let versions = assert_consistent(&http, &pnpr, name).await;
    assert!(versions.contains(&"2.0.0".to_string()));
    eprintln!(
        "crash test: {landed} of 5 killed publishes landed; final publish took {:?}",
        started.elapsed()
    );
}
