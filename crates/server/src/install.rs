//! `POST /v1/install`: server-side resolution plus inline delivery of every
//! file the client's store lacks, byte-compatible with pnpm 11.5.2.
//!
//! The handler is a short sequence of stages, each in its own module:
//! [`body`] (bounded read under the in-flight budget) → parse
//! (`pnpr_protocol::parse_request`) → scope ([`crate::catalog::Scope`]) →
//! [`resolve`] (cached candidate or a fresh resolution) → [`select`] (what
//! this client needs) → [`authorize`] (every served package confirmed by the
//! catalog) → [`fetch`] (verified tarballs unpacked; most of them already
//! by [`prefetch`], which starts each as the resolver picks it) → plan
//! (`pnpr_protocol::plan`) → [`respond`] (the streamed body). The resolve
//! protocol v0 ([`v0`]) reuses the stages up to `authorize` and answers
//! NDJSON frames instead.
//!
//! Invariants guarded here:
//! - no byte of a package is framed unless the catalog authorized its
//!   `(name, version, integrity)` for this caller in this request;
//! - the request's `registry` is pnpr itself or a declared forwardable
//!   registry (see `catalog::scope`);
//! - file bytes come only from the file store's package members, made only
//!   from tarballs that passed integrity verification;
//! - memory is bounded: bodies are read only under an in-flight permit and
//!   up to `limits.install_body`, and the response is streamed.

mod authorize;
mod body;
mod fetch;
mod prefetch;
mod release_age;
mod resolve;
mod respond;
mod select;
pub mod v0;
mod v0_early;
mod v0_prefetch;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use pnpr_auth::Identity;

use crate::catalog::{Scope, Session};
use crate::error::ApiError;
use crate::public_base::PublicBase;
use crate::state::AppState;
use crate::users::identify;

pub(crate) use resolve::Resolved;

/// `POST /v1/install`.
pub async fn install(
    State(state): State<Arc<AppState>>,
    base: PublicBase,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match run(state, base, headers, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn run(
    state: Arc<AppState>,
    base: PublicBase,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let started = std::time::Instant::now();
    let (_permit, body) = body::admit(&state, body).await?;
    let bytes = body::read(&state, &headers, body).await?;
    let req = pnpr_protocol::parse_request(&bytes, base.as_str())
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    drop(bytes);
    body::check_request(&state, &req)?;
    let who = identify(&state, &headers);
    let (scope, base) = Scope::of(&state, &base, &req.registry, &req.auth_headers)?;
    let session = Arc::new(Session::open(&state, who, scope, base)?);

    let resolved = match resolve::resolve_or_cached(&state, &session, &req).await? {
        resolve::Outcome::Resolved(r) => r,
        resolve::Outcome::Violations(v) => return respond::violations(&v),
    };
    let resolved_in = started.elapsed();
    if req.lockfile_only {
        return respond::lockfile_only(&resolved);
    }

    let mut selection = select::servable(&resolved, &req);
    // Nothing served here is evicted before the body is sent (pnpr-budget).
    let pin = state
        .disk
        .pin(selection.serve.iter().map(|p| p.integrity.as_str()));
    let authority = authorize::all(&state, &session, &selection.serve).await?;
    let fetched = selection.missing(&state).len();
    let dropped = fetch::ensure_unpacked(&state, &session, &selection).await?;
    selection.drop_optional(dropped);
    authorize::record_fresh_grants(&state, session.who(), &authority);

    let packages = selection.package_refs();
    let plan = pnpr_protocol::plan(
        &packages,
        &req.store_integrities,
        &fetch::FileIndexLookup { state: &state },
    )
    .map_err(|e| ApiError::internal("store diff failed", e))?;
    tracing::info!(
        user = %match session.who() { Identity::User(u) => u.as_str(), _ => "-" },
        total = plan.stats.total_packages,
        in_store = plan.stats.already_in_store,
        fetched,
        files = plan.stats.files_to_download,
        bytes = plan.stats.download_bytes,
        resolve_ms = resolved_in.as_millis() as u64,
        cache_hit = resolved.cache_hit,
        "install resolved"
    );
    let resp = respond::stream(&state, &resolved, packages, plan)?;
    let mut resp = crate::disk::hold_until_sent(resp, pin);
    if matches!(session.scope(), Scope::Forwarded(_)) {
        authority.annotate(&mut resp);
    }
    Ok(resp)
}

#[cfg(test)]
mod tests;
