//! Single-flight work: concurrent callers asking for the same key share one
//! piece of work, and the vocabulary of the packument flights that use it.
//!
//! Invariant: the map holds only work in flight (an entry is removed when its
//! task ends), and each result exists once per flight, cloned cheaply to
//! every waiter (large parts behind `Arc`). A leaf module: it knows nothing of
//! the server state, so `state` can hold flights without an import circle.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures_util::future::{BoxFuture, FutureExt, Shared};
use pnpr_upstream::UpstreamError;
use serde_json::Value;
use tracing::Instrument;

use crate::error::ApiError;

/// One packument fetch: (namespace, package, uplink).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct FlightKey {
    pub(crate) ns: String,
    pub(crate) name: String,
    pub(crate) uplink: String,
}

/// What one shared packument fetch came to; every waiter gets a clone, so
/// large parts are behind `Arc` and the document exists once per flight.
#[derive(Clone)]
pub(crate) enum Fetched {
    /// 200, validated and stored at `at`.
    Stored {
        doc: Arc<Value>,
        at: i64,
    },
    /// 304 (row touched at `at`), or a row another flight had just stored.
    Fresh {
        at: i64,
    },
    /// The public mirror's uplink no longer has it (row deleted).
    Gone {
        at: i64,
    },
    /// A private namespace's uplink answered 401/403/404 (row deleted).
    Refused {
        status: u16,
    },
    /// The public mirror's uplink answered 401/403.
    PublicDenied,
    /// 200 with a body that is not a packument; nothing stored.
    Invalid(Arc<pnpr_packument::PackumentError>),
    Storage(Arc<pnpr_store::StoreError>),
    /// No usable answer; `fallback` when stale data may stand in for it.
    Failed {
        error: Arc<UpstreamError>,
        fallback: bool,
    },
}

/// Single flight: concurrent callers asking for the same key share one piece
/// of work, run in its own task so a caller that goes away does not cancel
/// it for the others. The entry is removed when the work ends, so the map
/// holds only work in flight and its result exists once, not per caller.
pub(crate) struct Flights<K, V: Clone> {
    inflight: Arc<InFlight<K, V>>,
}

type InFlight<K, V> = Mutex<HashMap<K, Shared<BoxFuture<'static, V>>>>;

impl<K, V: Clone> Default for Flights<K, V> {
    fn default() -> Self {
        Self {
            inflight: Arc::new(Mutex::new(HashMap::new())),
        }
    }
}

/// Plain map of handles: a panic elsewhere cannot leave it torn.
fn lock<K, V: Clone>(
    m: &InFlight<K, V>,
) -> std::sync::MutexGuard<'_, HashMap<K, Shared<BoxFuture<'static, V>>>> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Packument fetches in flight, per (namespace, package, uplink).
pub(crate) type PackumentFlights = Flights<FlightKey, Fetched>;

/// Packument bodies being rendered, per render key (namespace, name, form,
/// tarball base, uplinks): concurrent misses of one document build it once.
pub(crate) type RenderFlights =
    Flights<String, Result<Arc<crate::rendered::Rendered>, Arc<ApiError>>>;

impl<K, V> Flights<K, V>
where
    K: Eq + std::hash::Hash + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// Joins the work for `key` in flight, or starts `work` in its own task
    /// (so a caller that leaves cancels nothing). `lost` is the answer when
    /// the task itself died.
    pub(crate) async fn join(
        &self,
        key: K,
        work: impl FnOnce() -> BoxFuture<'static, V>,
        lost: fn() -> V,
    ) -> V {
        let shared = {
            let mut map = lock(&self.inflight);
            match map.get(&key) {
                Some(f) => f.clone(),
                None => {
                    let inflight = Arc::clone(&self.inflight);
                    let k = key.clone();
                    let fut = work();
                    // The starter's span (its request id) follows the work,
                    // so the shared fetch's log lines say who caused it.
                    let task = tokio::spawn(
                        async move {
                            let out = fut.await;
                            lock(&inflight).remove(&k);
                            out
                        }
                        .instrument(tracing::Span::current()),
                    );
                    let shared = async move { task.await.unwrap_or_else(|_| lost()) }
                        .boxed()
                        .shared();
                    map.insert(key, shared.clone());
                    shared
                }
            }
        };
        shared.await
    }
}
