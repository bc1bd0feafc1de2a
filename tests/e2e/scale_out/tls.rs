//! TLS to PostgreSQL (`database: ...?sslmode=...&sslrootcert=...`): a node
//! that verifies the server's certificate against the operator's CA starts
//! and serves, with its pool and the hosted watcher's `LISTEN` session on a
//! server that accepts TLS logins only; a CA that did not sign the server,
//! `sslmode=require` against a server without TLS and `sslmode=disable`
//! against a TLS-only server each stop startup with the reason. The
//! database password reaches no log line.

use std::time::{Duration, Instant};

use pnpr_e2e::postgres::{Postgres, Tls};
use pnpr_e2e::{Http, Pnpr};

use super::start_node;

/// The node's config: the URL (with the password) only via `${VAR}`.
fn try_node(url: &str) -> Result<Pnpr, pnpr_e2e::pnpr::StartFailure> {
    Pnpr::try_start(
        "database: ${PNPR_TEST_DATABASE}\npackages:\n  '**':\n    access: $authenticated\n",
        &[("PNPR_TEST_DATABASE", url)],
    )
}

/// Startup must fail, saying `reason`, without the password.
#[track_caller]
fn refused(pg: &Postgres, url: &str, reason: &str) {
    let failure = try_node(url).expect_err("startup must fail");
    assert!(
        failure.logs.contains(reason),
        "want {reason:?}:\n{}",
        failure.logs
    );
    assert!(!failure.logs.contains(&pg.password), "{}", failure.logs);
}

/// Waits until the node's hosted watcher holds its `LISTEN` session.
fn wait_listening(node: &Pnpr) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !node.logs().contains("listening for hosted package changes") {
        assert!(
            Instant::now() < deadline,
            "no LISTEN session:\n{}",
            node.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn verify_full_serves_and_a_foreign_ca_or_plain_login_is_refused() {
    let pg = Postgres::start_tls(Tls { hostssl_only: true });
    let url = pg.create_database("pnpr");
    let ca = pg.ca_cert();
    let verified = format!("{url}?sslmode=verify-full&sslrootcert={}", ca.display());

    let a = start_node(&verified);
    wait_listening(&a);
    // `require` encrypts without checking the certificate: it connects too
    // (no CA given), and shares A's users.
    let b = start_node(&format!("{url}?sslmode=require"));
    wait_listening(&b);
    let http = Http::new();
    let token = pnpr_e2e::add_user(&http, &a, "erin").await;
    for node in [&a, &b] {
        let who = http
            .get_auth(&format!("{}-/whoami", node.url), &token)
            .await;
        who.assert_status(200);
        assert_eq!(who.json()["username"], "erin");
    }
    // verify-full by name too (the certificate names localhost), and
    // verify-ca (chain only).
    let by_name = verified.replace("@127.0.0.1:", "@localhost:");
    drop(start_node(&by_name));
    drop(start_node(&verified.replace("verify-full", "verify-ca")));

    // Attack: a server whose certificate the trusted CA did not sign.
    let foreign = format!(
        "{url}?sslmode=verify-full&sslrootcert={}",
        pg.other_ca_cert().display()
    );
    refused(&pg, &foreign, "certificate not trusted");
    let foreign_ca = foreign.replace("verify-full", "verify-ca");
    refused(&pg, &foreign_ca, "certificate not trusted");
    // The system roots do not know the throwaway CA either.
    refused(
        &pg,
        &format!("{url}?sslmode=verify-full"),
        "certificate not trusted",
    );
    // Plain TCP to a TLS-only server: the server itself says no.
    refused(&pg, &format!("{url}?sslmode=disable"), "no encryption");

    for node in [&a, &b] {
        let logs = node.logs();
        assert!(!logs.contains(&pg.password), "{logs}");
        assert!(!logs.contains("notices interrupted"), "{logs}");
    }
}

#[test]
fn require_against_a_server_without_tls_is_refused() {
    let pg = Postgres::start();
    let url = pg.create_database("pnpr");
    refused(
        &pg,
        &format!("{url}?sslmode=require"),
        "server does not support TLS",
    );
    refused(
        &pg,
        &format!("{url}?sslmode=verify-full"),
        "server does not support TLS",
    );
    // Control: libpq's default (`prefer`) falls back to plain TCP here.
    let node = try_node(&url).expect("prefer connects without TLS");
    assert!(!node.logs().contains(&pg.password), "{}", node.logs());
}
