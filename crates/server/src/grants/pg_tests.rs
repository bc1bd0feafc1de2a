//! The PostgreSQL backend against a real, throwaway PostgreSQL (the e2e
//! harness's cluster): the same checks as the SQLite backend, two "nodes"
//! (pools) on one database, the row cap, and an outage that denies.

use std::sync::Arc;
use std::time::Duration;

use pnpr_e2e::postgres::{Postgres, USER};
use pnpr_pg::{ConnectOptions, Pool, Secret};

use super::postgres::PgAccess;
use super::tests::{clear_user_only, exact_prefix, per_user, ttl_expiry, Reopen};
use super::AccessStore;

fn pool(pg: &Postgres, db: &str) -> Arc<Pool> {
    let options = ConnectOptions {
        host: "127.0.0.1".to_owned(),
        port: pg.port,
        user: USER.to_owned(),
        password: Some(Secret::new(pg.password.clone())),
        dbname: db.to_owned(),
        application_name: "pnpr-grants-test".to_owned(),
        tls: Default::default(),
    };
    Arc::new(Pool::connect(options, 1).expect("pool"))
}

/// A named backend check.
type Check = (&'static str, fn(Reopen));

/// Runs each check in a database of its own; every reopen is a new pool
/// (another node) on it.
#[test]
fn postgres_backend_keeps_every_rule_across_nodes() {
    let pg = Postgres::start();
    let checks: [Check; 4] = [
        ("per_user", per_user),
        ("exact_prefix", exact_prefix),
        ("ttl_expiry", ttl_expiry),
        ("clear_user_only", clear_user_only),
    ];
    for (db, check) in checks {
        pg.create_database(db);
        let open = |ttl: Option<Duration>| {
            let backend = PgAccess::open(pool(&pg, db)).expect("migrated");
            AccessStore::new(Box::new(backend), ttl)
        };
        check(&open);
    }
}

#[test]
fn postgres_tables_stay_near_their_cap_and_an_outage_denies() {
    let mut pg = Postgres::start();
    pg.create_database("pnpr");
    let backend = PgAccess::with_limits(pool(&pg, "pnpr"), 5, 4).expect("migrated");
    let s = AccessStore::new(Box::new(backend), None);
    for i in 0..12 {
        s.record_grant("alice", &format!("p{i}@1.0.0"), i);
        s.mark_public(&format!("p{i}"), i);
    }
    // Trims ran at writes 1, 5 and 9: the oldest rows went, the newest stay.
    assert!(!s.has_grant("alice", "p0@1.0.0", 20));
    assert!(!s.is_public("p0", 20));
    assert!(s.has_grant("alice", "p11@1.0.0", 20));
    assert!(s.is_public("p11", 20));
    let kept = (0..12)
        .filter(|i| s.has_grant("alice", &format!("p{i}@1.0.0"), 20))
        .count();
    assert!((5..=5 + 3).contains(&kept), "kept {kept}");

    // The database goes away: every read denies, nothing panics or hangs
    // past the pool's connect timeout; back up, the rows are back.
    pg.stop();
    assert!(!s.has_grant("alice", "p11@1.0.0", 20));
    assert!(!s.is_public("p11", 20));
    s.record_grant("alice", "q@1.0.0", 20);
    assert_eq!(s.clear_package("alice", "p11"), 0);
    assert_eq!(s.clear_user("alice"), 0);
    pg.start_again();
    assert!(s.has_grant("alice", "p11@1.0.0", 20));
    assert!(!s.has_grant("alice", "q@1.0.0", 20));
}
