//! The four parity modes of one corpus project, run with pnpm 11.5.2 once
//! directly against the offline registry and once with `--pnpr-server`:
//!
//! * `lockfile-only`: `install --lockfile-only`;
//! * `full`: a full install with an empty store;
//! * `frozen`: `install --frozen-lockfile` with pnpm's own lockfile, an empty
//!   store and no `node_modules`;
//! * `update`: the project's update dependency added to the manifest of a
//!   frozen-installed project, then `install`.
//!
//! Invariant guarded: both sides get identical manifests, flags and inputs
//! (the same direct lockfile for `frozen` and `update`), and every pnpr-side
//! run starts with an empty store of its own. The direct side runs only what
//! its answer needs: its full install is the reference for `lockfile-only`
//! (pnpm writes the same lockfile either way) and, self-bins aside, for
//! `frozen` (a headless install of its own lockfile); the direct store and
//! metadata cache are shared between projects, which changes no result
//! because the registry is frozen.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::compare::{diff_excerpt, direct_dependencies, pnpm_tree, tree_excerpt, RESOLVE_SCRIPT};
use super::corpus::CorpusProject;
use super::{Mode, ModeResult, Outcome, ProjectReport};
use crate::Project;

/// Bound on one pnpm run of a real project.
const RUN_TIMEOUT: Duration = Duration::from_secs(900);

/// Where one project's runs go.
#[derive(Debug, Clone)]
pub struct Endpoints {
    /// The offline registry (`http://127.0.0.1:PORT/`).
    pub registry: String,
    /// pnpr, whose uplink is that registry.
    pub pnpr: String,
    /// Store and metadata cache shared by the direct runs.
    pub direct_store: PathBuf,
    pub direct_cache: PathBuf,
    /// The pnpm version both sides run.
    pub client: String,
    /// pnpr token for the v0 protocol's clients (written to `.npmrc` on the
    /// pnpr side only).
    pub token: Option<String>,
}

/// What a side produced: lockfile text and `.pnpm` tree.
struct State {
    lockfile: String,
    tree: BTreeMap<String, String>,
}

/// Runs all four modes of `project`.
pub fn run_project(project: &CorpusProject, ends: &Endpoints) -> ProjectReport {
    let started = Instant::now();
    let mut results = Vec::new();
    let direct = match run_direct(project, ends) {
        Ok(pair) => pair,
        Err(why) => {
            for mode in Mode::ALL {
                results.push(ModeResult::new(mode, Outcome::Failed(why.clone())));
            }
            return ProjectReport::new(&project.name, results, started.elapsed());
        }
    };
    let (full, updated) = direct;
    results.push(lockfile_only(project, ends, &full));
    results.push(full_install(project, ends, &full));
    let (frozen, frozen_project) = frozen_install(project, ends, &full);
    results.push(frozen);
    results.push(update(project, ends, &full, updated, frozen_project));
    ProjectReport::new(&project.name, results, started.elapsed())
}

type DirectStates = (State, Result<State, String>);

/// Direct full install, then the update on top of it.
fn run_direct(project: &CorpusProject, ends: &Endpoints) -> Result<DirectStates, String> {
    let client = new_client(project, Some(ends))?;
    install(&client, ends, Side::Direct, &[]).map_err(|e| format!("direct full install: {e}"))?;
    let full = state(&client)?;
    if let Some(bad) = unresolvable(&client)? {
        return Err(format!(
            "direct full install leaves unresolvable deps: {bad}"
        ));
    }
    let updated = direct_update(project, ends, &full).map_err(|e| format!("direct update: {e}"));
    Ok((full, updated))
}

/// The update from the same starting state the pnpr side has (a frozen
/// install of pnpm's lockfile): a resolving install leaves other entries in
/// `.pnpm` behind (orphaned peer variants stay) than a headless one.
fn direct_update(project: &CorpusProject, ends: &Endpoints, full: &State) -> Result<State, String> {
    let client = new_client(project, Some(ends))?;
    client.write_file("pnpm-lock.yaml", &full.lockfile);
    install(&client, ends, Side::Direct, &["--frozen-lockfile"])?;
    project.apply_update(&client)?;
    install(&client, ends, Side::Direct, &[])?;
    state(&client)
}

fn lockfile_only(project: &CorpusProject, ends: &Endpoints, want: &State) -> ModeResult {
    let outcome = (|| {
        let client = new_client(project, None)?;
        install(&client, ends, Side::Pnpr, &["--lockfile-only"])?;
        Ok(compare_lockfile(want, &client))
    })();
    ModeResult::new(Mode::LockfileOnly, outcome.unwrap_or_else(Outcome::Failed))
}

fn full_install(project: &CorpusProject, ends: &Endpoints, want: &State) -> ModeResult {
    let outcome = (|| {
        let client = new_client(project, None)?;
        install(&client, ends, Side::Pnpr, &[])?;
        compare_all(want, &client)
    })();
    ModeResult::new(Mode::Full, outcome.unwrap_or_else(Outcome::Failed))
}

fn frozen_install(
    project: &CorpusProject,
    ends: &Endpoints,
    want: &State,
) -> (ModeResult, Option<Project>) {
    let run = || -> Result<(Outcome, Project), String> {
        let client = new_client(project, None)?;
        client.write_file("pnpm-lock.yaml", &want.lockfile);
        install(&client, ends, Side::Pnpr, &["--frozen-lockfile"])?;
        Ok((compare_all(want, &client)?, client))
    };
    match run() {
        Ok((outcome, client)) => (ModeResult::new(Mode::Frozen, outcome), Some(client)),
        Err(why) => (ModeResult::new(Mode::Frozen, Outcome::Failed(why)), None),
    }
}

fn update(
    project: &CorpusProject,
    ends: &Endpoints,
    full: &State,
    want: Result<State, String>,
    frozen: Option<Project>,
) -> ModeResult {
    let outcome = (|| {
        let want = want?;
        // The frozen-installed project when there is one; else the same
        // starting point without node_modules (lockfile + manifests).
        let client = match frozen {
            Some(client) => client,
            None => {
                let client = new_client(project, None)?;
                client.write_file("pnpm-lock.yaml", &full.lockfile);
                client
            }
        };
        project.apply_update(&client)?;
        install(&client, ends, Side::Pnpr, &[])?;
        compare_all(&want, &client)
    })();
    ModeResult::new(Mode::Update, outcome.unwrap_or_else(Outcome::Failed))
}

#[derive(Clone, Copy, PartialEq)]
enum Side {
    Direct,
    Pnpr,
}

/// A fresh client project; the direct side shares `ends`' store and cache.
fn new_client(project: &CorpusProject, shared: Option<&Endpoints>) -> Result<Project, String> {
    let mut client = project.materialize()?;
    client.set_timeout(RUN_TIMEOUT);
    if let Some(ends) = shared {
        client.set_env(
            "pnpm_config_store_dir",
            &ends.direct_store.to_string_lossy(),
        );
        client.set_env(
            "pnpm_config_cache_dir",
            &ends.direct_cache.to_string_lossy(),
        );
    }
    Ok(client)
}

/// `pnpm install` with the flags both sides share, plus `extra`.
fn install(client: &Project, ends: &Endpoints, side: Side, extra: &[&str]) -> Result<(), String> {
    // Neither switch is about resolution, and both sides get both:
    // - pnpm 11 fails a full install whose dependencies have unapproved
    //   build scripts (ERR_PNPM_IGNORED_BUILDS); make that a warning;
    // - pnpm 11.5.2 crashes after a successful pnpr install in a project with
    //   a pnpm-workspace.yaml ("reading 'filter'") in the manifest-saving
    //   step, which `install` never needs.
    // Through pnpr the registry is pnpr itself (it refuses to resolve for
    // a registry it does not serve); the lockfile records no registry URL.
    let mut args = vec![
        "install",
        "--config.strict-dep-builds=false",
        "--config.save=false",
    ];
    match side {
        Side::Direct => args.extend(["--registry", &ends.registry]),
        Side::Pnpr => args.extend(["--registry", &ends.pnpr, "--pnpr-server", &ends.pnpr]),
    }
    args.extend_from_slice(extra);
    if let (Side::Pnpr, Some(token)) = (side, &ends.token) {
        let host = ends.pnpr.trim_start_matches("http:");
        let own = std::fs::read_to_string(client.path().join(".npmrc")).unwrap_or_default();
        if !own.contains(token.as_str()) {
            client.write_file(".npmrc", &format!("{own}\n{host}:_authToken={token}\n"));
        }
    }
    let out = client.pnpm_v(&ends.client, &args);
    if out.success() {
        Ok(())
    } else {
        Err(format!(
            "pnpm {} failed:\n{}",
            args.join(" "),
            tail(&out.combined(), 30)
        ))
    }
}

fn state(client: &Project) -> Result<State, String> {
    let lockfile = std::fs::read_to_string(client.path().join("pnpm-lock.yaml"))
        .map_err(|e| format!("pnpm-lock.yaml: {e}"))?;
    Ok(State {
        lockfile,
        tree: pnpm_tree(&client.path())?,
    })
}

fn compare_lockfile(want: &State, client: &Project) -> Outcome {
    match std::fs::read_to_string(client.path().join("pnpm-lock.yaml")) {
        Err(e) => Outcome::Different(format!("no pnpm-lock.yaml: {e}")),
        Ok(got) => match diff_excerpt(&want.lockfile, &got) {
            None => Outcome::Same,
            Some(diff) => Outcome::Different(format!("pnpm-lock.yaml differs:\n{diff}")),
        },
    }
}

/// Lockfile, `.pnpm` tree and direct dependencies, every difference listed.
fn compare_all(want: &State, client: &Project) -> Result<Outcome, String> {
    let mut diffs = Vec::new();
    if let Outcome::Different(d) = compare_lockfile(want, client) {
        diffs.push(d);
    }
    if let Some(d) = tree_excerpt(&want.tree, &pnpm_tree(&client.path())?) {
        diffs.push(d);
    }
    if let Some(bad) = unresolvable(client)? {
        diffs.push(format!("direct dependencies not resolvable: {bad}"));
    }
    Ok(if diffs.is_empty() {
        Outcome::Same
    } else {
        Outcome::Different(diffs.join("\n"))
    })
}

/// The direct dependencies (per importer) that neither `import` nor
/// `require` resolves, or `None` when all do.
fn unresolvable(client: &Project) -> Result<Option<String>, String> {
    let root = client.path();
    let mut by_importer: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (importer, name) in direct_dependencies(&root)? {
        by_importer.entry(importer).or_default().push(name);
    }
    let mut bad = Vec::new();
    for (importer, names) in by_importer {
        let script = Path::new(&importer).join(".pnpr-parity-resolve.mjs");
        let script = script.to_string_lossy().to_string();
        client.write_file(&script, RESOLVE_SCRIPT);
        let mut args = vec![script.as_str()];
        args.extend(names.iter().map(String::as_str));
        let out = client.node(&args);
        let _ = std::fs::remove_file(root.join(&script));
        if !out.success() {
            let names: Vec<&str> = out.stdout.lines().collect();
            bad.push(format!(
                "{importer}: {}",
                if names.is_empty() {
                    out.stderr.clone()
                } else {
                    names.join(", ")
                }
            ));
        }
    }
    Ok((!bad.is_empty()).then(|| bad.join("; ")))
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
