//! Read API of the registry: packuments, version documents and tarballs,
//! through `/` (the shared public mirror) and `/~<uplink>/` (one uplink's
//! private namespace).
//!
//! Invariants guarded here:
//! - `/` only consults uplinks without `access:`; an access-bearing uplink's
//!   credential and data are reachable only through its own `/~<uplink>/`
//!   endpoint, for callers its `access` admits;
//! - data fetched for `/~<uplink>/` is stored only under that uplink's HMAC
//!   namespace, never in the public mirror, and its responses are marked
//!   `Cache-Control: private, no-store` + `Vary: Authorization`;
//! - a private namespace fails closed: an upstream 401/403/404 is an error,
//!   never a fallback to another namespace; only transport failures may fall
//!   back to stale data of the same namespace;
//! - tarball bytes are verified against the packument's integrity before they
//!   become a cache entry (see `pnpr_store::flight`).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use pnpr_auth::{Action, UplinkDenial};
use pnpr_packument::{RegistryPath, RegistryTarget};
use pnpr_store::{now_ms, PackumentRow, TarballBody};
use pnpr_upstream::FetchRequest;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::state::{AppState, PUBLIC_NS};
use crate::users::identify;

/// Largest packument we accept from an uplink.
const MAX_PACKUMENT_BYTES: u64 = 256 * 1024 * 1024;
pub(crate) const ABBREVIATED: &str = "application/vnd.npm.install-v1+json";

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

/// Fallback handler: every path not under `/-/`.
pub async fn dispatch(State(state): State<Arc<AppState>>, req: Request) -> Response {
    match handle(&state, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn handle(state: &Arc<AppState>, req: Request) -> Result<Response, ApiError> {
    let method = req.method().clone();
    let raw_path = req.uri().path().to_string();
    if raw_path == "/" || raw_path.starts_with("/-/") {
        return Err(ApiError::not_found("no such endpoint"));
    }
    if method != Method::GET && method != Method::HEAD {
        if raw_path.starts_with("/~") {
            return Err(ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "uplink endpoints are read-only",
            ));
        }
        // Publish, unpublish and other writes only ever touch hosted data.
        return crate::hosted::write(state, req).await;
    }
    let parsed = pnpr_packument::parse_registry_path(&raw_path)?;
    let headers = req.headers().clone();
    let who = identify(state, &headers);
    let policy = state.policy();
    if parsed.uplink.is_none() {
        // Name ownership: a hosted name is answered here and never falls
        // through to an uplink, whatever the uplinks say about it.
        if let Some(resp) = crate::hosted::serve_read(state, &parsed, &who, &headers).await {
            let mut resp = resp?;
            if method == Method::HEAD {
                let (parts, _) = resp.into_parts();
                resp = Response::from_parts(parts, Body::empty());
            }
            return Ok(resp);
        }
    }

    let source = match &parsed.uplink {
        Some(u) => {
            match policy.check_uplink(&who, u) {
                Ok(()) => {}
                Err(UplinkDenial::NotExposed) => {
                    return Err(ApiError::not_found(format!("uplink ~{u}")))
                }
                Err(UplinkDenial::Unauthenticated) => {
                    return Err(ApiError::unauthorized(format!(
                        "authentication required for ~{u}"
                    )))
                }
                Err(_) => return Err(ApiError::forbidden(format!("not allowed to use ~{u}"))),
            }
            Source::uplink(state, u).ok_or_else(|| ApiError::not_found(format!("uplink ~{u}")))?
        }
        None => {
            policy
                .check(&who, &parsed.name, Action::Access)
                .map_err(|d| ApiError::denied(d, &parsed.name))?;
            Source::public(state, &policy, &parsed.name)
        }
    };
    let mut resp = match &parsed.target {
        RegistryTarget::Packument => serve_packument(state, &source, &parsed, &headers).await?,
        RegistryTarget::Version(spec) => {
            if source.private {
                return Err(ApiError::not_found(
                    "version documents are not served on uplink endpoints",
                ));
            }
            serve_version(state, &source, &parsed, spec, &headers).await?
        }
        RegistryTarget::Tarball(file) => serve_tarball(state, &source, &parsed, file).await?,
    };
    if source.private {
        let h = resp.headers_mut();
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("private, no-store"),
        );
        h.insert(header::VARY, HeaderValue::from_static("Authorization"));
    }
    if method == Method::HEAD {
        let (parts, _) = resp.into_parts();
        resp = Response::from_parts(parts, Body::empty());
    }
    Ok(resp)
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
async fn load_packument_fresh(
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
                        failures.push((
                            uplink.clone(),
                            pnpr_upstream::UpstreamError::UplinkDown {
                                name: uplink.clone(),
                            },
                        ));
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

pub(crate) fn wants_abbreviated(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains(ABBREVIATED))
}

/// A packument body as served, with its validator.
#[derive(Debug)]
pub struct Rendered {
    body: bytes::Bytes,
    etag: String,
    ctype: &'static str,
    /// Epoch ms until which the metadata behind it counts as fresh.
    fresh_until: i64,
}

async fn serve_packument(
    state: &Arc<AppState>,
    source: &Source,
    parsed: &RegistryPath,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let abbreviated = wants_abbreviated(headers);
    // Rendering (merge, rewrite, abbreviate, serialise) is the hot path of a
    // warm proxy; while the metadata is fresh the bytes cannot change, so
    // they are kept. The key carries everything that shapes the body.
    let key = format!(
        "{}\0{}\0{}\0{}\0{}",
        source.ns,
        parsed.name,
        abbreviated,
        source.tarball_base,
        source.uplinks.join(",")
    );
    let now = now_ms();
    let hit = state
        .rendered
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&key)
        .filter(|r| r.fresh_until > now)
        .cloned();
    let rendered = match hit {
        Some(r) => r,
        None => {
            let (doc, fresh_until) = load_packument_fresh(state, source, &parsed.name).await?;
            let mut doc = doc.ok_or_else(|| ApiError::not_found(&parsed.name))?;
            pnpr_packument::rewrite_tarballs(&mut doc, &source.tarball_base);
            let (body, ctype) = if abbreviated {
                (pnpr_packument::abbreviate(&doc), ABBREVIATED)
            } else {
                (doc, "application/json")
            };
            let bytes = serde_json::to_vec(&body).unwrap_or_default();
            let etag = content_etag(&bytes);
            let r = Arc::new(Rendered {
                body: bytes::Bytes::from(bytes),
                etag,
                ctype,
                fresh_until,
            });
            if fresh_until > now {
                state
                    .rendered
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .put(key, Arc::clone(&r));
            }
            r
        }
    };
    Ok(respond_rendered(&rendered, headers))
}

fn respond_rendered(r: &Rendered, headers: &HeaderMap) -> Response {
    etag_response(r.body.clone(), &r.etag, r.ctype, headers)
}

async fn serve_version(
    state: &Arc<AppState>,
    source: &Source,
    parsed: &RegistryPath,
    spec: &str,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let mut doc = load_packument(state, source, &parsed.name)
        .await?
        .ok_or_else(|| ApiError::not_found(&parsed.name))?;
    pnpr_packument::rewrite_tarballs(&mut doc, &source.tarball_base);
    let v = pnpr_packument::version_doc(&doc, spec)
        .ok_or_else(|| ApiError::not_found(format!("{}@{spec}", parsed.name)))?;
    Ok(json_with_etag(&v, "application/json", headers))
}

/// Serialises `body` and answers it with a content ETag (304 on a match).
pub(crate) fn json_with_etag(body: &Value, ctype: &'static str, headers: &HeaderMap) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let etag = content_etag(&bytes);
    etag_response(bytes::Bytes::from(bytes), &etag, ctype, headers)
}

/// A strong validator derived from the body bytes.
fn content_etag(bytes: &[u8]) -> String {
    format!("\"{}\"", &hex::encode(Sha256::digest(bytes))[..32])
}

/// `200` with the body, or `304` when `If-None-Match` names this ETag.
fn etag_response(
    body: bytes::Bytes,
    etag: &str,
    ctype: &'static str,
    headers: &HeaderMap,
) -> Response {
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|inm| {
            inm.split(',')
                .map(|t| t.trim().trim_start_matches("W/"))
                .any(|t| t == etag || t == "*")
        });
    let mut resp = if matches {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (StatusCode::OK, body).into_response()
    };
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    resp
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

async fn serve_tarball(
    state: &Arc<AppState>,
    source: &Source,
    parsed: &RegistryPath,
    file: &str,
) -> Result<Response, ApiError> {
    let doc = load_packument(state, source, &parsed.name)
        .await?
        .ok_or_else(|| ApiError::not_found(&parsed.name))?;
    let (_, version) = pnpr_packument::find_by_file(&doc, file)
        .ok_or_else(|| ApiError::not_found(format!("{}/-/{file}", parsed.name)))?;
    let (body, uplink) = tarball_body(state, source, file, version).await?;
    tarball_response(body, &uplink).await
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

async fn tarball_response(body: TarballBody, uplink: &str) -> Result<Response, ApiError> {
    match body {
        TarballBody::Stored(stored) => {
            let file = tokio::fs::File::open(&stored.path)
                .await
                .map_err(|e| ApiError::internal("cannot open cached tarball", e))?;
            let stream = tokio_util::io::ReaderStream::with_capacity(file, 64 * 1024);
            let mut resp = Response::new(Body::from_stream(stream));
            let h = resp.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(stored.len));
            Ok(resp)
        }
        TarballBody::Streaming(mut stream) => {
            // Wait for the first bytes so an upstream failure or a small
            // tarball's integrity mismatch becomes a proper error status.
            let first = match stream.next().await {
                Some(Ok(chunk)) => Some(chunk),
                Some(Err(e)) => {
                    tracing::warn!(uplink, error = %e, "tarball fetch failed");
                    return Err(ApiError::new(
                        StatusCode::BAD_GATEWAY,
                        format!("tarball from uplink {uplink} could not be fetched or failed verification"),
                    ));
                }
                None => None,
            };
            let head =
                futures_util::stream::iter(first.into_iter().map(Ok::<_, pnpr_store::StoreError>));
            let mut resp = Response::new(Body::from_stream(head.chain(stream)));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            Ok(resp)
        }
    }
}
