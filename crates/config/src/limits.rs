//! `limits:` — the budgets that bound what an outsider can make the server
//! spend (memory, concurrency, time). Every key has a safe default, and a
//! typo inside `limits:` is an error: a budget that silently fell back to
//! "unbounded" would be a hole.

use std::time::Duration;

/// Resource budgets (`limits:` in the config file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest `/v1/install` (and resolve) request body in bytes.
    pub install_body: u64,
    /// Installs processed at once; further requests wait (their bodies
    /// unread) for at most `install_queue_timeout`, then get 503.
    pub installs_in_flight: usize,
    pub install_queue_timeout: Duration,
    /// Most `storeIntegrities` entries accepted in one request.
    pub store_integrities: usize,
    /// Memory budget of the resolution cache, in bytes (estimated).
    pub resolution_cache: u64,
    /// Time a client has to deliver a whole request body.
    pub body_timeout: Duration,
    /// Time a client has to deliver its request headers.
    pub header_timeout: Duration,
    /// On shutdown, how long in-flight requests may still run before every
    /// remaining connection is closed.
    pub shutdown_grace: Duration,
    /// Largest packument accepted from an uplink, in bytes (502 beyond).
    pub packument_max: u64,
    /// Packuments up to this size are held, parsed and rendered in memory;
    /// larger ones stream to a body file and are rendered from it version
    /// by version, so memory does not grow with the document.
    pub packument_in_memory: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            install_body: 8 * 1024 * 1024,
            installs_in_flight: 4,
            install_queue_timeout: Duration::from_secs(60),
            store_integrities: 200_000,
            resolution_cache: 256 * 1024 * 1024,
            body_timeout: Duration::from_secs(60),
            header_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(10),
            packument_max: 1024 * 1024 * 1024,
            packument_in_memory: 8 * 1024 * 1024,
        }
    }
}
