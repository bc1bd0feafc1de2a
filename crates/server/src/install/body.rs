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

/// Waits for an in-flight install slot.
pub(super) async fn admit(state: &AppState) -> Result<OwnedSemaphorePermit, ApiError> {
    let limits = state.limits();
    let wait = limits.install_queue_timeout;
    match tokio::time::timeout(wait, state.installs().acquire_owned()).await {
        Ok(Ok(permit)) => Ok(permit),
        _ => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many installs in progress; try again shortly",
        )
        .with_retry_after(wait.as_secs().max(1))),
    }
}

/// The whole body, refusing more than `limits.install_body` bytes (413) and
/// a body that does not arrive within `limits.body_timeout` (408).
pub(super) async fn read(state: &AppState, headers: &HeaderMap, body: Body) -> Result<Bytes, ApiError> {
    let limits = state.limits();
    let max = limits.install_body;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body is larger than the limit of {max} bytes (limits.install_body)"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.parse::<u64>().ok());
    if declared.is_some_and(|len| len > max) {
        return Err(too_large());
    }
    let cap = usize::try_from(max).unwrap_or(usize::MAX);
    match tokio::time::timeout(limits.body_timeout, axum::body::to_bytes(body, cap)).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(_)) => Err(too_large()),
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "the request body did not arrive in time (limits.body_timeout)",
        )),
    }
}

/// Bounds on parsed fields that the byte limit alone leaves too loose.
pub(super) fn check_request(
    state: &AppState,
    req: &pnpr_install::InstallRequest,
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
