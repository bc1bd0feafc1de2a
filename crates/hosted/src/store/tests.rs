use std::sync::Arc;

use serde_json::json;

use super::*;
use crate::ownership::{Ownership, OwnershipMode};
use crate::testutil::publish_body;

const T0: i64 = 1_700_000_000_000;

fn groups() -> Vec<(String, Vec<String>)> {
    vec![("release".to_string(), vec!["carol".to_string()])]
}

/// `user` under the default (maintainers) rules, with the `release` group
/// as admins.
fn actor(user: &str) -> Actor {
    Ownership::new(OwnershipMode::Maintainers, vec!["release".into()]).actor(user, &groups())
}

fn publish(store: &HostedStore, name: &str, version: &str, bytes: &[u8]) -> Result<Packument> {
    publish_as(store, "alice", name, version, bytes)
}

fn publish_as(
    store: &HostedStore,
    user: &str,
    name: &str,
    version: &str,
    bytes: &[u8],
) -> Result<Packument> {
    let prep = doc::prepare_publish(name, &publish_body(name, version, bytes))?;
    store.publish(&prep, &actor(user), T0)
}

fn exists(user: &str) -> bool {
    ["alice", "bob", "carol"].contains(&user)
}

/// Gates for `user` with the given `packages:` check.
fn update_as(
    store: &HostedStore,
    user: &str,
    body: &Value,
    rev: Option<&str>,
    permission: &dyn Fn(Permission) -> Result<()>,
) -> Result<UpdateOutcome> {
    let actor = actor(user);
    let gate = UpdateGate {
        actor: &actor,
        permission,
        user_exists: &exists,
    };
    store.update("demo", body, rev, T0, &gate)
}

fn allow(_: Permission) -> Result<()> {
    Ok(())
}

fn deny_unpublish(p: Permission) -> Result<()> {
    if p == Permission::Publish {
        return Ok(());
    }
    deny(p)
}

fn deny(p: Permission) -> Result<()> {
    Err(HostedError::Denied {
        permission: p,
        package: "demo".into(),
        unauthenticated: false,
    })
}

fn blob_count(dir: &Path) -> usize {
    fn walk(p: &Path) -> usize {
        std::fs::read_dir(p)
            .map(|rd| {
                rd.flatten()
                    .map(|e| {
                        if e.path().is_dir() {
                            walk(&e.path())
                        } else {
                            1
                        }
                    })
                    .sum()
            })
            .unwrap_or(0)
    }
    walk(&dir.join("hosted-tarballs/sha512"))
}

#[test]
fn publish_persists_document_and_tarball() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = HostedStore::open(dir.path()).expect("open");
        assert!(!store.is_hosted("demo"));
        let p = publish(&store, "demo", "1.0.0", b"one").expect("publish");
        assert!(p.rev.starts_with("1-"));
        assert_eq!(p.doc["_rev"], json!(p.rev));
        assert!(store.is_hosted("demo"));
    }
    // Survives a reopen (names are reloaded too).
    let store = HostedStore::open(dir.path()).expect("reopen");
    assert!(store.is_hosted("demo"));
    let p = store.get("demo").expect("get").expect("stored");
    assert_eq!(p.doc["dist-tags"]["latest"], "1.0.0");
    let t = store
        .tarball("demo", "demo-1.0.0.tgz")
        .expect("lookup")
        .expect("tarball");
    assert_eq!(std::fs::read(&t.path).expect("read"), b"one");
    assert!(store
        .tarball("demo", "demo-9.0.0.tgz")
        .expect("lookup")
        .is_none());
    assert!(store
        .tarball("other", "demo-1.0.0.tgz")
        .expect("lookup")
        .is_none());
}

#[test]
fn republish_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = HostedStore::open(dir.path()).expect("open");
    let first = publish(&store, "demo", "1.0.0", b"one").expect("publish");
    assert!(matches!(
        publish(&store, "demo", "1.0.0", b"different bytes"),
        Err(HostedError::Conflict(_))
    ));
    let now = store.get("demo").expect("get").expect("stored");
    assert_eq!(now.rev, first.rev);
    // The refused tarball was never written.
    assert_eq!(blob_count(dir.path()), 1);
}

#[test]
fn concurrent_publishes_of_one_package_all_land() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(HostedStore::open(dir.path()).expect("open"));
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                let version = format!("1.{i}.0");
                publish(&store, "demo", &version, version.as_bytes()).map(|_| ())
            })
        })
        .collect();
    for t in threads {
        t.join().expect("thread").expect("publish");
    }
    let p = store.get("demo").expect("get").expect("stored");
    assert_eq!(doc::version_keys(&p.doc).len(), 8);
    assert!(p.rev.starts_with("8-"), "{}", p.rev);
    for i in 0..8 {
        let file = format!("demo-1.{i}.0.tgz");
        assert!(
            store.tarball("demo", &file).expect("lookup").is_some(),
            "{file}"
        );
    }
}

#[test]
fn unpublish_needs_permission_and_collects_garbage() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = HostedStore::open(dir.path()).expect("open");
    publish(&store, "demo", "1.0.0", b"one").expect("publish");
    let p = publish(&store, "demo", "1.1.0", b"two").expect("publish");
    assert_eq!(blob_count(dir.path()), 2);

    let mut body = p.doc.clone();
    body["versions"]
        .as_object_mut()
        .expect("versions")
        .remove("1.1.0");
    body["dist-tags"] = json!({ "latest": "1.0.0" });
    let denied = update_as(&store, "alice", &body, Some(&p.rev), &deny_unpublish);
    assert!(matches!(
        denied,
        Err(HostedError::Denied {
            permission: Permission::Unpublish,
            ..
        })
    ));
    assert_eq!(store.get("demo").expect("get").expect("stored").rev, p.rev);

    let out = update_as(&store, "alice", &body, Some(&p.rev), &allow).expect("unpublish 1.1.0");
    let UpdateOutcome::Updated(after) = out else {
        panic!("package should remain");
    };
    assert_eq!(doc::version_keys(&after.doc), vec!["1.0.0"]);
    assert_eq!(blob_count(dir.path()), 1);
    // npm's follow-up tarball DELETE is then a no-op.
    let out = store
        .remove_tarball(
            "demo",
            "demo-1.1.0.tgz",
            Some(&after.rev),
            &actor("alice"),
            T0,
        )
        .expect("delete tarball");
    assert!(matches!(out, UpdateOutcome::Updated(p) if p.rev == after.rev));

    // A stale revision is refused.
    assert!(matches!(
        store.unpublish_all("demo", Some(&p.rev), &actor("alice")),
        Err(HostedError::Conflict(_))
    ));
    store
        .unpublish_all("demo", Some(&after.rev), &actor("alice"))
        .expect("unpublish all");
    assert!(!store.is_hosted("demo"));
    assert!(store.get("demo").expect("get").is_none());
    assert_eq!(blob_count(dir.path()), 0);
}

#[test]
fn metadata_updates_need_publish_rights_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = HostedStore::open(dir.path()).expect("open");
    let p = publish(&store, "demo", "1.0.0", b"one").expect("publish");
    let body = json!({ "_id": "demo", "_rev": p.rev, "maintainers": [{ "name": "bob" }] });
    assert!(matches!(
        update_as(&store, "alice", &body, None, &deny),
        Err(HostedError::Denied {
            permission: Permission::Publish,
            ..
        })
    ));
    let out = update_as(&store, "alice", &body, None, &deny_unpublish).expect("owner change");
    let UpdateOutcome::Updated(after) = out else {
        panic!("package should remain");
    };
    assert_eq!(after.doc["maintainers"][0]["name"], "bob");
    assert!(after.rev.starts_with("2-"));
}

#[test]
fn shared_tarball_bytes_outlive_one_owner() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = HostedStore::open(dir.path()).expect("open");
    publish(&store, "a-pkg", "1.0.0", b"same bytes").expect("publish a");
    publish(&store, "b-pkg", "1.0.0", b"same bytes").expect("publish b");
    assert_eq!(blob_count(dir.path()), 1);
    store
        .unpublish_all("a-pkg", None, &actor("alice"))
        .expect("unpublish a");
    assert!(store
        .tarball("b-pkg", "b-pkg-1.0.0.tgz")
        .expect("lookup")
        .is_some());
}

#[test]
fn tarball_delete_of_a_listed_version_unpublishes_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = HostedStore::open(dir.path()).expect("open");
    publish(&store, "demo", "1.0.0", b"one").expect("publish");
    publish(&store, "demo", "2.0.0", b"two").expect("publish");
    let out = store
        .remove_tarball("demo", "demo-2.0.0.tgz", None, &actor("alice"), T0)
        .expect("remove");
    let UpdateOutcome::Updated(p) = out else {
        panic!("1.0.0 remains");
    };
    assert_eq!(p.doc["dist-tags"]["latest"], "1.0.0");
    let out = store
        .remove_tarball("demo", "demo-1.0.0.tgz", None, &actor("alice"), T0)
        .expect("remove last");
    assert!(matches!(out, UpdateOutcome::Deleted));
    assert!(!store.is_hosted("demo"));
}

#[test]
fn dist_tags_round_trip_through_the_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = HostedStore::open(dir.path()).expect("open");
    publish(&store, "demo", "1.0.0", b"one").expect("publish");
    let alice = actor("alice");
    let p = store
        .set_tag("demo", "next", "1.0.0", &alice, T0)
        .expect("tag");
    assert_eq!(p.doc["dist-tags"]["next"], "1.0.0");
    let p = store.remove_tag("demo", "next", &alice, T0).expect("untag");
    assert!(p.doc["dist-tags"].get("next").is_none());
    assert!(matches!(
        store.set_tag("nope", "next", "1.0.0", &alice, T0),
        Err(HostedError::NotFound(_))
    ));
}

#[test]
fn orphan_blobs_from_an_interrupted_publish_are_harmless() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = HostedStore::open(dir.path()).expect("open");
    // Simulates a crash after the tarball was written but before the
    // transaction committed: a blob with no row.
    let prep = doc::prepare_publish("demo", &publish_body("demo", "1.0.0", b"one")).expect("prep");
    store
        .blobs
        .put(&prep.attachments[0].sha512_hex, &prep.attachments[0].bytes)
        .expect("blob");
    drop(store);
    let store = HostedStore::open(dir.path()).expect("reopen");
    assert!(!store.is_hosted("demo"));
    assert!(store.get("demo").expect("get").is_none());
    // And the same publish still succeeds afterwards.
    store.publish(&prep, &actor("alice"), T0).expect("publish");
    assert!(store
        .tarball("demo", "demo-1.0.0.tgz")
        .expect("lookup")
        .is_some());
}

fn not_owner(r: Result<impl std::fmt::Debug>, want: Change) {
    match r {
        Err(HostedError::NotOwner { change, user, .. }) => {
            assert_eq!(change, want);
            assert_eq!(user, "bob");
        }
        other => panic!("expected NotOwner({want:?}), got {other:?}"),
    }
}

#[test]
fn only_maintainers_change_a_package() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = HostedStore::open(dir.path()).expect("open");
    let p = publish(&store, "demo", "1.0.0", b"one").expect("publish");
    assert_eq!(
        p.doc["maintainers"],
        json!([{ "name": "alice", "email": "" }])
    );
    let bob = actor("bob");

    not_owner(
        publish_as(&store, "bob", "demo", "2.0.0", b"evil"),
        Change::Publish,
    );
    not_owner(
        store.set_tag("demo", "latest", "1.0.0", &bob, T0),
        Change::DistTag,
    );
    not_owner(store.remove_tag("demo", "next", &bob, T0), Change::DistTag);
    not_owner(
        store.remove_tarball("demo", "demo-1.0.0.tgz", None, &bob, T0),
        Change::Unpublish,
    );
    not_owner(store.unpublish_all("demo", None, &bob), Change::Unpublish);
    let mut deprecate = p.doc.clone();
    deprecate["versions"]["1.0.0"]["deprecated"] = json!("pwned");
    not_owner(
        update_as(&store, "bob", &deprecate, None, &allow),
        Change::Update,
    );
    let mut removal = p.doc.clone();
    removal["versions"] = json!({});
    not_owner(
        update_as(&store, "bob", &removal, Some(&p.rev), &allow),
        Change::Unpublish,
    );
    let owners = json!({ "_id": "demo", "_rev": p.rev,
        "maintainers": [{ "name": "alice" }, { "name": "bob" }] });
    not_owner(
        update_as(&store, "bob", &owners, None, &allow),
        Change::Owners,
    );
    // Nothing changed, and the blob of the refused publish was never kept.
    let now = store.get("demo").expect("get").expect("stored");
    assert_eq!(now.rev, p.rev);
    assert_eq!(blob_count(dir.path()), 1);

    // The owner adds bob; bob may then publish and retag.
    update_as(&store, "alice", &owners, None, &allow).expect("owner add");
    publish_as(&store, "bob", "demo", "2.0.0", b"two").expect("bob publishes");
    store
        .set_tag("demo", "next", "2.0.0", &bob, T0)
        .expect("bob tags");
}

#[test]
fn owners_added_must_exist_and_admins_may_do_anything() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = HostedStore::open(dir.path()).expect("open");
    let p = publish(&store, "demo", "1.0.0", b"one").expect("publish");
    let ghost = json!({ "_id": "demo", "_rev": p.rev,
        "maintainers": [{ "name": "alice" }, { "name": "ghost" }] });
    assert!(matches!(
        update_as(&store, "alice", &ghost, None, &allow),
        Err(HostedError::UnknownUser(u)) if u == "ghost"
    ));
    // A maintainer who no longer exists does not block other edits.
    let carol = actor("carol");
    assert!(carol.is_admin());
    publish_as(&store, "carol", "demo", "1.1.0", b"carol").expect("admin publishes");
    store
        .set_tag("demo", "beta", "1.1.0", &carol, T0)
        .expect("admin tags");
    store
        .unpublish_all("demo", None, &carol)
        .expect("admin unpublishes");
    assert!(!store.is_hosted("demo"));
}

#[test]
fn publish_rights_mode_lets_any_publisher_change_a_package() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = HostedStore::open(dir.path()).expect("open");
    publish(&store, "demo", "1.0.0", b"one").expect("publish");
    let bob = Ownership::new(OwnershipMode::PublishRights, Vec::new()).actor("bob", &groups());
    let prep = doc::prepare_publish("demo", &publish_body("demo", "2.0.0", b"two")).expect("prep");
    store.publish(&prep, &bob, T0).expect("bob publishes");
    store
        .set_tag("demo", "latest", "1.0.0", &bob, T0)
        .expect("bob retags");
    store
        .unpublish_all("demo", None, &bob)
        .expect("bob unpublishes");
}

#[test]
fn precheck_refuses_non_owners_before_any_work() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = HostedStore::open(dir.path()).expect("open");
    store
        .precheck("demo", &actor("bob"), Change::Publish)
        .expect("a free name passes");
    publish(&store, "demo", "1.0.0", b"one").expect("publish");
    not_owner(
        store.precheck("demo", &actor("bob"), Change::Publish),
        Change::Publish,
    );
    store
        .precheck("demo", &actor("alice"), Change::Publish)
        .expect("owner");
}
