//! Several pnpr nodes on one PostgreSQL (issue 15): the install grants and
//! the public set of `POST /v1/install`'s forwarded path (spec §4.4–4.6)
//! live in the shared database. A grant earned through node A lets its
//! holder through on node B with no access probe (control); another user is
//! not let through on it, B asks the upstream for her (attack), and a
//! credential the upstream refuses is refused whoever holds a grant; a
//! grant cleared on A (the name registered afresh) is gone on B at the next
//! request; a package classified public on A is served from the public set
//! on B; the schema is applied once by nodes starting together. With the
//! shared bucket as well, a hosted tarball no row references any more
//! (a version or a package unpublished on either node) leaves the bucket,
//! while one still referenced stays and is served.

use std::process::Command;

use pnpr_e2e::postgres::{Postgres, USER};
use pnpr_e2e::publish::publish;
use pnpr_e2e::s3::S3rver;
use pnpr_e2e::{add_user, install_body, post_install, Http, InstallAnswer, Pnpr, RegistryMock};

const PRIVATE: &[(&str, &str)] = &[("@private/foo", "*")];
const PUBLIC: &[(&str, &str)] = &[("@pnpm.e2e/pkg-with-1-dep", "^100.0.0")];

fn node_config(mock: &RegistryMock) -> String {
    format!(
        "database: ${{PNPR_TEST_DATABASE}}\nroutes:\n  public:\n    - registry: {u}\npackages:\n  '**':\n    access: $all\n    publish: $authenticated\n",
        u = mock.url
    )
}

fn start_node(url: &str, config: &str) -> Pnpr {
    Pnpr::start(config, &[("PNPR_TEST_DATABASE", url)])
}

/// A forwarded install of `deps` from the fixture registry (no release-age
/// rule: its packages carry arbitrary dates).
async fn install(
    node: &Pnpr,
    mock: &RegistryMock,
    deps: &[(&str, &str)],
    token: Option<&str>,
    cred: &serde_json::Value,
) -> InstallAnswer {
    let mut body = install_body(&mock.url, deps, &[], cred.clone());
    body.as_object_mut().map(|o| o.remove("minimumReleaseAge"));
    post_install(&node.url, &body, token).await
}

/// `install` that must succeed; returns the answer's
/// `x-pnpr-upstream-authority` (how each package was let through: the
/// probes it counts are the upstream requests made for access checks).
async fn served(
    node: &Pnpr,
    mock: &RegistryMock,
    deps: &[(&str, &str)],
    token: Option<&str>,
    cred: &serde_json::Value,
) -> String {
    let a = install(node, mock, deps, token, cred).await;
    assert_eq!(a.status, 200, "{}", a.text);
    authority(&a).to_owned()
}

fn authority(a: &InstallAnswer) -> &str {
    a.header_value("x-pnpr-upstream-authority").unwrap_or("")
}

/// Runs `sql` in the shared database as the operator would with psql.
fn psql(pg: &Postgres, sql: &str) {
    let bin = std::env::var_os("PNPR_PG_BIN")
        .map_or_else(|| "psql".into(), |d| std::path::Path::new(&d).join("psql"));
    let out = Command::new(bin)
        .args(["-h", "127.0.0.1", "-p", &pg.port.to_string(), "-U", USER])
        .args(["-d", "pnpr", "-v", "ON_ERROR_STOP=1", "-qAt", "-c", sql])
        .env("PGPASSWORD", &pg.password)
        .output()
        .expect("psql runs");
    assert!(
        out.status.success(),
        "psql: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The `grants` migration is applied exactly once between `nodes`.
fn applied_once(nodes: &[&Pnpr]) {
    let applied = nodes
        .iter()
        .flat_map(|n| n.logs().lines().map(str::to_owned).collect::<Vec<_>>())
        .filter(|l| l.contains("migration applied") && l.contains("component=\"grants\""))
        .count();
    assert_eq!(applied, 1, "the grants schema must be applied exactly once");
}

/// Two nodes on one database, the fixture registry as `routes.public`, and
/// the registry credential every caller forwards.
struct Fleet {
    pg: Postgres,
    mock: RegistryMock,
    a: Pnpr,
    b: Pnpr,
    cred: serde_json::Value,
}

async fn fleet() -> Fleet {
    let pg = Postgres::start();
    let url = pg.create_database("pnpr");
    let mock = RegistryMock::start();
    let upstream_token = mock.login("foo", "bar").await;
    let config = node_config(&mock);
    // Both nodes start at the same time against the empty database.
    let (a, b) = std::thread::scope(|s| {
        let ta = s.spawn(|| start_node(&url, &config));
        let tb = s.spawn(|| start_node(&url, &config));
        (ta.join().expect("node A"), tb.join().expect("node B"))
    });
    applied_once(&[&a, &b]);
    let cred = serde_json::json!({
        format!("//127.0.0.1:{}/", mock.port): format!("Bearer {upstream_token}")
    });
    Fleet {
        pg,
        mock,
        a,
        b,
        cred,
    }
}

#[tokio::test]
async fn grants_earned_on_one_node_hold_and_clear_on_every_node() {
    let Fleet {
        pg,
        mock,
        a,
        b,
        cred,
    } = fleet().await;
    let http = Http::new();
    let alice = add_user(&http, &a, "alice").await;
    let bob = add_user(&http, &b, "bob").await;
    let carol = add_user(&http, &b, "carol").await;

    // Alice fetches her private package through A: a fresh fetch with her
    // upstream credential, which earns her a grant (in the shared table).
    let own = served(&a, &mock, PRIVATE, Some(&alice), &cred).await;
    assert_eq!(
        own,
        "public=0 fresh=1 grant=0 probed-public=0 probed-grant=0"
    );
    // Bob warms B's files the same way (B never saw alice's fetch).
    let warm = served(&b, &mock, PRIVATE, Some(&bob), &cred).await;
    assert!(warm.contains("fresh=1"), "{warm}");

    // Control: alice's grant from A lets her through on B with no access
    // probe (the resolve still fetches the metadata with her credential).
    let by_grant = served(&b, &mock, PRIVATE, Some(&alice), &cred).await;
    assert_eq!(
        by_grant,
        "public=0 fresh=0 grant=1 probed-public=0 probed-grant=0"
    );
    // Attack: carol holds no grant, and alice's does not vouch for her: B
    // asks the upstream (anonymous probe, then her credential).
    let probed = served(&b, &mock, PRIVATE, Some(&carol), &cred).await;
    assert_eq!(
        probed,
        "public=0 fresh=0 grant=0 probed-public=0 probed-grant=1"
    );
    // Attack: a grant never carries a credential the upstream refuses.
    let refused = serde_json::json!({ format!("//127.0.0.1:{}/", mock.port): "Bearer nope" });
    for who in [&alice, &carol] {
        let denied = install(&b, &mock, PRIVATE, Some(who), &refused).await;
        assert!(matches!(denied.status, 403 | 500), "{}", denied.text);
        assert!(denied.header.is_null());
    }

    // Alice's account is retired by hand and the name registered afresh on
    // A: A drops her grants, and on B the newcomer is asked about afresh.
    psql(&pg, "DELETE FROM pnpr_users WHERE name = 'alice'");
    let newcomer = add_user(&http, &a, "alice").await;
    let afresh = served(&b, &mock, PRIVATE, Some(&newcomer), &cred).await;
    assert_eq!(
        afresh,
        "public=0 fresh=0 grant=0 probed-public=0 probed-grant=1"
    );
    // Control: bob's grant (earned on B) is untouched, and holds on A too.
    for node in [&a, &b] {
        let kept = served(node, &mock, PRIVATE, Some(&bob), &cred).await;
        assert!(kept.contains("grant=1 "), "{kept}");
    }
}

#[tokio::test]
async fn a_public_classification_on_one_node_serves_every_node() {
    let Fleet {
        pg: _pg,
        mock,
        a,
        b,
        cred,
    } = fleet().await;
    let http = Http::new();
    let bob = add_user(&http, &a, "bob").await;
    let carol = add_user(&http, &b, "carol").await;
    // Both nodes hold the files (anonymous installs with no credential are
    // served on pnpr's own policy and classify nothing).
    for node in [&a, &b] {
        let none = served(node, &mock, PUBLIC, None, &serde_json::json!({})).await;
        assert_eq!(
            none,
            "public=0 fresh=0 grant=0 probed-public=0 probed-grant=0"
        );
    }
    // Bob's install on A classifies both packages public by anonymous probes.
    let probed = served(&a, &mock, PUBLIC, Some(&bob), &cred).await;
    assert_eq!(
        probed,
        "public=0 fresh=0 grant=0 probed-public=2 probed-grant=0"
    );
    // Carol on B is served from the shared public set: no probe.
    let shared = served(&b, &mock, PUBLIC, Some(&carol), &cred).await;
    assert_eq!(
        shared,
        "public=2 fresh=0 grant=0 probed-public=0 probed-grant=0"
    );
}

/// The bucket key of a hosted tarball with SRI `integrity`.
fn hosted_key(integrity: &str) -> String {
    use base64::Engine;
    let b64 = integrity.strip_prefix("sha512-").expect("sha512 integrity");
    let digest = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("base64");
    let hex = hex::encode(digest);
    format!("gc-e2e/hosted/sha512/{}/{}", &hex[..2], &hex[2..])
}

#[tokio::test]
async fn an_unreferenced_hosted_tarball_leaves_the_bucket() {
    let pg = Postgres::start();
    let url = pg.create_database("pnpr");
    let s3 = S3rver::start("pnpr-gc");
    let (a, b) = (
        crate::hosted::shared_node(&url, &s3, "gc-e2e/"),
        crate::hosted::shared_node(&url, &s3, "gc-e2e/"),
    );
    let http = Http::new();
    let alice = add_user(&http, &a, "alice").await;
    let name = "pnpr-gc-greet";
    let old = publish(&http, &a.url, &alice, name, "1.0.0", &[]).await;
    let new = publish(&http, &a.url, &alice, name, "1.1.0", &[]).await;
    let (old_key, new_key) = (hosted_key(&old), hosted_key(&new));
    let keys = s3.keys(&http, "gc-e2e/hosted/").await;
    assert!(
        keys.contains(&old_key) && keys.contains(&new_key),
        "{keys:?}"
    );

    // 1.0.0 is unpublished through B (npm's way: the document without it,
    // at its revision): its tarball leaves the bucket, 1.1.0's stays and
    // is still served by both nodes.
    let doc = http.get(&format!("{}{name}", b.url)).await.json();
    let mut edited = doc.clone();
    edited["versions"]
        .as_object_mut()
        .expect("versions")
        .remove("1.0.0");
    edited["dist-tags"] = serde_json::json!({"latest": "1.1.0"});
    let rev = doc["_rev"].as_str().expect("_rev");
    let put = http
        .put_json(
            &format!("{}{name}/-rev/{rev}", b.url),
            &edited,
            Some(&alice),
        )
        .await;
    assert!(matches!(put.status, 200 | 201), "{}", put.text());
    let keys = s3.keys(&http, "gc-e2e/hosted/").await;
    assert!(!keys.contains(&old_key), "{keys:?}");
    assert!(keys.contains(&new_key), "{keys:?}");
    for node in [&a, &b] {
        http.get(&format!("{}{name}/-/{name}-1.1.0.tgz", node.url))
            .await
            .assert_status(200);
        http.get(&format!("{}{name}/-/{name}-1.0.0.tgz", node.url))
            .await
            .assert_status(404);
    }

    // The whole package unpublished through A: nothing of it is left.
    let doc = http.get(&format!("{}{name}", a.url)).await.json();
    let rev = doc["_rev"].as_str().expect("_rev");
    let auth = format!("Bearer {alice}");
    let gone = http
        .send(
            "DELETE",
            &format!("{}{name}/-rev/{rev}", a.url),
            &[("authorization", auth.as_str())],
            None,
        )
        .await;
    assert_eq!(gone.status, 200, "{}", gone.text());
    let keys = s3.keys(&http, "gc-e2e/hosted/").await;
    assert!(keys.is_empty(), "{keys:?}");
}
