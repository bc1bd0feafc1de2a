//! Stage 8: the response body. Every byte layout comes from `pnpr-protocol`
//! (the wire owner): a header member, one stored gzip member per file frame
//! (made once per file by the wire owner's encoder and kept opaque by the
//! file store), and the end member.
//!
//! Invariant: only frames named by the plan — itself built from authorized
//! packages — are written, and the body is produced as a stream bounded by
//! one frame plus the channel's buffer.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue};
use axum::response::Response;
use pnpr_protocol::DEFAULT_GZIP_LEVEL as LEVEL;

use super::Resolved;
use crate::error::ApiError;
use crate::state::AppState;

/// Frames buffered between the reader task and the socket.
const CHANNEL_FRAMES: usize = 16;

fn inline_response(body: Body, cache_hit: Option<bool>) -> Response {
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(pnpr_protocol::CONTENT_TYPE),
    );
    h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    if let Some(hit) = cache_hit {
        // Observability for operators and tests; says nothing about other
        // callers (a private candidate is only a hit for callers who pass
        // its gates).
        h.insert(
            "x-pnpr-resolution",
            HeaderValue::from_static(if hit { "cached" } else { "resolved" }),
        );
    }
    resp
}

/// `200` with a violations header and an empty file section (spec §2.2).
pub(super) fn violations(violations: &[pnpr_protocol::Violation]) -> Result<Response, ApiError> {
    let header = pnpr_protocol::violations_json(violations)
        .map_err(|e| ApiError::internal("violations header", e))?;
    let bytes = pnpr_protocol::header_only_body(&header, LEVEL)
        .map_err(|e| ApiError::internal("violations body", e))?;
    Ok(inline_response(Body::from(bytes), None))
}

/// A lockfile-only answer: no index rows, no files.
pub(super) fn lockfile_only(resolved: &Resolved) -> Result<Response, ApiError> {
    let plan = pnpr_protocol::Plan {
        stats: pnpr_protocol::lockfile_only_stats(resolved.tree.packages.len() as u64),
        index_entries: Vec::new(),
        frames: Vec::new(),
    };
    let header = pnpr_protocol::header_json(&resolved.tree.lockfile, &plan)
        .map_err(|e| ApiError::internal("response header", e))?;
    let bytes = pnpr_protocol::header_only_body(&header, LEVEL)
        .map_err(|e| ApiError::internal("response body", e))?;
    Ok(inline_response(Body::from(bytes), Some(resolved.cache_hit)))
}

/// Streams header, frames and end marker as one gzip body.
pub(super) fn stream(
    state: &Arc<AppState>,
    resolved: &Resolved,
    plan: pnpr_protocol::Plan,
) -> Result<Response, ApiError> {
    let header = pnpr_protocol::header_json(&resolved.tree.lockfile, &plan)
        .map_err(|e| ApiError::internal("response header", e))?;
    crate::metrics::record_install(&crate::metrics::InstallStats {
        packages: plan.stats.total_packages,
        files_sent: plan.stats.files_to_download,
        bytes_sent: plan.stats.download_bytes,
        files_present: plan.stats.files_already_in_cafs,
    });
    let head = pnpr_protocol::header_member(&header, LEVEL)
        .map_err(|e| ApiError::internal("response header", e))?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(CHANNEL_FRAMES);
    let st = Arc::clone(state);
    tokio::task::spawn_blocking(move || write_frames(&st, head, &plan, &tx));
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    Ok(inline_response(
        Body::from_stream(stream),
        Some(resolved.cache_hit),
    ))
}

type Sink = tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>;

/// Runs on the blocking pool; stops as soon as the client goes away.
fn write_frames(state: &AppState, head: Vec<u8>, plan: &pnpr_protocol::Plan, tx: &Sink) {
    if tx.blocking_send(Ok(Bytes::from(head))).is_err() {
        return;
    }
    for frame in &plan.frames {
        match frame_member(state, &frame.digest_hex, frame.executable) {
            Ok(member) => {
                if tx.blocking_send(Ok(Bytes::from(member))).is_err() {
                    return; // client went away
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "stored file unreadable; aborting response");
                let _ = tx.blocking_send(Err(std::io::Error::other("stored file unreadable")));
                return;
            }
        }
    }
    let end = pnpr_protocol::end_member(LEVEL).map_err(std::io::Error::other);
    let _ = tx.blocking_send(end.map(Bytes::from));
}

/// One file's frame as a stored gzip member.
fn frame_member(
    state: &AppState,
    digest_hex: &str,
    executable: bool,
) -> Result<Vec<u8>, pnpr_cafs::CafsError> {
    let variant = if executable { "-exec.gz" } else { ".gz" };
    state
        .accelerator
        .files
        .derived(digest_hex, variant, |content| {
            let digest = pnpr_protocol::parse_digest(digest_hex).map_err(std::io::Error::other)?;
            pnpr_protocol::frame_bytes(&digest, executable, content)
                .and_then(|frame| pnpr_protocol::gzip_member(&frame, LEVEL))
                .map_err(std::io::Error::other)
        })
}
