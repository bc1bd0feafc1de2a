//! SQLite metadata database: cached upstream packuments, one entry per
//! (namespace, package, uplink).
//!
//! Entries are keyed by namespace so the shared public mirror and each private
//! uplink namespace never read each other's data. Every write is one
//! transaction, so a crash leaves the old entry or the new.
//!
//! Invariant: a document's size never taxes lookups of other documents. The
//! small per-entry facts (validators, fetch time, body id) live in the keyed
//! `packument_index` table; bodies, which can be tens of MB, live out of line
//! in the rowid table `packument_bodies` and are read only when that one
//! entry is asked for. A revalidation (`touch`) rewrites only the index row.
//!
//! Bodies too large to hold in memory (a caller's choice) are files under
//! `packuments/` next to the database, named in `packument_bodies.file`; a
//! file is placed before the transaction that names it commits and removed
//! only after the transaction that stops naming it commits, and a reader
//! opens it under the connection lock, so a named file is always complete
//! and readable. Files no row names (a crash between the two) are swept at
//! open.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension, Transaction};

use crate::Result;

/// One upstream's packument as last fetched, with its validators.
#[derive(Debug, Clone, PartialEq)]
pub struct PackumentRow {
    pub ns: String,
    pub name: String,
    pub uplink: String,
    /// Full packument JSON exactly as the uplink sent it.
    pub body: Vec<u8>,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub fetched_at_ms: i64,
}

/// The facts of one entry besides its body.
#[derive(Debug, Clone, PartialEq)]
pub struct PackumentMeta {
    pub ns: String,
    pub name: String,
    pub uplink: String,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub fetched_at_ms: i64,
}

/// Where an entry's body is.
#[derive(Debug)]
pub enum StoredBody {
    /// Held in SQLite, read whole.
    Inline(Vec<u8>),
    /// A body file, already open (so a later replacement cannot remove it
    /// from under the reader), and its length.
    File { file: File, len: u64 },
}

/// One entry as stored: its facts and its body.
#[derive(Debug)]
pub struct PackumentEntry {
    pub meta: PackumentMeta,
    pub body: StoredBody,
}

/// The metadata database. One connection behind a mutex: statements are
/// short (bodies are read by rowid), and SQLite serialises writers anyway.
pub struct MetaDb {
    conn: Mutex<Connection>,
    /// The database file, for read-only side connections (search).
    path: PathBuf,
    /// Body files (`<dir of the database>/packuments`).
    bodies: PathBuf,
    /// Where callers write a body before [`MetaDb::put_packument_file`].
    spill: PathBuf,
}

impl std::fmt::Debug for MetaDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MetaDb")
    }
}

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS packument_bodies (
        id INTEGER PRIMARY KEY,
        body BLOB NOT NULL,
        file TEXT
    );
    CREATE TABLE IF NOT EXISTS packument_index (
        ns TEXT NOT NULL,
        name TEXT NOT NULL,
        uplink TEXT NOT NULL,
        etag TEXT,
        last_modified TEXT,
        fetched_at_ms INTEGER NOT NULL,
        body_id INTEGER NOT NULL,
        PRIMARY KEY (ns, name, uplink)
    ) WITHOUT ROWID;";

impl MetaDb {
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        add_file_column(&conn)?;
        migrate_inline_bodies(&mut conn)?;
        let bodies = path
            .parent()
            .unwrap_or_else(|| Path::new("."))
            .join("packuments");
        let spill = bodies.join("tmp");
        std::fs::create_dir_all(&spill)?;
        crate::blob::sweep_temp_dir(&spill, std::time::Duration::ZERO);
        sweep_unnamed_bodies(&conn, &bodies)?;
        Ok(Self {
            conn: Mutex::new(conn),
            path: path.to_path_buf(),
            bodies,
            spill,
        })
    }

    /// See [`crate::MetaBackend::public_search_candidates`]. Runs on a
    /// read-only connection of its own, so a scan never holds the writer's
    /// lock the mirror's reads and writes wait on.
    pub fn public_search_candidates(
        &self,
        word: &str,
        limit: usize,
        max_body: usize,
    ) -> Result<Vec<(String, Vec<u8>)>> {
        let conn = Connection::open_with_flags(
            &self.path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let max_body = i64::try_from(max_body).unwrap_or(i64::MAX);
        let mut stmt = conn.prepare(
            "SELECT i.name, CASE WHEN b.file IS NULL THEN b.body ELSE x'' END
               FROM packument_index i JOIN packument_bodies b ON b.id = i.body_id
             WHERE i.ns = 'public'
               AND (?1 = '' OR instr(lower(i.name), ?1) > 0
                    OR (b.file IS NULL AND length(b.body) <= ?3
                        AND instr(lower(CAST(b.body AS TEXT)), ?1) > 0))
             ORDER BY i.name LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![word, limit, max_body], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The directory a body file is written in before
    /// [`MetaDb::put_packument_file`] takes it (same filesystem as the
    /// body files, so taking it is a rename).
    pub fn spill_dir(&self) -> &Path {
        &self.spill
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite inconsistent
        // (statements are atomic), so a poisoned lock is still usable.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The entry with its body read whole (file bodies too).
    pub fn packument(&self, ns: &str, name: &str, uplink: &str) -> Result<Option<PackumentRow>> {
        self.entry(ns, name, uplink)?
            .map(crate::meta::read_whole)
            .transpose()
    }

    /// The entry, its body inline or as an opened file.
    pub fn entry(&self, ns: &str, name: &str, uplink: &str) -> Result<Option<PackumentEntry>> {
        let conn = self.conn();
        // The hot path of every metadata read: keep the statement prepared.
        let mut stmt = conn.prepare_cached(
            "SELECT b.body, b.file, i.etag, i.last_modified, i.fetched_at_ms
             FROM packument_index i JOIN packument_bodies b ON b.id = i.body_id
             WHERE i.ns = ?1 AND i.name = ?2 AND i.uplink = ?3",
        )?;
        let row = stmt
            .query_row(params![ns, name, uplink], |r| {
                let meta = PackumentMeta {
                    ns: ns.to_string(),
                    name: name.to_string(),
                    uplink: uplink.to_string(),
                    etag: r.get(2)?,
                    last_modified: r.get(3)?,
                    fetched_at_ms: r.get(4)?,
                };
                Ok((
                    meta,
                    r.get::<_, Vec<u8>>(0)?,
                    r.get::<_, Option<String>>(1)?,
                ))
            })
            .optional()?;
        let Some((meta, inline, file)) = row else {
            return Ok(None);
        };
        let body = match file {
            None => StoredBody::Inline(inline),
            // Opened under the lock: see the module invariant.
            Some(file) => {
                let file = File::open(self.bodies.join(file))?;
                let len = file.metadata()?.len();
                StoredBody::File { file, len }
            }
        };
        Ok(Some(PackumentEntry { meta, body }))
    }

    pub fn put_packument(&self, row: &PackumentRow) -> Result<()> {
        let meta = PackumentMeta {
            ns: row.ns.clone(),
            name: row.name.clone(),
            uplink: row.uplink.clone(),
            etag: row.etag.clone(),
            last_modified: row.last_modified.clone(),
            fetched_at_ms: row.fetched_at_ms,
        };
        let old = {
            let mut conn = self.conn();
            let tx = conn.transaction()?;
            let old = put_in(&tx, &meta, Body::Inline(&row.body))?;
            tx.commit()?;
            old
        };
        self.remove_body_file(old);
        Ok(())
    }

    /// Stores an entry whose body is the file `spilled` (written in
    /// [`MetaDb::spill_dir`]), which this call takes over: it becomes a body
    /// file, or is removed when the entry cannot be stored.
    pub fn put_packument_file(&self, meta: &PackumentMeta, spilled: &Path) -> Result<()> {
        let file = format!("{:032x}.json", rand::random::<u128>());
        let placed = self.bodies.join(&file);
        if let Err(e) = std::fs::rename(spilled, &placed) {
            let _ = std::fs::remove_file(spilled);
            return Err(e.into());
        }
        let stored = (|| {
            let mut conn = self.conn();
            let tx = conn.transaction()?;
            let old = put_in(&tx, meta, Body::File(&file))?;
            tx.commit()?;
            Ok(old)
        })();
        match stored {
            Ok(old) => {
                self.remove_body_file(old);
                Ok(())
            }
            Err(e) => {
                let _ = std::fs::remove_file(&placed);
                Err(e)
            }
        }
    }

    /// Removes a body file no committed row names any more.
    fn remove_body_file(&self, file: Option<String>) {
        if let Some(file) = file {
            if let Err(e) = std::fs::remove_file(self.bodies.join(&file)) {
                tracing::warn!(file, error = %e, "could not remove a replaced packument body");
            }
        }
    }

    /// Marks a row fresh again after a `304 Not Modified`.
    pub fn touch_packument(&self, ns: &str, name: &str, uplink: &str, at_ms: i64) -> Result<()> {
        self.conn().execute(
            "UPDATE packument_index SET fetched_at_ms = ?4
             WHERE ns = ?1 AND name = ?2 AND uplink = ?3",
            params![ns, name, uplink, at_ms],
        )?;
        Ok(())
    }

    pub fn delete_packument(&self, ns: &str, name: &str, uplink: &str) -> Result<()> {
        let old = {
            let mut conn = self.conn();
            let tx = conn.transaction()?;
            let mut old = None;
            if let Some((id, file)) = body_id(&tx, ns, name, uplink)? {
                tx.execute("DELETE FROM packument_bodies WHERE id = ?1", params![id])?;
                tx.execute(
                    "DELETE FROM packument_index WHERE ns = ?1 AND name = ?2 AND uplink = ?3",
                    params![ns, name, uplink],
                )?;
                old = file;
            }
            tx.commit()?;
            old
        };
        self.remove_body_file(old);
        Ok(())
    }

    /// Cheap liveness probe for the readiness endpoint.
    pub fn ping(&self) -> Result<()> {
        self.conn().query_row("SELECT 1", [], |_| Ok(()))?;
        Ok(())
    }
}

/// The entry's body row id and body file name, if it has a row.
fn body_id(
    tx: &Transaction<'_>,
    ns: &str,
    name: &str,
    uplink: &str,
) -> Result<Option<(i64, Option<String>)>> {
    Ok(tx
        .query_row(
            "SELECT i.body_id, b.file FROM packument_index i
             LEFT JOIN packument_bodies b ON b.id = i.body_id
             WHERE i.ns = ?1 AND i.name = ?2 AND i.uplink = ?3",
            params![ns, name, uplink],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?)
}

/// A body being stored: bytes for SQLite, or the name of a placed file.
enum Body<'a> {
    Inline(&'a [u8]),
    File(&'a str),
}

/// Upserts one entry inside `tx`, reusing its body row when it has one.
/// Returns the body file the entry named before, which the caller removes
/// once `tx` has committed.
fn put_in(tx: &Transaction<'_>, m: &PackumentMeta, body: Body<'_>) -> Result<Option<String>> {
    let (blob, file): (&[u8], Option<&str>) = match body {
        Body::Inline(b) => (b, None),
        Body::File(f) => (&[], Some(f)),
    };
    let (id, old) = match body_id(tx, &m.ns, &m.name, &m.uplink)? {
        Some((id, old)) => {
            tx.execute(
                "UPDATE packument_bodies SET body = ?2, file = ?3 WHERE id = ?1",
                params![id, blob, file],
            )?;
            (id, old)
        }
        None => {
            tx.execute(
                "INSERT INTO packument_bodies (body, file) VALUES (?1, ?2)",
                params![blob, file],
            )?;
            (tx.last_insert_rowid(), None)
        }
    };
    tx.execute(
        "INSERT INTO packument_index
           (ns, name, uplink, etag, last_modified, fetched_at_ms, body_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (ns, name, uplink) DO UPDATE SET etag = excluded.etag,
           last_modified = excluded.last_modified, fetched_at_ms = excluded.fetched_at_ms,
           body_id = excluded.body_id",
        params![
            m.ns,
            m.name,
            m.uplink,
            m.etag,
            m.last_modified,
            m.fetched_at_ms,
            id
        ],
    )?;
    Ok(old.filter(|o| Some(o.as_str()) != file))
}

/// Adds `packument_bodies.file` to databases created before body files.
fn add_file_column(conn: &Connection) -> Result<()> {
    let has: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM pragma_table_info('packument_bodies') WHERE name = 'file')",
        [],
        |r| r.get(0),
    )?;
    if !has {
        conn.execute_batch("ALTER TABLE packument_bodies ADD COLUMN file TEXT;")?;
    }
    Ok(())
}

/// Removes body files no row names (placed, then the naming transaction
/// never committed).
fn sweep_unnamed_bodies(conn: &Connection, bodies: &Path) -> Result<()> {
    let named: std::collections::HashSet<String> = {
        let mut stmt = conn.prepare("SELECT file FROM packument_bodies WHERE file IS NOT NULL")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    for entry in std::fs::read_dir(bodies)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".json") && !named.contains(&name) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    Ok(())
}

/// Moves entries of the old single-table layout (`packuments`, bodies
/// inline in a WITHOUT ROWID table) into the index + bodies layout, one row
/// at a time, and drops the old table, all in one transaction.
fn migrate_inline_bodies(conn: &mut Connection) -> Result<()> {
    let old: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'packuments')",
        [],
        |r| r.get(0),
    )?;
    if !old {
        return Ok(());
    }
    let tx = conn.transaction()?;
    let keys: Vec<(String, String, String)> = {
        let mut stmt = tx.prepare("SELECT ns, name, uplink FROM packuments")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let moved = keys.len();
    for (ns, name, uplink) in keys {
        let row = tx.query_row(
            "SELECT body, etag, last_modified, fetched_at_ms FROM packuments
             WHERE ns = ?1 AND name = ?2 AND uplink = ?3",
            params![ns, name, uplink],
            |r| {
                Ok(PackumentRow {
                    ns: ns.clone(),
                    name: name.clone(),
                    uplink: uplink.clone(),
                    body: r.get(0)?,
                    etag: r.get(1)?,
                    last_modified: r.get(2)?,
                    fetched_at_ms: r.get(3)?,
                })
            },
        )?;
        let meta = PackumentMeta {
            ns: row.ns,
            name: row.name,
            uplink: row.uplink,
            etag: row.etag,
            last_modified: row.last_modified,
            fetched_at_ms: row.fetched_at_ms,
        };
        put_in(&tx, &meta, Body::Inline(&row.body))?;
    }
    tx.execute_batch("DROP TABLE packuments;")?;
    tx.commit()?;
    tracing::info!(moved, "metadata: packument bodies moved out of line");
    Ok(())
}

#[cfg(test)]
mod tests;
