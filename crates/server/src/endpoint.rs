//! Account routes on `/~<uplink>/` endpoints: `npm login --scope=@corp
//! --registry=http://HOST/~corp/` (and `whoami`, `logout`, `token`, `ping`,
//! `audit`) reach the same handlers, users and tokens as on `/`.
//!
//! Invariants guarded here:
//! - only the account and service routes in [`ALIASED`] are aliased, so an
//!   uplink endpoint stays read-only for packages (a publish, dist-tag or
//!   unpublish there still reaches the registry adapter and its 405);
//! - only endpoints the catalog exposes (an uplink with `access:`) are
//!   aliased; an unknown name keeps its 404 from the registry adapter;
//! - nothing here decides access: the rewritten request goes through the
//!   identity gate and the handlers exactly like the same request on `/`.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::Uri;
use axum::middleware::Next;
use axum::response::Response;

use crate::state::AppState;

/// `/-/` routes that mean the same on an uplink endpoint as on `/`. Login
/// identifies a pnpr user (never the uplink's), and audit filters names by
/// the caller's own access either way.
const ALIASED: &[&str] = &[
    "/-/user/",
    "/-/whoami",
    "/-/npm/v1/tokens",
    "/-/v1/login",
    "/-/ping",
    "/-/npm/v1/security/",
];

/// Middleware (runs before routing): rewrites `/~<uplink>/-/<aliased>` to
/// `/-/<aliased>` when `<uplink>` is an exposed endpoint.
pub async fn alias(State(state): State<Arc<AppState>>, mut req: Request, next: Next) -> Response {
    if let Some(uri) = aliased(&state, req.uri()) {
        *req.uri_mut() = uri;
    }
    next.run(req).await
}

fn aliased(state: &AppState, uri: &Uri) -> Option<Uri> {
    let rest = uri.path().strip_prefix("/~")?;
    let (uplink, tail) = rest.split_once('/')?;
    let tail = format!("/{tail}");
    let routed = ALIASED
        .iter()
        .any(|p| tail == p.trim_end_matches('/') || tail.starts_with(p));
    if !routed || !crate::catalog::endpoint_exposed(state, uplink) {
        return None;
    }
    let path_and_query = match uri.query() {
        Some(q) => format!("{tail}?{q}"),
        None => tail,
    };
    path_and_query.parse().ok()
}
