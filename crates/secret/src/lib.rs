//! `pnpr-secret`: [`Secret`], the one wrapper every credential travels in —
//! uplink tokens and header values from the config, the HMAC `secret:`, and
//! the `Authorization` values the upstream client sends.
//!
//! Invariant: a value can only leave this type through [`Secret::expose`],
//! called solely where it is used (building a header, keying an HMAC).
//! `Debug` and `Display` print `<redacted>`; logs and keys use
//! [`Secret::digest`].

use std::fmt;

use sha2::{Digest, Sha256};

/// A credential or key.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Self(value)
    }

    /// The raw value. Call this only where the value is actually used, never
    /// to format a message.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Lowercase hex SHA-256 of the value: the only form of a credential that
    /// may appear in logs or keys.
    pub fn digest(&self) -> String {
        hex::encode(Sha256::digest(self.0.as_bytes()))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests;
