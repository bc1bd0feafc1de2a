//! The identity gate: every request's `Authorization: Basic` credential is
//! checked here, before any handler runs, and password hashing is kept off
//! the async workers.
//!
//! Invariants guarded here:
//! - a `Basic` credential that does not check out (malformed, unknown user,
//!   wrong password) is answered `401` and never reaches a handler, so no
//!   handler can mistake a failed login for an anonymous caller;
//! - a valid `Basic` credential is in the authenticator's verified cache
//!   before the handler runs, so the handlers' synchronous identification
//!   (`Authenticator::identify`, which never hashes) sees the user;
//! - bcrypt runs only on the blocking pool, at most [`hash_permits`] at a
//!   time process-wide, and only after the login limiter admitted the
//!   attempt; over budget the answer is `429` with `Retry-After` and no hash
//!   runs. So bad-password floods cost the attacker their budget and leave
//!   the async workers (and `/-/ping`) alone;
//! - the peer address is taken from the connection (never from a header a
//!   client could forge) and handed to handlers as [`ClientAddr`];
//! - hand edits of the htpasswd file retire the old account's per-user state
//!   (tokens in `pnpr-auth`, grants here) within a few seconds ([`sweep`]).

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use pnpr_auth::{Authenticator, BasicCredential, BasicHeader};
use tokio::sync::Semaphore;

use crate::error::{ApiError, Refusal};
use crate::state::AppState;

/// The client's address as the connection reports it; `None` when the
/// server runs without connection info (in-process tests).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientAddr(pub Option<IpAddr>);

/// How long a password check may wait for a hashing slot before the caller
/// is told to come back (a queue that never drains is worse than a 503).
const HASH_QUEUE_TIMEOUT: Duration = Duration::from_secs(10);

/// How often hand edits of the htpasswd file are looked for.
const SWEEP_INTERVAL: Duration = Duration::from_secs(2);

/// Concurrent password hashes, process-wide: half the cores (at least one),
/// so hashing can never take every core from the request workers. The
/// budget is global because the CPU it protects is.
fn hash_permits() -> &'static Semaphore {
    static PERMITS: OnceLock<Semaphore> = OnceLock::new();
    PERMITS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Semaphore::new((cores / 2).max(1))
    })
}

/// Runs `f` (a password hash) on the blocking pool once a hashing slot is
/// free. Callers must have been admitted by the login limiter first.
pub(crate) async fn hashing<T: Send + 'static>(
    state: &Arc<AppState>,
    f: impl FnOnce(&Authenticator) -> T + Send + 'static,
) -> Result<T, Refusal> {
    let permit = tokio::time::timeout(HASH_QUEUE_TIMEOUT, hash_permits().acquire())
        .await
        .map_err(|_| Refusal::HashQueueFull)?
        .map_err(|_| Refusal::HashQueueFull)?;
    let st = Arc::clone(state);
    let out = tokio::task::spawn_blocking(move || f(&st.auth))
        .await
        .map_err(|e| ApiError::internal("password check failed", e))?;
    drop(permit);
    Ok(out)
}

/// The middleware: records the peer address and settles `Basic`
/// credentials before the request goes on.
pub async fn gate(State(state): State<Arc<AppState>>, mut req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    req.extensions_mut().insert(ClientAddr(peer));
    let basic = match req.headers().get(header::AUTHORIZATION) {
        None => BasicHeader::NotBasic,
        Some(value) => match value.to_str() {
            Ok(text) => Authenticator::basic_header(Some(text)),
            // Not even visible ASCII: a Basic credential in it is unusable.
            Err(_)
                if value.as_bytes().len() >= 5
                    && value.as_bytes()[..5].eq_ignore_ascii_case(b"basic") =>
            {
                BasicHeader::Malformed
            }
            Err(_) => BasicHeader::NotBasic,
        },
    };
    match basic {
        BasicHeader::NotBasic => next.run(req).await,
        BasicHeader::Malformed => {
            ApiError::unauthorized("malformed Basic credentials").into_response()
        }
        BasicHeader::Credential(cred) => match check_basic(&state, cred, peer).await {
            Ok(()) => next.run(req).await,
            Err(refusal) => refusal.into_response(),
        },
    }
}

/// Cache hit: free. Otherwise one limiter-admitted bcrypt on the blocking
/// pool; a success fills the cache, a failure keeps counting against the
/// user name and the address.
async fn check_basic(
    state: &Arc<AppState>,
    cred: BasicCredential,
    peer: Option<IpAddr>,
) -> Result<(), Refusal> {
    if state.auth.is_verified(&cred) {
        return Ok(());
    }
    let attempt = state.auth.limiter().begin(Some(&cred.user), peer)?;
    let user = cred.user.clone();
    if hashing(state, move |auth| auth.verify_basic(&cred)).await? {
        state.auth.limiter().succeeded(attempt);
        Ok(())
    } else {
        tracing::info!(user, "Basic credentials refused");
        Err(ApiError::unauthorized("bad username or password").into())
    }
}

/// Periodically retires the state of accounts removed or replaced in the
/// htpasswd file by hand: their tokens (in the authenticator) and their
/// install grants. Runs until the server stops.
pub async fn sweep(state: Arc<AppState>) {
    let mut tick = tokio::time::interval(SWEEP_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let st = Arc::clone(&state);
        let swept = tokio::task::spawn_blocking(move || {
            let retired = st.auth.sweep();
            for user in &retired {
                st.accelerator.access.clear_user(user);
            }
            retired.len()
        })
        .await;
        if let Ok(n) = swept {
            if n > 0 {
                tracing::info!(accounts = n, "retired accounts' tokens and grants cleared");
            }
        }
    }
}
