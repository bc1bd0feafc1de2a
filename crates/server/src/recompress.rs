//! The idle-time recompression pass (RFC 0010 §4b, issue 13): while no
//! client request is being served, re-encodes the file store's package
//! members one at a time, largest first, at
//! `installAccelerator.recompress.level` (libdeflate 12 by default), so a
//! later cold `/v1/install` body is smaller (large corpus: 1.070x → 1.042x
//! the tarballs; the rest is partial groups cut per response). The CPU
//! (7.5–18x the cold path's encoder) is spent once per member and never
//! while a client waits.
//!
//! Invariants guarded here:
//! - it changes stored bytes only, never what a client may read: members
//!   keep their key and frames ([`pnpr_cafs::FileStore::recompress`]
//!   verifies both before an atomic replace), and no access rule, grant or
//!   index row is touched;
//! - it never competes with clients: a member is started only after
//!   [`IDLE_GRACE`] without any request other than health, metrics and
//!   status probes in flight (a response counts until its body is sent),
//!   and only one member is re-encoded at a time, on one blocking thread;
//! - one process per cache: it runs only in the server holding
//!   `<cache>/pnpr.lock`, and stops at shutdown (the member being encoded
//!   then finishes or is dropped; either way the stored member is whole).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http_body_util::BodyExt;
use metrics::{counter, gauge};
use pnpr_cafs::Recompressed;

use crate::activity::Activity;
use crate::state::AppState;

/// How long no client request may have been in flight before a member is
/// started: the requests of one install, and a CI job's next install after
/// the client starts up, usually follow within this, and one member can
/// hold a core for seconds once started (libdeflate cannot be interrupted).
const IDLE_GRACE: Duration = Duration::from_secs(5);
/// How often idleness and new packages are checked.
const POLL: Duration = Duration::from_millis(500);
/// A full rescan at least this often, even when the package count did not
/// change (a member evicted and made again at the cold-path level).
const RESCAN_EVERY: Duration = Duration::from_secs(600);

/// Middleware: every request but health, metrics and status probes counts
/// as client activity until its response body is sent or dropped (an
/// install's body is most of its work). The body keeps its size hint.
pub(crate) async fn track(
    State(state): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Response {
    let class = crate::metrics::route_class(req.method(), req.uri().path());
    if matches!(class, "health" | "metrics" | "status") {
        return next.run(req).await;
    }
    let busy = state.activity.enter();
    let resp = next.run(req).await;
    let (parts, body) = resp.into_parts();
    let body = body.map_err(move |e| {
        let _held = &busy;
        e
    });
    Response::from_parts(parts, Body::new(body))
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, Unit};
    describe_counter!(
        "pnpr_recompress_members_total",
        "Stored members the idle-time pass re-encoded, by outcome (replaced, kept, failed)"
    );
    describe_counter!(
        "pnpr_recompress_bytes_before_total",
        Unit::Bytes,
        "Stored bytes of the members the pass replaced, before"
    );
    describe_counter!(
        "pnpr_recompress_bytes_after_total",
        Unit::Bytes,
        "Stored bytes of the members the pass replaced, after"
    );
    describe_gauge!(
        "pnpr_recompress_pending",
        "Members the idle-time pass has still to re-encode"
    );
}

/// Waits until no client request has been in flight for [`IDLE_GRACE`];
/// `false` when the server is stopping.
async fn wait_idle(activity: &Activity) -> bool {
    loop {
        if activity.stopped() {
            return false;
        }
        if activity.idle_for().is_some_and(|d| d >= IDLE_GRACE) {
            return true;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Runs until the server stops (see the module docs).
pub(crate) async fn run(state: Arc<AppState>) {
    let _ = run_until_stopped(state).await;
}

/// A file-store read on a blocking thread: `None` (after a warning and a
/// pause of [`RESCAN_EVERY`]) when the store failed, so the caller tries
/// again later; `Err(Stopped)` when the runtime is shutting down.
async fn read_store<T: Send + 'static>(
    state: &Arc<AppState>,
    what: &'static str,
    read: impl FnOnce(&pnpr_cafs::FileStore) -> Result<T, pnpr_cafs::CafsError> + Send + 'static,
) -> Result<Option<T>, Stopped> {
    let st = Arc::clone(state);
    match tokio::task::spawn_blocking(move || read(&st.accelerator.files)).await {
        Ok(Ok(v)) => Ok(Some(v)),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "recompress: cannot {what}");
            tokio::time::sleep(RESCAN_EVERY).await;
            Ok(None)
        }
        Err(_) => Err(Stopped),
    }
}

/// The server is stopping.
struct Stopped;

async fn run_until_stopped(state: Arc<AppState>) -> Result<(), Stopped> {
    let config = state.config.install_accelerator.recompress;
    if !config.enabled {
        tracing::info!("member recompression is off (installAccelerator.recompress)");
        return Ok(());
    }
    if !state.owns_cache() {
        tracing::info!("another process holds this cache: it recompresses members, not this one");
        return Ok(());
    }
    describe();
    let level = config.level;
    // Members refused (damaged, or beyond the cap) are not retried until
    // restart; the pass logs them once.
    let mut failed: HashSet<String> = HashSet::new();
    let mut scanned: Option<(u64, Instant)> = None;
    loop {
        if !wait_idle(&state.activity).await {
            return Err(Stopped);
        }
        let Some(count) = read_store(&state, "count packages", |f| f.index_count()).await? else {
            continue;
        };
        let fresh = scanned.is_some_and(|(n, at)| n == count && at.elapsed() < RESCAN_EVERY);
        if fresh {
            tokio::time::sleep(POLL).await;
            continue;
        }
        let listed = read_store(&state, "list members", move |f| {
            f.recompress_candidates(level)
        });
        let Some(candidates) = listed.await? else {
            continue;
        };
        scanned = Some((count, Instant::now()));
        let todo: Vec<_> = candidates
            .into_iter()
            .filter(|c| !failed.contains(&c.key))
            .collect();
        gauge!("pnpr_recompress_pending").set(todo.len() as f64);
        if todo.is_empty() {
            continue;
        }
        if !pass(&state, todo, level, &mut failed).await {
            return Err(Stopped);
        }
    }
}

/// Re-encodes `todo` (largest first), waiting for idleness before each
/// member; `false` when the server is stopping.
async fn pass(
    state: &Arc<AppState>,
    todo: Vec<pnpr_cafs::RecompressCandidate>,
    level: u32,
    failed: &mut HashSet<String>,
) -> bool {
    let members = todo.len();
    let stored: u64 = todo.iter().map(|c| c.stored_bytes).sum();
    tracing::info!(members, bytes = stored, level, "recompress: pass started");
    let (mut before_total, mut after_total, mut busy) = (0u64, 0u64, Duration::ZERO);
    let (mut replaced, mut kept) = (0usize, 0usize);
    for candidate in todo {
        if !wait_idle(&state.activity).await {
            return false;
        }
        let st = Arc::clone(state);
        let key = candidate.key.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let outcome = st.accelerator.files.recompress(&key, level);
            (outcome, started.elapsed())
        })
        .await;
        gauge!("pnpr_recompress_pending").decrement(1.0);
        let Ok((outcome, took)) = outcome else {
            return false;
        };
        busy += took;
        let ms = took.as_millis() as u64;
        match outcome {
            Ok(Recompressed::Replaced { before, after }) => {
                replaced += 1;
                before_total += before;
                after_total += after;
                counter!("pnpr_recompress_members_total", "outcome" => "replaced").increment(1);
                counter!("pnpr_recompress_bytes_before_total").increment(before);
                counter!("pnpr_recompress_bytes_after_total").increment(after);
                tracing::info!(key = %candidate.key, before, after, ms, "recompress: member replaced");
            }
            Ok(Recompressed::Kept { before, after }) => {
                kept += 1;
                counter!("pnpr_recompress_members_total", "outcome" => "kept").increment(1);
                tracing::info!(key = %candidate.key, before, after, ms, "recompress: member kept (not smaller)");
            }
            Ok(Recompressed::AlreadyDone { .. } | Recompressed::Gone) => {}
            Err(e) => {
                counter!("pnpr_recompress_members_total", "outcome" => "failed").increment(1);
                tracing::warn!(key = %candidate.key, error = %e, "recompress: member left as it was");
                failed.insert(candidate.key);
            }
        }
        tokio::task::yield_now().await;
    }
    tracing::info!(
        members,
        replaced,
        kept,
        before = before_total,
        after = after_total,
        encode_ms = busy.as_millis() as u64,
        "recompress: pass done"
    );
    true
}
