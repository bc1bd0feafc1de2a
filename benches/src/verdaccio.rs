//! `Verdaccio`: the peer proxy (Verdaccio 6.10.4 from `tests/.deps`) run as a
//! caching proxy of one upstream on 127.0.0.1, the thing pnpr is compared to.
//!
//! Invariant guarded: each instance starts with its own empty storage (a
//! "cold server" really is cold), has exactly one loopback uplink, and is
//! killed on drop before its storage is deleted.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use pnpr_e2e::net::wait_http_ok;
use pnpr_e2e::proc::{LogBuffer, Server};
use pnpr_e2e::{free_port, Deps};

const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A running Verdaccio proxy.
pub struct Verdaccio {
    pub url: String,
    pub port: u16,
    server: Server,
    dir: tempfile::TempDir,
}

impl Verdaccio {
    /// Starts Verdaccio proxying `upstream` (a loopback URL ending in `/`).
    pub fn start(upstream: &str) -> Result<Verdaccio, String> {
        if !upstream.starts_with("http://127.0.0.1:") {
            return Err(format!("refusing non-loopback upstream {upstream}"));
        }
        let deps = Deps::get();
        let dir = tempfile::Builder::new()
            .prefix("pnpr-bench-verdaccio-")
            .tempdir()
            .map_err(|e| format!("temp dir: {e}"))?;
        std::fs::create_dir_all(dir.path().join("storage")).map_err(|e| e.to_string())?;
        std::fs::write(dir.path().join("htpasswd"), "").map_err(|e| e.to_string())?;
        // Same uplink tuning as the reference launcher: keep-alive, 40
        // sockets, so Verdaccio is not handicapped by its defaults.
        let config = format!(
            "storage: ./storage\nauth:\n  htpasswd:\n    file: ./htpasswd\n    max_users: -1\n\
             uplinks:\n  upstream:\n    url: {upstream}\n    timeout: 30s\n    maxage: 1h\n    max_fails: 100\n    fail_timeout: 10s\n\
             \x20   agent_options:\n      keepAlive: true\n      maxSockets: 40\n      maxFreeSockets: 10\n\
             web:\n  enable: false\nserver:\n  keepAliveTimeout: 60\n\
             packages:\n  '**':\n    access: $all\n    publish: $authenticated\n    proxy: upstream\n\
             log:\n  type: stdout\n  format: pretty\n  level: warn\n"
        );
        let config_path = dir.path().join("config.yaml");
        std::fs::write(&config_path, config).map_err(|e| e.to_string())?;
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
                    .current_dir(dir.path())
                    .env_clear()
                    .env("PATH", &deps.client_path)
                    .env("HOME", dir.path())
                    .env("NODE_ENV", "production"),
                LogBuffer::default(),
            );
            let deadline = Instant::now() + START_TIMEOUT;
            match wait_http_ok(port, "/-/ping", deadline, || server.exited().is_none()) {
                Ok(()) => {
                    return Ok(Verdaccio {
                        url: format!("http://127.0.0.1:{port}/"),
                        port,
                        server,
                        dir,
                    })
                }
                Err(why) => {
                    server.kill();
                    failures.push(format!("port {port}: {why}\n{}", server.logs()));
                }
            }
        }
        Err(failures.join("\n---\n"))
    }

    /// The storage folder (empty until something was proxied).
    pub fn storage(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    pub fn pid(&self) -> u32 {
        self.server.pid()
    }
}
