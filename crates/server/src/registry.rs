//! Read API of the registry over HTTP: packuments, version documents and
//! tarballs, through `/` (hosted packages and the shared public mirror) and
//! `/~<uplink>/` (one uplink's private namespace). A thin adapter: who may
//! read what and where it comes from is the catalog's decision, fetching and
//! caching is the mirror's.
//!
//! Invariants guarded here:
//! - `/` only consults uplinks without `access:` (the catalog's registry
//!   session never routes `/` to an access-bearing uplink);
//! - `/~<uplink>/` responses are marked `Cache-Control: private, no-store`
//!   + `Vary: Authorization`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::{FutureExt, StreamExt};
use pnpr_packument::{RegistryPath, RegistryTarget};
use pnpr_store::{now_ms, TarballBody};

use crate::catalog::{Origin, Scope, Session};
use crate::error::ApiError;
use crate::mirror::{load_for_render, load_packument, tarball_body, Loaded, Namespace, Retain};
use crate::public_base::PublicBase;
use crate::rendered::{
    json_with_etag, mark_private, open_file_response, tarball_file_response, wants_abbreviated,
    Rendered, ABBREVIATED,
};
use crate::state::AppState;
use crate::users::identify;

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
    let scope = match &parsed.uplink {
        Some(u) => Scope::Uplink(u.clone()),
        None => Scope::Public,
    };
    let base = PublicBase::of(state, req.extensions());
    let session = Session::for_registry(state, identify(state, &headers), scope, base)?;
    session.check_read(&parsed.name)?;
    let mut resp = match session.origin(&parsed.name) {
        // Name ownership: a hosted name is answered from the hosted store
        // and never falls through to an uplink.
        Origin::Hosted => {
            crate::hosted::serve_read(state, &parsed, session.who(), session.base(), &headers)
                .await
                .unwrap_or_else(|| Err(ApiError::not_found(&parsed.name)))?
        }
        _ => mirrored_or_just_hosted(state, &session, &parsed, &headers).await?,
    };
    if method == Method::HEAD {
        let (parts, _) = resp.into_parts();
        resp = Response::from_parts(parts, Body::empty());
    }
    Ok(resp)
}

/// The mirror's answer, unless it has nothing and the name was published
/// on another node an instant ago: then it is served from the hosted store
/// already, not only once the change notice lands.
async fn mirrored_or_just_hosted(
    state: &Arc<AppState>,
    session: &Session,
    parsed: &RegistryPath,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let mirrored = serve_mirrored(state, &session.namespace(&parsed.name)?, parsed, headers).await;
    match mirrored {
        Err(e)
            if e.status == StatusCode::NOT_FOUND
                && parsed.uplink.is_none()
                && crate::hosted::hosted_after_all(state, &parsed.name).await =>
        {
            crate::hosted::serve_read(state, parsed, session.who(), session.base(), headers)
                .await
                .unwrap_or_else(|| Err(ApiError::not_found(&parsed.name)))
        }
        other => other,
    }
}

/// A packument, version document or tarball from the mirror.
async fn serve_mirrored(
    state: &Arc<AppState>,
    source: &Namespace,
    parsed: &RegistryPath,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let mut resp = match &parsed.target {
        RegistryTarget::Packument => serve_packument(state, source, parsed, headers).await?,
        RegistryTarget::Version(spec) => {
            if source.private {
                return Err(ApiError::not_found(
                    "version documents are not served on uplink endpoints",
                ));
            }
            serve_version(state, source, parsed, spec, headers).await?
        }
        RegistryTarget::Tarball(file) => serve_tarball(state, source, parsed, file).await?,
    };
    if source.private {
        mark_private(&mut resp);
    }
    Ok(resp)
}

async fn serve_packument(
    state: &Arc<AppState>,
    source: &Namespace,
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
    let hit = state.mirror.rendered.get_fresh(&key, now);
    let rendered = match hit {
        Some(r) => r,
        None => {
            // Concurrent misses of one document render it once, together.
            let (st, src, name, k) = (
                Arc::clone(state),
                source.clone(),
                parsed.name.clone(),
                key.clone(),
            );
            let work = move || {
                async move {
                    render(&st, &src, &name, abbreviated, k)
                        .await
                        .map_err(Arc::new)
                }
                .boxed()
            };
            let lost = || Err(Arc::new(ApiError::internal("rendering", "task ended")));
            state
                .mirror
                .render_flights
                .join(key, work, lost)
                .await
                .map_err(|e| ApiError {
                    status: e.status,
                    message: e.message.clone(),
                    retry_after: e.retry_after,
                })?
        }
    };
    Ok(rendered.respond(headers))
}

/// Loads, rewrites, abbreviates and serialises one packument, and keeps the
/// bytes while the metadata they came from is fresh.
async fn render(
    state: &Arc<AppState>,
    source: &Namespace,
    name: &str,
    abbreviated: bool,
    key: String,
) -> Result<Arc<Rendered>, ApiError> {
    let (loaded, fresh_until) = load_for_render(state, source, name).await?;
    let mut doc = match loaded.ok_or_else(|| ApiError::not_found(name))? {
        Loaded::Doc(doc) => doc,
        // Too large to hold: rendered from its body file to disk, shared
        // by the waiters of this render flight, never cached in memory.
        Loaded::File(file) => {
            let dir = state.mirror.render_dir.clone();
            let names = (source.tarball_base.clone(), name.to_string());
            let r = Rendered::from_body_file(file, dir, names, abbreviated, fresh_until).await?;
            return Ok(Arc::new(r));
        }
    };
    pnpr_packument::rewrite_tarballs(&mut doc, &source.tarball_base);
    let (body, ctype) = if abbreviated {
        (pnpr_packument::abbreviate(&doc), ABBREVIATED)
    } else {
        (doc, "application/json")
    };
    let r = Arc::new(Rendered::new(&body, ctype, fresh_until)?);
    if r.fresh_at(now_ms()) {
        state.mirror.rendered.put(key, Arc::clone(&r));
    }
    Ok(r)
}

async fn serve_version(
    state: &Arc<AppState>,
    source: &Namespace,
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

async fn serve_tarball(
    state: &Arc<AppState>,
    source: &Namespace,
    parsed: &RegistryPath,
    file: &str,
) -> Result<Response, ApiError> {
    let doc = load_packument(state, source, &parsed.name)
        .await?
        .ok_or_else(|| ApiError::not_found(&parsed.name))?;
    let (_, version) = pnpr_packument::find_by_file(&doc, file)
        .ok_or_else(|| ApiError::not_found(format!("{}/-/{file}", parsed.name)))?;
    let (body, uplink) = tarball_body(state, source, file, version, Retain::Always).await?;
    if let TarballBody::Stored(stored) = &body {
        match tokio::fs::File::open(&stored.path).await {
            Ok(opened) => return Ok(open_file_response(opened, stored.len)),
            // Evicted between the lookup and the open: fetched again.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let (body, uplink) =
                    tarball_body(state, source, file, version, Retain::Always).await?;
                return tarball_response(body, &uplink).await;
            }
            Err(e) => return Err(ApiError::internal("cannot open cached tarball", e)),
        }
    }
    tarball_response(body, &uplink).await
}

async fn tarball_response(body: TarballBody, uplink: &str) -> Result<Response, ApiError> {
    match body {
        TarballBody::Stored(stored) => {
            tarball_file_response(&stored.path, stored.len, "cannot open cached tarball").await
        }
        TarballBody::Streaming(mut stream) => {
            // Wait for the first bytes so an upstream failure or a small
            // tarball's integrity mismatch becomes a proper error status.
            let first = match stream.next().await {
                Some(Ok(chunk)) => Some(chunk),
                Some(Err(e)) => return Err(ApiError::tarball_failure(uplink, &e)),
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
