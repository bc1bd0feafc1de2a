//! `pnpr-bench`: end-to-end install benchmarks with the real client.
//!
//! Runs pnpm 11.5.2 installing a corpus project directly from registry-mock
//! and through pnpr's `/v1/install` (cold and warm server, cold and warm
//! client store), several interleaved runs per scenario after a warm-up, and
//! prints a markdown table of medians (min/max) plus JSON. It refuses to
//! report a pnpr scenario whose server store stayed empty (the run did not go
//! through pnpr).
//!
//! Usage (build the server first: `cargo build --release -p pnpr`):
//!   `cargo run --release -p pnpr-bench -- install [--runs N] [--project DIR]`
//!   `cargo run --release -p pnpr-bench -- auth [--runs N] [--project DIR]`
//!
//! `auth` times warm-server `POST /v1/install` requests of one project,
//! anonymous vs authenticated (public tree, and a mixed tree that also pulls
//! a private package through an access-bearing uplink), to show that
//! authenticated callers hit the resolution cache as often as anonymous ones.

mod auth;

use std::path::{Path, PathBuf};
use std::time::Duration;

use pnpr_e2e::{Pnpr, Project, RegistryMock};

struct Args {
    mode: String,
    runs: usize,
    project: PathBuf,
}

fn parse_args() -> Args {
    let mut runs = 5;
    let mut project =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/projects/bench-large");
    let mut mode = "install".to_string();
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--runs" => runs = it.next().and_then(|v| v.parse().ok()).unwrap_or(runs),
            "--project" => {
                if let Some(p) = it.next() {
                    project = PathBuf::from(p);
                }
            }
            "-h" | "--help" => {
                println!("pnpr-bench [install|auth] [--runs N] [--project DIR]");
                std::process::exit(0);
            }
            "install" | "auth" => mode = a.clone(),
            other => {
                eprintln!("unknown argument {other}");
                std::process::exit(2);
            }
        }
    }
    Args {
        mode,
        runs,
        project,
    }
}

pub(crate) fn release_binary() -> PathBuf {
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/pnpr");
    if !bin.exists() {
        eprintln!("build the server first: cargo build --release -p pnpr");
        std::process::exit(2);
    }
    bin
}

fn project_from(fixture: &Path) -> Project {
    let text = std::fs::read_to_string(fixture.join("package.json")).expect("fixture package.json");
    let pkg: serde_json::Value = serde_json::from_str(&text).expect("package.json is JSON");
    let mut project = Project::new(&pkg, None);
    project.set_timeout(Duration::from_secs(600));
    project
}

fn config(upstream: &str) -> String {
    format!(
        "uplinks:\n  up:\n    url: {upstream}\n    maxage: 1h\npackages:\n  '**':\n    access: $all\n    publish: $authenticated\n    proxy: up\nlog:\n  level: warn\n"
    )
}

fn count_files(dir: &Path) -> usize {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| {
            let p = e.path();
            if p.is_dir() {
                count_files(&p)
            } else {
                1
            }
        })
        .sum()
}

/// Runs one pnpm install and returns its wall time.
fn timed_install(project: &Project, args: &[&str]) -> Duration {
    let out = project.pnpm11(args);
    if !out.success() {
        eprintln!("install failed:\n{out}");
        std::process::exit(1);
    }
    out.elapsed
}

struct Scenario {
    name: &'static str,
    samples: Vec<Duration>,
}

pub(crate) fn median(v: &[Duration]) -> Duration {
    let mut s = v.to_vec();
    s.sort();
    s[s.len() / 2]
}

fn main() {
    let args = parse_args();
    let bin = release_binary();
    if args.mode == "auth" {
        auth::run(&bin, &args.project, args.runs);
        return;
    }
    let mock = RegistryMock::start();
    let fixture = args.project.clone();
    eprintln!("project: {}", fixture.display());

    let mut scenarios = vec![
        Scenario {
            name: "direct, cold store",
            samples: vec![],
        },
        Scenario {
            name: "direct, warm store",
            samples: vec![],
        },
        Scenario {
            name: "/v1/install, cold server, cold store",
            samples: vec![],
        },
        Scenario {
            name: "/v1/install, warm server, cold store",
            samples: vec![],
        },
        Scenario {
            name: "/v1/install, warm server, warm store",
            samples: vec![],
        },
    ];
    // Warm server shared by the warm scenarios.
    let warm = Pnpr::try_start_with(&bin, &config(&mock.url), &[]).unwrap_or_else(|f| {
        eprintln!("pnpr did not start: {}\n{}", f.reason, f.logs);
        std::process::exit(1);
    });
    let through = |p: &Project, url: &str| {
        timed_install(p, &["install", "--registry", url, "--pnpr-server", url])
    };
    // Warm-up (also warms the server).
    let _ = timed_install(
        &project_from(&fixture),
        &["install", "--registry", &mock.url],
    );
    let _ = through(&project_from(&fixture), &warm.url);
    if count_files(&warm.data_dir.join(".pnpr-cache")) == 0 {
        eprintln!("pnpr's store stayed empty: the install did not go through pnpr");
        std::process::exit(1);
    }
    for run in 0..args.runs {
        eprintln!("run {}/{}", run + 1, args.runs);
        // direct, cold then warm store
        let p = project_from(&fixture);
        scenarios[0]
            .samples
            .push(timed_install(&p, &["install", "--registry", &mock.url]));
        let mut p2 = project_from(&fixture);
        p2.set_env("pnpm_config_store_dir", &p.pnpm_store().to_string_lossy());
        scenarios[1]
            .samples
            .push(timed_install(&p2, &["install", "--registry", &mock.url]));

        // cold server
        let cold = Pnpr::try_start_with(&bin, &config(&mock.url), &[]).unwrap_or_else(|f| {
            eprintln!("pnpr did not start: {}\n{}", f.reason, f.logs);
            std::process::exit(1);
        });
        let p = project_from(&fixture);
        scenarios[2].samples.push(through(&p, &cold.url));
        if count_files(&cold.data_dir.join(".pnpr-cache").join("files")) == 0 {
            eprintln!("cold pnpr stored no files: the install did not go through pnpr");
            std::process::exit(1);
        }
        drop(cold);

        // warm server, cold then warm store
        let p = project_from(&fixture);
        scenarios[3].samples.push(through(&p, &warm.url));
        let mut p2 = project_from(&fixture);
        p2.set_env("pnpm_config_store_dir", &p.pnpm_store().to_string_lossy());
        scenarios[4].samples.push(through(&p2, &warm.url));
    }

    println!("| scenario | median | min | max | runs |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    let mut json = Vec::new();
    for s in &scenarios {
        let min = s.samples.iter().min().copied().unwrap_or_default();
        let max = s.samples.iter().max().copied().unwrap_or_default();
        let med = median(&s.samples);
        println!(
            "| {} | {} ms | {} ms | {} ms | {} |",
            s.name,
            med.as_millis(),
            min.as_millis(),
            max.as_millis(),
            s.samples.len()
        );
        json.push(serde_json::json!({"scenario": s.name, "median_ms": med.as_millis() as u64,
            "min_ms": min.as_millis() as u64, "max_ms": max.as_millis() as u64, "runs": s.samples.len()}));
    }
    println!("\n{}", serde_json::Value::Array(json));
}
