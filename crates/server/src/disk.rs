//! The disk budget at run time: the cache lock, the background loop that
//! keeps the caches within `cache_max_size` (eviction itself is
//! `pnpr-budget`'s), its metrics, and `pnpr gc`.
//!
//! Invariants guarded here:
//! - one process evicts a cache: a running server holds an exclusive lock
//!   on `<cache>/pnpr.lock`, and `pnpr gc` trims only when it can take that
//!   lock (with the server stopped); next to a running server it reports
//!   sizes and leaves trimming to the server, whose pins protect the
//!   installs it is serving;
//! - passes run on the blocking pool, one at a time, and never more often
//!   than [`MIN_GAP`]; access times are flushed every [`FLUSH_EVERY`] and
//!   at shutdown, so a restart keeps recency.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use futures_util::StreamExt;
use metrics::counter;
use pnpr_budget::{Budget, Report};

use crate::state::{AppState, BuildError};

/// How often access times reach SQLite (and an idle pass may run).
const FLUSH_EVERY: Duration = Duration::from_secs(2);
/// At most one pass per this long, however many writes wake the loop.
const MIN_GAP: Duration = Duration::from_secs(1);
/// A full pass at least this often, woken or not.
const PASS_EVERY: Duration = Duration::from_secs(10);

/// `<cache>/pnpr.lock`, locked exclusively; `None` when another process
/// holds it.
pub(crate) fn lock_cache(cache: &Path) -> std::io::Result<Option<File>> {
    std::fs::create_dir_all(cache)?;
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(cache.join("pnpr.lock"))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
}

/// Opens the budget of `cache` (the tarball CAS under `cache/tarballs`).
pub(crate) fn open(cache: &Path, limit: Option<u64>) -> Result<Arc<Budget>, BuildError> {
    Ok(Budget::open(cache, &cache.join("tarballs"), limit)?)
}

/// Runs until the server stops: flushes access times, and passes when
/// woken (install ends, tarball misses) or every [`PASS_EVERY`].
pub(crate) async fn keep_within_budget(state: Arc<AppState>) {
    let mut last_pass = tokio::time::Instant::now();
    loop {
        let woken = state.disk.wait(FLUSH_EVERY).await;
        let due = woken || last_pass.elapsed() >= PASS_EVERY;
        let st = Arc::clone(&state);
        let run_pass = due && state.disk.limit().is_some() && state.owns_cache();
        let outcome = tokio::task::spawn_blocking(move || {
            if run_pass {
                st.disk.enforce(&st.accelerator.files).map(Some)
            } else {
                st.disk.flush().map(|()| None)
            }
        })
        .await;
        match outcome {
            Ok(Ok(Some(report))) => {
                last_pass = tokio::time::Instant::now();
                record(&report);
            }
            Ok(Ok(None)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "disk budget pass failed"),
            Err(e) => tracing::warn!(error = %e, "disk budget task failed"),
        }
        tokio::time::sleep(MIN_GAP).await;
    }
}

/// Counts what a pass evicted.
fn record(report: &Report) {
    for e in &report.evicted {
        counter!("pnpr_cache_evictions_total", "store" => e.store).increment(e.objects);
        counter!("pnpr_cache_evicted_bytes_total", "store" => e.store).increment(e.bytes);
        crate::recent::evicted(e.store, e.objects, e.bytes);
    }
    if report.units_evicted > 0 {
        tracing::info!(
            before = report.total(),
            after = report.total_after(),
            budget = report.limit.unwrap_or(0),
            versions = report.units_evicted,
            pinned_kept = report.pinned_kept,
            "disk budget: evicted least recently used package versions"
        );
    }
}

/// Keeps `pin` until `resp`'s body is sent or dropped: the files an install
/// streams stay on disk while it streams them.
pub(crate) fn hold_until_sent(resp: Response, pin: pnpr_budget::Pin) -> Response {
    let (parts, body) = resp.into_parts();
    let stream = body.into_data_stream().map(move |chunk| {
        let _held = &pin;
        chunk
    });
    Response::from_parts(parts, Body::from_stream(stream))
}

/// What `pnpr gc` did.
#[derive(Debug)]
pub struct GcOutcome {
    pub report: Report,
    /// A server holds the cache: nothing was trimmed.
    pub server_running: bool,
}

/// `pnpr gc`: reports sizes per store against `cache_max_size` and, unless
/// `report_only` or a server holds the cache, trims to the budget.
pub fn gc(config: &pnpr_config::Config, report_only: bool) -> Result<GcOutcome, BuildError> {
    let cache = &config.cache;
    let lock = lock_cache(cache).map_err(pnpr_store::StoreError::Io)?;
    let files = pnpr_cafs::FileStore::open(&cache.join("files"))?;
    let budget = open(cache, config.operations.cache_max_size)?;
    let server_running = lock.is_none();
    let report = if report_only || server_running {
        budget.report(&files)?
    } else {
        budget.enforce(&files)?
    };
    Ok(GcOutcome {
        report,
        server_running,
    })
}
