//! Hosted packages over HTTP: `npm publish`, `unpublish`, `deprecate`,
//! `owner`, `dist-tag`, `search`, and reads of hosted packuments/tarballs.
//!
//! Invariants guarded here:
//! - name ownership: a hosted name is answered from the hosted store only
//!   (never from an uplink, whatever the uplinks say), and a name an uplink
//!   of the shared mirror already serves cannot be claimed by a first
//!   publish (dependency-confusion guard; fails closed when the uplink
//!   cannot be asked);
//! - every write is authorized before it changes anything: `packages:`
//!   `publish` for publish/deprecate/dist-tag/owner edits, `unpublish` for
//!   anything that removes versions, and read-only tokens never write; on
//!   top of that, ownership (`pnpr_hosted::ownership`, decided inside the
//!   store's transaction) admits only maintainers and admins to change an
//!   existing package;
//! - request bodies are bounded by `max_body_size` (413 with an npm-style
//!   JSON error beyond it), and document/tarball work runs on the blocking
//!   pool, never on the async executor.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Json, Router};
use futures_util::StreamExt;
use pnpr_auth::{Action, Caller, Denial, Identity};
use pnpr_hosted::{
    Actor, Change, HostedError, Permission, SearchQuery, UpdateGate, UpdateOutcome, UplinkAnswer,
};
use pnpr_packument::{RegistryPath, RegistryTarget};
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::mirror::{load_packument, Namespace};
use crate::public_base::PublicBase;
use crate::rendered::{
    json_with_etag, mark_private, tarball_file_response, wants_abbreviated, ABBREVIATED,
};
use crate::state::{AppState, PUBLIC_NS};
use crate::users::identify;

/// The live `groups:` of the access policy, as ownership asks about them.
struct PolicyGroups<'a>(&'a pnpr_auth::Policy);

impl pnpr_hosted::Groups for PolicyGroups<'_> {
    fn is_group(&self, name: &str) -> bool {
        self.0.is_group(name)
    }

    fn is_member(&self, user: &str, group: &str) -> bool {
        self.0.in_group(user, group)
    }
}

/// The ownership standing of an identified, non-read-only caller (the
/// write gate has already refused everyone else).
fn actor(state: &AppState, who: &Caller, name: &str) -> Result<Actor, ApiError> {
    let user = who.identity.user().ok_or_else(|| {
        ApiError::unauthorized(format!("authentication required to change {name}"))
    })?;
    let policy = state.policy();
    Ok(ownership_rules(state).actor(user, &PolicyGroups(&policy)))
}

/// `ownership:` from config, in the library's terms.
fn ownership_rules(state: &AppState) -> pnpr_hosted::Ownership {
    let cfg = &state.config.ownership;
    let mode = match cfg.mode {
        pnpr_config::OwnershipMode::Maintainers => pnpr_hosted::OwnershipMode::Maintainers,
        pnpr_config::OwnershipMode::PublishRights => pnpr_hosted::OwnershipMode::PublishRights,
    };
    pnpr_hosted::Ownership::new(mode, cfg.admins.clone())
}

/// Extra `/-/` routes owned by the hosted registry.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/-/package/{*rest}", any(dist_tags))
        .route("/-/v1/search", get(search))
}

/// `Some` when `parsed.name` is a hosted package (it is then never proxied).
/// Tarball URLs are written under `base`, the request's public base.
pub async fn serve_read(
    state: &Arc<AppState>,
    parsed: &RegistryPath,
    who: &Identity,
    base: &PublicBase,
    headers: &HeaderMap,
) -> Option<Result<Response, ApiError>> {
    if parsed.uplink.is_some() || !state.hosted.is_hosted(&parsed.name) {
        return None;
    }
    Some(read(state, parsed, who, base, headers).await)
}

/// Whether `name`, which this node did not know as hosted, turns out to
/// be: published on another node a moment ago, its change notice still on
/// the way. Asked only after the mirror found nothing, so the shared
/// database is read on misses only (never with the embedded store).
pub async fn hosted_after_all(state: &Arc<AppState>, name: &str) -> bool {
    let (st, n) = (Arc::clone(state), name.to_owned());
    match tokio::task::spawn_blocking(move || st.hosted.recheck(&n)).await {
        Ok(Ok(hosted)) => hosted,
        Ok(Err(e)) => {
            tracing::warn!(package = name, error = %e, "cannot recheck a hosted name");
            false
        }
        Err(_) => false,
    }
}

async fn read(
    state: &Arc<AppState>,
    parsed: &RegistryPath,
    who: &Identity,
    base: &PublicBase,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let name = &parsed.name;
    let policy = state.policy();
    policy
        .check(who, name, Action::Access)
        .map_err(|d| ApiError::denied(d, name))?;
    let mut resp = match &parsed.target {
        RegistryTarget::Tarball(file) => {
            let stored = stored_tarball(state, name, file).await?;
            tarball_file_response(&stored.path, stored.len, "cannot open hosted tarball").await?
        }
        target => {
            let mut doc = state
                .hosted
                .get(name)?
                .ok_or_else(|| ApiError::not_found(name))?
                .doc;
            pnpr_packument::rewrite_tarballs(&mut doc, base.as_str());
            match target {
                RegistryTarget::Version(spec) => {
                    let v = pnpr_packument::version_doc(&doc, spec)
                        .ok_or_else(|| ApiError::not_found(format!("{name}@{spec}")))?;
                    json_with_etag(&v, "application/json", headers)
                }
                _ if wants_abbreviated(headers) => {
                    json_with_etag(&pnpr_packument::abbreviate(&doc), ABBREVIATED, headers)
                }
                _ => json_with_etag(&doc, "application/json", headers),
            }
        }
    };
    if !policy.admits_anonymous(name, Action::Access) {
        mark_private(&mut resp);
    }
    Ok(resp)
}

/// What a write path addresses.
#[derive(Debug, PartialEq, Eq)]
enum WriteTarget {
    /// `/<name>` or `/<name>/-rev/<rev>`.
    Doc { rev: Option<String> },
    /// `/<name>/-/<file>[/-rev/<rev>]`.
    Tarball { file: String, rev: Option<String> },
}

fn decode(seg: &str) -> Result<String, ApiError> {
    percent_encoding::percent_decode_str(seg)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| ApiError::bad_request("invalid percent-encoding in the path"))
}

/// Splits `<name>` (either scoped spelling) off a raw path and returns the
/// remaining decoded segments.
fn split_name(raw: &str) -> Result<(String, Vec<String>), ApiError> {
    let trimmed = raw.trim_start_matches('/');
    let mut segs: Vec<&str> = trimmed.split('/').collect();
    if segs.len() > 1 && segs.last() == Some(&"") {
        segs.pop();
    }
    let mut decoded = segs
        .iter()
        .map(|s| decode(s))
        .collect::<Result<Vec<_>, _>>()?
        .into_iter();
    let first = decoded
        .next()
        .ok_or_else(|| ApiError::bad_request("missing package name"))?;
    let name = if first.starts_with('@') && !first.contains('/') {
        let second = decoded
            .next()
            .ok_or_else(|| ApiError::bad_request("invalid package name"))?;
        format!("{first}/{second}")
    } else {
        first
    };
    pnpr_packument::validate_name(&name)?;
    Ok((name, decoded.collect()))
}

fn parse_write_path(raw: &str) -> Result<(String, WriteTarget), ApiError> {
    let (name, rest) = split_name(raw)?;
    let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
    let target = match rest.as_slice() {
        [] => WriteTarget::Doc { rev: None },
        ["-rev", rev] => WriteTarget::Doc {
            rev: Some((*rev).to_string()),
        },
        ["-", file] => WriteTarget::Tarball {
            file: (*file).to_string(),
            rev: None,
        },
        ["-", file, "-rev", rev] => WriteTarget::Tarball {
            file: (*file).to_string(),
            rev: Some((*rev).to_string()),
        },
        _ => return Err(ApiError::not_found("no such endpoint")),
    };
    if let WriteTarget::Tarball { file, .. } = &target {
        if file.is_empty() || file.starts_with('.') || file.contains('/') {
            return Err(ApiError::bad_request("invalid tarball name"));
        }
    }
    Ok((name, target))
}

/// The caller of a write, with the connection's peer address so tokens
/// restricted to networks (`cidr_whitelist`) are honoured.
fn caller(state: &AppState, req: &Request) -> Caller {
    let auth = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let peer = req
        .extensions()
        .get::<crate::identity::ClientAddr>()
        .and_then(|a| a.0);
    state.auth.authenticate(auth, peer)
}

fn verb(action: Action) -> &'static str {
    match action {
        Action::Unpublish => "unpublish",
        _ => "publish",
    }
}

/// The write gate: identified, not read-only, and admitted by `packages:`.
fn authorize(state: &AppState, who: &Caller, name: &str, action: Action) -> Result<(), ApiError> {
    if who.identity == Identity::Anonymous {
        return Err(ApiError::unauthorized(format!(
            "authentication required to {} {name}",
            verb(action)
        )));
    }
    if who.readonly {
        return Err(ApiError::forbidden(
            "this token is read-only and cannot change packages",
        ));
    }
    state
        .policy()
        .check(&who.identity, name, action)
        .map_err(|d| match d {
            Denial::Unauthenticated => ApiError::unauthorized(format!(
                "authentication required to {} {name}",
                verb(action)
            )),
            _ => ApiError::forbidden(format!("not allowed to {} {name}", verb(action))),
        })
}

/// Bytes of an oversized body read (and discarded) before answering 413, so
/// a client still writing its upload sees the error instead of a reset.
const DRAIN_LIMIT: u64 = 512 * 1024 * 1024;

async fn read_body(state: &AppState, req: Request) -> Result<Bytes, ApiError> {
    let limit = state.config.max_body_size;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body is larger than the limit of {limit} bytes (max_body_size)"),
        )
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.parse::<u64>().ok());
    let mut over = declared.is_some_and(|len| len > limit);
    let mut stream = req.into_body().into_data_stream();
    let mut buf = Vec::new();
    let mut seen: u64 = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| ApiError::bad_request("could not read the request body"))?;
        seen = seen.saturating_add(chunk.len() as u64);
        if seen > limit {
            over = true;
        }
        if over {
            buf = Vec::new();
            if seen > limit.saturating_add(DRAIN_LIMIT) {
                break;
            }
        } else {
            buf.extend_from_slice(&chunk);
        }
    }
    if over {
        return Err(too_large());
    }
    Ok(Bytes::from(buf))
}

/// The stored tarball `file` of hosted package `name`, or 404. Run on the
/// blocking pool: a local miss may fill from the shared bucket.
pub(crate) async fn stored_tarball(
    state: &Arc<AppState>,
    name: &str,
    file: &str,
) -> Result<pnpr_hosted::StoredTarball, ApiError> {
    let (st, n, f) = (Arc::clone(state), name.to_string(), file.to_string());
    blocking(move || st.hosted.tarball(&n, &f))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("{name}/-/{file}")))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, HostedError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal("hosted task failed", e))?
        .map_err(ApiError::from)
}

fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|_| ApiError::bad_request("request body is not valid JSON"))
}

fn ok(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        Json(json!({ "ok": message.into(), "success": true })),
    )
        .into_response()
}

/// PUT/DELETE on registry paths.
pub async fn write(state: &Arc<AppState>, req: Request) -> Result<Response, ApiError> {
    let method = req.method().clone();
    let (name, target) = parse_write_path(req.uri().path())?;
    let who = caller(state, &req);
    match (method, target) {
        (Method::PUT, WriteTarget::Doc { rev }) => {
            let body = parse_json(&read_body(state, req).await?)?;
            let has_tarballs = body
                .get("_attachments")
                .and_then(Value::as_object)
                .is_some_and(|a| !a.is_empty());
            if has_tarballs && rev.is_none() {
                publish(state, &who, name, body).await
            } else {
                update(state, &who, name, body, rev).await
            }
        }
        (Method::DELETE, WriteTarget::Doc { rev }) => {
            authorize(state, &who, &name, Action::Unpublish)?;
            require_hosted(state, &name).await?;
            let actor = actor(state, &who, &name)?;
            let store = Arc::clone(state);
            let n = name.clone();
            blocking(move || store.hosted.unpublish_all(&n, rev.as_deref(), &actor)).await?;
            tracing::info!(package = %name, user = who.identity.user(), "unpublished package");
            Ok(ok(StatusCode::OK, format!("unpublished {name}")))
        }
        (Method::DELETE, WriteTarget::Tarball { file, rev }) => {
            authorize(state, &who, &name, Action::Unpublish)?;
            require_hosted(state, &name).await?;
            let actor = actor(state, &who, &name)?;
            let store = Arc::clone(state);
            let n = name.clone();
            let now = pnpr_store::now_ms();
            blocking(move || {
                store
                    .hosted
                    .remove_tarball(&n, &file, rev.as_deref(), &actor, now)
            })
            .await?;
            Ok(ok(StatusCode::OK, "tarball removed"))
        }
        (m, _) => Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("method {m} is not supported here"),
        )),
    }
}

async fn require_hosted(state: &Arc<AppState>, name: &str) -> Result<(), ApiError> {
    if state.hosted.is_hosted(name) || hosted_after_all(state, name).await {
        Ok(())
    } else {
        Err(ApiError::not_found(format!("{name} is not hosted here")))
    }
}

async fn publish(
    state: &Arc<AppState>,
    who: &Caller,
    name: String,
    body: Value,
) -> Result<Response, ApiError> {
    authorize(state, who, &name, Action::Publish)?;
    let actor = actor(state, who, &name)?;
    let publisher = actor.user().to_string();
    if !state.hosted.is_hosted(&name) && !hosted_after_all(state, &name).await {
        guard_new_name(state, who, &name).await?;
    }
    let store = Arc::clone(state);
    let n = name.clone();
    let (versions, fresh) = blocking(move || {
        let fresh = !store.hosted.is_hosted(&n);
        store.hosted.precheck(&n, &actor, Change::Publish)?;
        let prep = pnpr_hosted::doc::prepare_publish(&n, &body)?;
        store.hosted.publish(&prep, &actor, pnpr_store::now_ms())?;
        let versions: Vec<String> = prep.versions.iter().map(|(v, _)| v.clone()).collect();
        Ok((versions, fresh))
    })
    .await?;
    tracing::info!(package = %name, versions = ?versions, user = %publisher, "published");
    let message = if fresh {
        "created new package"
    } else {
        "package updated"
    };
    Ok(ok(StatusCode::CREATED, message))
}

/// First publish of a name (dependency-confusion guard): the publisher must
/// be admitted by every access-bearing uplink of the name's rule, and no
/// uplink of that rule, mirror or access-bearing, may serve the name. The
/// verdicts are `pnpr_hosted::ownership`'s; this only gathers the answers.
async fn guard_new_name(state: &Arc<AppState>, who: &Caller, name: &str) -> Result<(), ApiError> {
    let policy = state.policy();
    let uplinks = policy.proxies(name).to_vec();
    let admissions: Vec<(String, bool)> = uplinks
        .iter()
        .filter(|u| policy.uplink_has_access(u))
        .map(|u| (u.clone(), policy.check_uplink(&who.identity, u).is_ok()))
        .collect();
    pnpr_hosted::ownership::claim_admission(name, &admissions)?;
    let answers = futures_util::future::join_all(
        uplinks
            .iter()
            .map(|u| probe_uplink(state, &policy, u.as_str(), name)),
    )
    .await;
    pnpr_hosted::ownership::claim_verdict(name, &answers)?;
    Ok(())
}

/// Asks one uplink whether it serves `name`, in the namespace its data lives
/// in: the shared mirror for a plain uplink, the uplink's private namespace
/// (with its server-held credential) for an access-bearing one. Both are
/// asked fail-closed (`private`): a 404 is the only "absent"; a denial, an
/// outage or an uplink missing from the running network is unreachable.
async fn probe_uplink(
    state: &Arc<AppState>,
    policy: &pnpr_auth::Policy,
    uplink: &str,
    name: &str,
) -> (String, UplinkAnswer) {
    let source = if policy.uplink_has_access(uplink) {
        // Only asked whether the name exists: no URL of it is served.
        Namespace::uplink(state, state.public_url.as_str(), uplink)
    } else {
        state.uplink(uplink).map(|_| Namespace {
            ns: PUBLIC_NS.to_string(),
            uplinks: vec![uplink.to_string()],
            private: true,
            tarball_base: state.public_url.to_string(),
        })
    };
    let answer = match source {
        None => UplinkAnswer::Unreachable,
        Some(source) => match load_packument(state, &source, name).await {
            Ok(Some(_)) => UplinkAnswer::Serves,
            Ok(None) => UplinkAnswer::Absent,
            Err(e) if e.status == StatusCode::NOT_FOUND => UplinkAnswer::Absent,
            Err(e) => {
                tracing::warn!(uplink, package = name, status = %e.status, "cannot ask an uplink before a first publish");
                UplinkAnswer::Unreachable
            }
        },
    };
    (uplink.to_string(), answer)
}

async fn update(
    state: &Arc<AppState>,
    who: &Caller,
    name: String,
    body: Value,
    rev: Option<String>,
) -> Result<Response, ApiError> {
    if who.identity == Identity::Anonymous {
        return Err(ApiError::unauthorized(format!(
            "authentication required to change {name}"
        )));
    }
    if who.readonly {
        return Err(ApiError::forbidden(
            "this token is read-only and cannot change packages",
        ));
    }
    require_hosted(state, &name).await?;
    let actor = actor(state, who, &name)?;
    let store = Arc::clone(state);
    let n = name.clone();
    let identity = who.identity.clone();
    let outcome = blocking(move || {
        let policy = store.policy();
        let gate = |p: Permission| {
            let action = match p {
                Permission::Unpublish => Action::Unpublish,
                _ => Action::Publish,
            };
            policy
                .check(&identity, &n, action)
                .map_err(|d| HostedError::Denied {
                    permission: p,
                    package: n.clone(),
                    unauthenticated: d == Denial::Unauthenticated,
                })
        };
        let exists = |user: &str| store.auth.users().user_exists(user);
        let gate = UpdateGate {
            actor: &actor,
            permission: &gate,
            user_exists: &exists,
        };
        store
            .hosted
            .update(&n, &body, rev.as_deref(), pnpr_store::now_ms(), &gate)
    })
    .await?;
    let message = match outcome {
        UpdateOutcome::Updated(_) => "package changed",
        UpdateOutcome::Deleted => "package removed",
    };
    tracing::info!(package = %name, user = who.identity.user(), message, "hosted package updated");
    Ok(ok(StatusCode::CREATED, message))
}

/// `/-/package/<name>/dist-tags[/<tag>]`: `npm dist-tag ls/add/rm`.
async fn dist_tags(State(state): State<Arc<AppState>>, req: Request) -> Response {
    match dist_tags_inner(&state, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn dist_tags_inner(state: &Arc<AppState>, req: Request) -> Result<Response, ApiError> {
    let raw = req.uri().path().to_string();
    let rest = raw.strip_prefix("/-/package/").unwrap_or_default();
    let (name, tail) = split_name(rest)?;
    let tag = match tail
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["dist-tags"] => None,
        ["dist-tags", tag] => Some((*tag).to_string()),
        _ => return Err(ApiError::not_found("no such endpoint")),
    };
    let method = req.method().clone();
    let who = caller(state, &req);
    match (method, tag) {
        (Method::GET | Method::HEAD, None) => {
            state
                .policy()
                .check(&who.identity, &name, Action::Access)
                .map_err(|d| ApiError::denied(d, &name))?;
            let doc = if state.hosted.is_hosted(&name) {
                state.hosted.get(&name)?.map(|p| p.doc)
            } else {
                let policy = state.policy();
                // dist-tags only: no tarball URL of this document is served.
                let ns = Namespace::public(state.public_url.as_str(), &policy, &name);
                load_packument(state, &ns, &name).await?
            };
            let doc = doc.ok_or_else(|| ApiError::not_found(&name))?;
            Ok(Json(doc.get("dist-tags").cloned().unwrap_or_else(|| json!({}))).into_response())
        }
        (Method::PUT, Some(tag)) => {
            authorize(state, &who, &name, Action::Publish)?;
            require_hosted(state, &name).await?;
            let actor = actor(state, &who, &name)?;
            let body = read_body(state, req).await?;
            let version = match serde_json::from_slice::<Value>(&body) {
                Ok(Value::String(v)) => v,
                Ok(_) => return Err(ApiError::bad_request("expected a JSON string version")),
                Err(_) => String::from_utf8_lossy(&body).trim().to_string(),
            };
            let store = Arc::clone(state);
            let n = name.clone();
            let message = format!("{name}@{version} tagged {tag}");
            blocking(move || {
                store
                    .hosted
                    .set_tag(&n, &tag, &version, &actor, pnpr_store::now_ms())
            })
            .await?;
            // yarn 1 `tag add` reports failure unless the body has `ok`.
            Ok(ok(StatusCode::CREATED, message))
        }
        (Method::DELETE, Some(tag)) => {
            authorize(state, &who, &name, Action::Publish)?;
            require_hosted(state, &name).await?;
            let actor = actor(state, &who, &name)?;
            let store = Arc::clone(state);
            let n = name.clone();
            let message = format!("tag {tag} removed from {name}");
            blocking(move || {
                store
                    .hosted
                    .remove_tag(&n, &tag, &actor, pnpr_store::now_ms())
            })
            .await?;
            Ok(ok(StatusCode::OK, message))
        }
        (m, _) => Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("method {m} is not supported here"),
        )),
    }
}

/// `GET /-/v1/search?text=&size=&from=`: hosted packages plus packages
/// cached in the shared public mirror, filtered by `packages:` access.
/// Longest wait for a search slot.
const SEARCH_QUEUE: std::time::Duration = std::time::Duration::from_secs(10);

async fn search(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let who = identify(&state, req.headers());
    let mut text = String::new();
    let mut size = None;
    let mut from = None;
    for (k, v) in url::form_urlencoded::parse(req.uri().query().unwrap_or_default().as_bytes()) {
        match k.as_ref() {
            "text" => text = v.into_owned(),
            "size" => size = Some(v.into_owned()),
            "from" => from = Some(v.into_owned()),
            _ => {}
        }
    }
    let query = SearchQuery::new(&text, size.as_deref(), from.as_deref());
    // Searches scan stored documents: a few at a time, the rest wait briefly.
    let Ok(Ok(_permit)) =
        tokio::time::timeout(SEARCH_QUEUE, Arc::clone(&state.searches).acquire_owned()).await
    else {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many searches; try again",
        )
        .with_retry_after(SEARCH_QUEUE.as_secs())
        .into_response();
    };
    let st = Arc::clone(&state);
    let result = blocking(move || {
        let hosted = st.hosted.all()?;
        let cached = pnpr_hosted::search::cached_public(st.mirror.db.as_ref(), &query.text)?;
        let policy = st.policy();
        let allowed = |name: &str| policy.check(&who, name, Action::Access).is_ok();
        Ok(pnpr_hosted::search::run(
            &query,
            &hosted,
            &cached,
            &allowed,
            pnpr_store::now_ms(),
        ))
    })
    .await;
    match result {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests;
