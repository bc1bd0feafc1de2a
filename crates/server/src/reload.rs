//! Live reload of access policy (`packages:`, `groups:`, uplink `access:`).
//!
//! Triggered by SIGHUP (the binary forwards it through a `Notify`) and by a
//! change of the config file's mtime/size, polled once a second. A reload
//! that fails to parse or compile keeps the old policy and logs why. Uplink
//! URLs and credentials are reloaded too (token rotation without restart);
//! listen address and storage paths need a restart. Requests in flight keep
//! the policy snapshot they started with, so a swap never fails a request.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use pnpr_config::{Config, Env};
use tokio::sync::Notify;

use crate::state::AppState;

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// Re-reads the config file and swaps the policy; returns whether it changed.
pub fn reload_once(state: &AppState, path: &Path, env: &Env) -> bool {
    let fresh = match Config::load_file(path, env) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "config reload failed; keeping the current policy");
            return false;
        }
    };
    // Policy, uplinks and config are swapped as one snapshot, so a rotated
    // credential and a policy that refers to it take effect together.
    match state.reload(fresh) {
        Ok(done) => {
            if done.network {
                tracing::info!("uplinks reloaded (URL, credential or limits changed)");
            }
            tracing::info!("access policy reloaded");
            true
        }
        Err(e) => {
            tracing::warn!(error = %e, "config reload failed; keeping the current policy");
            false
        }
    }
}

/// Runs until the process ends.
pub async fn watch(state: Arc<AppState>, path: PathBuf, env: Env, hup: Arc<Notify>) {
    let mut last = stamp(&path);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let now = stamp(&path);
                if now != last {
                    last = now;
                    reload_once(&state, &path, &env);
                }
            }
            _ = hup.notified() => {
                last = stamp(&path);
                reload_once(&state, &path, &env);
            }
        }
    }
}
