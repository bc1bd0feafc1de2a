//! Store sizes on disk, for metrics and the status page.
//!
//! Invariant guarded: a size is measured by walking the store's directory on
//! the blocking pool, at most once per [`REFRESH`] however often it is asked
//! for (scrapes and page views cannot turn into a disk-walking load), and
//! concurrent askers share the last answer.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::state::AppState;

/// How old a measurement may be before it is taken again.
const REFRESH: Duration = Duration::from_secs(1);

/// One store's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// Fixed name: `tarballs`, `files`, `frames`, `metadata`, `hosted`.
    pub store: &'static str,
    pub bytes: u64,
    pub objects: u64,
}

type Measured = (Instant, Vec<Usage>);

/// The stores' sizes, measured at most [`REFRESH`] ago.
pub async fn usage(state: &Arc<AppState>) -> Vec<Usage> {
    static LAST: OnceLock<Mutex<Option<Measured>>> = OnceLock::new();
    let last = LAST.get_or_init(|| Mutex::new(None));
    let roots = roots(state);
    if let Some((at, v)) = last.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
        // One process may run several servers (tests): only reuse a
        // measurement of the same stores.
        if at.elapsed() < REFRESH && v.len() == roots.len() {
            return v.clone();
        }
    }
    let measured = tokio::task::spawn_blocking(move || {
        roots
            .into_iter()
            .map(|(store, dir)| {
                let (bytes, objects) = walk(&dir);
                Usage {
                    store,
                    bytes,
                    objects,
                }
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    *last.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), measured.clone()));
    measured
}

/// Every store and its directory. The evictable ones (tarballs, files,
/// frames) come first.
fn roots(state: &AppState) -> Vec<(&'static str, PathBuf)> {
    let cache = &state.config.cache;
    vec![
        ("tarballs", cache.join("tarballs")),
        ("files", cache.join("files").join("files")),
        ("frames", cache.join("files").join("frames")),
        ("metadata", cache.join("metadata.sqlite")),
        ("hosted", state.config.storage.join("hosted-tarballs")),
    ]
}

/// Bytes and regular files under `path` (a file counts as itself).
pub fn walk(path: &Path) -> (u64, u64) {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return (0, 0);
    };
    if meta.is_file() {
        return (meta.len(), 1);
    }
    let mut totals = (0, 0);
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            match entry.file_type() {
                Ok(t) if t.is_dir() => stack.push(entry.path()),
                Ok(t) if t.is_file() => {
                    totals.0 += entry.metadata().map_or(0, |m| m.len());
                    totals.1 += 1;
                }
                _ => {}
            }
        }
    }
    totals
}
