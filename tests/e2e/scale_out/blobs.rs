//! Blobs in an S3-compatible bucket (issue 15, RFC 0009 "Blobs in S3"):
//! nodes sharing one bucket (a real s3rver) serve each other's proxied
//! tarballs, never serve bucket bytes that do not match their key, and a
//! hosted publish is acknowledged only once its tarball is in the bucket.

use std::path::Path;
use std::time::{Duration, Instant};

use pnpr_e2e::s3::{S3rver, ACCESS_KEY, SECRET_KEY};
use pnpr_e2e::{Http, Pnpr, Project, RegistryMock};
use sha2::Digest;

const PKG: &str = "@pnpm.e2e/pkg-with-1-dep";
const DEP: &str = "@pnpm.e2e/dep-of-pkg-with-1-dep";
const FOO: &str = "@pnpm.e2e/foo";
const PREFIX: &str = "e2e/";

/// A node with `blobs:` in front of `uplink` (if any); keys come from the
/// environment, as an operator passes them.
fn blob_node(s3: &S3rver, uplink: Option<&RegistryMock>) -> Pnpr {
    let (uplinks, proxy) = match uplink {
        Some(m) => (
            format!("uplinks:\n  mock:\n    url: {}\n", m.url),
            "    proxy: mock\n",
        ),
        None => (String::new(), ""),
    };
    let config = format!(
        "{uplinks}packages:\n  '**':\n    access: $all\n    publish: $authenticated\n{proxy}\
         blobs:\n  s3:\n    bucket: {}\n    endpoint: ${{PNPR_TEST_S3}}\n    region: us-east-1\n    prefix: {PREFIX}\n",
        s3.bucket
    );
    Pnpr::start(
        &config,
        &[
            ("PNPR_TEST_S3", &s3.endpoint),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
        ],
    )
}

fn count_files(dir: &Path) -> usize {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| {
            if e.path().is_dir() {
                count_files(&e.path())
            } else {
                1
            }
        })
        .sum()
}

fn local_tarballs(node: &Pnpr) -> usize {
    count_files(&node.data_dir.join(".pnpr-cache/tarballs/public"))
}

/// The tarball URL path and SHA-512 hex of `name@version` per the uplink.
async fn dist(
    http: &Http,
    mock: &RegistryMock,
    name: &str,
    version: &str,
) -> (String, String, Vec<u8>) {
    let doc = http
        .get(&format!("{}{}", mock.url, name.replace('/', "%2f")))
        .await
        .json();
    let tarball = doc["versions"][version]["dist"]["tarball"]
        .as_str()
        .expect("tarball url")
        .to_owned();
    let bytes = http.get(&tarball).await;
    bytes.assert_status(200);
    let hex = hex::encode(sha2::Sha512::digest(&bytes.body));
    let path = tarball
        .strip_prefix(mock.url.as_str())
        .expect("tarball under the uplink")
        .to_owned();
    (path, hex, bytes.body.to_vec())
}

fn tarball_key(hex: &str) -> String {
    format!("{PREFIX}tarballs/public/sha512/{}/{}", &hex[..2], &hex[2..])
}

/// Polls until the bucket holds exactly `want` under `key`; panics with
/// the bucket's keys and `node`'s log otherwise.
async fn wait_object(http: &Http, s3: &S3rver, node: &Pnpr, key: &str, want: &[u8]) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let got = s3.object(key).await;
        if got.as_deref() == Some(want) {
            return;
        }
        if Instant::now() > deadline {
            panic!(
                "bucket object {key}: {:?} bytes\nkeys: {:?}\n--- node ---\n{}\n--- s3rver ---\n{}",
                got.map(|b| b.len()),
                s3.keys(http, "").await,
                node.logs(),
                s3.logs()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn nodes_share_proxied_tarballs_through_the_bucket_and_never_serve_bad_bytes() {
    let s3 = S3rver::start("pnpr");
    let mock = RegistryMock::start();
    let http = Http::new();
    let a = blob_node(&s3, Some(&mock));
    let b = blob_node(&s3, Some(&mock));

    // A installs through its uplink: every tarball lands in the bucket.
    let project = Project::with_dependencies(&[(PKG, "100.0.0"), (FOO, "100.0.0")]);
    project
        .npm(&["install", "--registry", &a.url])
        .assert_success();
    let pkg = dist(&http, &mock, PKG, "100.0.0").await;
    let installed: serde_json::Value =
        serde_json::from_str(&project.read_file(&format!("node_modules/{DEP}/package.json")))
            .expect("installed package.json");
    let dep_version = installed["version"].as_str().expect("version").to_owned();
    let dep = dist(&http, &mock, DEP, &dep_version).await;
    let foo = dist(&http, &mock, FOO, "100.0.0").await;
    for (_, hex, bytes) in [&pkg, &dep, &foo] {
        wait_object(&http, &s3, &a, &tarball_key(hex), bytes).await;
    }
    let keys = s3.keys(&http, PREFIX).await;
    assert!(
        keys.iter()
            .all(|k| k.starts_with("e2e/tarballs/public/sha512/")),
        "{keys:?}"
    );

    // B learns the packuments (metadata is per node), nothing else.
    for name in [PKG, DEP, FOO] {
        http.get(&format!("{}{}", b.url, name.replace('/', "%2f")))
            .await
            .assert_status(200);
    }
    assert_eq!(local_tarballs(&b), 0);

    // A corrupt object with the uplink up: B fetches the real bytes from
    // the uplink, serves those, and they overwrite the bad object.
    let garbage = b"not the tarball these bytes claim to be".to_vec();
    http.send(
        "PUT",
        &s3.object_url(&tarball_key(&foo.1)),
        &[],
        Some(garbage.clone()),
    )
    .await
    .assert_status(200);
    let r = http.get(&format!("{}{}", b.url, foo.0)).await;
    r.assert_status(200);
    assert_eq!(
        r.body.as_ref(),
        foo.2.as_slice(),
        "corrupt bucket bytes served"
    );
    wait_object(&http, &s3, &b, &tarball_key(&foo.1), &foo.2).await;

    // Uplink gone, and one more object corrupted.
    http.send(
        "PUT",
        &s3.object_url(&tarball_key(&dep.1)),
        &[],
        Some(garbage.clone()),
    )
    .await
    .assert_status(200);
    drop(mock);

    // B serves A's tarball from the bucket, byte-identical.
    let started = Instant::now();
    let r = http.get(&format!("{}{}", b.url, pkg.0)).await;
    eprintln!(
        "B's GET of a tarball only the bucket has: {:?}",
        started.elapsed()
    );
    r.assert_status(200);
    assert_eq!(r.body.as_ref(), pkg.2.as_slice());
    assert!(local_tarballs(&b) >= 2, "B did not keep its bucket copy");

    // The corrupt one is an error, never its bytes.
    let r = http.get(&format!("{}{}", b.url, dep.0)).await;
    assert!(r.status >= 500, "{} {}", r.status, r.text());
    assert!(!r
        .body
        .windows(garbage.len())
        .any(|w| w == garbage.as_slice()));
    assert!(
        b.logs().contains("does not match its key"),
        "the refusal is logged:\n{}",
        b.logs()
    );

    // No node logs the secret key.
    for node in [&a, &b] {
        assert!(!node.logs().contains(SECRET_KEY), "{}", node.logs());
    }
}

#[tokio::test]
async fn a_hosted_publish_is_acknowledged_only_once_its_tarball_is_in_the_bucket() {
    let mut s3 = S3rver::start("pnpr");
    let a = blob_node(&s3, None);
    let http = Http::new();
    let token = pnpr_e2e::add_user(&http, &a, "alice").await;

    let integrity = pnpr_e2e::publish::publish(
        &http,
        &a.url,
        &token,
        "blob-pkg",
        "1.0.0",
        &[("a.js", b"1")],
    )
    .await;
    // Acknowledged, so already in the bucket: no waiting.
    let tgz = pnpr_e2e::publish::tarball("blob-pkg", "1.0.0", &[("a.js", b"1")]);
    assert_eq!(pnpr_e2e::publish::sri(&tgz), integrity);
    let hex = hex::encode(sha2::Sha512::digest(&tgz));
    let key = format!("{PREFIX}hosted/sha512/{}/{}", &hex[..2], &hex[2..]);
    let r = http.get(&s3.object_url(&key)).await;
    r.assert_status(200);
    assert_eq!(r.body.as_ref(), tgz.as_slice());

    // Bucket down: the publish fails with a clear 5xx, promptly, and leaves
    // nothing: no version, no local file, no temp file.
    s3.stop();
    let hosted_dir = a.data_dir.join("hosted-tarballs");
    let files_before = count_files(&hosted_dir.join("sha512"));
    let started = Instant::now();
    let tgz2 = pnpr_e2e::publish::tarball("blob-pkg", "1.0.1", &[("a.js", b"2")]);
    let body = publish_body(&a, "blob-pkg", "1.0.1", &tgz2);
    let r = http
        .put_json(&format!("{}blob-pkg", a.url), &body, Some(&token))
        .await;
    eprintln!(
        "publish with the bucket down: {} after {:?}",
        r.status,
        started.elapsed()
    );
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(
        r.text().contains("blob storage unavailable"),
        "{}",
        r.text()
    );
    assert!(!r.text().contains(SECRET_KEY), "{}", r.text());
    assert!(
        started.elapsed() < Duration::from_secs(40),
        "{:?}",
        started.elapsed()
    );
    let doc = http.get(&format!("{}blob-pkg", a.url)).await.json();
    assert!(doc["versions"].get("1.0.1").is_none(), "{doc}");
    assert_eq!(doc["dist-tags"]["latest"], "1.0.0");
    assert_eq!(count_files(&hosted_dir.join("sha512")), files_before);
    assert_eq!(count_files(&hosted_dir.join("tmp")), 0);
    // The published version is still served from this node's disk.
    let r = http
        .get(&format!("{}blob-pkg/-/blob-pkg-1.0.0.tgz", a.url))
        .await;
    r.assert_status(200);
    assert_eq!(r.body.as_ref(), tgz.as_slice());

    // Bucket back: the same publish goes through.
    s3.start_again();
    let r = http
        .put_json(&format!("{}blob-pkg", a.url), &body, Some(&token))
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let hex2 = hex::encode(sha2::Sha512::digest(&tgz2));
    let key2 = format!("{PREFIX}hosted/sha512/{}/{}", &hex2[..2], &hex2[2..]);
    http.get(&s3.object_url(&key2)).await.assert_status(200);
    assert!(!a.logs().contains(SECRET_KEY), "{}", a.logs());
}

/// What `npm publish` sends for `name@version` with `tgz`.
fn publish_body(node: &Pnpr, name: &str, version: &str, tgz: &[u8]) -> serde_json::Value {
    use base64::Engine;
    let file = format!("{name}-{version}.tgz");
    serde_json::json!({
        "_id": name, "name": name,
        "dist-tags": {"latest": version},
        "versions": {version: {"name": name, "version": version,
            "dist": {"integrity": pnpr_e2e::publish::sri(tgz),
                     "tarball": format!("{}{name}/-/{file}", node.url)}}},
        "_attachments": {file: {"content_type": "application/octet-stream",
            "data": base64::engine::general_purpose::STANDARD.encode(tgz), "length": tgz.len()}}
    })
}

#[test]
fn a_bucket_without_keys_refuses_to_start_and_names_the_variables() {
    let config = "blobs:\n  s3:\n    bucket: b\n    endpoint: http://127.0.0.1:9\n";
    let failure = Pnpr::try_start(config, &[]).expect_err("must not start without keys");
    assert!(
        failure.logs.contains("AWS_ACCESS_KEY_ID"),
        "{}",
        failure.logs
    );
}

/// `pnpr copy` with the node's config (now naming `blobs:`) and data dir.
fn run_copy(node: &Pnpr, s3: &S3rver) -> pnpr_e2e::Output {
    let mut cmd = std::process::Command::new(pnpr_e2e::pnpr::binary_path());
    cmd.arg("--config")
        .arg(&node.config_path)
        .arg("--data-dir")
        .arg(&node.data_dir)
        .arg("copy")
        .env_clear()
        .env("PNPR_TEST_S3", &s3.endpoint)
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY);
    pnpr_e2e::proc::run(&mut cmd, Duration::from_secs(60))
}

#[tokio::test]
async fn copy_uploads_an_embedded_deployments_tarballs_once() {
    let s3 = S3rver::start("pnpr");
    let mock = RegistryMock::start();
    let http = Http::new();
    // An embedded node: one proxied tarball and one hosted one on its disk.
    let open = format!(
        "uplinks:\n  mock:\n    url: {}\npackages:\n  '**':\n    access: $all\n    publish: $authenticated\n    proxy: mock\n",
        mock.url
    );
    let mut node = Pnpr::start(&open, &[]);
    let foo = dist(&http, &mock, FOO, "100.0.0").await;
    http.get(&format!("{}{}", node.url, foo.0))
        .await
        .assert_status(200);
    let token = pnpr_e2e::add_user(&http, &node, "erin").await;
    pnpr_e2e::publish::publish(
        &http,
        &node.url,
        &token,
        "copied-pkg",
        "1.0.0",
        &[("a.js", b"1")],
    )
    .await;
    node.stop();
    assert!(s3.keys(&http, "").await.is_empty());

    node.write_config(&format!(
        "{open}blobs:\n  s3:\n    bucket: {}\n    endpoint: ${{PNPR_TEST_S3}}\n    prefix: {PREFIX}\n",
        s3.bucket
    ));
    let first = run_copy(&node, &s3);
    first.assert_success();
    assert_eq!(
        first.stdout.trim(),
        "blobs: 2 uploaded, 0 already in the bucket, 0 damaged on this disk (not copied)"
    );
    let tgz = pnpr_e2e::publish::tarball("copied-pkg", "1.0.0", &[("a.js", b"1")]);
    let hex = hex::encode(sha2::Sha512::digest(&tgz));
    let hosted_key = format!("{PREFIX}hosted/sha512/{}/{}", &hex[..2], &hex[2..]);
    let r = http.get(&s3.object_url(&hosted_key)).await;
    r.assert_status(200);
    assert_eq!(r.body.as_ref(), tgz.as_slice());
    let r = http.get(&s3.object_url(&tarball_key(&foo.1))).await;
    r.assert_status(200);
    assert_eq!(r.body.as_ref(), foo.2.as_slice());

    // Idempotent: a second run finds both.
    let again = run_copy(&node, &s3);
    again.assert_success();
    assert_eq!(
        again.stdout.trim(),
        "blobs: 0 uploaded, 2 already in the bucket, 0 damaged on this disk (not copied)"
    );
    assert!(
        !first.combined().contains(SECRET_KEY),
        "{}",
        first.combined()
    );
}

/// `corp` is an access-bearing uplink (group `team`: alice) holding a
/// credential for registry-mock's `@private/*`; both nodes share `secret:`
/// (so a private namespace has one name on every node) and the bucket.
fn corp_node(s3: &S3rver, mock: &RegistryMock, token: &str) -> Pnpr {
    let config = format!(
        "secret: 0123456789abcdef0123456789abcdef\ngroups:\n  team: [alice]\n\
         uplinks:\n  mock:\n    url: {u}\n  corp:\n    url: {u}\n    access: team\n    auth:\n      type: bearer\n      token_env: CORP_TOKEN\n\
         packages:\n  '@private/*':\n    access: $authenticated\n    proxy: corp\n  '**':\n    access: $all\n    publish: $authenticated\n    proxy: mock\n\
         blobs:\n  s3:\n    bucket: {b}\n    endpoint: ${{PNPR_TEST_S3}}\n    prefix: {PREFIX}\n",
        u = mock.url,
        b = s3.bucket
    );
    Pnpr::start(
        &config,
        &[
            ("CORP_TOKEN", token),
            ("PNPR_TEST_S3", &s3.endpoint),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
        ],
    )
}

#[tokio::test]
async fn a_private_uplinks_tarball_in_the_bucket_reaches_only_its_admitted_users() {
    let s3 = S3rver::start("pnpr");
    let mock = RegistryMock::start();
    let token = mock.private_token().await;
    let http = Http::new();
    let a = corp_node(&s3, &mock, &token);
    let b = corp_node(&s3, &mock, &token);
    let mut users = Vec::new();
    for node in [&a, &b] {
        let alice = pnpr_e2e::add_user(&http, node, "alice").await;
        let bob = pnpr_e2e::add_user(&http, node, "bob").await;
        users.push((alice, bob));
    }
    let tgz_path = "~corp/@private/foo/-/foo-1.0.0.tgz";

    // A fetches the private tarball for alice: it lands in the bucket, in
    // the uplink's own namespace, not the public one.
    let on_a = http
        .get_auth(&format!("{}{tgz_path}", a.url), &users[0].0)
        .await;
    on_a.assert_status(200);
    let hex = hex::encode(sha2::Sha512::digest(&on_a.body));
    let deadline = Instant::now() + Duration::from_secs(15);
    let key = loop {
        let keys = s3.keys(&http, PREFIX).await;
        if let Some(k) = keys.iter().find(|k| k.ends_with(&hex[2..])) {
            break k.clone();
        }
        assert!(Instant::now() < deadline, "not in the bucket: {keys:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(key.starts_with("e2e/tarballs/"), "{key}");
    assert!(!key.starts_with("e2e/tarballs/public/"), "{key}");

    // B learns the packument for alice, then the uplink goes away.
    http.get_auth(&format!("{}~corp/@private%2ffoo", b.url), &users[1].0)
        .await
        .assert_status(200);
    drop(mock);

    // Attack: anonymous and bob (not in team) on B get no bytes, through
    // the private endpoint or the shared mirror.
    let anon = http.get(&format!("{}{tgz_path}", b.url)).await;
    assert_eq!(anon.status, 401, "{}", anon.text());
    let bob = http
        .get_auth(&format!("{}{tgz_path}", b.url), &users[1].1)
        .await;
    assert_eq!(bob.status, 403, "{}", bob.text());
    for r in [&anon, &bob] {
        assert!(r.body.as_ref() != on_a.body.as_ref());
    }
    let mirror = http
        .get_auth(
            &format!("{}@private/foo/-/foo-1.0.0.tgz", b.url),
            &users[1].1,
        )
        .await;
    assert_ne!(mirror.status, 200, "{}", mirror.text());
    assert!(mirror.body.as_ref() != on_a.body.as_ref());

    // Control: alice on B gets it from the bucket, byte-identical.
    let alice = http
        .get_auth(&format!("{}{tgz_path}", b.url), &users[1].0)
        .await;
    alice.assert_status(200);
    assert_eq!(alice.body, on_a.body);
}
