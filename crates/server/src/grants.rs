//! Upstream-authority bookkeeping of `POST /v1/install` (spec §1.4, §4.4–4.6):
//! which forwarded credential belongs to a URL (nerf-dart lookup), the global
//! public-package set and the per-user grant table.
//!
//! Invariants guarded here:
//! - a grant is only ever read back for the user it was recorded for, and a
//!   public classification is the only fact shared between users;
//! - clearing a package's grants matches the exact `name@` prefix, so `foo`
//!   never touches `foo-bar` (no `LIKE`, whose `_`/`%` are wildcards);
//! - with a TTL, an expired row is treated exactly like a missing one;
//! - grants belong to one incarnation of a user name: when the account is
//!   registered afresh or retired from htpasswd, [`AccessStore::clear_user`]
//!   drops them, so a newcomer under an old name inherits nothing;
//! - every database operation is best-effort: an error is logged and reads
//!   as "no grant / not public", so it can deny but never allow, and it never
//!   fails a request by itself.

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine;
use pnpr_protocol::AuthHeaders;
use rusqlite::{params, Connection, OptionalExtension};

#[cfg(test)]
mod tests;

/// Soft cap on rows of each table; the oldest rows go first.
pub const MAX_ROWS: i64 = 100_000;

/// The two SQLite tables of spec §4.4 and §4.5.
pub struct AccessStore {
    grants: Mutex<Option<Connection>>,
    public: Mutex<Option<Connection>>,
    ttl_ms: Option<i64>,
}

impl AccessStore {
    /// Opens (creating) `install-grants.sqlite` and `public-packages.sqlite`
    /// in `dir`. A file that cannot be opened leaves that table disabled.
    pub fn open(dir: &Path, ttl: Option<Duration>) -> Self {
        let open = |file: &str, ddl: &str| -> Option<Connection> {
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
        };
        AccessStore {
            grants: Mutex::new(open(
                "install-grants.sqlite",
                "CREATE TABLE IF NOT EXISTS grants(user TEXT NOT NULL, pkg TEXT NOT NULL, \
                 granted_at_ms INTEGER NOT NULL, PRIMARY KEY(user, pkg));",
            )),
            public: Mutex::new(open(
                "public-packages.sqlite",
                "CREATE TABLE IF NOT EXISTS public_packages(name TEXT PRIMARY KEY, \
                 classified_at_ms INTEGER NOT NULL);",
            )),
            ttl_ms: ttl.map(|t| i64::try_from(t.as_millis()).unwrap_or(i64::MAX)),
        }
    }

    fn live(&self, at_ms: i64, now_ms: i64) -> bool {
        self.ttl_ms
            .is_none_or(|ttl| now_ms.saturating_sub(at_ms) < ttl)
    }

    fn with<T>(
        slot: &Mutex<Option<Connection>>,
        what: &str,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Option<T> {
        let guard = slot.lock().unwrap_or_else(|p| p.into_inner());
        let conn = guard.as_ref()?;
        match f(conn) {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::warn!(what, error = %e, "access table operation failed");
                None
            }
        }
    }

    /// Whether `name` is classified public (and, with a TTL, recently).
    pub fn is_public(&self, name: &str, now_ms: i64) -> bool {
        Self::with(&self.public, "public lookup", |c| {
            c.query_row(
                "SELECT classified_at_ms FROM public_packages WHERE name = ?1",
                params![name],
                |r| r.get::<_, i64>(0),
            )
            .optional()
        })
        .flatten()
        .is_some_and(|at| self.live(at, now_ms))
    }

    /// Records `name` as readable anonymously, for every user.
    pub fn mark_public(&self, name: &str, now_ms: i64) {
        Self::with(&self.public, "public insert", |c| {
            c.execute(
                "INSERT INTO public_packages(name, classified_at_ms) VALUES (?1, ?2) \
                 ON CONFLICT(name) DO UPDATE SET classified_at_ms = excluded.classified_at_ms",
                params![name, now_ms],
            )?;
            evict(c, "public_packages", "classified_at_ms")
        });
    }

    /// Whether `user` holds a live grant for `pkg` (`name@version`).
    pub fn has_grant(&self, user: &str, pkg: &str, now_ms: i64) -> bool {
        Self::with(&self.grants, "grant lookup", |c| {
            c.query_row(
                "SELECT granted_at_ms FROM grants WHERE user = ?1 AND pkg = ?2",
                params![user, pkg],
                |r| r.get::<_, i64>(0),
            )
            .optional()
        })
        .flatten()
        .is_some_and(|at| self.live(at, now_ms))
    }

    /// Records (or refreshes) `user`'s grant for `pkg` (`name@version`).
    pub fn record_grant(&self, user: &str, pkg: &str, now_ms: i64) {
        Self::with(&self.grants, "grant insert", |c| {
            c.execute(
                "INSERT INTO grants(user, pkg, granted_at_ms) VALUES (?1, ?2, ?3) \
                 ON CONFLICT(user, pkg) DO UPDATE SET granted_at_ms = excluded.granted_at_ms",
                params![user, pkg, now_ms],
            )?;
            evict(c, "grants", "granted_at_ms")
        });
    }

    /// Clear-on-discovery (spec §4.6): drops every grant `user` holds for any
    /// version of `name`. Returns how many rows went.
    pub fn clear_package(&self, user: &str, name: &str) -> usize {
        let prefix = format!("{name}@");
        Self::with(&self.grants, "grant clear", |c| {
            c.execute(
                "DELETE FROM grants WHERE user = ?1 AND substr(pkg, 1, ?2) = ?3",
                params![user, prefix.chars().count() as i64, prefix],
            )
        })
        .unwrap_or(0)
    }

    /// Drops every grant `user` holds (the account was registered afresh or
    /// removed). Returns how many rows went.
    pub fn clear_user(&self, user: &str) -> usize {
        let removed = Self::with(&self.grants, "grant clear (user)", |c| {
            c.execute("DELETE FROM grants WHERE user = ?1", params![user])
        })
        .unwrap_or(0);
        if removed > 0 {
            tracing::info!(user, removed, "grants of a retired account cleared");
        }
        removed
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

/// npm's nerf-dart of a URL (spec §1.4): `//host[:port]/path-up-to-last-slash/`,
/// without scheme, userinfo, query or fragment; default ports dropped.
pub fn nerf_dart(raw: &str) -> Option<String> {
    let url = url::Url::parse(raw).ok()?;
    let host = url.host_str()?;
    let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
    let path = url.path();
    let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
    let dir = if dir.is_empty() { "/" } else { dir };
    Some(format!("//{host}{port}{dir}"))
}

/// The forwarded `Authorization` value for a fetch of `raw` (spec §1.4):
/// inline userinfo as Basic, else the longest nerf-dart path prefix present
/// in `auth`, retried without an explicit port when nothing matched.
pub fn credential_for(auth: &AuthHeaders, raw: &str) -> Option<String> {
    let mut with_slash = raw.to_string();
    if !with_slash.ends_with('/') {
        with_slash.push('/');
    }
    let mut url = url::Url::parse(&with_slash).ok()?;
    if !url.username().is_empty() {
        let user = percent_encoding::percent_decode_str(url.username()).decode_utf8_lossy();
        let pass =
            percent_encoding::percent_decode_str(url.password().unwrap_or("")).decode_utf8_lossy();
        return Some(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
        ));
    }
    let try_prefixes = |u: &url::Url| -> Option<String> {
        let mut key = nerf_dart(u.as_str())?;
        loop {
            if let Some(v) = auth.get(&key) {
                return Some(v.to_string());
            }
            // `//host/a/b/` → `//host/a/`; stop after `//host/`.
            let trimmed = key.get(2..key.len() - 1)?;
            let cut = trimmed.rfind('/')?;
            key = format!("//{}/", &trimmed[..cut]);
        }
    };
    if let Some(v) = try_prefixes(&url) {
        return Some(v);
    }
    if url.port().is_some() {
        url.set_port(None).ok()?;
        return try_prefixes(&url);
    }
    None
}
