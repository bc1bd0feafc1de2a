//! [`UpstreamError`]: the one error enum of this crate.
//!
//! Invariant: no variant ever carries URL userinfo, a query string or a
//! credential. URLs are stored already redacted (see [`crate::rawurl::redact`]),
//! redirect targets only as scheme+host, and transport messages are taken from
//! `reqwest` with the URL stripped.

use std::net::IpAddr;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpstreamError {
    /// Default deny: the URL is under no configured origin (protocol §5.2).
    #[error(
        "fetch of {url} refused: not on the fetch allowlist; declare its registry as an \
         uplink or a public route in the server config"
    )]
    NotAllowed { url: String },

    /// `user:pass@` or `user@` in the URL; credentials only come from uplinks.
    #[error(
        "URL {url} carries inline credentials (userinfo); configure them on an uplink instead"
    )]
    InlineCredentials { url: String },

    /// A `.` or `..` path segment, in plain or percent-encoded form.
    #[error("URL {url} contains a `.` or `..` path segment")]
    DotSegment { url: String },

    #[error("malformed URL {url}: {reason}")]
    BadUrl { url: String, reason: String },

    /// The connect-time guard refused every address of `host`.
    #[error("connection to {host} refused: address {addr} is {reason}")]
    BlockedAddress {
        host: String,
        addr: IpAddr,
        reason: &'static str,
    },

    /// A redirect hop failed the raw checks or the allowlist; `target` is
    /// scheme+host only.
    #[error("redirect to {target} refused: {reason}")]
    BlockedRedirect {
        target: String,
        reason: &'static str,
    },

    #[error("too many redirects (more than {limit})")]
    TooManyRedirects { limit: usize },

    /// Connect, response headers or one gap between body chunks took longer
    /// than the idle timeout.
    #[error("request to {url} timed out")]
    Timeout { url: String },

    /// The whole fetch (redirects, headers and body) outlived its deadline.
    #[error("request to {url} exceeded its deadline of {deadline:?}")]
    DeadlineExceeded {
        url: String,
        deadline: std::time::Duration,
    },

    /// The upstream answered a status the caller cannot use (e.g. a 5xx).
    #[error("{url} answered status {status}")]
    BadStatus { url: String, status: u16 },

    #[error("request to {url} failed: {message}")]
    Transport { url: String, message: String },

    /// The uplink's circuit breaker is open; nothing was sent.
    #[error("uplink {name} is unavailable (circuit breaker open)")]
    UplinkDown { name: String },

    /// `via` named an uplink that is not configured.
    #[error("unknown uplink {name}")]
    UnknownUplink { name: String },

    #[error("response body from {url} exceeds {limit} bytes")]
    BodyTooLarge { url: String, limit: u64 },

    /// The route table input is unusable (never echoes a credential).
    #[error("invalid upstream route configuration: {reason}")]
    InvalidRoute { reason: String },

    #[error("cannot build the HTTP client: {message}")]
    Client { message: String },
}

impl UpstreamError {
    /// True when the upstream could not be reached, did not answer in time or
    /// answered with a server error, so a caller may fall back to stale data in
    /// the same namespace (protocol §5.10).
    pub fn is_transport(&self) -> bool {
        matches!(
            self,
            Self::Transport { .. }
                | Self::Timeout { .. }
                | Self::DeadlineExceeded { .. }
                | Self::BadStatus { .. }
                | Self::UplinkDown { .. }
        )
    }

    /// True when the upstream did not answer in time (idle timeout or whole
    /// deadline): a gateway timeout, not a bad answer.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout { .. } | Self::DeadlineExceeded { .. })
    }
}
