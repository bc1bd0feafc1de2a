//! The SQLite table holding one index row per package integrity.
//!
//! Invariant: a row is written once, inside one transaction, and only after
//! the package's member is in the store; concurrent writers of the same
//! integrity keep the first row (`INSERT OR IGNORE`).

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension};

use crate::error::CafsError;

/// Bytes a checkpointed write-ahead log is truncated to.
const WAL_KEEP_BYTES: i64 = 256 * 1024;

/// Schema version stored in `PRAGMA user_version`, for future migrations.
const SCHEMA_VERSION: i64 = 1;

#[derive(Debug)]
pub(crate) struct IndexDb {
    /// One connection serialised by a mutex: rows are small and lookups are
    /// fronted by the in-memory cache, so a pool would buy little.
    conn: Mutex<Connection>,
}

impl IndexDb {
    pub(crate) fn open(path: &Path) -> Result<Self, CafsError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        // A checkpointed WAL is truncated back to this size instead of
        // keeping its high-water mark (4 MB and more after a cold install of
        // a large tree): the index is part of the server's disk per package.
        conn.pragma_update(None, "journal_size_limit", WAL_KEEP_BYTES)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS package_index (
                 integrity TEXT PRIMARY KEY,
                 data BLOB NOT NULL
             ) WITHOUT ROWID;",
        )?;
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite half-written
        // (transactions roll back on drop), so a poisoned lock is still usable.
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn get(&self, integrity: &str) -> Result<Option<Vec<u8>>, CafsError> {
        let conn = self.lock();
        let row = conn
            .query_row(
                "SELECT data FROM package_index WHERE integrity = ?1",
                [integrity],
                |row| row.get::<_, Vec<u8>>(0),
            )
            .optional()?;
        Ok(row)
    }

    /// Insert unless a row exists; `true` when this call wrote it.
    pub(crate) fn insert_if_absent(&self, integrity: &str, data: &[u8]) -> Result<bool, CafsError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let written = tx.execute(
            "INSERT OR IGNORE INTO package_index (integrity, data) VALUES (?1, ?2)",
            rusqlite::params![integrity, data],
        )?;
        tx.commit()?;
        Ok(written == 1)
    }

    pub(crate) fn delete(&self, integrity: &str) -> Result<(), CafsError> {
        let conn = self.lock();
        conn.execute(
            "DELETE FROM package_index WHERE integrity = ?1",
            [integrity],
        )?;
        Ok(())
    }

    /// Every integrity with a row (for eviction's reference counts).
    pub(crate) fn keys(&self) -> Result<Vec<String>, CafsError> {
        let conn = self.lock();
        let mut stmt = conn.prepare("SELECT integrity FROM package_index")?;
        let rows = stmt.query_map([], |row| row.get::<_, String>(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub(crate) fn count(&self) -> Result<u64, CafsError> {
        let conn = self.lock();
        let n: i64 = conn.query_row("SELECT COUNT(*) FROM package_index", [], |row| row.get(0))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}
