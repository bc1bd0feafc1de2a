//! Single-flight tarball fetches that stream to every waiting client while
//! the bytes are hashed and written to a temp file.
//!
//! One upstream fetch per (namespace, integrity) at a time: the first miss
//! starts a background task that writes the temp file and publishes its
//! progress on a watch channel; every client (the first one included) tails
//! that file through its own handle. The last [`HOLDBACK`] bytes are released
//! only after the digest matched, so a client never receives a complete body
//! that failed verification; on a mismatch every reader gets an error and the
//! CAS is left untouched.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use ssri::Integrity;
use tokio::sync::watch;

use crate::backend::{tarball_key, BlobBackend};
use crate::cas::{Cas, Stored};
use crate::{FetchFailure, Result, StoreError};

/// Bytes withheld from readers until the digest has been checked.
pub const HOLDBACK: u64 = 16 * 1024;
const CHUNK: usize = 64 * 1024;

/// A boxed stream of upstream bytes.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, FetchFailure>> + Send>>;

#[derive(Clone, Debug)]
enum FlightState {
    Running { written: u64 },
    Done { len: u64 },
    Failed(FetchFailure),
}

struct Flight {
    reader: Arc<File>,
    state: watch::Receiver<FlightState>,
}

/// What a tarball request is answered with.
pub enum TarballBody {
    /// A verified CAS object: serve the file (length known).
    Stored(Stored),
    /// A fetch in progress: tail it.
    Streaming(Pin<Box<dyn Stream<Item = Result<Bytes, StoreError>> + Send>>),
}

/// Coordinates concurrent tarball misses over one [`Cas`].
pub struct TarballFetches {
    cas: Arc<Cas>,
    inflight: Mutex<HashMap<String, Arc<Flight>>>,
    max_size: u64,
    /// Called after a fetched object was placed in the CAS (the disk
    /// budget looks again).
    on_stored: Option<Arc<dyn Fn() + Send + Sync>>,
    /// The shared bucket behind the local CAS, if any.
    backend: Option<Arc<dyn BlobBackend>>,
    /// Until when bucket reads are skipped after the bucket failed, so an
    /// unreachable bucket costs one wait, not one per tarball miss.
    bucket_pause: Mutex<Option<Instant>>,
}

/// How long bucket reads are skipped after a bucket error.
const BUCKET_PAUSE: Duration = Duration::from_secs(5);

impl TarballFetches {
    pub fn new(cas: Arc<Cas>, max_size: u64) -> Self {
        Self {
            cas,
            inflight: Mutex::new(HashMap::new()),
            max_size,
            on_stored: None,
            backend: None,
            bucket_pause: Mutex::new(None),
        }
    }

    /// Puts a shared bucket behind the local CAS (read-through, write-first).
    pub fn with_backend(mut self, backend: Arc<dyn BlobBackend>) -> Self {
        self.backend = Some(backend);
        self
    }

    /// Calls `f` each time a fetched object has been placed in the CAS.
    pub fn with_on_stored(mut self, f: impl Fn() + Send + Sync + 'static) -> Self {
        self.on_stored = Some(Arc::new(f));
        self
    }

    pub fn cas(&self) -> &Arc<Cas> {
        &self.cas
    }

    /// Serves `sri` in namespace `ns`: a CAS hit as a file, otherwise joins or
    /// starts the single fetch produced by `start`. With `keep == false`
    /// (uplink `cache: false`) verified bytes are streamed and then dropped.
    pub async fn get<F, Fut>(
        self: &Arc<Self>,
        ns: &str,
        sri: &Integrity,
        keep: bool,
        start: F,
    ) -> Result<TarballBody>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<ByteStream, FetchFailure>> + Send + 'static,
    {
        if keep {
            if let Some(hit) = self.cas.lookup(ns, sri)? {
                return Ok(TarballBody::Stored(hit));
            }
            if let Some(hit) = self.fill_from_bucket(ns, sri).await {
                return Ok(TarballBody::Stored(hit));
            }
        }
        let upload = match (&self.backend, keep) {
            (Some(b), true) => Some((Arc::clone(b), tarball_key(ns, sri)?)),
            _ => None,
        };
        let key = format!("{ns}\n{sri}\n{keep}");
        let existing = self.lock().get(&key).cloned();
        let flight = match existing {
            Some(f) => f,
            None => {
                let writer = self.cas.writer(ns, sri.clone())?;
                let reader = Arc::new(writer.reader()?);
                let (tx, rx) = watch::channel(FlightState::Running { written: 0 });
                let flight = Arc::new(Flight { reader, state: rx });
                {
                    let mut map = self.lock();
                    if let Some(other) = map.get(&key) {
                        // Lost a race: join the other fetch, drop ours.
                        let other = Arc::clone(other);
                        drop(map);
                        writer.abort();
                        return Ok(TarballBody::Streaming(tail(other)));
                    }
                    map.insert(key.clone(), Arc::clone(&flight));
                }
                let fut = start();
                let this = Arc::clone(self);
                // The starter's span (its request id) follows the fetch.
                let span = tracing::Span::current();
                tokio::spawn(tracing::Instrument::instrument(
                    async move {
                        let outcome =
                            run_fetch(writer, fut, &tx, keep, upload, this.max_size).await;
                        let final_state = match outcome {
                            Ok(len) => {
                                if let (true, Some(f)) = (keep, this.on_stored.as_ref()) {
                                    f();
                                }
                                FlightState::Done { len }
                            }
                            Err(
                                e @ FetchFailure::Status {
                                    status: 404 | 410, ..
                                },
                            ) => {
                                // Routine: platform packages other clients need.
                                tracing::debug!(error = %e, "tarball not on the uplink");
                                FlightState::Failed(e)
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "tarball fetch failed; nothing cached");
                                FlightState::Failed(e)
                            }
                        };
                        this.lock().remove(&key);
                        let _ = tx.send(final_state);
                    },
                    span,
                ));
                flight
            }
        };
        Ok(TarballBody::Streaming(tail(flight)))
    }

    /// A local miss asked of the bucket: `Some` once verified bytes are
    /// placed in the CAS. Absent, unreachable or corrupt objects are `None`
    /// (the caller asks the uplink), never an error to the client.
    async fn fill_from_bucket(&self, ns: &str, sri: &Integrity) -> Option<Stored> {
        let backend = self.backend.as_ref()?;
        let key = tarball_key(ns, sri).ok()?;
        if self.bucket_paused() {
            return None;
        }
        match fill_from(backend.as_ref(), &self.cas, ns, sri, &key, self.max_size).await {
            Ok(Some(stored)) => {
                tracing::debug!(key = %key, "tarball filled from the bucket");
                if let Some(f) = self.on_stored.as_ref() {
                    f();
                }
                Some(stored)
            }
            Ok(None) => None,
            Err(e @ StoreError::IntegrityMismatch { .. }) => {
                tracing::warn!(key = %key, error = %e, "object in the bucket does not match its key; not served, asking the uplink");
                None
            }
            Err(e) => {
                tracing::warn!(key = %key, error = %e, "bucket read failed; asking the uplink, and skipping bucket reads for {BUCKET_PAUSE:?}");
                *self.pause_lock() = Some(Instant::now() + BUCKET_PAUSE);
                None
            }
        }
    }

    fn bucket_paused(&self) -> bool {
        let mut pause = self.pause_lock();
        match *pause {
            Some(until) if Instant::now() < until => true,
            Some(_) => {
                *pause = None;
                false
            }
            None => false,
        }
    }

    fn pause_lock(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.bucket_pause.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Flight>>> {
        self.inflight.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Copies `key` from the bucket into the CAS through its verifying writer;
/// `Ok(None)` when the bucket has no such object.
pub async fn fill_from(
    backend: &dyn BlobBackend,
    cas: &Cas,
    ns: &str,
    sri: &Integrity,
    key: &str,
    max_size: u64,
) -> Result<Option<Stored>> {
    let Some(mut stream) = backend.get(key.to_owned()).await? else {
        return Ok(None);
    };
    let mut writer = cas.writer(ns, sri.clone())?;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        if writer.written() + chunk.len() as u64 > max_size {
            return Err(StoreError::TooLarge(max_size));
        }
        writer.write(&chunk)?;
    }
    writer.finish(true).map(Some)
}

async fn run_fetch(
    mut writer: crate::cas::CasWriter,
    fut: impl std::future::Future<Output = Result<ByteStream, FetchFailure>>,
    tx: &watch::Sender<FlightState>,
    keep: bool,
    upload: Option<(Arc<dyn BlobBackend>, String)>,
    max_size: u64,
) -> Result<u64, FetchFailure> {
    let mut stream = match fut.await {
        Ok(s) => s,
        Err(e) => {
            writer.abort();
            return Err(e);
        }
    };
    while let Some(chunk) = stream.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                writer.abort();
                return Err(e);
            }
        };
        if writer.written() + chunk.len() as u64 > max_size {
            writer.abort();
            return Err(FetchFailure::TooLarge(max_size));
        }
        // Small synchronous writes land in the page cache; not worth a
        // blocking-pool hop per chunk.
        if let Err(e) = writer.write(&chunk) {
            writer.abort();
            return Err(FetchFailure::storage(e));
        }
        let _ = tx.send(FlightState::Running {
            written: writer.written(),
        });
    }
    let Some((backend, key)) = upload else {
        let stored = writer.finish(keep).map_err(FetchFailure::storage)?;
        return Ok(stored.len);
    };
    let verified = writer.verify().map_err(FetchFailure::storage)?;
    let len = verified.len();
    // The bytes are verified: readers may finish from their own handles
    // while the copy goes to the bucket (the flight stays joinable).
    let _ = tx.send(FlightState::Done { len });
    if let Err(e) = backend
        .put(key.clone(), verified.temp_path().to_owned())
        .await
    {
        // The uplink stays the source: this node keeps its copy, other
        // nodes fetch their own.
        tracing::warn!(key = %key, error = %e, "cannot put the tarball in the bucket; kept on this node only");
    }
    verified.place().map_err(FetchFailure::storage)?;
    Ok(len)
}

fn tail(flight: Arc<Flight>) -> Pin<Box<dyn Stream<Item = Result<Bytes, StoreError>> + Send>> {
    let rx = flight.state.clone();
    let state = (flight, rx, 0u64);
    Box::pin(futures_util::stream::unfold(Some(state), |st| async move {
        let (flight, mut rx, offset) = st?;
        loop {
            let current = rx.borrow_and_update().clone();
            let readable = match &current {
                FlightState::Running { written } => written.saturating_sub(HOLDBACK),
                FlightState::Done { len } => *len,
                FlightState::Failed(e) => {
                    return Some((Err(StoreError::Fetch(e.clone())), None));
                }
            };
            if offset < readable {
                let want = usize::try_from((readable - offset).min(CHUNK as u64)).unwrap_or(CHUNK);
                let mut buf = vec![0u8; want];
                return match flight.reader.read_at(&mut buf, offset) {
                    Ok(0) => Some((
                        Err(StoreError::Fetch(FetchFailure::Interrupted(
                            "temp file shrank",
                        ))),
                        None,
                    )),
                    Ok(n) => {
                        buf.truncate(n);
                        let next = offset + n as u64;
                        Some((Ok(Bytes::from(buf)), Some((flight, rx, next))))
                    }
                    Err(e) => Some((Err(StoreError::Io(e)), None)),
                };
            }
            if let FlightState::Done { .. } = current {
                return None;
            }
            if rx.changed().await.is_err() {
                // Sender gone without a final state: treat as failure.
                return Some((
                    Err(StoreError::Fetch(FetchFailure::Interrupted(
                        "fetch task ended unexpectedly",
                    ))),
                    None,
                ));
            }
        }
    }))
}

#[cfg(test)]
mod tests;
