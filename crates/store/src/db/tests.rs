use super::*;

#[test]
fn rows_are_namespaced_and_upserted() {
    let dir = tempfile::tempdir().unwrap();
    let db = MetaDb::open(&dir.path().join("meta.sqlite")).unwrap();
    let mut row = PackumentRow {
        ns: "public".into(),
        name: "@a/b".into(),
        uplink: "up".into(),
        body: b"{}".to_vec(),
        etag: Some("\"1\"".into()),
        last_modified: None,
        fetched_at_ms: 1,
    };
    db.put_packument(&row).unwrap();
    assert_eq!(
        db.packument("public", "@a/b", "up").unwrap(),
        Some(row.clone())
    );
    assert_eq!(db.packument("~x", "@a/b", "up").unwrap(), None);
    row.body = b"{\"v\":1}".to_vec();
    db.put_packument(&row).unwrap();
    db.touch_packument("public", "@a/b", "up", 99).unwrap();
    let got = db.packument("public", "@a/b", "up").unwrap().unwrap();
    assert_eq!(got.body, row.body);
    assert_eq!(got.fetched_at_ms, 99);
    db.delete_packument("public", "@a/b", "up").unwrap();
    assert_eq!(db.packument("public", "@a/b", "up").unwrap(), None);
}
