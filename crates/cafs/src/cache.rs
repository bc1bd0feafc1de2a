//! A bounded least-recently-used map in front of the SQLite index.
//!
//! Invariant: never holds more than `capacity` entries; a `get` refreshes the
//! entry so hot packages stay resident. A thin wrapper over the `lru` crate
//! that also allows a capacity of 0 (caching off).

use std::num::NonZeroUsize;

/// Bounded LRU map from string keys to cheaply clonable values.
#[derive(Debug)]
pub(crate) struct Lru<V> {
    inner: Option<lru::LruCache<String, V>>,
}

impl<V: Clone> Lru<V> {
    /// `capacity` 0 disables caching entirely.
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            inner: NonZeroUsize::new(capacity).map(lru::LruCache::new),
        }
    }

    pub(crate) fn get(&mut self, key: &str) -> Option<V> {
        self.inner.as_mut()?.get(key).cloned()
    }

    pub(crate) fn put(&mut self, key: &str, value: V) {
        if let Some(c) = self.inner.as_mut() {
            c.put(key.to_owned(), value);
        }
    }

    pub(crate) fn pop(&mut self, key: &str) {
        if let Some(c) = self.inner.as_mut() {
            c.pop(key);
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.inner.as_ref().map_or(0, lru::LruCache::len)
    }
}

#[cfg(test)]
mod tests;
