//! Request ids: every request gets one, from a well-formed `X-Request-Id`
//! header or freshly generated, and carries it everywhere an operator looks.
//!
//! Invariants guarded here:
//! - a client-supplied id is used only when it is 1..=[`MAX_LEN`] characters
//!   of a log-safe charset (ASCII letters, digits, `-`, `_`, `.`, `:`), so it
//!   can never forge a log line, a header or a JSON field; anything else is
//!   replaced by a generated id;
//! - the response carries the id in `X-Request-Id`;
//! - every log line written while the request is served (handlers, the
//!   access log, upstream fetches, also those run in a shared flight task the
//!   request started) is inside a span carrying `request_id`;
//! - every JSON error body (any status >= 400 with a JSON content type, not
//!   only [`crate::ApiError`]: rejections axum produces itself too) gets a
//!   `requestId` field, so a user can quote it back to the operator.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use http_body_util::BodyExt;
use tracing::Instrument;

/// The header read and echoed.
pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Longest client-supplied id kept.
pub const MAX_LEN: usize = 128;

/// Error bodies larger than this are passed through untouched: pnpr's own
/// are a sentence, and buffering an unbounded body to add a field would be
/// a memory lever for whoever can cause the error.
const MAX_ERROR_BODY: u64 = 64 * 1024;

/// The id of the request being served, stored in the request's extensions
/// for handlers that want it (the status page's recent errors).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestId(pub String);

/// The client's id when it is well-formed, else a fresh random one.
pub fn accept_or_generate(supplied: Option<&HeaderValue>) -> RequestId {
    match supplied.and_then(|v| v.to_str().ok()) {
        Some(s) if is_valid(s) => RequestId(s.to_string()),
        _ => generate(),
    }
}

/// Whether a client-supplied id may be used as it is.
pub fn is_valid(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// 128 random bits as 32 lowercase hex characters.
fn generate() -> RequestId {
    RequestId(hex::encode(rand::random::<[u8; 16]>()))
}

/// Middleware (outermost but for compression): assigns the id, runs the
/// request inside its span, echoes the id and stamps JSON error bodies.
pub async fn layer(mut req: Request, next: Next) -> Response {
    let id = accept_or_generate(req.headers().get(&HEADER));
    // error level: the span must be enabled whatever `log.level` lets
    // through, or warnings would lose their id when only warnings are on.
    let span = tracing::error_span!("req", request_id = %id.0);
    req.extensions_mut().insert(id.clone());
    let resp = next.run(req).instrument(span).await;
    let mut resp = stamp_error_body(resp, &id).await;
    if let Ok(v) = HeaderValue::from_str(&id.0) {
        resp.headers_mut().insert(HEADER, v);
    }
    resp
}

/// Adds `requestId` to a small JSON error object; anything else (success,
/// non-JSON, streamed or large bodies, non-object JSON) is returned as is.
async fn stamp_error_body(resp: Response, id: &RequestId) -> Response {
    if resp.status().as_u16() < 400 || !is_json(&resp) {
        return resp;
    }
    let small = axum::body::HttpBody::size_hint(resp.body())
        .upper()
        .is_some_and(|n| n <= MAX_ERROR_BODY);
    if !small {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let bytes = match body.collect().await {
        Ok(c) => c.to_bytes(),
        // The body was already produced in memory; a failure here means an
        // error body we could not read, so send nothing rather than guess.
        Err(_) => bytes::Bytes::new(),
    };
    let stamped = match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(serde_json::Value::Object(mut map)) => {
            map.insert("requestId".into(), serde_json::Value::String(id.0.clone()));
            serde_json::Value::Object(map).to_string().into()
        }
        _ => bytes,
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(stamped))
}

fn is_json(resp: &Response) -> bool {
    resp.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or_default().trim())
        .is_some_and(|m| m.eq_ignore_ascii_case("application/json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bounded_log_safe_ids_are_accepted() {
        for good in ["abc", "0f3e-11:22.x_y", &"a".repeat(MAX_LEN)] {
            assert!(is_valid(good), "{good}");
            let v = HeaderValue::from_str(good).unwrap();
            assert_eq!(accept_or_generate(Some(&v)).0, good);
        }
        for bad in [
            "",
            "a b",
            "a\"b",
            "x\ny",
            "é",
            "a/b",
            &"a".repeat(MAX_LEN + 1),
        ] {
            assert!(!is_valid(bad), "{bad:?}");
        }
        let bad = HeaderValue::from_static("has space");
        let generated = accept_or_generate(Some(&bad)).0;
        assert_eq!(generated.len(), 32);
        assert!(is_valid(&generated));
        assert_ne!(accept_or_generate(None), accept_or_generate(None));
    }
}
