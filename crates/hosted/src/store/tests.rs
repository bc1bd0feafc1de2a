use std::sync::Arc;

use serde_json::json;

use super::*;
use crate::testutil::publish_body;

const T0: i64 = 1_700_000_000_000;

fn publish(store: &HostedStore, name: &str, version: &str, bytes: &[u8]) -> Result<Packument> {
    let prep = doc::prepare_publish(name, &publish_body(name, version, bytes))?;
    store.publish(&prep, "alice", T0)
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
    let denied = store.update("demo", &body, Some(&p.rev), T0, &deny_unpublish);
    assert!(matches!(
        denied,
        Err(HostedError::Denied {
            permission: Permission::Unpublish,
            ..
        })
    ));
    assert_eq!(store.get("demo").expect("get").expect("stored").rev, p.rev);

    let out = store
        .update("demo", &body, Some(&p.rev), T0, &allow)
        .expect("unpublish 1.1.0");
    let UpdateOutcome::Updated(after) = out else {
        panic!("package should remain");
    };
    assert_eq!(doc::version_keys(&after.doc), vec!["1.0.0"]);
    assert_eq!(blob_count(dir.path()), 1);
    // npm's follow-up tarball DELETE is then a no-op.
    let out = store
        .remove_tarball("demo", "demo-1.1.0.tgz", Some(&after.rev), T0)
        .expect("delete tarball");
    assert!(matches!(out, UpdateOutcome::Updated(p) if p.rev == after.rev));

    // A stale revision is refused.
    assert!(matches!(
        store.unpublish_all("demo", Some(&p.rev)),
        Err(HostedError::Conflict(_))
    ));
    store
        .unpublish_all("demo", Some(&after.rev))
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
        store.update("demo", &body, None, T0, &deny),
        Err(HostedError::Denied {
            permission: Permission::Publish,
            ..
        })
    ));
    let out = store
        .update("demo", &body, None, T0, &deny_unpublish)
        .expect("owner change");
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
    store.unpublish_all("a-pkg", None).expect("unpublish a");
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
        .remove_tarball("demo", "demo-2.0.0.tgz", None, T0)
        .expect("remove");
    let UpdateOutcome::Updated(p) = out else {
        panic!("1.0.0 remains");
    };
    assert_eq!(p.doc["dist-tags"]["latest"], "1.0.0");
    let out = store
        .remove_tarball("demo", "demo-1.0.0.tgz", None, T0)
        .expect("remove last");
    assert!(matches!(out, UpdateOutcome::Deleted));
    assert!(!store.is_hosted("demo"));
}

#[test]
fn dist_tags_round_trip_through_the_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = HostedStore::open(dir.path()).expect("open");
    publish(&store, "demo", "1.0.0", b"one").expect("publish");
    let p = store.set_tag("demo", "next", "1.0.0", T0).expect("tag");
    assert_eq!(p.doc["dist-tags"]["next"], "1.0.0");
    let p = store.remove_tag("demo", "next", T0).expect("untag");
    assert!(p.doc["dist-tags"].get("next").is_none());
    assert!(matches!(
        store.set_tag("nope", "next", "1.0.0", T0),
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
    store.publish(&prep, "alice", T0).expect("publish");
    assert!(store
        .tarball("demo", "demo-1.0.0.tgz")
        .expect("lookup")
        .is_some());
}
