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
//!   `cargo run --release -p pnpr-bench -- peers [--runs N] [--warmup N]
//!       [--latency-ms MS] [--rate-mbit MBIT] [--only direct,verdaccio,pnpr,v1|v0,base] [--client PNPM_VERSION (default 11.5.2)]
//!       [--project DIR] [--json FILE] [--upstream-storage DIR] [--per-connection-rate]
//!       [--upstream-latency-ms MS] [--pnpr BIN (default target/release/pnpr)] [--base-pnpr OTHER_BIN]
//!       [--store cold|warm|both] [--server cold|warm|both] [--lockfile no|yes|both]`
//!   `cargo run --release -p pnpr-bench -- load [--seconds S] [--connections C]
//!       [--threads T] [--json FILE]`
//!   `cargo run --release -p pnpr-bench -- scale [--seconds S] [--connections C] [--runs ROUNDS] [--json FILE]`
//!       (1 vs 2 nodes on PostgreSQL + s3rver through a round-robin balancer, pinned with taskset; see `scale`)
//!   `cargo run --release -p pnpr-bench -- shape-check [--latency-ms MS] [--rate-mbit MBIT]
//!       [--per-connection-rate]`
//!   `cargo run --release -p pnpr-bench -- frames --upstream-storage DIR [--project DIR]` (where
//!       a cold client's body bytes go, per header shape and member encoding, vs the
//!       tarballs; `DIR/pnpm-lock.yaml`, when present, picks the tarballs and is the
//!       header's lockfile; see `frames`)
//!   `cargo run --release -p pnpr-bench -- resolve --upstream-storage DIR --project DIR [--runs N]`
//!       (resolver time per tree, packuments in memory; DIR may hold several projects)
//!   `cargo run --release -p pnpr-bench -- login-storm [--runs N]` (N bad passwords per
//!       attacking client, default 40)
//!
//! The rate is a shared link per direction (all connections through one
//! shaper split it) unless `--per-connection-rate` gives every connection
//! its own. `--upstream-storage DIR` replaces registry-mock by an offline
//! Verdaccio serving a copy of the storage folder DIR (the large corpus,
//! `benches/build-corpus.sh`).
//!
//! `peers` compares pnpm 11.5.2 direct / via Verdaccio / via pnpr `/` / via
//! pnpr `/v1/install` (or, with `--client 12.23.0` or any later pnpm, via the
//! v0 resolve protocol instead of `/v1/install`) behind a latency + bandwidth shaping proxy of our own
//! (see `shaper`); `load` measures warm-cache req/s and latency of pnpr vs
//! Verdaccio with wrk; `shape-check` only measures the shaping proxy.
//!
//! `auth` times warm-server `POST /v1/install` requests of one project,
//! anonymous vs authenticated (public tree, and a mixed tree that also pulls
//! a private package through an access-bearing uplink), to show that
//! authenticated callers hit the resolution cache as often as anonymous ones.
//!
//! `parity --corpus DIR [--fixtures DIR] [--jobs N] [--only a,b] [--pnpr BIN] [--out FILE]`
//! prints the real-world lockfile parity report (issue 11; see `parity.rs`).
//!
//! `login-storm` measures `/-/ping` p50/p95 while 8 clients send bad `Basic`
//! passwords (see `login_storm`).

mod auth;
mod balancer;
mod disk;
mod floor;
mod frames;
mod load;
mod login_storm;
mod parity;
mod peers;
mod resolve;
mod scale;
mod settle;
mod shaper;
mod verdaccio;

use std::path::{Path, PathBuf};
use std::time::Duration;

use pnpr_e2e::{Pnpr, Project, RegistryMock};

struct Args {
    mode: String,
    runs: Option<usize>,
    warmup: usize,
    project: PathBuf,
    latency_ms: u64,
    rate_mbit: u64,
    only: Option<String>,
    json: Option<PathBuf>,
    seconds: u64,
    connections: usize,
    threads: usize,
    upstream_storage: Option<PathBuf>,
    per_connection_rate: bool,
    warm_store: Option<bool>,
    warm_server: Option<bool>,
    lockfile: Option<bool>,
    /// pnpm version for `peers`.
    client: String,
    /// `peers`: one-way latency between pnpr and the upstream.
    upstream_latency_ms: u64,
    /// `peers`: the pnpr binary to run.
    pnpr: Option<PathBuf>,
    /// `peers`: another pnpr build, run as the extra target `base`.
    base_pnpr: Option<PathBuf>,
    /// `peers`: write each pnpr's request log (info level) into this folder.
    server_log: Option<PathBuf>,
    /// `peers`: after each pnpr's population install, wait up to this many
    /// seconds for its idle-time member recompression to finish.
    settle_s: u64,
}

const USAGE: &str = "pnpr-bench [install|auth|peers|load|scale|shape-check|login-storm|frames|resolve] [--runs N] [--warmup N] \
[--project DIR] [--latency-ms MS (one way, default 25)] [--rate-mbit MBIT (default 200, 0 = unlimited)] \
[--per-connection-rate] [--upstream-latency-ms MS (pnpr to upstream, one way, default 0)] [--pnpr BIN] [--base-pnpr BIN] [--server-log DIR] [--settle S (peers: wait for the idle recompression pass after populating)] [--store cold|warm|both] [--server cold|warm|both] [--lockfile no|yes|both] [--only direct,verdaccio,pnpr,v1|v0,base] [--client PNPM_VERSION (default 11.5.2)] [--json FILE] [--upstream-storage DIR] \
[--seconds S] [--connections C] [--threads T]";

fn parse_args() -> Args {
    let mut a = Args {
        mode: "install".to_string(),
        runs: None,
        warmup: 1,
        project: Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/projects/bench-large"),
        latency_ms: 25,
        rate_mbit: 200,
        only: None,
        json: None,
        seconds: 10,
        connections: 32,
        threads: 2,
        upstream_storage: None,
        per_connection_rate: false,
        warm_store: None,
        warm_server: None,
        lockfile: None,
        client: "11.5.2".to_string(),
        upstream_latency_ms: 0,
        pnpr: None,
        base_pnpr: None,
        server_log: None,
        settle_s: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let num = |it: &mut std::iter::Skip<std::env::Args>| -> u64 {
            it.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| fail(&format!("{flag} needs a number\n{USAGE}")))
        };
        match flag.as_str() {
            "--runs" => a.runs = Some(num(&mut it) as usize),
            "--warmup" => a.warmup = num(&mut it) as usize,
            "--latency-ms" => a.latency_ms = num(&mut it),
            "--rate-mbit" => a.rate_mbit = num(&mut it),
            "--upstream-latency-ms" => a.upstream_latency_ms = num(&mut it),
            "--settle" => a.settle_s = num(&mut it),
            "--seconds" => a.seconds = num(&mut it),
            "--connections" => a.connections = num(&mut it) as usize,
            "--threads" => a.threads = num(&mut it) as usize,
            "--project" => a.project = PathBuf::from(it.next().unwrap_or_else(|| fail(USAGE))),
            "--only" => a.only = Some(it.next().unwrap_or_else(|| fail(USAGE))),
            "--client" => a.client = it.next().unwrap_or_else(|| fail(USAGE)),
            "--server-log" => {
                a.server_log = Some(PathBuf::from(it.next().unwrap_or_else(|| fail(USAGE))))
            }
            "--pnpr" => a.pnpr = Some(PathBuf::from(it.next().unwrap_or_else(|| fail(USAGE)))),
            "--base-pnpr" => {
                a.base_pnpr = Some(PathBuf::from(it.next().unwrap_or_else(|| fail(USAGE))))
            }
            "--upstream-storage" => {
                a.upstream_storage = Some(PathBuf::from(it.next().unwrap_or_else(|| fail(USAGE))))
            }
            "--store" => a.warm_store = half(it.next(), "warm", "cold"),
            "--server" => a.warm_server = half(it.next(), "warm", "cold"),
            "--lockfile" => a.lockfile = half(it.next(), "yes", "no"),
            "--per-connection-rate" => a.per_connection_rate = true,
            "--json" => a.json = Some(PathBuf::from(it.next().unwrap_or_else(|| fail(USAGE)))),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            "install" | "auth" | "peers" | "load" | "scale" | "shape-check" | "login-storm"
            | "frames" | "resolve" => a.mode = flag.clone(),
            other => fail(&format!("unknown argument {other}\n{USAGE}")),
        }
    }
    a
}

/// Parses a scenario-dimension filter: `Some(true)` for `on`, `Some(false)`
/// for `off`, `None` for `both`.
fn half(v: Option<String>, on: &str, off: &str) -> Option<bool> {
    match v.as_deref() {
        Some(x) if x == on => Some(true),
        Some(x) if x == off => Some(false),
        Some("both") => None,
        _ => fail(&format!("expected {on}, {off} or both\n{USAGE}")),
    }
}

/// Prints `msg` and aborts the run non-zero: a benchmark that cannot vouch
/// for its figures must not print them. Unwinds rather than calling
/// `process::exit`, so the server guards on the stack are dropped and no
/// registry, Verdaccio or pnpr is left running.
pub(crate) fn fail(msg: &str) -> ! {
    eprintln!("pnpr-bench: {msg}");
    std::panic::resume_unwind(Box::new(()))
}

fn shape_of(a: &Args) -> shaper::Shape {
    shaper::Shape {
        latency: Duration::from_millis(a.latency_ms),
        rate_bps: a.rate_mbit.saturating_mul(1_000_000),
        per_connection: a.per_connection_rate,
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

pub(crate) fn project_from(fixture: &Path) -> Project {
    let text = std::fs::read_to_string(fixture.join("package.json")).expect("fixture package.json");
    let pkg: serde_json::Value = serde_json::from_str(&text).expect("package.json is JSON");
    let mut project = Project::new(&pkg, None);
    project.set_timeout(Duration::from_secs(600));
    project
}

pub(crate) fn config(upstream: &str) -> String {
    format!(
        "uplinks:\n  up:\n    url: {upstream}\n    maxage: 1h\npackages:\n  '**':\n    access: $all\n    publish: $authenticated\n    proxy: up\nlog:\n  level: warn\n"
    )
}

pub(crate) fn count_files(dir: &Path) -> usize {
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
    // `parity` has its own flags (see `parity.rs`).
    if std::env::args().nth(1).as_deref() == Some("parity") {
        parity::run(std::env::args().skip(2).collect());
        return;
    }
    let a = parse_args();
    match a.mode.as_str() {
        "peers" => {
            peers::run(peers::PeersArgs {
                runs: a.runs.unwrap_or(5),
                warmup: a.warmup,
                project: a.project.clone(),
                shape: shape_of(&a),
                only: a.only.clone(),
                json_out: a.json.clone(),
                upstream_storage: a.upstream_storage.clone(),
                warm_store: a.warm_store,
                warm_server: a.warm_server,
                lockfile: a.lockfile,
                client: a.client.clone(),
                upstream_latency: Duration::from_millis(a.upstream_latency_ms),
                pnpr: a.pnpr.clone(),
                base_pnpr: a.base_pnpr.clone(),
                server_log: a.server_log.clone(),
                settle: Duration::from_secs(a.settle_s),
            });
            return;
        }
        "load" => {
            load::run(load::LoadArgs {
                duration: Duration::from_secs(a.seconds),
                connections: a.connections,
                threads: a.threads,
                json_out: a.json.clone(),
            });
            return;
        }
        "scale" => {
            scale::run(scale::ScaleArgs {
                duration: Duration::from_secs(a.seconds),
                connections: a.connections,
                rounds: a.runs.unwrap_or(3),
                json_out: a.json.clone(),
            });
            return;
        }
        "shape-check" => {
            shape_check(&a);
            return;
        }
        "frames" => {
            let storage = a.upstream_storage.clone().unwrap_or_else(|| {
                fail("frames needs --upstream-storage DIR (a Verdaccio storage folder)")
            });
            let lockfile = a.project.join("pnpm-lock.yaml");
            frames::run(&storage, lockfile.is_file().then_some(lockfile.as_path()));
            return;
        }
        "resolve" => {
            let storage = a.upstream_storage.clone().unwrap_or_else(|| {
                fail("resolve needs --upstream-storage DIR (a Verdaccio storage folder)")
            });
            resolve::run(
                &storage,
                std::slice::from_ref(&a.project),
                a.runs.unwrap_or(5),
            );
            return;
        }
        "login-storm" => {
            login_storm::run(a.runs.unwrap_or(40));
            return;
        }
        _ => {}
    }
    let args = Legacy {
        mode: a.mode.clone(),
        runs: a.runs.unwrap_or(5),
        project: a.project.clone(),
    };
    let bin = release_binary();
    if args.mode == "auth" {
        auth::run(&bin, &args.project, args.runs);
        return;
    }
    run_install(&bin, &args.project, args.runs);
}

/// The `install` mode: pnpm 11.5.2 direct vs `/v1/install`, cold and warm
/// server and store, interleaved runs.
fn run_install(bin: &Path, project: &Path, runs: usize) {
    let mock = RegistryMock::start();
    let fixture = project.to_path_buf();
    eprintln!("project: {}", fixture.display());

    let mut scenarios = install_scenarios();
    // Warm server shared by the warm scenarios.
    let warm = Pnpr::try_start_with(bin, &config(&mock.url), &[]).unwrap_or_else(|f| {
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
    for run in 0..runs {
        eprintln!("run {}/{}", run + 1, runs);
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
        let cold = Pnpr::try_start_with(bin, &config(&mock.url), &[]).unwrap_or_else(|f| {
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

    print_install_table(&scenarios);
}

/// The five measured cases, in table order.
fn install_scenarios() -> Vec<Scenario> {
    [
        "direct, cold store",
        "direct, warm store",
        "/v1/install, cold server, cold store",
        "/v1/install, warm server, cold store",
        "/v1/install, warm server, warm store",
    ]
    .into_iter()
    .map(|name| Scenario {
        name,
        samples: vec![],
    })
    .collect()
}

/// The markdown table and its JSON.
fn print_install_table(scenarios: &[Scenario]) {
    println!("| scenario | median | min | max | runs |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    let mut json = Vec::new();
    for s in scenarios {
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

/// Arguments of the original `install`/`auth` modes.
struct Legacy {
    mode: String,
    runs: usize,
    project: PathBuf,
}

fn shape_check(a: &Args) {
    let shape = shape_of(a);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail(&format!("tokio runtime: {e}")));
    let c = rt
        .block_on(shaper::self_check(shape, 8 << 20))
        .unwrap_or_else(|e| fail(&format!("shaper self-check: {e}")));
    // Aborts unless the measured figures match the configured ones.
    peers::print_check(&shape, &c);
}
