//! The embedded backend: `<storage>/hosted.sqlite`, one process.
//!
//! Owns the `packages` and `tarballs` tables of that file. Invariants: one
//! writer at a time (a mutex around the write connection, plus
//! `BEGIN IMMEDIATE`), so a transaction's read and write see no other
//! writer; `synchronous=FULL`, so a committed publish survives a crash or
//! power loss; reads use their own connection (WAL) and never wait behind a
//! publish's file I/O.

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::{Decide, HostedBackend, RowWrite, StoredRow};
use crate::Result;

/// Hosted rows in one SQLite file.
pub(crate) struct SqliteHosted {
    writer: Mutex<Connection>,
    reader: Mutex<Connection>,
}

impl std::fmt::Debug for SqliteHosted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteHosted").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic mid-transaction drops (rolls back) the transaction, so the
    // connection behind a poisoned lock is still consistent.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn connect(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.busy_timeout(Duration::from_secs(10))?;
    Ok(conn)
}

impl SqliteHosted {
    /// Opens (creating) `<storage>/hosted.sqlite`.
    pub(crate) fn open(storage: &Path) -> Result<Self> {
        let db_path = storage.join("hosted.sqlite");
        let writer = connect(&db_path)?;
        writer.execute_batch(
            "CREATE TABLE IF NOT EXISTS packages (
                name TEXT PRIMARY KEY,
                rev TEXT NOT NULL,
                body BLOB NOT NULL
            );
            CREATE TABLE IF NOT EXISTS tarballs (
                name TEXT NOT NULL,
                version TEXT NOT NULL,
                sha512 TEXT NOT NULL,
                PRIMARY KEY (name, version)
            );
            CREATE INDEX IF NOT EXISTS tarballs_by_blob ON tarballs (sha512);",
        )?;
        let reader = connect(&db_path)?;
        Ok(Self {
            writer: Mutex::new(writer),
            reader: Mutex::new(reader),
        })
    }
}

/// `(version, sha512 hex)` tarball references of one package.
pub(crate) type TarballRefs = Vec<(String, String)>;

impl SqliteHosted {
    /// The row of `name` with its tarball references (`pnpr copy`).
    pub(crate) fn row_with_refs(&self, name: &str) -> Result<Option<(StoredRow, TarballRefs)>> {
        let conn = lock(&self.reader);
        let Some(row) = stored_row(&conn, name)? else {
            return Ok(None);
        };
        let mut stmt =
            conn.prepare("SELECT version, sha512 FROM tarballs WHERE name = ?1 ORDER BY version")?;
        let refs = stmt.query_map(params![name], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(Some((row, refs.collect::<rusqlite::Result<_>>()?)))
    }
}

/// The stored row of `name`.
fn stored_row(conn: &Connection, name: &str) -> Result<Option<StoredRow>> {
    Ok(conn
        .query_row(
            "SELECT rev, body FROM packages WHERE name = ?1",
            params![name],
            |r| {
                Ok(StoredRow {
                    rev: r.get(0)?,
                    body: r.get(1)?,
                })
            },
        )
        .optional()?)
}

impl HostedBackend for SqliteHosted {
    fn names(&self) -> Result<HashSet<String>> {
        let conn = lock(&self.reader);
        let mut stmt = conn.prepare("SELECT name FROM packages")?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        Ok(rows.collect::<rusqlite::Result<HashSet<String>>>()?)
    }

    fn row(&self, name: &str) -> Result<Option<StoredRow>> {
        stored_row(&lock(&self.reader), name)
    }

    fn rows(&self) -> Result<Vec<(String, Vec<u8>)>> {
        let conn = lock(&self.reader);
        let mut stmt = conn.prepare("SELECT name, body FROM packages ORDER BY name")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn transact(&self, name: &str, decide: Decide<'_>) -> Result<bool> {
        let mut conn = lock(&self.writer);
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let stored = stored_row(&tx, name)?;
        let blobs: HashSet<String> = {
            let mut stmt = tx.prepare("SELECT sha512 FROM tarballs WHERE name = ?1")?;
            let rows = stmt.query_map(params![name], |r| r.get::<_, String>(0))?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        match decide(stored, blobs)? {
            RowWrite::Keep => return Ok(false),
            RowWrite::Put {
                rev,
                body,
                tarballs,
            } => {
                tx.execute(
                    "INSERT INTO packages (name, rev, body) VALUES (?1, ?2, ?3)
                     ON CONFLICT (name) DO UPDATE SET rev = excluded.rev, body = excluded.body",
                    params![name, rev, body],
                )?;
                tx.execute("DELETE FROM tarballs WHERE name = ?1", params![name])?;
                for (version, hex) in &tarballs {
                    tx.execute(
                        "INSERT INTO tarballs (name, version, sha512) VALUES (?1, ?2, ?3)",
                        params![name, version, hex],
                    )?;
                }
            }
            RowWrite::Delete => {
                tx.execute("DELETE FROM packages WHERE name = ?1", params![name])?;
                tx.execute("DELETE FROM tarballs WHERE name = ?1", params![name])?;
            }
        }
        tx.commit()?;
        Ok(true)
    }

    fn collect(&self, candidates: HashSet<String>, remove: &mut dyn FnMut(&str)) -> Result<()> {
        // Under the writer lock: no transaction can add a reference meanwhile.
        let conn = lock(&self.writer);
        for hex in candidates {
            let referenced: bool = conn.query_row(
                "SELECT EXISTS (SELECT 1 FROM tarballs WHERE sha512 = ?1)",
                params![hex],
                |r| r.get(0),
            )?;
            if !referenced {
                remove(&hex);
            }
        }
        Ok(())
    }
}
