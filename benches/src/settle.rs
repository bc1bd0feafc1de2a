//! `peers --settle S`: after a pnpr's population install, waits for its
//! idle-time member recompression (RFC 0010 §4b) to finish, so the measured
//! rounds get the recompressed members, and reports what the pass did: how
//! long it took, the server's CPU seconds meanwhile, and the stored member
//! bytes before and after (the server's own `pnpr_recompress_*` counters).
//!
//! Invariants: the wait is bounded by S; the server is read on 127.0.0.1
//! directly (never through the shaper, so no traffic is counted), and only
//! `/-/metrics`, which does not count as client activity to the pass.

use std::time::{Duration, Instant};

use pnpr_e2e::{Http, Pnpr};

/// Waits up to `limit` for the pass of `server` (target `name`) to finish.
pub(crate) fn wait(rt: &tokio::runtime::Runtime, server: &Pnpr, limit: Duration, name: &str) {
    if limit.is_zero() {
        return;
    }
    let url = format!("http://127.0.0.1:{}/-/metrics", server.port);
    let http = Http::new();
    let cpu_before = server.pid().and_then(cpu_seconds);
    let started = Instant::now();
    let done = loop {
        let text = rt.block_on(http.get(&url)).text();
        let members: f64 = samples(&text, "pnpr_recompress_members_total{").sum();
        let pending = samples(&text, "pnpr_recompress_pending ").next();
        if members > 0.0 && pending == Some(0.0) {
            break Some(text);
        }
        if started.elapsed() >= limit {
            break None;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let took = started.elapsed();
    let cpu = match (cpu_before, server.pid().and_then(cpu_seconds)) {
        (Some(a), Some(b)) => format!("{:.1}", b - a),
        _ => "?".to_string(),
    };
    match done {
        Some(text) => {
            let before: f64 = samples(&text, "pnpr_recompress_bytes_before_total ").sum();
            let after: f64 = samples(&text, "pnpr_recompress_bytes_after_total ").sum();
            eprintln!(
                "settled {name}: recompression pass done in {:.1} s wall, {cpu} server CPU s; \
                 replaced members {:.3} -> {:.3} MB",
                took.as_secs_f64(),
                before / 1e6,
                after / 1e6
            );
        }
        None => eprintln!(
            "settled {name}: recompression pass not done after {:.1} s ({cpu} server CPU s)",
            took.as_secs_f64()
        ),
    }
}

/// Values of the exposition lines starting with `prefix`.
fn samples<'a>(text: &'a str, prefix: &'a str) -> impl Iterator<Item = f64> + 'a {
    text.lines()
        .filter(move |l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.trim().parse().ok())
}

/// User plus system CPU seconds of process `pid` (all its threads).
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name: utime is the 14th field
    // of the line, stime the 15th.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    let tck = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())?;
    Some((utime + stime) / tck)
}
