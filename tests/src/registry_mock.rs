//! `RegistryMock`: pnpm's fixture registry (`@pnpm/registry-mock`'s bundled
//! Verdaccio storage) served by Verdaccio 6 on 127.0.0.1, the upstream every
//! e2e test proxies.
//!
//! Invariant guarded: each instance serves a fresh private copy of the
//! fixture storage (publishes and dist-tag edits never leak between tests)
//! and has no uplink, so it never reaches beyond loopback: an unknown package
//! is a fast 404.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use sha2::{Digest, Sha256};
use tempfile::TempDir;

use crate::deps::Deps;
use crate::http::Http;
use crate::net::{free_port, wait_http_ok};
use crate::proc::{LogBuffer, Server};

/// User of the bundled htpasswd that may read `@private/*` and
/// `@pnpm.e2e/needs-auth` (found by checking its crypt(3) hash).
pub const PRIVATE_USER: &str = "foo";
/// Password of [`PRIVATE_USER`]; a public test fixture, not a secret.
pub const PRIVATE_PASSWORD: &str = "bar";

/// How long Verdaccio may take to answer `/-/ping` (it needs ~1-2 s alone,
/// more while the machine compiles).
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Attempts when the port picked by [`free_port`] is taken before Verdaccio binds it.
const START_ATTEMPTS: usize = 3;

/// Same access rules as registry-mock's own config, minus its uplink.
const CONFIG: &str = "\
storage: ./storage
auth:
  htpasswd:
    file: ./htpasswd
uplinks: {}
web:
  enable: false
server:
  keepAliveTimeout: 60
packages:
  '@private/*':
    access: $authenticated
    publish: $authenticated
  '@pnpm.e2e/needs-auth':
    access: $authenticated
    publish: $authenticated
  '**':
    access: $all
    publish: $all
log:
  type: stdout
  format: pretty
  level: warn
";

/// A running registry-mock. Killed on drop.
#[derive(Debug)]
pub struct RegistryMock {
    /// `http://127.0.0.1:PORT/` (with the trailing slash).
    pub url: String,
    pub port: u16,
    /// How long [`RegistryMock::start`] took, for reporting.
    pub startup: Duration,
    server: Server,
    // Dropped after `server` (field order) so Verdaccio is dead before its
    // storage is deleted.
    dir: TempDir,
}

impl RegistryMock {
    /// Copies the fixture storage, starts Verdaccio and waits for `/-/ping`.
    #[track_caller]
    pub fn start() -> RegistryMock {
        let started = Instant::now();
        let deps = Deps::get();
        let dir = tempfile::Builder::new()
            .prefix("pnpr-e2e-registry-mock-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create temp dir: {e}"));
        prepare_storage(deps, dir.path());
        let config = dir.path().join("config.yaml");
        std::fs::write(&config, CONFIG)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", config.display()));

        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            let port = free_port();
            let logs = LogBuffer::default();
            let mut server = Server::spawn(
                Command::new(&deps.node22)
                    .arg(&deps.verdaccio_bin)
                    .arg("--config")
                    .arg(&config)
                    .arg("--listen")
                    .arg(format!("127.0.0.1:{port}"))
                    .current_dir(dir.path())
                    .env_clear()
                    .env("PATH", &deps.client_path)
                    .env("HOME", dir.path())
                    .env("NODE_ENV", "production"),
                logs,
            );
            let deadline = Instant::now() + START_TIMEOUT;
            match wait_http_ok(port, "/-/ping", deadline, || server.exited().is_none()) {
                Ok(()) => {
                    return RegistryMock {
                        url: format!("http://127.0.0.1:{port}/"),
                        port,
                        startup: started.elapsed(),
                        server,
                        dir,
                    };
                }
                Err(why) => {
                    server.kill();
                    failures.push(format!("port {port}: {why}\n{}", server.logs()));
                }
            }
        }
        panic!("registry-mock did not start:\n{}", failures.join("\n---\n"));
    }

    /// The `@private/*` reader from the bundled htpasswd.
    pub fn private_credentials() -> (&'static str, &'static str) {
        (PRIVATE_USER, PRIVATE_PASSWORD)
    }

    /// Logs in (npm's `PUT /-/user/org.couchdb.user:<user>`) and returns the
    /// bearer token. Verdaccio answers 409 to that PUT for an existing user
    /// unless the request also authenticates, so the credentials go both in
    /// the body (registers an unknown user on the fly, registration is open)
    /// and as Basic auth (logs an existing one in).
    pub async fn login(&self, user: &str, password: &str) -> String {
        let url = format!("{}-/user/org.couchdb.user:{user}", self.url);
        let body = serde_json::json!({
            "_id": format!("org.couchdb.user:{user}"),
            "name": user,
            "password": password,
            "type": "user",
            "roles": [],
        });
        let basic = format!("Basic {}", BASE64.encode(format!("{user}:{password}")));
        let bytes = body.to_string().into_bytes();
        let response = Http::new()
            .send(
                "PUT",
                &url,
                &[
                    ("content-type", "application/json"),
                    ("authorization", &basic),
                ],
                Some(bytes),
            )
            .await;
        assert!(
            response.status == 200 || response.status == 201,
            "login as {user} failed: {} {}",
            response.status,
            response.text()
        );
        match response.json().get("token").and_then(|t| t.as_str()) {
            Some(token) => token.to_string(),
            None => panic!("login as {user}: no token in the response"),
        }
    }

    /// Token for [`Self::private_credentials`].
    pub async fn private_token(&self) -> String {
        self.login(PRIVATE_USER, PRIVATE_PASSWORD).await
    }

    /// Verdaccio's storage directory of this instance (packuments and
    /// tarballs as served).
    pub fn storage_dir(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// Everything Verdaccio printed so far.
    pub fn logs(&self) -> String {
        self.server.logs()
    }
}

fn prepare_storage(deps: &Deps, dir: &Path) {
    let storage = dir.join("storage");
    copy_dir(&deps.registry_mock_storage, &storage);
    let htpasswd = dir.join("htpasswd");
    std::fs::copy(&deps.registry_mock_htpasswd, &htpasswd)
        .unwrap_or_else(|e| panic!("cannot copy htpasswd: {e}"));
    fix_db_secret(&storage.join(".verdaccio-db.json"), dir);
}

/// The bundled `.verdaccio-db.json` carries a 64-char secret, which Verdaccio
/// 6 on Node 22 rejects ("secret key length must be 32"); replace it with a
/// 32-char one derived from this instance's directory.
fn fix_db_secret(db_path: &Path, dir: &Path) {
    let text = std::fs::read_to_string(db_path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", db_path.display()));
    let mut db: serde_json::Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", db_path.display()));
    let digest = Sha256::digest(dir.as_os_str().as_encoded_bytes());
    let secret = hex::encode(&digest[..16]);
    match db.as_object_mut() {
        Some(obj) => {
            obj.insert("secret".into(), serde_json::Value::String(secret));
        }
        None => panic!("{} is not a JSON object", db_path.display()),
    }
    std::fs::write(db_path, db.to_string())
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", db_path.display()));
}

/// Recursive copy of regular files and directories (the fixture storage has
/// nothing else).
pub(crate) fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap_or_else(|e| panic!("cannot create {}: {e}", to.display()));
    let entries =
        std::fs::read_dir(from).unwrap_or_else(|e| panic!("cannot list {}: {e}", from.display()));
    for entry in entries {
        let entry = entry.unwrap_or_else(|e| panic!("cannot list {}: {e}", from.display()));
        let src = entry.path();
        let dst = to.join(entry.file_name());
        let file_type = entry
            .file_type()
            .unwrap_or_else(|e| panic!("cannot stat {}: {e}", src.display()));
        if file_type.is_dir() {
            copy_dir(&src, &dst);
        } else {
            std::fs::copy(&src, &dst)
                .unwrap_or_else(|e| panic!("cannot copy {}: {e}", src.display()));
        }
    }
}
