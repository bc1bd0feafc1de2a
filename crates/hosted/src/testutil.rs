//! Builders shared by the unit tests: npm-shaped publish bodies.

use base64::Engine;
use serde_json::{json, Value};
use sha1::Sha1;
use sha2::{Digest, Sha512};

pub(crate) fn sri(bytes: &[u8]) -> String {
    format!(
        "sha512-{}",
        base64::engine::general_purpose::STANDARD.encode(Sha512::digest(bytes))
    )
}

/// What `npm publish` sends for one version whose tarball is `bytes`.
pub(crate) fn publish_body(name: &str, version: &str, bytes: &[u8]) -> Value {
    let file = format!("{name}-{version}.tgz");
    json!({
        "_id": name,
        "name": name,
        "description": format!("{name} does things"),
        "dist-tags": { "latest": version },
        "versions": {
            version: {
                "name": name,
                "version": version,
                "description": format!("{name} does things"),
                "keywords": ["demo", "pnpr"],
                "dist": {
                    "integrity": sri(bytes),
                    "shasum": hex::encode(Sha1::digest(bytes)),
                    "tarball": format!("http://127.0.0.1:1/{name}/-/{file}"),
                }
            }
        },
        "access": "public",
        "_attachments": {
            file: {
                "content_type": "application/octet-stream",
                "data": base64::engine::general_purpose::STANDARD.encode(bytes),
                "length": bytes.len(),
            }
        }
    })
}
