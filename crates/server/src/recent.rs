//! Recent activity for the status page, kept in process memory: requests
//! answered per route class, cache hits and misses, each uplink's last
//! failed fetch, evictions, and a ring of the last error responses.
//!
//! Invariants guarded here:
//! - memory is bounded: the ring holds at most [`ERRORS_KEPT`] entries, and
//!   every map is keyed by a fixed word (route class, cache, result, store)
//!   or a config name (uplink), never by a package or user name;
//! - an error entry holds only its time, status, route class and request
//!   id: no path, package name, user or credential.
//!
//! Like the Prometheus recorder it is process-wide (one server per process
//! in production).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Mutex, MutexGuard, OnceLock};

/// Error responses kept for the status page.
pub const ERRORS_KEPT: usize = 50;

/// One error response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorEntry {
    pub at_ms: i64,
    pub status: u16,
    pub class: &'static str,
    pub request_id: String,
}

/// An uplink's last failed fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UplinkError {
    pub at_ms: i64,
    pub outcome: &'static str,
}

#[derive(Default)]
struct Inner {
    requests: BTreeMap<&'static str, u64>,
    lookups: BTreeMap<(&'static str, &'static str), u64>,
    uplink_errors: BTreeMap<String, UplinkError>,
    evicted: BTreeMap<&'static str, (u64, u64)>,
    errors: VecDeque<ErrorEntry>,
}

fn inner() -> MutexGuard<'static, Inner> {
    static RECENT: OnceLock<Mutex<Inner>> = OnceLock::new();
    // Plain counters and a ring: consistent between statements, so a
    // poisoned lock is still usable.
    RECENT
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}

/// One answered request; an error status (>= 400) enters the ring.
pub fn request(class: &'static str, status: u16, request_id: Option<&str>) {
    let mut r = inner();
    *r.requests.entry(class).or_default() += 1;
    if status >= 400 {
        if r.errors.len() == ERRORS_KEPT {
            r.errors.pop_front();
        }
        r.errors.push_back(ErrorEntry {
            at_ms: pnpr_store::now_ms(),
            status,
            class,
            request_id: request_id.unwrap_or("-").to_string(),
        });
    }
}

/// A cache lookup (`cache`: `tarball`, `packument`, `resolution`).
pub fn lookup(cache: &'static str, result: &'static str) {
    *inner().lookups.entry((cache, result)).or_default() += 1;
}

/// An upstream fetch's outcome; failures are remembered per uplink.
pub fn upstream(uplink: &str, outcome: &'static str) {
    if matches!(outcome, "ok" | "not_modified" | "not_found") {
        return;
    }
    inner().uplink_errors.insert(
        uplink.to_string(),
        UplinkError {
            at_ms: pnpr_store::now_ms(),
            outcome,
        },
    );
}

/// Objects and bytes an eviction pass removed from `store`.
pub fn evicted(store: &'static str, objects: u64, bytes: u64) {
    let mut r = inner();
    let e = r.evicted.entry(store).or_default();
    e.0 += objects;
    e.1 += bytes;
}

/// A copy of everything, for one page view.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub requests: BTreeMap<&'static str, u64>,
    pub lookups: BTreeMap<(&'static str, &'static str), u64>,
    pub uplink_errors: BTreeMap<String, UplinkError>,
    pub evicted: BTreeMap<&'static str, (u64, u64)>,
    /// Newest first.
    pub errors: Vec<ErrorEntry>,
}

pub fn snapshot() -> Snapshot {
    let r = inner();
    Snapshot {
        requests: r.requests.clone(),
        lookups: r.lookups.clone(),
        uplink_errors: r.uplink_errors.clone(),
        evicted: r.evicted.clone(),
        errors: r.errors.iter().rev().cloned().collect(),
    }
}

impl Snapshot {
    /// Hits over all lookups of `cache` (a `stale` packument counts as a
    /// miss: it needed the uplink); `None` before the first lookup.
    pub fn hit_ratio(&self, cache: &str) -> Option<f64> {
        let (mut hits, mut all) = (0u64, 0u64);
        for ((c, result), n) in &self.lookups {
            if *c == cache {
                all += n;
                if *result == "hit" {
                    hits += n;
                }
            }
        }
        (all > 0).then(|| hits as f64 / all as f64)
    }

    pub fn requests_total(&self) -> u64 {
        self.requests.values().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_error_ring_is_bounded_and_newest_first() {
        for i in 0..(ERRORS_KEPT + 10) {
            request("registry_read", 404, Some(&format!("id-{i}")));
        }
        let s = snapshot();
        assert!(s.errors.len() <= ERRORS_KEPT);
        let last = format!("id-{}", ERRORS_KEPT + 9);
        assert!(s.errors.iter().any(|e| e.request_id == last));
        lookup("tarball", "hit");
        lookup("tarball", "miss");
        let ratio = snapshot().hit_ratio("tarball").unwrap();
        assert!(ratio > 0.0 && ratio < 1.0);
    }
}
