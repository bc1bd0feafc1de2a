//! The disk budget of pnpr's re-fetchable caches (`cache_max_size`): the
//! tarball CAS and the file store's package members and index rows,
//! evicted least-recently-used first, one package version at a time (and
//! the raw files and per-file frames older versions kept, which nothing
//! reads any more, removed on every pass).
//!
//! A *unit* is one package version's cached bytes, named by its integrity
//! (`<algo>-<hex>` of the strongest hash, the CAS's own address): its
//! tarballs (one per namespace), its file-store index row, and the member
//! no other remaining unit's row names.
//!
//! Invariants guarded here:
//! - only those three stores are ever touched: hosted tarballs, users,
//!   tokens and metadata live elsewhere and are never evicted;
//! - a pinned unit (an install in flight serves it) is never evicted, and a
//!   member is removed only when no remaining index row names it, decided
//!   while the file store holds every unpack off ([`evict`]);
//! - eviction unlinks; a reader that opened a file keeps reading it;
//! - access times are kept in memory and written to SQLite in batches
//!   ([`access`]), so recency survives a restart without one write per read;
//! - memory is bounded by the store (one small entry per file during a
//!   pass) and by a cap on unflushed access times.

mod access;
mod evict;
mod scan;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

pub use evict::{Report, StoreUsage};

/// Errors of the budget crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BudgetError {
    #[error("access-time database: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("cache I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("file store: {0}")]
    Files(#[from] pnpr_cafs::CafsError),
}

pub type Result<T, E = BudgetError> = std::result::Result<T, E>;

/// A pass brings an over-budget cache down to this share of the budget, so
/// the next few writes do not each start another pass.
const LOW_WATER_PERCENT: u64 = 90;

/// The unit name of an integrity string (`None` when it does not parse).
pub fn unit_key(integrity: &str) -> Option<String> {
    let sri: ssri::Integrity = integrity.parse().ok()?;
    unit_of(&sri)
}

/// The unit name of a parsed integrity: what its CAS path is made of.
pub fn unit_of(sri: &ssri::Integrity) -> Option<String> {
    if sri.hashes.is_empty() {
        return None;
    }
    let (algo, hex) = sri.to_hex();
    Some(format!("{algo}-{hex}"))
}

/// The budget of one cache directory.
pub struct Budget {
    limit: Option<u64>,
    cas_root: PathBuf,
    access: access::AccessLog,
    /// Units served by installs in flight, with how many hold each.
    pins: Mutex<HashMap<String, usize>>,
    wake: tokio::sync::Notify,
    /// One pass at a time (background loop, `pnpr gc`).
    passes: Mutex<()>,
}

impl std::fmt::Debug for Budget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Budget")
            .field("limit", &self.limit)
            .finish()
    }
}

impl Budget {
    /// The budget over `cas_root` (the tarball CAS) and a file store, with
    /// access times in `<cache_dir>/budget.sqlite`.
    pub fn open(cache_dir: &Path, cas_root: &Path, limit: Option<u64>) -> Result<Arc<Self>> {
        std::fs::create_dir_all(cache_dir)?;
        let access = access::AccessLog::open(&cache_dir.join("budget.sqlite"))?;
        Ok(Arc::new(Self {
            limit,
            cas_root: cas_root.to_path_buf(),
            access,
            pins: Mutex::new(HashMap::new()),
            wake: tokio::sync::Notify::new(),
            passes: Mutex::new(()),
        }))
    }

    /// `cache_max_size`, if any.
    pub fn limit(&self) -> Option<u64> {
        self.limit
    }

    /// Records a read of the unit with this integrity.
    pub fn touch(&self, integrity: &str) {
        if let Some(key) = unit_key(integrity) {
            self.access.touch(key, pnpr_clock::now_ms());
        }
    }

    /// Records a read of the unit with this parsed integrity.
    pub fn touch_sri(&self, sri: &ssri::Integrity) {
        if let Some(key) = unit_of(sri) {
            self.access.touch(key, pnpr_clock::now_ms());
        }
    }

    /// Keeps these units from eviction until the guard is dropped (and
    /// records a read of each). Dropping it asks for a pass: an install
    /// that wrote to the stores ends there.
    pub fn pin<'a>(self: &Arc<Self>, integrities: impl IntoIterator<Item = &'a str>) -> Pin {
        let now = pnpr_clock::now_ms();
        let keys: Vec<String> = integrities.into_iter().filter_map(unit_key).collect();
        {
            let mut pins = self.pins_lock();
            for k in &keys {
                *pins.entry(k.clone()).or_default() += 1;
            }
        }
        for k in &keys {
            self.access.touch(k.clone(), now);
        }
        Pin {
            budget: Arc::clone(self),
            keys,
        }
    }

    /// Writes the access times recorded since the last flush.
    pub fn flush(&self) -> Result<()> {
        self.access.flush()
    }

    /// Asks the background loop for a pass soon.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Returns after a [`Budget::wake`] (`true`) or after `period`.
    pub async fn wait(&self, period: Duration) -> bool {
        tokio::time::timeout(period, self.wake.notified())
            .await
            .is_ok()
    }

    /// Sizes per store, without evicting anything.
    pub fn report(&self, files: &pnpr_cafs::FileStore) -> Result<Report> {
        let _one = lock(&self.passes);
        self.flush()?;
        let scan = scan::scan(&self.cas_root, files);
        Ok(Report::new(self.limit, scan.usage()))
    }

    /// When over the budget, evicts least-recently-used unpinned units
    /// until the stores are at [`LOW_WATER_PERCENT`] of it (blocking: run
    /// it on a blocking thread). Without a budget it only reports.
    pub fn enforce(&self, files: &pnpr_cafs::FileStore) -> Result<Report> {
        let _one = lock(&self.passes);
        self.flush()?;
        let mut scan = scan::scan(&self.cas_root, files);
        let mut report = Report::new(self.limit, scan.usage());
        evict::purge_legacy(files, &mut scan, &mut report);
        let Some(limit) = self.limit else {
            return Ok(report);
        };
        if report.total_after() <= limit {
            return Ok(report);
        }
        let goal =
            u64::try_from(u128::from(limit) * u128::from(LOW_WATER_PERCENT) / 100).unwrap_or(limit);
        let access = self.access.all()?;
        let evicted = evict::run(self, files, scan, &access, goal, &mut report)?;
        self.access.forget(&evicted)?;
        Ok(report)
    }

    fn pins_lock(&self) -> MutexGuard<'_, HashMap<String, usize>> {
        lock(&self.pins)
    }
}

/// A poisoned lock is still usable: every guarded value is a plain map or
/// nothing, left consistent between statements.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Units kept from eviction while an install serves them.
pub struct Pin {
    budget: Arc<Budget>,
    keys: Vec<String>,
}

impl std::fmt::Debug for Pin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pin")
            .field("units", &self.keys.len())
            .finish()
    }
}

impl Drop for Pin {
    fn drop(&mut self) {
        {
            let mut pins = self.budget.pins_lock();
            for k in &self.keys {
                if let Some(n) = pins.get_mut(k) {
                    *n -= 1;
                    if *n == 0 {
                        pins.remove(k);
                    }
                }
            }
        }
        self.budget.wake();
    }
}

#[cfg(test)]
mod tests;
