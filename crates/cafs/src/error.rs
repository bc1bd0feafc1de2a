//! The crate's single error type.
//!
//! Invariant: every tarball-related variant names the offending entry path (when
//! there is one) so an operator can tell *which* file of *which* package was
//! refused; paths come from untrusted archives, so they are Debug-escaped and
//! truncated before they reach any message.

/// Everything that can go wrong while storing or reading unpacked packages.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CafsError {
    /// A filesystem operation on the store failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// The index database failed.
    #[error("store index database error: {0}")]
    Db(#[from] rusqlite::Error),
    /// A file digest was not 128 lowercase hex characters.
    #[error("invalid file digest {0:?}: expected 128 lowercase hex characters")]
    InvalidDigest(String),
    /// The digest is well formed but no such file is stored.
    #[error("file {digest} is not in the store")]
    MissingFile { digest: String },
    /// The package integrity is not a usable SRI string.
    #[error("invalid package integrity {0:?}")]
    InvalidIntegrity(String),
    /// The tarball bytes do not hash to the integrity they were added under.
    #[error("tarball does not match its integrity: {0}")]
    IntegrityMismatch(String),
    /// The data does not start with the gzip magic bytes.
    #[error("tarball is not gzip data")]
    NotGzip,
    /// The gzip or tar stream is malformed or truncated.
    #[error("corrupt tarball{}: {message}", at_entry(.entry))]
    CorruptTarball {
        entry: Option<String>,
        message: String,
    },
    /// An entry path is absolute, climbs with `..`, contains NUL, or is empty.
    #[error("tarball entry {path} is refused: {reason}")]
    UnsafePath { path: String, reason: &'static str },
    /// A symlink or hardlink points outside the package.
    #[error("tarball entry {path} links outside the package (target {target})")]
    LinkEscapes { path: String, target: String },
    /// Device, FIFO, sparse and other non-file entries are refused.
    #[error("tarball entry {path} has unsupported type {kind}")]
    UnsupportedEntry { path: String, kind: String },
    /// More entries than [`crate::Limits::max_entries`].
    #[error("tarball has more than {limit} entries{}", at_entry(.entry))]
    TooManyEntries { limit: u64, entry: Option<String> },
    /// More unpacked bytes than [`crate::Limits::max_unpacked_bytes`].
    #[error("tarball unpacks to more than {limit} bytes{}", at_entry(.entry))]
    TooLarge { limit: u64, entry: Option<String> },
    /// One file larger than [`crate::Limits::max_file_bytes`].
    #[error("tarball entry {path} is {size} bytes, more than the limit of {limit}")]
    FileTooLarge { path: String, size: u64, limit: u64 },
    /// The root `package.json` is larger than
    /// [`crate::Limits::max_manifest_bytes`]; it would be held in memory whole.
    #[error("package.json is {size} bytes, more than the limit of {limit}")]
    ManifestTooLarge { size: u64, limit: u64 },
    /// Gzip expansion beyond [`crate::Limits::max_ratio`] (a decompression bomb).
    #[error("tarball expands more than {limit}x when decompressed{}", at_entry(.entry))]
    RatioExceeded { limit: u64, entry: Option<String> },
    /// The package's `package.json` does not parse (pnpm fails the same way).
    #[error("package.json is not valid JSON: {message}")]
    InvalidManifest { message: String },
    /// A stored index row could not be (de)serialised.
    #[error("index row for {integrity} is unreadable: {message}")]
    BadIndexRow { integrity: String, message: String },
    /// A stored member was not re-encoded (RFC 0010 §4b): it is larger than
    /// the whole-buffer cap, does not decode to frames its key names, or the
    /// denser encoding did not decode back to the same bytes. The stored
    /// member is left as it was.
    #[error("member {key} is not recompressed: {reason}")]
    Recompress { key: String, reason: String },
}

impl CafsError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}

fn at_entry(entry: &Option<String>) -> String {
    match entry {
        Some(path) => format!(" at entry {path}"),
        None => String::new(),
    }
}

/// Longest entry path (in chars) quoted in an error; archive paths can be
/// megabytes long via PAX headers and must not bloat logs.
const MAX_QUOTED_PATH_CHARS: usize = 200;

/// Render an untrusted archive path for an error message: Debug-escaped (no
/// control characters reach a terminal or log) and truncated.
pub(crate) fn quote_path(path: &str) -> String {
    if path.chars().count() <= MAX_QUOTED_PATH_CHARS {
        format!("{path:?}")
    } else {
        let head: String = path.chars().take(MAX_QUOTED_PATH_CHARS).collect();
        format!("{head:?}…")
    }
}
