//! The resolve protocol v0 that pnpm 11.9+ and pnpm 12 speak:
//! `GET /-/pnpr`, `POST /-/pnpr/v0/resolve`, `POST /-/pnpr/v0/verify-lockfile`
//! (spec §5.0, RFC 0006). Resolve-only: the client fetches every tarball
//! itself, from the URLs the `package` frames name (pnpr's own routes).
//!
//! The same stages as `/v1/install` ([`body`] admission and bounded read →
//! parse → scope and session → [`resolve`] with the shared resolution cache →
//! [`select`] → [`authorize`]), then NDJSON frames instead of file frames;
//! every byte layout comes from `pnpr_protocol::ndjson`.
//!
//! Invariants guarded here:
//! - only an identified caller is answered (401 otherwise);
//! - a `package` frame names only a `(name, version, integrity)` the catalog
//!   authorized for this caller in this request, and a tarball URL on pnpr's
//!   own routes under the registry it named (`<base><name>/-/<file>` or
//!   `<base>~<uplink>/…`, see `crate::public_base`), so private
//!   bytes are only reachable through routes that check access again;
//! - exactly one terminal frame ends every `200` body (`done`, `violations`
//!   or `error`), and frames are sent as they are produced, uncompressed.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use pnpr_auth::Identity;
use pnpr_lockfile::Lockfile;
use pnpr_protocol::ndjson::{self, PackageFrame};
use pnpr_protocol::{AppliedPolicies, ResolveRequest};
use tokio::sync::OwnedSemaphorePermit;

use super::{authorize, body, release_age, resolve, select, Resolved};
use crate::catalog::{PackageClaim, Scope, ScopeRoute, Session};
use crate::error::ApiError;
use crate::public_base::PublicBase;
use crate::state::AppState;
use crate::users::identify;

/// Packages authorized (and framed) per step: small enough that the first
/// frames leave early, large enough to keep the catalog checks parallel.
pub(super) const BATCH: usize = 64;
/// Frames buffered between the producing task and the socket.
pub(super) const CHANNEL_FRAMES: usize = 256;

/// `GET /-/pnpr`: the protocol versions implemented (only v0; no
/// `fixLockfile` or `artifacts` capability, so clients do not ask for them).
pub async fn handshake() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "pnpr": { "versions": [0] } }))
}

/// `POST /-/pnpr/v0/resolve`.
pub async fn resolve(
    State(state): State<Arc<AppState>>,
    base: PublicBase,
    headers: HeaderMap,
    body: Body,
) -> Response {
    run_resolve(state, base, headers, body)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

/// `POST /-/pnpr/v0/verify-lockfile`.
pub async fn verify_lockfile(
    State(state): State<Arc<AppState>>,
    base: PublicBase,
    headers: HeaderMap,
    body: Body,
) -> Response {
    run_verify(state, base, headers, body)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

/// A request admitted, read, parsed and scoped.
struct Admitted {
    permit: OwnedSemaphorePermit,
    req: pnpr_protocol::InstallRequest,
    applied: AppliedPolicies,
    session: Arc<Session>,
}

async fn admit(
    state: &Arc<AppState>,
    base: &PublicBase,
    headers: &HeaderMap,
    raw: Body,
) -> Result<Admitted, ApiError> {
    // Identity first: an anonymous caller's body is never read.
    let who = identify(state, headers);
    if who.user().is_none() {
        return Err(ApiError::unauthorized(
            "the pnpr resolver needs an identified caller: add `//<pnpr-host>/:_authToken=<token>` to .npmrc",
        ));
    }
    let (permit, raw) = body::admit(state, raw).await?;
    let bytes = body::read(state, headers, raw).await?;
    let ResolveRequest {
        install: req,
        applied,
    } = pnpr_protocol::parse_resolve_request(&bytes, base.as_str())
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    drop(bytes);
    body::check_request(state, &req)?;
    let request_base = base.clone();
    let (scope, base) = Scope::of(state, base, &req.registry, &req.auth_headers)?;
    if matches!(scope, Scope::Forwarded(_)) {
        // Tarball URLs must be pnpr's own routes; a forwarded registry's
        // bytes are served by `/v1/install` only.
        return Err(ApiError::bad_request(
            "`registry` must be this pnpr server (`/` or `/~<uplink>/`) on the resolve protocol",
        ));
    }
    let routes = scope_routes(state, &request_base, &req)?;
    let session = Arc::new(Session::open(state, who, scope, base)?.with_scope_routes(routes));
    Ok(Admitted {
        permit,
        req,
        applied,
        session,
    })
}

/// The request's per-scope registries, each mapped onto one of pnpr's own
/// endpoints (the one mapping `/v1/install` and `/~<uplink>/` use); any other
/// URL refuses the request with `400` before anything is fetched.
fn scope_routes(
    state: &AppState,
    request_base: &PublicBase,
    req: &pnpr_protocol::InstallRequest,
) -> Result<Vec<(String, ScopeRoute)>, ApiError> {
    req.scope_registries
        .iter()
        .map(|(scope, url)| {
            let route = Scope::of_scope(state, request_base, scope, url)?;
            Ok((scope.clone(), route))
        })
        .collect()
}

async fn run_resolve(
    state: Arc<AppState>,
    base: PublicBase,
    headers: HeaderMap,
    raw: Body,
) -> Result<Response, ApiError> {
    let Admitted {
        permit,
        req,
        applied,
        session,
    } = admit(&state, &base, &headers, raw).await?;
    if req.generation == pnpr_protocol::Generation::V0ResolvePnpm12
        && req.lockfile.is_none()
        && super::v0_early::roots_readable(&session, &req)
    {
        // pnpm 12 fetches each tarball as its frame arrives: frame versions
        // as they are picked (pnpm 11 reads the whole body first). With an
        // input lockfile the picks come in one burst from its pins and the
        // client's downloads only compete with the rest of the resolution
        // (RFC 0006 "Cold server": measured slower), so those are answered
        // after the resolution, their tarballs prefetched.
        return super::v0_early::resolve(state, session, req, applied, permit).await;
    }
    let outcome = resolve::resolve_or_cached(&state, &session, &req).await?;
    Ok(answer(state, session, &req, outcome, applied, permit))
}

/// The body for a finished resolution: a `violations` frame, or every
/// servable package's frame and then `done`.
pub(super) fn answer(
    state: Arc<AppState>,
    session: Arc<Session>,
    req: &pnpr_protocol::InstallRequest,
    outcome: resolve::Outcome,
    applied: AppliedPolicies,
    permit: OwnedSemaphorePermit,
) -> Response {
    let resolved = match outcome {
        resolve::Outcome::Resolved(r) => r,
        resolve::Outcome::Violations(v) => {
            return violations(&v).unwrap_or_else(IntoResponse::into_response)
        }
    };
    let serve = select::servable(&resolved, req).serve;
    log_resolved(&session, &resolved);
    stream(state, session, resolved, serve, applied, permit)
}

async fn run_verify(
    state: Arc<AppState>,
    base: PublicBase,
    headers: HeaderMap,
    raw: Body,
) -> Result<Response, ApiError> {
    let Admitted {
        req,
        applied,
        session,
        ..
    } = admit(&state, &base, &headers, raw).await?;
    let Some(lockfile) = resolve::input_lockfile(&req) else {
        return Err(ApiError::bad_request(
            "verify-lockfile needs a `lockfile` in pnpm's v9 format",
        ));
    };
    let found = release_age::violations(&req, Some(&lockfile), &session).await?;
    if found.is_empty() {
        let frame = ndjson::verified_frame(&applied)
            .map_err(|e| ApiError::internal("verified frame", e))?;
        Ok(ndjson_response(Body::from(frame), None))
    } else {
        violations(&found)
    }
}

pub(super) fn violations(found: &[pnpr_protocol::Violation]) -> Result<Response, ApiError> {
    let frame =
        ndjson::violations_frame(found).map_err(|e| ApiError::internal("violations frame", e))?;
    Ok(ndjson_response(Body::from(frame), None))
}

pub(super) fn log_resolved(session: &Session, resolved: &Resolved) {
    tracing::info!(
        user = %match session.who() { Identity::User(u) => u.as_str(), _ => "-" },
        total = resolved.tree.packages.len(),
        cache_hit = resolved.cache_hit,
        "resolve v0"
    );
}

pub(super) type Sink = tokio::sync::mpsc::Sender<Result<Bytes, std::convert::Infallible>>;

/// `package` frames batch by batch as the catalog authorizes them, then
/// the `done` frame; an authorization failure ends the body with an
/// `error` frame instead (the `200` is already sent).
fn stream(
    state: Arc<AppState>,
    session: Arc<Session>,
    resolved: Resolved,
    serve: Vec<PackageClaim>,
    applied: AppliedPolicies,
    permit: OwnedSemaphorePermit,
) -> Response {
    let cache_hit = resolved.cache_hit;
    let (tx, rx) = tokio::sync::mpsc::channel(CHANNEL_FRAMES);
    // The frames are produced in their own task; the request's span (its
    // request id) goes with them.
    let span = tracing::Span::current();
    tokio::spawn(tracing::Instrument::instrument(
        async move {
            // The in-flight slot is held until the last frame is queued.
            let _permit = permit;
            let last = match frames(&state, &session, &resolved, &serve, &tx).await {
                Ok(()) => done(&resolved, &applied),
                Err(e) => ndjson::error_frame(&e.message),
            };
            let _ = tx.send(Ok(Bytes::from(last))).await;
        },
        span,
    ));
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    ndjson_response(Body::from_stream(body), Some(cache_hit))
}

pub(super) async fn frames(
    state: &Arc<AppState>,
    session: &Session,
    resolved: &Resolved,
    serve: &[PackageClaim],
    tx: &Sink,
) -> Result<(), ApiError> {
    for batch in serve.chunks(BATCH) {
        authorize::all(state, session, batch).await?;
        for p in batch {
            let Some(tarball) = tarball_url(session, &resolved.tree.lockfile, p) else {
                continue;
            };
            let frame = package_frame(p, tarball)?;
            if tx.send(Ok(Bytes::from(frame))).await.is_err() {
                return Ok(()); // client went away
            }
        }
    }
    Ok(())
}

pub(super) fn done(resolved: &Resolved, applied: &AppliedPolicies) -> Vec<u8> {
    let total = resolved.tree.packages.len() as u64;
    ndjson::done_frame(&resolved.tree.lockfile, total, applied).unwrap_or_else(|e| {
        tracing::error!(error = %e, "done frame");
        ndjson::error_frame("the lockfile could not be encoded")
    })
}

/// Where the client fetches `p`: the lockfile's explicit tarball (already a
/// `/~<uplink>/` URL) or the URL pnpm derives from its registry, on the
/// route the catalog chose for this caller. `None` (no frame; the client
/// then fetches from the lockfile) for a URL that is not pnpr's own, i.e.
/// not under the own registry prefix the request named for this package
/// (its scope's registry, or the request's `registry`).
pub(super) fn tarball_url(
    session: &Session,
    lockfile: &Lockfile,
    p: &PackageClaim,
) -> Option<String> {
    let id = format!("{}@{}", p.name, p.version);
    match lockfile
        .packages
        .get(&id)
        .and_then(|i| i.resolution.tarball.clone())
    {
        Some(explicit) => explicit
            .starts_with(session.base_for(&p.name).as_str())
            .then_some(explicit),
        None => derived_tarball_url(session, p),
    }
}

/// The URL pnpm derives for `p` from its registry, on the route the catalog
/// chose for this caller; `None` when that is not under the own registry
/// prefix the request named for this package.
pub(super) fn derived_tarball_url(session: &Session, p: &PackageClaim) -> Option<String> {
    let own = session.base_for(&p.name).as_str();
    let unscoped = p.name.rsplit('/').next().unwrap_or(&p.name);
    let base = session.tarball_base(&p.name);
    let url = format!("{base}{}/-/{unscoped}-{}.tgz", p.name, p.version);
    url.starts_with(own).then_some(url)
}

/// A `package` frame naming `p` and where to fetch it.
pub(super) fn package_frame(p: &PackageClaim, tarball: String) -> Result<Vec<u8>, ApiError> {
    ndjson::package_frame(&PackageFrame {
        id: format!("{}@{}", p.name, p.version),
        name: p.name.clone(),
        version: p.version.clone(),
        integrity: p.integrity.clone(),
        tarball,
    })
    .map_err(|e| ApiError::internal("package frame", e))
}

pub(super) fn ndjson_response(body: Body, cache_hit: Option<bool>) -> Response {
    let mut resp = Response::new(body);
    *resp.status_mut() = StatusCode::OK;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(ndjson::NDJSON_CONTENT_TYPE),
    );
    // Frames must reach the client as produced; no proxy should buffer or
    // compress them.
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-store, no-transform"),
    );
    if let Some(hit) = cache_hit {
        h.insert(
            "x-pnpr-resolution",
            HeaderValue::from_static(if hit { "cached" } else { "resolved" }),
        );
    }
    resp
}
