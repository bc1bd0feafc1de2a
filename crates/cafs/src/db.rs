//! The SQLite table holding one index row per package integrity.
//!
//! Invariant: a row is written once, inside one transaction, and only after
//! the package's member is in the store; concurrent writers of the same
//! integrity keep the first row (`INSERT OR IGNORE`).
//!
//! `member_level` is the idle-time recompression's memory ([`crate::recompress`]):
//! a member key with the level and length it was last re-encoded (or kept)
//! at. It only ever saves work: a row whose length no longer matches the
//! stored member (evicted and made again) is treated as absent.

use std::collections::HashMap;
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
             ) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS member_level (
                 key TEXT PRIMARY KEY,
                 level INTEGER NOT NULL,
                 len INTEGER NOT NULL
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

    /// Every recorded (member key → level, length) of the recompression pass.
    pub(crate) fn member_levels(&self) -> Result<HashMap<String, (u32, u64)>, CafsError> {
        let conn = self.lock();
        let mut stmt = conn.prepare("SELECT key, level, len FROM member_level")?;
        let rows = stmt.query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                (row.get::<_, u32>(1)?, row.get::<_, i64>(2)?),
            ))
        })?;
        let mut out = HashMap::new();
        for row in rows {
            let (key, (level, len)) = row?;
            out.insert(key, (level, u64::try_from(len).unwrap_or(0)));
        }
        Ok(out)
    }

    /// The recorded level and length of one member, if any.
    pub(crate) fn member_level(&self, key: &str) -> Result<Option<(u32, u64)>, CafsError> {
        let conn = self.lock();
        let row = conn
            .query_row(
                "SELECT level, len FROM member_level WHERE key = ?1",
                [key],
                |row| Ok((row.get::<_, u32>(0)?, row.get::<_, i64>(1)?)),
            )
            .optional()?;
        Ok(row.map(|(level, len)| (level, u64::try_from(len).unwrap_or(0))))
    }

    /// Records that the member `key`, `len` bytes long, is at `level`.
    pub(crate) fn set_member_level(
        &self,
        key: &str,
        level: u32,
        len: u64,
    ) -> Result<(), CafsError> {
        let conn = self.lock();
        conn.execute(
            "INSERT OR REPLACE INTO member_level (key, level, len) VALUES (?1, ?2, ?3)",
            rusqlite::params![key, level, i64::try_from(len).unwrap_or(i64::MAX)],
        )?;
        Ok(())
    }

    /// Forgets the records of members no index row names any more.
    pub(crate) fn forget_member_levels(&self, keys: &[String]) -> Result<(), CafsError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        for key in keys {
            tx.execute("DELETE FROM member_level WHERE key = ?1", [key])?;
        }
        tx.commit()?;
        Ok(())
    }
}
