//! `S3rver`: a throwaway S3-compatible server (the `s3rver` npm package
//! from `tests/.deps`) for tests that run pnpr with `blobs: {s3: ...}`.
//!
//! Invariants guarded: it listens on 127.0.0.1 only, on a free port, keeps
//! its objects in a temp dir, runs with a cleared environment, and is
//! stopped (and its dir deleted) on drop. s3rver checks signatures made
//! with its fixed keys ([`ACCESS_KEY`] / [`SECRET_KEY`]) and answers
//! unsigned path-style requests too, so tests read, list and corrupt objects
//! through the S3 REST API with a plain HTTP client.

use std::process::Command;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::deps::Deps;
use crate::net::free_port;
use crate::proc::{LogBuffer, Server};

const START_TIMEOUT: Duration = Duration::from_secs(30);
/// The keys s3rver verifies signatures against.
pub const ACCESS_KEY: &str = "S3RVER";
pub const SECRET_KEY: &str = "S3RVER";

/// A running s3rver with one bucket. Stopped on drop.
#[derive(Debug)]
pub struct S3rver {
    pub port: u16,
    pub bucket: String,
    /// `http://127.0.0.1:PORT` (no trailing slash), the `endpoint:`.
    pub endpoint: String,
    logs: LogBuffer,
    server: Option<Server>,
    // Dropped after `server`.
    dir: TempDir,
}

impl S3rver {
    /// Starts s3rver with bucket `bucket` on a free loopback port.
    #[track_caller]
    pub fn start(bucket: &str) -> S3rver {
        let dir = tempfile::Builder::new()
            .prefix("pnpr-e2e-s3-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create temp dir: {e}"));
        let mut s3 = S3rver {
            port: free_port(),
            bucket: bucket.to_owned(),
            endpoint: String::new(),
            logs: LogBuffer::default(),
            server: None,
            dir,
        };
        s3.endpoint = format!("http://127.0.0.1:{}", s3.port);
        s3.spawn();
        s3
    }

    fn spawn(&mut self) {
        let deps = Deps::get();
        let script = deps.root.join("node/node_modules/s3rver/bin/s3rver.js");
        assert!(
            script.exists(),
            "s3rver missing at {}: run tests/setup.sh",
            script.display()
        );
        let mut cmd = Command::new(&deps.node22);
        cmd.arg(script)
            .arg("-d")
            .arg(self.dir.path().join("data"))
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["--no-vhost-buckets", "--configure-bucket", &self.bucket])
            .current_dir(self.dir.path())
            .env_clear()
            .env("PATH", &deps.client_path)
            .env("HOME", self.dir.path());
        let mut server = Server::spawn(&mut cmd, self.logs.clone());
        let deadline = Instant::now() + START_TIMEOUT;
        // Ready once the bucket answers (it is created after the listen).
        let path = format!("/{}/", self.bucket);
        loop {
            if crate::net::http_status(self.port, &path, Duration::from_secs(2)) == Some(200) {
                break;
            }
            let exited = server.exited();
            if exited.is_some() || Instant::now() > deadline {
                server.kill();
                panic!(
                    "s3rver did not serve bucket {} on 127.0.0.1:{} (exit: {exited:?})\n{}",
                    self.bucket,
                    self.port,
                    self.logs.snapshot()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.server = Some(server);
    }

    /// Stops the server (the bucket becomes unreachable; its objects stay).
    pub fn stop(&mut self) {
        if let Some(mut server) = self.server.take() {
            server.stop_with("TERM", Duration::from_secs(5));
        }
    }

    /// Starts it again on the same port and data.
    #[track_caller]
    pub fn start_again(&mut self) {
        assert!(self.server.is_none(), "s3rver is still running");
        self.spawn();
    }

    /// The URL of `key` in the bucket (path-style, as the S3 API spells it).
    pub fn object_url(&self, key: &str) -> String {
        format!("{}/{}/{key}", self.endpoint, self.bucket)
    }

    /// An object's bytes, `None` when absent or when the read failed (a
    /// read racing an overwrite of the same key can be cut short by
    /// s3rver; callers that wait for an object poll this).
    pub async fn object(&self, key: &str) -> Option<Vec<u8>> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("http client");
        let r = client.get(self.object_url(key)).send().await.ok()?;
        if r.status() != 200 {
            return None;
        }
        r.bytes().await.ok().map(|b| b.to_vec())
    }

    /// Every key in the bucket under `prefix` (ListObjectsV2, first page).
    pub async fn keys(&self, http: &crate::Http, prefix: &str) -> Vec<String> {
        let url = format!(
            "{}/{}/?list-type=2&prefix={prefix}&max-keys=1000",
            self.endpoint, self.bucket
        );
        let r = http.get(&url).await;
        r.assert_status(200);
        let xml = r.text();
        xml.split("<Key>")
            .skip(1)
            .filter_map(|s| s.split("</Key>").next())
            .map(str::to_owned)
            .collect()
    }

    /// What the server logged so far.
    pub fn logs(&self) -> String {
        self.logs.snapshot()
    }
}

impl Drop for S3rver {
    fn drop(&mut self) {
        self.stop();
    }
}
