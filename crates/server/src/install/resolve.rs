//! Stage 3: the resolution — a cached candidate the caller passes every gate
//! of, or a fresh resolution through the catalog (which is then cached).
//!
//! Invariants guarded here:
//! - the base key covers every request field that can change the answer:
//!   it is derived from the parsed request as a whole, minus only the
//!   fields that identify the caller or describe its store (`authHeaders`,
//!   `storeIntegrities`, `lockfileOnly`), so a field added to the request
//!   is keyed by default instead of silently shared;
//! - a forwarded-credential resolution is never cached: its gates are the
//!   upstream's decisions, which the candidate cache cannot re-check;
//! - input-lockfile `minimumReleaseAge` violations are reported before
//!   anything is resolved.

use std::sync::Arc;

use pnpr_lockfile::Lockfile;
use pnpr_resolver::{Dialect, ResolveOptions};
use serde_json::Value;

use crate::catalog::{resolve_error, PackageClaim, Scope, Session};
use crate::error::ApiError;
use crate::state::AppState;

pub use crate::accelerator::CachedTree;

/// A resolution and whether it came from the cache.
pub(crate) struct Resolved {
    pub(crate) tree: Arc<CachedTree>,
    pub(crate) cache_hit: bool,
}

pub(super) enum Outcome {
    Resolved(Resolved),
    Violations(Vec<pnpr_protocol::Violation>),
}

pub(super) async fn resolve_or_cached(
    state: &Arc<AppState>,
    session: &Session,
    req: &pnpr_protocol::InstallRequest,
) -> Result<Outcome, ApiError> {
    resolve_or_cached_with(state, session, req, None).await
}

/// [`resolve_or_cached`]; on a fresh v0 resolution every picked version is
/// also reported on `early` (see [`super::v0_early`]).
pub(super) async fn resolve_or_cached_with(
    state: &Arc<AppState>,
    session: &Session,
    req: &pnpr_protocol::InstallRequest,
    early: Option<super::v0_prefetch::Early>,
) -> Result<Outcome, ApiError> {
    let input = input_lockfile(req);
    let forwarded = matches!(session.scope(), Scope::Forwarded(_));
    let key = base_key(req, session.scope())?;
    if !forwarded {
        let hit = state
            .accelerator
            .resolutions()
            .lookup(&key, |d| session.passes_gate(d));
        crate::metrics::record_resolution(hit.is_some());
        if let Some(tree) = hit {
            return Ok(Outcome::Resolved(Resolved {
                tree,
                cache_hit: true,
            }));
        }
    }
    // A cached candidate for this key already passed verification of the
    // same input lockfile, and release-age checks only get easier with
    // time, so verification runs on misses only.
    let violations = super::release_age::violations(req, input.as_ref(), session).await?;
    if !violations.is_empty() {
        return Ok(Outcome::Violations(violations));
    }
    let projects = super::select::project_inputs(req);
    let opts = resolve_options(req, input);
    // `/v1/install` unpacks picked packages for its own response; v0
    // clients fetch their tarballs from us, so those are warmed in the CAS.
    let resolution = match req.generation {
        pnpr_protocol::Generation::V1Install => {
            super::prefetch::resolve_while_fetching(state, session, req, &projects, &opts).await
        }
        _ => {
            super::v0_prefetch::resolve_while_prefetching(state, session, &projects, &opts, early)
                .await
        }
    }
    .map_err(resolve_error)?;
    let tree = Arc::new(CachedTree {
        packages: claims(&resolution.packages),
        lockfile: resolution.lockfile,
    });
    if !forwarded {
        let weight = estimated_bytes(&tree);
        state
            .accelerator
            .resolutions()
            .store(&key, session.footprint(), Arc::clone(&tree), weight);
    }
    Ok(Outcome::Resolved(Resolved {
        tree,
        cache_hit: false,
    }))
}

fn claims(packages: &[pnpr_resolver::ResolvedPackage]) -> Vec<PackageClaim> {
    packages
        .iter()
        .filter_map(|p| {
            Some(PackageClaim {
                name: p.name.clone(),
                version: p.version.clone(),
                integrity: p.integrity.clone()?,
            })
        })
        .collect()
}

/// Memory a cached tree holds, estimated from its JSON size: typed maps and
/// strings take about three times their serialised bytes.
fn estimated_bytes(tree: &CachedTree) -> usize {
    let json = serde_json::to_vec(&tree.lockfile).map_or(0, |v| v.len());
    let claims: usize = tree
        .packages
        .iter()
        .map(|p| p.name.len() + p.version.len() + p.integrity.len() + 72)
        .sum();
    json.saturating_mul(3).saturating_add(claims)
}

/// The input lockfile, typed. One that does not parse is treated as absent
/// (the tree is then resolved afresh under every policy in the request),
/// as pnpm itself re-resolves a lockfile it cannot use.
pub(super) fn input_lockfile(req: &pnpr_protocol::InstallRequest) -> Option<Lockfile> {
    let raw = req.lockfile.as_ref()?;
    // Deserialised from the borrowed value: no copy of a large body.
    match <Lockfile as serde::Deserialize>::deserialize(raw) {
        Ok(l) => Some(l),
        Err(e) => {
            tracing::debug!(error = %e, "input lockfile ignored: not a pnpm lockfile");
            None
        }
    }
}

/// The auth-free cache key of a request (spec §5.8).
fn base_key(req: &pnpr_protocol::InstallRequest, scope: &Scope) -> Result<String, ApiError> {
    let lockfile_hash = req.lockfile.as_ref().map(pnpr_rescache::base_key);
    let request: Value =
        serde_json::to_value(req).map_err(|e| ApiError::internal("request key", e))?;
    Ok(pnpr_rescache::base_key(&serde_json::json!({
        "scope": scope.label(),
        "request": request,
        "lockfile": lockfile_hash,
    })))
}

fn resolve_options(req: &pnpr_protocol::InstallRequest, input: Option<Lockfile>) -> ResolveOptions {
    let defaults = ResolveOptions::default();
    ResolveOptions {
        registry: req.registry.clone(),
        scope_registries: req.scope_registries.clone(),
        overrides: req.overrides.clone().unwrap_or_default(),
        minimum_release_age_minutes: req.minimum_release_age,
        minimum_release_age_exclude: req.minimum_release_age_exclude.clone().unwrap_or_default(),
        now_ms: pnpr_store::now_ms(),
        node_version: req
            .node_version
            .clone()
            .unwrap_or(defaults.node_version.clone()),
        os: req.os.clone().unwrap_or(defaults.os.clone()),
        cpu: req.arch.clone().unwrap_or(defaults.cpu.clone()),
        input_lockfile: input,
        frozen: req.frozen_lockfile,
        prefer_frozen: req.prefer_frozen_lockfile.unwrap_or(true),
        dialect: match req.generation {
            pnpr_protocol::Generation::V1Install => Dialect::Pnpm11_5,
            pnpr_protocol::Generation::V0Resolve => Dialect::Pnpm11_9,
            pnpr_protocol::Generation::V0ResolvePnpm12 => Dialect::Pnpm12,
        },
        ..defaults
    }
}
