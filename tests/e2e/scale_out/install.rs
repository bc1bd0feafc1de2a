//! Killing a node mid-install (issue 15, RFC 0009): two nodes on one
//! PostgreSQL and one bucket proxy the registry-mock fixture registry over
//! a slow link; pnpm 11.5.2 (`/v1/install`) and pnpm 12 (plain registry)
//! install through both nodes at once and node A is SIGKILLed while its
//! installs are in flight. Guarded: A's installs fail, every install on B
//! completes with the lockfile and `.pnpm` tree of a control install made
//! straight against the uplink, B keeps answering throughout, and A,
//! restarted on the same data, installs again; every tarball and stored
//! member on either node's disk, and every object in the bucket, matches
//! the digest it is stored under (nothing half-written survives the crash).
//!
//! The uplink is registry-mock rather than a hosted package so that the
//! installs make the nodes write: tarballs into the local CAS and the
//! bucket, unpacked members into the file store. A hosted package's
//! tarball is already in the bucket when the publish is acknowledged, so
//! installing it only reads shared state.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use pnpr_e2e::fixtures::{fixtures_root, project_from};
use pnpr_e2e::parity::compare::{diff_excerpt, pnpm_tree};
use pnpr_e2e::postgres::Postgres;
use pnpr_e2e::s3::{S3rver, ACCESS_KEY, SECRET_KEY};
use pnpr_e2e::{Http, Output, Pnpr, Project, RegistryMock};
use sha2::Digest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A fixture with a few levels of dependencies (about a dozen packages).
const FIXTURE: &str = "deep-tree";
const PREFIX: &str = "install-e2e/";
/// The slow link forwards answers `STEP_BYTES` at a time with `STEP_PAUSE`
/// between steps (about 3 KiB/s per connection): a packument takes about
/// half a second and a tarball a few hundred milliseconds, so a node is
/// still writing when it is killed.
const STEP_BYTES: usize = 64;
const STEP_PAUSE: Duration = Duration::from_millis(20);
/// A is killed once it has asked the uplink for this many tarballs (of
/// about a dozen): some are stored, others still arriving.
const KILL_AFTER: usize = 4;
/// Client settings for every install (pnpm 11 and 12 read them from the
/// workspace file): no retries, so an interrupted install fails instead of
/// waiting for the node to come back, and an install on B must go through
/// the first time.
const SETTINGS: &str = "fetchRetries: 0\n";

/// A throttling TCP relay to the uplink, shared by both nodes (a mirror
/// row names the uplink's tarball URL, so the nodes of one registry have
/// one uplink config). It records the client port of every connection that
/// asked for a tarball, so the test can tell which node is fetching. Runs
/// on its own runtime so test code that blocks on a client cannot stall it.
struct SlowLink {
    url: String,
    tarball_peers: Peers,
    rt: Option<tokio::runtime::Runtime>,
}

/// Tarball requests per client port.
type Peers = Arc<Mutex<HashMap<u16, usize>>>;

impl SlowLink {
    fn start(upstream_port: u16) -> SlowLink {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind slow link");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let tarball_peers = Peers::default();
        rt.spawn(relay(listener, upstream_port, Arc::clone(&tarball_peers)));
        SlowLink {
            url: format!("http://127.0.0.1:{port}/"),
            tarball_peers,
            rt: Some(rt),
        }
    }

    /// How many tarballs the open connections of process `pid` asked for.
    fn tarballs_asked_by(&self, pid: u32) -> usize {
        let ports = local_ports(pid);
        let peers = self.tarball_peers.lock().expect("peers");
        ports.iter().filter_map(|p| peers.get(p)).sum()
    }
}

impl Drop for SlowLink {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

async fn relay(listener: std::net::TcpListener, upstream: u16, peers: Peers) {
    let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
    while let Ok((client, from)) = listener.accept().await {
        let peers = Arc::clone(&peers);
        tokio::spawn(async move {
            let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await else {
                return;
            };
            let (cr, cw) = client.into_split();
            let (sr, sw) = server.into_split();
            tokio::join!(requests(cr, sw, from.port(), peers), trickle(sr, cw));
        });
    }
}

/// Client to uplink at full speed; counts `peer`'s requests for `.tgz`
/// files.
async fn requests(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    peer: u16,
    peers: Peers,
) {
    let mut buf = vec![0u8; 16 << 10];
    while let Ok(n) = from.read(&mut buf).await {
        if n == 0 {
            break;
        }
        let line = buf[..n].split(|b| *b == b'\n').next().unwrap_or_default();
        if line.starts_with(b"GET ") && line.windows(4).any(|w| w == b".tgz") {
            *peers.lock().expect("peers").entry(peer).or_default() += 1;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

/// Uplink to client, `STEP_BYTES` per `STEP_PAUSE`.
async fn trickle(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
) {
    let mut buf = [0u8; STEP_BYTES];
    while let Ok(n) = from.read(&mut buf).await {
        if n == 0 || to.write_all(&buf[..n]).await.is_err() {
            break;
        }
        tokio::time::sleep(STEP_PAUSE).await;
    }
    let _ = to.shutdown().await;
}

/// The local TCP ports of process `pid`'s sockets: its socket inodes
/// (`/proc/<pid>/fd`) looked up in `/proc/net/tcp`.
fn local_ports(pid: u32) -> HashSet<u16> {
    let inodes: HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .filter_map(|l| {
                    let l = l.to_string_lossy().to_string();
                    Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
                })
                .collect()
        })
        .unwrap_or_default();
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let port = cols.get(1)?.rsplit(':').next()?;
            inodes
                .contains(*cols.get(9)?)
                .then(|| u16::from_str_radix(port, 16).ok())?
        })
        .collect()
}

/// A node on the shared database and bucket, proxying `uplink`.
fn node(database: &str, s3: &S3rver, uplink: &str) -> Pnpr {
    let config = format!(
        "uplinks:\n  mock:\n    url: {uplink}\n    timeout: 60s\n\
         packages:\n  '**':\n    access: $all\n    publish: $authenticated\n    proxy: mock\n\
         database: ${{PNPR_TEST_DATABASE}}\n\
         blobs:\n  s3:\n    bucket: {}\n    endpoint: ${{PNPR_TEST_S3}}\n    region: us-east-1\n    prefix: {PREFIX}\n",
        s3.bucket
    );
    Pnpr::start(
        &config,
        &[
            ("PNPR_TEST_DATABASE", database),
            ("PNPR_TEST_S3", &s3.endpoint),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
        ],
    )
}

#[derive(Clone, Copy, Debug)]
enum Client {
    /// pnpm 11.5.2 through `/v1/install` (`through` is also the registry).
    Pnpm11,
    /// pnpm 12 against `/` (a plain registry).
    Pnpm12,
}

/// Installs the fixture with `client` against `registry` on a thread.
fn install(client: Client, registry: &str, accelerated: bool) -> JoinHandle<(Project, Output)> {
    let registry = registry.to_owned();
    std::thread::spawn(move || {
        let mut project = project_from(&fixtures_root().join(FIXTURE), None);
        project.write_file("pnpm-workspace.yaml", SETTINGS);
        project.set_timeout(Duration::from_secs(90));
        let mut args = vec!["install", "--config.save=false", "--registry", &registry];
        let out = match client {
            Client::Pnpm11 if accelerated => {
                args.extend(["--pnpr-server", &registry]);
                project.pnpm11(&args)
            }
            Client::Pnpm11 => project.pnpm11(&args),
            Client::Pnpm12 => project.pnpm12(&args),
        };
        (project, out)
    })
}

fn joined<T>(handle: JoinHandle<T>) -> T {
    handle.join().expect("install thread panicked")
}

/// Same lockfile bytes and same `.pnpm` tree as the control install.
#[track_caller]
fn assert_same_install(control: &Project, got: &Project, what: &str) {
    let (want, have) = (
        control.read_file("pnpm-lock.yaml"),
        got.read_file("pnpm-lock.yaml"),
    );
    if let Some(diff) = diff_excerpt(&want, &have) {
        panic!("{what}: the lockfile differs from the control install:\n{diff}");
    }
    let want = pnpm_tree(&control.path()).expect("control tree");
    let have = pnpm_tree(&got.path()).expect("installed tree");
    assert!(!want.is_empty(), "the control installed nothing");
    let missing: Vec<_> = want
        .keys()
        .filter(|k| have.get(*k) != want.get(*k))
        .collect();
    let extra: Vec<_> = have.keys().filter(|k| !want.contains_key(*k)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what}: node_modules/.pnpm differs from the control: missing or changed {missing:?}, extra {extra:?}"
    );
}

/// `/-/ping` on a node every 50 ms until stopped; the answers, with the
/// slowest one's time.
struct Pinger {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<(Vec<Option<u16>>, Duration)>,
}

impl Pinger {
    fn start(port: u16) -> Pinger {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = std::thread::spawn(move || {
            let (mut seen, mut slowest) = (Vec::new(), Duration::ZERO);
            while !flag.load(Ordering::SeqCst) {
                let t = Instant::now();
                seen.push(pnpr_e2e::net::http_status(
                    port,
                    "/-/ping",
                    Duration::from_secs(5),
                ));
                slowest = slowest.max(t.elapsed());
                std::thread::sleep(Duration::from_millis(50));
            }
            (seen, slowest)
        });
        Pinger { stop, handle }
    }

    fn finish(self) -> (Vec<Option<u16>>, Duration) {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.join().expect("pinger")
    }
}

/// Re-hashes every content-addressed file under `dir`: tarballs
/// (`.../sha512/<2 hex>/<126 hex>`) against their SHA-512 and stored
/// members (`members/<2 hex>/<62 hex>`) frame by frame. Returns (tarballs,
/// members) checked; panics on the first mismatch.
fn check_disk(dir: &Path) -> (usize, usize) {
    let mut counts = (0, 0);
    walk_files(dir, &mut |path| {
        let name = file_name(path);
        let parent = path.parent().expect("parent");
        let (fanout, grand) = (file_name(parent), parent.parent().map(file_name));
        let hex = format!("{fanout}{name}");
        if grand.as_deref() == Some("sha512") && fanout.len() == 2 && hex.len() == 128 {
            let bytes = std::fs::read(path).expect("read tarball");
            let got = hex::encode(sha2::Sha512::digest(&bytes));
            assert_eq!(got, hex, "{}: bytes do not match the name", path.display());
            counts.0 += 1;
        } else if grand.as_deref() == Some("members") && fanout.len() == 2 && hex.len() == 64 {
            check_member(path, &hex);
            counts.1 += 1;
        }
    });
    counts
}

/// Files in any `tmp` folder under `dir` (a writer's unfinished files).
fn temp_files(dir: &Path) -> usize {
    let mut n = 0;
    walk_files(dir, &mut |path| {
        let rel = path.strip_prefix(dir).expect("under dir");
        n += usize::from(rel.components().any(|c| c.as_os_str() == "tmp"));
    });
    n
}

/// Temp files under `dir` once they stop disappearing: polled for up to
/// 10 s, since a node places verified files and uploads to the bucket after
/// the response that needed them.
fn settled_temp_files(dir: &Path) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let n = temp_files(dir);
        if n == 0 || Instant::now() >= deadline {
            return n;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default()
}

fn walk_files(dir: &Path, f: &mut dyn FnMut(&Path)) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        match entry.file_type() {
            Ok(t) if t.is_dir() => walk_files(&path, f),
            Ok(t) if t.is_file() => f(&path),
            _ => {}
        }
    }
}

/// A stored member is one complete gzip member of frames (64-byte SHA-512,
/// u32 BE length, executable flag, content) whose key is the SHA-256 of
/// its (digest, flag) sequence.
fn check_member(path: &Path, key: &str) {
    let raw = std::fs::read(path).expect("read member");
    let mut data = Vec::new();
    flate2::read::GzDecoder::new(&raw[..])
        .read_to_end(&mut data)
        .unwrap_or_else(|e| panic!("{}: not a complete gzip member: {e}", path.display()));
    let (mut at, mut h) = (0, sha2::Sha256::new());
    while at < data.len() {
        assert!(at + 69 <= data.len(), "{}: truncated frame", path.display());
        let len = u32::from_be_bytes(data[at + 64..at + 68].try_into().expect("len")) as usize;
        let content = data
            .get(at + 69..at + 69 + len)
            .unwrap_or_else(|| panic!("{}: truncated frame content", path.display()));
        assert_eq!(
            sha2::Sha512::digest(content).as_slice(),
            &data[at..at + 64],
            "{}: a frame's content does not match its digest",
            path.display()
        );
        h.update(&data[at..at + 64]);
        h.update([data[at + 68]]);
        at += 69 + len;
    }
    assert_eq!(
        hex::encode(h.finalize()),
        key,
        "{}: key mismatch",
        path.display()
    );
}

/// Re-hashes every object under the prefix against its key; the count.
async fn check_bucket(http: &Http, s3: &S3rver) -> usize {
    let keys = s3.keys(http, PREFIX).await;
    for key in &keys {
        let parts: Vec<&str> = key.trim_start_matches(PREFIX).split('/').collect();
        let ["tarballs", _ns, "sha512", fanout, name] = parts[..] else {
            panic!("unexpected object in the bucket: {key}");
        };
        let bytes = s3
            .object(key)
            .await
            .unwrap_or_else(|| panic!("cannot read {key}"));
        let got = hex::encode(sha2::Sha512::digest(&bytes));
        assert_eq!(
            got,
            format!("{fanout}{name}"),
            "bucket object {key} does not match its key"
        );
    }
    keys.len()
}

/// Waits until A has asked the uplink for `KILL_AFTER` tarballs (it is
/// then past resolution and writing tarballs), with every install on A
/// still running; how many it had asked for.
fn wait_for_tarball_fetch(
    link: &SlowLink,
    a: &Pnpr,
    on_a: &[JoinHandle<(Project, Output)>],
) -> usize {
    let pid = a.pid().expect("A runs");
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let asked = link.tarballs_asked_by(pid);
        if asked >= KILL_AFTER {
            return asked;
        }
        assert!(
            on_a.iter().all(|h| !h.is_finished()),
            "an install through A ended before A asked for {KILL_AFTER} tarballs"
        );
        assert!(
            Instant::now() < deadline,
            "A asked for {asked} tarballs only"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[tokio::test]
async fn killing_a_node_mid_install_leaves_installs_on_the_other_intact() {
    let started = Instant::now();
    let pg = Postgres::start();
    let database = pg.create_database("pnpr");
    let s3 = S3rver::start("pnpr-install");
    let mock = RegistryMock::start();
    // The controls: the same clients straight against the uplink.
    let control11 = install(Client::Pnpm11, &mock.url, false);
    let control12 = install(Client::Pnpm12, &mock.url, false);
    let link = SlowLink::start(mock.port);
    let mut a = node(&database, &s3, &link.url);
    let b = node(&database, &s3, &link.url);
    let (control11, out) = joined(control11);
    out.assert_success();
    let (control12, out) = joined(control12);
    out.assert_success();

    // Both clients on both nodes at once; A is killed once it is fetching
    // tarballs.
    let pinger = Pinger::start(b.port);
    let setup = started.elapsed();
    let on_a = [
        install(Client::Pnpm11, &a.url, true),
        install(Client::Pnpm12, &a.url, true),
    ];
    let on_b = [
        install(Client::Pnpm11, &b.url, true),
        install(Client::Pnpm12, &b.url, true),
    ];
    let asked = wait_for_tarball_fetch(&link, &a, &on_a);
    a.kill_hard();
    let killed_at = started.elapsed();
    for (handle, client) in on_a.into_iter().zip([Client::Pnpm11, Client::Pnpm12]) {
        let (_, out) = joined(handle);
        assert!(
            !out.success(),
            "{client:?} through A completed although A was killed mid-install:\n{out}"
        );
    }

    // Every install on B completes as the control did.
    let [(b11, out11), (b12, out12)] = on_b.map(joined);
    for out in [&out11, &out12] {
        assert!(
            out.success(),
            "install through B failed:\n{out}\n--- B ---\n{}",
            b.logs()
        );
    }
    assert_same_install(&control11, &b11, "pnpm 11.5.2 through B's /v1/install");
    assert_same_install(&control12, &b12, "pnpm 12 through B");
    // B answered every ping, during the installs and A's death.
    let (pings, slowest) = pinger.finish();
    assert!(!pings.is_empty());
    assert!(
        pings.iter().all(|p| *p == Some(200)),
        "B missed pings: {pings:?}"
    );

    // Nothing half-written: every object and stored file matches its digest.
    let http = Http::new();
    let objects = check_bucket(&http, &s3).await;
    assert!(objects > 0, "B's installs put nothing in the bucket");
    let on_disk_a = check_disk(a.data_dir());
    let leftovers = temp_files(a.data_dir());
    let on_disk_b = check_disk(b.data_dir());
    assert!(on_disk_b.0 > 0 && on_disk_b.1 > 0, "{on_disk_b:?}");

    // A, restarted on the same data, drops the crash's unfinished temp
    // files, and serves both clients again.
    a.restart();
    assert_eq!(
        settled_temp_files(a.data_dir()),
        0,
        "the crash's temp files are still on A after its restart"
    );
    let again = [
        install(Client::Pnpm11, &a.url, true),
        install(Client::Pnpm12, &a.url, true),
    ];
    let [(a11, out11), (a12, out12)] = again.map(joined);
    out11.assert_success();
    out12.assert_success();
    assert_same_install(&control11, &a11, "pnpm 11.5.2 through A after its restart");
    assert_same_install(&control12, &a12, "pnpm 12 through A after its restart");
    let after_a = check_disk(a.data_dir());
    // The new installs leave none behind either, once the work a response
    // does not wait for (bucket uploads, placing verified files) is done.
    let leftovers_after = settled_temp_files(a.data_dir());
    assert_eq!(
        leftovers_after, 0,
        "temp files left on A after its installs"
    );
    let objects_after = check_bucket(&http, &s3).await;
    assert!(after_a.0 > 0 && after_a.1 > 0, "{after_a:?}");
    for node in [&a, &b] {
        assert!(!node.logs().contains(&pg.password), "{}", node.logs());
        assert!(!node.logs().contains("panicked"), "{}", node.logs());
    }
    eprintln!(
        "mid-install kill: setup {setup:?}, killed at {killed_at:?} after A asked for {asked} tarball(s), {leftovers} temp file(s) left; \
         B: {} pings, slowest {slowest:?}; bucket {objects} then {objects_after} objects; \
         disk (tarballs, members) A {on_disk_a:?} then {after_a:?}, B {on_disk_b:?}; total {:?}",
        pings.len(),
        started.elapsed()
    );
}
