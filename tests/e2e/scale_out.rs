//! Several pnpr nodes on one PostgreSQL (issue 15, first slice): users and
//! tokens live in the shared database, so a login on one node works on the
//! other and a revocation on one holds on the other at once; two nodes
//! started together against an empty database both come up (migrations
//! under the advisory lock); the database password never reaches a log;
//! `pnpr copy` moves an embedded deployment's users and tokens over.

// One test binary for every multi-node test: they share the harness and
// run two at a time instead of one binary after another.
#[path = "scale_out/blobs.rs"]
mod blobs;
#[path = "scale_out/grants.rs"]
mod grants;
#[path = "scale_out/hosted.rs"]
mod hosted;
#[path = "scale_out/install.rs"]
mod install;
#[path = "scale_out/mirror.rs"]
mod mirror;
#[path = "scale_out/tls.rs"]
mod tls;

use pnpr_e2e::postgres::Postgres;
use pnpr_e2e::{Http, Pnpr, Project};

/// A node on the shared database; the URL comes in through `${VAR}`
/// substitution, as an operator would pass the password.
fn start_node(url: &str) -> Pnpr {
    Pnpr::start(
        "database: ${PNPR_TEST_DATABASE}\npackages:\n  '**':\n    access: $authenticated\n",
        &[("PNPR_TEST_DATABASE", url)],
    )
}

#[tokio::test]
async fn users_and_tokens_are_shared_across_nodes() {
    let pg = Postgres::start();
    let url = pg.create_database("pnpr");

    // Both nodes start at the same time against the empty database.
    let (a, b) = {
        let (ua, ub) = (url.clone(), url.clone());
        let ta = std::thread::spawn(move || start_node(&ua));
        let tb = std::thread::spawn(move || start_node(&ub));
        (ta.join().expect("node A"), tb.join().expect("node B"))
    };
    // Two components, one migration each (auth, hosted): each applied
    // exactly once between the two nodes.
    for component in ["auth", "hosted"] {
        let line = format!("component=\"{component}\"");
        let applied = [&a, &b]
            .iter()
            .flat_map(|n| n.logs().lines().map(str::to_owned).collect::<Vec<_>>())
            .filter(|l| l.contains("migration applied") && l.contains(&line))
            .count();
        assert_eq!(
            applied,
            1,
            "the {component} schema must be applied exactly once:\n--- A ---\n{}\n--- B ---\n{}",
            a.logs(),
            b.logs()
        );
    }

    // A registers alice through the npm login call; B knows her token.
    let http = Http::new();
    let token = pnpr_e2e::add_user(&http, &a, "alice").await;
    let who = http.get_auth(&format!("{}-/whoami", b.url), &token).await;
    who.assert_status(200);
    assert_eq!(who.json()["username"], "alice");
    // And her password: a second token, minted on B with npm's call.
    let created = http
        .post_json(
            &format!("{}-/npm/v1/tokens", b.url),
            &serde_json::json!({"password": "alice-pw", "readonly": false, "cidr_whitelist": []}),
            Some(&token),
        )
        .await;
    assert_eq!(created.status, 200, "{}", created.text());
    let second = created.json()["token"].as_str().expect("token").to_string();
    http.get_auth(&format!("{}-/whoami", a.url), &second)
        .await
        .assert_status(200);

    // The real npm CLI against B: whoami, then logout (revokes the token).
    let host_b = b.url.trim_start_matches("http:");
    let npmrc = format!("registry={}\n{host_b}:_authToken={token}\n", b.url);
    let project = Project::new(
        &serde_json::json!({"name": "t", "version": "1.0.0"}),
        Some(&npmrc),
    );
    let out = project.npm(&["whoami"]);
    out.assert_success();
    assert_eq!(out.stdout.trim(), "alice");
    project.npm(&["logout"]).assert_success();
    // Revoked on B: refused on A by the very next request.
    http.get_auth(&format!("{}-/whoami", a.url), &token)
        .await
        .assert_status(401);
    http.get_auth(&format!("{}-/whoami", b.url), &token)
        .await
        .assert_status(401);
    // The other token is untouched on both.
    for node in [&a, &b] {
        http.get_auth(&format!("{}-/whoami", node.url), &second)
            .await
            .assert_status(200);
    }

    // A name taken on A cannot be registered again on B.
    let r = http
        .put_json(
            &format!("{}-/user/org.couchdb.user:alice", b.url),
            &serde_json::json!({"name": "alice", "password": "not-alice"}),
            None,
        )
        .await;
    assert_eq!(r.status, 401, "{}", r.text());

    // A third node on the migrated database applies nothing.
    let c = start_node(&url);
    assert!(!c.logs().contains("migration applied"), "{}", c.logs());
    http.get_auth(&format!("{}-/whoami", c.url), &second)
        .await
        .assert_status(200);

    for (name, node) in [("A", &a), ("B", &b), ("C", &c)] {
        let logs = node.logs();
        assert!(
            !logs.contains(&pg.password),
            "node {name} logged the database password:\n{logs}"
        );
        assert!(logs.contains("users and tokens in PostgreSQL"), "{logs}");
    }
}

#[test]
fn a_refused_password_stops_startup_without_echoing_it() {
    let pg = Postgres::start();
    pg.create_database("pnpr");
    let wrong = format!("wrong-{}", pg.password);
    let url = format!(
        "postgres://{}:{wrong}@127.0.0.1:{}/pnpr",
        pnpr_e2e::postgres::USER,
        pg.port
    );
    let failure = Pnpr::try_start(
        "database: ${PNPR_TEST_DATABASE}\n",
        &[("PNPR_TEST_DATABASE", &url)],
    )
    .expect_err("a wrong database password must stop startup");
    assert!(
        failure.logs.contains("password authentication failed"),
        "{}",
        failure.logs
    );
    assert!(!failure.logs.contains(&wrong), "{}", failure.logs);
    assert!(!failure.logs.contains(&pg.password), "{}", failure.logs);
}

/// `pnpr copy` with the node's config (now naming `database:`) and data dir.
fn run_copy(node: &Pnpr, url: &str) -> pnpr_e2e::Output {
    let mut cmd = std::process::Command::new(pnpr_e2e::pnpr::binary_path());
    cmd.arg("--config")
        .arg(&node.config_path)
        .arg("--data-dir")
        .arg(&node.data_dir)
        .arg("copy")
        .env_clear()
        .env("PNPR_TEST_DATABASE", url);
    pnpr_e2e::proc::run(&mut cmd, std::time::Duration::from_secs(60))
}

#[tokio::test]
async fn copy_moves_an_embedded_deployment_into_postgres() {
    let pg = Postgres::start();
    let url = pg.create_database("pnpr");
    let http = Http::new();
    // An embedded deployment with one user, her login token and a package
    // she published (the variable is unused until the config names
    // `database:`).
    let policy = "packages:\n  '**':\n    access: $authenticated\n    publish: $authenticated\n";
    let mut node = Pnpr::start(policy, &[("PNPR_TEST_DATABASE", &url)]);
    let token = pnpr_e2e::add_user(&http, &node, "carol").await;
    let integrity =
        pnpr_e2e::publish::publish(&http, &node.url, &token, "pnpr-copied", "1.0.0", &[]).await;
    node.stop();

    node.write_config(&format!("database: ${{PNPR_TEST_DATABASE}}\n{policy}"));
    let first = run_copy(&node, &url);
    first.assert_success();
    assert_eq!(
        first.stdout.trim(),
        "users: 1 copied, 0 already there; tokens: 1 copied, 0 skipped\n\
         hosted packages: 1 copied, 0 already there"
    );
    // Idempotent: a second run finds everything in place.
    let again = run_copy(&node, &url);
    again.assert_success();
    assert_eq!(
        again.stdout.trim(),
        "users: 0 copied, 1 already there; tokens: 0 copied, 1 skipped\n\
         hosted packages: 0 copied, 1 already there"
    );
    assert!(
        !first.combined().contains(&pg.password),
        "{}",
        first.combined()
    );

    // The old node, now on PostgreSQL, and a fresh one both know carol: her
    // token, and her password (a new token minted with it).
    node.restart();
    assert!(node.logs().contains("users and tokens in PostgreSQL"));
    // A new client: the old one may hold a connection to the stopped process.
    let http = Http::new();
    let fresh = start_node(&url);
    for n in [&node, &fresh] {
        let who = http.get_auth(&format!("{}-/whoami", n.url), &token).await;
        who.assert_status(200);
        assert_eq!(who.json()["username"], "carol");
    }
    let created = http
        .post_json(
            &format!("{}-/npm/v1/tokens", fresh.url),
            &serde_json::json!({"password": "carol-pw", "readonly": true, "cidr_whitelist": []}),
            Some(&token),
        )
        .await;
    assert_eq!(created.status, 200, "{}", created.text());
    // Her package came along: both nodes serve its document, and the old
    // node (which holds the tarball) its bytes.
    for n in [&node, &fresh] {
        let doc = http
            .get_auth(&format!("{}pnpr-copied", n.url), &token)
            .await;
        doc.assert_status(200);
        assert_eq!(
            doc.json()["versions"]["1.0.0"]["dist"]["integrity"],
            integrity
        );
        assert_eq!(doc.json()["maintainers"][0]["name"], "carol");
    }
    let tgz = http
        .get_auth(
            &format!("{}pnpr-copied/-/pnpr-copied-1.0.0.tgz", node.url),
            &token,
        )
        .await;
    tgz.assert_status(200);
    assert_eq!(pnpr_e2e::publish::sri(&tgz.body), integrity);
}

#[tokio::test]
async fn a_database_outage_fails_closed_and_recovers() {
    let mut pg = Postgres::start();
    let url = pg.create_database("pnpr");
    let node = start_node(&url);
    let http = Http::new();
    let token = pnpr_e2e::add_user(&http, &node, "dave").await;
    let whoami = format!("{}-/whoami", node.url);
    http.get_auth(&whoami, &token).await.assert_status(200);

    // Database gone: the token identifies nobody (never a stale "yes"), and
    // the node itself keeps answering.
    pg.stop();
    let started = std::time::Instant::now();
    http.get_auth(&whoami, &token).await.assert_status(401);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "a refused connection must not hang the request: {:?}",
        started.elapsed()
    );
    http.get(&format!("{}-/ping", node.url))
        .await
        .assert_status(200);
    // The log is read from the server's stderr by another thread: the line
    // may land a moment after the answer did.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !node.logs().contains("token lookup failed") && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let logs = node.logs();
    assert!(logs.contains("token lookup failed"), "{logs}");

    // Back: the pool reconnects on the next call.
    pg.start_again();
    http.get_auth(&whoami, &token).await.assert_status(200);
    assert!(!node.logs().contains(&pg.password), "{}", node.logs());
}
