//! Resolve protocol v0 on a cold server: every picked version's tarball is
//! fetched into the mirror CAS while the tree is still being resolved, so
//! the client's own tarball GETs (which follow the `package` frames) find it
//! stored or join its fetch in flight instead of each starting a miss.
//!
//! Invariants guarded here:
//! - a prefetch is exactly the fetch a later `/` or `/~<uplink>/` GET of that
//!   tarball would start: [`tarball_body`] with [`Retain::Always`] in the
//!   namespace the caller's session routes the package to, through the
//!   version's own uplink with the server's uplink credential. Its flight key
//!   is the GET's, so a GET arriving mid-fetch joins it (single flight);
//! - it serves nothing and sends no frame: what reaches the client is still
//!   decided by `authorize` and the routes that check access again, and a
//!   package is only picked after the session was allowed to read its
//!   packument, so nothing is fetched into a namespace the caller may not read;
//! - never with a caller's credential: forwarded scopes and hosted packages
//!   are not prefetched, nor packages for another platform than the resolution's, nor uplinks with
//!   `cache: false` (their bytes would be fetched and dropped);
//! - bounded: at most [`PER_REQUEST`] prefetches of one resolution and
//!   [`SERVER_WIDE`] of the whole process run at once, and the queue holds
//!   small claims (namespace, file, integrity), never bytes;
//! - the response never waits for a prefetch, and a failed one is only
//!   logged (the client's GET repeats the fetch and reports the failure). The
//!   prefetcher is a task detached once the resolution succeeded (aborted if
//!   it fails or is dropped) that ends once its queue is drained; at shutdown
//!   the runtime drops it, and an unfinished CAS write is removed by its
//!   writer, never published.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use pnpr_store::TarballBody;
use serde_json::Value;
use tokio::sync::{mpsc, Semaphore};

use crate::catalog::{Origin, PackageClaim, Scope, Session};
use crate::mirror::{tarball_body, Namespace, Retain};
use crate::state::AppState;

/// Prefetches of one resolution running at once (the client's own tarball
/// GETs run next to them).
pub(super) const PER_REQUEST: usize = 16;
/// Prefetches of every resolution in the process running at once, so many
/// concurrent cold installs cannot open an unbounded number of fetches.
pub(super) const SERVER_WIDE: usize = 64;

static SLOTS: Semaphore = Semaphore::const_new(SERVER_WIDE);

/// One tarball to warm: where it is cached and what the fetch needs of its
/// version document (integrity, uplink, upstream URL), nothing more.
struct Claim {
    ns: Namespace,
    file: String,
    label: String,
    version: Value,
}

/// Where picked versions are reported for early `package` frames (the
/// claims are not authorized yet: the receiver authorizes each one).
pub(super) type Early = mpsc::UnboundedSender<PackageClaim>;

/// The session as the resolver's metadata source, queueing every picked
/// version's tarball for the detached prefetcher (and, when asked, its
/// claim for an early frame).
struct Prefetching<'a> {
    state: &'a AppState,
    session: &'a Session,
    opts: &'a pnpr_resolver::ResolveOptions,
    tx: mpsc::UnboundedSender<Claim>,
    early: Option<Early>,
    /// The stored documents behind the resolver's views (which lose the
    /// uplink and upstream URL): the session's own memoized `Arc`s.
    docs: Mutex<HashMap<String, Arc<Value>>>,
}

impl pnpr_resolver::MetadataSource for Prefetching<'_> {
    fn packument<'a>(
        &'a self,
        name: &'a str,
    ) -> futures_util::future::BoxFuture<'a, Result<Arc<Value>, pnpr_resolver::ResolveError>> {
        Box::pin(async move {
            // The view below reads the session's memo this fills.
            if let Ok(doc) = self.session.packument(name).await {
                self.docs_lock().insert(name.to_string(), doc);
            }
            pnpr_resolver::MetadataSource::packument(self.session, name).await
        })
    }

    fn prefetch<'a>(
        &'a self,
        name: &'a str,
    ) -> futures_util::future::BoxFuture<'a, Option<Arc<Value>>> {
        pnpr_resolver::MetadataSource::prefetch(self.session, name)
    }

    fn picked(&self, name: &str, version: &str, manifest: &Value) {
        if !super::select::manifest_platform_ok(
            manifest,
            Some(&self.opts.os),
            Some(&self.opts.cpu),
            self.opts.libc.as_deref(),
        ) {
            return;
        }
        if let Some(early) = &self.early {
            if let Some(claim) = early_claim(name, version, manifest) {
                let _ = early.send(claim);
            }
        }
        if let Some(claim) = self.claim(name, version) {
            let _ = self.tx.send(claim);
        }
    }
}

/// A picked version as an early frame's claim: only one with an integrity
/// and pnpm's default tarball file name, whose URL the final lockfile will
/// not spell differently (any other is framed after the resolution).
fn early_claim(name: &str, version: &str, manifest: &Value) -> Option<PackageClaim> {
    let dist = manifest.get("dist")?;
    let integrity = dist.get("integrity").and_then(Value::as_str)?;
    let file = dist
        .get("tarball")
        .and_then(Value::as_str)
        .and_then(pnpr_packument::tarball_file_name)?;
    (file == pnpr_packument::default_file_name(name, version)).then(|| PackageClaim {
        name: name.to_string(),
        version: version.to_string(),
        integrity: integrity.to_string(),
    })
}

impl Prefetching<'_> {
    fn docs_lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Value>>> {
        self.docs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What to prefetch for a picked version, if anything: read from the
    /// stored document, as a GET of the tarball would.
    fn claim(&self, name: &str, version: &str) -> Option<Claim> {
        if !matches!(
            self.session.origin(name),
            Origin::Mirror | Origin::Uplink(_)
        ) {
            return None;
        }
        let doc = self.docs_lock().get(name).cloned()?;
        let manifest = doc.get("versions")?.get(version)?;
        let uplink = manifest
            .get(pnpr_packument::UPLINK_FIELD)
            .and_then(Value::as_str)?;
        if !self.state.uplink(uplink).is_some_and(|u| u.config.cache) {
            return None;
        }
        let dist = manifest.get("dist")?;
        let file = dist
            .get("tarball")
            .and_then(Value::as_str)
            .and_then(pnpr_packument::tarball_file_name)
            .map(str::to_string)
            .unwrap_or_else(|| pnpr_packument::default_file_name(name, version));
        let ns = self.session.namespace(name).ok()?;
        Some(Claim {
            ns,
            file,
            label: format!("{name}@{version}"),
            version: serde_json::json!({
                "dist": dist,
                pnpr_packument::UPLINK_FIELD: uplink,
            }),
        })
    }
}

/// Resolves with `session` as the metadata source; every picked version's
/// tarball is queued for a detached prefetcher that keeps running after the
/// resolution returns (the response does not wait for it), and reported on
/// `early` when given.
pub(super) async fn resolve_while_prefetching(
    state: &Arc<AppState>,
    session: &Session,
    projects: &[pnpr_resolver::ProjectInput],
    opts: &pnpr_resolver::ResolveOptions,
    early: Option<Early>,
) -> Result<pnpr_resolver::Resolution, pnpr_resolver::ResolveError> {
    if matches!(session.scope(), Scope::Forwarded(_)) {
        // v0 refuses forwarded registries; never prefetch with a caller's
        // credential should that change.
        return pnpr_resolver::resolve(projects, session, opts).await;
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let mut prefetcher = Prefetcher(Some(tokio::spawn(tracing::Instrument::instrument(
        drain(Arc::clone(state), rx),
        tracing::Span::current(),
    ))));
    let source = Prefetching {
        state,
        session,
        opts,
        tx,
        early,
        docs: Mutex::new(HashMap::new()),
    };
    let resolved = pnpr_resolver::resolve(projects, &source, opts).await;
    // Dropping `source` closes the queue: the prefetcher ends once it has
    // worked through what is left, detached from this request.
    drop(source);
    if resolved.is_ok() {
        prefetcher.detach();
    }
    resolved
}

/// The prefetcher of one resolution: aborted when the resolution fails or
/// is dropped (its picks are then nobody's), detached once it succeeded.
struct Prefetcher(Option<tokio::task::JoinHandle<()>>);

impl Prefetcher {
    fn detach(&mut self) {
        self.0 = None;
    }
}

impl Drop for Prefetcher {
    fn drop(&mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
        }
    }
}

/// Runs the queued prefetches, [`PER_REQUEST`] at once and each under a
/// server-wide slot, until the queue is closed and empty.
async fn drain(state: Arc<AppState>, rx: mpsc::UnboundedReceiver<Claim>) {
    let claims =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) });
    let state = &state;
    claims
        .for_each_concurrent(PER_REQUEST, |claim| async move {
            let Ok(_slot) = SLOTS.acquire().await else {
                return;
            };
            if let Err(e) = warm(state, &claim).await {
                tracing::debug!(package = %claim.label, error = %e,
                    "v0 prefetch failed; the client's GET fetches again");
            }
        })
        .await;
}

/// Fetches one tarball into the CAS (a stored one is left alone) and waits
/// for the fetch to finish, so the slot is held exactly as long as it runs.
async fn warm(state: &Arc<AppState>, claim: &Claim) -> Result<(), String> {
    let (body, _) = tarball_body(
        state,
        &claim.ns,
        &claim.file,
        &claim.version,
        Retain::Always,
    )
    .await
    .map_err(|e| e.message)?;
    if let TarballBody::Streaming(mut stream) = body {
        // The flight writes the CAS on its own; tailing it only tells when
        // it is done (and whether it verified).
        while let Some(chunk) = stream.next().await {
            chunk.map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}
