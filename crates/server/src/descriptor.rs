//! HMAC access descriptors (spec §5.7): the only way a private namespace is
//! named on disk or in memory.
//!
//! An uplink's namespace id is `hex(HMAC-SHA256(secret, "alias\0<uplink>\0<sha256(credential)>"))`,
//! so rotating the uplink token re-keys its namespace with no operator step,
//! and no token (nor its digest) appears in any path.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// Lowercase hex SHA-256 of a credential value: its "epoch".
pub fn credential_digest(value: &str) -> String {
    hex::encode(Sha256::digest(value.as_bytes()))
}

/// `hex(HMAC-SHA256(secret, input))`.
pub fn hmac_hex(secret: &[u8], input: &[u8]) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = match HmacSha256::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(input);
    hex::encode(mac.finalize().into_bytes())
}

/// Key input of an Alias descriptor.
pub fn alias_key_input(uplink: &str, credential_digest: &str) -> Vec<u8> {
    let mut v = b"alias\0".to_vec();
    v.extend_from_slice(uplink.as_bytes());
    v.push(0);
    v.extend_from_slice(credential_digest.as_bytes());
    v
}

/// Key input of a Hosted descriptor.
pub fn hosted_key_input(package: &str) -> Vec<u8> {
    let mut v = b"hosted\0".to_vec();
    v.extend_from_slice(package.as_bytes());
    v
}

/// Descriptor id of an uplink namespace.
pub fn alias_id(secret: &[u8], uplink: &str, credential_digest: &str) -> String {
    hmac_hex(secret, &alias_key_input(uplink, credential_digest))
}

#[cfg(test)]
mod tests;
