//! A small least-recently-used map in front of the SQLite index.
//!
//! Invariant: never holds more than `capacity` entries; a `get` refreshes the
//! entry so hot packages stay resident. Written in-crate (a HashMap plus a
//! recency-ordered BTreeMap) because it is ~50 lines and keeps the lockfile
//! unchanged.

use std::collections::{BTreeMap, HashMap};

/// Bounded LRU map from string keys to cheaply clonable values.
#[derive(Debug)]
pub(crate) struct Lru<V> {
    capacity: usize,
    /// Monotonic use counter; the smallest live tick is the eviction victim.
    tick: u64,
    entries: HashMap<String, (V, u64)>,
    by_tick: BTreeMap<u64, String>,
}

impl<V: Clone> Lru<V> {
    /// `capacity` 0 disables caching entirely.
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            tick: 0,
            entries: HashMap::new(),
            by_tick: BTreeMap::new(),
        }
    }

    pub(crate) fn get(&mut self, key: &str) -> Option<V> {
        self.tick += 1;
        let tick = self.tick;
        let (value, used) = self.entries.get_mut(key)?;
        self.by_tick.remove(used);
        *used = tick;
        self.by_tick.insert(tick, key.to_owned());
        Some(value.clone())
    }

    pub(crate) fn put(&mut self, key: &str, value: V) {
        if self.capacity == 0 {
            return;
        }
        self.tick += 1;
        let tick = self.tick;
        if let Some((_, old)) = self.entries.insert(key.to_owned(), (value, tick)) {
            self.by_tick.remove(&old);
        }
        self.by_tick.insert(tick, key.to_owned());
        while self.entries.len() > self.capacity {
            let Some((_, victim)) = self.by_tick.pop_first() else {
                break;
            };
            self.entries.remove(&victim);
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests;
