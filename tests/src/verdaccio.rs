//! Starting Verdaccio 6 (from `tests/.deps`) on a free loopback port in a
//! prepared folder: the one launcher behind the parity harness's offline
//! registry and the benchmarks' peer proxy.
//!
//! Invariant: it listens on 127.0.0.1 only, with a cleared environment; a
//! start that does not answer `/-/ping` in time is killed and retried on
//! another port (three tries), and every failure's log is returned.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::deps::Deps;
use crate::net::{free_port, wait_http_ok};
use crate::proc::{LogBuffer, Server};

const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Writes `config` (and an empty htpasswd) into `dir` and starts Verdaccio
/// there; returns the running server and its port.
pub fn spawn(dir: &Path, config: &str) -> Result<(Server, u16), String> {
    std::fs::write(dir.join("htpasswd"), "").map_err(|e| e.to_string())?;
    let config_path = dir.join("config.yaml");
    std::fs::write(&config_path, config).map_err(|e| e.to_string())?;
    let deps = Deps::get();
    let mut failures = Vec::new();
    for _ in 0..3 {
        let port = free_port();
        let mut server = Server::spawn(
            Command::new(&deps.node22)
                .arg(&deps.verdaccio_bin)
                .arg("--config")
                .arg(&config_path)
                .arg("--listen")
                .arg(format!("127.0.0.1:{port}"))
                .current_dir(dir)
                .env_clear()
                .env("PATH", &deps.client_path)
                .env("HOME", dir)
                .env("NODE_ENV", "production"),
            LogBuffer::default(),
        );
        let deadline = Instant::now() + START_TIMEOUT;
        match wait_http_ok(port, "/-/ping", deadline, || server.exited().is_none()) {
            Ok(()) => return Ok((server, port)),
            Err(why) => {
                server.kill();
                failures.push(format!("port {port}: {why}\n{}", server.logs()));
            }
        }
    }
    Err(failures.join("\n---\n"))
}
