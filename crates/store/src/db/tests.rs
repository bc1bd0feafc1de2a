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

fn row(ns: &str, name: &str, body: &[u8], at: i64) -> PackumentRow {
    PackumentRow {
        ns: ns.into(),
        name: name.into(),
        uplink: "up".into(),
        body: body.to_vec(),
        etag: Some(format!("\"{at}\"")),
        last_modified: Some("Tue, 01 Dec 2026 00:00:00 GMT".into()),
        fetched_at_ms: at,
    }
}

fn count(db: &MetaDb, table: &str) -> i64 {
    db.conn()
        .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

#[test]
fn bodies_live_out_of_line_and_are_reused_then_freed() {
    let dir = tempfile::tempdir().unwrap();
    let db = MetaDb::open(&dir.path().join("meta.sqlite")).unwrap();
    db.put_packument(&row("public", "a", b"{\"v\":1}", 1))
        .unwrap();
    db.put_packument(&row("public", "b", b"{}", 1)).unwrap();
    // A replacement reuses the entry's body row; nothing is orphaned.
    db.put_packument(&row("public", "a", b"{\"v\":2}", 2))
        .unwrap();
    assert_eq!(count(&db, "packument_bodies"), 2);
    assert_eq!(
        db.packument("public", "a", "up").unwrap().unwrap().body,
        b"{\"v\":2}"
    );
    db.delete_packument("public", "a", "up").unwrap();
    db.delete_packument("public", "missing", "up").unwrap();
    assert_eq!(count(&db, "packument_bodies"), 1);
    assert_eq!(count(&db, "packument_index"), 1);
    assert!(db.packument("public", "b", "up").unwrap().is_some());
}

#[test]
fn the_inline_layout_is_migrated_once_and_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.sqlite");
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE packuments (
                ns TEXT NOT NULL, name TEXT NOT NULL, uplink TEXT NOT NULL,
                body BLOB NOT NULL, etag TEXT, last_modified TEXT,
                fetched_at_ms INTEGER NOT NULL,
                PRIMARY KEY (ns, name, uplink)
            ) WITHOUT ROWID;",
        )
        .unwrap();
        for (i, ns) in ["public", "~corp"].iter().enumerate() {
            let r = row(ns, "@s/p", format!("{{\"i\":{i}}}").as_bytes(), 7);
            conn.execute(
                "INSERT INTO packuments VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![r.ns, r.name, r.uplink, r.body, r.etag, r.last_modified, 7],
            )
            .unwrap();
        }
    }
    let db = MetaDb::open(&path).unwrap();
    for (i, ns) in ["public", "~corp"].iter().enumerate() {
        let want = row(ns, "@s/p", format!("{{\"i\":{i}}}").as_bytes(), 7);
        assert_eq!(db.packument(ns, "@s/p", "up").unwrap(), Some(want));
    }
    let old: i64 = db
        .conn()
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name = 'packuments'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(old, 0);
    drop(db);
    // Reopening finds nothing left to migrate and keeps the entries.
    let db = MetaDb::open(&path).unwrap();
    assert_eq!(count(&db, "packument_index"), 2);
}

/// Lookups of small entries next to a huge one cost what they cost without
/// it (the old inline layout read the huge row on neighbouring misses).
#[test]
fn a_huge_body_does_not_slow_neighbouring_lookups() {
    let dir = tempfile::tempdir().unwrap();
    let db = MetaDb::open(&dir.path().join("meta.sqlite")).unwrap();
    for i in 0..200 {
        db.put_packument(&row("public", &format!("pkg-{i:03}"), b"{}", 1))
            .unwrap();
    }
    let time_lookups = |db: &MetaDb| {
        let t = std::time::Instant::now();
        for i in 0..2000 {
            // Misses and hits around the huge key's position.
            let name = format!("pkg-1{:02}{}", i % 100, if i % 2 == 0 { "x" } else { "" });
            let _ = db.packument("public", &name, "up").unwrap();
        }
        t.elapsed()
    };
    let before = time_lookups(&db);
    let huge = vec![b' '; 30 * 1024 * 1024];
    db.put_packument(&row("public", "pkg-150", &huge, 1))
        .unwrap();
    let after = time_lookups(&db);
    eprintln!("2000 neighbouring lookups: {before:?} before, {after:?} after a 30 MB row");
    assert!(
        after < before * 3 + std::time::Duration::from_millis(50),
        "{before:?} -> {after:?}"
    );
}

fn meta(name: &str, at: i64) -> PackumentMeta {
    PackumentMeta {
        ns: "public".into(),
        name: name.into(),
        uplink: "up".into(),
        etag: None,
        last_modified: None,
        fetched_at_ms: at,
    }
}

fn spill(db: &MetaDb, body: &[u8]) -> std::path::PathBuf {
    let p = db
        .spill_dir()
        .join(format!("{:x}.tmp", rand::random::<u64>()));
    std::fs::write(&p, body).unwrap();
    p
}

fn body_files(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("packuments"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
        .count()
}

#[test]
fn file_bodies_are_taken_over_replaced_and_freed() {
    let dir = tempfile::tempdir().unwrap();
    let db = MetaDb::open(&dir.path().join("meta.sqlite")).unwrap();
    let first = spill(&db, b"{\"big\":1}");
    db.put_packument_file(&meta("a", 1), &first).unwrap();
    assert!(!first.exists(), "the spilled file was taken over");
    let entry = db.entry("public", "a", "up").unwrap().unwrap();
    let StoredBody::File { mut file, len } = entry.body else {
        panic!("inline body");
    };
    assert_eq!(len, 9);
    // Replacing it (by a file, then inline) removes the old file, but a
    // reader that already opened it still reads all of it.
    db.put_packument_file(&meta("a", 2), &spill(&db, b"{\"big\":2}"))
        .unwrap();
    assert_eq!(body_files(dir.path()), 1);
    let mut old = String::new();
    std::io::Read::read_to_string(&mut file, &mut old).unwrap();
    assert_eq!(old, "{\"big\":1}");
    assert_eq!(
        db.packument("public", "a", "up").unwrap().unwrap().body,
        b"{\"big\":2}"
    );
    db.put_packument(&row("public", "a", b"{}", 3)).unwrap();
    assert_eq!(body_files(dir.path()), 0);
    db.put_packument_file(&meta("b", 1), &spill(&db, b"{}"))
        .unwrap();
    db.delete_packument("public", "b", "up").unwrap();
    assert_eq!(body_files(dir.path()), 0);
    assert_eq!(count(&db, "packument_bodies"), 1);
}

#[test]
fn unnamed_body_files_and_spills_are_swept_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.sqlite");
    {
        let db = MetaDb::open(&path).unwrap();
        db.put_packument_file(&meta("kept", 1), &spill(&db, b"{}"))
            .unwrap();
        spill(&db, b"left over");
    }
    std::fs::write(dir.path().join("packuments/orphan.json"), b"{}").unwrap();
    let db = MetaDb::open(&path).unwrap();
    assert_eq!(body_files(dir.path()), 1);
    assert_eq!(std::fs::read_dir(db.spill_dir()).unwrap().count(), 0);
    assert!(db.entry("public", "kept", "up").unwrap().is_some());
}
