//! Audit passthrough: `npm audit`, `pnpm audit`, `yarn audit` / `yarn npm
//! audit` post their dependency lists here and get the audit uplink's
//! answer (`audit.uplink`, by default the shared mirror's first uplink).
//!
//! Invariants guarded here:
//! - a name leaves only if the catalog says it may be audited upstream for
//!   this caller ([`crate::catalog::auditable`]): names seen only through an
//!   access-bearing uplink or the hosted store are withheld from the
//!   forwarded body (never sent anywhere), at every depth;
//! - the request goes through the one upstream client (allowlist, connect
//!   guard, breaker, deadlines) with the audit uplink's own server-held
//!   credential; the caller's token never leaves;
//! - the body is bounded before and after gzip decoding (`audit.max_body`);
//! - identical forwarded bodies within `audit.cache_ttl` are answered from
//!   a bounded in-memory cache, keyed by the uplink and the exact bytes sent
//!   (so two callers share an entry only when they would send the same).

mod filter;

use std::collections::HashMap;
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use futures_util::StreamExt;
use pnpr_config::AuditUplink;
use sha2::{Digest, Sha256};

pub use filter::AuditKind;

use crate::error::ApiError;
use crate::state::AppState;
use crate::users::identify;

/// Largest audit answer accepted from the uplink.
const MAX_ANSWER: u64 = 64 * 1024 * 1024;

/// Entries and bytes the answer cache holds at most.
const CACHE_ENTRIES: usize = 256;
const CACHE_BYTES: usize = 64 * 1024 * 1024;

/// Answers of recent identical audit requests.
pub struct AuditCache {
    ttl: Duration,
    entries: Mutex<HashMap<[u8; 32], (Instant, Bytes)>>,
}

impl AuditCache {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn get(&self, key: &[u8; 32]) -> Option<Bytes> {
        let map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        map.get(key)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, b)| b.clone())
    }

    fn put(&self, key: [u8; 32], body: Bytes) {
        if self.ttl.is_zero() || body.len() > CACHE_BYTES / 4 {
            return;
        }
        let mut map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, (at, _)| at.elapsed() < self.ttl);
        let mut total: usize = map.values().map(|(_, b)| b.len()).sum();
        while map.len() >= CACHE_ENTRIES || total + body.len() > CACHE_BYTES {
            let Some(oldest) = map.iter().min_by_key(|(_, (at, _))| *at).map(|(k, _)| *k) else {
                break;
            };
            if let Some((_, b)) = map.remove(&oldest) {
                total -= b.len();
            }
        }
        map.insert(key, (Instant::now(), body));
    }
}

/// `POST /-/npm/v1/security/advisories/bulk`.
pub async fn bulk(
    State(state): State<Arc<AppState>>,
    Extension(cache): Extension<Arc<AuditCache>>,
    req: Request,
) -> Response {
    respond(audit(&state, &cache, AuditKind::Bulk, req).await)
}

/// `POST /-/npm/v1/security/audits/quick`.
pub async fn quick(
    State(state): State<Arc<AppState>>,
    Extension(cache): Extension<Arc<AuditCache>>,
    req: Request,
) -> Response {
    respond(audit(&state, &cache, AuditKind::Quick, req).await)
}

/// `POST /-/npm/v1/security/audits`.
pub async fn full(
    State(state): State<Arc<AppState>>,
    Extension(cache): Extension<Arc<AuditCache>>,
    req: Request,
) -> Response {
    respond(audit(&state, &cache, AuditKind::Full, req).await)
}

fn respond(result: Result<(Bytes, &'static str), ApiError>) -> Response {
    match result {
        Ok((body, cached)) => {
            let mut resp = (StatusCode::OK, body).into_response();
            let h = resp.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            h.insert("x-pnpr-audit", HeaderValue::from_static(cached));
            // The answer depends on what the caller may read.
            h.insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("private, no-store"),
            );
            resp
        }
        Err(e) => e.into_response(),
    }
}

async fn audit(
    state: &Arc<AppState>,
    cache: &AuditCache,
    kind: AuditKind,
    req: Request,
) -> Result<(Bytes, &'static str), ApiError> {
    let uplink = audit_uplink(state)?;
    let who = identify(state, req.headers());
    let body = read_body(state, req).await?;
    let parsed: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|_| ApiError::bad_request("audit request body is not valid JSON"))?;
    let policy = state.policy();
    let keep = |name: &str| crate::catalog::auditable(state, &policy, &who, name);
    let filtered = filter::filter(kind, parsed, &keep)
        .map_err(|filter::Malformed(why)| ApiError::bad_request(why))?;
    if filtered.withheld > 0 {
        tracing::info!(
            withheld = filtered.withheld,
            "audit: names withheld from the uplink"
        );
    }
    let sent = Bytes::from(filtered.body.to_string());
    let key = cache_key(&uplink, kind, &sent);
    if let Some(hit) = cache.get(&key) {
        return Ok((hit, "cached"));
    }
    let answer = forward(state, &uplink, kind, sent).await?;
    cache.put(key, answer.clone());
    Ok((answer, "forwarded"))
}

fn cache_key(uplink: &str, kind: AuditKind, sent: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(uplink.as_bytes());
    h.update([0]);
    h.update(kind.path().as_bytes());
    h.update([0]);
    h.update(sent);
    h.finalize().into()
}

/// The uplink audits go to, or the npm-style error saying none can audit.
fn audit_uplink(state: &AppState) -> Result<String, ApiError> {
    let policy = state.policy();
    let name = match &state.config.audit.uplink {
        AuditUplink::Disabled => None,
        AuditUplink::Named(n) => Some(n.clone()),
        AuditUplink::FirstMirror => state
            .config
            .uplinks
            .iter()
            .find(|u| !policy.uplink_has_access(&u.name))
            .map(|u| u.name.clone()),
    };
    name.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "this registry has no audit-capable upstream (configure audit.uplink)",
        )
    })
}

/// The request body, gzip-decoded when the client sent it compressed (npm
/// does), bounded by `audit.max_body` on both sides of decoding.
async fn read_body(state: &AppState, req: Request) -> Result<Vec<u8>, ApiError> {
    let limit = state.config.audit.max_body;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("audit request is larger than {limit} bytes (audit.max_body)"),
        )
    };
    let gzip = req
        .headers()
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("gzip"));
    let mut stream = req.into_body().into_data_stream();
    let mut raw = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| ApiError::bad_request("could not read the request body"))?;
        if (raw.len() + chunk.len()) as u64 > limit {
            return Err(too_large());
        }
        raw.extend_from_slice(&chunk);
    }
    if !gzip {
        return Ok(raw);
    }
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(&raw[..])
        .take(limit + 1)
        .read_to_end(&mut out)
        .map_err(|_| ApiError::bad_request("audit request body is not valid gzip"))?;
    if out.len() as u64 > limit {
        return Err(too_large());
    }
    Ok(out)
}

/// POSTs the filtered body to the uplink's audit endpoint.
async fn forward(
    state: &AppState,
    uplink: &str,
    kind: AuditKind,
    body: Bytes,
) -> Result<Bytes, ApiError> {
    let base = state
        .config
        .uplinks
        .iter()
        .find(|u| u.name == uplink)
        .map(|u| u.url.clone())
        .ok_or_else(|| ApiError::internal("audit uplink vanished", uplink.to_string()))?;
    let url = base
        .join(kind.path())
        .map_err(|e| ApiError::internal("audit URL", e))?;
    let req = pnpr_upstream::FetchRequest {
        url: url.to_string(),
        via: Some(uplink.to_string()),
        accept: Some("application/json".into()),
        ..Default::default()
    };
    let resp = state
        .net()
        .client
        .post_json(req, body)
        .await
        .map_err(|e| ApiError::upstream(uplink, &e))?;
    match resp.status {
        200 => resp
            .bytes(MAX_ANSWER)
            .await
            .map_err(|e| ApiError::upstream(uplink, &e)),
        404 | 405 | 501 => Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            format!("uplink {uplink} does not answer audit requests (configure audit.uplink)"),
        )),
        status => {
            tracing::warn!(uplink, status, "audit request refused upstream");
            Err(ApiError::new(
                StatusCode::BAD_GATEWAY,
                format!("uplink {uplink} answered the audit request with {status}"),
            ))
        }
    }
}
