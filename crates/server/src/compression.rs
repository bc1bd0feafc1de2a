//! Response compression for JSON documents (packuments, version documents,
//! dist-tags, search, errors), negotiated by `Accept-Encoding`: zstd, br or
//! gzip, whichever the client prefers.
//!
//! Invariant guarded: only JSON bodies are ever compressed. Tarballs
//! (already gzip, and verified byte for byte by clients), the `/v1/install`
//! body (gzip framed by the protocol) and the v0 NDJSON stream (each frame
//! must reach the client when it is written, which an encoder's buffering
//! would delay) keep their bytes and their framing.

use axum::http::{header, HeaderMap};
use tower_http::compression::predicate::{Predicate, SizeAbove};
use tower_http::compression::CompressionLayer;

/// Bodies shorter than this are sent as they are: below one packet the
/// encoder's header and CPU cost buy nothing.
const MIN_SIZE: u16 = 1024;

/// Content types eligible for compression (media type, parameters ignored).
const JSON_TYPES: &[&str] = &["application/json", "application/vnd.npm.install-v1+json"];

/// Compress when the body is JSON.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct JsonOnly;

impl Predicate for JsonOnly {
    fn should_compress<B>(&self, response: &axum::http::Response<B>) -> bool
    where
        B: axum::body::HttpBody,
    {
        is_json(response.headers())
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or_default().trim())
        .is_some_and(|media| JSON_TYPES.iter().any(|t| media.eq_ignore_ascii_case(t)))
}

/// The layer the server wraps its routes in.
pub(crate) fn layer() -> CompressionLayer<impl Predicate> {
    CompressionLayer::new()
        .gzip(true)
        .br(true)
        .zstd(true)
        .compress_when(SizeAbove::new(MIN_SIZE).and(JsonOnly))
}

/// What the layer's predicate decides for a response (unit tests).
#[cfg(test)]
fn decides(content_type: &str, len: usize) -> bool {
    let resp = axum::http::Response::builder()
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CONTENT_LENGTH, len)
        .body(axum::body::Body::from(vec![b' '; len]))
        .expect("response");
    SizeAbove::new(MIN_SIZE)
        .and(JsonOnly)
        .should_compress(&resp)
}

#[cfg(test)]
mod tests {
    use super::decides;

    #[test]
    fn only_json_bodies_are_compressed() {
        assert!(decides("application/json", 4096));
        assert!(decides("application/json; charset=utf-8", 4096));
        assert!(decides("application/vnd.npm.install-v1+json", 4096));
        assert!(!decides("application/json", 100));
        assert!(!decides("application/octet-stream", 1 << 20));
        assert!(!decides("application/x-ndjson", 1 << 20));
        assert!(!decides(pnpr_protocol::CONTENT_TYPE, 1 << 20));
    }
}
