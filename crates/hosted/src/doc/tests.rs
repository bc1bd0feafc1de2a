use super::*;
use crate::testutil::{publish_body, sri};

const T0: i64 = 1_700_000_000_123;

fn published(name: &str, versions: &[&str]) -> Value {
    let mut doc = None;
    for (i, v) in versions.iter().enumerate() {
        let prep = prepare_publish(name, &publish_body(name, v, v.as_bytes())).expect("prepare");
        let mut next = merge_publish(doc, &prep, "alice", T0 + i as i64).expect("merge");
        let rev = next_rev(next.get("_rev").and_then(Value::as_str), &next);
        next["_rev"] = json!(rev);
        doc = Some(next);
    }
    doc.expect("at least one version")
}

#[test]
fn prepare_verifies_and_normalizes_dist() {
    let body = publish_body("demo", "1.0.0", b"tarball bytes");
    let prep = prepare_publish("demo", &body).expect("valid publish");
    assert_eq!(prep.attachments.len(), 1);
    assert_eq!(prep.attachments[0].bytes, b"tarball bytes");
    let (_, manifest) = &prep.versions[0];
    assert_eq!(manifest["dist"]["tarball"], "demo/-/demo-1.0.0.tgz");
    assert_eq!(manifest["dist"]["integrity"], sri(b"tarball bytes"));
    assert_eq!(manifest["_id"], "demo@1.0.0");
    assert_eq!(prep.tags, vec![("latest".to_string(), "1.0.0".to_string())]);
}

#[test]
fn prepare_matches_scoped_attachment_keys() {
    // npm names the attachment `@scope/name-1.0.0.tgz`.
    let body = publish_body("@acme/demo", "1.0.0", b"scoped");
    assert!(body["_attachments"].get("@acme/demo-1.0.0.tgz").is_some());
    let prep = prepare_publish("@acme/demo", &body).expect("valid publish");
    assert_eq!(
        prep.versions[0].1["dist"]["tarball"],
        "@acme/demo/-/demo-1.0.0.tgz"
    );
}

#[test]
fn prepare_rejects_integrity_mismatches() {
    let mut body = publish_body("demo", "1.0.0", b"real");
    body["versions"]["1.0.0"]["dist"]["integrity"] = json!(sri(b"other"));
    assert!(matches!(
        prepare_publish("demo", &body),
        Err(HostedError::IntegrityMismatch { .. })
    ));

    let mut body = publish_body("demo", "1.0.0", b"real");
    body["versions"]["1.0.0"]["dist"]["shasum"] = json!("0".repeat(40));
    assert!(matches!(
        prepare_publish("demo", &body),
        Err(HostedError::IntegrityMismatch { .. })
    ));

    // Only a shasum: still verified, and a sha512 integrity is added.
    let mut body = publish_body("demo", "1.0.0", b"real");
    body["versions"]["1.0.0"]["dist"]
        .as_object_mut()
        .expect("dist")
        .remove("integrity");
    let prep = prepare_publish("demo", &body).expect("shasum only");
    assert_eq!(prep.versions[0].1["dist"]["integrity"], sri(b"real"));
}

#[test]
fn prepare_rejects_malformed_bodies() {
    type Edit = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(&str, Edit)> = vec![
        ("name mismatch", Box::new(|b| b["name"] = json!("other"))),
        ("no attachment", Box::new(|b| b["_attachments"] = json!({}))),
        (
            "bad base64",
            Box::new(|b| b["_attachments"]["demo-1.0.0.tgz"]["data"] = json!("***")),
        ),
        (
            "length lies",
            Box::new(|b| b["_attachments"]["demo-1.0.0.tgz"]["length"] = json!(1)),
        ),
        (
            "version field differs",
            Box::new(|b| b["versions"]["1.0.0"]["version"] = json!("2.0.0")),
        ),
        ("no versions", Box::new(|b| b["versions"] = json!({}))),
        (
            "tag is a version",
            Box::new(|b| b["dist-tags"] = json!({"1.2.3": "1.0.0"})),
        ),
    ];
    for (what, edit) in cases {
        let mut body = publish_body("demo", "1.0.0", b"bytes");
        edit(&mut body);
        assert!(
            matches!(
                prepare_publish("demo", &body),
                Err(HostedError::BadRequest(_))
            ),
            "{what} was accepted"
        );
    }
    let body = publish_body("demo", "01.0.0", b"bytes");
    assert!(
        prepare_publish("demo", &body).is_err(),
        "non-canonical version"
    );
}

#[test]
fn first_publish_claims_and_records_metadata() {
    let doc = published("demo", &["1.0.0"]);
    assert_eq!(doc["_id"], "demo");
    assert_eq!(
        doc["maintainers"],
        json!([{ "name": "alice", "email": "" }])
    );
    assert_eq!(doc["dist-tags"], json!({ "latest": "1.0.0" }));
    assert_eq!(doc["time"]["created"], "2023-11-14T22:13:20.123Z");
    assert_eq!(doc["time"]["1.0.0"], "2023-11-14T22:13:20.123Z");
    assert_eq!(doc["time"]["modified"], "2023-11-14T22:13:20.123Z");
    assert_eq!(doc["versions"]["1.0.0"]["_npmUser"]["name"], "alice");
    assert_eq!(doc["description"], "demo does things");
    assert!(doc["_rev"].as_str().expect("rev").starts_with("1-"));
}

#[test]
fn republishing_a_version_is_refused_with_npm_wording() {
    let doc = published("demo", &["1.0.0"]);
    let prep =
        prepare_publish("demo", &publish_body("demo", "1.0.0", b"new bytes")).expect("prepare");
    match merge_publish(Some(doc), &prep, "alice", T0) {
        Err(HostedError::Conflict(msg)) => assert_eq!(
            msg,
            "You cannot publish over the previously published versions: 1.0.0."
        ),
        other => panic!("expected a conflict, got {other:?}"),
    }
}

#[test]
fn publish_merges_versions_and_tags() {
    let doc = published("demo", &["1.0.0", "2.0.0-beta.1"]);
    assert_eq!(version_keys(&doc), vec!["1.0.0", "2.0.0-beta.1"]);
    // The second body said latest = 2.0.0-beta.1, and that is what npm asked for.
    assert_eq!(doc["dist-tags"]["latest"], "2.0.0-beta.1");
    assert!(doc["time"].get("1.0.0").is_some());
}

#[test]
fn deprecate_and_undeprecate() {
    let doc = published("demo", &["1.0.0", "1.1.0"]);
    let rev = doc["_rev"].as_str().expect("rev").to_string();
    let mut body = doc.clone();
    body["versions"]["1.0.0"]["deprecated"] = json!("use 1.1.0");
    // A client cannot rewrite a published manifest through an update.
    body["versions"]["1.0.0"]["dist"]["integrity"] = json!("sha512-AAAA");
    let (next, effect) = apply_update(doc.clone(), &body, None, T0).expect("deprecate");
    let next = next.expect("still has versions");
    assert!(effect.removed.is_empty());
    assert_eq!(next["versions"]["1.0.0"]["deprecated"], "use 1.1.0");
    assert_eq!(
        next["versions"]["1.0.0"]["dist"]["integrity"],
        doc["versions"]["1.0.0"]["dist"]["integrity"]
    );
    assert!(next["versions"]["1.1.0"].get("deprecated").is_none());

    let mut body = next.clone();
    body["versions"]["1.0.0"]["deprecated"] = json!("");
    body["_rev"] = json!(rev);
    let mut stored = next.clone();
    stored["_rev"] = json!(rev);
    let (again, _) = apply_update(stored, &body, None, T0).expect("undeprecate");
    assert!(again.expect("doc")["versions"]["1.0.0"]
        .get("deprecated")
        .is_none());
}

#[test]
fn stale_revision_is_a_conflict() {
    let doc = published("demo", &["1.0.0"]);
    let body = json!({ "_rev": "0-stale", "maintainers": [{ "name": "bob" }] });
    assert!(matches!(
        apply_update(doc, &body, None, T0),
        Err(HostedError::Conflict(_))
    ));
}

#[test]
fn versions_are_removed_only_with_a_matching_revision() {
    let doc = published("demo", &["1.0.0", "1.1.0"]);
    let rev = doc["_rev"].as_str().expect("rev").to_string();
    let mut body = doc.clone();
    body["versions"]
        .as_object_mut()
        .expect("versions")
        .remove("1.1.0");
    body.as_object_mut().expect("body").remove("_rev");

    // No revision: a snapshot may simply be old; nothing is removed.
    let (kept, effect) = apply_update(doc.clone(), &body, None, T0).expect("update");
    assert!(effect.removed.is_empty());
    assert_eq!(version_keys(&kept.expect("doc")).len(), 2);

    // With the current revision: 1.1.0 is unpublished and latest moves back.
    body["dist-tags"] = json!({});
    let (next, effect) = apply_update(doc, &body, Some(&rev), T0).expect("unpublish");
    let next = next.expect("1.0.0 remains");
    assert_eq!(effect.removed, vec!["1.1.0"]);
    assert_eq!(version_keys(&next), vec!["1.0.0"]);
    assert_eq!(next["dist-tags"], json!({ "latest": "1.0.0" }));
    assert!(next["time"].get("1.1.0").is_none());
}

#[test]
fn removing_every_version_deletes_the_document() {
    let doc = published("demo", &["1.0.0"]);
    let rev = doc["_rev"].as_str().expect("rev").to_string();
    let body = json!({ "versions": {}, "dist-tags": {} });
    let (next, effect) = apply_update(doc.clone(), &body, Some(&rev), T0).expect("update");
    assert!(next.is_none());
    assert_eq!(effect.removed, vec!["1.0.0"]);
    assert!(remove_version(doc, "1.0.0", T0).expect("remove").is_none());
}

#[test]
fn updates_cannot_invent_versions() {
    let doc = published("demo", &["1.0.0"]);
    let body = json!({ "versions": { "1.0.0": {}, "9.9.9": {} } });
    assert!(matches!(
        apply_update(doc, &body, None, T0),
        Err(HostedError::BadRequest(_))
    ));
}

#[test]
fn owners_are_replaced_and_never_emptied() {
    let doc = published("demo", &["1.0.0"]);
    let body = json!({ "_id": "demo", "maintainers": [{ "name": "alice" }, { "name": "bob", "email": "b@x" }] });
    let (next, effect) = apply_update(doc.clone(), &body, None, T0).expect("owner add");
    assert_eq!(
        next.expect("doc")["maintainers"],
        json!([{ "name": "alice", "email": "" }, { "name": "bob", "email": "b@x" }])
    );
    assert!(effect.owners_changed);
    assert_eq!(effect.added_maintainers, vec!["bob"]);
    // Same names (an email edit, or deprecate resending the list) is no
    // owner change.
    let body = json!({ "maintainers": [{ "name": "alice", "email": "a@x" }] });
    let (_, effect) = apply_update(doc.clone(), &body, None, T0).expect("same owners");
    assert!(!effect.owners_changed && effect.added_maintainers.is_empty());
    let removal = json!({ "maintainers": [{ "name": "bob" }] });
    let (_, effect) = apply_update(doc.clone(), &removal, None, T0).expect("replace");
    assert!(effect.owners_changed);
    let body = json!({ "maintainers": [] });
    assert!(apply_update(doc, &body, None, T0).is_err());
}

#[test]
fn dist_tags_add_and_remove() {
    let doc = published("demo", &["1.0.0", "1.1.0"]);
    let doc = set_tag(doc, "beta", "1.1.0", T0).expect("add");
    assert_eq!(doc["dist-tags"]["beta"], "1.1.0");
    assert!(matches!(
        set_tag(doc.clone(), "beta", "3.0.0", T0),
        Err(HostedError::NotFound(_))
    ));
    assert!(set_tag(doc.clone(), "1.0.0", "1.0.0", T0).is_err());
    let doc = remove_tag(doc, "beta", T0).expect("rm");
    assert!(doc["dist-tags"].get("beta").is_none());
    assert!(matches!(
        remove_tag(doc.clone(), "beta", T0),
        Err(HostedError::NotFound(_))
    ));
    assert!(remove_tag(doc, "latest", T0).is_err());
}

#[test]
fn revisions_count_up() {
    let doc = json!({ "name": "demo" });
    let r1 = next_rev(None, &doc);
    assert!(r1.starts_with("1-") && r1.len() == 34, "{r1}");
    let r2 = next_rev(Some(&r1), &doc);
    assert!(r2.starts_with("2-"), "{r2}");
}

#[test]
fn iso8601_formats_known_instants() {
    assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
    assert_eq!(iso8601(951_782_400_000), "2000-02-29T00:00:00.000Z");
    assert_eq!(iso8601(T0), "2023-11-14T22:13:20.123Z");
    assert_eq!(iso8601(-1), "1969-12-31T23:59:59.999Z");
}

#[test]
fn version_blob_reads_the_sha512() {
    let doc = published("demo", &["1.0.0"]);
    let hex = version_blob(&doc["versions"]["1.0.0"]).expect("sha512");
    assert_eq!(hex.len(), 128);
    assert!(version_blob(&json!({ "dist": { "integrity": "sha1-AAAA" } })).is_none());
}
