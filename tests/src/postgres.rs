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
//!
//! TLS ([`Postgres::start_tls`]): a throwaway CA and a server certificate
//! for `127.0.0.1` and `localhost` are made with `/usr/bin/openssl` in the
//! temp dir at start (nothing committed), plus a second, unrelated CA for
//! tests that must see the certificate refused; the key is mode 0600 and
//! owned by the server's user, as PostgreSQL demands.

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
    tls: Option<Tls>,
    // Dropped after `server`.
    dir: TempDir,
}

/// How [`Postgres::start_tls`] serves TLS.
#[derive(Clone, Copy, Debug)]
pub struct Tls {
    /// Only `hostssl` in pg_hba.conf: plain TCP logins are refused.
    pub hostssl_only: bool,
}

impl Postgres {
    /// initdb + start on a free loopback port; panics with the output if
    /// either fails.
    #[track_caller]
    pub fn start() -> Postgres {
        Postgres::start_with(None)
    }

    /// As [`Postgres::start`], with `ssl=on` and a certificate signed by
    /// [`Postgres::ca_cert`].
    #[track_caller]
    pub fn start_tls(tls: Tls) -> Postgres {
        Postgres::start_with(Some(tls))
    }

    #[track_caller]
    fn start_with(tls: Option<Tls>) -> Postgres {
        let bin = bin_dir();
        let dir = tempfile::Builder::new()
            .prefix("pnpr-e2e-pg-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create temp dir: {e}"));
        let password = format!("pw-{:016x}", random_u64());
        let pwfile = dir.path().join("pwfile");
        std::fs::write(&pwfile, &password).expect("write pwfile");
        if tls.is_some() {
            make_certificates(&dir.path().join("tls"));
        }
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
        if tls.is_some_and(|t| t.hostssl_only) {
            hostssl_only(&data, as_root);
        }

        let mut pg = Postgres {
            port: crate::free_port(),
            password,
            logs: LogBuffer::default(),
            server: None,
            bin,
            as_root,
            tls,
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
        if self.tls.is_some() {
            let tls = self.dir.path().join("tls");
            cmd.args(["-c", "ssl=on"])
                .arg("-c")
                .arg(format!(
                    "ssl_cert_file={}",
                    tls.join("server.crt").display()
                ))
                .arg("-c")
                .arg(format!("ssl_key_file={}", tls.join("server.key").display()));
        }
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

    /// The CA that signed the server's certificate (PEM); panics unless
    /// started with [`Postgres::start_tls`].
    pub fn ca_cert(&self) -> PathBuf {
        assert!(self.tls.is_some(), "postgres was started without TLS");
        self.dir.path().join("tls/ca.pem")
    }

    /// A CA that signed nothing this server shows (PEM).
    pub fn other_ca_cert(&self) -> PathBuf {
        assert!(self.tls.is_some(), "postgres was started without TLS");
        self.dir.path().join("tls/other-ca.pem")
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

/// A CA, an unrelated CA and a server certificate (P-256) for 127.0.0.1
/// and localhost, signed by the first, in `dir`.
#[track_caller]
fn make_certificates(dir: &Path) {
    std::fs::create_dir_all(dir).expect("create tls dir");
    for ca in ["ca", "other-ca"] {
        openssl(dir, &["req", "-x509", "-new", "-nodes", "-days", "2"])
            .args(["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"])
            .args([
                "-keyout",
                &format!("{ca}.key"),
                "-out",
                &format!("{ca}.pem"),
            ])
            .args(["-subj", &format!("/CN=pnpr test {ca}")])
            .args(["-addext", "basicConstraints=critical,CA:TRUE"])
            .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"])
            .run();
    }
    openssl(dir, &["req", "-new", "-nodes", "-subj", "/CN=localhost"])
        .args(["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"])
        .args(["-keyout", "server.key", "-out", "server.csr"])
        .run();
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
         keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .expect("write server.ext");
    openssl(dir, &["x509", "-req", "-days", "2", "-in", "server.csr"])
        .args(["-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial"])
        .args(["-extfile", "server.ext", "-out", "server.crt"])
        .run();
    // PostgreSQL refuses a key others can read; `start_with` chowns the
    // whole dir to the server's user when it runs as `nobody`.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        dir.join("server.key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .expect("chmod server.key");
}

/// `/usr/bin/openssl <args>` in `dir`.
struct OpenSsl(Command);

fn openssl(dir: &Path, args: &[&str]) -> OpenSsl {
    let mut cmd = Command::new("/usr/bin/openssl");
    cmd.current_dir(dir).args(args);
    OpenSsl(cmd)
}

impl OpenSsl {
    fn args<const N: usize>(mut self, args: [&str; N]) -> OpenSsl {
        self.0.args(args);
        self
    }

    #[track_caller]
    fn run(mut self) {
        run(&mut self.0, SETUP_TIMEOUT).assert_success();
    }
}

/// pg_hba.conf with TCP logins over TLS only (plain ones match no line and
/// are refused); the socket keeps password logins.
#[track_caller]
fn hostssl_only(data: &Path, as_root: bool) {
    let hba = data.join("pg_hba.conf");
    std::fs::write(
        &hba,
        "local all all scram-sha-256\nhostssl all all 127.0.0.1/32 scram-sha-256\n",
    )
    .expect("write pg_hba.conf");
    if as_root {
        run(Command::new("chown").arg("nobody").arg(&hba), SETUP_TIMEOUT).assert_success();
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
