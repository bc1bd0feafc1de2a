//! Stage 1: admission and the bounded request body.
//!
//! Invariant: memory spent on install requests is bounded by
//! `limits.installs_in_flight × limits.install_body` (plus parsing), because
//! a body is read only after its request holds an in-flight permit; waiting
//! requests hold a socket, not their bytes (TCP backpressure), and give up
//! with `503` + `Retry-After` after `limits.install_queue_timeout`.

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, StatusCode};
use tokio::sync::OwnedSemaphorePermit;

use crate::error::ApiError;
use crate::state::AppState;

/// Bytes of a refused body read and discarded before answering, so a
/// client still uploading sees the error instead of a reset; beyond this
/// the connection is simply closed.
const DRAIN_LIMIT: u64 = 64 * 1024 * 1024;
/// Time spent draining a refused body.
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(10);

/// Waits for an in-flight install slot. A request that waited too long is
/// refused with `503` + `Retry-After` (its body drained, never kept).
pub(super) async fn admit(
    state: &AppState,
    body: Body,
) -> Result<(OwnedSemaphorePermit, Body), ApiError> {
    let wait = state.limits().install_queue_timeout;
    match tokio::time::timeout(wait, state.accelerator.installs().acquire_owned()).await {
        Ok(Ok(permit)) => Ok((permit, body)),
        _ => {
            drain(body).await;
            Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many installs in progress; try again shortly",
            )
            .with_retry_after(wait.as_secs().clamp(1, 60)))
        }
    }
}

/// The whole body, refusing more than `limits.install_body` bytes (413) and
/// a body that does not arrive within `limits.body_timeout` (408). Only the
/// first `install_body` bytes are ever kept.
pub(super) async fn read(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<Bytes, ApiError> {
    let limits = state.limits();
    let max = limits.install_body;
    let too_large = ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("request body is larger than the limit of {max} bytes (limits.install_body)"),
    );
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.parse::<u64>().ok());
    if declared.is_some_and(|len| len > max) {
        drain(body).await;
        return Err(too_large);
    }
    match tokio::time::timeout(limits.body_timeout, collect(body, max)).await {
        Ok(Some(bytes)) => Ok(bytes),
        Ok(None) => Err(too_large),
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "the request body did not arrive in time (limits.body_timeout)",
        )),
    }
}

/// The body if it has at most `max` bytes; `None` (after draining the rest)
/// when it has more.
async fn collect(body: Body, max: u64) -> Option<Bytes> {
    use futures_util::StreamExt;
    let mut stream = body.into_data_stream();
    let mut buf = bytes::BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.ok()?;
        if buf.len() as u64 + chunk.len() as u64 > max {
            drain_stream(stream, chunk.len() as u64 + buf.len() as u64).await;
            return None;
        }
        buf.extend_from_slice(&chunk);
    }
    Some(buf.freeze())
}

async fn drain(body: Body) {
    drain_stream(body.into_data_stream(), 0).await;
}

async fn drain_stream(mut stream: axum::body::BodyDataStream, mut seen: u64) {
    use futures_util::StreamExt;
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        while let Some(Ok(chunk)) = stream.next().await {
            seen += chunk.len() as u64;
            if seen > DRAIN_LIMIT {
                break;
            }
        }
    })
    .await;
}

/// Bounds on parsed fields that the byte limit alone leaves too loose.
pub(super) fn check_request(
    state: &AppState,
    req: &pnpr_protocol::InstallRequest,
) -> Result<(), ApiError> {
    let max = state.limits().store_integrities;
    if req.store_integrities.len() > max {
        return Err(ApiError::bad_request(format!(
            "storeIntegrities has {} entries; at most {max} are accepted (limits.store_integrities)",
            req.store_integrities.len()
        )));
    }
    Ok(())
}
