//! The mirror: packuments and tarballs of the uplinks, fetched, revalidated
//! and cached per namespace (the shared public mirror, or one
//! access-bearing uplink's private namespace).
//!
//! Invariants guarded here:
//! - data fetched for an uplink's private namespace is stored only under that
//!   namespace's HMAC id, never in the public mirror or another namespace;
//! - a private namespace fails closed: an upstream 401/403/404 is an error,
//!   never a fallback to cached data; only transport failures may fall back
//!   to stale data of the same namespace;
//! - tarball bytes are verified against the packument's integrity before they
//!   become a cache entry (see `pnpr_store::flight`).
//!
//! Who may read what is not decided here: callers come through the catalog.

use std::sync::Arc;

use axum::http::StatusCode;
use futures_util::StreamExt;
use pnpr_store::{now_ms, PackumentRow, TarballBody};
use pnpr_upstream::FetchRequest;
use serde_json::Value;

use crate::error::ApiError;
use crate::state::{AppState, PUBLIC_NS};

/// Largest packument we accept from an uplink.
const MAX_PACKUMENT_BYTES: u64 = 256 * 1024 * 1024;
/// Where a request's data comes from and is cached.
#[derive(Debug, Clone)]
pub(crate) struct Source {
    pub(crate) ns: String,
    pub(crate) uplinks: Vec<String>,
    /// `/~<uplink>/` requests: fail closed, private caching headers.
    pub(crate) private: bool,
    /// Base URL tarballs are rewritten onto.
    pub(crate) tarball_base: String,
}

impl Source {
    /// The shared public mirror for `name`: the `proxy:` uplinks of its
    /// `packages:` rule that carry no `access:` (those are endpoint-only).
    pub(crate) fn public(state: &AppState, policy: &pnpr_auth::Policy, name: &str) -> Source {
        Source {
            ns: PUBLIC_NS.to_string(),
            uplinks: policy
                .proxies(name)
                .iter()
                .filter(|u| !policy.uplink_has_access(u))
                .cloned()
                .collect(),
            private: false,
            tarball_base: state.public_url.to_string(),
        }
    }

    /// One access-bearing uplink's private namespace (`/~<uplink>/`).
    pub(crate) fn uplink(state: &AppState, uplink: &str) -> Option<Source> {
        let info = state.uplink(uplink)?;
        Some(Source {
            ns: info.private_ns.clone(),
            uplinks: vec![uplink.to_string()],
            private: true,
            tarball_base: format!("{}~{uplink}/", state.public_url),
        })
    }
}

/// Loads (fetching or revalidating as needed) and merges the packument.
pub(crate) async fn load_packument(
    state: &Arc<AppState>,
    source: &Source,
    name: &str,
) -> Result<Option<Value>, ApiError> {
    Ok(load_packument_fresh(state, source, name).await?.0)
}

/// [`load_packument`] plus the time (epoch ms) until which the result may be
/// reused without asking any uplink again: the earliest expiry of the rows it
/// merged, or "now" when stale data had to be served.
pub(crate) async fn load_packument_fresh(
    state: &Arc<AppState>,
    source: &Source,
    name: &str,
) -> Result<(Option<Value>, i64), ApiError> {
    let mut fresh_until = i64::MAX;
    let mut docs = Vec::new();
    let mut failures: Vec<(String, pnpr_upstream::UpstreamError)> = Vec::new();
    for uplink in &source.uplinks {
        let Some(info) = state.uplink(uplink) else {
            continue;
        };
        let cfg = &info.config;
        let row = state.db.packument(&source.ns, name, uplink)?;
        let now = now_ms();
        let maxage_ms = i64::try_from(cfg.maxage.as_millis()).unwrap_or(i64::MAX);
        if let Some(row) = &row {
            if now.saturating_sub(row.fetched_at_ms) < maxage_ms {
                fresh_until = fresh_until.min(row.fetched_at_ms.saturating_add(maxage_ms));
                docs.push((uplink.clone(), parse_row(row)?));
                continue;
            }
        }
        let url = format!("{}{}", cfg.url, encode_name(name));
        let req = FetchRequest {
            url,
            via: Some(uplink.clone()),
            accept: Some("application/json".into()),
            if_none_match: row.as_ref().and_then(|r| r.etag.clone()),
            if_modified_since: row.as_ref().and_then(|r| r.last_modified.clone()),
        };
        match state.net().client.fetch(req).await {
            Ok(resp) => match resp.status {
                200 => {
                    let etag = resp.etag.clone();
                    let last_modified = resp.last_modified.clone();
                    let body = match resp.bytes(MAX_PACKUMENT_BYTES).await {
                        Ok(b) => b,
                        Err(e) => {
                            failures.push((uplink.clone(), e));
                            fresh_until = now;
                            if let Some(row) = &row {
                                docs.push((uplink.clone(), parse_row(row)?));
                            }
                            continue;
                        }
                    };
                    let doc = pnpr_packument::parse(&body)?;
                    state.db.put_packument(&PackumentRow {
                        ns: source.ns.clone(),
                        name: name.to_string(),
                        uplink: uplink.clone(),
                        body: body.to_vec(),
                        etag,
                        last_modified,
                        fetched_at_ms: now,
                    })?;
                    fresh_until = fresh_until.min(now.saturating_add(maxage_ms));
                    docs.push((uplink.clone(), doc));
                }
                304 if row.is_some() => {
                    state.db.touch_packument(&source.ns, name, uplink, now)?;
                    fresh_until = fresh_until.min(now.saturating_add(maxage_ms));
                    if let Some(row) = &row {
                        docs.push((uplink.clone(), parse_row(row)?));
                    }
                }
                404 if !source.private => {
                    state.db.delete_packument(&source.ns, name, uplink)?;
                    fresh_until = fresh_until.min(now.saturating_add(maxage_ms));
                }
                401 | 403 | 404 if source.private => {
                    // Fail closed: never fall back to cached data when the
                    // upstream denies or no longer has it.
                    state.db.delete_packument(&source.ns, name, uplink)?;
                    return Err(if resp.status == 404 {
                        ApiError::not_found(name)
                    } else {
                        ApiError::new(
                            StatusCode::FORBIDDEN,
                            format!(
                                "uplink {uplink} refused access to {name} (status {})",
                                resp.status
                            ),
                        )
                    });
                }
                401 | 403 => {
                    fresh_until = now;
                    tracing::warn!(
                        uplink,
                        name,
                        status = resp.status,
                        "uplink denied a public-mirror fetch"
                    );
                }
                status => {
                    tracing::warn!(uplink, name, status, "unexpected uplink status");
                    fresh_until = now;
                    if let Some(row) = &row {
                        docs.push((uplink.clone(), parse_row(row)?));
                    } else {
                        // A bad answer (502), not a refusal to ask (503).
                        failures.push((uplink.clone(), resp.status_error()));
                    }
                }
            },
            Err(e) => {
                if e.is_transport() {
                    fresh_until = now;
                    if let Some(row) = &row {
                        tracing::warn!(uplink, name, error = %e, "serving stale metadata");
                        fresh_until = now;
                        docs.push((uplink.clone(), parse_row(row)?));
                        continue;
                    }
                    failures.push((uplink.clone(), e));
                } else {
                    return Err(ApiError::upstream(uplink, &e));
                }
            }
        }
    }
    if docs.is_empty() {
        if let Some((uplink, e)) = failures.first() {
            return Err(ApiError::upstream(uplink, e));
        }
        return Ok((None, fresh_until));
    }
    Ok((pnpr_packument::merge(docs), fresh_until))
}

fn parse_row(row: &PackumentRow) -> Result<Value, ApiError> {
    pnpr_packument::parse(&row.body).map_err(|e| ApiError::internal("corrupt cached packument", e))
}

/// `@scope/name` → `@scope%2fname` (what registries expect on the wire).
pub fn encode_name(name: &str) -> String {
    name.replace('/', "%2f")
}

/// The expected SRI of a version: `dist.integrity`, else `dist.shasum`.
pub(crate) fn expected_integrity(version: &Value) -> Option<ssri::Integrity> {
    let dist = version.get("dist")?;
    if let Some(i) = dist.get("integrity").and_then(Value::as_str) {
        if let Ok(sri) = i.parse::<ssri::Integrity>() {
            return Some(sri);
        }
    }
    let sha1 = dist.get("shasum").and_then(Value::as_str)?;
    ssri::Integrity::from_hex(sha1, ssri::Algorithm::Sha1).ok()
}

/// The verified bytes of one version's tarball: a CAS hit, or the single
/// shared upstream fetch (through the version's own uplink).
pub(crate) async fn tarball_body(
    state: &Arc<AppState>,
    source: &Source,
    file: &str,
    version: &Value,
) -> Result<(TarballBody, String), ApiError> {
    let sri = expected_integrity(version).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            format!("{file} has no integrity in its packument"),
        )
    })?;
    let uplink = version
        .get(pnpr_packument::UPLINK_FIELD)
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::not_found(file))?
        .to_string();
    let upstream_url = version
        .get("dist")
        .and_then(|d| d.get("tarball"))
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::not_found(file))?
        .to_string();
    let keep = state.uplink(&uplink).is_some_and(|u| u.config.cache);
    let st = Arc::clone(state);
    let via = uplink.clone();
    let body = state
        .tarballs
        .get(&source.ns, &sri, keep, move || async move {
            let resp = st
                .net()
                .client
                .fetch(FetchRequest {
                    url: upstream_url,
                    via: Some(via.clone()),
                    accept: Some("application/octet-stream".into()),
                    if_none_match: None,
                    if_modified_since: None,
                })
                .await
                .map_err(pnpr_store::FetchFailure::upstream)?;
            if resp.status != 200 {
                return Err(pnpr_store::FetchFailure::status(
                    resp.status,
                    &format!("uplink {via}"),
                ));
            }
            let stream = resp
                .into_stream()
                .map(|r| r.map_err(pnpr_store::FetchFailure::upstream));
            Ok(Box::pin(stream) as pnpr_store::flight::ByteStream)
        })
        .await?;
    Ok((body, uplink))
}
