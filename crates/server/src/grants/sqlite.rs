//! The grant table and the public set in this node's SQLite files
//! (`install-grants.sqlite`, `public-packages.sqlite` under the cache dir):
//! the backend without `database:`.
//!
//! Owns those two files. Invariants: a file that cannot be opened leaves
//! its table disabled (reads find nothing, writes keep nothing) rather than
//! stopping the server; prefix clearing compares `substr` with the prefix,
//! never `LIKE`; each table stays at or under [`MAX_ROWS`], oldest first.

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};

use super::{AccessBackend, Outcome, MAX_ROWS};

/// The two tables of spec §4.4 and §4.5, one SQLite file each.
pub struct SqliteAccess {
    grants: Mutex<Option<Connection>>,
    public: Mutex<Option<Connection>>,
}

impl SqliteAccess {
    /// Opens (creating) `install-grants.sqlite` and `public-packages.sqlite`
    /// in `dir`. A file that cannot be opened leaves that table disabled.
    pub fn open(dir: &Path) -> Self {
        SqliteAccess {
            grants: Mutex::new(open_table(
                dir,
                "install-grants.sqlite",
                "CREATE TABLE IF NOT EXISTS grants(user TEXT NOT NULL, pkg TEXT NOT NULL, \
                 granted_at_ms INTEGER NOT NULL, PRIMARY KEY(user, pkg));",
            )),
            public: Mutex::new(open_table(
                dir,
                "public-packages.sqlite",
                "CREATE TABLE IF NOT EXISTS public_packages(name TEXT PRIMARY KEY, \
                 classified_at_ms INTEGER NOT NULL);",
            )),
        }
    }

    /// Runs `f` on the table's connection; a disabled table answers
    /// `T::default()` (nothing found, nothing removed).
    fn with<T: Default>(
        slot: &Mutex<Option<Connection>>,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Outcome<T> {
        let guard = slot.lock().unwrap_or_else(|p| p.into_inner());
        match guard.as_ref() {
            Some(conn) => f(conn).map_err(|e| e.to_string()),
            None => Ok(T::default()),
        }
    }
}

fn open_table(dir: &Path, file: &str, ddl: &str) -> Option<Connection> {
    let result = std::fs::create_dir_all(dir)
        .map_err(|e| e.to_string())
        .and_then(|()| Connection::open(dir.join(file)).map_err(|e| e.to_string()))
        .and_then(|c| {
            c.busy_timeout(Duration::from_secs(2))
                .and_then(|()| c.execute_batch(ddl))
                .map(|()| c)
                .map_err(|e| e.to_string())
        });
    match result {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!(file, error = %e, "access table unavailable; treating it as empty");
            None
        }
    }
}

impl AccessBackend for SqliteAccess {
    fn public_at(&self, name: &str) -> Outcome<Option<i64>> {
        Self::with(&self.public, |c| {
            c.query_row(
                "SELECT classified_at_ms FROM public_packages WHERE name = ?1",
                params![name],
                |r| r.get::<_, i64>(0),
            )
            .optional()
        })
    }

    fn mark_public(&self, name: &str, now_ms: i64) -> Outcome<()> {
        Self::with(&self.public, |c| {
            c.execute(
                "INSERT INTO public_packages(name, classified_at_ms) VALUES (?1, ?2) \
                 ON CONFLICT(name) DO UPDATE SET classified_at_ms = excluded.classified_at_ms",
                params![name, now_ms],
            )?;
            evict(c, "public_packages", "classified_at_ms")
        })
    }

    fn grant_at(&self, user: &str, pkg: &str) -> Outcome<Option<i64>> {
        Self::with(&self.grants, |c| {
            c.query_row(
                "SELECT granted_at_ms FROM grants WHERE user = ?1 AND pkg = ?2",
                params![user, pkg],
                |r| r.get::<_, i64>(0),
            )
            .optional()
        })
    }

    fn record_grant(&self, user: &str, pkg: &str, now_ms: i64) -> Outcome<()> {
        Self::with(&self.grants, |c| {
            c.execute(
                "INSERT INTO grants(user, pkg, granted_at_ms) VALUES (?1, ?2, ?3) \
                 ON CONFLICT(user, pkg) DO UPDATE SET granted_at_ms = excluded.granted_at_ms",
                params![user, pkg, now_ms],
            )?;
            evict(c, "grants", "granted_at_ms")
        })
    }

    fn clear_prefix(&self, user: &str, prefix: &str) -> Outcome<usize> {
        Self::with(&self.grants, |c| {
            c.execute(
                "DELETE FROM grants WHERE user = ?1 AND substr(pkg, 1, ?2) = ?3",
                params![user, prefix.chars().count() as i64, prefix],
            )
        })
    }

    fn clear_user(&self, user: &str) -> Outcome<usize> {
        Self::with(&self.grants, |c| {
            c.execute("DELETE FROM grants WHERE user = ?1", params![user])
        })
    }
}

/// Keeps a table at or under [`MAX_ROWS`], oldest rows first.
fn evict(c: &Connection, table: &str, at: &str) -> rusqlite::Result<()> {
    c.execute(
        &format!(
            "DELETE FROM {table} WHERE rowid IN (SELECT rowid FROM {table} ORDER BY {at} ASC \
             LIMIT max(0, (SELECT count(*) FROM {table}) - ?1))"
        ),
        params![MAX_ROWS],
    )?;
    Ok(())
}
