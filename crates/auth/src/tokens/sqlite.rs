//! The embedded token backend: one SQLite file, mirrored in memory.
//!
//! Owns the `tokens` table and its in-memory mirror. Invariants:
//! * [`TokenBackend::get`] is one map read, no database: bearer
//!   authentication stays cheap on every request; the mirror is sound
//!   because this process is the file's only writer;
//! * the database is written first and the map updated after a successful
//!   commit, under the connection lock, so the map never holds a token the
//!   database would not return after a restart (and a revoked token is gone
//!   from the map as soon as the delete returns).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Mutex, RwLock};
use std::time::Duration;

use rusqlite::{params, Connection};

use super::{key_bytes, TokenRecord};
use crate::store::TokenBackend;
use crate::AuthError;

pub(crate) struct SqliteTokens {
    conn: Mutex<Connection>,
    by_digest: RwLock<HashMap<[u8; 32], TokenRecord>>,
}

impl std::fmt::Debug for SqliteTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.by_digest.read().map_or(0, |m| m.len());
        f.debug_struct("SqliteTokens").field("tokens", &n).finish()
    }
}

impl SqliteTokens {
    /// Opens (creating if needed) the database at `sqlite_path` in WAL mode
    /// and loads every token into memory.
    pub(crate) fn open(sqlite_path: &Path) -> Result<Self, AuthError> {
        let conn = open_schema(sqlite_path)?;
        let map = load(&conn)?;
        Ok(SqliteTokens {
            conn: Mutex::new(conn),
            by_digest: RwLock::new(map),
        })
    }

    fn map_write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<[u8; 32], TokenRecord>> {
        self.by_digest.write().unwrap_or_else(|e| e.into_inner())
    }

    fn map_read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<[u8; 32], TokenRecord>> {
        self.by_digest.read().unwrap_or_else(|e| e.into_inner())
    }
}

/// Opens the file and brings the table up to the current columns.
fn open_schema(sqlite_path: &Path) -> Result<Connection, AuthError> {
    if let Some(dir) = sqlite_path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| AuthError::Io {
            action: "cannot create directory",
            path: dir.to_owned(),
            source,
        })?;
    }
    let conn = Connection::open(sqlite_path)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    // `journal_mode` returns a row, so it cannot go through execute().
    let _mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    conn.execute_batch(
        "PRAGMA synchronous=NORMAL;
         CREATE TABLE IF NOT EXISTS tokens (
             key TEXT PRIMARY KEY NOT NULL,
             user TEXT NOT NULL,
             readonly INTEGER NOT NULL,
             cidr_whitelist TEXT NOT NULL,
             created_ms INTEGER NOT NULL
         );
         CREATE INDEX IF NOT EXISTS tokens_user ON tokens(user);",
    )?;
    // Databases written before tokens were bound to an incarnation.
    let has_incarnation = conn
        .prepare("SELECT 1 FROM pragma_table_info('tokens') WHERE name = 'incarnation'")?
        .exists([])?;
    if !has_incarnation {
        conn.execute_batch("ALTER TABLE tokens ADD COLUMN incarnation TEXT")?;
    }
    // Databases written before tokens had names and a shown prefix.
    let has_name = conn
        .prepare("SELECT 1 FROM pragma_table_info('tokens') WHERE name = 'name'")?
        .exists([])?;
    if !has_name {
        conn.execute_batch(
            "ALTER TABLE tokens ADD COLUMN name TEXT; ALTER TABLE tokens ADD COLUMN shown TEXT;",
        )?;
    }
    Ok(conn)
}

/// Every well-formed row, keyed by raw digest.
fn load(conn: &Connection) -> Result<HashMap<[u8; 32], TokenRecord>, AuthError> {
    let mut map = HashMap::new();
    let mut stmt = conn.prepare(
        "SELECT key, user, readonly, cidr_whitelist, created_ms, incarnation, name, shown
         FROM tokens",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            TokenRecord {
                key: String::new(),
                user: r.get(1)?,
                readonly: r.get(2)?,
                cidr_whitelist: Vec::new(),
                created_ms: r.get(4)?,
                incarnation: r.get(5)?,
                name: r.get(6)?,
                shown: r.get(7)?,
            },
            r.get::<_, String>(3)?,
        ))
    })?;
    for row in rows {
        let (key, mut record, cidrs) = row?;
        let Some(raw) = key_bytes(&key) else {
            tracing::warn!(key, "skipping token row with a malformed key");
            continue;
        };
        record.key = hex::encode(raw);
        record.cidr_whitelist = parse_cidrs(&record.key, &cidrs);
        map.insert(raw, record);
    }
    Ok(map)
}

/// The stored whitelist. Unknown peers fail a non-empty whitelist, so a
/// corrupt list must not widen the token to everywhere.
pub(crate) fn parse_cidrs(key: &str, cidrs: &str) -> Vec<String> {
    serde_json::from_str(cidrs).unwrap_or_else(|_| {
        tracing::warn!(key, "token has a corrupt CIDR whitelist; disabling it");
        vec!["0.0.0.0/32".to_owned()]
    })
}

impl TokenBackend for SqliteTokens {
    fn insert(&self, record: &TokenRecord) -> Result<(), AuthError> {
        let raw = key_bytes(&record.key).ok_or(AuthError::MalformedKey)?;
        let cidrs = serde_json::to_string(&record.cidr_whitelist).unwrap_or_else(|_| "[]".into());
        let mut conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT INTO tokens
                 (key, user, readonly, cidr_whitelist, created_ms, incarnation, name, shown)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                record.key,
                record.user,
                record.readonly,
                cidrs,
                record.created_ms,
                record.incarnation,
                record.name,
                record.shown
            ],
        )?;
        tx.commit()?;
        self.map_write().insert(raw, record.clone());
        Ok(())
    }

    fn get(&self, digest: &[u8; 32]) -> Result<Option<TokenRecord>, AuthError> {
        Ok(self.map_read().get(digest).cloned())
    }

    fn list(&self, user: &str) -> Result<Vec<TokenRecord>, AuthError> {
        Ok(self
            .map_read()
            .values()
            .filter(|r| r.user == user)
            .cloned()
            .collect())
    }

    fn users(&self) -> Result<Vec<String>, AuthError> {
        Ok(self.map_read().values().map(|r| r.user.clone()).collect())
    }

    fn delete(&self, user: &str, digests: &[[u8; 32]]) -> Result<usize, AuthError> {
        let mut conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let tx = conn.transaction()?;
        let mut removed = 0;
        for k in digests {
            removed += tx.execute(
                "DELETE FROM tokens WHERE key = ?1 AND user = ?2",
                params![hex::encode(k), user],
            )?;
        }
        tx.commit()?;
        let mut map = self.map_write();
        for k in digests {
            // Another user's key is never removed, even when named.
            if map.get(k).is_some_and(|r| r.user == user) && map.remove(k).is_some() {
                removed = removed.max(1);
            }
        }
        Ok(removed)
    }

    fn delete_user(&self, user: &str) -> Result<usize, AuthError> {
        let mut conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let tx = conn.transaction()?;
        // User-wide in the database too, for rows another process may have
        // written while this one was down.
        let removed = tx.execute("DELETE FROM tokens WHERE user = ?1", params![user])?;
        tx.commit()?;
        self.map_write().retain(|_, r| r.user != user);
        Ok(removed)
    }
}
