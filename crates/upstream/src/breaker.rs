//! Per-uplink circuit breaker.
//!
//! Invariant: while an uplink's breaker is open, no request for it reaches the
//! network; after `fail_timeout` exactly one trial request is let through
//! (half-open), and only its success closes the breaker again. A trial that is
//! abandoned (future dropped) or ends without a verdict frees the slot so the
//! breaker cannot wedge half-open forever.

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The uplink answered (any status below 500).
    Success,
    /// Transport error, timeout or 5xx.
    Failure,
    /// Refused locally (allowlist, guard): says nothing about the uplink.
    Neutral,
}

#[derive(Debug, Default)]
struct State {
    consecutive_fails: u32,
    open_until: Option<Instant>,
    trial_in_flight: bool,
}

#[derive(Debug)]
pub(crate) struct Breaker {
    /// 0 disables the breaker.
    max_fails: u32,
    fail_timeout: Duration,
    state: Mutex<State>,
}

impl Breaker {
    pub(crate) fn new(max_fails: u32, fail_timeout: Duration) -> Self {
        Self {
            max_fails,
            fail_timeout,
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is a few plain fields; a panic elsewhere cannot leave it
        // inconsistent, so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Admit a request, or `None` when the breaker is open.
    pub(crate) fn try_acquire(&self, now: Instant) -> Option<Permit<'_>> {
        let mut st = self.lock();
        let trial = match st.open_until {
            None => false,
            Some(until) if now < until => return None,
            Some(_) if st.trial_in_flight => return None,
            Some(_) => {
                st.trial_in_flight = true;
                true
            }
        };
        Some(Permit {
            breaker: self,
            trial,
            finished: false,
        })
    }

    /// Whether a request would currently be admitted.
    pub(crate) fn available(&self, now: Instant) -> bool {
        let st = self.lock();
        match st.open_until {
            None => true,
            Some(until) => now >= until && !st.trial_in_flight,
        }
    }

    fn record(&self, trial: bool, outcome: Outcome, now: Instant) {
        let mut st = self.lock();
        if trial {
            st.trial_in_flight = false;
        }
        match outcome {
            Outcome::Success => {
                st.consecutive_fails = 0;
                st.open_until = None;
            }
            Outcome::Failure => {
                st.consecutive_fails = st.consecutive_fails.saturating_add(1);
                let trip = self.max_fails > 0
                    && (trial || st.open_until.is_some() || st.consecutive_fails >= self.max_fails);
                if trip {
                    st.open_until = Some(now + self.fail_timeout);
                }
            }
            Outcome::Neutral => {}
        }
    }
}

/// One admitted request; report its outcome with [`Permit::finish`].
pub(crate) struct Permit<'a> {
    breaker: &'a Breaker,
    trial: bool,
    finished: bool,
}

impl Permit<'_> {
    pub(crate) fn finish(mut self, outcome: Outcome, now: Instant) {
        self.finished = true;
        self.breaker.record(self.trial, outcome, now);
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.finished && self.trial {
            self.breaker.lock().trial_in_flight = false;
        }
    }
}

#[cfg(test)]
mod tests;
