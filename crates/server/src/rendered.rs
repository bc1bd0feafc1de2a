//! Rendered registry documents and their HTTP answers: the rendered-body
//! cache entry, content ETags with `304`, the abbreviated-form negotiation,
//! and the one answer for a tarball stored on disk.
//!
//! Invariant: a body is served with the validator of exactly its bytes; a
//! stored tarball is streamed with the length of the file it came from. A
//! document rendered from a body file is rendered to a file (hashed as it is
//! written) and streamed from it, so its size never becomes memory; that
//! file lives as long as its [`Rendered`] and the responses reading it.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::ApiError;

pub(crate) const ABBREVIATED: &str = "application/vnd.npm.install-v1+json";

/// Marks an answer that depends on who asked: no shared cache may keep it,
/// and a private cache keys it by the `Authorization` header.
pub(crate) fn mark_private(resp: &mut Response) {
    let h = resp.headers_mut();
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    h.insert(header::VARY, HeaderValue::from_static("Authorization"));
}

/// A tarball file (hosted or cached) streamed from disk as
/// `application/octet-stream` with its `Content-Length`. `what` names the
/// store in the error when the file cannot be opened.
pub(crate) async fn tarball_file_response(
    path: &std::path::Path,
    len: u64,
    what: &'static str,
) -> Result<Response, ApiError> {
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| ApiError::internal(what, e))?;
    Ok(open_file_response(file, len))
}

/// An already opened tarball file streamed as `application/octet-stream`:
/// the handle is read to the end even if the name is unlinked meanwhile
/// (eviction), and nothing re-opens it by path.
pub(crate) fn open_file_response(file: tokio::fs::File, len: u64) -> Response {
    let stream = tokio_util::io::ReaderStream::with_capacity(file, 64 * 1024);
    let mut resp = Response::new(axum::body::Body::from_stream(stream));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    resp
}

pub(crate) fn wants_abbreviated(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains(ABBREVIATED))
}

/// A packument body as served, with its validator.
#[derive(Debug)]
pub struct Rendered {
    body: RenderedBody,
    etag: String,
    ctype: &'static str,
    /// Epoch ms until which the metadata behind it counts as fresh.
    fresh_until: i64,
}

/// Rendered bodies by key (namespace, name, form, tarball base, uplinks),
/// least recently used first out.
///
/// Invariant: the bodies held total at most `budget` bytes (and at most
/// `entries` of them), so one huge document cannot pin memory beyond the
/// budget; a body larger than a quarter of the budget is never kept.
pub struct RenderedCache {
    inner: std::sync::Mutex<CacheInner>,
    budget: usize,
}

/// Where a rendered body is.
#[derive(Debug)]
enum RenderedBody {
    Memory(bytes::Bytes),
    /// Rendered to disk; never kept in the memory cache.
    File {
        file: RenderedFile,
        len: u64,
    },
}

/// A rendered body file, removed when the last holder lets go (a response
/// already streaming it keeps its open descriptor).
#[derive(Debug)]
struct RenderedFile(std::path::PathBuf);

impl Drop for RenderedFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

struct CacheInner {
    lru: lru::LruCache<String, std::sync::Arc<Rendered>>,
    bytes: usize,
}

impl RenderedCache {
    /// Default memory budget of rendered bodies.
    pub const DEFAULT_BUDGET: usize = 128 * 1024 * 1024;

    pub fn new(budget: usize, entries: usize) -> Self {
        let entries = std::num::NonZeroUsize::new(entries).unwrap_or(std::num::NonZeroUsize::MIN);
        Self {
            inner: std::sync::Mutex::new(CacheInner {
                lru: lru::LruCache::new(entries),
                bytes: 0,
            }),
            budget,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CacheInner> {
        // Counters and an LRU of Arcs: usable after a panic elsewhere.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The entry for `key` if it is still fresh at `now_ms`.
    pub(crate) fn get_fresh(&self, key: &str, now_ms: i64) -> Option<std::sync::Arc<Rendered>> {
        self.lock()
            .lru
            .get(key)
            .filter(|r| r.fresh_at(now_ms))
            .cloned()
    }

    pub(crate) fn put(&self, key: String, r: std::sync::Arc<Rendered>) {
        let RenderedBody::Memory(body) = &r.body else {
            return;
        };
        let size = body.len();
        if size > self.budget / 4 {
            return;
        }
        let mut inner = self.lock();
        inner.bytes += size;
        if let Some((_, old)) = inner.lru.push(key, r) {
            // Replaced the same key, or evicted the LRU entry at the count cap.
            inner.bytes = inner.bytes.saturating_sub(old.memory_len());
        }
        while inner.bytes > self.budget {
            match inner.lru.pop_lru() {
                Some((_, old)) => inner.bytes = inner.bytes.saturating_sub(old.memory_len()),
                None => break,
            }
        }
    }

    /// Bytes of bodies held.
    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.lock().bytes
    }
}

impl Rendered {
    /// Serialises `doc` as `ctype`, valid until `fresh_until` (epoch ms).
    pub(crate) fn new(
        doc: &Value,
        ctype: &'static str,
        fresh_until: i64,
    ) -> Result<Self, ApiError> {
        let bytes =
            serde_json::to_vec(doc).map_err(|e| ApiError::internal("serialising a document", e))?;
        Ok(Self {
            etag: content_etag(&bytes),
            body: RenderedBody::Memory(bytes::Bytes::from(bytes)),
            ctype,
            fresh_until,
        })
    }

    /// Renders the body file `src` (a stored packument too large to hold)
    /// version by version into a file in `dir`, on the blocking pool; the
    /// ETag is the digest of the bytes written.
    pub(crate) async fn from_body_file(
        src: std::fs::File,
        dir: std::path::PathBuf,
        (base, name): (String, String),
        abbreviated: bool,
        fresh_until: i64,
    ) -> Result<Self, ApiError> {
        let (form, ctype) = if abbreviated {
            (pnpr_packument::StreamForm::Abbreviated, ABBREVIATED)
        } else {
            (pnpr_packument::StreamForm::Full, "application/json")
        };
        let task = tokio::task::spawn_blocking(move || {
            let path = dir.join(format!("{:032x}.json", rand::random::<u128>()));
            let file = RenderedFile(path);
            let out = std::fs::File::create(&file.0)
                .map_err(|e| ApiError::internal("rendering to disk", e))?;
            let mut w = HashingWriter {
                inner: out,
                hash: Sha256::new(),
                len: 0,
            };
            let mut src = src;
            pnpr_packument::render_streaming(&mut src, &mut w, &base, &name, form)
                .map_err(|e| ApiError::internal("rendering a stored packument", e))?;
            let etag = format!("\"{}\"", &hex::encode(w.hash.finalize())[..32]);
            let len = w.len;
            Ok::<_, ApiError>((file, len, etag))
        });
        let (file, len, etag) = task
            .await
            .map_err(|e| ApiError::internal("render task failed", e))??;
        Ok(Self {
            body: RenderedBody::File { file, len },
            etag,
            ctype,
            fresh_until,
        })
    }

    /// Bytes this body holds in memory.
    fn memory_len(&self) -> usize {
        match &self.body {
            RenderedBody::Memory(b) => b.len(),
            RenderedBody::File { .. } => 0,
        }
    }

    pub(crate) fn fresh_at(&self, now_ms: i64) -> bool {
        self.fresh_until > now_ms
    }

    /// `200` with the body, or `304` when the request already has it.
    pub(crate) fn respond(&self, headers: &HeaderMap) -> Response {
        let body = match &self.body {
            RenderedBody::Memory(b) => axum::body::Body::from(b.clone()),
            RenderedBody::File { file, len } => {
                // Opened now: the response reads through this descriptor
                // even after the file is removed.
                match std::fs::File::open(&file.0) {
                    Ok(f) => {
                        let f = tokio::fs::File::from_std(f);
                        let stream = tokio_util::io::ReaderStream::with_capacity(f, 64 * 1024);
                        let mut resp = etag_response(
                            axum::body::Body::from_stream(stream),
                            &self.etag,
                            self.ctype,
                            headers,
                        );
                        if resp.status() == StatusCode::OK {
                            resp.headers_mut()
                                .insert(header::CONTENT_LENGTH, HeaderValue::from(*len));
                        }
                        return resp;
                    }
                    Err(e) => {
                        return ApiError::internal("opening a rendered body", e).into_response()
                    }
                }
            }
        };
        etag_response(body, &self.etag, self.ctype, headers)
    }
}

/// Passes bytes through to `inner`, hashing and counting them.
struct HashingWriter<W> {
    inner: W,
    hash: Sha256,
    len: u64,
}

impl<W: std::io::Write> std::io::Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Serialises `body` and answers it with a content ETag (304 on a match).
pub(crate) fn json_with_etag(body: &Value, ctype: &'static str, headers: &HeaderMap) -> Response {
    match Rendered::new(body, ctype, 0) {
        Ok(r) => r.respond(headers),
        Err(e) => e.into_response(),
    }
}

/// A strong validator derived from the body bytes.
fn content_etag(bytes: &[u8]) -> String {
    format!("\"{}\"", &hex::encode(Sha256::digest(bytes))[..32])
}

/// `200` with the body, or `304` when `If-None-Match` names this ETag.
fn etag_response(
    body: axum::body::Body,
    etag: &str,
    ctype: &'static str,
    headers: &HeaderMap,
) -> Response {
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|inm| {
            inm.split(',')
                .map(|t| t.trim().trim_start_matches("W/"))
                .any(|t| t == etag || t == "*")
        });
    let mut resp = if matches {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (StatusCode::OK, body).into_response()
    };
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    resp
}

#[cfg(test)]
mod cache_tests {
    use std::sync::Arc;

    use super::*;

    fn doc(len: usize) -> Arc<Rendered> {
        let v = serde_json::Value::String("x".repeat(len.saturating_sub(2)));
        Arc::new(Rendered::new(&v, "application/json", i64::MAX).unwrap())
    }

    #[test]
    fn the_cache_is_bounded_in_bytes() {
        let cache = RenderedCache::new(1000, 100);
        for i in 0..10 {
            cache.put(format!("k{i}"), doc(200));
            assert!(cache.bytes() <= 1000, "{}", cache.bytes());
        }
        assert_eq!(cache.bytes(), 1000);
        // Oldest gone, newest kept.
        assert!(cache.get_fresh("k0", 0).is_none());
        assert!(cache.get_fresh("k9", 0).is_some());
        // Replacing a key does not double-count it.
        cache.put("k9".into(), doc(100));
        assert_eq!(cache.bytes(), 900);
        // Too large for the budget: never kept.
        cache.put("huge".into(), doc(251));
        assert!(cache.get_fresh("huge", 0).is_none());
        assert_eq!(cache.bytes(), 900);
    }

    #[test]
    fn the_entry_cap_still_applies_and_keeps_the_count_right() {
        let cache = RenderedCache::new(1 << 20, 2);
        cache.put("a".into(), doc(10));
        cache.put("b".into(), doc(20));
        cache.put("c".into(), doc(30));
        assert_eq!(cache.bytes(), 50);
        assert!(cache.get_fresh("a", 0).is_none());
        // Stale entries are not served.
        let stale = Arc::new(Rendered::new(&serde_json::json!({}), "application/json", 5).unwrap());
        cache.put("s".into(), stale);
        assert!(cache.get_fresh("s", 10).is_none());
    }
}
