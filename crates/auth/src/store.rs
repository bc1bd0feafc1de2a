//! The storage seams of users and tokens: what the authenticator needs from
//! a backend, so the embedded SQLite/htpasswd pair and the shared PostgreSQL
//! tables are interchangeable and the authenticator never knows which.
//!
//! Invariants every implementation keeps: a token is stored and looked up
//! only by the SHA-256 digest of its plaintext; a deletion is visible to the
//! very next [`TokenBackend::get`] on every process sharing the backend (a
//! backend may cache only what it alone writes); user entries hold password
//! hashes, never passwords, and the incarnation of an account is the digest
//! of its hash (so a re-created account is a different incarnation).

use crate::tokens::TokenRecord;
use crate::AuthError;

/// Persistence of API tokens.
pub trait TokenBackend: Send + Sync + std::fmt::Debug {
    /// Stores a new token (its `key` is the hex digest).
    fn insert(&self, record: &TokenRecord) -> Result<(), AuthError>;
    /// The token whose plaintext digests to `digest`, if it exists.
    fn get(&self, digest: &[u8; 32]) -> Result<Option<TokenRecord>, AuthError>;
    /// Every token of `user`, in any order.
    fn list(&self, user: &str) -> Result<Vec<TokenRecord>, AuthError>;
    /// Every user holding at least one token, in any order.
    fn users(&self) -> Result<Vec<String>, AuthError>;
    /// Deletes those of `digests` that belong to `user`; returns how many.
    fn delete(&self, user: &str, digests: &[[u8; 32]]) -> Result<usize, AuthError>;
    /// Deletes every token of `user`; returns how many.
    fn delete_user(&self, user: &str) -> Result<usize, AuthError>;
}

/// The user database: who exists and with which password hash.
///
/// `verify_with_hash`, `verify_incarnation` and `add_user` run bcrypt; call
/// them from a blocking context.
pub trait UserStore: Send + Sync + std::fmt::Debug {
    /// The stored hash for `user`, if any.
    fn current_hash(&self, user: &str) -> Option<String>;
    /// Checks `password` and returns the hash it matched.
    fn verify_with_hash(&self, user: &str, password: &str) -> Option<String>;
    /// Checks `password` and returns the matching entry's incarnation.
    fn verify_incarnation(&self, user: &str, password: &str) -> Result<Option<String>, AuthError>;
    /// Digest of `user`'s current entry; `None` if there is no such user.
    fn incarnation(&self, user: &str) -> Option<String> {
        self.current_hash(user)
            .map(|h| crate::htpasswd::incarnation_of(&h))
    }
    /// Like [`Self::incarnation`], but a failed lookup is an error rather
    /// than "no such user", so callers never delete state over an outage.
    fn checked_incarnation(&self, user: &str) -> Result<Option<String>, AuthError> {
        Ok(self.incarnation(user))
    }
    /// Whether `user` exists.
    fn user_exists(&self, user: &str) -> bool {
        self.current_hash(user).is_some()
    }
    /// Registers a user (bcrypt, cost 10), within the registration limit.
    fn add_user(&self, user: &str, password: &str) -> Result<(), AuthError>;
    /// Whether removals read from the store may be acted upon now (a file
    /// being edited may be read half-written; a database never is).
    fn settled(&self) -> bool {
        true
    }
    /// Whether entries can change behind the store's back (a file edited by
    /// hand), so [`crate::Authenticator::sweep`] must compare every token
    /// holder against it. A database changed only through this trait
    /// retires tokens in the writing transaction and lazily on use, and is
    /// not scanned (a scan per node every sweep would cost a query per user).
    fn edited_out_of_band(&self) -> bool {
        false
    }
    /// Users removed or replaced out of band since the previous call.
    fn drain_retired(&self) -> Vec<String> {
        Vec::new()
    }
    /// How many password hash checks ran (tests prove caching with it).
    fn hash_checks(&self) -> u64;
}
