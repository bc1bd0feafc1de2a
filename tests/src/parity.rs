//! Real-world lockfile parity (issue 11): every project of the corpus in
//! `fixtures/real-world/`, served offline from the frozen storage
//! `tests/build-real-world.sh` builds, installed with pnpm 11.5.2 directly
//! and through pnpr in four modes (see [`modes`]), and the report of what
//! differs. Shared by the e2e test `real_world` and `pnpr-bench parity`.
//!
//! Invariant guarded: everything runs against loopback only (an offline
//! Verdaccio and a pnpr whose one uplink is that Verdaccio), and a result is
//! `same` only when the lockfile is byte-identical, the `.pnpm` tree matches
//! (self-bins aside) and every direct dependency resolves.

pub mod compare;
pub mod corpus;
pub mod modes;
pub mod offline;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::Pnpr;
use corpus::CorpusProject;
use modes::Endpoints;
use offline::OfflineRegistry;

/// One of the four ways a project is installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    LockfileOnly,
    Full,
    Frozen,
    Update,
}

impl Mode {
    pub const ALL: [Mode; 4] = [Mode::LockfileOnly, Mode::Full, Mode::Frozen, Mode::Update];

    pub fn label(self) -> &'static str {
        match self {
            Mode::LockfileOnly => "lockfile-only",
            Mode::Full => "full",
            Mode::Frozen => "frozen",
            Mode::Update => "update",
        }
    }
}

/// How one mode of one project compared.
#[derive(Debug, Clone)]
pub enum Outcome {
    Same,
    /// Both sides installed; the text says what differs (diff excerpts).
    Different(String),
    /// A run failed, so nothing could be compared; the text says which.
    Failed(String),
}

#[derive(Debug, Clone)]
pub struct ModeResult {
    pub mode: Mode,
    pub outcome: Outcome,
}

impl ModeResult {
    pub fn new(mode: Mode, outcome: Outcome) -> ModeResult {
        ModeResult { mode, outcome }
    }
}

#[derive(Debug, Clone)]
pub struct ProjectReport {
    pub name: String,
    pub results: Vec<ModeResult>,
    pub elapsed: Duration,
}

impl ProjectReport {
    pub fn new(name: &str, results: Vec<ModeResult>, elapsed: Duration) -> ProjectReport {
        ProjectReport {
            name: name.to_string(),
            results,
            elapsed,
        }
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// `fixtures/real-world` (the projects).
    pub fixtures: PathBuf,
    /// The frozen Verdaccio storage (`tests/.corpus/real-world/storage`).
    pub storage: PathBuf,
    /// The pnpr executable.
    pub pnpr_binary: PathBuf,
    /// Projects run at the same time.
    pub jobs: usize,
    /// Only these project names (all when empty).
    pub only: Vec<String>,
    /// The pnpm both sides install with: 11.5.2 uses `/v1/install`, any
    /// later pnpm the v0 resolve protocol (with a pnpr token).
    pub client: String,
}

impl Options {
    /// The checkout's corpus, `jobs` projects at a time.
    pub fn defaults(pnpr_binary: &Path, jobs: usize) -> Options {
        Options {
            fixtures: corpus::default_fixtures(),
            storage: corpus::default_corpus().join("storage"),
            pnpr_binary: pnpr_binary.to_path_buf(),
            jobs,
            only: Vec::new(),
            client: "11.5.2".to_string(),
        }
    }
}

/// The whole run.
#[derive(Debug)]
pub struct Report {
    pub projects: Vec<ProjectReport>,
    pub elapsed: Duration,
    /// pnpr's log (for failures the server explains).
    pub pnpr_logs: String,
}

impl Report {
    /// Every (project, mode) that is not `same`.
    pub fn failures(&self) -> usize {
        self.projects
            .iter()
            .flat_map(|p| &p.results)
            .filter(|r| !matches!(r.outcome, Outcome::Same))
            .count()
    }

    /// The table (project × mode), then every difference with its excerpt.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let total: usize = self.projects.iter().map(|p| p.results.len()).sum();
        let _ = writeln!(
            out,
            "real-world parity: {} projects × 4 modes, {} of {total} same, {:.0} s",
            self.projects.len(),
            total - self.failures(),
            self.elapsed.as_secs_f64()
        );
        let _ = writeln!(
            out,
            "{:<24} {:<14} {:<14} {:<14} {:<14} secs",
            "project", "lockfile-only", "full", "frozen", "update"
        );
        for p in &self.projects {
            let cell = |m: Mode| match p.results.iter().find(|r| r.mode == m).map(|r| &r.outcome) {
                Some(Outcome::Same) => "same",
                Some(Outcome::Different(_)) => "DIFFERENT",
                Some(Outcome::Failed(_)) => "FAILED",
                None => "-",
            };
            let _ = writeln!(
                out,
                "{:<24} {:<14} {:<14} {:<14} {:<14} {:.0}",
                p.name,
                cell(Mode::LockfileOnly),
                cell(Mode::Full),
                cell(Mode::Frozen),
                cell(Mode::Update),
                p.elapsed.as_secs_f64()
            );
        }
        for p in &self.projects {
            for r in &p.results {
                let (kind, text) = match &r.outcome {
                    Outcome::Same => continue,
                    Outcome::Different(t) => ("different", t),
                    Outcome::Failed(t) => ("failed", t),
                };
                let _ = writeln!(out, "\n=== {} / {}: {kind}\n{text}", p.name, r.mode.label());
            }
        }
        out
    }
}

/// A pnpr user's token when `client` speaks the v0 protocol (it answers
/// identified callers only); `None` for pnpm 11.5.2.
fn pnpr_token(pnpr: &Pnpr, client: &str) -> Result<Option<String>, String> {
    if client == "11.5.2" {
        return Ok(None);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    Ok(Some(rt.block_on(crate::add_user(
        &crate::Http::new(),
        pnpr,
        "parity",
    ))))
}

/// Starts the offline registry and pnpr, then runs every selected project
/// (`jobs` at a time), calling `progress` as each one finishes.
pub fn run_corpus(
    opts: &Options,
    progress: &(dyn Fn(&ProjectReport) + Sync),
) -> Result<Report, String> {
    let started = Instant::now();
    let mut projects = corpus::load_projects(&opts.fixtures)?;
    if !opts.only.is_empty() {
        projects.retain(|p| opts.only.contains(&p.name));
    }
    let registry = OfflineRegistry::start(&opts.storage)?;
    let config = format!(
        "uplinks:\n  up:\n    url: {}\n    timeout: 120s\npackages:\n  '**':\n    access: $all\n    publish: $authenticated\n    proxy: up\n",
        registry.url
    );
    // pnpr runs in its own temp dir: a relative path would not find it.
    let binary = std::fs::canonicalize(&opts.pnpr_binary)
        .map_err(|e| format!("{}: {e}", opts.pnpr_binary.display()))?;
    let pnpr = Pnpr::try_start_with(&binary, &config, &[])
        .map_err(|f| format!("pnpr did not start: {}\n{}", f.reason, f.logs))?;
    let shared = tempfile::Builder::new()
        .prefix("pnpr-parity-direct-")
        .tempdir()
        .map_err(|e| format!("temp dir: {e}"))?;
    let ends = Endpoints {
        registry: registry.url.clone(),
        pnpr: pnpr.url.clone(),
        direct_store: shared.path().join("store"),
        direct_cache: shared.path().join("cache"),
        client: opts.client.clone(),
        token: pnpr_token(&pnpr, &opts.client)?,
    };
    let reports = run_all(&projects, &ends, opts.jobs.max(1), progress);
    Ok(Report {
        projects: reports,
        elapsed: started.elapsed(),
        pnpr_logs: pnpr.logs(),
    })
}

fn run_all(
    projects: &[CorpusProject],
    ends: &Endpoints,
    jobs: usize,
    progress: &(dyn Fn(&ProjectReport) + Sync),
) -> Vec<ProjectReport> {
    let next = AtomicUsize::new(0);
    let done = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..jobs.min(projects.len()) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(project) = projects.get(i) else {
                    break;
                };
                let report = modes::run_project(project, ends);
                progress(&report);
                if let Ok(mut done) = done.lock() {
                    done.push(report);
                }
            });
        }
    });
    let mut reports = done.into_inner().unwrap_or_default();
    reports.sort_by(|a, b| a.name.cmp(&b.name));
    reports
}
