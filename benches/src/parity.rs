//! `pnpr-bench parity`: the real-world lockfile parity report (issue 11).
//! Runs every project of the corpus (pnpm 11.5.2 directly vs through pnpr,
//! four modes; the logic lives in `pnpr_e2e::parity`, shared with the e2e
//! test) and prints, per project × mode, same/different and the first
//! differing lines.
//!
//! Invariant guarded: the report only ever talks to loopback (the corpus is
//! served by an offline Verdaccio); it exits non-zero when any mode differs,
//! so scripts can gate on it.
//!
//! Usage: `pnpr-bench parity --corpus tests/.corpus/real-world [--fixtures
//! fixtures/real-world] [--jobs 3] [--only next-react,express] [--pnpr
//! target/release/pnpr] [--out /tmp/parity-report.txt] [--pnpr-log
//! /tmp/pnpr.log]`

use std::path::PathBuf;

use pnpr_e2e::parity::{self, Options};

const USAGE: &str = "pnpr-bench parity --corpus DIR [--fixtures DIR] [--jobs N] [--only a,b] [--pnpr BIN] [--out FILE] [--pnpr-log FILE] [--client PNPM_VERSION (default 11.5.2; later ones use the v0 protocol)]";

pub fn run(args: Vec<String>) {
    let mut opts = Options::defaults(&PathBuf::new(), 3);
    let mut out: Option<PathBuf> = None;
    let mut pnpr_log: Option<PathBuf> = None;
    let mut it = args.into_iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| crate::fail(USAGE));
        match flag.as_str() {
            "--corpus" => opts.storage = PathBuf::from(value()).join("storage"),
            "--fixtures" => opts.fixtures = PathBuf::from(value()),
            "--jobs" => opts.jobs = value().parse().unwrap_or_else(|_| crate::fail(USAGE)),
            "--only" => opts.only = value().split(',').map(str::to_string).collect(),
            "--pnpr" => opts.pnpr_binary = PathBuf::from(value()),
            "--out" => out = Some(PathBuf::from(value())),
            "--pnpr-log" => pnpr_log = Some(PathBuf::from(value())),
            "--client" => opts.client = value(),
            _ => crate::fail(&format!("unknown argument {flag}\n{USAGE}")),
        }
    }
    if opts.pnpr_binary.as_os_str().is_empty() {
        opts.pnpr_binary = crate::release_binary();
    }
    let report = parity::run_corpus(&opts, &|p| {
        eprintln!(
            "parity: {} done in {:.0} s",
            p.name,
            p.elapsed.as_secs_f64()
        );
    })
    .unwrap_or_else(|e| crate::fail(&e));
    let text = report.render();
    if let Some(path) = out {
        if let Err(e) = std::fs::write(&path, &text) {
            eprintln!("pnpr-bench: cannot write {}: {e}", path.display());
        }
    }
    // pnpr's own log explains server-side failures (503s, refusals).
    if let Some(path) = pnpr_log {
        if let Err(e) = std::fs::write(&path, &report.pnpr_logs) {
            eprintln!("pnpr-bench: cannot write {}: {e}", path.display());
        }
    }
    println!("{text}");
    if report.failures() > 0 {
        std::process::exit(1);
    }
}
