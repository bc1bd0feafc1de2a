//! `load` mode: warm-cache request throughput and latency of pnpr vs
//! Verdaccio 6.10.4, measured with `wrk` on loopback (no shaping: the
//! servers, not the link, are under test), plus both servers' peak RSS.
//!
//! Invariant guarded: a figure is only reported if every response was 2xx
//! (wrk's non-2xx counter must be absent) and the body the servers return
//! for the probed URL was fetched once before the timed run (warm cache).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use pnpr_e2e::{Deps, Http, Pnpr, RegistryMock};

use crate::verdaccio::Verdaccio;
use crate::{fail, release_binary};

#[cfg(test)]
mod tests;

/// Options of the `load` mode.
pub struct LoadArgs {
    pub duration: Duration,
    pub connections: usize,
    pub threads: usize,
    pub json_out: Option<std::path::PathBuf>,
}

/// One wrk result.
#[derive(Debug, Clone, Copy, Default)]
pub struct WrkResult {
    pub rps: f64,
    pub p50: Duration,
    pub p99: Duration,
    pub requests: u64,
}

/// Parses wrk's `--latency` report.
pub fn parse_wrk(out: &str) -> Option<WrkResult> {
    let mut r = WrkResult::default();
    let mut have_rps = false;
    for line in out.lines() {
        let t = line.trim();
        if let Some(v) = t.strip_prefix("Requests/sec:") {
            r.rps = v.trim().parse().ok()?;
            have_rps = true;
        } else if let Some(v) = t.strip_prefix("50%") {
            r.p50 = parse_duration(v.trim())?;
        } else if let Some(v) = t.strip_prefix("99%") {
            r.p99 = parse_duration(v.trim())?;
        } else if t.contains("requests in") {
            r.requests = t.split_whitespace().next()?.parse().ok()?;
        }
    }
    have_rps.then_some(r)
}

fn parse_duration(s: &str) -> Option<Duration> {
    let split = s.find(|c: char| c.is_ascii_alphabetic())?;
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let secs = match unit {
        "us" => n / 1e6,
        "ms" => n / 1e3,
        "s" => n,
        "m" => n * 60.0,
        _ => return None,
    };
    Some(Duration::from_secs_f64(secs))
}

/// Peak resident set (VmHWM) of `pid`, in kB.
pub fn peak_rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// The largest public packument of registry-mock's storage and its largest
/// tarball: the most work per request the fixture offers.
pub(crate) fn pick_probe(storage: &Path) -> Option<(String, String)> {
    let mut best: Option<(u64, String, std::path::PathBuf)> = None;
    let mut consider = |name: String, dir: std::path::PathBuf| {
        if name.starts_with("@private/") || name.ends_with("needs-auth") {
            return;
        }
        let Ok(meta) = std::fs::metadata(dir.join("package.json")) else {
            return;
        };
        let has_tgz = std::fs::read_dir(&dir).ok().is_some_and(|rd| {
            rd.flatten()
                .any(|e| e.file_name().to_string_lossy().ends_with(".tgz"))
        });
        if has_tgz && best.as_ref().is_none_or(|b| meta.len() > b.0) {
            best = Some((meta.len(), name, dir));
        }
    };
    for e in std::fs::read_dir(storage).ok()?.flatten() {
        let n = e.file_name().to_string_lossy().to_string();
        if n.starts_with('@') {
            for s in std::fs::read_dir(e.path()).ok()?.flatten() {
                let sn = s.file_name().to_string_lossy().to_string();
                consider(format!("{n}/{sn}"), s.path());
            }
        } else if e.path().is_dir() {
            consider(n, e.path());
        }
    }
    let (_, name, dir) = best?;
    let tgz = std::fs::read_dir(&dir)
        .ok()?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tgz"))
        .max_by_key(|e| e.metadata().map(|m| m.len()).unwrap_or(0))?
        .file_name()
        .to_string_lossy()
        .to_string();
    let packument = format!("/{}", name.replace('/', "%2f"));
    let tarball = format!("/{name}/-/{tgz}");
    Some((packument, tarball))
}

fn wrk(args: &LoadArgs, url: &str, abbreviated: bool) -> WrkResult {
    let mut cmd = Command::new("wrk");
    cmd.arg(format!("-t{}", args.threads))
        .arg(format!("-c{}", args.connections))
        .arg(format!("-d{}s", args.duration.as_secs().max(1)))
        .arg("--latency");
    if abbreviated {
        cmd.arg("-H")
            .arg("Accept: application/vnd.npm.install-v1+json");
    }
    cmd.arg(url);
    let out = cmd
        .output()
        .unwrap_or_else(|e| fail(&format!("cannot run wrk (apt-get install wrk): {e}")));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    if !out.status.success() || text.contains("Non-2xx") || text.contains("Socket errors") {
        fail(&format!(
            "wrk against {url} reported errors:\n{text}{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    parse_wrk(&text).unwrap_or_else(|| fail(&format!("cannot parse wrk output:\n{text}")))
}

/// Runs the `load` mode; exits the process on any failure.
pub fn run(args: LoadArgs) {
    let bin = release_binary();
    let mock = RegistryMock::start();
    let (packument, tarball) = pick_probe(&Deps::get().registry_mock_storage)
        .unwrap_or_else(|| fail("no public package with a tarball in registry-mock's storage"));
    let pnpr = Pnpr::try_start_with(&bin, &crate::config(&mock.url), &[])
        .unwrap_or_else(|f| fail(&format!("pnpr did not start: {}\n{}", f.reason, f.logs)));
    let verdaccio = Verdaccio::start(&mock.url)
        .unwrap_or_else(|e| fail(&format!("Verdaccio did not start: {e}")));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail(&format!("tokio runtime: {e}")));
    let servers: [(&str, &str, u32); 2] = [
        ("pnpr", &pnpr.url, pnpr.pid().unwrap_or(0)),
        ("Verdaccio 6.10.4", &verdaccio.url, verdaccio.pid()),
    ];
    // Warm both caches with the exact requests the load will send.
    for (name, base, _) in servers {
        for (path, accept) in [
            (&packument, Some("application/vnd.npm.install-v1+json")),
            (&packument, None),
            (&tarball, None),
        ] {
            let url = format!("{}{}", base.trim_end_matches('/'), path);
            let headers: Vec<(&str, &str)> = accept.map(|a| ("accept", a)).into_iter().collect();
            let r = rt.block_on(Http::raw().send("GET", &url, &headers, None));
            if r.status != 200 {
                fail(&format!("{name}: GET {path} answered {}", r.status));
            }
        }
    }
    println!(
        "\nload: wrk -t{} -c{} -d{}s on 127.0.0.1, warm cache; packument {packument}, tarball {tarball}\n",
        args.threads,
        args.connections,
        args.duration.as_secs()
    );
    println!("| server | request | req/s | p50 | p99 | requests |");
    println!("| --- | --- | ---: | ---: | ---: | ---: |");
    let mut json = Vec::new();
    for (kind, path, abbreviated) in [
        ("packument (abbreviated)", &packument, true),
        ("packument (full)", &packument, false),
        ("tarball", &tarball, false),
    ] {
        // Interleaved per request kind so both servers see the same machine load.
        for (name, base, _) in servers {
            let url = format!("{}{}", base.trim_end_matches('/'), path);
            let r = wrk(&args, &url, abbreviated);
            println!(
                "| {name} | {kind} | {:.0} | {:.2} ms | {:.2} ms | {} |",
                r.rps,
                r.p50.as_secs_f64() * 1e3,
                r.p99.as_secs_f64() * 1e3,
                r.requests
            );
            json.push(serde_json::json!({"server": name, "request": kind, "rps": r.rps,
                "p50_ms": r.p50.as_secs_f64() * 1e3, "p99_ms": r.p99.as_secs_f64() * 1e3, "requests": r.requests}));
        }
    }
    println!("\n| server | peak RSS (VmHWM) |\n| --- | ---: |");
    let mut rss = Vec::new();
    for (name, _, pid) in servers {
        let kb = peak_rss_kb(pid).unwrap_or(0);
        println!("| {name} | {:.1} MB |", kb as f64 / 1024.0);
        rss.push(serde_json::json!({"server": name, "peak_rss_kb": kb}));
    }
    let doc = serde_json::json!({"threads": args.threads, "connections": args.connections,
        "duration_s": args.duration.as_secs(), "results": json, "peak_rss": rss});
    println!("\n{doc}");
    if let Some(path) = &args.json_out {
        if let Err(e) = std::fs::write(path, format!("{doc:#}\n")) {
            fail(&format!("cannot write {}: {e}", path.display()));
        }
    }
}
