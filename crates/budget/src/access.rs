//! Last-access times of units, persisted in `budget.sqlite`.
//!
//! Invariant: a read costs a map insert, never a database write; the map
//! is written in one transaction by [`AccessLog::flush`] (the background
//! loop calls it every few seconds, a pass and shutdown call it too), and
//! it holds at most [`MAX_PENDING`] units (a full map is flushed on the
//! spot), so memory stays bounded however many distinct units are read.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use rusqlite::{params, Connection};

use crate::{lock, Result};

/// Unflushed units held before a read flushes them itself.
const MAX_PENDING: usize = 50_000;

pub(crate) struct AccessLog {
    conn: Mutex<Connection>,
    pending: Mutex<HashMap<String, i64>>,
}

impl AccessLog {
    pub(crate) fn open(path: &Path) -> Result<Self> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS unit_access (
                 unit TEXT PRIMARY KEY,
                 at_ms INTEGER NOT NULL
             ) WITHOUT ROWID;",
        )?;
        Ok(Self {
            conn: Mutex::new(conn),
            pending: Mutex::new(HashMap::new()),
        })
    }

    pub(crate) fn touch(&self, unit: String, at_ms: i64) {
        let full = {
            let mut pending = lock(&self.pending);
            let at = pending.entry(unit).or_insert(at_ms);
            *at = (*at).max(at_ms);
            pending.len() >= MAX_PENDING
        };
        if full {
            if let Err(e) = self.flush() {
                tracing::warn!(error = %e, "cannot record cache access times");
            }
        }
    }

    /// Writes every pending time (keeping the later of stored and pending).
    pub(crate) fn flush(&self) -> Result<()> {
        let batch = std::mem::take(&mut *lock(&self.pending));
        if batch.is_empty() {
            return Ok(());
        }
        let mut conn = lock(&self.conn);
        let tx = conn.transaction()?;
        {
            let mut stmt = tx.prepare(
                "INSERT INTO unit_access (unit, at_ms) VALUES (?1, ?2)
                 ON CONFLICT (unit) DO UPDATE SET at_ms = max(at_ms, excluded.at_ms)",
            )?;
            for (unit, at) in &batch {
                stmt.execute(params![unit, at])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Every persisted time.
    pub(crate) fn all(&self) -> Result<HashMap<String, i64>> {
        let conn = lock(&self.conn);
        let mut stmt = conn.prepare("SELECT unit, at_ms FROM unit_access")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Drops the rows of evicted units.
    pub(crate) fn forget(&self, units: &[String]) -> Result<()> {
        let mut conn = lock(&self.conn);
        let tx = conn.transaction()?;
        {
            let mut stmt = tx.prepare("DELETE FROM unit_access WHERE unit = ?1")?;
            for unit in units {
                stmt.execute([unit])?;
            }
        }
        tx.commit()?;
        Ok(())
    }
}
