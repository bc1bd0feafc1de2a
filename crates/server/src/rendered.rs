//! Rendered registry documents and their HTTP answers: the rendered-body
//! cache entry, content ETags with `304`, and the abbreviated-form
//! negotiation.
//!
//! Invariant: a body is served with the validator of exactly its bytes.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::ApiError;

pub(crate) const ABBREVIATED: &str = "application/vnd.npm.install-v1+json";

pub(crate) fn wants_abbreviated(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains(ABBREVIATED))
}

/// A packument body as served, with its validator.
#[derive(Debug)]
pub struct Rendered {
    body: bytes::Bytes,
    etag: String,
    ctype: &'static str,
    /// Epoch ms until which the metadata behind it counts as fresh.
    fresh_until: i64,
}

/// Rendered bodies by key (namespace, name, form, tarball base, uplinks).
pub type RenderedCache = std::sync::Mutex<lru::LruCache<String, std::sync::Arc<Rendered>>>;

impl Rendered {
    /// Serialises `doc` as `ctype`, valid until `fresh_until` (epoch ms).
    pub(crate) fn new(
        doc: &Value,
        ctype: &'static str,
        fresh_until: i64,
    ) -> Result<Self, ApiError> {
        let bytes =
            serde_json::to_vec(doc).map_err(|e| ApiError::internal("serialising a document", e))?;
        Ok(Self {
            etag: content_etag(&bytes),
            body: bytes::Bytes::from(bytes),
            ctype,
            fresh_until,
        })
    }

    pub(crate) fn fresh_at(&self, now_ms: i64) -> bool {
        self.fresh_until > now_ms
    }

    /// `200` with the body, or `304` when the request already has it.
    pub(crate) fn respond(&self, headers: &HeaderMap) -> Response {
        etag_response(self.body.clone(), &self.etag, self.ctype, headers)
    }
}

/// Serialises `body` and answers it with a content ETag (304 on a match).
pub(crate) fn json_with_etag(body: &Value, ctype: &'static str, headers: &HeaderMap) -> Response {
    match Rendered::new(body, ctype, 0) {
        Ok(r) => r.respond(headers),
        Err(e) => e.into_response(),
    }
}

/// A strong validator derived from the body bytes.
fn content_etag(bytes: &[u8]) -> String {
    format!("\"{}\"", &hex::encode(Sha256::digest(bytes))[..32])
}

/// `200` with the body, or `304` when `If-None-Match` names this ETag.
fn etag_response(
    body: bytes::Bytes,
    etag: &str,
    ctype: &'static str,
    headers: &HeaderMap,
) -> Response {
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|inm| {
            inm.split(',')
                .map(|t| t.trim().trim_start_matches("W/"))
                .any(|t| t == etag || t == "*")
        });
    let mut resp = if matches {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (StatusCode::OK, body).into_response()
    };
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    resp
}
