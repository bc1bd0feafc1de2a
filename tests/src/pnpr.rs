//! `Pnpr`: the pnpr binary under test, run as a child process on 127.0.0.1.
//!
//! Contract with the binary: `pnpr --config <file> --listen 127.0.0.1:<port>
//! --data-dir <dir>` prints `pnpr listening on http://127.0.0.1:<port>/` on
//! stdout once it accepts connections. Invariant guarded: a test only gets a
//! `Pnpr` after that line (bounded wait), the process is killed on drop, and
//! it runs with an empty environment plus what the test passes.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::Duration;

use tempfile::TempDir;

use crate::proc::{LogBuffer, Server};

#[cfg(test)]
mod tests;

/// Bound on the wait for the listening line.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on a graceful stop before falling back to SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// The startup line's fixed prefix.
const LISTENING_PREFIX: &str = "pnpr listening on http://127.0.0.1:";

/// Why [`Pnpr::try_start`] gave up.
#[derive(Debug)]
pub struct StartFailure {
    /// Why the wait ended (timeout, stdout closed).
    pub reason: String,
    /// Exit status if the process had exited.
    pub status: Option<ExitStatus>,
    /// Everything it printed.
    pub logs: String,
}

/// A running pnpr. Killed on drop; its data dir lives as long as this value.
#[derive(Debug)]
pub struct Pnpr {
    /// `http://127.0.0.1:PORT/` (with the trailing slash).
    pub url: String,
    pub port: u16,
    /// `--data-dir`, kept across [`Pnpr::restart`].
    pub data_dir: PathBuf,
    /// The config file passed with `--config`.
    pub config_path: PathBuf,
    binary: PathBuf,
    env: Vec<(String, String)>,
    logs: LogBuffer,
    server: Option<Server>,
    // Dropped after `server` so the process is gone before its files are.
    dir: TempDir,
}

impl Pnpr {
    /// Starts pnpr with `config_yaml`, a fresh data dir and exactly the
    /// environment `env`; panics with its output if it does not come up.
    #[track_caller]
    pub fn start(config_yaml: &str, env: &[(&str, &str)]) -> Pnpr {
        match Self::try_start(config_yaml, env) {
            Ok(pnpr) => pnpr,
            Err(failure) => panic!(
                "pnpr did not start: {} (exit: {:?})\n--- output ---\n{}",
                failure.reason, failure.status, failure.logs
            ),
        }
    }

    /// Like [`Pnpr::start`], but returns the failure, for tests that expect
    /// pnpr to refuse a config.
    pub fn try_start(config_yaml: &str, env: &[(&str, &str)]) -> Result<Pnpr, StartFailure> {
        Self::try_start_with(&binary_path(), config_yaml, env)
    }

    /// [`Pnpr::try_start`] with an explicit executable (e.g. a release build).
    pub fn try_start_with(
        binary: &Path,
        config_yaml: &str,
        env: &[(&str, &str)],
    ) -> Result<Pnpr, StartFailure> {
        let dir = tempfile::Builder::new()
            .prefix("pnpr-e2e-pnpr-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create temp dir: {e}"));
        let config_path = dir.path().join("config.yaml");
        std::fs::write(&config_path, config_yaml)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", config_path.display()));
        let mut pnpr = Pnpr {
            url: String::new(),
            port: 0,
            data_dir: dir.path().join("data"),
            config_path,
            binary: binary.to_path_buf(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            logs: LogBuffer::default(),
            server: None,
            dir,
        };
        pnpr.spawn(0)?;
        Ok(pnpr)
    }

    /// Spawns the binary listening on `port` (0 = any) and waits for the
    /// listening line.
    fn spawn(&mut self, port: u16) -> Result<(), StartFailure> {
        let mut cmd = Command::new(&self.binary);
        cmd.arg("--config")
            .arg(&self.config_path)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(&self.data_dir)
            .current_dir(self.dir.path())
            .env_clear()
            .env("RUST_BACKTRACE", "1");
        for (key, value) in &self.env {
            cmd.env(key, value);
        }
        let mut server = Server::spawn(&mut cmd, self.logs.clone());
        match server.wait_for_stdout(START_TIMEOUT, parse_listening_line) {
            Ok(bound) => {
                self.port = bound;
                self.url = format!("http://127.0.0.1:{bound}/");
                self.server = Some(server);
                Ok(())
            }
            Err(reason) => {
                let status = server.kill();
                Err(StartFailure {
                    reason,
                    status,
                    logs: self.logs.snapshot(),
                })
            }
        }
    }

    /// Everything pnpr printed (stdout, and stderr lines prefixed
    /// `[stderr] `), across restarts.
    pub fn logs(&self) -> String {
        self.logs.snapshot()
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.server.as_ref().map(Server::pid)
    }

    /// The data dir as a `Path`.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// SIGKILL, simulating a crash; the data dir is kept.
    pub fn kill_hard(&mut self) {
        if let Some(mut server) = self.server.take() {
            server.kill();
        }
    }

    /// SIGTERM and a bounded wait for a clean exit. Returns the exit status
    /// and whether pnpr exited by itself (false: it had to be SIGKILLed).
    pub fn stop(&mut self) -> (Option<ExitStatus>, bool) {
        match self.server.take() {
            Some(mut server) => server.stop_with("TERM", STOP_TIMEOUT),
            None => (None, true),
        }
    }

    /// SIGHUP (config reload).
    #[track_caller]
    pub fn signal_hup(&self) {
        match &self.server {
            Some(server) => crate::proc::send_signal(server.pid(), "HUP"),
            None => panic!("signal_hup: pnpr is not running"),
        }
    }

    /// Replaces the config file (e.g. before [`Pnpr::signal_hup`] or
    /// [`Pnpr::restart`]).
    #[track_caller]
    pub fn write_config(&self, config_yaml: &str) {
        std::fs::write(&self.config_path, config_yaml)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", self.config_path.display()));
    }

    /// Stops pnpr (gracefully if it is running) and starts it again with the
    /// same config file, env and data dir, on the same port so clients
    /// configured with [`Pnpr::url`] keep working.
    #[track_caller]
    pub fn restart(&mut self) {
        self.stop();
        let port = self.port;
        if let Err(failure) = self.spawn(port) {
            panic!(
                "pnpr did not restart on port {port}: {} (exit: {:?})\n--- output ---\n{}",
                failure.reason, failure.status, failure.logs
            );
        }
    }

    /// `Some(status)` if the process has exited on its own (e.g. crashed).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.server.as_mut().and_then(Server::exited)
    }
}

/// `<target>/debug/pnpr`, derived from this test executable's path
/// (`<target>/debug/deps/<test>-<hash>`), which also follows a custom
/// `CARGO_TARGET_DIR`.
#[track_caller]
pub fn binary_path() -> PathBuf {
    let exe =
        std::env::current_exe().unwrap_or_else(|e| panic!("cannot locate the test binary: {e}"));
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .unwrap_or_else(|| panic!("unexpected test binary location {}", exe.display()));
    let binary = profile_dir.join("pnpr");
    assert!(
        binary.is_file(),
        "{} not found: build it first (cargo build -p pnpr, or tests/run-all.sh)",
        binary.display()
    );
    binary
}

/// The port from a line containing `pnpr listening on http://127.0.0.1:<port>/`
/// (the line may carry a log prefix).
pub fn parse_listening_line(line: &str) -> Option<u16> {
    let start = line.find(LISTENING_PREFIX)? + LISTENING_PREFIX.len();
    let rest = line.get(start..)?;
    let digits_end = rest.find(|c: char| !c.is_ascii_digit())?;
    if rest.get(digits_end..digits_end + 1)? != "/" {
        return None;
    }
    match rest.get(..digits_end)?.parse::<u16>() {
        Ok(0) | Err(_) => None,
        Ok(port) => Some(port),
    }
}

/// Registers `name` on `pnpr` (password `<name>-pw`) with npm's login call
/// and returns the bearer token it hands out; panics unless it answers 201.
pub async fn add_user(http: &crate::Http, pnpr: &Pnpr, name: &str) -> String {
    let body = serde_json::json!({"name": name, "password": format!("{name}-pw")});
    let r = http
        .put_json(
            &format!("{}-/user/org.couchdb.user:{name}", pnpr.url),
            &body,
            None,
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    r.json()["token"]
        .as_str()
        .unwrap_or_else(|| panic!("login answer without a token: {}", r.text()))
        .to_string()
}
