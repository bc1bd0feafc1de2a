//! `Secret`: a string that must never reach a log line, an error or `Debug` output.
//!
//! Invariant: the only way to see the inner value is the explicit [`Secret::expose`]
//! call, so a stray `{:?}` on a config struct prints `<redacted>` instead of a token.

use std::fmt;

/// A credential or key (uplink token, header value, HMAC `secret:`).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Self(value)
    }

    /// The raw value. Call this only where the value is actually used (building a
    /// header, keying an HMAC), never to format a message.
    pub fn expose(&self) -> &str {
        &self.0
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
