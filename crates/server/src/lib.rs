//! The pnpr HTTP server: wires config, policy, users, the upstream client and
//! the stores into one axum [`Router`], and runs it with graceful shutdown.
//!
//! Invariants guarded here:
//! - every request's caller is identified once, from its `Authorization`
//!   header; `Basic` credentials are settled by the [`identity`] gate (off
//!   the async workers, rate-limited) before any handler runs; and every
//!   package answer passes the `packages:` policy (or, on
//!   `/~<uplink>/`, the uplink's `access`) before any byte is sent;
//! - errors become HTTP only in [`error`];
//! - access policy can be swapped at runtime ([`reload`]) without dropping
//!   requests: handlers take a snapshot `Arc<Policy>` per request.

mod accelerator;
pub mod catalog;
pub mod error;
pub mod grants;
pub mod hosted;
pub mod identity;
pub mod install;
mod mirror;
pub mod registry;
pub mod reload;
mod rendered;
pub mod state;
mod urls;
pub mod users;

use std::future::Future;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, put};
use axum::{Json, Router};
use serde_json::json;

pub use error::ApiError;
pub use state::{AppState, BuildError, ServerOptions};

/// Builds the router for a prepared state.
pub fn app(state: Arc<AppState>) -> Router {
    let limit = usize::try_from(state.config.max_body_size).unwrap_or(usize::MAX);
    Router::new()
        .route("/-/ping", get(ping))
        .route("/-/health", get(health))
        .route("/-/ready", get(ready))
        .route("/-/whoami", get(users::whoami))
        .route("/-/user/token/{token}", delete(users::logout))
        .route("/-/user/{id}", put(users::login).get(users::get_user))
        .route(
            "/-/npm/v1/tokens",
            get(users::list_tokens).post(users::create_token),
        )
        .route("/-/npm/v1/tokens/token/{key}", delete(users::revoke_token))
        .route(
            "/-/v1/login",
            axum::routing::post(users::web_login_unsupported),
        )
        .route("/v1/install", axum::routing::post(install::install))
        .merge(hosted::routes())
        .fallback(registry::dispatch)
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            identity::gate,
        ))
        .layer(middleware::from_fn(access_log))
        .with_state(state)
}

/// Serves `listener` until `shutdown` resolves, then finishes in-flight
/// requests before returning.
pub async fn run(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    // Responses are written as headers plus streamed body chunks; with Nagle
    // on, the body waits for the client's delayed ACK of the headers (~25 ms
    // per tarball measured). Disable it on every accepted connection.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("cannot set TCP_NODELAY: {e}");
        }
    });
    let sweeper = tokio::spawn(identity::sweep(Arc::clone(&state)));
    // Connection info gives the identity gate the peer address (login limits
    // per address, token CIDR lists); a header would be forgeable.
    let served = axum::serve(
        listener,
        app(state).into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await;
    sweeper.abort();
    served
}

async fn ping() -> Json<serde_json::Value> {
    Json(json!({}))
}

async fn health() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// Ready when the metadata database answers and the cache dir is writable.
async fn ready(State(state): State<Arc<AppState>>) -> Response {
    let db_ok = state.db.ping().is_ok();
    let probe = state.config.cache.join(".ready-probe");
    let disk_ok = std::fs::write(&probe, b"ok").is_ok() && std::fs::remove_file(&probe).is_ok();
    if db_ok && disk_ok {
        Json(json!({ "status": "ready" })).into_response()
    } else {
        ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready (database: {db_ok}, cache writable: {disk_ok})"),
        )
        .into_response()
    }
}

/// One line per request: method, path (never the query, which may carry
/// signed tokens), status and latency.
async fn access_log(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let started = std::time::Instant::now();
    let resp = next.run(req).await;
    tracing::info!(
        target: "pnpr::http",
        %method,
        path,
        status = resp.status().as_u16(),
        ms = started.elapsed().as_millis() as u64,
        "request"
    );
    resp
}
