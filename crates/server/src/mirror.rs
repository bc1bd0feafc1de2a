//! The mirror: packuments and tarballs of the uplinks, fetched, revalidated
//! and cached per namespace (the shared public mirror, or one
//! access-bearing uplink's private namespace).
//!
//! Invariants guarded here:
//! - data fetched for an uplink's private namespace is stored only under that
//!   namespace's HMAC id, never in the public mirror or another namespace;
//! - a private namespace fails closed: an upstream 401/403/404 is an error,
//!   never a fallback to cached data; only transport failures may fall back
//!   to stale data of the same namespace;
//! - tarball bytes are verified against the packument's integrity before they
//!   become a cache entry (see `pnpr_store::flight`);
//! - one upstream packument fetch per (namespace, package, uplink) at a time
//!   ([`crate::flights::PackumentFlights`]): concurrent misses share it and its one document;
//! - reads and writes of packument rows (SQLite, or PostgreSQL shared by
//!   every node: both block) run on the blocking pool, never on the async
//!   workers; the rows are the only truth, so a row another node replaced
//!   is what the next read here sees;
//! - a packument larger than `limits.packument_in_memory` is never held whole:
//!   the one flight streams it to a body file (bounded by
//!   `limits.packument_max`), validates it in a streaming pass, and waiters
//!   get the file, which the registry renders version by version.
//!
//! Who may read what is not decided here: callers come through the catalog.

use std::sync::Arc;

use axum::http::StatusCode;
use futures_util::future::FutureExt;
use futures_util::StreamExt;
use pnpr_store::{now_ms, PackumentEntry, PackumentMeta, StoredBody, TarballBody};
use pnpr_upstream::{FetchRequest, UpstreamError};
use serde_json::Value;

use crate::error::ApiError;
use crate::flights::{Fetched, FlightKey};
use crate::state::{AppState, PUBLIC_NS};

/// A mirror namespace: where a request's data comes from (the uplinks asked,
/// in order) and is cached (`ns`: the shared public mirror or one uplink's
/// private HMAC namespace).
#[derive(Debug, Clone)]
pub(crate) struct Namespace {
    pub(crate) ns: String,
    pub(crate) uplinks: Vec<String>,
    /// `/~<uplink>/` requests: fail closed, private caching headers.
    pub(crate) private: bool,
    /// Base URL tarballs are rewritten onto.
    pub(crate) tarball_base: String,
}

impl Namespace {
    /// The shared public mirror for `name`: the `proxy:` uplinks of its
    /// `packages:` rule that carry no `access:` (those are endpoint-only).
    /// Tarball URLs are rewritten onto `base`, the request's public base.
    pub(crate) fn public(base: &str, policy: &pnpr_auth::Policy, name: &str) -> Namespace {
        Namespace {
            ns: PUBLIC_NS.to_string(),
            uplinks: policy
                .proxies(name)
                .iter()
                .filter(|u| !policy.uplink_has_access(u))
                .cloned()
                .collect(),
            private: false,
            tarball_base: base.to_string(),
        }
    }

    /// One access-bearing uplink's private namespace (`/~<uplink>/` under
    /// `base`, the request's public base).
    pub(crate) fn uplink(state: &AppState, base: &str, uplink: &str) -> Option<Namespace> {
        let info = state.uplink(uplink)?;
        Some(Namespace {
            ns: info.private_ns.clone(),
            uplinks: vec![uplink.to_string()],
            private: true,
            tarball_base: format!("{base}~{uplink}/"),
        })
    }
}

/// Loads (fetching or revalidating as needed) and merges the packument.
pub(crate) async fn load_packument(
    state: &Arc<AppState>,
    source: &Namespace,
    name: &str,
) -> Result<Option<Value>, ApiError> {
    Ok(load_packument_fresh(state, source, name).await?.0)
}

/// [`load_packument`] plus the time (epoch ms) until which the result may be
/// reused without asking any uplink again: the earliest expiry of the rows it
/// merged, or "now" when stale data had to be served. A document stored as a
/// body file is parsed here, by this caller alone.
pub(crate) async fn load_packument_fresh(
    state: &Arc<AppState>,
    source: &Namespace,
    name: &str,
) -> Result<(Option<Value>, i64), ApiError> {
    let (parts, fresh_until) = load_parts(state, source, name).await?;
    Ok((merge_parts(parts).await?, fresh_until))
}

/// A packument as the registry renders it.
pub(crate) enum Loaded {
    /// Merged (or small) and parsed.
    Doc(Value),
    /// The one uplink's document, still a body file: too large to hold.
    File(std::fs::File),
}

/// [`load_packument_fresh`] for rendering: a single uplink's document that
/// is a body file stays one, so it is never held whole.
pub(crate) async fn load_for_render(
    state: &Arc<AppState>,
    source: &Namespace,
    name: &str,
) -> Result<(Option<Loaded>, i64), ApiError> {
    let (mut parts, fresh_until) = load_parts(state, source, name).await?;
    if parts.len() == 1 && matches!(parts[0].1, Part::File(_)) {
        if let Some((_, Part::File(file))) = parts.pop() {
            return Ok((Some(Loaded::File(file)), fresh_until));
        }
    }
    Ok((merge_parts(parts).await?.map(Loaded::Doc), fresh_until))
}

/// Every uplink's contribution, in `proxy:` order.
async fn load_parts(
    state: &Arc<AppState>,
    source: &Namespace,
    name: &str,
) -> Result<(Vec<(String, Part)>, i64), ApiError> {
    let mut merge = Merge {
        docs: Vec::new(),
        failures: Vec::new(),
        fresh_until: i64::MAX,
    };
    for uplink in &source.uplinks {
        let Some(info) = state.uplink(uplink) else {
            continue;
        };
        let maxage_ms = i64::try_from(info.config.maxage.as_millis()).unwrap_or(i64::MAX);
        let key = FlightKey {
            ns: source.ns.clone(),
            name: name.to_string(),
            uplink: uplink.clone(),
        };
        load_one(state, &key, maxage_ms, source.private, &mut merge).await?;
    }
    let Merge {
        docs,
        failures,
        fresh_until,
    } = merge;
    if docs.is_empty() {
        if let Some((uplink, e)) = failures.first() {
            return Err(ApiError::upstream(uplink, e));
        }
    }
    Ok((docs, fresh_until))
}

/// Parses the body files among `parts` (on the blocking pool) and merges.
async fn merge_parts(parts: Vec<(String, Part)>) -> Result<Option<Value>, ApiError> {
    let mut docs = Vec::with_capacity(parts.len());
    for (uplink, part) in parts {
        let doc = match part {
            Part::Doc(doc) => doc,
            Part::File(mut file) => {
                tokio::task::spawn_blocking(move || pnpr_packument::parse_reader(&mut file))
                    .await
                    .map_err(|e| ApiError::internal("metadata parse task failed", e))?
                    .map_err(|e| ApiError::internal("corrupt cached packument", e))?
            }
        };
        docs.push((uplink, doc));
    }
    Ok(pnpr_packument::merge(docs))
}

/// One uplink's document: parsed, or a body file too large to hold.
enum Part {
    Doc(Value),
    File(std::fs::File),
}

/// The per-uplink documents of one packument being merged.
struct Merge {
    docs: Vec<(String, Part)>,
    failures: Vec<(String, Arc<UpstreamError>)>,
    fresh_until: i64,
}

/// One uplink's contribution: its fresh row, or the shared flight's answer
/// (with stale-if-error in the same namespace).
async fn load_one(
    state: &Arc<AppState>,
    key: &FlightKey,
    maxage_ms: i64,
    private: bool,
    merge: &mut Merge,
) -> Result<(), ApiError> {
    let uplink = &key.uplink;
    let row = read_row(state, key).await?;
    let now = now_ms();
    let row = match row {
        Some(row) if now.saturating_sub(row.meta.fetched_at_ms) < maxage_ms => {
            crate::metrics::record_cache("packument", "hit");
            merge.fresh_until = merge
                .fresh_until
                .min(row.meta.fetched_at_ms.saturating_add(maxage_ms));
            merge.docs.push((uplink.clone(), part(row)?));
            return Ok(());
        }
        other => other,
    };
    crate::metrics::record_cache("packument", if row.is_some() { "stale" } else { "miss" });
    let (st, k) = (Arc::clone(state), key.clone());
    let fetched = state
        .mirror
        .packument_flights
        .join(
            key.clone(),
            move || async move { fetch_packument(&st, &k, maxage_ms, private).await }.boxed(),
            || {
                let message = "packument fetch task ended".into();
                failed(UpstreamError::Client { message }, true)
            },
        )
        .await;
    let expires = |at: i64| at.saturating_add(maxage_ms);
    match fetched {
        Fetched::Stored { doc, at } => {
            merge.fresh_until = merge.fresh_until.min(expires(at));
            merge
                .docs
                .push((uplink.clone(), Part::Doc(Value::clone(&doc))));
        }
        Fetched::Fresh { at } => {
            // Stored or revalidated by this flight: the row is current.
            merge.fresh_until = merge.fresh_until.min(expires(at));
            if let Some(row) = read_row(state, key).await? {
                merge.docs.push((uplink.clone(), part(row)?));
            }
        }
        Fetched::Gone { at } => merge.fresh_until = merge.fresh_until.min(expires(at)),
        Fetched::Refused { status } => return Err(refused(uplink, &key.name, status)),
        Fetched::PublicDenied => merge.fresh_until = now,
        Fetched::Invalid(e) => {
            tracing::warn!(uplink, name = key.name, error = %e, "bad upstream document");
            return Err(ApiError::new(
                StatusCode::BAD_GATEWAY,
                format!("bad upstream document: {e}"),
            ));
        }
        Fetched::Storage(e) => return Err(ApiError::internal("storage failure", e)),
        Fetched::Failed { error, fallback } => {
            merge.fresh_until = now;
            if !fallback {
                return Err(ApiError::upstream(uplink, &error));
            }
            match row {
                Some(row) => {
                    tracing::warn!(uplink, name = key.name, error = %error, "serving stale metadata");
                    merge.docs.push((uplink.clone(), part(row)?));
                }
                None => merge.failures.push((uplink.clone(), error)),
            }
        }
    }
    Ok(())
}

/// A private namespace's upstream said no: fail closed.
fn refused(uplink: &str, name: &str, status: u16) -> ApiError {
    if status == 404 {
        ApiError::not_found(name)
    } else {
        ApiError::new(
            StatusCode::FORBIDDEN,
            format!("uplink {uplink} refused access to {name} (status {status})"),
        )
    }
}

/// The cached entry, read on the blocking pool: an inline body can be
/// megabytes and the backend reads it synchronously.
async fn read_row(
    state: &Arc<AppState>,
    key: &FlightKey,
) -> Result<Option<PackumentEntry>, ApiError> {
    let st = Arc::clone(state);
    let key = key.clone();
    tokio::task::spawn_blocking(move || st.mirror.db.entry(&key.ns, &key.name, &key.uplink))
        .await
        .map_err(|e| ApiError::internal("metadata read task failed", e))?
        .map_err(ApiError::from)
}

/// The body of one flight: fetch (conditionally, when a row exists),
/// validate and store. Runs once per key at a time.
async fn fetch_packument(
    state: &Arc<AppState>,
    key: &FlightKey,
    maxage_ms: i64,
    private: bool,
) -> Fetched {
    let storage = |e: pnpr_store::StoreError| Fetched::Storage(Arc::new(e));
    let entry = blocking(state, key, |db, k| db.entry(&k.ns, &k.name, &k.uplink)).await;
    let row = match entry {
        Ok(r) => r.map(|e| e.meta),
        Err(e) => return storage(e),
    };
    let now = now_ms();
    // A flight that ended just before this one started already did the work.
    if let Some(row) = row
        .as_ref()
        .filter(|r| now.saturating_sub(r.fetched_at_ms) < maxage_ms)
    {
        return Fetched::Fresh {
            at: row.fetched_at_ms,
        };
    }
    let Some(info) = state.uplink(&key.uplink) else {
        let name = key.uplink.clone();
        return failed(UpstreamError::UnknownUplink { name }, false);
    };
    let req = FetchRequest {
        url: format!("{}{}", info.config.url, encode_name(&key.name)),
        via: Some(key.uplink.clone()),
        accept: Some("application/json".into()),
        if_none_match: row.as_ref().and_then(|r| r.etag.clone()),
        if_modified_since: row.as_ref().and_then(|r| r.last_modified.clone()),
    };
    let started = std::time::Instant::now();
    let sent = state.net().client.fetch(req).await;
    let outcome = crate::metrics::upstream_outcome(&sent, |r| r.status);
    crate::metrics::record_upstream(&key.uplink, outcome, started);
    let resp = match sent {
        Ok(resp) => resp,
        Err(e) => {
            let fallback = e.is_transport();
            return failed(e, fallback);
        }
    };
    answer(state, key, resp, row.is_some(), now, private).await
}

/// What one upstream answer means for the flight (spec §5.10: a private
/// namespace fails closed on 401/403/404).
async fn answer(
    state: &Arc<AppState>,
    key: &FlightKey,
    resp: pnpr_upstream::FetchResponse,
    had_row: bool,
    now: i64,
    private: bool,
) -> Fetched {
    let storage = |e: pnpr_store::StoreError| Fetched::Storage(Arc::new(e));
    let delete = |db: &dyn pnpr_store::MetaBackend, k: &FlightKey| {
        db.delete_packument(&k.ns, &k.name, &k.uplink)
    };
    match resp.status {
        200 => store_body(state, key, resp, now).await,
        304 if had_row => {
            let touch = move |db: &dyn pnpr_store::MetaBackend, k: &FlightKey| {
                db.touch_packument(&k.ns, &k.name, &k.uplink, now)
            };
            match blocking(state, key, touch).await {
                Ok(()) => Fetched::Fresh { at: now },
                Err(e) => storage(e),
            }
        }
        404 if !private => match blocking(state, key, delete).await {
            Ok(()) => Fetched::Gone { at: now },
            Err(e) => storage(e),
        },
        401 | 403 | 404 if private => match blocking(state, key, delete).await {
            // Fail closed: never fall back to cached data when the
            // upstream denies or no longer has it.
            Ok(()) => Fetched::Refused {
                status: resp.status,
            },
            Err(e) => storage(e),
        },
        401 | 403 => {
            tracing::warn!(
                uplink = key.uplink,
                name = key.name,
                status = resp.status,
                "uplink denied a public-mirror fetch"
            );
            Fetched::PublicDenied
        }
        status => {
            tracing::warn!(
                uplink = key.uplink,
                name = key.name,
                status,
                "unexpected uplink status"
            );
            // A bad answer (502), not a refusal to ask (503).
            failed(resp.status_error(), true)
        }
    }
}

/// Reads a 200 body (bounded by `limits.packument_max`), checks it is a
/// packument and stores it: in memory and inline up to
/// `limits.packument_in_memory`, else as a body file never held whole.
async fn store_body(
    state: &Arc<AppState>,
    key: &FlightKey,
    resp: pnpr_upstream::FetchResponse,
    now: i64,
) -> Fetched {
    let meta = PackumentMeta {
        ns: key.ns.clone(),
        name: key.name.clone(),
        uplink: key.uplink.clone(),
        etag: resp.etag.clone(),
        last_modified: resp.last_modified.clone(),
        fetched_at_ms: now,
    };
    let body = match receive(state, resp).await {
        Ok(body) => body,
        Err(fetched) => return fetched,
    };
    let body = match body {
        Received::Spilled(spill) => return store_spilled(state, key, meta, spill).await,
        Received::Inline(body) => body,
    };
    let doc = match pnpr_packument::parse(&body) {
        Ok(doc) => Arc::new(doc),
        Err(e) => return Fetched::Invalid(Arc::new(e)),
    };
    let row = pnpr_store::PackumentRow {
        ns: meta.ns,
        name: meta.name,
        uplink: meta.uplink,
        body,
        etag: meta.etag,
        last_modified: meta.last_modified,
        fetched_at_ms: now,
    };
    match blocking(state, key, move |db, _| db.put_packument(&row)).await {
        Ok(()) => Fetched::Stored { doc, at: now },
        Err(e) => Fetched::Storage(Arc::new(e)),
    }
}

/// A body file validated in a streaming pass and handed to the store;
/// waiters read it back from the row (`Fresh`), never from a shared copy.
async fn store_spilled(
    state: &Arc<AppState>,
    key: &FlightKey,
    meta: PackumentMeta,
    spill: Spill,
) -> Fetched {
    let path = spill.path.clone();
    let checked = tokio::task::spawn_blocking(move || {
        let mut file = std::fs::File::open(&path)?;
        Ok::<_, std::io::Error>(pnpr_packument::validate_streaming(&mut file))
    })
    .await;
    match checked {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => return Fetched::Invalid(Arc::new(e)),
        Ok(Err(e)) => return Fetched::Storage(Arc::new(e.into())),
        Err(e) => {
            let e = std::io::Error::other(e.to_string());
            return Fetched::Storage(Arc::new(e.into()));
        }
    }
    let at = meta.fetched_at_ms;
    let put = move |db: &dyn pnpr_store::MetaBackend, _: &FlightKey| {
        db.put_packument_file(&meta, &spill.path)
    };
    match blocking(state, key, put).await {
        Ok(()) => Fetched::Fresh { at },
        Err(e) => Fetched::Storage(Arc::new(e)),
    }
}

/// A body as received: in memory, or spilled to a file.
enum Received {
    Inline(Vec<u8>),
    Spilled(Spill),
}

/// A body file being written in the store's spill directory; removed when
/// dropped unless the store took it over (renamed it away).
struct Spill {
    path: std::path::PathBuf,
}

impl Drop for Spill {
    fn drop(&mut self) {
        // After a takeover the path no longer exists; nothing to do then.
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Streams the body: into memory while it fits `packument_in_memory`, then
/// on into a spill file; refused past `packument_max`. The error is the
/// flight's answer.
async fn receive(
    state: &Arc<AppState>,
    resp: pnpr_upstream::FetchResponse,
) -> Result<Received, Fetched> {
    use tokio::io::AsyncWriteExt;
    let (max, in_memory) = (
        state.limits().packument_max,
        state.limits().packument_in_memory,
    );
    let too_large = resp.too_large(max);
    if resp.content_length.is_some_and(|n| n > max) {
        return Err(failed(too_large, true));
    }
    let storage = |e: std::io::Error| Fetched::Storage(Arc::new(e.into()));
    let mut body = resp.into_stream();
    let (mut buf, mut total) = (Vec::new(), 0u64);
    let mut spill: Option<(tokio::io::BufWriter<tokio::fs::File>, Spill)> = None;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| failed(e, true))?;
        total = total.saturating_add(chunk.len() as u64);
        if total > max {
            return Err(failed(too_large, true));
        }
        if spill.is_none() && total > in_memory {
            let path = state
                .mirror
                .db
                .spill_dir()
                .join(format!("{:032x}.tmp", rand::random::<u128>()));
            let file = tokio::fs::File::create(&path).await.map_err(storage)?;
            let mut w = tokio::io::BufWriter::with_capacity(1 << 20, file);
            let guard = Spill { path };
            w.write_all(&std::mem::take(&mut buf))
                .await
                .map_err(storage)?;
            spill = Some((w, guard));
        }
        match spill.as_mut() {
            Some((w, _)) => w.write_all(&chunk).await.map_err(storage)?,
            None => buf.extend_from_slice(&chunk),
        }
    }
    match spill {
        None => Ok(Received::Inline(buf)),
        Some((mut w, guard)) => {
            w.flush().await.map_err(storage)?;
            Ok(Received::Spilled(guard))
        }
    }
}

fn failed(error: UpstreamError, fallback: bool) -> Fetched {
    Fetched::Failed {
        error: Arc::new(error),
        fallback,
    }
}

/// Runs one metadata-database call on the blocking pool.
async fn blocking<T: Send + 'static>(
    state: &Arc<AppState>,
    key: &FlightKey,
    f: impl FnOnce(&dyn pnpr_store::MetaBackend, &FlightKey) -> pnpr_store::Result<T> + Send + 'static,
) -> pnpr_store::Result<T> {
    let st = Arc::clone(state);
    let key = key.clone();
    tokio::task::spawn_blocking(move || f(st.mirror.db.as_ref(), &key))
        .await
        .map_err(|e| pnpr_store::StoreError::Io(std::io::Error::other(e.to_string())))?
}

/// A stored entry as a merge part: an inline body parsed, a file kept.
fn part(entry: PackumentEntry) -> Result<Part, ApiError> {
    match entry.body {
        StoredBody::Inline(body) => pnpr_packument::parse(&body)
            .map(Part::Doc)
            .map_err(|e| ApiError::internal("corrupt cached packument", e)),
        StoredBody::File { file, .. } => Ok(Part::File(file)),
    }
}

/// `@scope/name` → `@scope%2fname` (what registries expect on the wire).
pub fn encode_name(name: &str) -> String {
    name.replace('/', "%2f")
}

/// The expected SRI of a version: `dist.integrity`, else `dist.shasum`.
pub(crate) fn expected_integrity(version: &Value) -> Option<ssri::Integrity> {
    let dist = version.get("dist")?;
    if let Some(i) = dist.get("integrity").and_then(Value::as_str) {
        if let Ok(sri) = i.parse::<ssri::Integrity>() {
            return Some(sri);
        }
    }
    let sha1 = dist.get("shasum").and_then(Value::as_str)?;
    ssri::Integrity::from_hex(sha1, ssri::Algorithm::Sha1).ok()
}

/// Whether a tarball fetched from an uplink is kept in the CAS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retain {
    /// A `/` GET: kept (unless the uplink says `cache: false`).
    Always,
    /// A `/v1/install` fetch: read from the CAS when a `/` GET kept it, else
    /// streamed into the unpacker and not kept, since the package's member
    /// is all `/v1/install` needs again (RFC 0008 §4: server disk ≈ 1x the
    /// tarballs instead of 2x); a later `/` GET fetches it from the uplink.
    IfKept,
}

/// The verified bytes of one version's tarball: a CAS hit, or the single
/// shared upstream fetch (through the version's own uplink).
pub(crate) async fn tarball_body(
    state: &Arc<AppState>,
    source: &Namespace,
    file: &str,
    version: &Value,
    retain: Retain,
) -> Result<(TarballBody, String), ApiError> {
    let sri = expected_integrity(version).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            format!("{file} has no integrity in its packument"),
        )
    })?;
    let uplink = version
        .get(pnpr_packument::UPLINK_FIELD)
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::not_found(file))?
        .to_string();
    let upstream_url = version
        .get("dist")
        .and_then(|d| d.get("tarball"))
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::not_found(file))?
        .to_string();
    let cache = state.uplink(&uplink).is_some_and(|u| u.config.cache);
    let keep = cache && retain == Retain::Always;
    if cache && !keep {
        let kept = state.mirror.tarballs.cas().lookup(&source.ns, &sri);
        if let Ok(Some(hit)) = kept {
            crate::metrics::record_cache("tarball", "hit");
            state.disk.touch_sri(&sri);
            return Ok((TarballBody::Stored(hit), uplink));
        }
    }
    let st = Arc::clone(state);
    let via = uplink.clone();
    let body = state
        .mirror
        .tarballs
        .get(&source.ns, &sri, keep, move || async move {
            let started = std::time::Instant::now();
            let sent = st
                .net()
                .client
                .fetch(FetchRequest {
                    url: upstream_url,
                    via: Some(via.clone()),
                    accept: Some("application/octet-stream".into()),
                    if_none_match: None,
                    if_modified_since: None,
                })
                .await;
            let outcome = crate::metrics::upstream_outcome(&sent, |r| r.status);
            crate::metrics::record_upstream(&via, outcome, started);
            let resp = sent.map_err(pnpr_store::FetchFailure::upstream)?;
            if resp.status != 200 {
                return Err(pnpr_store::FetchFailure::status(
                    resp.status,
                    &format!("uplink {via}"),
                ));
            }
            let stream = resp
                .into_stream()
                .map(|r| r.map_err(pnpr_store::FetchFailure::upstream));
            Ok(Box::pin(stream) as pnpr_store::flight::ByteStream)
        })
        .await?;
    let result = match body {
        TarballBody::Stored(_) => "hit",
        TarballBody::Streaming(_) => "miss",
    };
    crate::metrics::record_cache("tarball", result);
    state.disk.touch_sri(&sri);
    Ok((body, uplink))
}
