//! Early `package` frames for pnpm 12 on a fresh v0 resolution without an
//! input lockfile: pnpm 12 starts each tarball GET as soon as its frame
//! arrives (it does not wait for `done`; pnpm 11 reads the whole body
//! first), so versions are framed as the resolver picks them and the
//! client's downloads overlap the rest of the resolution.
//!
//! Invariants guarded here:
//! - an early frame names only a `(name, version, integrity)` that
//!   [`Session::authorize`] confirmed for this caller in this request, and a
//!   tarball URL on pnpr's own routes under the registry the request named
//!   for the package (`v0::derived_tarball_url`), exactly as after the
//!   resolution; a claim the catalog refuses is simply not framed early;
//! - the status is decided before the first frame: a request naming a root
//!   dependency this caller may not read gets no early frames at all, and a
//!   resolution that ends (resolved, cached, violations or failed) before
//!   any version is picked is answered exactly as without early frames;
//!   after a frame, a failure (e.g. a refused transitive dependency) ends the
//!   body with an `error` frame (the `200` is sent);
//! - every package of the final tree is framed: after the resolution, each
//!   servable package not yet framed with the same URL is framed (authorized
//!   batch by batch, as `v0::frames` does), then `done`. A version picked but
//!   left out of the final tree costs the client one unneeded download
//!   (pnpm 12.21.0 fetches it into its store and writes the same lockfile);
//! - the resolution runs in its own task, aborted when the request is dropped
//!   or its body producer ends, so it never outlives the in-flight permit;
//!   the early queue and the set of framed ids hold claims, bounded by the
//!   tree the resolver builds.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::response::Response;
use futures_util::StreamExt;
use pnpr_protocol::ndjson;
use pnpr_protocol::AppliedPolicies;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit};

use super::v0::{self, Sink};
use super::{resolve, select};
use crate::catalog::{PackageClaim, Session};
use crate::error::ApiError;
use crate::state::AppState;

/// Catalog checks of early claims run at once.
const CONCURRENCY: usize = 16;

type Outcome = oneshot::Receiver<Result<resolve::Outcome, ApiError>>;

/// Aborts the resolution task when dropped (request gone, body ended).
struct Resolution(tokio::task::JoinHandle<()>);

impl Drop for Resolution {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What the body producer works from once the first frame is due.
struct Streaming {
    state: Arc<AppState>,
    session: Arc<Session>,
    req: Arc<pnpr_protocol::InstallRequest>,
    applied: AppliedPolicies,
    early: mpsc::UnboundedReceiver<PackageClaim>,
    outcome: Outcome,
    _resolution: Resolution,
}

/// Whether this caller may read every root dependency the request names.
/// A refused root fails the resolution at its first read; such a request is
/// answered without early frames, so the refusal keeps its status (`403`/
/// `404` before any frame) instead of racing the first pick.
pub(super) fn roots_readable(session: &Session, req: &pnpr_protocol::InstallRequest) -> bool {
    select::project_inputs(req).iter().all(|p| {
        p.dependencies
            .iter()
            .chain(&p.dev_dependencies)
            .chain(&p.optional_dependencies)
            .all(|(alias, spec)| session.check_read(registry_name(alias, spec)).is_ok())
    })
}

/// The registry name a root dependency reads: the target of an `npm:`
/// alias, else the key itself (a `workspace:`/`file:` spec reads nothing,
/// and checking its key only costs early frames when it is refused).
fn registry_name<'a>(alias: &'a str, spec: &'a str) -> &'a str {
    let Some(target) = spec.strip_prefix("npm:") else {
        return alias;
    };
    match target.rfind('@') {
        Some(at) if at > 0 => &target[..at],
        _ => target,
    }
}

/// `POST /-/pnpr/v0/resolve` for pnpm 12: the resolution in its own task,
/// answered as usual if it ends before picking anything, else streamed.
pub(super) async fn resolve(
    state: Arc<AppState>,
    session: Arc<Session>,
    req: pnpr_protocol::InstallRequest,
    applied: AppliedPolicies,
    permit: OwnedSemaphorePermit,
) -> Result<Response, ApiError> {
    let req = Arc::new(req);
    let (early_tx, mut early) = mpsc::unbounded_channel();
    let (outcome_tx, mut outcome) = oneshot::channel();
    let task = {
        let (state, session, req) = (Arc::clone(&state), Arc::clone(&session), Arc::clone(&req));
        tokio::spawn(tracing::Instrument::instrument(
            async move {
                let r = resolve::resolve_or_cached_with(&state, &session, &req, Some(early_tx));
                let _ = outcome_tx.send(r.await);
            },
            tracing::Span::current(),
        ))
    };
    let resolution = Resolution(task);
    let first = tokio::select! {
        biased;
        r = &mut outcome => {
            let outcome = r.map_err(|_| ApiError::internal("resolve", "resolution task ended"))??;
            return Ok(v0::answer(state, session, &req, outcome, applied, permit));
        }
        first = early.recv() => first,
    };
    let Some(first) = first else {
        // Every sender is gone: the resolution is over, and its outcome due.
        let r = outcome.await;
        let outcome = r.map_err(|_| ApiError::internal("resolve", "resolution task ended"))??;
        return Ok(v0::answer(state, session, &req, outcome, applied, permit));
    };
    let streaming = Streaming {
        state,
        session,
        req,
        applied,
        early,
        outcome,
        _resolution: resolution,
    };
    Ok(stream(streaming, first, permit))
}

fn stream(streaming: Streaming, first: PackageClaim, permit: OwnedSemaphorePermit) -> Response {
    let (tx, rx) = mpsc::channel(v0::CHANNEL_FRAMES);
    let span = tracing::Span::current();
    tokio::spawn(tracing::Instrument::instrument(
        async move {
            // The in-flight slot is held until the last frame is queued.
            let _permit = permit;
            if let Some(last) = produce(streaming, first, &tx).await {
                let _ = tx.send(Ok(Bytes::from(last))).await;
            }
        },
        span,
    ));
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let mut resp = v0::ndjson_response(Body::from_stream(body), Some(false));
    resp.headers_mut().insert(
        "x-pnpr-early-frames",
        axum::http::HeaderValue::from_static("1"),
    );
    resp
}

/// Early frames until the resolution ends, then the rest and the terminal
/// frame (returned); `None` when the client went away.
async fn produce(mut s: Streaming, first: PackageClaim, tx: &Sink) -> Option<Vec<u8>> {
    let mut framed: HashMap<String, String> = HashMap::new();
    let mut batch = vec![first];
    let outcome = loop {
        frame_early(&s, std::mem::take(&mut batch), &mut framed, tx).await?;
        tokio::select! {
            biased;
            r = &mut s.outcome => break r,
            next = s.early.recv() => match next {
                Some(c) => batch = take_batch(c, &mut s.early),
                None => break (&mut s.outcome).await,
            },
            () = tx.closed() => return None,
        }
    };
    Some(match outcome {
        Ok(Ok(resolve::Outcome::Resolved(resolved))) => {
            v0::log_resolved(&s.session, &resolved);
            let rest: Vec<PackageClaim> = select::servable(&resolved, &s.req)
                .serve
                .into_iter()
                .filter(|p| {
                    let url = v0::tarball_url(&s.session, &resolved.tree.lockfile, p);
                    url.is_none() || framed.get(&id(p)) != url.as_ref()
                })
                .collect();
            match v0::frames(&s.state, &s.session, &resolved, &rest, tx).await {
                Ok(()) => v0::done(&resolved, &s.applied),
                Err(e) => ndjson::error_frame(&e.message),
            }
        }
        Ok(Ok(resolve::Outcome::Violations(v))) => ndjson::violations_frame(&v)
            .unwrap_or_else(|_| ndjson::error_frame("the violations could not be encoded")),
        Ok(Err(e)) => ndjson::error_frame(&e.message),
        Err(_) => ndjson::error_frame("the resolution ended unexpectedly"),
    })
}

/// `first` and whatever else is queued already, up to one batch.
fn take_batch(
    first: PackageClaim,
    early: &mut mpsc::UnboundedReceiver<PackageClaim>,
) -> Vec<PackageClaim> {
    let mut batch = vec![first];
    while batch.len() < v0::BATCH {
        match early.try_recv() {
            Ok(c) => batch.push(c),
            Err(_) => break,
        }
    }
    batch
}

/// Frames every claim of `batch` the catalog confirms for this caller;
/// `None` when the client went away.
async fn frame_early(
    s: &Streaming,
    batch: Vec<PackageClaim>,
    framed: &mut HashMap<String, String>,
    tx: &Sink,
) -> Option<()> {
    let batch: Vec<PackageClaim> = batch
        .into_iter()
        .filter(|p| !framed.contains_key(&id(p)))
        .collect();
    let mut checks = Vec::with_capacity(batch.len());
    for p in &batch {
        checks.push(async move { (p, s.session.authorize(p).await) });
    }
    let checked: Vec<_> = futures_util::stream::iter(checks)
        .buffered(CONCURRENCY)
        .collect()
        .await;
    for (p, verdict) in checked {
        if let Err(e) = verdict {
            tracing::debug!(package = %p.name, version = %p.version, error = %e.message,
                "not framed early");
            continue;
        }
        let Some(url) = v0::derived_tarball_url(&s.session, p) else {
            continue;
        };
        let Ok(frame) = v0::package_frame(p, url.clone()) else {
            continue;
        };
        tx.send(Ok(Bytes::from(frame))).await.ok()?;
        framed.insert(id(p), url);
    }
    Some(())
}

fn id(p: &PackageClaim) -> String {
    format!("{}@{}", p.name, p.version)
}
