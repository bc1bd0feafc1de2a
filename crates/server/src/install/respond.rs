//! Stage 8: the response body. Every byte layout comes from `pnpr-protocol`
//! (the wire owner): a header member, one gzip member per package (RFC
//! 0008: a whole package's member is made once and kept by the file store
//! under the wire owner's key; a partial one is made per response), and the
//! end member.
//!
//! Invariants: only frames named by the plan — itself built from authorized
//! packages — are written (a stored member is named by exactly the frames
//! it holds, `member_key`); a frame's content must have the size its index
//! row recorded; the body is produced as a stream bounded by the channel's
//! buffer of chunks (one file plus one chunk in memory per response).

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue};
use axum::response::Response;
use pnpr_protocol::DEFAULT_GZIP_LEVEL as LEVEL;
use pnpr_protocol::MEMBER_GZIP_LEVEL as MEMBER_LEVEL;

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
        groups: Vec::new(),
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

/// Bytes per channel item when a member is streamed, so the body holds at
/// most `CHANNEL_FRAMES` chunks of this size whatever the package size.
const CHUNK: usize = 256 * 1024;

/// Why a response stopped early.
enum Stop {
    /// The client went away: nothing to report.
    Gone,
    /// A stored file or member could not be read: the body is cut.
    Failed(String),
}

/// Runs on the blocking pool; stops as soon as the client goes away.
/// Groups whose member is already stored go first (readiness order; frame
/// order carries no meaning, spec §2.8), then the ones encoded now.
fn write_frames(state: &AppState, head: Vec<u8>, plan: &pnpr_protocol::Plan, tx: &Sink) {
    if tx.blocking_send(Ok(Bytes::from(head))).is_err() {
        return;
    }
    let files = &state.accelerator.files;
    let (ready, later): (Vec<_>, Vec<_>) = plan.groups.iter().partition(|g| {
        g.complete && files.has_member(&pnpr_protocol::member_key(&plan.frames[g.frames.clone()]))
    });
    for group in ready.into_iter().chain(later) {
        let frames = &plan.frames[group.frames.clone()];
        let sent = if group.complete {
            send_stored(files, frames, tx)
        } else {
            send_encoded(files, frames, tx)
        };
        match sent {
            Ok(()) => {}
            Err(Stop::Gone) => return,
            Err(Stop::Failed(e)) => {
                tracing::error!(error = %e, "stored file unreadable; aborting response");
                let _ = tx.blocking_send(Err(std::io::Error::other("stored file unreadable")));
                return;
            }
        }
    }
    let end = pnpr_protocol::end_member(LEVEL).map_err(std::io::Error::other);
    let _ = tx.blocking_send(end.map(Bytes::from));
}

/// A whole package's member: stored once (encoded now if it is not yet),
/// then copied to the client in chunks. A member that cannot be stored is
/// encoded for this response only.
fn send_stored(
    files: &pnpr_cafs::FileStore,
    frames: &[pnpr_protocol::FrameRef],
    tx: &Sink,
) -> Result<(), Stop> {
    let key = pnpr_protocol::member_key(frames);
    let (mut file, _len) = match files.member(&key, |w| encode_group(files, frames, w)) {
        Ok(found) => found,
        Err(e) => {
            tracing::warn!(error = %e, "package member not stored; encoding it for this response");
            return send_encoded(files, frames, tx);
        }
    };
    loop {
        let mut buf = vec![0u8; CHUNK];
        let n = std::io::Read::read(&mut file, &mut buf)
            .map_err(|e| Stop::Failed(format!("reading member {key}: {e}")))?;
        if n == 0 {
            return Ok(());
        }
        buf.truncate(n);
        tx.blocking_send(Ok(Bytes::from(buf)))
            .map_err(|_| Stop::Gone)?;
    }
}

/// A partial package (the client or an earlier package had some of its
/// files): one member made for this response, streamed frame by frame.
fn send_encoded(
    files: &pnpr_cafs::FileStore,
    frames: &[pnpr_protocol::FrameRef],
    tx: &Sink,
) -> Result<(), Stop> {
    let mut member = pnpr_protocol::MemberWriter::new(Vec::new(), MEMBER_LEVEL);
    for f in frames {
        let content = frame_content(files, f).map_err(|e| Stop::Failed(e.to_string()))?;
        member
            .frame(&f.digest, f.executable, &content)
            .map_err(|e| Stop::Failed(e.to_string()))?;
        if member.sink().len() >= CHUNK {
            let chunk = std::mem::take(member.sink());
            tx.blocking_send(Ok(Bytes::from(chunk)))
                .map_err(|_| Stop::Gone)?;
        }
    }
    let last = member.finish().map_err(|e| Stop::Failed(e.to_string()))?;
    tx.blocking_send(Ok(Bytes::from(last)))
        .map_err(|_| Stop::Gone)
}

/// Encodes `frames` as one gzip member into `out` (a stored member's temp
/// file), one file in memory at a time.
pub(super) fn encode_group(
    files: &pnpr_cafs::FileStore,
    frames: &[pnpr_protocol::FrameRef],
    out: &mut dyn std::io::Write,
) -> std::io::Result<()> {
    let mut member = pnpr_protocol::MemberWriter::new(out, MEMBER_LEVEL);
    for f in frames {
        let content = frame_content(files, f)?;
        member
            .frame(&f.digest, f.executable, &content)
            .map_err(std::io::Error::other)?;
    }
    member.finish().map_err(std::io::Error::other).map(drop)
}

/// A frame's content, checked against the size its index row recorded.
fn frame_content(
    files: &pnpr_cafs::FileStore,
    f: &pnpr_protocol::FrameRef,
) -> std::io::Result<Vec<u8>> {
    let content = files
        .read_file(&f.digest_hex)
        .map_err(std::io::Error::other)?;
    if content.len() as u64 != f.size {
        return Err(std::io::Error::other(format!(
            "stored file {} has {} bytes, its index row says {}",
            f.digest_hex,
            content.len(),
            f.size
        )));
    }
    Ok(content)
}
