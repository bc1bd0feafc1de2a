use std::collections::BTreeMap;

use super::sqlite::SqliteAccess;
use super::*;

fn sqlite(dir: &std::path::Path, ttl: Option<Duration>) -> AccessStore {
    AccessStore::new(Box::new(SqliteAccess::open(dir)), ttl)
}

fn auth(pairs: &[(&str, &str)]) -> AuthHeaders {
    AuthHeaders::new(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
    )
}

/// Opens a store over the same tables with the given TTL: the same files,
/// or the same database through another node's backend.
pub(super) type Reopen<'a> = &'a dyn Fn(Option<Duration>) -> AccessStore;

/// The checks every backend must pass; each starts from empty tables.
pub(super) fn per_user(open: Reopen) {
    let s = open(None);
    assert!(!s.has_grant("alice", "foo@1.0.0", 10));
    s.record_grant("alice", "foo@1.0.0", 10);
    assert!(s.has_grant("alice", "foo@1.0.0", 10));
    assert!(!s.has_grant("alice", "foo@2.0.0", 10));
    assert!(!s.has_grant("bob", "foo@1.0.0", 10));
    // Another handle on the same tables sees it (another node, or a restart).
    assert!(open(None).has_grant("alice", "foo@1.0.0", 11));
}

pub(super) fn exact_prefix(open: Reopen) {
    let s = open(None);
    for pkg in [
        "foo@1.0.0",
        "foo@2.0.0",
        "foo-bar@1.0.0",
        "foo_@1.0.0",
        "fooo@1.0.0",
    ] {
        s.record_grant("alice", pkg, 1);
    }
    s.record_grant("bob", "foo@1.0.0", 1);
    assert_eq!(s.clear_package("alice", "foo"), 2);
    assert!(!s.has_grant("alice", "foo@1.0.0", 1));
    assert!(!s.has_grant("alice", "foo@2.0.0", 1));
    assert!(s.has_grant("alice", "foo-bar@1.0.0", 1));
    assert!(s.has_grant("alice", "foo_@1.0.0", 1));
    assert!(s.has_grant("alice", "fooo@1.0.0", 1));
    assert!(s.has_grant("bob", "foo@1.0.0", 1));
    // A LIKE wildcard in the name matches nothing but itself.
    assert_eq!(s.clear_package("alice", "fo%"), 0);
    assert_eq!(s.clear_package("alice", "fo_"), 0);
    assert_eq!(s.clear_package("alice", "foo_"), 1);
    assert!(s.has_grant("alice", "foo-bar@1.0.0", 1));
    // Non-ASCII names: the prefix is compared by characters, not bytes.
    s.record_grant("alice", "ü@1.0.0", 1);
    s.record_grant("alice", "üx@1.0.0", 1);
    assert_eq!(s.clear_package("alice", "ü"), 1);
    assert!(s.has_grant("alice", "üx@1.0.0", 1));
}

pub(super) fn ttl_expiry(open: Reopen) {
    let s = open(Some(Duration::from_secs(10)));
    s.record_grant("alice", "foo@1.0.0", 1_000);
    s.mark_public("bar", 1_000);
    assert!(s.has_grant("alice", "foo@1.0.0", 10_999));
    assert!(s.is_public("bar", 10_999));
    assert!(!s.has_grant("alice", "foo@1.0.0", 11_000));
    assert!(!s.is_public("bar", 11_000));
    assert!(!s.is_public("baz", 1_000));
    // An upsert refreshes the timestamp.
    s.record_grant("alice", "foo@1.0.0", 20_000);
    assert!(s.has_grant("alice", "foo@1.0.0", 25_000));

    let forever = open(None);
    assert!(forever.has_grant("alice", "foo@1.0.0", i64::MAX));
    assert!(forever.is_public("bar", i64::MAX));
}

pub(super) fn clear_user_only(open: Reopen) {
    let store = open(None);
    store.record_grant("alice", "a@1.0.0", 1);
    store.record_grant("alice", "b@1.0.0", 1);
    store.record_grant("alicia", "a@1.0.0", 1);
    assert_eq!(store.clear_user("alice"), 2);
    assert!(!store.has_grant("alice", "a@1.0.0", 2));
    assert!(!open(None).has_grant("alice", "b@1.0.0", 2));
    assert!(store.has_grant("alicia", "a@1.0.0", 2));
    assert_eq!(store.clear_user("alice"), 0);
}

/// Runs `check` on fresh SQLite tables.
fn on_sqlite(check: fn(Reopen)) {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().to_path_buf();
    check(&move |ttl| sqlite(&path, ttl));
}

#[test]
fn grants_record_read_and_are_per_user() {
    on_sqlite(per_user);
}

#[test]
fn clear_uses_the_exact_name_prefix() {
    on_sqlite(exact_prefix);
}

#[test]
fn ttl_expires_grants_and_public_classifications() {
    on_sqlite(ttl_expiry);
}

#[test]
fn clear_user_drops_only_that_users_grants() {
    on_sqlite(clear_user_only);
}

#[test]
fn tables_persist_across_reopen() {
    let dir = tempfile::tempdir().expect("tmp");
    {
        let s = sqlite(dir.path(), None);
        s.record_grant("alice", "@private/foo@1.0.0", 5);
        s.mark_public("is-positive", 5);
    }
    let s = sqlite(dir.path(), None);
    assert!(s.has_grant("alice", "@private/foo@1.0.0", 6));
    assert!(s.is_public("is-positive", 6));
    assert!(!s.is_public("@private/foo", 6));
    assert!(dir.path().join("install-grants.sqlite").is_file());
    assert!(dir.path().join("public-packages.sqlite").is_file());
}

#[test]
fn unusable_directory_reads_as_empty_and_never_panics() {
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").expect("write");
    let s = sqlite(&file, None);
    s.record_grant("alice", "foo@1.0.0", 1);
    s.mark_public("foo", 1);
    assert!(!s.has_grant("alice", "foo@1.0.0", 1));
    assert!(!s.is_public("foo", 1));
    assert_eq!(s.clear_package("alice", "foo"), 0);
}

#[test]
fn nerf_dart_form() {
    assert_eq!(
        nerf_dart("https://u:p@reg.test:443/a/b/pkg?x=1#f").as_deref(),
        Some("//reg.test/a/b/")
    );
    assert_eq!(
        nerf_dart("http://127.0.0.1:4873/").as_deref(),
        Some("//127.0.0.1:4873/")
    );
    assert_eq!(
        nerf_dart("http://reg.test:80/@s%2fpkg").as_deref(),
        Some("//reg.test/")
    );
    assert_eq!(nerf_dart("not a url"), None);
}

#[test]
fn credential_lookup_longest_prefix_then_portless() {
    let a = auth(&[
        ("//reg.test/", "Bearer root"),
        ("//reg.test/team/", "Bearer team"),
        ("//127.0.0.1:9/", "Bearer nine"),
        ("//127.0.0.2/", "Bearer portless"),
    ]);
    assert_eq!(
        credential_for(&a, "https://reg.test/team/sub/@s%2fp").as_deref(),
        Some("Bearer team")
    );
    assert_eq!(
        credential_for(&a, "https://reg.test/other/p").as_deref(),
        Some("Bearer root")
    );
    assert_eq!(
        credential_for(&a, "http://127.0.0.1:9/@private%2ffoo").as_deref(),
        Some("Bearer nine")
    );
    assert_eq!(
        credential_for(&a, "http://127.0.0.2:7/p").as_deref(),
        Some("Bearer portless")
    );
    assert_eq!(credential_for(&a, "http://127.0.0.3:9/p"), None);
    assert_eq!(credential_for(&auth(&[]), "http://127.0.0.1:9/p"), None);
    // Inline userinfo wins and becomes Basic.
    assert_eq!(
        credential_for(&a, "https://u:pw@reg.test/p").as_deref(),
        Some("Basic dTpwdw==")
    );
}
