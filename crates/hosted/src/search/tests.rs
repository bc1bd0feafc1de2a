use serde_json::json;

use super::*;

fn doc(name: &str, description: &str, keywords: &[&str]) -> Value {
    json!({
        "name": name,
        "dist-tags": { "latest": "1.0.0" },
        "versions": { "1.0.0": {
            "name": name, "version": "1.0.0", "description": description,
            "keywords": keywords, "_npmUser": { "name": "alice", "email": "" }
        } },
        "time": { "1.0.0": "2024-01-01T00:00:00.000Z" },
        "maintainers": [{ "name": "alice", "email": "" }],
    })
}

fn names(resp: &Value) -> Vec<String> {
    resp["objects"]
        .as_array()
        .expect("objects")
        .iter()
        .map(|o| o["package"]["name"].as_str().expect("name").to_string())
        .collect()
}

#[test]
fn ranks_name_matches_above_description_matches() {
    let hosted = vec![
        doc("widget", "a widget", &[]),
        doc("other", "uses widget internally", &[]),
        doc("widget-extra", "more", &[]),
        doc("unrelated", "nothing", &[]),
    ];
    let q = SearchQuery::new("widget", None, None);
    let resp = run(&q, &hosted, &[], &|_| true, 0);
    assert_eq!(names(&resp), vec!["widget", "widget-extra", "other"]);
    assert_eq!(resp["total"], 3);
    let first = &resp["objects"][0];
    assert_eq!(first["package"]["version"], "1.0.0");
    assert_eq!(first["package"]["publisher"]["username"], "alice");
    assert_eq!(first["package"]["maintainers"][0]["username"], "alice");
    assert_eq!(first["package"]["date"], "2024-01-01T00:00:00.000Z");
    assert!(first["score"]["final"].as_f64().expect("score") > 0.0);
    assert!(first["searchScore"].is_number());
}

#[test]
fn filters_hidden_names_before_counting_and_paginates() {
    let hosted: Vec<Value> = (0..5).map(|i| doc(&format!("pkg-{i}"), "", &[])).collect();
    let q = SearchQuery::new("pkg", Some("2"), Some("1"));
    let resp = run(&q, &hosted, &[], &|n| n != "pkg-0", 0);
    assert_eq!(resp["total"], 4);
    assert_eq!(names(&resp), vec!["pkg-2", "pkg-3"]);
}

#[test]
fn hosted_documents_shadow_cached_ones() {
    let hosted = vec![doc("shared", "hosted copy", &[])];
    let cached = vec![doc("shared", "cached copy", &[]), doc("shared-b", "", &[])];
    let q = SearchQuery::new("shared", None, None);
    let resp = run(&q, &hosted, &cached, &|_| true, 0);
    assert_eq!(names(&resp), vec!["shared", "shared-b"]);
    assert_eq!(resp["objects"][0]["package"]["description"], "hosted copy");
}

#[test]
fn qualifiers_filter() {
    let hosted = vec![
        doc("@acme/a", "", &["fast"]),
        doc("@other/a", "", &["fast"]),
        doc("b", "", &["slow"]),
    ];
    let resp = run(
        &SearchQuery::new("keywords:fast scope:acme", None, None),
        &hosted,
        &[],
        &|_| true,
        0,
    );
    assert_eq!(names(&resp), vec!["@acme/a"]);
    assert_eq!(resp["objects"][0]["package"]["scope"], "acme");
    let resp = run(
        &SearchQuery::new("maintainer:bob", None, None),
        &hosted,
        &[],
        &|_| true,
        0,
    );
    assert_eq!(resp["total"], 0);
}

#[test]
fn size_is_clamped() {
    assert_eq!(SearchQuery::new("x", Some("100000"), None).size, MAX_SIZE);
    assert_eq!(SearchQuery::new("x", Some("junk"), Some("-1")).size, 20);
    assert_eq!(SearchQuery::new("x", None, Some("-1")).from, 0);
}

#[test]
fn reads_only_the_public_namespace_of_the_metadata_cache() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("metadata.sqlite");
    // The metadata store's own schema, written through its own API.
    let db = pnpr_store::MetaDb::open(&path).expect("create");
    assert!(cached_public(&db, "x").expect("empty db").is_empty());
    let put = |ns: &str, name: &str, uplink: &str| {
        let body = serde_json::to_vec(&doc(name, "gizmo maker", &[])).expect("json");
        db.put_packument(&pnpr_store::PackumentRow {
            ns: ns.into(),
            name: name.into(),
            uplink: uplink.into(),
            body,
            etag: None,
            last_modified: None,
            fetched_at_ms: 0,
        })
        .expect("insert");
    };
    put("public", "gizmo", "up");
    put("public", "gizmo", "second");
    put("public", "other", "up");
    put("u-secret", "private-gizmo", "corp");
    let docs = cached_public(&db, "gizmo").expect("read");
    let found: Vec<&str> = docs.iter().filter_map(|d| d["name"].as_str()).collect();
    // `other` matches through its description; the private row never shows.
    assert_eq!(found, vec!["gizmo", "other"]);
}
