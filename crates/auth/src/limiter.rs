//! The login-attempt limiter: bounds online password guessing.
//!
//! Owns the per-user and per-address attempt counters. Invariants:
//! * a password check (bcrypt) starts only after [`LoginLimiter::begin`] let
//!   it through, and `begin` counts the attempt *before* the check runs, so
//!   concurrent guesses cannot overshoot the budget while their hashes are
//!   still being computed; only [`LoginLimiter::succeeded`] gives the attempt
//!   back;
//! * over budget, the answer is a `Retry-After` duration and no hash runs, so
//!   a refused guess costs the server a map lookup, not a bcrypt;
//! * memory is bounded: at most [`MAX_TRACKED`] keys per table, user names are
//!   kept only as digests, and IPv6 peers are counted per /64 (one host owns
//!   a whole /64, so rotating addresses inside it gains nothing). When a
//!   table is full of live entries a new key is refused (fail closed): only
//!   fresh password checks wait, verified credentials and tokens keep working.
//!
//! Windows are fixed: a key's window opens at its first attempt and every
//! attempt inside it counts, until it closes `window` later.

use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[cfg(test)]
mod tests;

/// Keys per table beyond which new keys are refused.
pub const MAX_TRACKED: usize = 65_536;

/// Budgets for failed password checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoginLimits {
    /// Failed checks per user name within `window`.
    pub per_user: u32,
    /// Failed checks per client address (IPv6: per /64) within `window`.
    pub per_address: u32,
    /// Length of the counting window.
    pub window: Duration,
}

impl Default for LoginLimits {
    /// 10 per user and 50 per address per 5 minutes: a person mistyping a
    /// password never gets there, a guesser gets ~3000 tries a day per user.
    fn default() -> Self {
        LoginLimits {
            per_user: 10,
            per_address: 50,
            window: Duration::from_secs(300),
        }
    }
}

/// Over budget: retry after this long (at least one second).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Throttled {
    pub retry_after: Duration,
}

impl Throttled {
    /// Whole seconds for a `Retry-After` header, rounded up.
    pub fn retry_after_secs(&self) -> u64 {
        let secs = self.retry_after.as_secs();
        if self.retry_after.subsec_nanos() > 0 {
            secs + 1
        } else {
            secs.max(1)
        }
    }
}

/// An attempt admitted by [`LoginLimiter::begin`]; it counts as a failure
/// unless handed back to [`LoginLimiter::succeeded`].
#[derive(Debug)]
#[must_use = "an attempt counts as failed unless passed to `succeeded`"]
pub struct Attempt {
    user: Option<([u8; 32], Instant)>,
    addr: Option<(AddrKey, Instant)>,
}

/// The address a peer is counted under.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum AddrKey {
    V4(u32),
    /// The upper 64 bits of an IPv6 address.
    V6(u64),
}

impl AddrKey {
    fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => AddrKey::V4(u32::from(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => AddrKey::V4(u32::from(v4)),
                None => AddrKey::V6((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Slot {
    opened: Instant,
    count: u32,
}

struct Table<K> {
    slots: HashMap<K, Slot>,
}

impl<K: Hash + Eq + Copy> Table<K> {
    fn new() -> Self {
        Table {
            slots: HashMap::new(),
        }
    }

    /// The live slot for `key`, dropping it if its window closed.
    fn live(&mut self, key: &K, now: Instant, window: Duration) -> Option<Slot> {
        match self.slots.get(key) {
            Some(slot) if now.saturating_duration_since(slot.opened) < window => Some(*slot),
            Some(_) => {
                self.slots.remove(key);
                None
            }
            None => None,
        }
    }

    /// `Err(retry)` if `key` is over `limit`, or if it is new and the table
    /// is full of live entries.
    fn admit(
        &mut self,
        key: &K,
        limit: u32,
        now: Instant,
        window: Duration,
    ) -> Result<(), Duration> {
        match self.live(key, now, window) {
            Some(slot) if slot.count >= limit => {
                Err((slot.opened + window).saturating_duration_since(now))
            }
            Some(_) => Ok(()),
            None => {
                if self.slots.len() >= MAX_TRACKED {
                    self.slots
                        .retain(|_, s| now.saturating_duration_since(s.opened) < window);
                }
                if self.slots.len() >= MAX_TRACKED {
                    Err(window)
                } else {
                    Ok(())
                }
            }
        }
    }

    /// Counts one attempt; returns the window it was counted in.
    fn count(&mut self, key: K, now: Instant) -> Instant {
        let slot = self.slots.entry(key).or_insert(Slot {
            opened: now,
            count: 0,
        });
        slot.count = slot.count.saturating_add(1);
        slot.opened
    }

    /// Gives back one attempt counted in the window opened at `opened`.
    fn refund(&mut self, key: &K, opened: Instant) {
        if let Some(slot) = self.slots.get_mut(key) {
            if slot.opened == opened {
                slot.count = slot.count.saturating_sub(1);
            }
        }
    }
}

struct Tables {
    users: Table<[u8; 32]>,
    addrs: Table<AddrKey>,
}

/// Counts password-check attempts per user and per address. Share it
/// behind an `Arc` (or inside the `Authenticator`).
pub struct LoginLimiter {
    limits: LoginLimits,
    tables: Mutex<Tables>,
}

impl std::fmt::Debug for LoginLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginLimiter")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

fn user_key(user: &str) -> [u8; 32] {
    Sha256::digest(user.as_bytes()).into()
}

impl LoginLimiter {
    /// A limiter with these budgets. A zero budget or window is raised to 1
    /// (a budget of 0 would refuse every login forever).
    pub fn new(limits: LoginLimits) -> Self {
        LoginLimiter {
            limits: LoginLimits {
                per_user: limits.per_user.max(1),
                per_address: limits.per_address.max(1),
                window: limits.window.max(Duration::from_secs(1)),
            },
            tables: Mutex::new(Tables {
                users: Table::new(),
                addrs: Table::new(),
            }),
        }
    }

    /// The budgets in force.
    pub fn limits(&self) -> LoginLimits {
        self.limits
    }

    /// Admits a password check for `user` from `addr` (either may be
    /// unknown), counting it; refuses with the time until the fullest
    /// window closes.
    pub fn begin(&self, user: Option<&str>, addr: Option<IpAddr>) -> Result<Attempt, Throttled> {
        self.begin_at(user, addr, Instant::now())
    }

    /// [`Self::begin`] at a given instant (tests).
    pub fn begin_at(
        &self,
        user: Option<&str>,
        addr: Option<IpAddr>,
        now: Instant,
    ) -> Result<Attempt, Throttled> {
        let LoginLimits {
            per_user,
            per_address,
            window,
        } = self.limits;
        let user = user.map(user_key);
        let addr = addr.map(AddrKey::of);
        let mut t = self.tables.lock().unwrap_or_else(|e| e.into_inner());
        let mut wait = None::<Duration>;
        if let Some(k) = &user {
            if let Err(d) = t.users.admit(k, per_user, now, window) {
                wait = Some(d);
            }
        }
        if let Some(k) = &addr {
            if let Err(d) = t.addrs.admit(k, per_address, now, window) {
                wait = Some(wait.map_or(d, |w| w.max(d)));
            }
        }
        if let Some(d) = wait {
            return Err(Throttled {
                retry_after: d.max(Duration::from_secs(1)),
            });
        }
        Ok(Attempt {
            user: user.map(|k| (k, t.users.count(k, now))),
            addr: addr.map(|k| (k, t.addrs.count(k, now))),
        })
    }

    /// The check passed (or never ran, e.g. a refused registration): the
    /// attempt is given back so legitimate use never eats the budget.
    pub fn succeeded(&self, attempt: Attempt) {
        let mut t = self.tables.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((k, opened)) = attempt.user {
            t.users.refund(&k, opened);
        }
        if let Some((k, opened)) = attempt.addr {
            t.addrs.refund(&k, opened);
        }
    }
}
