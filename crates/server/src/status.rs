//! `GET /-/pnpr/status`: a read-only, server-rendered HTML page for
//! operators — uplinks with breaker state and last failure, store sizes
//! against the budget, cache hit ratios, request counts and the last error
//! responses.
//!
//! Invariants guarded here:
//! - only callers `status.access` admits (default: `ownership.admins`)
//!   read it, by user or group; anonymous callers get 401, others 403, and
//!   a loopback peer is no one special;
//! - the page is built from counters, config names and fixed words only
//!   ([`crate::recent`]): no package name, path or credential reaches it,
//!   and every value is HTML-escaped ([`page`]);
//! - the handler only gathers; layout lives in [`page`].

mod page;

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};

use crate::state::AppState;

/// One uplink as the page shows it.
#[derive(Debug, Clone)]
pub struct UplinkView {
    pub name: String,
    /// Scheme and host only (no path, no credentials).
    pub origin: String,
    pub breaker_open: bool,
    pub last_error: Option<crate::recent::UplinkError>,
}

/// Everything one page view shows.
#[derive(Debug, Clone)]
pub struct StatusView {
    pub version: &'static str,
    pub now_ms: i64,
    pub uplinks: Vec<UplinkView>,
    pub stores: Vec<crate::stores::Usage>,
    pub budget: Option<u64>,
    pub recent: crate::recent::Snapshot,
}

/// `GET /-/pnpr/status`.
pub async fn page(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let who = crate::users::identify(&state, &headers);
    let live = state.live();
    let list = live
        .config
        .operations
        .status_access
        .clone()
        .unwrap_or_else(|| live.config.ownership.admins.clone());
    if !crate::metrics::admitted(&state, &who, None, &list) {
        let mut resp = crate::metrics::refuse(&who, "the status page").into_response();
        if resp.status() == axum::http::StatusCode::UNAUTHORIZED {
            // A browser asks its user for a password only on a Basic
            // challenge (npm clients use tokens elsewhere).
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"pnpr status\", charset=\"UTF-8\""),
            );
        }
        return resp;
    }
    let view = gather(&state).await;
    let mut resp = page::render(&view).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    crate::rendered::mark_private(&mut resp);
    resp
}

/// The live numbers behind one view.
pub async fn gather(state: &Arc<AppState>) -> StatusView {
    let recent = crate::recent::snapshot();
    let net = state.net();
    let mut uplinks: Vec<UplinkView> = net
        .uplinks
        .values()
        .map(|u| UplinkView {
            name: u.config.name.clone(),
            origin: format!(
                "{}://{}",
                u.config.url.scheme(),
                u.config.url.host_str().unwrap_or("?")
            ),
            breaker_open: !net.client.uplink_available(&u.config.name),
            last_error: recent.uplink_errors.get(&u.config.name).cloned(),
        })
        .collect();
    uplinks.sort_by(|a, b| a.name.cmp(&b.name));
    StatusView {
        version: env!("CARGO_PKG_VERSION"),
        now_ms: pnpr_store::now_ms(),
        uplinks,
        stores: crate::stores::usage(state).await,
        budget: state.disk.limit(),
        recent,
    }
}
