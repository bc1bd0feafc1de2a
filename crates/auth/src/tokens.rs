//! API tokens, persisted in SQLite and served from memory.
//!
//! Owns the `tokens` table and its in-memory mirror. Invariants:
//! * only the SHA-256 digest of a token is stored or kept in memory; the
//!   plaintext exists once, in the return value of [`TokenStore::create`];
//! * [`TokenStore::lookup`] is one hash plus one map read: no database, no
//!   bcrypt, so bearer authentication is cheap on every request;
//! * the database is written first and the map updated after a successful
//!   commit, under the connection lock, so the map never holds a token the
//!   database would not return after a restart (and a revoked token is gone
//!   from the map as soon as revoke returns);
//! * a token records the account incarnation it was issued to (a digest of
//!   the user's htpasswd entry); the authenticator refuses it once that
//!   entry is gone or replaced, and [`TokenStore::purge_stale`] deletes it.

use crate::redact::Redacted;
use crate::AuthError;
use base64::Engine as _;
use rand::RngCore as _;
use rusqlite::{params, Connection};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Mutex, RwLock};
use std::time::Duration;

use pnpr_clock::now_ms;

#[cfg(test)]
mod tests;

/// Every token starts with this, so leaked tokens are recognisable by
/// secret scanners.
pub const TOKEN_PREFIX: &str = "pnpr_";

/// Shortest key prefix accepted by [`TokenStore::revoke`]; `npm token list`
/// shows the first 6 hex digits as the id.
const MIN_KEY_PREFIX: usize = 6;

/// How many leading plaintext characters a token record keeps for display.
pub const SHOWN_PREFIX: usize = 8;

/// Longest token name accepted from a client.
pub const MAX_TOKEN_NAME: usize = 128;

/// A stored token, without its plaintext.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRecord {
    /// Lowercase hex SHA-256 of the plaintext token; also its public id.
    pub key: String,
    /// The owning user.
    pub user: String,
    /// Read-only tokens must not publish or unpublish.
    pub readonly: bool,
    /// If non-empty, the token is only valid from these networks.
    pub cidr_whitelist: Vec<String>,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_ms: i64,
    /// Digest of the user's htpasswd entry when the token was issued
    /// (`Htpasswd::incarnation`); `None` for tokens issued before tokens
    /// were bound, which stay valid while the user exists.
    pub incarnation: Option<String>,
    /// The name the client gave the token (`npm token create --name`), or
    /// the flow that issued it (`login`); `None` for older tokens.
    pub name: Option<String>,
    /// The first [`SHOWN_PREFIX`] characters of the plaintext (the fixed
    /// `pnpr_` and 3 random characters, 18 of its 256 bits), so listings can
    /// show which token is which and `npm token rm <token>` can match it;
    /// `None` for older tokens.
    pub shown: Option<String>,
}

impl TokenRecord {
    /// Whether a request from `peer` may use this token. With a non-empty
    /// whitelist an unknown peer is refused (fail closed).
    pub fn allows_peer(&self, peer: Option<IpAddr>) -> bool {
        if self.cidr_whitelist.is_empty() {
            return true;
        }
        let Some(peer) = peer else { return false };
        self.cidr_whitelist
            .iter()
            .filter_map(|c| Cidr::parse(c))
            .any(|c| c.contains(peer))
    }
}

/// A parsed `addr/len` (or a bare address, meaning a single host).
#[derive(Clone, Copy, Debug)]
struct Cidr {
    addr: IpAddr,
    len: u8,
}

impl Cidr {
    fn parse(s: &str) -> Option<Cidr> {
        let (addr, len) = match s.trim().split_once('/') {
            Some((a, l)) => (a.parse::<IpAddr>().ok()?, Some(l.parse::<u8>().ok()?)),
            None => (s.trim().parse::<IpAddr>().ok()?, None),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = len.unwrap_or(max);
        (len <= max).then_some(Cidr { addr, len })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        // Compare IPv4-mapped IPv6 peers as IPv4 (dual-stack listeners).
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => prefix_eq(
                u128::from(u32::from(net)),
                u128::from(u32::from(ip)),
                self.len,
                32,
            ),
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_eq(u128::from(net), u128::from(ip), self.len, 128)
            }
            _ => false,
        }
    }
}

fn prefix_eq(a: u128, b: u128, len: u8, width: u32) -> bool {
    let shift = width.saturating_sub(u32::from(len));
    a.checked_shr(shift).unwrap_or(0) == b.checked_shr(shift).unwrap_or(0)
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The token store. Share it behind an `Arc`.
pub struct TokenStore {
    conn: Mutex<Connection>,
    by_digest: RwLock<HashMap<[u8; 32], TokenRecord>>,
}

impl std::fmt::Debug for TokenStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.by_digest.read().map_or(0, |m| m.len());
        f.debug_struct("TokenStore").field("tokens", &n).finish()
    }
}

impl TokenStore {
    /// Opens (creating if needed) the database at `sqlite_path` in WAL mode
    /// and loads every token into memory.
    pub fn open(sqlite_path: &Path) -> Result<Self, AuthError> {
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

        let mut map = HashMap::new();
        {
            let mut stmt = conn.prepare(
                "SELECT key, user, readonly, cidr_whitelist, created_ms, incarnation, name, shown
                 FROM tokens",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, bool>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, Option<String>>(5)?,
                    r.get::<_, Option<String>>(6)?,
                    r.get::<_, Option<String>>(7)?,
                ))
            })?;
            for row in rows {
                let (key, user, readonly, cidrs, created_ms, incarnation, name, shown) = row?;
                let Some(raw) = hex::decode(&key)
                    .ok()
                    .and_then(|b| <[u8; 32]>::try_from(b).ok())
                else {
                    tracing::warn!(key, "skipping token row with a malformed key");
                    continue;
                };
                let cidr_whitelist = serde_json::from_str(&cidrs).unwrap_or_else(|_| {
                    // Unknown peers fail a non-empty whitelist, so a corrupt
                    // list must not widen the token to everywhere.
                    tracing::warn!(key, "token has a corrupt CIDR whitelist; disabling it");
                    vec!["0.0.0.0/32".to_owned()]
                });
                map.insert(
                    raw,
                    TokenRecord {
                        key: hex::encode(raw),
                        user,
                        readonly,
                        cidr_whitelist,
                        created_ms,
                        incarnation,
                        name,
                        shown,
                    },
                );
            }
        }
        Ok(TokenStore {
            conn: Mutex::new(conn),
            by_digest: RwLock::new(map),
        })
    }

    /// Creates an unbound token for `user` (valid while the user exists).
    /// Prefer the authenticator's token-issuing calls, which bind it.
    pub fn create(
        &self,
        user: &str,
        readonly: bool,
        cidr_whitelist: Vec<String>,
    ) -> Result<(String, TokenRecord), AuthError> {
        self.create_bound(user, readonly, cidr_whitelist, None, None)
    }

    /// Creates a token for `user` bound to the account `incarnation`, named
    /// `name` (checked: at most [`MAX_TOKEN_NAME`] characters, no control
    /// characters). Returns the plaintext (show it once, never store it) and
    /// the stored record.
    pub fn create_bound(
        &self,
        user: &str,
        readonly: bool,
        cidr_whitelist: Vec<String>,
        incarnation: Option<&str>,
        name: Option<&str>,
    ) -> Result<(String, TokenRecord), AuthError> {
        if user.is_empty() {
            return Err(AuthError::InvalidUsername("name is empty"));
        }
        if let Some(n) = name {
            if n.chars().count() > MAX_TOKEN_NAME || n.chars().any(char::is_control) {
                return Err(AuthError::InvalidTokenName);
            }
        }
        if let Some(bad) = cidr_whitelist.iter().find(|c| Cidr::parse(c).is_none()) {
            return Err(AuthError::InvalidCidr(bad.clone()));
        }
        let mut raw = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut raw);
        let plaintext = Redacted(format!(
            "{TOKEN_PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
        ));
        let key_raw = digest(plaintext.expose());
        let record = TokenRecord {
            key: hex::encode(key_raw),
            user: user.to_owned(),
            readonly,
            cidr_whitelist,
            created_ms: now_ms(),
            incarnation: incarnation.map(str::to_owned),
            name: name.map(str::to_owned),
            shown: Some(plaintext.expose().chars().take(SHOWN_PREFIX).collect()),
        };
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
        self.by_digest
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key_raw, record.clone());
        drop(conn);
        tracing::info!(user, key = %record.key, "token created");
        Ok((plaintext.0, record))
    }

    /// The record for a plaintext token, if it exists and is not revoked.
    pub fn lookup(&self, token: &str) -> Option<TokenRecord> {
        let key = digest(token);
        self.by_digest
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .cloned()
    }

    /// The user's tokens, oldest first.
    pub fn list(&self, user: &str) -> Vec<TokenRecord> {
        let mut out: Vec<TokenRecord> = self
            .by_digest
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter(|r| r.user == user)
            .cloned()
            .collect();
        out.sort_by(|a, b| {
            a.created_ms
                .cmp(&b.created_ms)
                .then_with(|| a.key.cmp(&b.key))
        });
        out
    }

    /// Users that hold at least one token.
    pub fn users(&self) -> Vec<String> {
        let map = self.by_digest.read().unwrap_or_else(|e| e.into_inner());
        let mut users: Vec<String> = map.values().map(|r| r.user.clone()).collect();
        users.sort();
        users.dedup();
        users
    }

    /// Deletes every token of `user` (a name being registered afresh must
    /// not inherit anything). Returns how many were removed.
    pub fn purge_user(&self, user: &str) -> Result<usize, AuthError> {
        self.purge_where(user, |_| true, true)
    }

    /// Deletes `user`'s tokens that do not belong to the incarnation
    /// `current` (all of them when `current` is `None`: the user is gone).
    /// Unbound tokens are kept while the user exists. Looks at memory first,
    /// so the common case (nothing stale) never touches the database.
    pub fn purge_stale(&self, user: &str, current: Option<&str>) -> Result<usize, AuthError> {
        self.purge_where(
            user,
            |r| match (current, r.incarnation.as_deref()) {
                (None, _) => true,
                (Some(cur), Some(bound)) => cur != bound,
                (Some(_), None) => false,
            },
            false,
        )
    }

    fn purge_where(
        &self,
        user: &str,
        stale: impl Fn(&TokenRecord) -> bool,
        whole_user: bool,
    ) -> Result<usize, AuthError> {
        let doomed: Vec<[u8; 32]> = {
            let map = self.by_digest.read().unwrap_or_else(|e| e.into_inner());
            map.iter()
                .filter(|(_, r)| r.user == user && stale(r))
                .map(|(k, _)| *k)
                .collect()
        };
        // The map mirrors the database (every write goes through here), so
        // an empty selection means nothing to delete; `purge_user` deletes
        // user-wide anyway, for rows another process may have written.
        if doomed.is_empty() && !whole_user {
            return Ok(0);
        }
        let mut conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let tx = conn.transaction()?;
        let mut removed = 0;
        if whole_user {
            removed += tx.execute("DELETE FROM tokens WHERE user = ?1", params![user])?;
        }
        for k in &doomed {
            removed += tx.execute(
                "DELETE FROM tokens WHERE key = ?1 AND user = ?2",
                params![hex::encode(k), user],
            )?;
        }
        tx.commit()?;
        {
            let mut map = self.by_digest.write().unwrap_or_else(|e| e.into_inner());
            for k in &doomed {
                map.remove(k);
            }
        }
        drop(conn);
        if removed > 0 {
            tracing::info!(user, removed, "stale tokens purged");
        }
        Ok(removed)
    }

    /// Revokes one of `user`'s tokens, named by its plaintext, its hex key,
    /// or a unique key prefix of at least 6 hex digits. Returns whether a
    /// token was removed; other users' tokens are never touched.
    pub fn revoke(&self, user: &str, key_or_token: &str) -> Result<bool, AuthError> {
        let Some(key_raw) = self.resolve_for_revoke(user, key_or_token)? else {
            return Ok(false);
        };
        let key = hex::encode(key_raw);
        let mut conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let tx = conn.transaction()?;
        let removed = tx.execute(
            "DELETE FROM tokens WHERE key = ?1 AND user = ?2",
            params![key, user],
        )?;
        tx.commit()?;
        let in_map = {
            let mut map = self.by_digest.write().unwrap_or_else(|e| e.into_inner());
            // The user check already happened in resolve; re-check in case a
            // concurrent revoke raced us.
            match map.get(&key_raw) {
                Some(r) if r.user == user => map.remove(&key_raw).is_some(),
                _ => false,
            }
        };
        drop(conn);
        let revoked = removed > 0 || in_map;
        if revoked {
            tracing::info!(user, key, "token revoked");
        }
        Ok(revoked)
    }

    fn resolve_for_revoke(&self, user: &str, input: &str) -> Result<Option<[u8; 32]>, AuthError> {
        let map = self.by_digest.read().unwrap_or_else(|e| e.into_inner());
        let owned = |k: &[u8; 32]| map.get(k).is_some_and(|r| r.user == user);

        // The plaintext token itself.
        let by_plaintext = digest(input);
        if owned(&by_plaintext) {
            return Ok(Some(by_plaintext));
        }
        let wanted = input.trim().to_ascii_lowercase();
        if wanted.len() < MIN_KEY_PREFIX || !wanted.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(None);
        }
        let mut matches = map
            .iter()
            .filter(|(_, r)| r.user == user && r.key.starts_with(&wanted))
            .map(|(k, _)| *k);
        match (matches.next(), matches.next()) {
            (Some(k), None) => Ok(Some(k)),
            (None, _) => Ok(None),
            (Some(_), Some(_)) => Err(AuthError::AmbiguousToken),
        }
    }
}
