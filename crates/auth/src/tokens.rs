//! API tokens: minting, validation and revocation rules over a
//! [`TokenBackend`] (SQLite served from memory by default, see
//! [`sqlite`]; PostgreSQL shared by several nodes, see `crate::postgres`).
//!
//! Invariants:
//! * only the SHA-256 digest of a token is stored or kept in memory; the
//!   plaintext exists once, in the return value of [`TokenStore::create`];
//! * [`TokenStore::lookup`] is one hash plus one backend read and never
//!   bcrypt; a failing backend refuses the token rather than admitting it;
//! * revocation goes to the backend before it returns, so the next lookup
//!   on any process sharing the backend refuses the token;
//! * a token records the account incarnation it was issued to (a digest of
//!   the user's htpasswd entry); the authenticator refuses it once that
//!   entry is gone or replaced, and [`TokenStore::purge_stale`] deletes it.

use crate::redact::Redacted;
use crate::AuthError;
use base64::Engine as _;
use rand::RngCore as _;
use sha2::{Digest, Sha256};
use std::net::IpAddr;
use std::path::Path;

use crate::store::TokenBackend;
pub(crate) use sqlite::SqliteTokens;

use pnpr_clock::now_ms;

pub(crate) mod sqlite;
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

/// The token store: validation, minting and revocation rules over a
/// [`TokenBackend`]. Share it behind an `Arc`.
pub struct TokenStore {
    backend: Box<dyn TokenBackend>,
}

impl std::fmt::Debug for TokenStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenStore")
            .field("backend", &self.backend)
            .finish()
    }
}

impl TokenStore {
    /// Opens (creating if needed) the SQLite database at `sqlite_path` and
    /// loads every token into memory.
    pub fn open(sqlite_path: &Path) -> Result<Self, AuthError> {
        Ok(Self::with_backend(Box::new(SqliteTokens::open(
            sqlite_path,
        )?)))
    }

    /// A store over any backend (e.g. the shared PostgreSQL one).
    pub fn with_backend(backend: Box<dyn TokenBackend>) -> Self {
        TokenStore { backend }
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
        let record = TokenRecord {
            key: hex::encode(digest(plaintext.expose())),
            user: user.to_owned(),
            readonly,
            cidr_whitelist,
            created_ms: now_ms(),
            incarnation: incarnation.map(str::to_owned),
            name: name.map(str::to_owned),
            shown: Some(plaintext.expose().chars().take(SHOWN_PREFIX).collect()),
        };
        self.backend.insert(&record)?;
        tracing::info!(user, key = %record.key, "token created");
        Ok((plaintext.0, record))
    }

    /// The record for a plaintext token, if it exists and is not revoked.
    /// A backend failure refuses the token (fail closed) and is logged.
    pub fn lookup(&self, token: &str) -> Option<TokenRecord> {
        match self.backend.get(&digest(token)) {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(error = %e, "token lookup failed; treating the caller as anonymous");
                None
            }
        }
    }

    /// The user's tokens, oldest first (empty, logged, if the backend fails).
    pub fn list(&self, user: &str) -> Vec<TokenRecord> {
        self.try_list(user).unwrap_or_else(|e| {
            tracing::warn!(user, error = %e, "cannot list tokens");
            Vec::new()
        })
    }

    fn try_list(&self, user: &str) -> Result<Vec<TokenRecord>, AuthError> {
        let mut out = self.backend.list(user)?;
        out.sort_by(|a, b| {
            a.created_ms
                .cmp(&b.created_ms)
                .then_with(|| a.key.cmp(&b.key))
        });
        Ok(out)
    }

    /// Users that hold at least one token.
    pub fn users(&self) -> Vec<String> {
        let mut users = self.backend.users().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot list token holders");
            Vec::new()
        });
        users.sort();
        users.dedup();
        users
    }

    /// Deletes every token of `user` (a name being registered afresh must
    /// not inherit anything). Returns how many were removed.
    pub fn purge_user(&self, user: &str) -> Result<usize, AuthError> {
        let removed = self.backend.delete_user(user)?;
        if removed > 0 {
            tracing::info!(user, removed, "stale tokens purged");
        }
        Ok(removed)
    }

    /// Deletes `user`'s tokens that do not belong to the incarnation
    /// `current` (all of them when `current` is `None`: the user is gone).
    /// Unbound tokens are kept while the user exists.
    pub fn purge_stale(&self, user: &str, current: Option<&str>) -> Result<usize, AuthError> {
        let doomed: Vec<[u8; 32]> = self
            .backend
            .list(user)?
            .iter()
            .filter(|r| match (current, r.incarnation.as_deref()) {
                (None, _) => true,
                (Some(cur), Some(bound)) => cur != bound,
                (Some(_), None) => false,
            })
            .filter_map(|r| key_bytes(&r.key))
            .collect();
        if doomed.is_empty() {
            return Ok(0);
        }
        let removed = self.backend.delete(user, &doomed)?;
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
        let revoked = self.backend.delete(user, &[key_raw])? > 0;
        if revoked {
            tracing::info!(user, key = %hex::encode(key_raw), "token revoked");
        }
        Ok(revoked)
    }

    fn resolve_for_revoke(&self, user: &str, input: &str) -> Result<Option<[u8; 32]>, AuthError> {
        // The plaintext token itself.
        let by_plaintext = digest(input);
        if self
            .backend
            .get(&by_plaintext)?
            .is_some_and(|r| r.user == user)
        {
            return Ok(Some(by_plaintext));
        }
        let wanted = input.trim().to_ascii_lowercase();
        if wanted.len() < MIN_KEY_PREFIX || !wanted.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(None);
        }
        let owned = self.backend.list(user)?;
        let mut matches = owned
            .iter()
            .filter(|r| r.key.starts_with(&wanted))
            .filter_map(|r| key_bytes(&r.key));
        match (matches.next(), matches.next()) {
            (Some(k), None) => Ok(Some(k)),
            (None, _) => Ok(None),
            (Some(_), Some(_)) => Err(AuthError::AmbiguousToken),
        }
    }
}

/// The raw digest of a hex key; `None` for a malformed one.
pub(crate) fn key_bytes(key: &str) -> Option<[u8; 32]> {
    hex::decode(key)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
}
