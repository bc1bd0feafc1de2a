//! Stage 5: every package whose bytes this response would carry is
//! confirmed by the catalog ([`Session::authorize`]) — name, access and the
//! integrity binding — before anything is fetched or framed.
//!
//! On a forwarded registry the upstream is the authority for packages a
//! forwarded credential matches (spec §4.4–4.6); the bookkeeping here (the
//! public set, per-user grants, probes, clear-on-discovery) is keyed by
//! registry *and* name, so a classification made on one registry never
//! speaks for another.

use std::sync::Arc;

use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use futures_util::{StreamExt, TryStreamExt};
use pnpr_auth::Identity;

use crate::catalog::{Forwarded, PackageClaim, Scope, Session};
use crate::error::ApiError;
use crate::state::AppState;

/// Catalog checks run at once for one install.
const CONCURRENCY: usize = 16;
/// The access probes of spec §4.4–4.5.
const PROBE_ACCEPT: &str = "application/vnd.npm.install-v1+json";

/// How served packages of a forwarded request were let through, for the
/// `x-pnpr-upstream-authority` response header, and the grants earned.
#[derive(Default)]
pub(super) struct Authority {
    public: u64,
    fresh: u64,
    grant: u64,
    probed_public: u64,
    probed_grant: u64,
    /// Grant keys of packages fetched with the caller's credential.
    fresh_keys: Vec<String>,
}

impl Authority {
    pub(super) fn annotate(&self, resp: &mut Response) {
        let value = format!(
            "public={} fresh={} grant={} probed-public={} probed-grant={}",
            self.public, self.fresh, self.grant, self.probed_public, self.probed_grant
        );
        if let Ok(v) = HeaderValue::from_str(&value) {
            resp.headers_mut().insert("x-pnpr-upstream-authority", v);
        }
    }
}

/// Authorizes every claim; the first refusal is the answer.
pub(super) async fn all(
    state: &Arc<AppState>,
    session: &Session,
    serve: &[PackageClaim],
) -> Result<Authority, ApiError> {
    // Futures built in a loop, not a closure: a closure over borrowed
    // claims trips the compiler's higher-ranked `Send` inference.
    let mut checks = Vec::with_capacity(serve.len());
    for p in serve {
        checks.push(session.authorize(p));
    }
    futures_util::stream::iter(checks)
        .buffer_unordered(CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await?;
    let mut authority = Authority::default();
    if let Scope::Forwarded(fwd) = session.scope() {
        for p in serve {
            upstream_authority(state, fwd, session.who(), p, &mut authority).await?;
        }
    }
    Ok(authority)
}

/// Records the grants earned by fresh fetches (spec §4.5 step 2), once the
/// fetches succeeded.
pub(super) fn record_fresh_grants(state: &AppState, who: &Identity, authority: &Authority) {
    if let Identity::User(user) = who {
        let now = pnpr_store::now_ms();
        for key in &authority.fresh_keys {
            state.accelerator.access.record_grant(user, key, now);
        }
    }
}

fn public_key(fwd: &Forwarded, name: &str) -> String {
    format!("{} {name}", fwd.registry())
}

fn grant_key(fwd: &Forwarded, p: &PackageClaim) -> String {
    format!("{} {}@{}", fwd.registry(), p.name, p.version)
}

/// Spec §4.4–4.5 for one package a forwarded credential matches.
async fn upstream_authority(
    state: &AppState,
    fwd: &Forwarded,
    who: &Identity,
    p: &PackageClaim,
    stats: &mut Authority,
) -> Result<(), ApiError> {
    let Some(credential) = fwd.credential(&p.name) else {
        return Ok(());
    };
    if state
        .accelerator
        .access
        .is_public(&public_key(fwd, &p.name), pnpr_store::now_ms())
    {
        stats.public += 1;
    } else if !state.accelerator.files.has_index(&p.integrity) {
        stats.fresh += 1;
        stats.fresh_keys.push(grant_key(fwd, p));
    } else {
        authorize_warm(state, fwd, who, p, &credential, stats).await?;
    }
    Ok(())
}

/// Spec §4.5 steps 3–5 for a package whose files the server already holds.
async fn authorize_warm(
    state: &AppState,
    fwd: &Forwarded,
    who: &Identity,
    p: &PackageClaim,
    credential: &pnpr_upstream::Secret,
    stats: &mut Authority,
) -> Result<(), ApiError> {
    let key = grant_key(fwd, p);
    let user = who.user();
    let now = pnpr_store::now_ms();
    if user.is_some_and(|u| state.accelerator.access.has_grant(u, &key, now)) {
        stats.grant += 1;
        return Ok(());
    }
    if probe(state, fwd, &p.name, None)
        .await
        .is_some_and(|s| (200..300).contains(&s))
    {
        state
            .accelerator
            .access
            .mark_public(&public_key(fwd, &p.name), now);
        stats.probed_public += 1;
        return Ok(());
    }
    match probe(state, fwd, &p.name, Some(credential.clone())).await {
        Some(200..=299) => {
            if let Some(u) = user {
                state.accelerator.access.record_grant(u, &key, now);
            }
            stats.probed_grant += 1;
            Ok(())
        }
        Some(401 | 403) => {
            if let Some(u) = user {
                let cleared = state
                    .accelerator
                    .access
                    .clear_package(u, &public_key(fwd, &p.name));
                tracing::info!(package = %p.name, cleared, "upstream revoked access; grants cleared");
            }
            Err(ApiError::forbidden(format!(
                "the registry no longer grants access to {}",
                p.name
            )))
        }
        _ => Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            format!("could not verify access to {}", p.name),
        )),
    }
}

/// One access probe of `name`'s packument: its status, `None` on failure.
async fn probe(
    state: &AppState,
    fwd: &Forwarded,
    name: &str,
    credential: Option<pnpr_upstream::Secret>,
) -> Option<u16> {
    let req = pnpr_upstream::FetchRequest {
        url: fwd.packument_url(name),
        accept: Some(PROBE_ACCEPT.to_string()),
        ..Default::default()
    };
    let client = &state.net().client;
    let sent = match credential {
        Some(c) => client.fetch_forwarded(req, c).await,
        None => client.fetch(req).await,
    };
    match sent {
        Ok(resp) => Some(resp.status),
        Err(e) => {
            tracing::warn!(package = %name, error = %e, "access probe failed");
            None
        }
    }
}
