//! Stage 8: the response body. Every byte layout comes from `pnpr-protocol`
//! (the wire owner): a header member, one gzip member per package (RFC
//! 0008: a whole package's member is made when its tarball is unpacked and
//! kept by the file store under the wire owner's key; a partial one is cut
//! from that member per response, §4, and kept as a stored cut for the next
//! response naming the same frames, RFC 0010 §4c), and the end member.
//!
//! Invariants: only frames named by the plan — itself built from authorized
//! packages — are written (a stored member or cut is named by exactly the
//! frames it holds, `member_key`, and a cut keeps only the frames the group
//! names);
//! a frame's content must have the size its index row recorded; the body is
//! produced as a stream bounded by the channel's buffer of chunks, and the
//! partial groups compressed ahead of it ([`ahead`], RFC 0008 §6) by the
//! pool's bounds (jobs ahead × chunks per job), whatever the tree.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue};
use axum::response::Response;
use pnpr_protocol::DEFAULT_GZIP_LEVEL as LEVEL;
use pnpr_protocol::MEMBER_GZIP_LEVEL as MEMBER_LEVEL;

mod ahead;

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
    packages: Vec<pnpr_protocol::PackageRef>,
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
    tokio::task::spawn_blocking(move || write_frames(&st, head, &packages, &plan, &tx));
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
/// Groups go out in readiness order (frame order carries no meaning, spec
/// §2.8): the stored members are copied while the partial ones are cut and
/// compressed on a small pool ([`ahead`]), and each cut goes out, in plan
/// order, as soon as it has begun.
fn write_frames(
    state: &AppState,
    head: Vec<u8>,
    packages: &[pnpr_protocol::PackageRef],
    plan: &pnpr_protocol::Plan,
    tx: &Sink,
) {
    if tx.blocking_send(Ok(Bytes::from(head))).is_err() {
        return;
    }
    let files = &state.accelerator.files;
    let (whole, partial): (Vec<_>, Vec<_>) = plan.groups.iter().partition(|g| g.complete);
    let cuts: Vec<Cut<'_>> = partial
        .iter()
        .map(|g| Cut {
            integrity: packages.get(g.package).map(|p| p.integrity.as_str()),
            frames: plan.frames.get(g.frames.clone()).unwrap_or_default(),
        })
        .collect();
    let work = |cut: Cut<'_>, emit: &ahead::Emit<CutItem>| compress_cut(files, &cut, emit);
    let sent = std::thread::scope(|scope| {
        let mut cuts = ahead::Ahead::start(scope, cuts, pool_bounds(), &work);
        for group in whole {
            while let Some(out) = cuts.ready() {
                send_output(out, tx)?;
            }
            let frames = plan.frames.get(group.frames.clone()).unwrap_or_default();
            send_stored(files, frames, tx)?;
        }
        while let Some(out) = cuts.next_output() {
            send_output(out, tx)?;
        }
        Ok(())
    });
    match sent {
        Ok(()) => {}
        Err(Stop::Gone) => return,
        Err(Stop::Failed(e)) => {
            tracing::error!(error = %e, "stored member unreadable; aborting response");
            let _ = tx.blocking_send(Err(std::io::Error::other("stored member unreadable")));
            return;
        }
    }
    let end = pnpr_protocol::end_member(LEVEL).map_err(std::io::Error::other);
    let _ = tx.blocking_send(end.map(Bytes::from));
}

/// The pool compressing partial groups for one response: one thread per
/// core (at most 4), running at most 4 groups per thread ahead of the
/// writer, each holding at most 4 chunks: memory per response stays under
/// 16 chunks per thread (16 MiB at 4 threads) whatever the tree.
fn pool_bounds() -> ahead::Bounds {
    let workers = std::thread::available_parallelism()
        .map_or(2, std::num::NonZeroUsize::get)
        .min(4);
    ahead::Bounds {
        workers,
        lookahead: workers * 4,
        per_job: 4,
    }
}

/// A partial group: the package whose member it is cut from and the
/// frames it names.
struct Cut<'a> {
    integrity: Option<&'a str>,
    frames: &'a [pnpr_protocol::FrameRef],
}

/// A chunk of a cut's compressed member, or why it could not be made.
type CutItem = Result<Vec<u8>, String>;

/// Sends one cut's member, as its worker makes it.
fn send_output(out: ahead::Output<CutItem>, tx: &Sink) -> Result<(), Stop> {
    let mut any = false;
    for item in out {
        any = true;
        let chunk = item.map_err(Stop::Failed)?;
        tx.blocking_send(Ok(Bytes::from(chunk)))
            .map_err(|_| Stop::Gone)?;
    }
    if any {
        Ok(())
    } else {
        Err(Stop::Failed(
            "a partial group's worker ended early".to_owned(),
        ))
    }
}

/// A whole package's member, made when its tarball was unpacked (the
/// package is pinned from before the plan until the body is sent), copied
/// to the client in chunks.
fn send_stored(
    files: &pnpr_cafs::FileStore,
    frames: &[pnpr_protocol::FrameRef],
    tx: &Sink,
) -> Result<(), Stop> {
    let key = pnpr_protocol::member_key(frames);
    let (mut file, _len) = files
        .open_member(&key)
        .map_err(|e| Stop::Failed(format!("package member {key}: {e}")))?;
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
/// files): the frames the group names, sent from the stored cut of exactly
/// those frames when an earlier response kept one (RFC 0010 §4c), else cut
/// from the package's stored member and compressed as one member for this
/// response, handed to the writer in chunks as it fills (on a worker of
/// [`ahead`]) and then kept as a stored cut; a failure is the last item.
fn compress_cut(files: &pnpr_cafs::FileStore, cut: &Cut<'_>, emit: &ahead::Emit<CutItem>) {
    let Some(integrity) = cut.integrity else {
        emit.send(Err("a frame group names no package".to_owned()));
        return;
    };
    let key = pnpr_protocol::member_key(cut.frames);
    if let Some((file, _)) = files.open_cut(&key) {
        emit_file(file, &key, emit);
        return;
    }
    let wanted: std::collections::HashMap<([u8; 64], bool), u64> = cut
        .frames
        .iter()
        .map(|f| ((f.digest, f.executable), f.size))
        .collect();
    let mut member = pnpr_protocol::MemberWriter::new(Vec::new(), MEMBER_LEVEL);
    // A copy of what is sent, to keep; dropped past the cap.
    let mut kept: Option<Vec<u8>> = Some(Vec::new());
    let mut gone = false;
    let done = files.cut(integrity, &wanted, |digest, executable, content| {
        member
            .frame(digest, executable, &content)
            .map_err(std::io::Error::other)?;
        if member.sink().len() >= CHUNK {
            let chunk = std::mem::take(member.sink());
            keep_copy(&mut kept, &chunk);
            if !emit.send(Ok(chunk)) {
                gone = true;
                return Err(std::io::Error::other("client gone"));
            }
        }
        Ok(())
    });
    if gone {
        return;
    }
    let last = done
        .map_err(|e| e.to_string())
        .and_then(|()| member.finish().map_err(|e| e.to_string()));
    if let Ok(chunk) = &last {
        keep_copy(&mut kept, chunk);
    }
    let ok = last.is_ok();
    emit.send(last);
    if let (true, Some(bytes)) = (ok, kept) {
        if let Err(e) = files.keep_cut(&key, &bytes) {
            tracing::warn!(error = %e, "could not keep a cut member");
        }
    }
}

/// Compressed bytes of one cut kept in memory to store it afterwards.
const KEEP_CAP: usize = 8 << 20;

fn keep_copy(kept: &mut Option<Vec<u8>>, chunk: &[u8]) {
    if let Some(k) = kept {
        if k.len() + chunk.len() > KEEP_CAP {
            *kept = None;
        } else {
            k.extend_from_slice(chunk);
        }
    }
}

/// A stored cut, read in chunks and handed to the writer.
fn emit_file(mut file: std::fs::File, key: &str, emit: &ahead::Emit<CutItem>) {
    loop {
        let mut buf = vec![0u8; CHUNK];
        match std::io::Read::read(&mut file, &mut buf) {
            Ok(0) => return,
            Ok(n) => {
                buf.truncate(n);
                if !emit.send(Ok(buf)) {
                    return;
                }
            }
            Err(e) => {
                emit.send(Err(format!("reading cut {key}: {e}")));
                return;
            }
        }
    }
}
