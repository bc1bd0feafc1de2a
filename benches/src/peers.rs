//! `peers` mode: pnpm 11.5.2 installing one project through each peer under
//! a shaped link (latency + bandwidth, see [`crate::shaper`]).
//!
//! Targets: the upstream directly (registry-mock, or with
//! `--upstream-storage` an offline Verdaccio serving a prebuilt storage
//! folder such as the large corpus); Verdaccio 6.10.4 proxying it; pnpr's
//! plain registry proxy (`/`); pnpr's `/v1/install`. Each crossed with
//! client store cold/warm, server cache cold/warm (not for direct) and
//! without/with a lockfile from an earlier run. Samples are interleaved (one
//! of every scenario per round) after warm-up rounds.
//!
//! Invariant guarded: a sample only counts if the client's traffic went
//! through the target's shaper and through no other (every server sits
//! behind its own shaper and counters are checked per sample), and a server
//! that should have cached something (cold store or no lockfile) has a
//! non-empty storage afterwards; otherwise the run aborts loudly.

use std::path::{Path, PathBuf};
use std::time::Duration;

use pnpr_e2e::{Pnpr, Project, RegistryMock};

use crate::shaper::{self, Shape, Shaper, Traffic};
use crate::verdaccio::Verdaccio;
use crate::{count_files, fail, project_from, release_binary};

/// Options of the `peers` mode.
pub struct PeersArgs {
    pub runs: usize,
    pub warmup: usize,
    pub project: PathBuf,
    pub shape: Shape,
    /// Comma-separated target names to keep (`direct,verdaccio,pnpr,v1`).
    pub only: Option<String>,
    pub json_out: Option<PathBuf>,
    /// Serve this Verdaccio storage folder (offline) as the upstream instead
    /// of registry-mock.
    pub upstream_storage: Option<PathBuf>,
    /// Which halves of each dimension to run (`None` = both): client store
    /// warm?, server cache warm?, lockfile present?
    pub warm_store: Option<bool>,
    pub warm_server: Option<bool>,
    pub lockfile: Option<bool>,
    /// The pnpm version every target installs with (`tests/.deps`): 11.5.2
    /// benchmarks `/v1/install`, later ones the v0 resolve protocol.
    pub client: String,
    /// One-way latency between every pnpr and the upstream (a shaper of
    /// its own, unlimited rate); zero connects pnpr to the upstream directly.
    pub upstream_latency: Duration,
    /// The pnpr binary (default `target/release/pnpr`), so two builds can
    /// be compared on one corpus.
    pub pnpr: Option<PathBuf>,
    /// Another pnpr build run as the extra target `base` (the client's
    /// accelerator protocol), interleaved with the others: a same-run A/B.
    pub base_pnpr: Option<PathBuf>,
    /// Runs every pnpr at log level info and writes its log (one request per
    /// line, with timestamps) to `<dir>/<target>.log` after each install.
    pub server_log: Option<PathBuf>,
    /// After each pnpr's population install, wait up to this long for its
    /// idle-time member recompression (RFC 0010 §4b) to finish, so the
    /// measured rounds get the recompressed members; zero does not wait.
    pub settle: Duration,
}

/// The registry every target ultimately reads from; unshaped for the
/// servers, behind a shaper for the direct target.
enum Upstream {
    Mock(RegistryMock),
    Storage(Verdaccio),
}

impl Upstream {
    fn url(&self) -> &str {
        match self {
            Upstream::Mock(m) => &m.url,
            Upstream::Storage(v) => &v.url,
        }
    }
    fn port(&self) -> u16 {
        match self {
            Upstream::Mock(m) => m.port,
            Upstream::Storage(v) => v.port,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Target {
    Direct,
    Verdaccio,
    PnprProxy,
    PnprV1,
    PnprV0,
    /// The client's accelerator protocol on the `--base-pnpr` build.
    PnprBase,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Direct => "direct",
            Target::Verdaccio => "verdaccio",
            Target::PnprProxy => "pnpr",
            Target::PnprV1 => "v1",
            Target::PnprV0 => "v0",
            Target::PnprBase => "base",
        }
    }
    fn label(self) -> &'static str {
        match self {
            Target::Direct => "direct (registry)",
            Target::Verdaccio => "Verdaccio 6.10.4",
            Target::PnprProxy => "pnpr `/`",
            Target::PnprV1 => "pnpr `/v1/install`",
            Target::PnprV0 => "pnpr `/-/pnpr/v0/resolve`",
            Target::PnprBase => "base build, accelerator",
        }
    }

    /// The accelerator target the client speaks: `/v1/install` for pnpm
    /// 11.5.2 only, the v0 resolve protocol for every later pnpm.
    fn accelerator_of(client: &str) -> Target {
        if client == "11.5.2" {
            Target::PnprV1
        } else {
            Target::PnprV0
        }
    }

    /// The protocol a target's installs must use: the base build speaks
    /// the same one as the accelerator target.
    fn protocol(self, client: &str) -> Target {
        match self {
            Target::PnprBase => Target::accelerator_of(client),
            t => t,
        }
    }
}

/// A server of one target plus the shaper in front of it.
enum Backend {
    Mock,
    Verdaccio(Verdaccio),
    Pnpr(Pnpr),
}

struct Live {
    shaper: Shaper,
    backend: Backend,
    /// A pnpr user's token (the v0 protocol answers identified callers only).
    token: Option<String>,
}

impl Live {
    fn storage_files(&self) -> usize {
        match &self.backend {
            Backend::Mock => 1,
            Backend::Verdaccio(v) => count_files(&v.storage()),
            Backend::Pnpr(p) => count_files(&p.data_dir.join(".pnpr-cache")),
        }
    }
}

struct Scenario {
    target: Target,
    cold_server: bool,
    warm_store: bool,
    lockfile: bool,
    samples: Vec<Duration>,
    to_client: Vec<u64>,
}

impl Scenario {
    fn name(&self) -> String {
        format!(
            "{} | {} | {} | {}",
            self.target.label(),
            match (self.target, self.cold_server) {
                (Target::Direct, _) => "n/a",
                (_, true) => "cold",
                (_, false) => "warm",
            },
            if self.warm_store { "warm" } else { "cold" },
            if self.lockfile { "yes" } else { "no" },
        )
    }
}

/// Per-target state prepared by the population install.
struct Prepared {
    target: Target,
    warm: Live,
    lockfile: String,
    /// Keeps the populated store alive; warm-store runs point at it.
    store_owner: Project,
    /// The pnpr data directory's package stores after the population
    /// install (with `--upstream-storage` only).
    disk: Option<crate::disk::DiskUsage>,
}

struct Bench<'a> {
    rt: &'a tokio::runtime::Runtime,
    upstream: &'a Upstream,
    shape: Shape,
    bin: PathBuf,
    base_bin: Option<PathBuf>,
    server_log: Option<PathBuf>,
    settle: Duration,
    fixture: PathBuf,
    client: String,
    /// What pnpr's uplink points at: the upstream, or its shaper.
    uplink_url: String,
    /// SHA-512 → length of the corpus tarballs (`--upstream-storage`).
    corpus_sizes: Option<std::collections::HashMap<String, u64>>,
}

impl Bench<'_> {
    fn start(&self, target: Target) -> Live {
        let upstream = self.upstream.url();
        let shaper = self
            .rt
            .block_on(Shaper::start_pending(self.shape))
            .unwrap_or_else(|e| fail(&format!("cannot start the shaping proxy: {e}")));
        let (port, backend) = match target {
            Target::Direct => (self.upstream.port(), Backend::Mock),
            Target::Verdaccio => {
                let v = Verdaccio::start(upstream)
                    .unwrap_or_else(|e| fail(&format!("Verdaccio did not start: {e}")));
                (v.port, Backend::Verdaccio(v))
            }
            Target::PnprProxy | Target::PnprV1 | Target::PnprV0 | Target::PnprBase => {
                // pnpr builds tarball URLs and checks `/v1/install`'s
                // registry against its public URL: the shaper's.
                let mut config = format!(
                    "public_url: {}\n{}",
                    shaper.url,
                    crate::config(&self.uplink_url)
                );
                if self.server_log.is_some() {
                    config = config.replace("level: warn", "level: info");
                }
                if self.settle.is_zero() {
                    // Without --settle the idle-time pass would re-encode
                    // members in the gaps between rounds, changing the
                    // bytes (and taking a core) mid-benchmark: rounds
                    // measure the cold-path members, as before the pass.
                    config.push_str("installAccelerator:\n  recompress: false\n");
                }
                let bin = match (target, &self.base_bin) {
                    (Target::PnprBase, Some(base)) => base,
                    _ => &self.bin,
                };
                let p = Pnpr::try_start_with(bin, &config, &[]).unwrap_or_else(|f| {
                    fail(&format!("pnpr did not start: {}\n{}", f.reason, f.logs))
                });
                (p.port, Backend::Pnpr(p))
            }
        };
        shaper.set_target_port(port);
        let token = match &backend {
            Backend::Pnpr(p) => Some(self.rt.block_on(pnpr_e2e::add_user(
                &pnpr_e2e::Http::new(),
                p,
                "bench",
            ))),
            _ => None,
        };
        Live {
            shaper,
            backend,
            token,
        }
    }

    /// One timed install through `live`; checks it went through it.
    fn install(
        &self,
        target: Target,
        live: &Live,
        others: &[&Live],
        project: &Project,
    ) -> (Duration, Traffic) {
        live.shaper.reset();
        for o in others {
            o.shaper.reset();
        }
        let url = live.shaper.url.clone();
        if let Some(token) = &live.token {
            let host = url.trim_start_matches("http:");
            project.write_file(".npmrc", &format!("{host}:_authToken={token}\n"));
        }
        let mut args = vec!["install", "--registry", &url];
        if matches!(
            target.protocol(&self.client),
            Target::PnprV1 | Target::PnprV0
        ) {
            args.extend(["--pnpr-server", &url]);
        }
        args.extend(["--config.strict-dep-builds=false", "--config.save=false"]);
        let started = std::time::SystemTime::now();
        let out = project.pnpm_v(&self.client, &args);
        if !out.success() {
            fail(&format!("install via {} failed:\n{out}", target.name()));
        }
        if !project.exists("node_modules/.pnpm") {
            fail(&format!(
                "install via {} left no node_modules",
                target.name()
            ));
        }
        self.save_log(target, live, started);
        let traffic = live.shaper.traffic();
        for o in others {
            let t = o.shaper.traffic();
            if t.connections > 0 {
                fail(&format!(
                    "install via {} also talked to another server: {t:?}",
                    target.name()
                ));
            }
        }
        match target.protocol(&self.client) {
            Target::PnprV1 if traffic.to_client > 0 && !traffic.saw_v1_install => {
                fail("pnpm talked to pnpr without POST /v1/install in the `/v1/install` scenario")
            }
            Target::PnprV0 if traffic.to_client > 0 && !traffic.saw_v0_resolve => {
                fail("pnpm talked to pnpr without POST /-/pnpr/v0/… in the v0 scenario")
            }
            Target::PnprProxy if traffic.saw_v1_install || traffic.saw_v0_resolve => {
                fail("pnpm used an accelerator endpoint in the plain proxy scenario")
            }
            _ => {}
        }
        (out.elapsed, traffic)
    }

    /// `--server-log`: the pnpr's whole log so far, replacing the last copy,
    /// followed by when the client ran (UTC, as the log's timestamps).
    fn save_log(&self, target: Target, live: &Live, started: std::time::SystemTime) {
        let (Some(dir), Backend::Pnpr(p)) = (&self.server_log, &live.backend) else {
            return;
        };
        let text = format!(
            "{}# last install: client started {} ended {}\n",
            p.logs(),
            humantime::format_rfc3339_micros(started),
            humantime::format_rfc3339_micros(std::time::SystemTime::now())
        );
        let path = dir.join(format!("{}.log", target.name()));
        if let Err(e) = std::fs::create_dir_all(dir).and_then(|()| std::fs::write(&path, text)) {
            fail(&format!("cannot write {}: {e}", path.display()));
        }
    }

    fn new_project(&self, warm_store: Option<&Path>, lockfile: Option<&str>) -> Project {
        let mut p = project_from(&self.fixture);
        if let Some(store) = warm_store {
            p.set_env("pnpm_config_store_dir", &store.to_string_lossy());
        }
        if let Some(lock) = lockfile {
            p.write_file("pnpm-lock.yaml", lock);
        }
        p
    }
}

/// Runs the `peers` mode; exits the process on any failure.
pub fn run(args: PeersArgs) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail(&format!("tokio runtime: {e}")));
    let check = rt
        .block_on(shaper::self_check(args.shape, 8 << 20))
        .unwrap_or_else(|e| fail(&format!("shaper self-check: {e}")));
    print_check(&args.shape, &check);

    let upstream = start_upstream(args.upstream_storage.as_deref());
    let uplink_shaper = (!args.upstream_latency.is_zero()).then(|| {
        let shape = Shape {
            latency: args.upstream_latency,
            rate_bps: 0,
            per_connection: true,
        };
        let target = std::net::SocketAddr::from(([127, 0, 0, 1], upstream.port()));
        rt.block_on(Shaper::start(target, shape))
            .unwrap_or_else(|e| fail(&format!("cannot start the upstream shaper: {e}")))
    });
    let bench = Bench {
        rt: &rt,
        upstream: &upstream,
        shape: args.shape,
        bin: args.pnpr.clone().unwrap_or_else(release_binary),
        base_bin: args.base_pnpr.clone(),
        server_log: args.server_log.clone(),
        settle: args.settle,
        fixture: args.project.clone(),
        client: args.client.clone(),
        uplink_url: uplink_shaper
            .as_ref()
            .map_or_else(|| upstream.url().to_string(), |s| s.url.clone()),
        corpus_sizes: args
            .upstream_storage
            .as_deref()
            .map(crate::disk::corpus_sizes),
    };
    eprintln!(
        "project: {}; client: pnpm {}",
        args.project.display(),
        args.client
    );

    let wanted = wanted_targets(args.only.as_deref(), &args.client, args.base_pnpr.is_some());
    let prepared = populate(&bench, &wanted);
    let mut scenarios = scenarios_for(&args, &wanted);
    if scenarios.is_empty() {
        fail("--store/--server/--lockfile left no scenario");
    }
    let rounds = args.warmup + args.runs;
    let mut link = Vec::new();
    let mut instant: Vec<(Target, Vec<Duration>)> = Vec::new();
    for round in 0..rounds {
        let recording = round >= args.warmup;
        eprintln!(
            "round {}/{}{}",
            round + 1,
            rounds,
            if recording { "" } else { " (warm-up)" }
        );
        for s in scenarios.iter_mut() {
            run_scenario(&bench, &prepared, s, recording);
        }
        let took = link_only(&bench, &prepared);
        if let (true, Some(took)) = (recording, took) {
            link.push(took);
        }
        for (target, took) in instant_server(&bench, &prepared) {
            if !recording {
                continue;
            }
            match instant.iter_mut().find(|(t, _)| *t == target) {
                Some((_, v)) => v.push(took),
                None => instant.push((target, vec![took])),
            }
        }
    }
    report(&args, &check, &scenarios, &link, &prepared);
    report_instant(&scenarios, &instant);
}

/// The link-only floor sample: the first target's full store and lockfile,
/// `--offline`, no server reached.
fn link_only(bench: &Bench, prepared: &[Prepared]) -> Option<Duration> {
    let Some(first) = prepared.first() else {
        fail("no target was populated");
    };
    let shapers: Vec<&Shaper> = prepared.iter().map(|p| &p.warm.shaper).collect();
    crate::floor::link_only(
        &bench.client,
        &bench.fixture,
        &first.store_owner.pnpm_store(),
        &first.lockfile,
        &first.warm.shaper.url,
        &shapers,
    )
}

/// The "instant server" sample of every accelerator target: its warm
/// server reached unshaped (no latency, no rate limit), cold client store,
/// no lockfile. What is left is the client's own work with a server that
/// answers at once: no server, however fast, can do better on this link.
fn instant_server(bench: &Bench, prepared: &[Prepared]) -> Vec<(Target, Duration)> {
    let mut out = Vec::new();
    for prep in prepared {
        if !matches!(
            prep.target.protocol(&bench.client),
            Target::PnprV1 | Target::PnprV0
        ) {
            continue;
        }
        let project = bench.new_project(None, None);
        prep.warm.shaper.set_bypass(true);
        let (took, _) = bench.install(prep.target, &prep.warm, &[], &project);
        prep.warm.shaper.set_bypass(false);
        out.push((prep.target, took));
    }
    out
}

/// The instant-server table: each accelerator target's client-bound time
/// and the largest speed-up over direct any server could give this client
/// on this tree (direct's median over it).
fn report_instant(scenarios: &[Scenario], instant: &[(Target, Vec<Duration>)]) {
    if instant.is_empty() {
        return;
    }
    let direct = scenarios
        .iter()
        .find(|s| {
            s.target == Target::Direct && !s.warm_store && !s.lockfile && !s.samples.is_empty()
        })
        .map(|s| crate::median(&s.samples));
    println!(
        "\nInstant server (the target's warm server reached unshaped, cold client store, no lockfile): \
         the client's own work; direct / instant = the largest speed-up any server could give\n"
    );
    println!("| target | median | min | max | runs | direct (cold store, no lockfile) / instant |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    for (target, samples) in instant {
        let med = crate::median(samples);
        let bound = direct.map_or_else(
            || "n/a".to_string(),
            |d| format!("{:.2}x", d.as_secs_f64() / med.as_secs_f64().max(1e-9)),
        );
        println!(
            "| {} | {} ms | {} ms | {} ms | {} | {bound} |",
            target.label(),
            med.as_millis(),
            samples
                .iter()
                .min()
                .copied()
                .unwrap_or_default()
                .as_millis(),
            samples
                .iter()
                .max()
                .copied()
                .unwrap_or_default()
                .as_millis(),
            samples.len()
        );
    }
}

/// The registry-mock, or an offline Verdaccio over a stored corpus.
fn start_upstream(storage: Option<&Path>) -> Upstream {
    let Some(dir) = storage else {
        return Upstream::Mock(RegistryMock::start());
    };
    let v = Verdaccio::start_offline(dir)
        .unwrap_or_else(|e| fail(&format!("offline upstream Verdaccio did not start: {e}")));
    eprintln!(
        "upstream: offline Verdaccio on {} serving {}",
        v.url,
        dir.display()
    );
    Upstream::Storage(v)
}

/// The targets `--only` keeps (all four without it); the accelerator one
/// is the protocol `client` speaks.
fn wanted_targets(only: Option<&str>, client: &str, base: bool) -> Vec<Target> {
    let wanted: Vec<Target> = [
        Target::Direct,
        Target::Verdaccio,
        Target::PnprProxy,
        Target::accelerator_of(client),
    ]
    .into_iter()
    .chain(base.then_some(Target::PnprBase))
    .filter(|t| only.is_none_or(|o| o.split(',').any(|w| w.trim() == t.name())))
    .collect();
    if wanted.is_empty() {
        fail("--only matched no target (direct,verdaccio,pnpr,v1|v0,base)");
    }
    wanted
}

/// Population: warms each long-lived server, yields the lockfile and a
/// full client store per target.
fn populate(bench: &Bench, wanted: &[Target]) -> Vec<Prepared> {
    let mut prepared = Vec::new();
    for &target in wanted {
        let warm = bench.start(target);
        let p = bench.new_project(None, None);
        let others: Vec<&Live> = prepared.iter().map(|x: &Prepared| &x.warm).collect();
        let (took, traffic) = bench.install(target, &warm, &others, &p);
        if traffic.to_client == 0 || warm.storage_files() == 0 {
            fail(&format!(
                "population install via {} did not go through it ({traffic:?}, {} stored files)",
                target.name(),
                warm.storage_files()
            ));
        }
        eprintln!(
            "populated {}: {} ms, {:.1} MB to client",
            target.name(),
            took.as_millis(),
            traffic.to_client as f64 / 1e6
        );
        let lockfile = p.read_file("pnpm-lock.yaml");
        if let Backend::Pnpr(server) = &warm.backend {
            crate::settle::wait(bench.rt, server, bench.settle, target.name());
        }
        let disk = match (&warm.backend, &bench.corpus_sizes) {
            (Backend::Pnpr(server), Some(sizes)) => {
                Some(crate::disk::measure(&server.data_dir, sizes))
            }
            _ => None,
        };
        prepared.push(Prepared {
            target,
            warm,
            lockfile,
            store_owner: p,
            disk,
        });
    }
    prepared
}

/// Every (target, server, store, lockfile) combination the flags keep; a
/// direct install has no server of ours to be cold.
fn scenarios_for(args: &PeersArgs, wanted: &[Target]) -> Vec<Scenario> {
    let mut scenarios = Vec::new();
    for &target in wanted {
        for cold_server in [false, true] {
            let skip_server = args.warm_server.is_some_and(|w| w == cold_server);
            if (target == Target::Direct && cold_server) || skip_server {
                continue;
            }
            for warm_store in [false, true] {
                if args.warm_store.is_some_and(|w| w != warm_store) {
                    continue;
                }
                for lockfile in [false, true] {
                    if args.lockfile.is_some_and(|l| l != lockfile) {
                        continue;
                    }
                    scenarios.push(Scenario {
                        target,
                        cold_server,
                        warm_store,
                        lockfile,
                        samples: vec![],
                        to_client: vec![],
                    });
                }
            }
        }
    }
    scenarios
}

/// One timed install of one scenario; records it unless warming up.
fn run_scenario(bench: &Bench, prepared: &[Prepared], s: &mut Scenario, recording: bool) {
    let Some(prep) = prepared.iter().find(|p| p.target == s.target) else {
        return;
    };
    let store = s.warm_store.then(|| prep.store_owner.pnpm_store());
    let lock = s.lockfile.then_some(prep.lockfile.as_str());
    let project = bench.new_project(store.as_deref(), lock);
    let cold;
    let live = if s.cold_server {
        cold = bench.start(s.target);
        &cold
    } else {
        &prep.warm
    };
    let others: Vec<&Live> = prepared
        .iter()
        .map(|p| &p.warm)
        .filter(|w| !std::ptr::eq(*w, live))
        .collect();
    let (took, traffic) = bench.install(s.target, live, &others, &project);
    let needs_network = !s.warm_store || !s.lockfile;
    if needs_network && (traffic.to_client == 0 || live.storage_files() == 0) {
        fail(&format!(
            "{}: the install did not go through its target ({traffic:?}, {} stored files)",
            s.name(),
            live.storage_files()
        ));
    }
    if recording {
        s.samples.push(took);
        s.to_client.push(traffic.to_client);
    }
}

/// Prints the shaper self-check and aborts unless it shows the configured
/// round trip, per-stream rate and aggregate rate (shared link: the same
/// rate; per connection: several times it).
pub(crate) fn print_check(shape: &Shape, c: &shaper::CheckResult) {
    let want_rtt = shape.latency * 2;
    let want_bps = shape.rate_bps as f64;
    println!(
        "shaper self-check: RTT {:.1} ms (configured {} ms); {:.1} MB in {} ms = {:.1} Mbit/s; \
         {} parallel connections: {} ms = {:.1} Mbit/s aggregate (configured {})",
        c.rtt.as_secs_f64() * 1e3,
        want_rtt.as_millis(),
        c.payload as f64 / 1e6,
        c.transfer.as_millis(),
        c.measured_bps / 1e6,
        shaper::PARALLEL,
        c.parallel_transfer.as_millis(),
        c.aggregate_bps / 1e6,
        rate_label(shape)
    );
    if c.rtt < want_rtt || c.rtt > want_rtt + Duration::from_millis(15) {
        fail("shaper self-check: round trip is not what was configured");
    }
    if shape.rate_bps == 0 {
        return;
    }
    if !(0.7..1.1).contains(&(c.measured_bps / want_bps)) {
        fail("shaper self-check: single-stream throughput is not what was configured");
    }
    let agg = c.aggregate_bps / want_bps;
    let ok = if shape.per_connection {
        agg > 1.5 && agg < shaper::PARALLEL as f64 * 1.1
    } else {
        (0.7..1.1).contains(&agg)
    };
    if !ok {
        fail("shaper self-check: aggregate throughput is not what was configured");
    }
}

fn rate_label(shape: &Shape) -> String {
    match (shape.rate_bps, shape.per_connection) {
        (0, _) => "unlimited".to_string(),
        (r, true) => format!("{} Mbit/s per connection direction", r / 1_000_000),
        (r, false) => format!("{} Mbit/s shared link per direction", r / 1_000_000),
    }
}

fn report(
    args: &PeersArgs,
    check: &shaper::CheckResult,
    scenarios: &[Scenario],
    link: &[Duration],
    prepared: &[Prepared],
) {
    println!(
        "\nproject {}; client pnpm {}; upstream {}; one-way latency {} ms, {}; {} runs after {} warm-up round(s)\n",
        args.project.display(),
        args.client,
        upstream_label(args),
        args.shape.latency.as_millis(),
        rate_label(&args.shape),
        args.runs,
        args.warmup
    );
    println!("| target | server cache | client store | lockfile | median | min | max | MB to client | runs |");
    println!("| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: |");
    let mut json = Vec::new();
    let mut rows = Vec::new();
    for s in scenarios {
        if s.samples.is_empty() {
            continue;
        }
        let min = s.samples.iter().min().copied().unwrap_or_default();
        let max = s.samples.iter().max().copied().unwrap_or_default();
        let med = crate::median(&s.samples);
        let mut bytes = s.to_client.clone();
        bytes.sort_unstable();
        let mb = bytes.get(bytes.len() / 2).copied().unwrap_or(0) as f64 / 1e6;
        println!(
            "| {} | {} ms | {} ms | {} ms | {mb:.2} | {} |",
            s.name(),
            med.as_millis(),
            min.as_millis(),
            max.as_millis(),
            s.samples.len()
        );
        json.push(serde_json::json!({
            "target": s.target.name(),
            "server_cache": if s.target == Target::Direct { "n/a" } else if s.cold_server { "cold" } else { "warm" },
            "client_store": if s.warm_store { "warm" } else { "cold" },
            "lockfile": s.lockfile,
            "median_ms": med.as_millis() as u64,
            "min_ms": min.as_millis() as u64,
            "max_ms": max.as_millis() as u64,
            "samples_ms": s.samples.iter().map(|d| d.as_millis() as u64).collect::<Vec<_>>(),
            "to_client_bytes_median": bytes.get(bytes.len() / 2).copied().unwrap_or(0),
            "runs": s.samples.len(),
        }));
        rows.push(crate::floor::Row {
            name: s.name(),
            median: med,
            to_client: bytes.get(bytes.len() / 2).copied().unwrap_or(0),
        });
    }
    let floor = crate::floor::report(&args.shape, link, &rows);
    let disks: Vec<(&str, &crate::disk::DiskUsage)> = prepared
        .iter()
        .filter_map(|p| p.disk.as_ref().map(|d| (p.target.label(), d)))
        .collect();
    crate::disk::print(&disks);
    let disk_json: serde_json::Map<String, serde_json::Value> = prepared
        .iter()
        .filter_map(|p| {
            p.disk
                .as_ref()
                .map(|d| (p.target.name().to_string(), d.json()))
        })
        .collect();
    let doc = serde_json::json!({
        "project": args.project.display().to_string(),
        "client": args.client,
        "latency_ms_one_way": args.shape.latency.as_millis() as u64,
        "rate_mbit": args.shape.rate_bps / 1_000_000,
        "rate_per_connection": args.shape.per_connection,
        "upstream": upstream_label(args),
        "self_check": {"rtt_ms": check.rtt.as_secs_f64() * 1e3, "measured_mbit": check.measured_bps / 1e6,
            "aggregate_mbit": check.aggregate_bps / 1e6},
        "upstream_latency_ms_one_way": args.upstream_latency.as_millis() as u64,
        "scenarios": json,
        "floor": floor,
        "server_disk": disk_json,
    });
    println!("\n{doc}");
    if let Some(path) = &args.json_out {
        if let Err(e) = std::fs::write(path, format!("{doc:#}\n")) {
            fail(&format!("cannot write {}: {e}", path.display()));
        }
    }
}

fn upstream_label(args: &PeersArgs) -> String {
    match &args.upstream_storage {
        None => "registry-mock".to_string(),
        Some(dir) => format!("offline Verdaccio 6.10.4 serving {}", dir.display()),
    }
}
