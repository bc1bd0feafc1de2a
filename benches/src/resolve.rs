//! `resolve` mode: how long pnpr's resolver takes per tree, without the
//! network or the disk (issue 13, "resolve_ms per tree size").
//!
//! Every packument under a Verdaccio storage folder is read, parsed and
//! abbreviated once (timed apart: that is the server's per-document cost
//! when a packument is first read), then each project is resolved `runs`
//! times against those documents held in memory, as `pnpr_resolver` does
//! inside `/v1/install` and `/-/pnpr/v0/resolve`. Prints one row per project:
//! packages in the tree, median / min / max milliseconds.
//!
//! Invariant guarded: every run resolves the same inputs to the same tree
//! (the package count is checked on every run), so a figure times the
//! resolver and nothing else. Use `perf record -g target/release/pnpr-bench
//! resolve …` for where the time goes.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use pnpr_resolver::{MetadataSource, ProjectInput, ResolveError, ResolveOptions};
use serde_json::Value;

use crate::{fail, median};

/// Packuments held in memory, as the resolver asks for them.
struct MemSource(HashMap<String, Arc<Value>>);

impl MetadataSource for MemSource {
    fn packument<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Arc<Value>, ResolveError>> {
        Box::pin(async move {
            self.0
                .get(name)
                .cloned()
                .ok_or_else(|| ResolveError::NotFound(name.to_string()))
        })
    }
}

/// Runs the mode: `projects` are directories holding a `package.json`
/// (a directory of such directories is expanded one level).
pub(crate) fn run(storage: &Path, projects: &[PathBuf], runs: usize) {
    let started = Instant::now();
    let (source, bytes) = load(storage);
    let load_time = started.elapsed();
    eprintln!(
        "{} packuments, {:.1} MB, read + parsed + abbreviated in {} ms ({:.2} ms/MB)",
        source.0.len(),
        bytes as f64 / 1e6,
        load_time.as_millis(),
        load_time.as_secs_f64() * 1e3 / (bytes as f64 / 1e6).max(1e-9)
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap_or_else(|e| fail(&format!("runtime: {e}")));
    println!("| project | packages | median | min | max |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    for dir in expand(projects) {
        let Some(input) = project_input(&dir) else {
            eprintln!(
                "{}: skipped (no package.json, or a workspace)",
                dir.display()
            );
            continue;
        };
        let name = dir
            .file_name()
            .map_or_else(|| dir.display().to_string(), |n| n.to_string_lossy().into());
        match time_project(&rt, &source, &input, runs) {
            Ok((packages, times)) => println!(
                "| {name} | {packages} | {} ms | {} | {} |",
                ms(median(&times)),
                ms(*times.iter().min().unwrap_or(&Duration::ZERO)),
                ms(*times.iter().max().unwrap_or(&Duration::ZERO)),
            ),
            Err(e) => eprintln!("{name}: resolution failed: {e}"),
        }
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e3)
}

/// `runs` resolutions of one project; the package count of each must agree.
fn time_project(
    rt: &tokio::runtime::Runtime,
    source: &MemSource,
    input: &ProjectInput,
    runs: usize,
) -> Result<(usize, Vec<Duration>), ResolveError> {
    let opts = ResolveOptions::default();
    let projects = std::slice::from_ref(input);
    let mut times = Vec::with_capacity(runs);
    let mut count = None;
    for _ in 0..runs.max(1) {
        let t = Instant::now();
        let resolution = rt.block_on(pnpr_resolver::resolve(projects, source, &opts))?;
        times.push(t.elapsed());
        let n = resolution.packages.len();
        if count.is_some_and(|c| c != n) {
            fail("two runs of one project resolved different trees");
        }
        count = Some(n);
    }
    Ok((count.unwrap_or(0), times))
}

/// Every `<storage>/<name>/package.json` and `<storage>/@scope/<name>/…`,
/// abbreviated as the server abbreviates; returns the documents and the
/// bytes read.
fn load(storage: &Path) -> (MemSource, u64) {
    let mut docs = HashMap::new();
    let mut bytes = 0u64;
    let entries =
        std::fs::read_dir(storage).unwrap_or_else(|e| fail(&format!("{}: {e}", storage.display())));
    for e in entries.flatten() {
        let top = e.file_name().to_string_lossy().into_owned();
        let dirs: Vec<(String, PathBuf)> = if top.starts_with('@') {
            std::fs::read_dir(e.path())
                .into_iter()
                .flatten()
                .flatten()
                .map(|s| {
                    (
                        format!("{top}/{}", s.file_name().to_string_lossy()),
                        s.path(),
                    )
                })
                .collect()
        } else {
            vec![(top, e.path())]
        };
        for (name, dir) in dirs {
            let Ok(raw) = std::fs::read(dir.join("package.json")) else {
                continue;
            };
            bytes += raw.len() as u64;
            match pnpr_packument::parse(&raw) {
                Ok(doc) => {
                    docs.insert(name, Arc::new(pnpr_packument::abbreviate(&doc)));
                }
                Err(err) => eprintln!("{name}: not a packument ({err})"),
            }
        }
    }
    if docs.is_empty() {
        fail(&format!("no packument under {}", storage.display()));
    }
    (MemSource(docs), bytes)
}

/// Project directories: each given directory with a `package.json`, or its
/// subdirectories that have one.
fn expand(projects: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for p in projects {
        if p.join("package.json").is_file() {
            out.push(p.clone());
            continue;
        }
        let mut subs: Vec<PathBuf> = std::fs::read_dir(p)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|d| d.join("package.json").is_file())
            .collect();
        subs.sort();
        out.extend(subs);
    }
    out
}

/// The root project of `dir`; `None` for a workspace (several importers
/// are not what this mode times).
fn project_input(dir: &Path) -> Option<ProjectInput> {
    if dir.join("pnpm-workspace.yaml").is_file() {
        return None;
    }
    let text = std::fs::read(dir.join("package.json")).ok()?;
    let pkg: Value = serde_json::from_slice(&text).ok()?;
    let group = |key: &str| -> BTreeMap<String, String> {
        pkg.get(key)
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
            .collect()
    };
    Some(ProjectInput {
        dir: ".".into(),
        name: pkg.get("name").and_then(Value::as_str).unwrap_or("").into(),
        version: pkg
            .get("version")
            .and_then(Value::as_str)
            .unwrap_or("")
            .into(),
        dependencies: group("dependencies"),
        dev_dependencies: group("devDependencies"),
        optional_dependencies: group("optionalDependencies"),
        peer_dependencies: group("peerDependencies"),
    })
}
