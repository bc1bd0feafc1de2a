//! The seam between a node's local content-addressed files and a shared
//! bucket (`blobs:`): [`BlobBackend`] is what the tarball CAS and the hosted
//! tarball store call at their blob write/read boundary, and nothing else.
//!
//! Invariants guarded here (for every implementation):
//! - keys are content addresses ([`tarball_key`], [`hosted_key`]) built from
//!   a parsed digest, so a `put` is idempotent (same key, same bytes) and no
//!   caller can address anything but a digest-shaped key under its own
//!   top-level folder;
//! - a backend never verifies what it returns: [`BlobBackend::get`] hands
//!   back raw bytes, and every caller writes them through a verifying writer
//!   before a single byte is served, so a corrupt or foreign object in the
//!   bucket is never served under a key it does not match;
//! - the futures are `'static` and driven by the backend's own runtime, so a
//!   caller on any runtime, or a blocking thread through [`block_on`], can
//!   await them.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use bytes::Bytes;
use futures_util::Stream;
use ssri::Integrity;

use crate::{Result, StoreError};

/// A boxed future of a backend call.
pub type BackendFuture<T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'static>>;
/// The raw (unverified) bytes of an object.
pub type BlobStream = Pin<Box<dyn Stream<Item = Result<Bytes>> + Send + 'static>>;

/// Shared storage of content-addressed blobs.
pub trait BlobBackend: Send + Sync + std::fmt::Debug {
    /// Uploads the complete, already verified file at `path` under `key`.
    /// Returns only after the object is durable in the bucket.
    fn put(&self, key: String, path: PathBuf) -> BackendFuture<()>;
    /// The object's raw bytes; `None` when the key does not exist.
    fn get(&self, key: String) -> BackendFuture<Option<BlobStream>>;
    /// Whether the key exists.
    fn exists(&self, key: String) -> BackendFuture<bool>;
    /// Deletes the object; a key that does not exist is no error. Only for
    /// an object its owner has established nothing references any more.
    fn delete(&self, key: String) -> BackendFuture<()>;
}

/// `tarballs/<ns>/<algo>/<hex[0..2]>/<hex[2..]>`: the proxy CAS's key, the
/// same layout as its directory tree (namespaces stay apart in the bucket
/// as on disk, so a private uplink's tarball is never found by a lookup in
/// another namespace).
pub fn tarball_key(ns: &str, sri: &Integrity) -> Result<String> {
    crate::cas::check_ns(ns)?;
    let (algo, hex) = sri.to_hex();
    if hex.len() < 3 {
        return Err(StoreError::BadIntegrity);
    }
    Ok(format!("tarballs/{ns}/{algo}/{}/{}", &hex[..2], &hex[2..]))
}

/// `hosted/sha512/<hex[0..2]>/<hex[2..]>`: a published tarball's key; `None`
/// for anything that is not 128 lowercase hex characters.
pub fn hosted_key(sha512_hex: &str) -> Option<String> {
    let ok = sha512_hex.len() == 128
        && sha512_hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    ok.then(|| format!("hosted/sha512/{}/{}", &sha512_hex[..2], &sha512_hex[2..]))
}

/// The next chunk of an object (for callers without a stream library).
pub async fn next_chunk(stream: &mut BlobStream) -> Option<Result<Bytes>> {
    futures_util::StreamExt::next(stream).await
}

/// Drives a backend future to completion on the calling thread, for
/// synchronous stores (hosted publishes run on the blocking pool). Must not
/// be called on an async runtime's worker thread: it parks the thread.
pub fn block_on<F: Future>(fut: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    loop {
        match fut.as_mut().poll(&mut cx) {
            Poll::Ready(out) => return out,
            Poll::Pending => std::thread::park(),
        }
    }
}

pub mod copy;
mod memory;
pub use memory::MemoryBackend;

#[cfg(test)]
mod tests;
