//! Secret wrappers and credential digests.
//!
//! Invariant: a secret held in a [`Redacted`] cannot be printed by `Debug` or
//! `Display`; the only loggable form of a credential is [`credential_digest`].

use sha2::{Digest, Sha256};
use std::fmt;

/// Holds a secret; `Debug` prints `<redacted>` so the value cannot leak into
/// logs through `{:?}` of an enclosing struct.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Redacted<T>(pub T);

impl<T> Redacted<T> {
    /// Explicit access, so every use of the raw secret is greppable.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Redacted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Lowercase hex SHA-256 of a credential: the only form that may be logged
/// or persisted.
pub fn credential_digest(secret: &[u8]) -> String {
    hex::encode(Sha256::digest(secret))
}
