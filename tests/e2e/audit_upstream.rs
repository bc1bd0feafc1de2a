//! An audit-capable upstream for the audit e2e tests: no offline audit
//! service exists, so this one answers npm's bulk advisory endpoint (and the
//! older quick/full audit endpoints) from a fixed advisory list and records
//! every request body it receives, so tests can assert on the upstream side
//! what pnpr forwarded (and that private names never arrived).

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

/// The package the upstream reports as vulnerable, and its advisory title.
pub const VULNERABLE: &str = "@pnpm.e2e/dep-of-pkg-with-1-dep";
pub const TITLE: &str = "pnpr e2e advisory";

/// A listening audit upstream on 127.0.0.1.
pub struct AuditUpstream {
    pub url: String,
    received: Arc<Mutex<Vec<(String, String)>>>,
}

impl AuditUpstream {
    pub fn start() -> AuditUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind audit upstream");
        let port = listener.local_addr().expect("local addr").port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&received);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let log = Arc::clone(&log);
                std::thread::spawn(move || serve(stream, &log));
            }
        });
        AuditUpstream {
            url: format!("http://127.0.0.1:{port}/"),
            received,
        }
    }

    /// Every `(path, body)` received so far.
    pub fn received(&self) -> Vec<(String, String)> {
        self.received
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// All bodies received so far, concatenated (for "never arrived" checks).
    pub fn all_bodies(&self) -> String {
        self.received()
            .into_iter()
            .map(|(_, b)| b)
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn serve(mut stream: std::net::TcpStream, log: &Mutex<Vec<(String, String)>>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let path = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("/")
        .to_string();
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_end + len {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let body = String::from_utf8_lossy(&buf[head_end..]).to_string();
    let answer = answer(&path, &body);
    log.lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((path, body));
    let (status, text) = match answer {
        Some(v) => (200, v.to_string()),
        None => (404, json!({"error": "not found"}).to_string()),
    };
    let out = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
        text.len()
    );
    let _ = stream.write_all(out.as_bytes());
}

fn advisory() -> Value {
    json!({
        "id": 1_016_001,
        "url": "http://127.0.0.1/advisories/1016001",
        "title": TITLE,
        "severity": "high",
        "vulnerable_versions": "<999.0.0",
        "cwe": ["CWE-400"],
        "cvss": {"score": 7.5, "vectorString": null}
    })
}

fn answer(path: &str, body: &str) -> Option<Value> {
    let req: Value = serde_json::from_str(body).ok()?;
    if path.ends_with("/-/npm/v1/security/advisories/bulk") {
        let hit = req.get(VULNERABLE).is_some();
        return Some(if hit {
            json!({ VULNERABLE: [advisory()] })
        } else {
            json!({})
        });
    }
    if path.ends_with("/-/npm/v1/security/audits/quick")
        || path.ends_with("/-/npm/v1/security/audits")
    {
        return Some(quick_report(&req));
    }
    None
}

/// The npm v1 audit report the quick/full endpoints return.
fn quick_report(req: &Value) -> Value {
    let version = req["dependencies"][VULNERABLE]["version"].as_str();
    let mut advisories = serde_json::Map::new();
    let mut high = 0;
    if let Some(v) = version {
        high = 1;
        let mut a = advisory();
        a["module_name"] = json!(VULNERABLE);
        a["findings"] = json!([{"version": v, "paths": [VULNERABLE]}]);
        a["patched_versions"] = json!(">=999.0.0");
        a["overview"] = json!("test advisory");
        a["recommendation"] = json!("upgrade");
        advisories.insert("1016001".into(), a);
    }
    json!({
        "actions": [],
        "advisories": advisories,
        "muted": [],
        "metadata": {
            "vulnerabilities": {"info": 0, "low": 0, "moderate": 0, "high": high, "critical": 0},
            "dependencies": 1, "devDependencies": 0, "optionalDependencies": 0,
            "totalDependencies": 1
        }
    })
}
