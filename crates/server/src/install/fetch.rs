//! Stage 6: the files of every served package the server does not hold yet
//! — verified tarballs, unpacked once into the file store.
//!
//! Invariants guarded here:
//! - only packages the catalog authorized reach this stage, and their
//!   tarballs are fetched through the same origin the catalog chose;
//! - a tarball is streamed into the unpacker (never buffered whole): its
//!   bytes pass the flight's integrity check on the way, and the package's
//!   index is written only after the whole verified stream was unpacked;
//! - forwarded tarballs are fetched with the caller's credential in a flight
//!   keyed by registry and credential digest, and never kept in the cache;
//! - a package's member (RFC 0008) is made by the file store from the
//!   verified tarball it unpacks, before its index row is written;
//! - a tarball fetched only for an install is not kept once its member
//!   exists (RFC 0008 §4); one already kept for `/` is read from the CAS.

use std::sync::Arc;

use axum::http::StatusCode;
use futures_util::{StreamExt, TryStreamExt};
use pnpr_store::TarballBody;
use serde_json::Value;

use super::select::Selection;
use crate::catalog::{Forwarded, Origin, PackageClaim, Session};
use crate::error::ApiError;
use crate::mirror::{tarball_body, Retain};
use crate::state::AppState;

/// Tarballs fetched and unpacked at once for one install.
pub(super) const CONCURRENCY: usize = 16;

/// Fetches and unpacks every missing served package; returns the ids of
/// optional packages that could not be had (dropped, as pnpm does).
pub(super) async fn ensure_unpacked(
    state: &Arc<AppState>,
    session: &Session,
    selection: &Selection,
) -> Result<Vec<String>, ApiError> {
    // Futures built in a loop, not a closure (higher-ranked `Send`).
    let mut jobs = Vec::new();
    for p in selection.missing(state) {
        jobs.push(unpack_or_drop(state, session, p, selection.is_optional(p)));
    }
    let dropped = futures_util::stream::iter(jobs)
        .buffer_unordered(CONCURRENCY)
        .try_collect::<Vec<Option<String>>>()
        .await?;
    Ok(dropped.into_iter().flatten().collect())
}

/// [`unpack_one`]; an optional package that fails is dropped (its id
/// returned) instead of failing the install.
async fn unpack_or_drop(
    state: &Arc<AppState>,
    session: &Session,
    p: &PackageClaim,
    optional: bool,
) -> Result<Option<String>, ApiError> {
    match unpack_one(state, session, p).await {
        Ok(()) => Ok(None),
        Err(e) if optional => {
            tracing::warn!(package = %p.name, version = %p.version, error = %e.message,
                "optional package skipped");
            Ok(Some(format!("{}@{}", p.name, p.version)))
        }
        Err(e) => Err(e),
    }
}

/// Fetches (verified) and unpacks one package into the file store.
pub(super) async fn unpack_one(
    state: &Arc<AppState>,
    session: &Session,
    p: &PackageClaim,
) -> Result<(), ApiError> {
    let doc = session.packument(&p.name).await?;
    let vdoc = doc
        .get("versions")
        .and_then(|v| v.get(&p.version))
        .ok_or_else(|| ApiError::not_found(format!("{}@{}", p.name, p.version)))?;
    let file = vdoc
        .get("dist")
        .and_then(|d| d.get("tarball"))
        .and_then(Value::as_str)
        .and_then(pnpr_packument::tarball_file_name)
        .map(str::to_string)
        .unwrap_or_else(|| pnpr_packument::default_file_name(&p.name, &p.version));
    let (body, via) = match session.origin(&p.name) {
        Origin::Hosted => (
            hosted_tarball(state, &p.name, &file).await?,
            "hosted".into(),
        ),
        Origin::Forwarded => match session.scope() {
            crate::catalog::Scope::Forwarded(fwd) => (
                forwarded_tarball(state, fwd, &p.name, vdoc).await?,
                "forwarded".into(),
            ),
            _ => {
                return Err(ApiError::internal(
                    "install",
                    "forwarded origin outside scope",
                ))
            }
        },
        Origin::Mirror | Origin::Uplink(_) => {
            let source = session.namespace(&p.name)?;
            tarball_body(state, &source, &file, vdoc, Retain::IfKept).await?
        }
    };
    unpack(state, p, body, &via).await
}

async fn hosted_tarball(
    state: &Arc<AppState>,
    name: &str,
    file: &str,
) -> Result<TarballBody, ApiError> {
    let stored = crate::hosted::stored_tarball(state, name, file).await?;
    Ok(TarballBody::Stored(pnpr_store::Stored {
        path: stored.path,
        len: stored.len,
    }))
}

/// Unpacks a verified body on the blocking pool, streaming it through. A
/// failure of the byte stream answers with its cause's status (504 for an
/// upstream timeout or missed deadline, 503 for an open breaker, else 502)
/// and names the package and where it came from (`via`); a well-delivered
/// tarball the unpacker refuses is a 422. Every tarball is in the store
/// before the response starts, so this is always a status, never a cut body.
async fn unpack(
    state: &Arc<AppState>,
    p: &PackageClaim,
    body: TarballBody,
    via: &str,
) -> Result<(), ApiError> {
    let label = format!("{}@{}", p.name, p.version);
    // The first error of the byte stream, kept typed for the status.
    let stream_failed = Arc::new(std::sync::Mutex::new(None::<pnpr_store::StoreError>));
    let reader: Box<dyn std::io::Read + Send> = match body {
        TarballBody::Stored(stored) => Box::new(
            std::fs::File::open(&stored.path)
                .map_err(|e| ApiError::internal("cannot open cached tarball", e))?,
        ),
        TarballBody::Streaming(stream) => {
            let slot = Arc::clone(&stream_failed);
            let stream = stream.map_err(move |e| {
                let io = std::io::Error::other(e.to_string());
                slot.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get_or_insert(e);
                io
            });
            Box::new(tokio_util::io::SyncIoBridge::new(
                tokio_util::io::StreamReader::new(stream),
            ))
        }
    };
    let st = Arc::clone(state);
    let integrity = p.integrity.clone();
    let unpacked = tokio::task::spawn_blocking(move || {
        st.accelerator
            .files
            .add_tarball(&integrity, reader, &pnpr_cafs::Limits::default())
            .map(drop)
    })
    .await
    .map_err(|e| ApiError::internal("unpack task failed", e))?;
    unpacked.map_err(|e| {
        let failed = stream_failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        match failed {
            Some(cause) => {
                let mut err = ApiError::tarball_failure(via, &cause);
                err.message = format!("{label}: {}", err.message);
                err
            }
            None => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("refusing the tarball of {label}: {e}"),
            ),
        }
    })
}

/// The verified tarball of one version from a forwarded registry, fetched
/// with the caller's credential when its URL is on the registry's origin.
async fn forwarded_tarball(
    state: &Arc<AppState>,
    fwd: &Forwarded,
    name: &str,
    vdoc: &Value,
) -> Result<TarballBody, ApiError> {
    let sri = crate::mirror::expected_integrity(vdoc).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            format!("{name} has no integrity in its packument"),
        )
    })?;
    let url = vdoc
        .get("dist")
        .and_then(|d| d.get("tarball"))
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::not_found(format!("{name} tarball")))?
        .to_string();
    let same_origin = crate::urls::UrlOrigin::of_str(&url)
        .is_some_and(|o| Some(o) == crate::urls::UrlOrigin::of_str(fwd.registry()));
    let credential = fwd.credential(name).filter(|_| same_origin);
    let ns = flight_namespace(fwd, credential.as_ref());
    let st = Arc::clone(state);
    let label = name.to_string();
    state
        .mirror
        .tarballs
        .get(&ns, &sri, false, move || async move {
            let req = pnpr_upstream::FetchRequest {
                url,
                accept: Some("application/octet-stream".into()),
                ..Default::default()
            };
            let client = &st.net().client;
            let started = std::time::Instant::now();
            let sent = match credential {
                Some(c) => client.fetch_forwarded(req, c).await,
                None => client.fetch(req).await,
            };
            let outcome = crate::metrics::upstream_outcome(&sent, |r| r.status);
            crate::metrics::record_upstream("forwarded", outcome, started);
            let resp = sent.map_err(pnpr_store::FetchFailure::upstream)?;
            if resp.status != 200 {
                return Err(pnpr_store::FetchFailure::status(resp.status, &label));
            }
            let stream = resp
                .into_stream()
                .map(|r| r.map_err(pnpr_store::FetchFailure::upstream));
            Ok(Box::pin(stream) as pnpr_store::flight::ByteStream)
        })
        .await
        .map_err(ApiError::from)
}

/// Flight namespace of a forwarded fetch: registry and credential digest,
/// 128 bits of each to stay within the CAS's length cap.
fn flight_namespace(fwd: &Forwarded, credential: Option<&pnpr_upstream::Secret>) -> String {
    use sha2::{Digest, Sha256};
    let registry_digest = hex::encode(Sha256::digest(fwd.registry().as_bytes()));
    let credential_digest =
        credential.map_or_else(|| "anonymous".to_string(), pnpr_upstream::Secret::digest);
    format!(
        "fwd-{}-{}",
        registry_digest.get(..32).unwrap_or(&registry_digest),
        credential_digest.get(..32).unwrap_or(&credential_digest)
    )
}

/// The file store as the plan's index lookup.
pub(super) struct FileIndexLookup<'a> {
    pub(super) state: &'a AppState,
}

impl pnpr_protocol::IndexLookup for FileIndexLookup<'_> {
    fn lookup(&self, integrity: &str) -> Option<Arc<pnpr_protocol::IndexValue>> {
        let idx = self
            .state
            .accelerator
            .files
            .index(integrity)
            .ok()
            .flatten()?;
        Some(Arc::new(idx.index_value()))
    }
}
