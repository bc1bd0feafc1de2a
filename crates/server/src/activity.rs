//! Client activity: how many client requests are in flight and when the
//! last one ended, so background work (the idle-time member recompression)
//! runs only while no client waits. Invariant: a request counts from the
//! moment it is admitted until its [`Busy`] guard drops (its response body
//! sent or dropped), and the end time is published before the count falls,
//! so an idle check never pairs "none in flight" with an older end.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Client requests in flight and when the last one ended.
#[derive(Debug)]
pub(crate) struct Activity {
    busy: AtomicUsize,
    origin: Instant,
    /// Milliseconds after `origin` the last request ended.
    last_end_ms: AtomicU64,
    stop: AtomicBool,
}

impl Activity {
    pub(crate) fn new() -> Self {
        Self {
            busy: AtomicUsize::new(0),
            origin: Instant::now(),
            last_end_ms: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        }
    }

    pub(crate) fn enter(self: &Arc<Self>) -> Busy {
        self.busy.fetch_add(1, Ordering::SeqCst);
        Busy(Arc::clone(self))
    }

    /// How long no client request has been in flight (`None`: one is).
    pub(crate) fn idle_for(&self) -> Option<Duration> {
        if self.busy.load(Ordering::SeqCst) > 0 {
            return None;
        }
        let since = Duration::from_millis(self.last_end_ms.load(Ordering::SeqCst));
        Some(self.origin.elapsed().saturating_sub(since))
    }

    /// Ends the pass (server shutdown).
    pub(crate) fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    pub(crate) fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
}

/// One client request in flight; dropped when its response body is done.
pub(crate) struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        // The end time first, so an idle check never sees no request in
        // flight together with an older end.
        let ms = u64::try_from(self.0.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.0.last_end_ms.fetch_max(ms, Ordering::SeqCst);
        self.0.busy.fetch_sub(1, Ordering::SeqCst);
    }
}
