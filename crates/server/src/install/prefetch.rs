//! Stage 3, overlapped with stage 6: tarballs fetched, verified and
//! unpacked (and their package members encoded) while the tree is still
//! being resolved, as soon as the resolver picks each version (RFC 0008).
//!
//! Invariants guarded here:
//! - prefetching only warms the server's own stores through the very path
//!   the fetch stage uses ([`super::fetch::unpack_one`]: the session's
//!   origin and namespace, integrity-verified flights); it serves nothing,
//!   so every served byte still passes `authorize` and `plan` afterwards;
//! - it never fetches with a caller's forwarded credential (forwarded
//!   scopes are not prefetched) and skips packages for another platform and
//!   packages the client reported having;
//! - a prefetch failure is only logged: the fetch stage repeats the work
//!   and reports the failure with the status it deserves;
//! - at most [`super::fetch::CONCURRENCY`] prefetches run at once, and the
//!   queue holds claims (names and integrities), never bytes.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use futures_util::future::{self, BoxFuture, Either};
use futures_util::StreamExt;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::catalog::{PackageClaim, Scope, Session};
use crate::state::AppState;

/// The session as the resolver's metadata source, queueing every picked
/// version's tarball for the prefetcher.
pub(super) struct Prefetching<'a> {
    state: &'a AppState,
    session: &'a Session,
    req: &'a pnpr_protocol::InstallRequest,
    client_has: HashSet<&'a str>,
    tx: mpsc::UnboundedSender<PackageClaim>,
}

impl pnpr_resolver::MetadataSource for Prefetching<'_> {
    fn packument<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Arc<Value>, pnpr_resolver::ResolveError>> {
        pnpr_resolver::MetadataSource::packument(self.session, name)
    }

    fn prefetch<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Option<Arc<Value>>> {
        pnpr_resolver::MetadataSource::prefetch(self.session, name)
    }

    fn picked(&self, name: &str, version: &str, manifest: &Value) {
        let Some(integrity) = manifest
            .get("dist")
            .and_then(|d| d.get("integrity"))
            .and_then(Value::as_str)
        else {
            return;
        };
        if self.client_has.contains(integrity)
            || !super::select::manifest_platform_ok(
                manifest,
                self.req.os.as_deref(),
                self.req.arch.as_deref(),
                None,
            )
            || self.state.accelerator.files.has_index(integrity)
        {
            return;
        }
        let _ = self.tx.send(PackageClaim {
            name: name.to_string(),
            version: version.to_string(),
            integrity: integrity.to_string(),
        });
    }
}

/// Resolves with `session` as the metadata source while fetching every
/// picked package's tarball; returns when resolution is done and, if it
/// succeeded, every prefetch has finished (so the fetch stage finds them
/// unpacked). A failed resolution drops the prefetches still running.
pub(super) async fn resolve_while_fetching(
    state: &Arc<AppState>,
    session: &Session,
    req: &pnpr_protocol::InstallRequest,
    projects: &[pnpr_resolver::ProjectInput],
    opts: &pnpr_resolver::ResolveOptions,
) -> Result<pnpr_resolver::Resolution, pnpr_resolver::ResolveError> {
    // Only `/v1/install` serves files (v0 clients fetch their own tarballs).
    let serves_files = req.generation == pnpr_protocol::Generation::V1Install && !req.lockfile_only;
    if !serves_files || matches!(session.scope(), Scope::Forwarded(_)) {
        return pnpr_resolver::resolve(projects, session, opts).await;
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let source = Prefetching {
        state,
        session,
        req,
        client_has: req.store_integrities.iter().map(String::as_str).collect(),
        tx,
    };
    let started = std::time::Instant::now();
    let done = AtomicUsize::new(0);
    let resolving = Box::pin(async move {
        let r = pnpr_resolver::resolve(projects, &source, opts).await;
        drop(source); // closes the queue: the prefetcher ends after it
        r
    });
    let prefetching = Box::pin(drain(state, session, rx, &done));
    // Bound first: the select's output borrows `done`.
    let resolved = match future::select(resolving, prefetching).await {
        Either::Left((resolved, rest)) => {
            // The cold path's profile (RFC 0008 §6): how long the
            // prefetches outlive the resolution.
            let resolved_ms = started.elapsed().as_millis() as u64;
            let done_then = done.load(Ordering::Relaxed);
            if resolved.is_ok() {
                rest.await;
            }
            tracing::info!(
                resolved_ms,
                prefetched_by_then = done_then,
                prefetched = done.load(Ordering::Relaxed),
                waited_ms = (started.elapsed().as_millis() as u64).saturating_sub(resolved_ms),
                "install prefetch"
            );
            resolved
        }
        Either::Right(((), resolving)) => resolving.await,
    };
    resolved
}

/// Runs the queued prefetches, at most `CONCURRENCY` at once, until the
/// queue is closed and empty.
async fn drain(
    state: &Arc<AppState>,
    session: &Session,
    rx: mpsc::UnboundedReceiver<PackageClaim>,
    done: &AtomicUsize,
) {
    let claims =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) });
    claims
        .for_each_concurrent(super::fetch::CONCURRENCY, |claim| async move {
            if let Err(e) = super::fetch::unpack_one(state, session, &claim).await {
                tracing::debug!(package = %claim.name, version = %claim.version,
                    error = %e.message, "prefetch failed; the fetch stage retries");
            }
            done.fetch_add(1, Ordering::Relaxed);
        })
        .await;
}
