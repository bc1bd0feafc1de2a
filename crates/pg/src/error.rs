//! The crate's one error type.
//!
//! Invariant: no variant carries the password or the connection URL; the
//! client library's own messages are kept (they name the server's reason,
//! never the credential).

/// Everything that can go wrong talking to PostgreSQL.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PgError {
    /// The first connection could not be made (address, user or database
    /// wrong, server down, password refused).
    #[error("cannot connect to PostgreSQL at {host}:{port} (database `{dbname}`, user `{user}`): {reason}")]
    Connect {
        host: String,
        port: u16,
        dbname: String,
        user: String,
        reason: String,
    },

    /// A statement failed.
    #[error("PostgreSQL: {0}")]
    Query(String),

    /// A migration failed; nothing of that version was applied.
    #[error("PostgreSQL migration {component} v{version} failed: {reason}")]
    Migration {
        component: &'static str,
        version: i32,
        reason: String,
    },

    /// The pool's threads are gone (the process is shutting down).
    #[error("PostgreSQL pool stopped")]
    Stopped,
}

/// The client library's message, with the server's own wording when it
/// answered (its `Display` alone says only "db error").
pub(crate) fn describe(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => e.to_string(),
    }
}

impl From<postgres::Error> for PgError {
    fn from(e: postgres::Error) -> Self {
        PgError::Query(describe(&e))
    }
}
