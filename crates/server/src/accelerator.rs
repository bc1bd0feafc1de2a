//! The install accelerator's shared state: the unpacked-file store, the
//! forwarded path's grants, resolved trees (the auth-aware candidate cache),
//! integrity bindings the catalog already checked, and the admission budget
//! for installs. A leaf module: it owns data, the
//! stages in `install` and the catalog own the rules.
//!
//! Invariants guarded here: every cache is bounded (candidates by count and
//! bytes, bindings by count), and a binding is a content fact (`name@version`
//! in a namespace has this integrity), never an access fact.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use pnpr_lockfile::Lockfile;
use tokio::sync::Semaphore;

/// Integrity bindings remembered.
const BINDINGS: usize = 200_000;

/// One package version a response would serve bytes of.
#[derive(Debug, Clone)]
pub struct PackageClaim {
    pub name: String,
    pub version: String,
    pub integrity: String,
}

/// A resolved tree as the candidate cache keeps it.
#[derive(Debug)]
pub struct CachedTree {
    pub lockfile: Lockfile,
    /// Every tarball-backed package of the tree.
    pub packages: Vec<PackageClaim>,
}

pub(crate) type ResolutionCache = pnpr_rescache::CandidateCache<Arc<CachedTree>>;

/// `(namespace, name@version) → integrity`.
type Bindings = lru::LruCache<(String, String), String>;

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The durable parts the accelerator is built on.
pub(crate) struct Stores {
    /// Unpacked package files (under `cache`).
    pub(crate) files: pnpr_cafs::FileStore,
    /// Public-package set and per-user grants of the forwarded path (spec
    /// §4.4–4.6), under `cache`.
    pub(crate) access: crate::grants::AccessStore,
}

/// Stores, caches and budgets shared by every install.
pub(crate) struct Accelerator {
    /// Unpacked package files (under `cache`).
    pub(crate) files: pnpr_cafs::FileStore,
    /// Public-package set and per-user grants of the forwarded path.
    pub(crate) access: crate::grants::AccessStore,
    resolutions: Mutex<ResolutionCache>,
    bindings: Mutex<Bindings>,
    installs: Arc<Semaphore>,
}

impl Accelerator {
    pub(crate) fn new(
        stores: Stores,
        secret: Vec<u8>,
        ttl: Duration,
        limits: &pnpr_config::Limits,
    ) -> Self {
        let max_bytes = usize::try_from(limits.resolution_cache).unwrap_or(usize::MAX);
        Self {
            files: stores.files,
            access: stores.access,
            resolutions: Mutex::new(
                pnpr_rescache::CandidateCache::new(secret, ttl).with_max_bytes(max_bytes),
            ),
            bindings: Mutex::new(lru::LruCache::new(
                NonZeroUsize::new(BINDINGS).unwrap_or(NonZeroUsize::MIN),
            )),
            installs: Arc::new(Semaphore::new(limits.installs_in_flight.max(1))),
        }
    }

    /// The resolution cache, locked for one lookup or store.
    pub(crate) fn resolutions(&self) -> MutexGuard<'_, ResolutionCache> {
        locked(&self.resolutions)
    }

    /// The integrity bound to `id` (`name@version`) in namespace `ns`.
    pub(crate) fn binding(&self, ns: &str, id: &str) -> Option<String> {
        locked(&self.bindings)
            .get(&(ns.to_string(), id.to_string()))
            .cloned()
    }

    pub(crate) fn bind(&self, ns: String, id: String, integrity: String) {
        locked(&self.bindings).put((ns, id), integrity);
    }

    /// The install admission semaphore.
    pub(crate) fn installs(&self) -> Arc<Semaphore> {
        Arc::clone(&self.installs)
    }
}
