//! Hosted packages on the shared PostgreSQL (issue 15, RFC 0009): two
//! nodes on one database act as one registry for publishes, dist-tags,
//! owners and unpublishes, each change served by the other node on its
//! next request; ownership is enforced by whichever node is asked; a node
//! killed with SIGKILL mid-publish leaves the other serving the old or the
//! new state, never a half-written version; with the shared bucket, pnpm
//! installs through one node what was just published on the other, past a
//! resolution that node had cached.

use std::time::Duration;

use base64::Engine;
use pnpr_e2e::postgres::Postgres;
use pnpr_e2e::publish::noise;
use pnpr_e2e::s3::{S3rver, ACCESS_KEY, SECRET_KEY};
use pnpr_e2e::{add_user, Http, Pnpr, Project};
use serde_json::{json, Value};
use sha2::{Digest, Sha512};

/// A node on the shared database. Hosted tarballs stay on the node that
/// received them (the blob bucket is another slice), so these tests read
/// documents across nodes and tarballs only where they were published.
fn start_node(url: &str) -> Pnpr {
    Pnpr::start(
        "database: ${PNPR_TEST_DATABASE}\nmax_body_size: 100mb\npackages:\n  '**':\n    access: $all\n    publish: $authenticated\n",
        &[("PNPR_TEST_DATABASE", url)],
    )
}

fn npmrc(node: &Pnpr, token: &str) -> String {
    let host = node.url.trim_start_matches("http:");
    format!("registry={}\n{host}:_authToken={token}\n", node.url)
}

/// A publishable package directory for `name@version`, speaking to `node`
/// as the owner of `token`.
fn package(node: &Pnpr, token: &str, name: &str, version: &str) -> Project {
    let project = Project::new(
        &json!({"name": name, "version": version, "main": "index.js"}),
        Some(&npmrc(node, token)),
    );
    project.write_file("index.js", &format!("module.exports = {:?};\n", version));
    project
}

fn set_version(project: &Project, version: &str) {
    let mut pkg: Value = serde_json::from_str(&project.read_file("package.json")).expect("json");
    pkg["version"] = json!(version);
    project.write_file("package.json", &pkg.to_string());
}

/// The same package directory, pointed at another node.
fn repoint(project: &Project, node: &Pnpr, token: &str) {
    project.write_file(".npmrc", &npmrc(node, token));
}

async fn packument(http: &Http, node: &Pnpr, name: &str) -> Value {
    let r = http.get(&format!("{}{name}", node.url)).await;
    r.assert_status(200);
    r.json()
}

fn versions(doc: &Value) -> Vec<String> {
    let mut v: Vec<String> = doc["versions"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    v.sort();
    v
}

fn sri(bytes: &[u8]) -> String {
    format!(
        "sha512-{}",
        base64::engine::general_purpose::STANDARD.encode(Sha512::digest(bytes))
    )
}

/// What `npm publish` sends, for raw-HTTP publishes.
fn publish_body(name: &str, version: &str, tarball: &[u8]) -> Value {
    let file = format!("{name}-{version}.tgz");
    json!({
        "_id": name,
        "name": name,
        "dist-tags": { "latest": version },
        "versions": { version: {
            "name": name, "version": version,
            "dist": { "integrity": sri(tarball), "tarball": format!("http://127.0.0.1:1/{name}/-/{file}") }
        } },
        "_attachments": { file: {
            "content_type": "application/octet-stream",
            "data": base64::engine::general_purpose::STANDARD.encode(tarball),
            "length": tarball.len()
        } }
    })
}

async fn raw_publish(http: &Http, node: &Pnpr, token: &str, name: &str, version: &str) -> u16 {
    let body = publish_body(name, version, format!("{name}@{version}").as_bytes());
    let r = http
        .put_json(&format!("{}{name}", node.url), &body, Some(token))
        .await;
    r.status
}

#[tokio::test]
async fn hosted_changes_on_one_node_are_served_by_the_other() {
    let pg = Postgres::start();
    let url = pg.create_database("pnpr");
    let (a, b) = (start_node(&url), start_node(&url));
    for node in [&a, &b] {
        assert!(
            node.logs().contains("hosted packages in PostgreSQL"),
            "{}",
            node.logs()
        );
    }
    let http = Http::new();
    let alice = add_user(&http, &a, "alice").await;
    let bob = add_user(&http, &b, "bob").await;
    let name = "pnpr-shared-greet";

    // A first publish on A: B serves it on its very next request.
    let pkg = package(&a, &alice, name, "1.0.0");
    pkg.npm(&["publish"]).assert_success();
    let doc = packument(&http, &b, name).await;
    assert_eq!(versions(&doc), ["1.0.0"]);
    assert_eq!(doc["maintainers"][0]["name"], "alice");

    // A second version on A: B's next request shows it and the new latest.
    set_version(&pkg, "1.1.0");
    pkg.npm(&["publish"]).assert_success();
    let doc = packument(&http, &b, name).await;
    assert_eq!(versions(&doc), ["1.0.0", "1.1.0"]);
    assert_eq!(doc["dist-tags"]["latest"], "1.1.0");
    // Abbreviated form (what installers ask for) as well.
    let r = http
        .send(
            "GET",
            &format!("{}{name}", b.url),
            &[("accept", "application/vnd.npm.install-v1+json")],
            None,
        )
        .await;
    r.assert_status(200);
    assert_eq!(r.json()["dist-tags"]["latest"], "1.1.0");

    // A dist-tag moved on B is served by A on its next request.
    repoint(&pkg, &b, &alice);
    pkg.npm(&["dist-tag", "add", &format!("{name}@1.0.0"), "stable"])
        .assert_success();
    let tags = http
        .get(&format!("{}-/package/{name}/dist-tags", a.url))
        .await;
    tags.assert_status(200);
    assert_eq!(tags.json()["stable"], "1.0.0");
    pkg.npm(&["dist-tag", "add", &format!("{name}@1.0.0"), "latest"])
        .assert_success();
    assert_eq!(
        packument(&http, &a, name).await["dist-tags"]["latest"],
        "1.0.0"
    );

    // Attack: bob is not a maintainer; neither node lets him publish.
    for node in [&a, &b] {
        let status = raw_publish(&http, node, &bob, name, "6.6.6").await;
        assert_eq!(status, 403, "bob published on {}", node.url);
    }
    // Control: alice, the owner, publishes through B; A serves it.
    set_version(&pkg, "1.2.0");
    pkg.npm(&["publish", "--tag", "next"]).assert_success();
    let doc = packument(&http, &a, name).await;
    assert_eq!(versions(&doc), ["1.0.0", "1.1.0", "1.2.0"]);
    assert_eq!(doc["dist-tags"]["next"], "1.2.0");

    // Owner added on A: B lets bob publish at once.
    repoint(&pkg, &a, &alice);
    pkg.npm(&["owner", "add", "bob", name]).assert_success();
    assert_eq!(raw_publish(&http, &b, &bob, name, "1.3.0").await, 201);
    let doc = packument(&http, &a, name).await;
    assert!(versions(&doc).contains(&"1.3.0".to_string()), "{doc}");
    let owners: Vec<&str> = doc["maintainers"]
        .as_array()
        .expect("maintainers")
        .iter()
        .filter_map(|m| m["name"].as_str())
        .collect();
    assert_eq!(owners, ["alice", "bob"]);
    // Owner removed on B: A refuses bob again.
    repoint(&pkg, &b, &alice);
    pkg.npm(&["owner", "rm", "bob", name]).assert_success();
    assert_eq!(raw_publish(&http, &a, &bob, name, "1.4.0").await, 403);

    // One version unpublished on B: gone from A's next answer.
    pkg.npm(&["unpublish", &format!("{name}@1.3.0")])
        .assert_success();
    let doc = packument(&http, &a, name).await;
    assert_eq!(versions(&doc), ["1.0.0", "1.1.0", "1.2.0"]);

    // The whole package unpublished on A: B answers 404 next, and the name
    // is free again (a new owner may claim it on B).
    repoint(&pkg, &a, &alice);
    pkg.npm(&["unpublish", name, "--force"]).assert_success();
    http.get(&format!("{}{name}", b.url))
        .await
        .assert_status(404);
    assert_eq!(raw_publish(&http, &b, &bob, name, "9.0.0").await, 201);
    let doc = packument(&http, &a, name).await;
    assert_eq!(versions(&doc), ["9.0.0"]);
    assert_eq!(doc["maintainers"][0]["name"], "bob");

    // Tarballs are served by the node that holds them, bytes intact.
    let t = http
        .get(&format!("{}{name}/-/{name}-9.0.0.tgz", b.url))
        .await;
    t.assert_status(200);
    assert_eq!(
        sri(&t.body),
        doc["versions"]["9.0.0"]["dist"]["integrity"]
            .as_str()
            .expect("integrity")
    );
    for node in [&a, &b] {
        assert!(!node.logs().contains(&pg.password), "{}", node.logs());
    }
}

/// Every version a node lists has its tarball on the node that published
/// it (`holder`), with the listed integrity.
async fn assert_tarballs(http: &Http, holder: &Pnpr, doc: &Value) {
    let name = doc["name"].as_str().expect("name");
    for (v, m) in doc["versions"].as_object().expect("versions") {
        let t = http
            .get(&format!("{}{name}/-/{name}-{v}.tgz", holder.url))
            .await;
        t.assert_status(200);
        assert_eq!(
            sri(&t.body),
            m["dist"]["integrity"].as_str().expect("integrity"),
            "{name}@{v}: tarball bytes do not match"
        );
    }
}

/// A raw HTTP/1.1 `PUT` whose body trickles in (256 KiB every 50 ms);
/// the answer's status if one came.
async fn slow_put(port: u16, path: String, token: String, body: Vec<u8>) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let head = format!(
        "PUT {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\ncontent-type: application/json\r\nauthorization: Bearer {token}\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await.ok()?;
    for chunk in body.chunks(256 << 10) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        conn.write_all(chunk).await.ok()?;
    }
    let mut answer = vec![0u8; 64];
    let n = conn.read(&mut answer).await.ok()?;
    std::str::from_utf8(&answer[..n])
        .ok()?
        .split(' ')
        .nth(1)?
        .parse()
        .ok()
}

#[tokio::test]
async fn a_node_killed_mid_publish_leaves_the_other_serving_old_or_new_state() {
    let pg = Postgres::start();
    let url = pg.create_database("pnpr");
    let (mut a, b) = (start_node(&url), start_node(&url));
    let mut http = Http::new();
    let alice = add_user(&http, &a, "alice").await;
    let name = "pnpr-crash-shared";
    assert_eq!(
        http.put_json(
            &format!("{}{name}", a.url),
            &publish_body(name, "0.1.0", &noise(1 << 16, 7)),
            Some(&alice),
        )
        .await
        .status,
        201
    );
    let raw = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client");

    let mut landed = 0;
    // Early kills land in the upload, later ones in decoding, hashing, the
    // blob write or the transaction; the last body is sent slowly and the
    // node is killed while it is still arriving.
    let plans: [(u64, bool); 6] = [
        (5, false),
        (60, false),
        (200, false),
        (500, false),
        (1200, false),
        (700, true),
    ];
    for (i, (delay_ms, slow)) in plans.into_iter().enumerate() {
        let version = format!("1.0.{i}");
        let before = versions(&packument(&http, &b, name).await);
        let body = serde_json::to_vec(&publish_body(
            name,
            &version,
            &noise(24 << 20, i as u64 + 1),
        ))
        .expect("body");
        let target = format!("{}{name}", a.url);
        let upload = if slow {
            tokio::spawn(slow_put(a.port, format!("/{name}"), alice.clone(), body))
        } else {
            let (client, token) = (raw.clone(), alice.clone());
            tokio::spawn(async move {
                client
                    .put(&target)
                    .header("content-type", "application/json")
                    .header("authorization", format!("Bearer {token}"))
                    .body(body)
                    .send()
                    .await
                    .ok()
                    .map(|r| r.status().as_u16())
            })
        };
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        a.kill_hard();
        let status = upload.await.expect("upload task");

        // B, untouched, serves the old state or the new one.
        let after = versions(&packument(&http, &b, name).await);
        let mut with_new = before.clone();
        with_new.push(version.clone());
        with_new.sort();
        assert!(
            after == before || after == with_new,
            "killed publish of {version}: B serves {after:?} (before: {before:?})"
        );
        if after == with_new {
            landed += 1;
        } else {
            assert!(
                status != Some(201),
                "publish of {version} answered 201 but did not survive the crash"
            );
        }
        if slow {
            assert_eq!(after, before, "a body still arriving cannot have landed");
        }

        // A comes back and agrees with B; every listed tarball is intact.
        a.restart();
        http = Http::new();
        let doc = packument(&http, &a, name).await;
        assert_eq!(versions(&doc), after);
        assert_tarballs(&http, &a, &doc).await;
    }

    // A publish after the restarts works, and B serves it at once.
    let r = http
        .put_json(
            &format!("{}{name}", a.url),
            &publish_body(name, "2.0.0", &noise(1 << 20, 99)),
            Some(&alice),
        )
        .await;
    r.assert_status(201);
    let doc = packument(&http, &b, name).await;
    assert!(versions(&doc).contains(&"2.0.0".to_string()), "{doc}");
    assert_eq!(doc["dist-tags"]["latest"], "2.0.0");
    eprintln!("shared crash test: {landed} of 6 killed publishes landed");
}

/// A node on the shared database and the shared bucket (hosted tarballs
/// then reach every node), its objects under `prefix`.
pub(crate) fn shared_node(url: &str, s3: &S3rver, prefix: &str) -> Pnpr {
    let config = format!(
        "database: ${{PNPR_TEST_DATABASE}}\npackages:\n  '**':\n    access: $all\n    publish: $authenticated\n\
         blobs:\n  s3:\n    bucket: {}\n    endpoint: ${{PNPR_TEST_S3}}\n    region: us-east-1\n    prefix: {prefix}\n",
        s3.bucket
    );
    Pnpr::start(
        &config,
        &[
            ("PNPR_TEST_DATABASE", url),
            ("PNPR_TEST_S3", &s3.endpoint),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
        ],
    )
}

/// `pnpr_resolution_cache_lookups_total{result="hit"}` on `node`.
async fn resolution_hits(http: &Http, node: &Pnpr) -> f64 {
    let r = http.get(&format!("{}-/metrics", node.url)).await;
    r.assert_status(200);
    r.text()
        .lines()
        .filter(|l| l.starts_with("pnpr_resolution_cache_lookups_total{result=\"hit\"}"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A project depending on `deps` that takes versions published a moment
/// ago (pnpm's default `minimumReleaseAge` holds them back for a day).
fn consumer(deps: &[(&str, &str)]) -> Project {
    let project = Project::with_dependencies(deps);
    project.write_file("pnpm-workspace.yaml", "minimumReleaseAge: 0\n");
    project
}

/// The version of `name` a project installed.
fn installed(project: &Project, name: &str) -> String {
    let pkg: Value =
        serde_json::from_str(&project.read_file(&format!("node_modules/{name}/package.json")))
            .expect("installed package.json");
    pkg["version"].as_str().expect("version").to_owned()
}

#[tokio::test]
async fn pnpm_installs_through_b_what_a_just_published() {
    let pg = Postgres::start();
    let url = pg.create_database("pnpr");
    let s3 = S3rver::start("pnpr-hosted");
    let (a, b) = (
        shared_node(&url, &s3, "hosted-e2e/"),
        shared_node(&url, &s3, "hosted-e2e/"),
    );
    let http = Http::new();
    let alice = add_user(&http, &a, "alice").await;
    let name = "pnpr-fresh-greet";
    let deps = [(name, "^1.0.0")];

    // Published on A; pnpm 11.5.2 (`/v1/install`) installs it through B at
    // once, the tarball coming from the bucket.
    pnpr_e2e::publish::publish(&http, &a.url, &alice, name, "1.0.0", &[]).await;
    let first = consumer(&deps);
    first.pnpm11_install_through(&b.url).assert_success();
    assert_eq!(installed(&first, name), "1.0.0");
    // The same request again is answered from B's resolution cache.
    let hits = resolution_hits(&http, &b).await;
    let again = consumer(&deps);
    again.pnpm11_install_through(&b.url).assert_success();
    assert_eq!(installed(&again, name), "1.0.0");
    assert!(
        resolution_hits(&http, &b).await > hits,
        "the repeated install did not hit the resolution cache"
    );

    // A new version on A: the very same request on B resolves afresh (the
    // cached answer, still within its TTL, was dropped by A's notice).
    pnpr_e2e::publish::publish(&http, &a.url, &alice, name, "1.1.0", &[]).await;
    let after = consumer(&deps);
    after.pnpm11_install_through(&b.url).assert_success();
    assert_eq!(installed(&after, name), "1.1.0");
    // pnpm 12 through B as a plain registry agrees.
    let plain = consumer(&deps);
    plain
        .pnpm12(&["install", "--config.save=false", "--registry", &b.url])
        .assert_success();
    assert_eq!(installed(&plain, name), "1.1.0");

    // No gap for an install either: `/v1/install` posted to B the moment
    // A acknowledges a first publish (before the notice may have landed).
    for i in 0..5 {
        let fresh = format!("pnpr-instant-{i}");
        let integrity =
            pnpr_e2e::publish::publish(&http, &a.url, &alice, &fresh, "1.0.0", &[]).await;
        let mut body = pnpr_e2e::install_body(&b.url, &[(&fresh, "^1.0.0")], &[], json!({}));
        body["minimumReleaseAge"] = json!(0);
        let answer = pnpr_e2e::post_install(&b.url, &body, None).await;
        assert_eq!(answer.status, 200, "{fresh}: {}", answer.text);
        assert!(answer.text.contains(&integrity), "{fresh}: {}", answer.text);
    }
}
