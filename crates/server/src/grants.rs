//! Upstream-authority bookkeeping of `POST /v1/install` (spec §1.4, §4.4–4.6):
//! which forwarded credential belongs to a URL (nerf-dart lookup), the global
//! public-package set and the per-user grant table.
//!
//! The two tables live behind [`AccessBackend`]: this node's SQLite files
//! ([`sqlite`]) or, with `database:`, the PostgreSQL every node shares
//! ([`postgres`]), chosen once at startup. [`AccessStore`] is all the
//! handlers see; it holds the rules, so both backends keep them alike.
//!
//! Invariants guarded here:
//! - a grant is only ever read back for the user it was recorded for, and a
//!   public classification is the only fact shared between users;
//! - clearing a package's grants matches the exact `name@` prefix, so `foo`
//!   never touches `foo-bar` (no `LIKE`, whose `_`/`%` are wildcards);
//! - with a TTL, an expired row is treated exactly like a missing one (the
//!   check is made here, on the row's timestamp, for either backend);
//! - grants belong to one incarnation of a user name: when the account is
//!   registered afresh or retired from htpasswd, [`AccessStore::clear_user`]
//!   drops them, so a newcomer under an old name inherits nothing;
//! - every database operation is best-effort: an error is logged and reads
//!   as "no grant / not public", so it can deny but never allow, and it never
//!   fails a request by itself.

pub mod postgres;
pub mod sqlite;

use std::time::Duration;

use base64::Engine;
use pnpr_protocol::AuthHeaders;

#[cfg(test)]
mod pg_tests;
#[cfg(test)]
mod tests;

/// Soft cap on rows of each table; the oldest rows go first.
pub const MAX_ROWS: i64 = 100_000;

/// A backend's failure, as text: it is only ever logged (then read as
/// "deny"), never matched on or shown to a client.
pub type Outcome<T> = Result<T, String>;

/// Where the grant table and the public set are stored. Timestamps are the
/// caller's milliseconds; a backend stores and returns them, never judges
/// them (the TTL is [`AccessStore`]'s).
pub trait AccessBackend: Send + Sync {
    /// When `name` was last classified public, if ever.
    fn public_at(&self, name: &str) -> Outcome<Option<i64>>;
    /// Records `name` as public at `now_ms` (an upsert).
    fn mark_public(&self, name: &str, now_ms: i64) -> Outcome<()>;
    /// When `user` was last granted `pkg`, if ever.
    fn grant_at(&self, user: &str, pkg: &str) -> Outcome<Option<i64>>;
    /// Records `user`'s grant for `pkg` at `now_ms` (an upsert).
    fn record_grant(&self, user: &str, pkg: &str, now_ms: i64) -> Outcome<()>;
    /// Deletes `user`'s grants whose key starts with exactly `prefix`
    /// (compared as text, no pattern characters). Returns how many went.
    fn clear_prefix(&self, user: &str, prefix: &str) -> Outcome<usize>;
    /// Deletes every grant of `user`. Returns how many went.
    fn clear_user(&self, user: &str) -> Outcome<usize>;
}

/// The public set and the grant table, with the rules of spec §4.4–4.6 on
/// top of whichever backend holds them.
pub struct AccessStore {
    backend: Box<dyn AccessBackend>,
    ttl_ms: Option<i64>,
}

impl AccessStore {
    /// The store over `backend`; rows older than `ttl` read as missing.
    pub fn new(backend: Box<dyn AccessBackend>, ttl: Option<Duration>) -> Self {
        AccessStore {
            backend,
            ttl_ms: ttl.map(|t| i64::try_from(t.as_millis()).unwrap_or(i64::MAX)),
        }
    }

    fn live(&self, at_ms: i64, now_ms: i64) -> bool {
        self.ttl_ms
            .is_none_or(|ttl| now_ms.saturating_sub(at_ms) < ttl)
    }

    /// The answer, or `None` (logged) on failure: callers turn that into
    /// the denying side.
    fn logged<T>(what: &str, result: Outcome<T>) -> Option<T> {
        result
            .map_err(|error| tracing::warn!(what, %error, "access table operation failed"))
            .ok()
    }

    /// Whether `name` is classified public (and, with a TTL, recently).
    pub fn is_public(&self, name: &str, now_ms: i64) -> bool {
        Self::logged("public lookup", self.backend.public_at(name))
            .flatten()
            .is_some_and(|at| self.live(at, now_ms))
    }

    /// Records `name` as readable anonymously, for every user.
    pub fn mark_public(&self, name: &str, now_ms: i64) {
        Self::logged("public insert", self.backend.mark_public(name, now_ms));
    }

    /// Whether `user` holds a live grant for `pkg` (`name@version`).
    pub fn has_grant(&self, user: &str, pkg: &str, now_ms: i64) -> bool {
        Self::logged("grant lookup", self.backend.grant_at(user, pkg))
            .flatten()
            .is_some_and(|at| self.live(at, now_ms))
    }

    /// Records (or refreshes) `user`'s grant for `pkg` (`name@version`).
    pub fn record_grant(&self, user: &str, pkg: &str, now_ms: i64) {
        Self::logged("grant insert", self.backend.record_grant(user, pkg, now_ms));
    }

    /// Clear-on-discovery (spec §4.6): drops every grant `user` holds for any
    /// version of `name`. Returns how many rows went.
    pub fn clear_package(&self, user: &str, name: &str) -> usize {
        let prefix = format!("{name}@");
        Self::logged("grant clear", self.backend.clear_prefix(user, &prefix)).unwrap_or(0)
    }

    /// Drops every grant `user` holds (the account was registered afresh or
    /// removed). Returns how many rows went.
    pub fn clear_user(&self, user: &str) -> usize {
        let removed =
            Self::logged("grant clear (user)", self.backend.clear_user(user)).unwrap_or(0);
        if removed > 0 {
            tracing::info!(user, removed, "grants of a retired account cleared");
        }
        removed
    }
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
