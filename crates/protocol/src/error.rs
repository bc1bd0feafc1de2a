//! The crate's single error type.
//!
//! Invariant: no variant ever carries a request value verbatim except project
//! dirs (paths, never secrets); field errors name the field and the rule, so
//! a misplaced token in a request body cannot leak into an error text or log.

/// Everything that can go wrong while parsing a `/v1/install` request or
/// building its inline response.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InstallError {
    /// The body is not JSON at all. Carries serde_json's syntax message, which
    /// only names a position (line/column), never the offending text.
    #[error("request body is not valid JSON: {0}")]
    InvalidJson(String),
    /// A known field has the wrong JSON type or an unacceptable value.
    #[error("invalid request field `{field}`: {reason}")]
    InvalidField {
        /// Path of the field, e.g. `projects[1].dependencies`.
        field: String,
        /// The rule that was broken.
        reason: &'static str,
    },
    /// A field the client set to a value this server does not implement
    /// (resolve protocol v0): refused rather than silently ignored, since a
    /// dropped setting would yield a lockfile the client did not ask for.
    #[error("request field `{field}` is not supported by this pnpr server: {reason}")]
    Unsupported {
        /// Path of the field, e.g. `catalogs` or `projects[0].foo`.
        field: String,
        /// What is supported instead.
        reason: &'static str,
    },
    /// A project `dir` failed the §1.3 rules (the spec answers this with a
    /// resolution-class error, not a 400; the caller picks the status).
    #[error("invalid project dir {dir:?}: {reason}")]
    InvalidProjectDir {
        /// The dir as sent by the client.
        dir: String,
        /// The rule that was broken.
        reason: &'static str,
    },
    /// Two projects normalise to the same dir.
    #[error("duplicate project dir {0:?}")]
    DuplicateProjectDir(String),
    /// A store index row names a file digest that is not 128 lowercase hex
    /// characters (store corruption).
    #[error("file digest in store index is not 128 lowercase hex characters")]
    InvalidDigest,
    /// The all-zero digest is the file-section terminator and cannot be framed.
    #[error("the all-zero digest is reserved for the end marker")]
    ReservedDigest,
    /// A file (or the header) is larger than a u32 length prefix can express.
    #[error("{what} of {size} bytes is too large for a u32 length prefix")]
    TooLarge {
        /// `"file"` or `"header"`.
        what: &'static str,
        /// The offending size in bytes.
        size: u64,
    },
    /// The compressor failed (writing into memory; practically unreachable).
    #[error("compressing the response failed: {0}")]
    Io(#[from] std::io::Error),
    /// Serialising the header JSON failed (practically unreachable).
    #[error("serialising the response header failed: {0}")]
    Json(serde_json::Error),
}
