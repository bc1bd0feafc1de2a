//! Stored cuts (RFC 0010 §4c): the member of a partial group — the frames
//! of one package that an earlier package of the same body or the client
//! did not already have — kept after a response made it, so the next
//! client of the same tree gets it copied instead of cut and compressed
//! again, and so the idle-time recompression reaches it too.
//!
//! Invariants:
//! - a cut is named like a member, by `pnpr_protocol::member_key` of
//!   exactly its frames (the caller passes the key of the frames it
//!   compressed; the recompression pass re-checks that the frames inside
//!   are the ones the key names before it rewrites one), so it can only be
//!   served for a group naming those frames in that order;
//! - cuts are a cache: any of them may vanish (the disk budget sees them
//!   as loose derived files, oldest use first; the cap below evicts the
//!   least recently used); a missing cut only means the group is cut again;
//! - their bytes stay under a quarter of the stored members' bytes (the
//!   server's disk per package, RFC 0008 §4), measured at most every
//!   [`REFRESH`].

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use crate::error::CafsError;
use crate::store::FileStore;

/// Cut bytes allowed per stored member byte: 1 / `CAP_DIVISOR`.
const CAP_DIVISOR: u64 = 4;

/// How often the ledger is rebuilt from the disk (the budget and the
/// recompression pass change files behind it).
const REFRESH: Duration = Duration::from_secs(600);

/// What the cut directory holds, as last seen.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    /// key → (stored length, last use).
    cuts: HashMap<String, (u64, SystemTime)>,
    total: u64,
    members: u64,
    built: Option<Instant>,
}

impl FileStore {
    /// `frames/cuts/<key[..2]>/<key[2..]>`, the key validated as a member's.
    pub(crate) fn cut_path(&self, key_hex: &str) -> Result<PathBuf, CafsError> {
        self.member_path(key_hex)?;
        Ok(self
            .derived_dir()
            .join("cuts")
            .join(&key_hex[..2])
            .join(&key_hex[2..]))
    }

    /// Where the member or cut named `key_hex` is stored, if it is.
    pub(crate) fn stored_path(&self, key_hex: &str) -> Result<PathBuf, CafsError> {
        let member = self.member_path(key_hex)?;
        if member.is_file() {
            return Ok(member);
        }
        self.cut_path(key_hex)
    }

    /// The stored cut named `key_hex`, if there is one (marked used).
    pub fn open_cut(&self, key_hex: &str) -> Option<(File, u64)> {
        let path = self.cut_path(key_hex).ok()?;
        let file = File::open(&path).ok()?;
        let len = file.metadata().ok()?.len();
        let now = SystemTime::now();
        // The budget evicts loose derived files by modification time.
        let _ = file.set_modified(now);
        if let Some(e) = self.ledger().cuts.get_mut(key_hex) {
            *e = (len, now);
        }
        Some((file, len))
    }

    /// Keeps `member` (the compressed frames `key_hex` names) as a stored
    /// cut, evicting the least recently used cuts past the cap. Nothing is
    /// kept when it alone would pass the cap.
    pub fn keep_cut(&self, key_hex: &str, member: &[u8]) -> Result<(), CafsError> {
        let path = self.cut_path(key_hex)?;
        let len = member.len() as u64;
        let mut ledger = self.ledger();
        if ledger.cuts.contains_key(key_hex) || path.is_file() {
            return Ok(());
        }
        let cap = ledger.members / CAP_DIVISOR;
        if len > cap {
            return Ok(());
        }
        while ledger.total + len > cap {
            let Some(oldest) = ledger
                .cuts
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some((n, _)) = ledger.cuts.remove(&oldest) {
                ledger.total = ledger.total.saturating_sub(n);
                let _ = fs::remove_file(self.cut_path(&oldest)?);
            }
        }
        let io = |what: &str, e| CafsError::io(format!("{what} cut {key_hex}"), e);
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(|e| io("creating the directory of", e))?;
        }
        let mut writer = self
            .files
            .derived_writer()
            .map_err(|e| io("a temp file for", e))?;
        writer.write_all(member).map_err(|e| io("writing", e))?;
        writer.place(&path).map_err(|e| io("placing", e))?;
        ledger.total += len;
        ledger
            .cuts
            .insert(key_hex.to_owned(), (len, SystemTime::now()));
        Ok(())
    }

    /// Keys of the stored cuts (for the recompression pass).
    pub(crate) fn cut_keys(&self) -> Vec<String> {
        self.ledger().cuts.keys().cloned().collect()
    }

    /// The ledger, rebuilt from the disk when it is older than [`REFRESH`]
    /// (the walk runs outside the lock: responses keep using the old one).
    fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        let lock = || self.cuts.lock().unwrap_or_else(|p| p.into_inner());
        let stale = |l: &Ledger| l.built.is_none_or(|at| at.elapsed() > REFRESH);
        if !stale(&lock()) {
            return lock();
        }
        let cuts = walk(&self.derived_dir().join("cuts"));
        let fresh = Ledger {
            total: cuts.values().map(|(n, _)| n).sum(),
            members: walk(&self.derived_dir().join("members"))
                .values()
                .map(|(n, _)| n)
                .sum(),
            cuts,
            built: Some(Instant::now()),
        };
        let mut ledger = lock();
        if stale(&ledger) {
            *ledger = fresh;
        }
        ledger
    }
}

/// Every file two levels under `dir` (`<key[..2]>/<key[2..]>`) by key.
fn walk(dir: &Path) -> HashMap<String, (u64, SystemTime)> {
    let mut out = HashMap::new();
    let Ok(fans) = fs::read_dir(dir) else {
        return out;
    };
    for fan in fans.flatten() {
        let Ok(files) = fs::read_dir(fan.path()) else {
            continue;
        };
        let prefix = fan.file_name().to_string_lossy().into_owned();
        for f in files.flatten() {
            let Ok(meta) = f.metadata() else { continue };
            if !meta.is_file() {
                continue;
            }
            let key = format!("{prefix}{}", f.file_name().to_string_lossy());
            let used = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            out.insert(key, (meta.len(), used));
        }
    }
    out
}

#[cfg(test)]
mod tests;
