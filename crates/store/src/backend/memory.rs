//! [`MemoryBackend`]: a bucket in process memory, for unit tests of the
//! stores above the seam (the S3 backend's contract without a server).
//! It can be switched off to act as an unreachable bucket.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use bytes::Bytes;

use super::{BackendFuture, BlobBackend, BlobStream};
use crate::StoreError;

#[derive(Debug, Default)]
pub struct MemoryBackend {
    objects: Mutex<HashMap<String, Vec<u8>>>,
    down: AtomicBool,
    gets: AtomicUsize,
}

impl MemoryBackend {
    /// While `down`, every call fails as an unreachable bucket would.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// Writes an object directly (tests corrupt or seed the bucket).
    pub fn insert(&self, key: &str, bytes: Vec<u8>) {
        self.lock().insert(key.to_owned(), bytes);
    }

    /// How many `get` calls were made (reachable or not).
    pub fn get_calls(&self) -> usize {
        self.gets.load(Ordering::SeqCst)
    }

    /// An object's bytes as stored.
    pub fn object(&self, key: &str) -> Option<Vec<u8>> {
        self.lock().get(key).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<u8>>> {
        self.objects.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn check(&self) -> crate::Result<()> {
        if self.down.load(Ordering::SeqCst) {
            Err(StoreError::Bucket("bucket unreachable".into()))
        } else {
            Ok(())
        }
    }
}

impl BlobBackend for MemoryBackend {
    fn put(&self, key: String, path: PathBuf) -> BackendFuture<()> {
        let r = self.check().and_then(|()| {
            let bytes = std::fs::read(path)?;
            self.insert(&key, bytes);
            Ok(())
        });
        Box::pin(async move { r })
    }

    fn get(&self, key: String) -> BackendFuture<Option<BlobStream>> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        let r = self.check().map(|()| {
            self.object(&key).map(|b| {
                // Two chunks, so readers see a stream.
                let (a, z) = b.split_at(b.len() / 2);
                let chunks = vec![Ok(Bytes::copy_from_slice(a)), Ok(Bytes::copy_from_slice(z))];
                Box::pin(futures_util::stream::iter(chunks)) as BlobStream
            })
        });
        Box::pin(async move { r })
    }

    fn exists(&self, key: String) -> BackendFuture<bool> {
        let r = self.check().map(|()| self.lock().contains_key(&key));
        Box::pin(async move { r })
    }

    fn delete(&self, key: String) -> BackendFuture<()> {
        let r = self.check().map(|()| {
            self.lock().remove(&key);
        });
        Box::pin(async move { r })
    }
}
