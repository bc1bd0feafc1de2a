//! Real-world lockfile parity (issue 11): every project of
//! `fixtures/real-world/` (served offline from the frozen corpus that
//! `tests/build-real-world.sh` builds) installed by pnpm 11.5.2 directly and
//! through pnpr's `/v1/install` in four modes — `--lockfile-only`, a full
//! install with an empty store, a frozen re-install of pnpm's own lockfile,
//! and an update adding a dependency — must give byte-identical lockfiles,
//! the same `node_modules/.pnpm` and resolvable direct dependencies.
//!
//! The failure message is the parity report (also written to
//! `target/real-world-parity.txt`).

use std::path::Path;

use pnpr_e2e::parity::{self, Mode, Options, Outcome};

/// Projects installed at the same time (the machine has 2 cores; pnpm runs
/// wait on I/O and the server a good part of the time).
const JOBS: usize = 3;

/// Project × mode pairs whose lockfile is known to differ from pnpm's, each
/// explained in RFC 0007 ("Known differences not closed yet"). They are
/// printed in the report; a run error in them, or any other difference,
/// fails the test.
const KNOWN: &[(&str, Mode)] = &[];

#[test]
fn real_world_parity_in_all_four_modes() {
    let opts = Options::defaults(&pnpr_e2e::pnpr::binary_path(), JOBS);
    let projects = parity::corpus::load_projects(&opts.fixtures).expect("corpus manifests");
    assert!(
        projects.len() >= 20,
        "the real-world corpus needs at least 20 projects, found {}",
        projects.len()
    );
    let report = parity::run_corpus(&opts, &|p| {
        eprintln!(
            "real-world parity: {} done in {:.0} s",
            p.name,
            p.elapsed.as_secs_f64()
        );
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let text = report.render();
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/real-world-parity.txt");
    let _ = std::fs::write(&out, &text);
    // The whole server log, for a failure whose cause is far from the tail.
    let log = out.with_extension("pnpr.log");
    let _ = std::fs::write(&log, &report.pnpr_logs);
    eprintln!("{text}");
    let unexpected: Vec<String> = report
        .projects
        .iter()
        .flat_map(|p| p.results.iter().map(move |r| (p.name.as_str(), r)))
        .filter(|(name, r)| match &r.outcome {
            Outcome::Same => false,
            Outcome::Different(_) => !KNOWN.contains(&(*name, r.mode)),
            Outcome::Failed(_) => true,
        })
        .map(|(name, r)| format!("{name} / {}", r.mode.label()))
        .collect();
    assert!(
        unexpected.is_empty(),
        "unexpected differences: {unexpected:?}\n{text}\n--- pnpr logs (tail; whole log in {}) ---\n{}",
        log.display(),
        tail(&report.pnpr_logs, 60)
    );
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
