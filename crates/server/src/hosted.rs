//! Hosted packages over HTTP (placeholder: no hosted package exists yet).

use std::sync::Arc;

use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Router;
use pnpr_auth::Identity;
use pnpr_packument::RegistryPath;

use crate::error::ApiError;
use crate::state::AppState;

/// Extra `/-/` routes owned by the hosted registry.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
}

/// `Some` when `parsed.name` is a hosted package (it is then never proxied).
pub async fn serve_read(
    _state: &Arc<AppState>,
    _parsed: &RegistryPath,
    _who: &Identity,
    _headers: &HeaderMap,
) -> Option<Result<Response, ApiError>> {
    None
}

/// PUT/DELETE on registry paths.
pub async fn write(_state: &Arc<AppState>, req: Request) -> Result<Response, ApiError> {
    Err(ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("method {} is not supported yet", req.method()),
    ))
}
