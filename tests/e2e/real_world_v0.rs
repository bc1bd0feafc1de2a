//! Real-world lockfile parity through the v0 resolve protocol (issue 12):
//! a representative slice of `fixtures/real-world/` installed by pnpm
//! 12.23.0 directly and through `POST /-/pnpr/v0/resolve` in the same four
//! modes as `real_world.rs` (lockfile only, full install with an empty
//! store, frozen re-install of pnpm's own lockfile, update) must give
//! byte-identical lockfiles, the same `node_modules/.pnpm` and resolvable
//! direct dependencies.
//!
//! The slice is chosen to be cheap (well under two minutes) while covering
//! the rules that differ between pnpm generations: the compatibility
//! database and meta-only optional peers (`express`, `optional-peers-debug`,
//! RFC 0007 R14/R15/R17), `npm:` aliases, and a workspace whose projects
//! declare their own `peerDependencies` (sent by pnpm 12 only, R6). The
//! whole corpus with any client is `pnpr-bench parity --client VERSION`
//! (README "Real-world parity corpus").

use std::path::Path;

use pnpr_e2e::parity::{self, Options, Outcome};

/// Projects installed at the same time (2 cores; pnpm waits on I/O).
const JOBS: usize = 2;

/// The client: the latest pnpm, which speaks only the v0 protocol.
const CLIENT: &str = "12.23.0";

/// The slice (see the module docs for why these).
const SLICE: &[&str] = &[
    "aliases",
    "express",
    "optional-peers-debug",
    "workspace-peers",
];

#[test]
fn real_world_slice_through_v0_with_pnpm_12() {
    let mut opts = Options::defaults(&pnpr_e2e::pnpr::binary_path(), JOBS);
    opts.client = CLIENT.to_string();
    opts.only = SLICE.iter().map(|s| s.to_string()).collect();
    let report = parity::run_corpus(&opts, &|p| {
        eprintln!(
            "real-world v0 parity: {} done in {:.0} s",
            p.name,
            p.elapsed.as_secs_f64()
        );
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let text = report.render();
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/real-world-parity-v0.txt");
    let _ = std::fs::write(&out, &text);
    // The whole server log, for a failure whose cause is far from the tail.
    let log = out.with_extension("pnpr.log");
    let _ = std::fs::write(&log, &report.pnpr_logs);
    eprintln!("{text}");
    let ran: Vec<&str> = report.projects.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(ran, SLICE, "every project of the slice ran");
    let not_same: Vec<String> = report
        .projects
        .iter()
        .flat_map(|p| p.results.iter().map(move |r| (p.name.as_str(), r)))
        .filter(|(_, r)| !matches!(r.outcome, Outcome::Same))
        .map(|(name, r)| format!("{name} / {}", r.mode.label()))
        .collect();
    let modes: usize = report.projects.iter().map(|p| p.results.len()).sum();
    assert_eq!(modes, SLICE.len() * 4, "four modes per project\n{text}");
    assert!(
        not_same.is_empty(),
        "differences through v0: {not_same:?}\n{text}\n--- pnpr logs (tail; whole log in {}) ---\n{}",
        log.display(),
        tail(&report.pnpr_logs, 60)
    );
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
