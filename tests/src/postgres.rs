//! `Postgres`: a throwaway PostgreSQL server for tests that run pnpr on a
//! shared database (issue 15).
//!
//! Contract: Debian's server binaries (`initdb`, `postgres`, `pg_isready`,
//! `createdb`)
//! under `/usr/lib/postgresql/<version>/bin` (the newest found) or
//! `$PNPR_PG_BIN`; tests/setup.sh installs them. Invariants guarded: the
//! cluster lives in a temp dir, listens only on 127.0.0.1 (and a Unix
//! socket inside that dir), requires a password (SCRAM), and the server
//! process is owned by a [`Server`] guard, stopped on drop before the dir
//! goes. initdb refuses to run as root, so as root the cluster is created
//! and run as `nobody` (setpriv, which execs: the guard's pid is the
//! postmaster itself).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::proc::{run, LogBuffer, Server};

/// Bound on initdb and createdb.
const SETUP_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound on the wait for the server to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// The superuser initdb creates; pnpr logs in as it.
pub const USER: &str = "pnpr";

/// A running throwaway PostgreSQL. Stopped and deleted on drop.
#[derive(Debug)]
pub struct Postgres {
    pub port: u16,
    /// The superuser's password (random per cluster).
    pub password: String,
    logs: LogBuffer,
    server: Option<Server>,
    bin: PathBuf,
    as_root: bool,
    // Dropped after `server`.
    dir: TempDir,
}

impl Postgres {
    /// initdb + start on a free loopback port; panics with the output if
    /// either fails.
    #[track_caller]
    pub fn start() -> Postgres {
        let bin = bin_dir();
        let dir = tempfile::Builder::new()
            .prefix("pnpr-e2e-pg-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create temp dir: {e}"));
        let password = format!("pw-{:016x}", random_u64());
        let pwfile = dir.path().join("pwfile");
        std::fs::write(&pwfile, &password).expect("write pwfile");
        let as_root = is_root();
        if as_root {
            run(
                Command::new("chown").args(["-R", "nobody"]).arg(dir.path()),
                SETUP_TIMEOUT,
            )
            .assert_success();
        }
        let data = dir.path().join("data");
        let mut initdb = unprivileged(&bin.join("initdb"), as_root);
        initdb
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                USER,
                "--auth=scram-sha-256",
                "--no-locale",
                "-E",
                "UTF8",
            ])
            .args(["--no-sync", "--no-instructions"])
            .arg(format!("--pwfile={}", pwfile.display()));
        run(&mut initdb, SETUP_TIMEOUT).assert_success();

        let mut pg = Postgres {
            port: crate::free_port(),
            password,
            logs: LogBuffer::default(),
            server: None,
            bin,
            as_root,
            dir,
        };
        pg.spawn();
        pg
    }

    /// Starts the postmaster on `self.port` and waits until it accepts.
    fn spawn(&mut self) {
        let mut cmd = unprivileged(&self.bin.join("postgres"), self.as_root);
        cmd.arg("-D")
            .arg(self.dir.path().join("data"))
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-k")
            .arg(self.dir.path())
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
            .args(["-c", "synchronous_commit=off", "-c", "full_page_writes=off"]);
        self.server = Some(Server::spawn(&mut cmd, self.logs.clone()));
        self.wait_ready();
    }

    /// Stops the server (fast shutdown: open connections are cut), so
    /// tests can watch clients lose the database.
    pub fn stop(&mut self) {
        if let Some(mut server) = self.server.take() {
            server.stop_with("INT", Duration::from_secs(10));
        }
    }

    /// Starts it again on the same port and data.
    #[track_caller]
    pub fn start_again(&mut self) {
        assert!(self.server.is_none(), "postgres is still running");
        self.spawn();
    }

    /// Polls `pg_isready` until the server accepts sessions (it accepts TCP
    /// earlier, while still "starting up", and refuses logins then).
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let ready = Command::new(self.bin.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return;
            }
            let exited = self.server.as_mut().and_then(Server::exited);
            if exited.is_some() || Instant::now() > deadline {
                panic!(
                    "postgres did not accept sessions on 127.0.0.1:{} (exit: {exited:?})\n{}",
                    self.port,
                    self.logs.snapshot()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Creates database `name` and returns its `postgres://` URL (with the
    /// password).
    #[track_caller]
    pub fn create_database(&self, name: &str) -> String {
        let out = run(
            Command::new(self.bin.join("createdb"))
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", USER])
                .arg(name)
                .env("PGPASSWORD", &self.password),
            SETUP_TIMEOUT,
        );
        out.assert_success();
        self.url(name)
    }

    /// `postgres://pnpr:PASSWORD@127.0.0.1:PORT/<db>`.
    pub fn url(&self, db: &str) -> String {
        format!(
            "postgres://{USER}:{}@127.0.0.1:{}/{db}",
            self.password, self.port
        )
    }

    /// What the server logged so far.
    pub fn logs(&self) -> String {
        self.logs.snapshot()
    }

    /// The cluster's directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // SIGINT: fast shutdown (no waiting for clients), then SIGKILL.
        self.stop();
    }
}

/// `$PNPR_PG_BIN`, else the newest `/usr/lib/postgresql/<v>/bin`.
#[track_caller]
fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PNPR_PG_BIN") {
        return PathBuf::from(dir);
    }
    let root = Path::new("/usr/lib/postgresql");
    let newest = std::fs::read_dir(root)
        .ok()
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .max();
    match newest {
        Some((_, bin)) => bin,
        None => panic!(
            "no PostgreSQL server binaries under {} (run tests/setup.sh, or set PNPR_PG_BIN)",
            root.display()
        ),
    }
}

/// `program` run as `nobody` when we are root (initdb and postgres refuse
/// root), else as ourselves; with an empty environment either way.
fn unprivileged(program: &Path, as_root: bool) -> Command {
    let mut cmd = if as_root {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
            .arg(program);
        c
    } else {
        Command::new(program)
    };
    cmd.env_clear().env("LC_ALL", "C");
    cmd
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}
