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

use std::path::Path;
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

/// The metadata database. One connection behind a mutex: statements are
/// short (bodies are read by rowid), and SQLite serialises writers anyway.
pub struct MetaDb {
    conn: Mutex<Connection>,
}

impl std::fmt::Debug for MetaDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MetaDb")
    }
}

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS packument_bodies (
        id INTEGER PRIMARY KEY,
        body BLOB NOT NULL
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
        migrate_inline_bodies(&mut conn)?;
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
        // The hot path of every metadata read: keep the statement prepared.
        let mut stmt = conn.prepare_cached(
            "SELECT b.body, i.etag, i.last_modified, i.fetched_at_ms
             FROM packument_index i JOIN packument_bodies b ON b.id = i.body_id
             WHERE i.ns = ?1 AND i.name = ?2 AND i.uplink = ?3",
        )?;
        let row = stmt
            .query_row(params![ns, name, uplink], |r| {
                Ok(PackumentRow {
                    ns: ns.to_string(),
                    name: name.to_string(),
                    uplink: uplink.to_string(),
                    body: r.get(0)?,
                    etag: r.get(1)?,
                    last_modified: r.get(2)?,
                    fetched_at_ms: r.get(3)?,
                })
            })
            .optional()?;
        Ok(row)
    }

    pub fn put_packument(&self, row: &PackumentRow) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        put_in(&tx, row)?;
        tx.commit()?;
        Ok(())
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
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let body_id = body_id(&tx, ns, name, uplink)?;
        if let Some(id) = body_id {
            tx.execute("DELETE FROM packument_bodies WHERE id = ?1", params![id])?;
            tx.execute(
                "DELETE FROM packument_index WHERE ns = ?1 AND name = ?2 AND uplink = ?3",
                params![ns, name, uplink],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Cheap liveness probe for the readiness endpoint.
    pub fn ping(&self) -> Result<()> {
        self.conn().query_row("SELECT 1", [], |_| Ok(()))?;
        Ok(())
    }
}

fn body_id(tx: &Transaction<'_>, ns: &str, name: &str, uplink: &str) -> Result<Option<i64>> {
    Ok(tx
        .query_row(
            "SELECT body_id FROM packument_index WHERE ns = ?1 AND name = ?2 AND uplink = ?3",
            params![ns, name, uplink],
            |r| r.get(0),
        )
        .optional()?)
}

/// Upserts one entry inside `tx`, reusing its body row when it has one.
fn put_in(tx: &Transaction<'_>, row: &PackumentRow) -> Result<()> {
    let id = match body_id(tx, &row.ns, &row.name, &row.uplink)? {
        Some(id) => {
            tx.execute(
                "UPDATE packument_bodies SET body = ?2 WHERE id = ?1",
                params![id, row.body],
            )?;
            id
        }
        None => {
            tx.execute(
                "INSERT INTO packument_bodies (body) VALUES (?1)",
                params![row.body],
            )?;
            tx.last_insert_rowid()
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
            row.ns,
            row.name,
            row.uplink,
            row.etag,
            row.last_modified,
            row.fetched_at_ms,
            id
        ],
    )?;
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
        put_in(&tx, &row)?;
    }
    tx.execute_batch("DROP TABLE packuments;")?;
    tx.commit()?;
    tracing::info!(moved, "metadata: packument bodies moved out of line");
    Ok(())
}

#[cfg(test)]
mod tests;
