//! SQLite metadata database: cached upstream packuments, one row per
//! (namespace, package, uplink).
//!
//! Rows are keyed by namespace so the shared public mirror and each private
//! uplink namespace never read each other's data. Every write is one
//! statement inside a transaction, so a crash leaves the old row or the new.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension};

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

/// The metadata database. One connection behind a mutex: statements are
/// short, and SQLite serialises writers anyway.
pub struct MetaDb {
    conn: Mutex<Connection>,
}

impl std::fmt::Debug for MetaDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MetaDb")
    }
}

impl MetaDb {
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS packuments (
                ns TEXT NOT NULL,
                name TEXT NOT NULL,
                uplink TEXT NOT NULL,
                body BLOB NOT NULL,
                etag TEXT,
                last_modified TEXT,
                fetched_at_ms INTEGER NOT NULL,
                PRIMARY KEY (ns, name, uplink)
            ) WITHOUT ROWID;",
        )?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite inconsistent
        // (statements are atomic), so a poisoned lock is still usable.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn packument(&self, ns: &str, name: &str, uplink: &str) -> Result<Option<PackumentRow>> {
        let conn = self.conn();
        let row = conn
            .query_row(
                "SELECT body, etag, last_modified, fetched_at_ms FROM packuments
                 WHERE ns = ?1 AND name = ?2 AND uplink = ?3",
                params![ns, name, uplink],
                |r| {
                    Ok(PackumentRow {
                        ns: ns.to_string(),
                        name: name.to_string(),
                        uplink: uplink.to_string(),
                        body: r.get(0)?,
                        etag: r.get(1)?,
                        last_modified: r.get(2)?,
                        fetched_at_ms: r.get(3)?,
                    })
                },
            )
            .optional()?;
        Ok(row)
    }

    pub fn put_packument(&self, row: &PackumentRow) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT INTO packuments (ns, name, uplink, body, etag, last_modified, fetched_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (ns, name, uplink) DO UPDATE SET body = excluded.body,
               etag = excluded.etag, last_modified = excluded.last_modified,
               fetched_at_ms = excluded.fetched_at_ms",
            params![
                row.ns,
                row.name,
                row.uplink,
                row.body,
                row.etag,
                row.last_modified,
                row.fetched_at_ms
            ],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Marks a row fresh again after a `304 Not Modified`.
    pub fn touch_packument(&self, ns: &str, name: &str, uplink: &str, at_ms: i64) -> Result<()> {
        self.conn().execute(
            "UPDATE packuments SET fetched_at_ms = ?4 WHERE ns = ?1 AND name = ?2 AND uplink = ?3",
            params![ns, name, uplink, at_ms],
        )?;
        Ok(())
    }

    pub fn delete_packument(&self, ns: &str, name: &str, uplink: &str) -> Result<()> {
        self.conn().execute(
            "DELETE FROM packuments WHERE ns = ?1 AND name = ?2 AND uplink = ?3",
            params![ns, name, uplink],
        )?;
        Ok(())
    }

    /// Cheap liveness probe for the readiness endpoint.
    pub fn ping(&self) -> Result<()> {
        self.conn().query_row("SELECT 1", [], |_| Ok(()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
