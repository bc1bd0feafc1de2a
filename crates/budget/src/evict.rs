//! One eviction pass: units ordered by last access, removed oldest first
//! until the stores fit the goal, skipping pinned ones.
//!
//! Invariant: a member is removed only when no index row names it (or with
//! the last unit whose rows do), counted while
//! [`pnpr_cafs::FileStore::exclusive`] holds every unpack off (rows written
//! since the scan are counted too), and a unit is removed under the pin
//! table's lock, so a concurrent install either pinned it first (it is
//! skipped) or pins it after it is gone (and unpacks it again). A unit's
//! row goes before its member, so no reader is handed a row without one.

use std::collections::{HashMap, HashSet};
use std::fmt;

use pnpr_cafs::FileStore;

use crate::scan::{Scan, Tarball};
use crate::{lock, Budget, Result};

/// Bytes and objects of one store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreUsage {
    /// `tarballs`, `files` or `frames`.
    pub store: &'static str,
    pub bytes: u64,
    pub objects: u64,
}

impl StoreUsage {
    pub(crate) fn new(store: &'static str, bytes: u64, objects: u64) -> Self {
        Self {
            store,
            bytes,
            objects,
        }
    }
}

/// What a pass found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub limit: Option<u64>,
    /// Sizes when the pass started.
    pub before: Vec<StoreUsage>,
    /// What it removed, per store.
    pub evicted: Vec<StoreUsage>,
    /// Package versions removed.
    pub units_evicted: u64,
    /// Over-budget candidates kept because an install was serving them.
    pub pinned_kept: u64,
}

impl Report {
    pub(crate) fn new(limit: Option<u64>, before: Vec<StoreUsage>) -> Self {
        let evicted = before
            .iter()
            .map(|u| StoreUsage::new(u.store, 0, 0))
            .collect();
        Self {
            limit,
            before,
            evicted,
            units_evicted: 0,
            pinned_kept: 0,
        }
    }

    /// Bytes of every evictable store when the pass started.
    pub fn total(&self) -> u64 {
        self.before.iter().map(|u| u.bytes).sum()
    }

    /// Bytes left after the pass.
    pub fn total_after(&self) -> u64 {
        self.total() - self.evicted.iter().map(|u| u.bytes).sum::<u64>()
    }

    fn add(&mut self, store: &str, bytes: u64) {
        if let Some(u) = self.evicted.iter_mut().find(|u| u.store == store) {
            u.bytes += bytes;
            u.objects += u64::from(bytes > 0);
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (b, e) in self.before.iter().zip(&self.evicted) {
            writeln!(
                f,
                "{:<9} {:>14} bytes {:>9} objects   evicted {:>12} bytes {:>7} objects",
                b.store, b.bytes, b.objects, e.bytes, e.objects
            )?;
        }
        let limit = self
            .limit
            .map_or_else(|| "none".to_string(), |l| format!("{l} bytes"));
        writeln!(
            f,
            "total     {:>14} bytes (after: {}), budget {limit}; {} package versions evicted, {} pinned kept",
            self.total(),
            self.total_after(),
            self.units_evicted,
            self.pinned_kept
        )
    }
}

/// One package version's cached bytes.
struct Unit {
    key: String,
    /// Its file-store index rows (usually one).
    rows: Vec<String>,
    tarballs: Vec<Tarball>,
    /// Keys of the members its rows name.
    members: Vec<String>,
    last_ms: i64,
}

/// Units and how many index rows name each member.
#[derive(Default)]
struct Plan {
    units: HashMap<String, Unit>,
    refs: HashMap<String, u32>,
    rows_seen: HashSet<String>,
}

impl Plan {
    fn unit(&mut self, key: &str) -> &mut Unit {
        self.units.entry(key.to_string()).or_insert_with(|| Unit {
            key: key.to_string(),
            rows: Vec::new(),
            tarballs: Vec::new(),
            members: Vec::new(),
            last_ms: 0,
        })
    }

    /// Counts the member of index row `integrity` (and makes the row part
    /// of its unit).
    fn add_row(&mut self, files: &FileStore, integrity: &str) -> Result<()> {
        self.rows_seen.insert(integrity.to_string());
        let Some(key) = crate::unit_key(integrity) else {
            return Ok(());
        };
        let Some(index) = files.index_uncached(integrity)? else {
            return Ok(());
        };
        let member = files.member_key_uncached(&index).ok();
        if let Some(m) = &member {
            *self.refs.entry(m.clone()).or_default() += 1;
        }
        let unit = self.unit(&key);
        unit.rows.push(integrity.to_string());
        unit.members.extend(member);
        unit.last_ms = unit.last_ms.max(index.checked_at_ms as i64);
        Ok(())
    }
}

/// Removes what older versions kept and nothing reads any more: the raw
/// unpacked files and the per-file frames (RFC 0008 §4). Runs on every
/// pass, over budget or not.
pub(crate) fn purge_legacy(files: &FileStore, scan: &mut Scan, report: &mut Report) {
    for (d, _) in std::mem::take(&mut scan.files) {
        let n = files.remove_file(&hex::encode(d)).unwrap_or(0);
        report.add("files", n);
    }
    for (path, _) in std::mem::take(&mut scan.frames).into_values().flatten() {
        report.add("frames", unlink(&path));
    }
}

/// Evicts down to `goal` bytes; returns the evicted units' keys.
pub(crate) fn run(
    budget: &Budget,
    files: &FileStore,
    mut scan: Scan,
    access: &HashMap<String, i64>,
    goal: u64,
    report: &mut Report,
) -> Result<Vec<String>> {
    let mut plan = Plan::default();
    for row in files.index_keys()? {
        plan.add_row(files, &row)?;
    }
    for (key, tarballs) in std::mem::take(&mut scan.tarballs) {
        let unit = plan.unit(&key);
        unit.last_ms = tarballs
            .iter()
            .map(|t| t.mtime_ms)
            .fold(unit.last_ms, i64::max);
        unit.tarballs = tarballs;
    }
    let _no_unpacks = files.exclusive();
    // Rows written since the scan keep their members.
    for row in files.index_keys()? {
        if !plan.rows_seen.contains(&row) {
            plan.add_row(files, &row)?;
        }
    }
    let mut total = report.total_after();
    let young = pnpr_clock::now_ms() - LOOSE_GRACE_MS;
    remove_orphans(&plan, &mut scan, young, &mut total, report);
    let mut candidates: Vec<Candidate> = std::mem::take(&mut plan.units)
        .into_values()
        .map(|mut u| {
            if let Some(at) = access.get(&u.key) {
                u.last_ms = *at;
            }
            Candidate::Unit(u)
        })
        .chain(
            std::mem::take(&mut scan.loose)
                .into_iter()
                .map(Candidate::Loose),
        )
        .collect();
    candidates.sort_by_key(Candidate::last_ms);
    let mut evicted = Vec::new();
    for candidate in candidates {
        if total <= goal {
            break;
        }
        let unit = match candidate {
            Candidate::Loose(t) if t.mtime_ms < young => {
                let freed = unlink(&t.path);
                report.add("frames", freed);
                total = total.saturating_sub(freed);
                continue;
            }
            Candidate::Loose(_) => continue,
            Candidate::Unit(unit) => unit,
        };
        let pins = lock(&budget.pins);
        if pins.contains_key(&unit.key) {
            report.pinned_kept += 1;
            continue;
        }
        let freed = remove_unit(files, &unit, &mut plan.refs, &mut scan, report)?;
        drop(pins);
        total = total.saturating_sub(freed);
        report.units_evicted += 1;
        evicted.push(unit.key);
    }
    Ok(evicted)
}

/// Derived bytes younger than this are kept when no row names them: their
/// writer (an unpack of another process sharing the store) names them next.
const LOOSE_GRACE_MS: i64 = 5_000;

/// What a pass may remove, oldest first.
enum Candidate {
    Unit(Unit),
    Loose(Tarball),
}

impl Candidate {
    fn last_ms(&self) -> i64 {
        match self {
            Candidate::Unit(u) => u.last_ms,
            Candidate::Loose(t) => t.mtime_ms,
        }
    }
}

/// Members no index row names (leftovers of failed or evicted rows):
/// unreachable by any install, so they go first.
fn remove_orphans(plan: &Plan, scan: &mut Scan, young: i64, total: &mut u64, report: &mut Report) {
    let orphans: Vec<String> = scan
        .members
        .iter()
        .filter(|(key, m)| !plan.refs.contains_key(*key) && m.mtime_ms < young)
        .map(|(key, _)| key.clone())
        .collect();
    for key in orphans {
        if let Some(m) = scan.members.remove(&key) {
            let freed = unlink(&m.path);
            report.add("frames", freed);
            *total = total.saturating_sub(freed);
        }
    }
}

/// Removes a unit's rows, tarballs, and the members no other row names;
/// returns the bytes freed.
fn remove_unit(
    files: &FileStore,
    unit: &Unit,
    refs: &mut HashMap<String, u32>,
    scan: &mut Scan,
    report: &mut Report,
) -> Result<u64> {
    // Rows first: from here on an install finds the package missing.
    for row in &unit.rows {
        files.remove_index(row)?;
    }
    let mut freed = 0;
    for t in &unit.tarballs {
        let n = unlink(&t.path);
        report.add("tarballs", n);
        freed += n;
    }
    for key in &unit.members {
        let Some(n) = refs.get_mut(key) else { continue };
        *n = n.saturating_sub(1);
        if *n == 0 {
            refs.remove(key);
            let path = match scan.members.remove(key) {
                Some(m) => m.path,
                None => files.member_file(key)?,
            };
            let n = unlink(&path);
            report.add("frames", n);
            freed += n;
        }
    }
    Ok(freed)
}

fn unlink(path: &std::path::Path) -> u64 {
    let len = std::fs::symlink_metadata(path).map_or(0, |m| m.len());
    std::fs::remove_file(path).map_or(0, |()| len)
}
