//! The PostgreSQL metadata backend against a real, throwaway PostgreSQL
//! (the e2e harness's `Postgres`): rows keyed and namespaced like the
//! embedded database, writes atomic and newest-fetch-wins, large bodies
//! stored as chunks and read back by another node through a checked local
//! copy that never outlives the row it came from.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use pnpr_e2e::postgres::{Postgres, USER};
use pnpr_pg::{ConnectOptions, Pool, Secret};
use pnpr_store::postgres::{PgMeta, CHUNK};
use pnpr_store::{MetaBackend, PackumentMeta, PackumentRow, StoredBody};

fn pool(pg: &Postgres, db: &str) -> Arc<Pool> {
    named_pool(pg, db, "pnpr-store-test")
}

fn named_pool(pg: &Postgres, db: &str, app: &str) -> Arc<Pool> {
    let options = ConnectOptions {
        host: "127.0.0.1".into(),
        port: pg.port,
        user: USER.into(),
        password: Some(Secret::new(pg.password.clone())),
        dbname: db.into(),
        application_name: app.into(),
        tls: Default::default(),
    };
    Arc::new(Pool::connect(options, 2).expect("connect"))
}

/// Two nodes on one database, each with its own local disk.
struct Nodes {
    a: PgMeta,
    b: PgMeta,
    pool: Arc<Pool>,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
    pg: Postgres,
}

fn nodes() -> Nodes {
    let pg = Postgres::start();
    pg.create_database("mirror");
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let pool = pool(&pg, "mirror");
    let a = PgMeta::open(Arc::clone(&pool), da.path()).expect("open a");
    let b = PgMeta::open(self::pool(&pg, "mirror"), db.path()).expect("open b");
    Nodes {
        a,
        b,
        pool,
        _dirs: (da, db),
        pg,
    }
}

fn row(ns: &str, name: &str, body: &[u8], at: i64) -> PackumentRow {
    PackumentRow {
        ns: ns.into(),
        name: name.into(),
        uplink: "up".into(),
        body: body.to_vec(),
        etag: Some(format!("\"{at}\"")),
        last_modified: None,
        fetched_at_ms: at,
    }
}

fn meta(ns: &str, name: &str, at: i64) -> PackumentMeta {
    PackumentMeta {
        ns: ns.into(),
        name: name.into(),
        uplink: "up".into(),
        etag: Some(format!("\"{at}\"")),
        last_modified: Some("Tue, 01 Dec 2026 00:00:00 GMT".into()),
        fetched_at_ms: at,
    }
}

fn spill(db: &PgMeta, body: &[u8]) -> std::path::PathBuf {
    let path = db.spill_dir().join(format!("{}.tmp", body.len()));
    std::fs::write(&path, body).unwrap();
    path
}

fn count(pool: &Pool, sql: &'static str) -> i64 {
    pool.run(move |c| Ok(c.query_one(sql, &[])?.get(0)))
        .expect("count")
}

fn files(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| d.count())
}

/// Deterministic, poorly compressible bytes.
fn big(len: usize, seed: u8) -> Vec<u8> {
    let mut x = u32::from(seed) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

#[test]
fn rows_are_shared_namespaced_touched_and_deleted() {
    let n = nodes();
    n.a.put_packument(&row("public", "left-pad", b"{\"v\":1}", 100))
        .unwrap();
    // Node B sees A's row, validators and all.
    let got = n.b.packument("public", "left-pad", "up").unwrap().unwrap();
    assert_eq!(got, row("public", "left-pad", b"{\"v\":1}", 100));
    // Another namespace (a private uplink's) and another uplink never see it.
    assert!(n.b.entry("ns-corp", "left-pad", "up").unwrap().is_none());
    assert!(n.b.entry("public", "left-pad", "other").unwrap().is_none());
    n.b.put_packument(&row("ns-corp", "left-pad", b"{\"corp\":1}", 100))
        .unwrap();
    let public = n.a.packument("public", "left-pad", "up").unwrap().unwrap();
    assert_eq!(public.body, b"{\"v\":1}");
    let corp = n.a.packument("ns-corp", "left-pad", "up").unwrap().unwrap();
    assert_eq!(corp.body, b"{\"corp\":1}");

    // A 304 on B marks the row fresh for A too; never backwards.
    n.b.touch_packument("public", "left-pad", "up", 500)
        .unwrap();
    n.b.touch_packument("public", "left-pad", "up", 400)
        .unwrap();
    let got = n.a.packument("public", "left-pad", "up").unwrap().unwrap();
    assert_eq!(
        (got.fetched_at_ms, got.body.as_slice()),
        (500, &b"{\"v\":1}"[..])
    );

    // A later fetch replaces; an earlier one (a slow node) never does.
    n.a.put_packument(&row("public", "left-pad", b"{\"v\":2}", 600))
        .unwrap();
    n.b.put_packument(&row("public", "left-pad", b"{\"v\":0}", 550))
        .unwrap();
    let got = n.b.packument("public", "left-pad", "up").unwrap().unwrap();
    assert_eq!(got, row("public", "left-pad", b"{\"v\":2}", 600));

    // Deleted on B: gone for A, the other namespace untouched.
    n.b.delete_packument("public", "left-pad", "up").unwrap();
    assert!(n.a.entry("public", "left-pad", "up").unwrap().is_none());
    assert!(n.a.entry("ns-corp", "left-pad", "up").unwrap().is_some());
    n.a.ping().unwrap();
}

fn read_file(body: StoredBody) -> Vec<u8> {
    match body {
        StoredBody::File { mut file, len } => {
            let mut out = Vec::new();
            file.read_to_end(&mut out).unwrap();
            assert_eq!(out.len() as u64, len);
            out
        }
        StoredBody::Inline(_) => panic!("a spilled body came back inline"),
    }
}

#[test]
fn large_bodies_are_chunks_read_back_through_checked_local_copies() {
    let n = nodes();
    let body = big(3 * CHUNK + 12_345, 7);
    n.a.put_packument_file(&meta("public", "huge", 100), &spill(&n.a, &body))
        .unwrap();
    assert_eq!(files(n.a.spill_dir()), 0, "the spill was taken over");
    assert_eq!(count(&n.pool, "SELECT count(*) FROM pnpr_mirror_chunks"), 4);
    let inline = "SELECT count(*) FROM pnpr_mirror_packuments WHERE body IS NOT NULL";
    assert_eq!(count(&n.pool, inline), 0);

    // A serves its own copy; B streams the chunks into a local file.
    let a = n.a.entry("public", "huge", "up").unwrap().unwrap();
    assert_eq!(read_file(a.body), body);
    let b = n.b.entry("public", "huge", "up").unwrap().unwrap();
    assert_eq!(b.meta, meta("public", "huge", 100));
    let b_local = n.b.spill_dir().parent().unwrap().join("bodies");
    assert_eq!(read_file(b.body), body);
    assert_eq!(files(&b_local), 1);
    // Not visible from another namespace.
    assert!(n.b.entry("ns-corp", "huge", "up").unwrap().is_none());

    // A replaces it with another large body while B holds the old one open:
    // B's reader finishes the old bytes, B's next read gets the new ones.
    let held = n.b.entry("public", "huge", "up").unwrap().unwrap();
    let body2 = big(2 * CHUNK + 1, 9);
    n.a.put_packument_file(&meta("public", "huge", 200), &spill(&n.a, &body2))
        .unwrap();
    assert_eq!(count(&n.pool, "SELECT count(*) FROM pnpr_mirror_chunks"), 3);
    let fresh = n.b.entry("public", "huge", "up").unwrap().unwrap();
    assert_eq!(fresh.meta.fetched_at_ms, 200);
    assert_eq!(read_file(fresh.body), body2);
    assert_eq!(read_file(held.body), body);
    assert_eq!(files(&b_local), 1, "the old local copy was removed");

    // Small again: inline, chunks and local copies gone.
    n.a.put_packument(&row("public", "huge", b"{}", 300))
        .unwrap();
    assert_eq!(count(&n.pool, "SELECT count(*) FROM pnpr_mirror_chunks"), 0);
    let small = n.b.entry("public", "huge", "up").unwrap().unwrap();
    assert!(matches!(small.body, StoredBody::Inline(ref b) if b == b"{}"));
    assert_eq!(files(&b_local), 0);

    // Large again, then deleted: nothing left behind.
    n.b.put_packument_file(&meta("public", "huge", 400), &spill(&n.b, &body))
        .unwrap();
    assert_eq!(
        read_file(n.a.entry("public", "huge", "up").unwrap().unwrap().body),
        body
    );
    n.a.delete_packument("public", "huge", "up").unwrap();
    assert_eq!(count(&n.pool, "SELECT count(*) FROM pnpr_mirror_chunks"), 0);
    assert!(n.b.entry("public", "huge", "up").unwrap().is_none());
    assert_eq!(files(&b_local), 0);
}

#[test]
fn an_older_large_fetch_is_discarded_and_its_spill_removed() {
    let n = nodes();
    n.a.put_packument(&row("public", "p", b"{\"new\":1}", 900))
        .unwrap();
    let body = big(CHUNK + 1, 3);
    let spilled = spill(&n.b, &body);
    n.b.put_packument_file(&meta("public", "p", 800), &spilled)
        .unwrap();
    assert!(!spilled.exists());
    assert_eq!(count(&n.pool, "SELECT count(*) FROM pnpr_mirror_chunks"), 0);
    let got = n.b.packument("public", "p", "up").unwrap().unwrap();
    assert_eq!(got.body, b"{\"new\":1}");
}

#[test]
fn a_write_cut_off_mid_body_leaves_the_old_entry_and_no_chunks() {
    let n = nodes();
    let dir = tempfile::tempdir().unwrap();
    let cut = PgMeta::open(named_pool(&n.pg, "mirror", "node-cut"), dir.path()).unwrap();
    n.a.put_packument(&row("public", "p", b"{\"old\":1}", 100))
        .unwrap();

    // Every session of the writing node that is inserting chunks is
    // terminated (the first attempt and the pool's retry alike), as a
    // node killed mid-write would be.
    let killer = Arc::clone(&n.pool);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopped = Arc::clone(&stop);
    let kills = std::thread::spawn(move || {
        let mut kills = 0i64;
        while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
            kills += killer
                .run(|c| {
                    Ok(c.query_one(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                         WHERE application_name = 'node-cut' AND query LIKE 'INSERT INTO pnpr_mirror_chunks%'
                           AND state <> 'idle'",
                        &[],
                    )?
                    .get::<_, i64>(0))
                })
                .unwrap_or(0);
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        kills
    });
    let spilled = spill(&cut, &big(32 * CHUNK, 4));
    let put = cut.put_packument_file(&meta("public", "p", 200), &spilled);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(kills.join().unwrap() >= 1, "the write was never cut off");
    assert!(put.is_err(), "a cut-off write must not report success");
    assert!(!spilled.exists(), "the spill is removed");

    // The old entry, whole, and none of the cut write's chunks.
    let got = n.b.packument("public", "p", "up").unwrap().unwrap();
    assert_eq!(got, row("public", "p", b"{\"old\":1}", 100));
    assert_eq!(count(&n.pool, "SELECT count(*) FROM pnpr_mirror_chunks"), 0);
}

/// Peak resident set of this process so far, in MiB (Linux `VmHWM`).
fn peak_rss_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb / 1024)
}

fn timed<T>(f: impl FnOnce() -> T) -> (T, std::time::Duration) {
    let t = std::time::Instant::now();
    let v = f();
    (v, t.elapsed())
}

/// Figures for the RFC, not a pass/fail test:
/// `cargo test -p pnpr-store --test postgres measure -- --ignored --nocapture`
#[test]
#[ignore]
fn measure() {
    let n = nodes();
    let size = 128usize << 20;
    let spilled = n.a.spill_dir().join("huge.tmp");
    {
        let mut f = std::fs::File::create(&spilled).unwrap();
        for i in 0..(size / CHUNK) {
            std::io::Write::write_all(&mut f, &big(CHUNK, i as u8)).unwrap();
        }
    }
    let before = peak_rss_mib();
    let ((), put) = timed(|| {
        n.a.put_packument_file(&meta("public", "huge", 1), &spilled)
            .unwrap()
    });
    let (first, get) = timed(|| n.b.entry("public", "huge", "up").unwrap().unwrap());
    assert!(matches!(first.body, StoredBody::File { len, .. } if len == size as u64));
    let (_, again) = timed(|| n.b.entry("public", "huge", "up").unwrap().unwrap());
    println!(
        "pg: 128 MiB chunked put {} ms, first read on the other node {} ms, next read {} us; peak RSS {} -> {} MiB",
        put.as_millis(),
        get.as_millis(),
        again.as_micros(),
        before,
        peak_rss_mib()
    );
    let dir = tempfile::tempdir().unwrap();
    let sqlite = pnpr_store::MetaDb::open(&dir.path().join("m.sqlite")).unwrap();
    let small = big(2048, 1);
    for (label, backend) in [("sqlite", &sqlite as &dyn MetaBackend), ("pg", &n.a)] {
        backend
            .put_packument(&row("public", "s", &small, 1))
            .unwrap();
        let reads = 2000;
        let ((), t) = timed(|| {
            for _ in 0..reads {
                backend.entry("public", "s", "up").unwrap().unwrap();
            }
        });
        println!(
            "{label}: 2 KiB inline read {:.0} us",
            t.as_micros() as f64 / f64::from(reads)
        );
        let four = big(4 << 20, 2);
        let ((), t) = timed(|| {
            backend
                .put_packument(&row("public", "m", &four, 1))
                .unwrap()
        });
        let (_, r) = timed(|| backend.entry("public", "m", "up").unwrap().unwrap());
        println!(
            "{label}: 4 MiB inline put {} ms, read {} ms",
            t.as_millis(),
            r.as_millis()
        );
    }
    let ((), t) = timed(|| {
        for _ in 0..2000 {
            n.a.ping().unwrap();
        }
    });
    println!(
        "pg: ping (pool round trip) {:.0} us",
        t.as_micros() as f64 / 2000.0
    );
}

/// `npm search` candidates: only the public namespace, matched on the name
/// or (inline bodies up to the bound) the body, case-insensitively; a
/// chunked body matches by name only and comes back empty. Both backends
/// answer the same.
#[test]
fn search_candidates_read_only_the_public_namespace() {
    let n = nodes();
    let dir = tempfile::tempdir().unwrap();
    let sqlite = pnpr_store::MetaDb::open(&dir.path().join("metadata.sqlite")).unwrap();
    let backends: [&dyn MetaBackend; 2] = [&n.a, &sqlite];
    for db in backends {
        db.put_packument(&row("public", "gizmo", br#"{"description":"x"}"#, 1))
            .unwrap();
        db.put_packument(&row(
            "public",
            "other",
            br#"{"description":"A GIZMO maker"}"#,
            1,
        ))
        .unwrap();
        db.put_packument(&row(
            "u-secret",
            "private-gizmo",
            br#"{"description":"gizmo"}"#,
            1,
        ))
        .unwrap();
        let big = format!(r#"{{"description":"gizmo {}"}}"#, "y".repeat(64));
        db.put_packument(&row("public", "padded", big.as_bytes(), 1))
            .unwrap();
        db.put_packument_file(&meta("public", "huge-gizmo", 1), &spill_in(db, &[b'z'; 64]))
            .unwrap();
    }
    for db in [&n.b as &dyn MetaBackend, &sqlite] {
        let found = db.public_search_candidates("gizmo", 100, 40).unwrap();
        let names: Vec<&str> = found.iter().map(|(n, _)| n.as_str()).collect();
        // `padded` is over the body bound, so only its name could match.
        assert_eq!(names, ["gizmo", "huge-gizmo", "other"], "{db:?}");
        assert!(
            found[1].1.is_empty(),
            "a file body is never read for search"
        );
        assert_eq!(db.public_search_candidates("", 2, 40).unwrap().len(), 2);
    }
}

fn spill_in(db: &dyn MetaBackend, body: &[u8]) -> std::path::PathBuf {
    let path = db.spill_dir().join(format!("s{}", body.len()));
    std::fs::write(&path, body).unwrap();
    path
}
