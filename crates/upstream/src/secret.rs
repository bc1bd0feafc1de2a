//! [`Secret`]: the wrapper every credential travels in.
//!
//! Invariant: a credential value can only leave this type through
//! [`Secret::expose`], which is called solely where a header value is built. Debug
//! output prints `<redacted>`, and logs use [`Secret::digest`] instead.

use sha2::{Digest, Sha256};

/// A credential (token, `Authorization` value, custom header value).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Self(value)
    }

    /// The raw value; only for building the outgoing header.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Lowercase hex SHA-256 of the value: the only form of a credential that may
    /// appear in logs or keys.
    pub fn digest(&self) -> String {
        hex::encode(Sha256::digest(self.0.as_bytes()))
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests;
