//! `pnpr-pg`: the PostgreSQL connection pool and the versioned migration
//! runner every PostgreSQL-backed store shares.
//!
//! Owns the connections to the one database all nodes share. Invariants:
//! * the password lives only in [`ConnectOptions::password`] (a
//!   [`Secret`]) and in the client library's connection config; no error
//!   text or log line made here carries it or the connection URL;
//! * every session (pool or [`ConnectOptions::connect_client`]) is secured
//!   as [`TlsOptions`] says (libpq's `sslmode` levels; see `tls`);
//! * migrations run under one PostgreSQL advisory lock, so nodes starting
//!   together apply each version exactly once, each in its own transaction
//!   together with the row that records it;
//! * the synchronous client runs only on the pool's own threads, never on an
//!   async runtime's worker (it would start a runtime inside a runtime):
//!   callers hand it closures and block on the answer.

mod error;
mod migrate;
mod pool;
mod tls;

pub use error::PgError;
pub use migrate::{migrate, Migration};
pub use pnpr_secret::Secret;
pub use pool::{ConnectOptions, Pool};
/// The client library, re-exported so stores use the very version the pool
/// runs (its `Client`, `Row` and `Transaction` cross this seam).
pub use postgres;
pub use tls::{SslMode, TlsOptions};
