//! The crate's single error type.
//!
//! Invariant: no variant carries a password, token or `Authorization` value;
//! errors from third-party libraries that might echo secrets (bcrypt echoes
//! the hash it failed to parse) are reduced to a fixed message.

use std::path::PathBuf;

/// Everything that can go wrong in `pnpr-auth`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// A `packages:` pattern is not a valid glob; startup should stop.
    #[error("invalid package pattern `{pattern}`: {reason}")]
    InvalidPattern { pattern: String, reason: String },

    /// Reading or writing a file (htpasswd, token database directory) failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The token database failed.
    #[error("token database error: {0}")]
    Database(#[from] rusqlite::Error),

    /// The shared PostgreSQL database failed (its message names no secret).
    #[error("user and token database: {0}")]
    Postgres(#[from] pnpr_pg::PgError),

    /// A stored token key is not a SHA-256 digest.
    #[error("malformed token key")]
    MalformedKey,

    /// Hashing a new password failed (the library's message is dropped).
    #[error("password hashing failed")]
    Hash,

    /// `max_users: -1`: self-registration is switched off.
    #[error("user registration is disabled")]
    RegistrationDisabled,

    /// The htpasswd file already holds `max_users` users.
    #[error("maximum number of users reached")]
    MaxUsersReached,

    /// Registration of a name that is already taken.
    #[error("user already exists")]
    UserExists,

    /// The user name is a configured group or a policy token: registering it
    /// would blur who a rule admits.
    #[error("user name `{0}` is reserved (it names a group or an access-policy token)")]
    ReservedName(String),

    /// The user name breaks npm's naming rules.
    #[error("invalid user name: {0}")]
    InvalidUsername(&'static str),

    /// Registration or login with an empty password.
    #[error("password must not be empty")]
    EmptyPassword,

    /// Wrong password for an existing user.
    #[error("bad username or password")]
    BadCredentials,

    /// A CIDR whitelist entry for a new token does not parse.
    #[error("invalid CIDR `{0}`")]
    InvalidCidr(String),

    /// A name for a new token is too long or holds control characters.
    #[error("token name must be at most 128 characters without control characters")]
    InvalidTokenName,

    /// A token key prefix given to revoke matches several of the user's tokens.
    #[error("token id prefix is ambiguous")]
    AmbiguousToken,
}
