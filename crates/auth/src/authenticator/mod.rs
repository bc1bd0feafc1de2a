//! Turns an `Authorization` header into an [`Identity`], and logs users in.
//!
//! Owns the per-process cache of verified Basic credentials. Invariants:
//! * any header that is missing, malformed, unknown, revoked or wrong yields
//!   [`Identity::Anonymous`]; parsing never panics on arbitrary input;
//! * bcrypt runs at most once per distinct (user, password) while the user's
//!   htpasswd hash is unchanged: the cache stores the hash a password was
//!   verified against, so a password change or removed user invalidates it;
//! * the cache holds only salted SHA-256 digests of credentials, never the
//!   passwords, and is bounded.

use crate::htpasswd::Htpasswd;
use crate::policy::Identity;
use crate::tokens::{TokenRecord, TokenStore};
use crate::AuthError;
use base64::Engine as _;
use rand::RngCore as _;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;

#[cfg(test)]
mod tests;

/// Upper bound on cached Basic credentials; oldest entries are evicted.
const BASIC_CACHE_CAPACITY: usize = 1024;

/// The outcome of authenticating a request: who it is and whether the
/// credential may write (read-only tokens must not publish).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// Who is calling.
    pub identity: Identity,
    /// True for read-only tokens; always false for Basic credentials and
    /// anonymous callers (policy decides what anonymous may do).
    pub readonly: bool,
    /// The token's id (hex SHA-256) when a bearer token was used; safe to log.
    pub token_key: Option<String>,
}

impl Caller {
    fn anonymous() -> Self {
        Caller {
            identity: Identity::Anonymous,
            readonly: false,
            token_key: None,
        }
    }
}

struct CachedBasic {
    user: String,
    /// The htpasswd hash the password was verified against.
    hash: String,
}

/// A bounded FIFO map from salted credential digest to verified user.
#[derive(Default)]
struct BasicCache {
    entries: HashMap<[u8; 32], CachedBasic>,
    order: VecDeque<[u8; 32]>,
}

impl BasicCache {
    fn insert(&mut self, key: [u8; 32], value: CachedBasic) {
        if self.entries.insert(key, value).is_none() {
            self.order.push_back(key);
        }
        while self.entries.len() > BASIC_CACHE_CAPACITY {
            match self.order.pop_front() {
                Some(old) => {
                    self.entries.remove(&old);
                }
                None => break,
            }
        }
    }

    fn remove(&mut self, key: &[u8; 32]) {
        if self.entries.remove(key).is_some() {
            self.order.retain(|k| k != key);
        }
    }
}

/// Authenticates requests against the user database and the token store.
/// Share it behind an `Arc`.
pub struct Authenticator {
    users: Htpasswd,
    tokens: TokenStore,
    /// Per-process salt so cached digests are useless outside this process.
    salt: [u8; 32],
    basic_cache: Mutex<BasicCache>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("users", &self.users)
            .field("tokens", &self.tokens)
            .finish_non_exhaustive()
    }
}

/// Splits `"<scheme> <credentials>"`; the scheme is matched
/// case-insensitively by the caller.
fn split_scheme(header: &str) -> Option<(&str, &str)> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(|c: char| c.is_ascii_whitespace())?;
    let rest = rest.trim();
    (!rest.is_empty()).then_some((scheme, rest))
}

impl Authenticator {
    /// Combines the user database and the token store.
    pub fn new(users: Htpasswd, tokens: TokenStore) -> Self {
        let mut salt = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut salt);
        Authenticator {
            users,
            tokens,
            salt,
            basic_cache: Mutex::new(BasicCache::default()),
        }
    }

    /// The user database.
    pub fn users(&self) -> &Htpasswd {
        &self.users
    }

    /// The token store.
    pub fn tokens(&self) -> &TokenStore {
        &self.tokens
    }

    /// Who sent this `Authorization` header. Tokens with a CIDR whitelist are
    /// refused here because the peer is unknown; use [`Self::authenticate`]
    /// with the peer address to honour them.
    ///
    /// A `Basic` credential not yet cached runs bcrypt once: call from
    /// `spawn_blocking` (or accept one slow request per new credential).
    pub fn identify(&self, authorization: Option<&str>) -> Identity {
        self.authenticate(authorization, None).identity
    }

    /// Full authentication: identity, read-only flag and token id, checking
    /// token CIDR whitelists against `peer`.
    pub fn authenticate(&self, authorization: Option<&str>, peer: Option<IpAddr>) -> Caller {
        let Some((scheme, credentials)) = authorization.and_then(split_scheme) else {
            return Caller::anonymous();
        };
        if scheme.eq_ignore_ascii_case("bearer") {
            self.bearer(credentials, peer)
        } else if scheme.eq_ignore_ascii_case("basic") {
            self.basic(credentials)
        } else {
            Caller::anonymous()
        }
    }

    fn bearer(&self, token: &str, peer: Option<IpAddr>) -> Caller {
        let Some(record) = self.tokens.lookup(token) else {
            return Caller::anonymous();
        };
        if !record.allows_peer(peer) {
            tracing::debug!(key = %record.key, "token used from outside its CIDR whitelist");
            return Caller::anonymous();
        }
        Caller {
            identity: Identity::User(record.user),
            readonly: record.readonly,
            token_key: Some(record.key),
        }
    }

    fn basic(&self, encoded: &str) -> Caller {
        let engine = base64::engine::GeneralPurpose::new(
            &base64::alphabet::STANDARD,
            base64::engine::GeneralPurposeConfig::new()
                .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
        );
        let Ok(decoded) = engine.decode(encoded) else {
            return Caller::anonymous();
        };
        let Ok(decoded) = String::from_utf8(decoded) else {
            return Caller::anonymous();
        };
        let Some((user, password)) = decoded.split_once(':') else {
            return Caller::anonymous();
        };
        if user.is_empty() || password.is_empty() {
            return Caller::anonymous();
        }
        if self.verify_cached(user, password) {
            Caller {
                identity: Identity::User(user.to_owned()),
                readonly: false,
                token_key: None,
            }
        } else {
            Caller::anonymous()
        }
    }

    fn cache_key(&self, user: &str, password: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.salt);
        // Length-prefix the user so (user, password) splits are unambiguous.
        h.update((user.len() as u64).to_le_bytes());
        h.update(user.as_bytes());
        h.update(password.as_bytes());
        h.finalize().into()
    }

    /// Verifies a password, consulting and filling the cache.
    fn verify_cached(&self, user: &str, password: &str) -> bool {
        let key = self.cache_key(user, password);
        let current = self.users.current_hash(user);
        {
            let mut cache = self.basic_cache.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(hit) = cache.entries.get(&key) {
                if hit.user == user && current.as_deref() == Some(hit.hash.as_str()) {
                    return true;
                }
                // Stale: the password changed or the user was removed.
                cache.remove(&key);
            }
        }
        if current.is_none() {
            return false;
        }
        // bcrypt runs without the cache lock held.
        match self.users.verify_with_hash(user, password) {
            Some(hash) => {
                self.basic_cache
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(
                        key,
                        CachedBasic {
                            user: user.to_owned(),
                            hash,
                        },
                    );
                true
            }
            None => false,
        }
    }

    /// `npm login` / `npm adduser`: verifies an existing user's password, or
    /// registers a new user when registration is open, then issues a
    /// read-write token. Runs bcrypt: call from `spawn_blocking`.
    ///
    /// Errors: [`AuthError::BadCredentials`] for a wrong password; the
    /// registration errors of [`Htpasswd::add_user`] for new users.
    pub fn login(&self, user: &str, password: &str) -> Result<(String, TokenRecord), AuthError> {
        if password.is_empty() {
            return Err(AuthError::EmptyPassword);
        }
        if !self.users.user_exists(user) {
            match self.users.add_user(user, password) {
                Ok(()) => {
                    tracing::info!(user, "user registered");
                    return self.tokens.create(user, false, Vec::new());
                }
                // Registered concurrently: fall through to a normal login.
                Err(AuthError::UserExists) => {}
                Err(e) => return Err(e),
            }
        }
        if self.users.verify(user, password)? {
            self.tokens.create(user, false, Vec::new())
        } else {
            tracing::info!(user, "login failed");
            Err(AuthError::BadCredentials)
        }
    }
}
