//! The metadata mirror on the shared PostgreSQL (issue 15, RFC 0009): two
//! nodes on one database serve the same cached packuments, so a document
//! fetched (or revalidated) through one node is served by the other with
//! its uplink stopped; a private uplink namespace's row, fetched for an
//! admitted user on one node, is served by the other only to admitted
//! callers and never through the public namespace; a node without
//! `database:` keeps its rows in its own SQLite file.

use std::time::Duration;

use pnpr_e2e::postgres::Postgres;
use pnpr_e2e::{add_user, Http, Pnpr, RegistryMock};
use serde_json::Value;

/// Small enough to be stored inline (its served document is about 2 KB).
const SMALL: &str = "@pnpm.e2e/pkg-with-1-dep";
/// Large enough to pass `packument_in_memory` below: spilled, stored as
/// chunk rows, copied to the reading node's disk.
const LARGE: &str = "@pnpm.e2e/foo";

/// A node: the mirror (`mock`), corp's private uplink (same registry, with
/// a credential, open to `team`), one shared secret (so both nodes derive
/// corp's namespace alike), rows fresh for `maxage`.
fn config(mock: &RegistryMock, maxage: &str, database: bool) -> String {
    let db = if database {
        "database: ${PNPR_TEST_DATABASE}\n"
    } else {
        ""
    };
    format!(
        "{db}secret: 0123456789abcdef0123456789abcdef\nlimits:\n  packument_in_memory: 3kb\ngroups:\n  team: [alice]\nuplinks:\n  mock:\n    url: {u}\n    maxage: {maxage}\n  corp:\n    url: {u}\n    maxage: {maxage}\n    access: team\n    auth:\n      type: bearer\n      token_env: CORP_TOKEN\npackages:\n  '@private/*':\n    access: $authenticated\n    proxy: mock\n  '**':\n    access: $all\n    publish: $authenticated\n    proxy: mock\n",
        u = mock.url
    )
}

fn start_node(mock: &RegistryMock, maxage: &str, url: &str, corp_token: &str) -> Pnpr {
    Pnpr::start(
        &config(mock, maxage, true),
        &[("PNPR_TEST_DATABASE", url), ("CORP_TOKEN", corp_token)],
    )
}

fn encode(name: &str) -> String {
    name.replace('/', "%2f")
}

async fn packument(http: &Http, node: &Pnpr, name: &str) -> Value {
    let r = http.get(&format!("{}{}", node.url, encode(name))).await;
    assert_eq!(r.status, 200, "{name} on {}: {}", node.url, r.text());
    r.json()
}

/// What must agree between two nodes' renderings of one document (tarball
/// URLs differ: each node rewrites them onto itself).
fn facts(doc: &Value) -> (Value, Vec<(String, Value)>) {
    let versions = doc["versions"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(v, d)| (v.clone(), d["dist"]["integrity"].clone()))
                .collect()
        })
        .unwrap_or_default();
    (doc["dist-tags"].clone(), versions)
}

fn local_bodies(node: &Pnpr) -> usize {
    let dir = node.data_dir.join(".pnpr-cache/packuments-pg/bodies");
    std::fs::read_dir(dir).map_or(0, |d| d.count())
}

#[tokio::test]
async fn a_document_fetched_through_one_node_is_served_by_the_other() {
    let pg = Postgres::start();
    let url = pg.create_database("pnpr");
    let mock = RegistryMock::start();
    let (user, password) = RegistryMock::private_credentials();
    let corp_token = mock.login(user, password).await;
    let a = start_node(&mock, "10m", &url, &corp_token);
    let b = start_node(&mock, "10m", &url, &corp_token);
    for node in [&a, &b] {
        let logs = node.logs();
        assert!(
            logs.contains("metadata mirror rows in PostgreSQL"),
            "{logs}"
        );
        assert!(!logs.contains(&pg.password), "database password logged");
    }
    let applied = [&a, &b]
        .iter()
        .flat_map(|n| n.logs().lines().map(str::to_owned).collect::<Vec<_>>())
        .filter(|l| l.contains("migration applied") && l.contains("component=\"mirror\""))
        .count();
    assert_eq!(applied, 1, "the mirror schema is applied once");

    let http = Http::new();
    let alice = add_user(&http, &a, "alice").await;
    let bob = add_user(&http, &b, "bob").await;
    let corp = |node: &Pnpr| format!("{}~corp/@private%2ffoo", node.url);

    // Fetched through A: one small, one large document, and corp's private one.
    let small = packument(&http, &a, SMALL).await;
    let large = packument(&http, &a, LARGE).await;
    let private = http.get_auth(&corp(&a), &alice).await;
    private.assert_status(200);
    let private = private.json();

    // The uplink is gone: whatever B serves now, it read from the rows A stored.
    drop(mock);
    assert_eq!(facts(&packument(&http, &b, SMALL).await), facts(&small));
    assert_eq!(facts(&packument(&http, &b, LARGE).await), facts(&large));
    assert_eq!(local_bodies(&b), 1, "B copied the large body to its disk");
    let doc = packument(&http, &b, LARGE).await;
    let tarball = doc["versions"]["100.0.0"]["dist"]["tarball"]
        .as_str()
        .unwrap_or_default();
    assert!(tarball.starts_with(&b.url), "rewritten onto B: {tarball}");

    // Attack: corp's row on B, to callers corp's `access` does not admit,
    // and through the public namespace (which has no such row and no
    // uplink to ask).
    http.get(&corp(&b)).await.assert_status(401);
    http.get_auth(&corp(&b), &bob).await.assert_status(403);
    let public = http
        .get_auth(&format!("{}@private%2ffoo", b.url), &alice)
        .await;
    assert_ne!(public.status, 200, "corp's row leaked: {}", public.text());
    // Control: an admitted caller gets it, privately.
    let r = http.get_auth(&corp(&b), &alice).await;
    r.assert_status(200);
    assert_eq!(r.header("cache-control"), Some("private, no-store"));
    assert_eq!(facts(&r.json()), facts(&private));

    // `npm search` on B reads the shared rows too: A's public documents are
    // found, corp's private row never is (not even for an admitted user).
    let search = |text: &str| format!("{}-/v1/search?text={text}&size=50", b.url);
    let found = http.get_auth(&search("pkg-with-1-dep"), &alice).await;
    found.assert_status(200);
    let names = |v: &Value| -> Vec<String> {
        v["objects"]
            .as_array()
            .map(|o| {
                o.iter()
                    .filter_map(|x| x["package"]["name"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(names(&found.json()), [SMALL], "{}", found.text());
    let private = http.get_auth(&search("%40private"), &alice).await;
    private.assert_status(200);
    assert!(names(&private.json()).is_empty(), "{}", private.text());
}

#[tokio::test]
async fn a_revalidation_on_one_node_is_served_by_the_other() {
    let pg = Postgres::start();
    let url = pg.create_database("pnpr");
    let mock = RegistryMock::start();
    let token = mock.private_token().await;
    let a = start_node(&mock, "2s", &url, &token);
    let b = start_node(&mock, "2s", &url, &token);
    let http = Http::new();
    let name = "pnpr-mirror-shared";
    pnpr_e2e::publish(&http, &mock.url, &token, name, "1.0.0", &[]).await;

    // B stores 1.0.0 (and keeps its rendering while the row is fresh).
    let doc = packument(&http, &b, name).await;
    assert_eq!(doc["dist-tags"]["latest"], "1.0.0");
    pnpr_e2e::publish(&http, &mock.url, &token, name, "1.1.0", &[]).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    // The row is stale: A fetches again and replaces it.
    let doc = packument(&http, &a, name).await;
    assert_eq!(doc["dist-tags"]["latest"], "1.1.0");

    // With the uplink gone, B serves A's row, not its own older one.
    drop(mock);
    let doc = packument(&http, &b, name).await;
    assert_eq!(doc["dist-tags"]["latest"], "1.1.0");
    assert!(doc["versions"]["1.1.0"].is_object());
}

#[tokio::test]
async fn without_a_database_rows_stay_in_the_nodes_sqlite() {
    let mock = RegistryMock::start();
    let token = mock.private_token().await;
    let node = Pnpr::start(&config(&mock, "10m", false), &[("CORP_TOKEN", &token)]);
    let http = Http::new();
    packument(&http, &node, LARGE).await;
    assert!(!node.logs().contains("metadata mirror rows in PostgreSQL"));
    let cache = node.data_dir.join(".pnpr-cache");
    assert!(cache.join("metadata.sqlite").is_file());
    assert!(!cache.join("packuments-pg").exists());
    // The large body is an SQLite body file, as before.
    let files = std::fs::read_dir(cache.join("packuments"))
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
                .count()
        })
        .unwrap_or(0);
    assert_eq!(files, 1);
    // And it is served again from there with the uplink gone.
    drop(mock);
    packument(&http, &node, LARGE).await;
}
