use super::*;
use rusqlite::{params, Connection};

fn store() -> (tempfile::TempDir, TokenStore) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = TokenStore::open(&dir.path().join("db/tokens.db")).expect("open");
    (dir, store)
}

#[test]
fn create_and_lookup() {
    let (_dir, store) = store();
    let (plain, rec) = store.create("alice", false, vec![]).expect("create");
    assert!(plain.starts_with(TOKEN_PREFIX));
    // 32 bytes of base64url without padding.
    assert_eq!(plain.len(), TOKEN_PREFIX.len() + 43);
    assert_eq!(rec.key, crate::credential_digest(plain.as_bytes()));
    assert_eq!(rec.user, "alice");
    assert!(!rec.readonly);
    assert!(rec.created_ms > 0);
    assert_eq!(store.lookup(&plain), Some(rec.clone()));
    assert_eq!(store.lookup("pnpr_nope"), None);
    assert_eq!(store.lookup(""), None);
    // The digest is an id, not a credential.
    assert_eq!(store.lookup(&rec.key), None);

    let (plain2, _) = store.create("alice", true, vec![]).expect("create");
    assert_ne!(plain, plain2);
}

#[test]
fn list_is_per_user() {
    let (_dir, store) = store();
    let (_, a1) = store.create("alice", false, vec![]).expect("create");
    let (_, a2) = store
        .create("alice", true, vec!["10.0.0.0/8".into()])
        .expect("create");
    store.create("bob", false, vec![]).expect("create");
    let listed = store.list("alice");
    assert_eq!(listed.len(), 2);
    assert!(listed.contains(&a1) && listed.contains(&a2));
    assert_eq!(store.list("bob").len(), 1);
    assert!(store.list("carol").is_empty());
}

#[test]
fn revoke_by_key_prefix_and_plaintext() {
    let (_dir, store) = store();
    let (p1, r1) = store.create("alice", false, vec![]).expect("create");
    let (p2, r2) = store.create("alice", false, vec![]).expect("create");
    let (p3, r3) = store.create("alice", false, vec![]).expect("create");

    // Full key, uppercase accepted.
    assert!(store
        .revoke("alice", &r1.key.to_ascii_uppercase())
        .expect("revoke"));
    assert_eq!(store.lookup(&p1), None);
    assert!(!store.revoke("alice", &r1.key).expect("again"));

    // Unique 6-digit prefix (what `npm token revoke <id>` shows).
    let prefix = &r2.key[..6];
    if r3.key.starts_with(prefix) {
        assert!(matches!(
            store.revoke("alice", prefix),
            Err(AuthError::AmbiguousToken)
        ));
    } else {
        assert!(store.revoke("alice", prefix).expect("revoke"));
        assert_eq!(store.lookup(&p2), None);
    }
    // Too short a prefix is not an id.
    assert!(!store.revoke("alice", &r3.key[..5]).expect("short"));

    // Plaintext.
    assert!(store.revoke("alice", &p3).expect("revoke"));
    assert_eq!(store.lookup(&p3), None);
}

#[test]
fn ambiguous_prefix_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("tokens.db");
    let k1 = format!("abcdef0{}", "1".repeat(57));
    let k2 = format!("abcdef1{}", "2".repeat(57));
    let k3 = format!("abcdef2{}", "3".repeat(57));
    {
        let store = TokenStore::open(&path).expect("open");
        drop(store);
        let conn = Connection::open(&path).expect("raw open");
        for (key, user) in [(&k1, "alice"), (&k2, "alice"), (&k3, "bob")] {
            conn.execute(
                "INSERT INTO tokens (key, user, readonly, cidr_whitelist, created_ms) VALUES (?1, ?2, 0, '[]', 1)",
                params![key, user],
            )
            .expect("insert");
        }
        conn.execute(
            "INSERT INTO tokens (key, user, readonly, cidr_whitelist, created_ms) VALUES ('not-hex', 'alice', 0, '[]', 1)",
            [],
        )
        .expect("insert malformed");
    }
    let store = TokenStore::open(&path).expect("reopen");
    // The malformed row is skipped, the rest load.
    assert_eq!(store.list("alice").len(), 2);
    assert!(matches!(
        store.revoke("alice", "abcdef"),
        Err(AuthError::AmbiguousToken)
    ));
    assert_eq!(store.list("alice").len(), 2);
    // Bob's token shares the prefix but is not alice's to revoke.
    assert!(store.revoke("alice", "abcdef1").expect("unique for alice"));
    assert!(store.revoke("alice", "abcdef").expect("now unique"));
    assert!(store.list("alice").is_empty());
    assert_eq!(store.list("bob").len(), 1);
    assert!(!store.revoke("alice", "abcde").expect("too short"));
}

#[test]
fn revoke_only_touches_own_tokens() {
    let (_dir, store) = store();
    let (plain, rec) = store.create("alice", false, vec![]).expect("create");
    assert!(!store.revoke("bob", &rec.key).expect("revoke"));
    assert!(!store.revoke("bob", &rec.key[..8]).expect("revoke"));
    assert!(!store.revoke("bob", &plain).expect("revoke"));
    assert!(store.lookup(&plain).is_some());
    assert!(!store.revoke("alice", "not a key at all").expect("garbage"));
}

#[test]
fn persists_across_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("tokens.db");
    let (keep, revoked) = {
        let store = TokenStore::open(&path).expect("open");
        let (keep, _) = store
            .create("alice", true, vec!["127.0.0.1/32".into(), "::1".into()])
            .expect("create");
        let (gone, _) = store.create("alice", false, vec![]).expect("create");
        assert!(store.revoke("alice", &gone).expect("revoke"));
        (keep, gone)
    };
    let store = TokenStore::open(&path).expect("reopen");
    let rec = store.lookup(&keep).expect("token survives reopen");
    assert_eq!(rec.user, "alice");
    assert!(rec.readonly);
    assert_eq!(rec.cidr_whitelist, ["127.0.0.1/32", "::1"]);
    assert_eq!(store.lookup(&revoked), None);
    assert_eq!(store.list("alice").len(), 1);
}

#[test]
fn plaintext_is_not_persisted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("tokens.db");
    let store = TokenStore::open(&path).expect("open");
    let (plain, _) = store.create("alice", false, vec![]).expect("create");
    drop(store);
    let secret_part = plain.trim_start_matches(TOKEN_PREFIX);
    for entry in std::fs::read_dir(dir.path()).expect("read_dir") {
        let bytes = std::fs::read(entry.expect("entry").path()).expect("read");
        assert!(
            !bytes
                .windows(secret_part.len())
                .any(|w| w == secret_part.as_bytes()),
            "plaintext found on disk"
        );
    }
}

#[test]
fn cidr_whitelist() {
    let (_dir, store) = store();
    assert!(matches!(
        store.create("alice", false, vec!["10.0.0.0/33".into()]),
        Err(AuthError::InvalidCidr(_))
    ));
    assert!(matches!(
        store.create("alice", false, vec!["nonsense".into()]),
        Err(AuthError::InvalidCidr(_))
    ));
    assert!(store.list("alice").is_empty());

    let (_, rec) = store
        .create(
            "alice",
            false,
            vec!["10.1.0.0/16".into(), "fd00::/8".into()],
        )
        .expect("create");
    let ip = |s: &str| Some(s.parse::<IpAddr>().expect("ip"));
    assert!(rec.allows_peer(ip("10.1.2.3")));
    assert!(rec.allows_peer(ip("::ffff:10.1.2.3")));
    assert!(rec.allows_peer(ip("fd12::1")));
    assert!(!rec.allows_peer(ip("10.2.0.1")));
    assert!(!rec.allows_peer(ip("127.0.0.1")));
    assert!(!rec.allows_peer(None));

    let (_, open) = store.create("alice", false, vec![]).expect("create");
    assert!(open.allows_peer(None));
    let (_, all) = store
        .create("alice", false, vec!["0.0.0.0/0".into()])
        .expect("create");
    assert!(all.allows_peer(ip("192.0.2.1")));
}

#[test]
fn empty_user_rejected() {
    let (_dir, store) = store();
    assert!(store.create("", false, vec![]).is_err());
}

#[test]
fn databases_without_incarnations_are_migrated() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("tokens.db");
    {
        let conn = Connection::open(&path).expect("open");
        conn.execute_batch(
            "CREATE TABLE tokens (key TEXT PRIMARY KEY NOT NULL, user TEXT NOT NULL,
             readonly INTEGER NOT NULL, cidr_whitelist TEXT NOT NULL, created_ms INTEGER NOT NULL);",
        )
        .expect("old schema");
        conn.execute(
            "INSERT INTO tokens VALUES (?1, 'alice', 0, '[]', 1)",
            params![hex::encode(digest("pnpr_old"))],
        )
        .expect("old row");
    }
    let store = TokenStore::open(&path).expect("migrates");
    let rec = store.lookup("pnpr_old").expect("old token still loads");
    assert_eq!(rec.incarnation, None);
    let (_, bound) = store
        .create_bound("alice", false, vec![], Some("inc-1"), None)
        .expect("create");
    drop(store);
    let store = TokenStore::open(&path).expect("reopen");
    assert_eq!(store.list("alice").len(), 2);
    let reloaded = store.list("alice");
    let row = reloaded
        .iter()
        .find(|r| r.key == bound.key)
        .expect("bound row");
    assert_eq!(row.incarnation.as_deref(), Some("inc-1"));
}

#[test]
fn purge_stale_and_purge_user() {
    let (_dir, store) = store();
    store
        .create_bound("alice", false, vec![], Some("a1"), None)
        .expect("a1");
    store
        .create_bound("alice", false, vec![], Some("a2"), None)
        .expect("a2");
    store.create("alice", false, vec![]).expect("unbound");
    store
        .create_bound("bob", false, vec![], Some("b1"), None)
        .expect("b1");
    assert_eq!(store.purge_stale("alice", Some("a2")).expect("purge"), 1);
    assert_eq!(store.list("alice").len(), 2, "current and unbound stay");
    assert_eq!(store.purge_stale("alice", Some("a2")).expect("again"), 0);
    assert_eq!(store.purge_stale("alice", None).expect("gone"), 2);
    assert_eq!(store.list("bob").len(), 1, "other users untouched");
    assert_eq!(store.users(), vec!["bob".to_owned()]);
    assert_eq!(store.purge_user("bob").expect("purge user"), 1);
    assert!(store.users().is_empty());
}

#[test]
fn names_and_shown_prefixes_persist_and_bad_names_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("tokens.db");
    let store = TokenStore::open(&path).expect("open");
    let (plain, rec) = store
        .create_bound("alice", false, vec![], None, Some("ci-bot"))
        .expect("create");
    assert_eq!(rec.name.as_deref(), Some("ci-bot"));
    let shown = rec.shown.clone().expect("shown prefix");
    assert_eq!(shown.len(), SHOWN_PREFIX);
    assert!(plain.starts_with(&shown));
    let long = "x".repeat(MAX_TOKEN_NAME + 1);
    for bad in [long.as_str(), "a\nb"] {
        assert!(matches!(
            store.create_bound("alice", false, vec![], None, Some(bad)),
            Err(AuthError::InvalidTokenName)
        ));
    }
    drop(store);
    let store = TokenStore::open(&path).expect("reopen");
    assert_eq!(store.list("alice"), vec![rec]);
}
