//! `scale` mode (issue 15): warm-cache throughput of one vs two pnpr nodes
//! sharing one PostgreSQL and one S3 bucket (s3rver), measured with `wrk`
//! through the round-robin balancer of [`crate::balancer`], and straight at
//! one node to show the balancer's own cost.
//!
//! CPU placement on a 2-core machine (`taskset`): this process pins itself
//! to CPU 0 before starting anything, so PostgreSQL, s3rver, the uplink
//! (registry-mock on Verdaccio), the balancer (a one-worker runtime in this
//! process) and wrk (one thread) all run on CPU 0. Nodes start there too
//! (so each sizes its runtime to one core) and are then moved, all their
//! threads, to the CPUs a scenario names: one node on CPU 1; two nodes both
//! on CPU 1 (same cores as one node: what a second node costs); two nodes
//! on CPU 1 and CPU 0 (the second node shares CPU 0 with the load
//! generator). Per-core figures divide by the cores the nodes were given
//! and, independent of other load on the machine, by the CPU time the node
//! processes actually used (`/proc/<pid>/stat`).
//!
//! Invariants guarded: every request of the mix answers 200 on every node
//! and through the balancer before a run; a run whose wrk report shows a
//! non-2xx answer (wrk counts statuses above 399) or a socket error aborts
//! the benchmark; the balancer must have used every node of a scenario.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use pnpr_e2e::postgres::Postgres;
use pnpr_e2e::s3::{S3rver, ACCESS_KEY, SECRET_KEY};
use pnpr_e2e::{Deps, Http, Pnpr, RegistryMock};

use crate::balancer::Balancer;
use crate::load::{parse_wrk, WrkResult};
use crate::{fail, release_binary};

/// Options of the `scale` mode.
pub struct ScaleArgs {
    pub duration: Duration,
    pub connections: usize,
    /// Rounds of all scenarios, interleaved; each scenario reports its
    /// median round (by req/s) and the spread.
    pub rounds: usize,
    pub json_out: Option<PathBuf>,
}

/// One request of the mix: what it is, its path and headers.
struct Probe {
    kind: &'static str,
    path: String,
    headers: Vec<(&'static str, String)>,
}

/// One measured setup: through the balancer or not, and the CPU each node
/// in use is pinned to (its length is the number of nodes).
struct Scenario {
    label: &'static str,
    balancer: bool,
    node_cpus: &'static [usize],
}

const SCENARIOS: [Scenario; 4] = [
    Scenario {
        label: "direct, no balancer",
        balancer: false,
        node_cpus: &[1],
    },
    Scenario {
        label: "balancer, 1 node",
        balancer: true,
        node_cpus: &[1],
    },
    Scenario {
        label: "balancer, 2 nodes on one core",
        balancer: true,
        node_cpus: &[1, 1],
    },
    Scenario {
        label: "balancer, 2 nodes on two cores",
        balancer: true,
        node_cpus: &[1, 0],
    },
];

/// The CPU everything but the nodes runs on.
const LOAD_CPU: usize = 0;
const HOSTED: &str = "pnpr-scale-hosted";
const ABBREVIATED: &str = "application/vnd.npm.install-v1+json";

/// What one scenario measured.
struct Row {
    wrk: WrkResult,
    /// Distinct CPUs the nodes were pinned to.
    node_cores: usize,
    /// CPU time the node processes used per second of the run.
    node_cpu: f64,
    /// CPU time this process (the balancer) used per second of the run.
    balancer_cpu: f64,
    /// Busy share of CPU 0 and CPU 1 over the run (all processes).
    busy: [f64; 2],
    relayed: Vec<u64>,
}

/// Runs the `scale` mode; aborts on any failure.
pub fn run(args: ScaleArgs) {
    pin(std::process::id(), LOAD_CPU);
    let bin = release_binary();
    let pg = Postgres::start();
    let database = pg.create_database("pnpr");
    let s3 = S3rver::start("pnpr-bench");
    let mock = RegistryMock::start();
    let nodes: Vec<Pnpr> = (0..2)
        .map(|_| start_node(&bin, &mock.url, &database, &s3))
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail(&format!("tokio runtime: {e}")));
    let probes = rt.block_on(prepare(&nodes));
    let script = write_script(&probes);
    let mut runs: Vec<Vec<Row>> = SCENARIOS.iter().map(|_| Vec::new()).collect();
    for round in 0..args.rounds.max(1) {
        eprintln!("round {}/{}", round + 1, args.rounds.max(1));
        for (s, out) in SCENARIOS.iter().zip(&mut runs) {
            out.push(measure(&rt, &args, s, &nodes, &probes, script.path()));
        }
    }
    let rows: Vec<(&Scenario, Row, (f64, f64))> = SCENARIOS
        .iter()
        .zip(runs)
        .map(|(s, mut r)| {
            r.sort_by(|x, y| x.wrk.rps.total_cmp(&y.wrk.rps));
            let spread = (r[0].wrk.rps, r[r.len() - 1].wrk.rps);
            let mid = r.swap_remove(r.len() / 2);
            (s, mid, spread)
        })
        .collect();
    print_rows(&args, &probes, &rows);
    print_kinds(&rt, &args, &nodes, &probes);
}

/// Each request of the mix alone, straight at one node on CPU 1: what a
/// node core does per kind (where the mix's cost comes from).
fn print_kinds(rt: &tokio::runtime::Runtime, args: &ScaleArgs, nodes: &[Pnpr], probes: &[Probe]) {
    println!("\nEach request alone, wrk straight at one node on CPU 1 (one round):\n");
    println!("| request | req/s | p50 | p99 | node CPU used | req per node CPU-s |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    for p in probes {
        let one = std::slice::from_ref(p);
        let script = write_script(one);
        let r = measure(rt, args, &SCENARIOS[0], nodes, one, script.path());
        println!(
            "| {} | {:.0} | {:.2} ms | {:.2} ms | {:.2} cores | {:.0} |",
            p.kind,
            r.wrk.rps,
            r.wrk.p50.as_secs_f64() * 1e3,
            r.wrk.p99.as_secs_f64() * 1e3,
            r.node_cpu,
            r.wrk.rps / r.node_cpu.max(1e-9)
        );
    }
}

/// The wrk script for `probes` in a temp file (deleted on drop).
fn write_script(probes: &[Probe]) -> tempfile::NamedTempFile {
    let script = tempfile::Builder::new()
        .prefix("pnpr-bench-scale-")
        .suffix(".lua")
        .tempfile()
        .unwrap_or_else(|e| fail(&format!("temp file: {e}")));
    std::fs::write(script.path(), lua_script(probes))
        .unwrap_or_else(|e| fail(&format!("cannot write the wrk script: {e}")));
    script
}

/// A node on the shared database and bucket with the registry-mock uplink
/// (logging at `warn`, so no per-request log line).
fn start_node(bin: &std::path::Path, uplink: &str, database: &str, s3: &S3rver) -> Pnpr {
    let config = format!(
        "{}database: ${{PNPR_DATABASE}}\nblobs:\n  s3:\n    bucket: {}\n    endpoint: ${{PNPR_S3}}\n    region: us-east-1\n    prefix: bench/\n",
        crate::config(uplink),
        s3.bucket
    );
    let env = [
        ("PNPR_DATABASE", database),
        ("PNPR_S3", s3.endpoint.as_str()),
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
        ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
    ];
    Pnpr::try_start_with(bin, &config, &env)
        .unwrap_or_else(|f| fail(&format!("pnpr did not start: {}\n{}", f.reason, f.logs)))
}

/// Registers a user, publishes the hosted package, builds the mix and
/// warms every node with it (each request answering 200 on each node).
async fn prepare(nodes: &[Pnpr]) -> Vec<Probe> {
    let http = Http::new();
    let token = pnpr_e2e::add_user(&http, &nodes[0], "bench").await;
    pnpr_e2e::publish::publish(&http, &nodes[0].url, &token, HOSTED, "1.0.0", &[]).await;
    let (packument, tarball) = crate::load::pick_probe(&Deps::get().registry_mock_storage)
        .unwrap_or_else(|| fail("no public package with a tarball in registry-mock's storage"));
    let bearer = format!("Bearer {token}");
    let probes = vec![
        Probe {
            kind: "packument (abbreviated)",
            path: packument.clone(),
            headers: vec![("Accept", ABBREVIATED.to_string())],
        },
        Probe {
            kind: "packument (full)",
            path: packument,
            headers: vec![],
        },
        Probe {
            kind: "tarball",
            path: tarball,
            headers: vec![],
        },
        Probe {
            kind: "/-/whoami (token, PostgreSQL)",
            path: "/-/whoami".to_string(),
            headers: vec![("Authorization", bearer.clone())],
        },
        Probe {
            kind: "hosted packument (token, PostgreSQL)",
            path: format!("/{HOSTED}"),
            headers: vec![
                ("Accept", ABBREVIATED.to_string()),
                ("Authorization", bearer),
            ],
        },
    ];
    for node in nodes {
        for _ in 0..3 {
            check_probes(&node.url, &probes).await;
        }
    }
    probes
}

/// Every probe answers 200 at `base`.
async fn check_probes(base: &str, probes: &[Probe]) {
    for p in probes {
        let url = format!("{}{}", base.trim_end_matches('/'), p.path);
        let headers: Vec<(&str, &str)> = p.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = Http::raw().send("GET", &url, &headers, None).await;
        if r.status != 200 {
            fail(&format!(
                "GET {} ({}) at {base} answered {}",
                p.path, p.kind, r.status
            ));
        }
    }
}

/// A wrk script sending the probes in turn on every connection. Requests
/// are formatted in `init`, once `wrk.headers.Host` is known.
fn lua_script(probes: &[Probe]) -> String {
    let q = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
    let mut paths = String::new();
    for p in probes {
        let headers: Vec<String> = p
            .headers
            .iter()
            .map(|(k, v)| format!("[{}] = {}", q(k), q(v)))
            .collect();
        paths.push_str(&format!(
            "  {{ {}, {{ {} }} }},\n",
            q(&p.path),
            headers.join(", ")
        ));
    }
    format!(
        "local probes = {{\n{paths}}}\nlocal reqs = {{}}\nlocal i = 0\n\
         function init(args)\n  for k, p in ipairs(probes) do reqs[k] = wrk.format(\"GET\", p[1], p[2]) end\nend\n\
         function request()\n  i = i % #reqs + 1\n  return reqs[i]\nend\n"
    )
}

/// Pins the nodes, starts the balancer if the scenario has one, checks the
/// mix at the target, and runs wrk against it while sampling CPU use.
fn measure(
    rt: &tokio::runtime::Runtime,
    args: &ScaleArgs,
    s: &Scenario,
    nodes: &[Pnpr],
    probes: &[Probe],
    script: &std::path::Path,
) -> Row {
    let used = &nodes[..s.node_cpus.len()];
    let pids: Vec<u32> = used
        .iter()
        .map(|n| n.pid().unwrap_or_else(|| fail("a node is not running")))
        .collect();
    for (pid, cpu) in pids.iter().zip(s.node_cpus) {
        pin(*pid, *cpu);
    }
    let balancer = s.balancer.then(|| {
        let addrs = used
            .iter()
            .map(|n| std::net::SocketAddr::from(([127, 0, 0, 1], n.port)))
            .collect();
        rt.block_on(Balancer::start(addrs))
            .unwrap_or_else(|e| fail(&format!("balancer: {e}")))
    });
    let target = balancer
        .as_ref()
        .map_or_else(|| used[0].url.clone(), Balancer::url);
    for _ in 0..used.len() * 2 {
        rt.block_on(check_probes(&target, probes));
    }
    let cpu_before: Vec<u64> = pids.iter().map(|p| cpu_ticks(*p)).collect();
    let self_before = cpu_ticks(std::process::id());
    let busy_before = cpu_busy();
    let started = std::time::Instant::now();
    let wrk = run_wrk(args, &target, script);
    let secs = started.elapsed().as_secs_f64();
    let busy_after = cpu_busy();
    let ticks = ticks_per_second();
    let node_ticks: u64 = pids
        .iter()
        .zip(&cpu_before)
        .map(|(p, b)| cpu_ticks(*p).saturating_sub(*b))
        .sum();
    let self_ticks = cpu_ticks(std::process::id()).saturating_sub(self_before);
    let relayed = balancer.as_ref().map(Balancer::relayed).unwrap_or_default();
    if relayed.contains(&0) {
        fail(&format!(
            "{}: the balancer left a node idle: {relayed:?}",
            s.label
        ));
    }
    let mut cores = s.node_cpus.to_vec();
    cores.sort_unstable();
    cores.dedup();
    Row {
        wrk,
        node_cores: cores.len(),
        node_cpu: node_ticks as f64 / ticks / secs,
        balancer_cpu: self_ticks as f64 / ticks / secs,
        busy: [0, 1].map(|c| busy_share(&busy_before, &busy_after, c)),
        relayed,
    }
}

/// wrk with one thread (on this process's CPU) and the probe script.
fn run_wrk(args: &ScaleArgs, target: &str, script: &std::path::Path) -> WrkResult {
    let out = Command::new("wrk")
        .arg("-t1")
        .arg(format!("-c{}", args.connections))
        .arg(format!("-d{}s", args.duration.as_secs().max(1)))
        .arg("--latency")
        .arg("-s")
        .arg(script)
        .arg(target)
        .output()
        .unwrap_or_else(|e| fail(&format!("cannot run wrk (apt-get install wrk): {e}")));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    if !out.status.success() || text.contains("Non-2xx") || text.contains("Socket errors") {
        fail(&format!(
            "wrk against {target} reported errors:\n{text}{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    parse_wrk(&text).unwrap_or_else(|| fail(&format!("cannot parse wrk output:\n{text}")))
}

/// Moves every thread of `pid` to `cpu` (threads it starts later inherit
/// the mask from their creator).
fn pin(pid: u32, cpu: usize) {
    let out = Command::new("taskset")
        .args(["-a", "-cp", &cpu.to_string(), &pid.to_string()])
        .output()
        .unwrap_or_else(|e| fail(&format!("cannot run taskset: {e}")));
    if !out.status.success() {
        fail(&format!(
            "taskset -a -cp {cpu} {pid}: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
}

/// User + system CPU ticks of process `pid` (all its threads).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may contain spaces): state is
    // field 3, utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse().ok())
        .collect();
    f.iter().sum()
}

fn ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// Per CPU: (busy, total) jiffies from `/proc/stat`.
fn cpu_busy() -> Vec<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    stat.lines()
        .filter(|l| l.starts_with("cpu") && !l.starts_with("cpu "))
        .map(|l| {
            let v: Vec<u64> = l
                .split_whitespace()
                .skip(1)
                .filter_map(|x| x.parse().ok())
                .collect();
            let total: u64 = v.iter().take(8).sum();
            // idle and iowait are fields 4 and 5.
            let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
            (total - idle, total)
        })
        .collect()
}

fn busy_share(before: &[(u64, u64)], after: &[(u64, u64)], cpu: usize) -> f64 {
    match (before.get(cpu), after.get(cpu)) {
        (Some(b), Some(a)) if a.1 > b.1 => (a.0 - b.0) as f64 / (a.1 - b.1) as f64,
        _ => 0.0,
    }
}

fn print_rows(args: &ScaleArgs, probes: &[Probe], rows: &[(&Scenario, Row, (f64, f64))]) {
    let kinds: Vec<&str> = probes.iter().map(|p| p.kind).collect();
    println!(
        "\nscale: wrk -t1 -c{} -d{}s on 127.0.0.1, warm caches, median of {} interleaved round(s), requests in turn: {}\n\
         CPU {LOAD_CPU}: wrk, balancer, PostgreSQL, s3rver, uplink; nodes pinned as listed\n",
        args.connections,
        args.duration.as_secs(),
        args.rounds.max(1),
        kinds.join(", ")
    );
    println!("| setup | nodes (CPU) | req/s (min-max) | p50 | p99 | req/s per node-core | node CPU used | req per node CPU-s | balancer CPU | CPU0 / CPU1 busy |");
    println!("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    let mut json = Vec::new();
    for (s, r, (lo, hi)) in rows {
        let cpus: Vec<String> = s.node_cpus.iter().map(|c| c.to_string()).collect();
        let per_core = r.wrk.rps / r.node_cores as f64;
        let per_cpu_s = r.wrk.rps / r.node_cpu.max(1e-9);
        println!(
            "| {} | {} ({}) | {:.0} ({lo:.0}-{hi:.0}) | {:.2} ms | {:.2} ms | {:.0} | {:.2} cores | {:.0} | {:.2} cores | {:.0}% / {:.0}% |",
            s.label,
            s.node_cpus.len(),
            cpus.join(", "),
            r.wrk.rps,
            r.wrk.p50.as_secs_f64() * 1e3,
            r.wrk.p99.as_secs_f64() * 1e3,
            per_core,
            r.node_cpu,
            per_cpu_s,
            r.balancer_cpu,
            r.busy[0] * 100.0,
            r.busy[1] * 100.0
        );
        json.push(
            serde_json::json!({"setup": s.label, "node_cpus": s.node_cpus,
            "rps": r.wrk.rps, "rps_min": lo, "rps_max": hi, "p50_ms": r.wrk.p50.as_secs_f64() * 1e3,
            "p99_ms": r.wrk.p99.as_secs_f64() * 1e3, "requests": r.wrk.requests,
            "rps_per_node_core": per_core, "node_cpu_cores": r.node_cpu,
            "req_per_node_cpu_second": per_cpu_s, "balancer_cpu_cores": r.balancer_cpu,
            "cpu_busy": r.busy, "connections_per_node": r.relayed}),
        );
    }
    let doc = serde_json::json!({"connections": args.connections, "rounds": args.rounds.max(1),
        "duration_s": args.duration.as_secs(), "mix": kinds, "results": json});
    println!("\n{doc}");
    if let Some(path) = &args.json_out {
        if let Err(e) = std::fs::write(path, format!("{doc:#}\n")) {
            fail(&format!("cannot write {}: {e}", path.display()));
        }
    }
}
