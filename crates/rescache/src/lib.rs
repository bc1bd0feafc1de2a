//! Auth-aware resolution cache (spec §5.6–5.8): resolved trees cached under
//! an auth-free base key, as a bounded list of candidates per key.
//!
//! Invariants guarded here:
//! - a candidate with an empty footprint is public and serves every caller;
//! - a private candidate is returned only when the caller passes *every*
//!   descriptor gate of its footprint at lookup time (gates are evaluated by
//!   the caller-supplied predicate, against today's policy and credentials),
//!   so one user's private result never reaches another;
//! - no credential ever enters a key: descriptors carry only uplink names,
//!   package names and SHA-256 credential digests, and their ids are
//!   HMAC-SHA256 under the server secret;
//! - bounds: at most [`PER_KEY`] candidates per key, [`TOTAL`] overall and a
//!   byte budget over the weights callers give their values (an outsider can
//!   make a resolution large, so counting entries alone does not bound
//!   memory); over a bound the least-recently-used *private* candidate goes
//!   first, so public entries survive private churn (e.g. credential
//!   rotation). A value heavier than the whole budget is not kept.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// Candidates kept per base key.
pub const PER_KEY: usize = 8;
/// Candidates kept in all.
pub const TOTAL: usize = 1024;

/// What a resolution depended on that not every caller may see.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Descriptor {
    /// Fetched through an access-bearing uplink with its server credential.
    Alias {
        uplink: String,
        credential_digest: String,
    },
    /// A package whose `packages:` access does not admit anonymous callers.
    Package { name: String },
}

impl Descriptor {
    /// Key input bytes (spec §5.7).
    pub fn key_input(&self) -> Vec<u8> {
        let mut v = Vec::new();
        match self {
            Descriptor::Alias {
                uplink,
                credential_digest,
            } => {
                v.extend_from_slice(b"alias\0");
                v.extend_from_slice(uplink.as_bytes());
                v.push(0);
                v.extend_from_slice(credential_digest.as_bytes());
            }
            Descriptor::Package { name } => {
                v.extend_from_slice(b"hosted\0");
                v.extend_from_slice(name.as_bytes());
            }
        }
        v
    }
}

/// The set of descriptors a resolution used; empty = public.
pub type Footprint = BTreeSet<Descriptor>;

/// `hex(HMAC-SHA256(secret, input))`, lowercase (RFC 2104 over SHA-256).
pub fn hmac_hex(secret: &[u8], input: &[u8]) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return String::new();
    };
    mac.update(input);
    hex::encode(mac.finalize().into_bytes())
}

/// Descriptor id (spec §5.7): names a private namespace on disk and in
/// memory without revealing the uplink credential behind it.
pub fn descriptor_id(secret: &[u8], descriptor: &Descriptor) -> String {
    hmac_hex(secret, &descriptor.key_input())
}

/// HMAC digest of a footprint; `None` for a public (empty) footprint.
pub fn footprint_digest(secret: &[u8], footprint: &Footprint) -> Option<String> {
    if footprint.is_empty() {
        return None;
    }
    let mut input = Vec::new();
    for d in footprint {
        input.extend_from_slice(&d.key_input());
        input.push(b'\n');
    }
    Some(hmac_hex(secret, &input))
}

/// SHA-256 (hex) of canonical JSON: object keys sorted recursively, so the
/// key does not depend on the order a client wrote its maps in. The
/// canonical form is fed to the hasher as it is produced (no copy of the
/// input is built); depth is bounded by the JSON parser's nesting limit.
pub fn base_key(inputs: &serde_json::Value) -> String {
    fn canon(v: &serde_json::Value, h: &mut Sha256) {
        match v {
            serde_json::Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                h.update(b"{");
                for (i, k) in keys.iter().enumerate() {
                    if i > 0 {
                        h.update(b",");
                    }
                    scalar(&serde_json::Value::String((*k).clone()), h);
                    h.update(b":");
                    canon(&m[k.as_str()], h);
                }
                h.update(b"}");
            }
            serde_json::Value::Array(a) => {
                h.update(b"[");
                for (i, x) in a.iter().enumerate() {
                    if i > 0 {
                        h.update(b",");
                    }
                    canon(x, h);
                }
                h.update(b"]");
            }
            other => scalar(other, h),
        }
    }
    fn scalar(v: &serde_json::Value, h: &mut Sha256) {
        // Serialising a scalar into the hasher cannot fail.
        let _ = serde_json::to_writer(HashWriter(h), v);
    }
    struct HashWriter<'a>(&'a mut Sha256);
    impl std::io::Write for HashWriter<'_> {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.update(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut h = Sha256::new();
    canon(inputs, &mut h);
    hex::encode(h.finalize())
}

struct Candidate<V> {
    value: V,
    footprint: Footprint,
    digest: Option<String>,
    inserted: Instant,
    last_used: Instant,
    weight: usize,
}

/// The candidate cache. Not internally synchronised: wrap it in a mutex.
pub struct CandidateCache<V> {
    entries: HashMap<String, Vec<Candidate<V>>>,
    ttl: Duration,
    secret: Vec<u8>,
    total: usize,
    /// Sum of the weights of all candidates.
    bytes: usize,
    max_bytes: usize,
}

/// Default byte budget of a [`CandidateCache`].
pub const DEFAULT_MAX_BYTES: usize = 256 * 1024 * 1024;

impl<V: Clone> CandidateCache<V> {
    /// `ttl` zero disables caching.
    pub fn new(secret: Vec<u8>, ttl: Duration) -> Self {
        Self {
            entries: HashMap::new(),
            ttl,
            secret,
            total: 0,
            bytes: 0,
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }

    /// Sets the byte budget over candidate weights.
    pub fn with_max_bytes(mut self, max_bytes: usize) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    pub fn len(&self) -> usize {
        self.total
    }

    /// Sum of the weights of the cached candidates.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// Drops every candidate (the data behind them may have changed in a
    /// way no key or gate shows, e.g. a hosted package published on
    /// another node).
    pub fn clear(&mut self) {
        self.entries.clear();
        self.total = 0;
        self.bytes = 0;
    }

    /// First live candidate under `key` that is public or whose every
    /// descriptor passes `gate` for this caller now.
    pub fn lookup(&mut self, key: &str, gate: impl Fn(&Descriptor) -> bool) -> Option<V> {
        if self.ttl.is_zero() {
            return None;
        }
        let now = Instant::now();
        let ttl = self.ttl;
        let list = self.entries.get_mut(key)?;
        let before = list.len();
        let before_bytes: usize = list.iter().map(|c| c.weight).sum();
        list.retain(|c| now.duration_since(c.inserted) < ttl);
        self.total -= before - list.len();
        self.bytes -= before_bytes - list.iter().map(|c| c.weight).sum::<usize>();
        let hit = list.iter_mut().find(|c| c.footprint.iter().all(&gate))?;
        hit.last_used = now;
        Some(hit.value.clone())
    }

    /// Records a successful resolution; `weight` is the caller's estimate
    /// of the value's memory in bytes.
    pub fn store(&mut self, key: &str, footprint: Footprint, value: V, weight: usize) {
        if self.ttl.is_zero() || weight > self.max_bytes {
            return;
        }
        let now = Instant::now();
        self.prune(now);
        let digest = footprint_digest(&self.secret, &footprint);
        let list = self.entries.entry(key.to_string()).or_default();
        if let Some(existing) = list.iter_mut().find(|c| c.digest == digest) {
            self.bytes = self.bytes - existing.weight + weight;
            existing.weight = weight;
            existing.value = value;
            existing.footprint = footprint;
            existing.inserted = now;
            existing.last_used = now;
            self.enforce_budgets();
            return;
        }
        list.push(Candidate {
            value,
            footprint,
            digest,
            inserted: now,
            last_used: now,
            weight,
        });
        self.total += 1;
        self.bytes += weight;
        if list.len() > PER_KEY {
            self.bytes -= evict_one(list);
            self.total -= 1;
        }
        self.enforce_budgets();
    }

    fn enforce_budgets(&mut self) {
        while self.total > TOTAL || self.bytes > self.max_bytes {
            if !self.evict_global() {
                break;
            }
        }
    }

    fn prune(&mut self, now: Instant) {
        let ttl = self.ttl;
        let mut removed = 0;
        let mut removed_bytes = 0;
        self.entries.retain(|_, list| {
            list.retain(|c| {
                let live = now.duration_since(c.inserted) < ttl;
                if !live {
                    removed += 1;
                    removed_bytes += c.weight;
                }
                live
            });
            !list.is_empty()
        });
        self.total -= removed;
        self.bytes -= removed_bytes;
    }

    /// Evicts the globally least-recently-used private candidate, else the
    /// least-recently-used of any kind.
    fn evict_global(&mut self) -> bool {
        let mut victim: Option<(String, usize, bool, Instant)> = None;
        for (k, list) in &self.entries {
            for (i, c) in list.iter().enumerate() {
                let private = c.digest.is_some();
                let better = match &victim {
                    None => true,
                    Some((_, _, vp, vt)) => {
                        (private && !vp) || (private == *vp && c.last_used < *vt)
                    }
                };
                if better {
                    victim = Some((k.clone(), i, private, c.last_used));
                }
            }
        }
        let Some((k, i, _, _)) = victim else {
            return false;
        };
        if let Some(list) = self.entries.get_mut(&k) {
            self.bytes -= list.remove(i).weight;
            if list.is_empty() {
                self.entries.remove(&k);
            }
        }
        self.total -= 1;
        true
    }
}

/// Evicts one candidate of a full list and returns its weight.
fn evict_one<V>(list: &mut Vec<Candidate<V>>) -> usize {
    let pick = list
        .iter()
        .enumerate()
        .filter(|(_, c)| c.digest.is_some())
        .min_by_key(|(_, c)| c.last_used)
        .or_else(|| list.iter().enumerate().min_by_key(|(_, c)| c.last_used))
        .map(|(i, _)| i);
    pick.map_or(0, |i| list.remove(i).weight)
}

#[cfg(test)]
mod tests;
