//! A tiny hand-written HTTP/1.1 upstream for hostile-upstream cases that a
//! real registry cannot be made to produce (bad redirects, lying integrity,
//! URLs with userinfo). Serves programmed responses and counts connections,
//! so tests can prove that a refused fetch never reached the wire.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// One programmed answer.
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(v: &serde_json::Value) -> Reply {
        Reply {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: v.to_string().into_bytes(),
        }
    }
    pub fn bytes(b: Vec<u8>) -> Reply {
        Reply {
            status: 200,
            headers: vec![],
            body: b,
        }
    }
    pub fn redirect(to: &str) -> Reply {
        Reply {
            status: 302,
            headers: vec![("location".into(), to.into())],
            body: vec![],
        }
    }
    pub fn status(code: u16) -> Reply {
        Reply {
            status: code,
            headers: vec![],
            body: b"{}".to_vec(),
        }
    }
}

type Handler = dyn Fn(&str, &str) -> Reply + Send + Sync;

/// A listening fake upstream on 127.0.0.1.
pub struct FakeUpstream {
    pub port: u16,
    pub url: String,
    accepts: Arc<AtomicUsize>,
}

impl FakeUpstream {
    pub fn start(handler: impl Fn(&str) -> Reply + Send + Sync + 'static) -> FakeUpstream {
        Self::start_with_head(move |path, _head| handler(path))
    }

    /// Like [`FakeUpstream::start`], the handler also seeing the request's
    /// head (request line and headers, e.g. to check credentials).
    pub fn start_with_head(
        handler: impl Fn(&str, &str) -> Reply + Send + Sync + 'static,
    ) -> FakeUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind fake upstream");
        let port = listener.local_addr().expect("local addr").port();
        let accepts = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&accepts);
        let handler: Arc<Handler> = Arc::new(handler);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                counter.fetch_add(1, Ordering::SeqCst);
                let handler = Arc::clone(&handler);
                std::thread::spawn(move || {
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut chunk) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                        if buf.len() > 64 * 1024 {
                            return;
                        }
                    }
                    let head = String::from_utf8_lossy(&buf).to_string();
                    let path = head
                        .lines()
                        .next()
                        .and_then(|l| l.split_whitespace().nth(1))
                        .unwrap_or("/")
                        .to_string();
                    let reply = handler(&path, &head);
                    let mut out = format!(
                        "HTTP/1.1 {} X\r\ncontent-length: {}\r\nconnection: close\r\n",
                        reply.status,
                        reply.body.len()
                    );
                    for (k, v) in &reply.headers {
                        out.push_str(&format!("{k}: {v}\r\n"));
                    }
                    out.push_str("\r\n");
                    let _ = stream.write_all(out.as_bytes());
                    let _ = stream.write_all(&reply.body);
                });
            }
        });
        FakeUpstream {
            port,
            url: format!("http://127.0.0.1:{port}/"),
            accepts,
        }
    }

    /// How many connections were accepted so far.
    pub fn accepts(&self) -> usize {
        self.accepts.load(Ordering::SeqCst)
    }
}

/// SRI `sha512-<base64>` of `bytes`.
pub fn sri(bytes: &[u8]) -> String {
    use base64::Engine;
    use sha2::Digest;
    format!(
        "sha512-{}",
        base64::engine::general_purpose::STANDARD.encode(sha2::Sha512::digest(bytes))
    )
}

/// A minimal packument for `name@1.0.0` whose tarball lives at `tarball`.
pub fn packument(name: &str, tarball: &str, integrity: &str) -> serde_json::Value {
    serde_json::json!({
        "name": name,
        "dist-tags": {"latest": "1.0.0"},
        "versions": {"1.0.0": {"name": name, "version": "1.0.0",
            "dist": {"tarball": tarball, "integrity": integrity}}},
        "time": {"1.0.0": "2020-01-01T00:00:00.000Z"}
    })
}

/// Counts files under a directory tree.
pub fn count_files(dir: &std::path::Path) -> usize {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| {
            let p = e.path();
            if p.is_dir() {
                count_files(&p)
            } else {
                1
            }
        })
        .sum()
}
