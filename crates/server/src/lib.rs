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
mod activity;
pub mod audit;
pub mod catalog;
mod compression;
pub mod disk;
mod endpoint;
pub mod error;
mod flights;
pub mod grants;
pub mod hosted;
pub mod identity;
pub mod install;
pub mod metrics;
mod mirror;
pub mod public_base;
mod recent;
mod recompress;
pub mod registry;
pub mod reload;
mod rendered;
pub mod request_id;
pub mod shared;
pub mod state;
mod status;
mod stores;
mod urls;
pub mod users;

use std::future::Future;
use std::sync::Arc;

use axum::extract::{ConnectInfo, DefaultBodyLimit, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, put};
use axum::{Json, Router};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use serde_json::json;

pub use error::ApiError;
pub use state::{AppState, BuildError, ServerOptions};

/// Builds the router for a prepared state.
pub fn app(state: Arc<AppState>) -> Router {
    // Installs the recorder before the first request is counted.
    metrics::handle();
    let limit = usize::try_from(state.config.max_body_size).unwrap_or(usize::MAX);
    let routed = Router::new()
        .route("/-/ping", get(ping))
        .route("/-/health", get(health))
        .route("/-/ready", get(ready))
        .route("/-/metrics", get(metrics::scrape))
        .route("/-/pnpr/status", get(status::page))
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
        .route(
            "/-/npm/v1/security/advisories/bulk",
            axum::routing::post(audit::bulk),
        )
        .route(
            "/-/npm/v1/security/audits/quick",
            axum::routing::post(audit::quick),
        )
        .route(
            "/-/npm/v1/security/audits",
            axum::routing::post(audit::full),
        )
        .route("/v1/install", axum::routing::post(install::install))
        .route("/-/pnpr", get(install::v0::handshake))
        .route(
            "/-/pnpr/v0/resolve",
            axum::routing::post(install::v0::resolve),
        )
        .route(
            "/-/pnpr/v0/verify-lockfile",
            axum::routing::post(install::v0::verify_lockfile),
        )
        .merge(hosted::routes())
        .fallback(registry::dispatch)
        .layer(axum::Extension(Arc::new(audit::AuditCache::new(
            state.config.audit.cache_ttl,
        ))))
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            identity::gate,
        ))
        .layer(middleware::from_fn(access_log))
        .layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            recompress::track,
        ))
        .layer(middleware::from_fn(metrics::track))
        .with_state(Arc::clone(&state));
    // Rewrites run before routing, so they wrap the routed app.
    Router::new()
        .fallback_service(routed)
        .layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            endpoint::alias,
        ))
        .layer(middleware::from_fn(request_id::layer))
        .layer(middleware::from_fn_with_state(
            Arc::new(compression::CompressedCache::default()),
            compression::cached,
        ))
        .layer(compression::layer())
        // Outermost: every layer and handler (the compression cache's key
        // included) sees the request's public base.
        .layer(middleware::from_fn_with_state(state, public_base::layer))
}

/// Serves `listener` until `shutdown` resolves, then stops accepting, lets
/// in-flight requests finish for at most `limits.shutdown_grace` and closes
/// every connection still open (idle, half-open or slow) before returning.
///
/// A client gets `limits.header_timeout` to deliver each request's headers,
/// counted from the accept for the first request (the protocol sniff
/// included), so a silent or half-sent connection cannot hold a descriptor.
pub async fn run(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = *state.limits();
    let sweeper = tokio::spawn(identity::sweep(Arc::clone(&state)));
    let disk = tokio::spawn(disk::keep_within_budget(Arc::clone(&state)));
    let recompressing = tokio::spawn(recompress::run(Arc::clone(&state)));
    let activity = Arc::clone(&state.activity);
    let budget = Arc::clone(&state.disk);
    let router = app(state);
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => {
                let (tcp, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of descriptors or a reset before accept: back
                        // off briefly instead of spinning.
                        tracing::debug!("accept failed: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let conn = ConnTask {
                    builder: Arc::clone(&builder),
                    router: router.clone(),
                    stop: stop_rx.clone(),
                    header_timeout: limits.header_timeout,
                    body_timeout: limits.body_timeout,
                };
                connections.spawn(conn.serve(tcp, peer));
            }
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    drain(connections, limits.shutdown_grace).await;
    sweeper.abort();
    disk.abort();
    // A member being re-encoded finishes on its blocking thread (or the
    // process ends first); the stored member is whole either way.
    activity.stop();
    recompressing.abort();
    // Recency survives the restart.
    match tokio::task::spawn_blocking(move || budget.flush()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "cannot record cache access times at shutdown"),
        Err(e) => tracing::warn!(error = %e, "cannot record cache access times at shutdown"),
    }
    Ok(())
}

/// Waits up to `grace` for the connections (already told to shut down) to
/// finish their in-flight requests, then drops the rest, which closes them.
async fn drain(mut connections: tokio::task::JoinSet<()>, grace: std::time::Duration) {
    let all_done = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(grace, all_done).await.is_err() {
        tracing::warn!(
            open = connections.len(),
            "shutdown grace period over: closing remaining connections"
        );
        connections.shutdown().await;
    }
}

/// One accepted connection and what it needs to be served.
struct ConnTask {
    builder: Arc<hyper_util::server::conn::auto::Builder<TokioExecutor>>,
    router: Router,
    stop: tokio::sync::watch::Receiver<bool>,
    header_timeout: std::time::Duration,
    body_timeout: std::time::Duration,
}

impl ConnTask {
    async fn serve(mut self, tcp: tokio::net::TcpStream, peer: std::net::SocketAddr) {
        // Responses are written as headers plus streamed body chunks; with
        // Nagle on, the body waits for the client's delayed ACK of the
        // headers (~25 ms per tarball measured).
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("cannot set TCP_NODELAY: {e}");
        }
        let first_request = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let seen = Arc::clone(&first_request);
        let router = self.router.clone();
        let body_timeout = self.body_timeout + BODY_BACKSTOP_SLACK;
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            let mut req = req.map(|body| DeadlineBody::new(body, body_timeout));
            seen.store(true, std::sync::atomic::Ordering::Relaxed);
            // The identity gate reads the peer address from here (login
            // limits per address, token CIDR lists); a header would be
            // forgeable.
            req.extensions_mut().insert(ConnectInfo(peer));
            tower::ServiceExt::oneshot(router.clone(), req)
        });
        let conn = self
            .builder
            .serve_connection_with_upgrades(TokioIo::new(tcp), service);
        tokio::pin!(conn);
        // hyper's header timeout starts once HTTP/1 parsing does; the
        // protocol sniff before it has none, so bound the first request here.
        let first_deadline = tokio::time::sleep(self.header_timeout);
        tokio::pin!(first_deadline);
        let mut waiting_first = true;
        let mut stopping = *self.stop.borrow();
        if stopping {
            conn.as_mut().graceful_shutdown();
        }
        loop {
            tokio::select! {
                _ = conn.as_mut() => return,
                () = &mut first_deadline, if waiting_first => {
                    if !first_request.load(std::sync::atomic::Ordering::Relaxed) {
                        tracing::debug!(%peer, "no request headers in time: closing");
                        return;
                    }
                    waiting_first = false;
                }
                changed = self.stop.changed(), if !stopping => {
                    // A closed channel also means the server is going away.
                    let _ = changed;
                    stopping = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// How much later than `limits.body_timeout` the connection-level body
/// deadline fires.
const BODY_BACKSTOP_SLACK: std::time::Duration = std::time::Duration::from_secs(1);

/// A request body that must arrive within `limit`, counted from the first
/// read (so a request waiting for a permit with its body unread is not cut).
/// A client that drips its body fails the read with [`BodyError::Timeout`]
/// instead of holding the handler and the connection. It is a backstop: the
/// limit is `limits.body_timeout` plus [`BODY_BACKSTOP_SLACK`], so a handler
/// that enforces `body_timeout` itself (the install body, 408) answers first.
struct DeadlineBody {
    inner: Incoming,
    limit: std::time::Duration,
    deadline: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl DeadlineBody {
    fn new(inner: Incoming, limit: std::time::Duration) -> Self {
        Self {
            inner,
            limit,
            deadline: None,
        }
    }
}

/// Why a request body could not be read.
#[derive(Debug, thiserror::Error)]
enum BodyError {
    #[error("the request body did not arrive within {0:?} (limits.body_timeout + 1s)")]
    Timeout(std::time::Duration),
    #[error(transparent)]
    Transport(#[from] hyper::Error),
}

impl hyper::body::Body for DeadlineBody {
    type Data = bytes::Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        use std::task::Poll;
        let this = self.get_mut();
        let limit = this.limit;
        let deadline = this
            .deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        if deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(BodyError::Timeout(limit))));
        }
        std::pin::Pin::new(&mut this.inner)
            .poll_frame(cx)
            .map_err(BodyError::from)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

async fn ping() -> Json<serde_json::Value> {
    Json(json!({}))
}

async fn health() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// Ready when the metadata database answers and the cache dir is writable.
async fn ready(State(state): State<Arc<AppState>>) -> Response {
    // Both checks block (with `database:` the ping is a network round trip
    // that may wait for a connect timeout): keep them off the async workers.
    let checked = Arc::clone(&state);
    let (db_ok, disk_ok) = tokio::task::spawn_blocking(move || {
        let db_ok = checked.mirror.db.ping().is_ok();
        let probe = checked.config.cache.join(".ready-probe");
        let disk_ok = std::fs::write(&probe, b"ok").is_ok() && std::fs::remove_file(&probe).is_ok();
        (db_ok, disk_ok)
    })
    .await
    .unwrap_or((false, false));
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
/// signed tokens, nor a logout's token), status and latency.
async fn access_log(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = urls::loggable_path(req.uri().path());
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
