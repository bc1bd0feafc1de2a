//! Response compression for JSON documents (packuments, version documents,
//! dist-tags, search, errors), negotiated by `Accept-Encoding`: zstd, br or
//! gzip, whichever the client prefers.
//!
//! Documents with a content ETag (every packument and version document)
//! are compressed once per (ETag, length, encoding) and kept in a bounded
//! cache, so a warm packument costs a lookup, not a compression, per
//! request; everything else JSON is compressed on the fly (tower-http).
//!
//! Invariants guarded here:
//! - only JSON bodies are ever compressed: tarballs (already gzip, verified
//!   byte for byte by clients), the `/v1/install` body (gzip framed by the
//!   protocol) and the v0 NDJSON stream (each frame must reach the client
//!   when it is written, which an encoder's buffering would delay) keep
//!   their bytes and their framing;
//! - a cached compressed body is found only by the ETag the handler computed
//!   from the identity bytes (a SHA-256 prefix) plus their length, so it can
//!   only be served in place of those same bytes, whoever asks and on
//!   whichever scope the response was produced.

use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use futures_util::FutureExt;
use tower_http::compression::predicate::{Predicate, SizeAbove};
use tower_http::compression::CompressionLayer;

use crate::flights::Flights;

/// Bodies shorter than this are sent as they are: below one packet the
/// encoder's header and CPU cost buy nothing.
const MIN_SIZE: u16 = 1024;

/// ETag'd bodies up to this size are compressed once and cached; larger
/// ones (huge packuments streamed from disk) are compressed on the fly.
const MAX_CACHED_BODY: u64 = 16 * 1024 * 1024;

/// Bytes of compressed bodies the cache keeps (oldest dropped first).
const CACHE_BYTES: usize = 128 * 1024 * 1024;

/// Content types eligible for compression (media type, parameters ignored).
const JSON_TYPES: &[&str] = &["application/json", "application/vnd.npm.install-v1+json"];

/// Compress when the body is JSON.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct JsonOnly;

impl Predicate for JsonOnly {
    fn should_compress<B>(&self, response: &axum::http::Response<B>) -> bool
    where
        B: axum::body::HttpBody,
    {
        is_json(response.headers())
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or_default().trim())
        .is_some_and(|media| JSON_TYPES.iter().any(|t| media.eq_ignore_ascii_case(t)))
}

/// The on-the-fly layer for JSON without a content ETag; it leaves
/// responses [`cached`] already encoded alone.
pub(crate) fn layer() -> CompressionLayer<impl Predicate> {
    CompressionLayer::new()
        .gzip(true)
        .br(true)
        .zstd(true)
        .compress_when(SizeAbove::new(MIN_SIZE).and(JsonOnly))
}

/// A content coding pnpr produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Coding {
    Zstd,
    Br,
    Gzip,
}

impl Coding {
    fn token(self) -> &'static str {
        match self {
            Self::Zstd => "zstd",
            Self::Br => "br",
            Self::Gzip => "gzip",
        }
    }

    fn encode(self, data: &[u8]) -> std::io::Result<Vec<u8>> {
        match self {
            Self::Zstd => zstd::bulk::compress(data, 3),
            Self::Br => {
                let mut out = Vec::new();
                {
                    let mut w = brotli::CompressorWriter::new(&mut out, 64 * 1024, 5, 22);
                    w.write_all(data)?;
                }
                Ok(out)
            }
            Self::Gzip => {
                let mut w = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
                w.write_all(data)?;
                w.finish()
            }
        }
    }
}

/// The client's preferred coding: highest `q`, ties broken zstd > br >
/// gzip; `None` for identity.
fn negotiate(headers: &HeaderMap) -> Option<Coding> {
    let raw = headers.get(header::ACCEPT_ENCODING)?.to_str().ok()?;
    let mut best: Option<(u16, Coding)> = None;
    for item in raw.split(',') {
        let mut parts = item.split(';');
        let token = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
        let q = parts
            .find_map(|p| p.trim().strip_prefix("q="))
            .and_then(|q| q.trim().parse::<f32>().ok())
            .map_or(1000, |q| (q.clamp(0.0, 1.0) * 1000.0) as u16);
        let coding = match token.as_str() {
            "zstd" => Coding::Zstd,
            "br" => Coding::Br,
            "gzip" | "x-gzip" => Coding::Gzip,
            _ => continue,
        };
        let better = match best {
            None => true,
            Some((bq, bc)) => q > bq || (q == bq && rank(coding) < rank(bc)),
        };
        if q > 0 && better {
            best = Some((q, coding));
        }
    }
    best.map(|(_, c)| c)
}

fn rank(c: Coding) -> u8 {
    match c {
        Coding::Zstd => 0,
        Coding::Br => 1,
        Coding::Gzip => 2,
    }
}

/// (public base, ETag, identity length, coding). The ETag already hashes
/// the body, URLs included; the base keeps one host's bodies apart from
/// another's even so (`crate::public_base`).
type Key = (String, String, u64, Coding);

/// Compressed bodies by (public base, ETag, identity length, coding).
#[derive(Default)]
pub(crate) struct CompressedCache {
    inner: Mutex<Entries>,
    /// Compressions in progress: concurrent misses of one document wait for
    /// one encoder instead of running one each (16 cold GETs of a 6 MB
    /// packument ran 16 encoders and +180 MB RSS).
    flights: Flights<Key, Option<Bytes>>,
}

#[derive(Default)]
struct Entries {
    map: HashMap<Key, Bytes>,
    order: VecDeque<Key>,
    bytes: usize,
}

impl CompressedCache {
    fn get(&self, key: &Key) -> Option<Bytes> {
        let e = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        e.map.get(key).cloned()
    }

    fn put(&self, key: Key, body: Bytes) {
        let mut e = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if e.map.contains_key(&key) {
            return;
        }
        e.bytes += body.len();
        e.order.push_back(key.clone());
        e.map.insert(key, body);
        while e.bytes > CACHE_BYTES {
            let Some(old) = e.order.pop_front() else {
                break;
            };
            if let Some(b) = e.map.remove(&old) {
                e.bytes -= b.len();
            }
        }
    }
}

/// Middleware: answers a `200` JSON response with a content ETag from the
/// compressed cache (compressing and caching it on a miss).
pub(crate) async fn cached(
    State(cache): State<Arc<CompressedCache>>,
    req: Request,
    next: Next,
) -> Response {
    let coding = negotiate(req.headers());
    let base = req
        .extensions()
        .get::<crate::public_base::PublicBase>()
        .map(|b| b.as_str().to_string())
        .unwrap_or_default();
    let resp = next.run(req).await;
    let Some(coding) = coding else { return resp };
    let h = resp.headers();
    let len = h
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .or_else(|| axum::body::HttpBody::size_hint(resp.body()).exact());
    let etag = h.get(header::ETAG).and_then(|v| v.to_str().ok());
    let (Some(len), Some(etag)) = (len, etag) else {
        return resp;
    };
    let eligible = resp.status() == StatusCode::OK
        && is_json(h)
        && !h.contains_key(header::CONTENT_ENCODING)
        && (u64::from(MIN_SIZE)..=MAX_CACHED_BODY).contains(&len);
    if !eligible {
        return resp;
    }
    let key = (base, etag.to_string(), len, coding);
    let (parts, body) = resp.into_parts();
    let encoded = match cache.get(&key) {
        Some(hit) => hit,
        None => {
            let Ok(plain) = axum::body::to_bytes(body, MAX_CACHED_BODY as usize).await else {
                return internal("reading a response to compress");
            };
            let Some(out) = compress_once(&cache, key, coding, plain).await else {
                return internal("compressing a response");
            };
            out
        }
    };
    let mut resp = Response::from_parts(parts, Body::from(encoded.clone()));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_ENCODING,
        HeaderValue::from_static(coding.token()),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(encoded.len()));
    h.append(header::VARY, HeaderValue::from_static("accept-encoding"));
    h.remove(header::ACCEPT_RANGES);
    resp
}

/// Compresses `plain` and caches it, once for all concurrent callers with
/// the same key (the first caller's bytes are the ones encoded: the key
/// names their content).
async fn compress_once(
    cache: &Arc<CompressedCache>,
    key: Key,
    coding: Coding,
    plain: Bytes,
) -> Option<Bytes> {
    let owner = Arc::clone(cache);
    let k = key.clone();
    let work = move || {
        async move {
            let job = tokio::task::spawn_blocking(move || coding.encode(&plain));
            let out = Bytes::from(job.await.ok()?.ok()?);
            owner.put(k, out.clone());
            Some(out)
        }
        .boxed()
    };
    cache.flights.join(key, work, || None).await
}

fn internal(what: &str) -> Response {
    tracing::error!("{what} failed");
    let mut resp = Response::new(Body::from(
        serde_json::json!({ "error": format!("internal error: {what}") }).to_string(),
    ));
    *resp.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decides(content_type: &str, len: usize) -> bool {
        let resp = axum::http::Response::builder()
            .header(header::CONTENT_TYPE, content_type)
            .header(header::CONTENT_LENGTH, len)
            .body(Body::from(vec![b' '; len]))
            .expect("response");
        SizeAbove::new(MIN_SIZE)
            .and(JsonOnly)
            .should_compress(&resp)
    }

    #[test]
    fn only_json_bodies_are_compressed() {
        assert!(decides("application/json", 4096));
        assert!(decides("application/json; charset=utf-8", 4096));
        assert!(decides("application/vnd.npm.install-v1+json", 4096));
        assert!(!decides("application/json", 100));
        assert!(!decides("application/octet-stream", 1 << 20));
        assert!(!decides("application/x-ndjson", 1 << 20));
        assert!(!decides(pnpr_protocol::CONTENT_TYPE, 1 << 20));
    }

    fn offer(v: &str) -> Option<Coding> {
        let mut h = HeaderMap::new();
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_str(v).expect("value"),
        );
        negotiate(&h)
    }

    #[test]
    fn negotiation_follows_q_values_then_preference() {
        assert_eq!(offer("gzip, deflate, br, zstd"), Some(Coding::Zstd));
        assert_eq!(offer("gzip;q=1.0, br;q=0.5"), Some(Coding::Gzip));
        assert_eq!(offer("br"), Some(Coding::Br));
        assert_eq!(offer("gzip;q=0"), None);
        assert_eq!(offer("identity, deflate"), None);
    }

    #[test]
    fn every_coding_round_trips() {
        use std::io::Read;
        let data = serde_json::json!({"versions": vec!["1.0.0"; 500]}).to_string();
        let z = Coding::Zstd.encode(data.as_bytes()).expect("zstd");
        assert_eq!(
            zstd::bulk::decompress(&z, data.len()).expect("unzstd"),
            data.as_bytes()
        );
        let b = Coding::Br.encode(data.as_bytes()).expect("br");
        let mut out = Vec::new();
        brotli::Decompressor::new(&b[..], 4096)
            .read_to_end(&mut out)
            .expect("unbr");
        assert_eq!(out, data.as_bytes());
        let g = Coding::Gzip.encode(data.as_bytes()).expect("gzip");
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&g[..])
            .read_to_end(&mut out)
            .expect("gunzip");
        assert_eq!(out, data.as_bytes());
    }
}
