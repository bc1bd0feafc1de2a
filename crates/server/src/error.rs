//! The one place where errors become HTTP responses.
//!
//! Every handler returns [`ApiError`]; its body is npm's `{"error": "..."}`.
//! Messages shown to clients never carry upstream URLs, userinfo or tokens:
//! upstream failures name the uplink, and the internal cause goes only to the
//! log, already redacted by the crate that produced it.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An error answered to a client.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// Seconds for a `Retry-After` header (429/503).
    pub retry_after: Option<u64>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.status.as_u16(), self.message)
    }
}

/// So a typed `ApiError` can travel through other crates' error seams (the
/// resolver's metadata source) and be recovered by downcasting.
impl std::error::Error for ApiError {}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            retry_after: None,
        }
    }
    /// Adds a `Retry-After` header to the answer.
    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }
    pub fn not_found(what: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::NOT_FOUND, format!("not found: {what}"))
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
    }
    pub fn internal(context: &str, cause: impl std::fmt::Display) -> Self {
        tracing::error!(%cause, "{context}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("internal error: {context}"),
        )
    }
    /// Access denial for a package, 401 for anonymous callers and 403 otherwise.
    pub fn denied(denial: pnpr_auth::Denial, what: &str) -> Self {
        match denial {
            pnpr_auth::Denial::Unauthenticated => {
                Self::unauthorized(format!("authentication required to access {what}"))
            }
            _ => Self::forbidden(format!("access denied to {what}")),
        }
    }
    /// An upstream failure, named by uplink; the cause is logged, not shown.
    pub fn upstream(uplink: &str, err: &pnpr_upstream::UpstreamError) -> Self {
        use pnpr_upstream::UpstreamError as E;
        tracing::warn!(uplink, error = %err, "upstream fetch failed");
        let status = match err {
            E::NotAllowed { .. } | E::BlockedAddress { .. } | E::BlockedRedirect { .. } => {
                StatusCode::FORBIDDEN
            }
            // 504: the uplink did not answer (or finish answering) in time.
            e if e.is_timeout() => StatusCode::GATEWAY_TIMEOUT,
            // 503 only when pnpr itself refuses to ask (breaker open).
            E::UplinkDown { .. } => StatusCode::SERVICE_UNAVAILABLE,
            // 502: a bad answer (5xx, cut or oversized body, transport error).
            _ => StatusCode::BAD_GATEWAY,
        };
        // Refusals by the fetch allowlist are the operator's business and are
        // safe to explain (the error text is redacted by construction).
        let message = match status {
            StatusCode::FORBIDDEN => format!("uplink {uplink}: {err}"),
            StatusCode::SERVICE_UNAVAILABLE => format!("uplink {uplink} is unavailable"),
            StatusCode::GATEWAY_TIMEOUT => format!("uplink {uplink} timed out"),
            _ => format!("uplink {uplink} failed"),
        };
        Self::new(status, message)
    }
}

impl ApiError {
    /// A tarball flight that failed before its first byte reached the
    /// client: 404 when the uplink does not have it (a client retries a 502,
    /// never a 404, and an optional platform package it cannot get is then
    /// skipped at once), 504 when the uplink ran out of time, 503 when its
    /// breaker refused to ask, 502 for every bad answer (status, cut body,
    /// integrity).
    pub fn tarball_failure(uplink: &str, err: &pnpr_store::StoreError) -> Self {
        if let pnpr_store::StoreError::Fetch(pnpr_store::FetchFailure::Status {
            status: 404 | 410,
            ..
        }) = err
        {
            tracing::debug!(uplink, error = %err, "tarball not on the uplink");
            return Self::new(
                StatusCode::NOT_FOUND,
                format!("tarball not found on uplink {uplink}"),
            );
        }
        tracing::warn!(uplink, error = %err, "tarball fetch failed");
        let cause = match err {
            pnpr_store::StoreError::Fetch(pnpr_store::FetchFailure::Upstream(cause)) => {
                cause.downcast_ref::<pnpr_upstream::UpstreamError>()
            }
            _ => None,
        };
        match cause {
            Some(e) if e.is_timeout() => Self::new(
                StatusCode::GATEWAY_TIMEOUT,
                format!("tarball from uplink {uplink} timed out"),
            ),
            Some(pnpr_upstream::UpstreamError::UplinkDown { .. }) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("uplink {uplink} is unavailable"),
            ),
            _ => Self::new(
                StatusCode::BAD_GATEWAY,
                format!("tarball from uplink {uplink} could not be fetched or failed verification"),
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error": self.message }).to_string();
        let mut resp = (self.status, body).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"pnpr\""),
            );
        }
        resp
    }
}

/// An [`ApiError`], or a refusal of a password check that carries its own
/// `Retry-After` header: 429 when the login limiter says the caller (user
/// name or address) is over budget, 503 while the password-hash queue is full.
#[derive(Debug)]
pub enum Refusal {
    Api(ApiError),
    Throttled { retry_after_secs: u64 },
    HashQueueFull,
}

impl From<ApiError> for Refusal {
    fn from(e: ApiError) -> Self {
        Refusal::Api(e)
    }
}

impl From<pnpr_auth::AuthError> for Refusal {
    fn from(e: pnpr_auth::AuthError) -> Self {
        Refusal::Api(e.into())
    }
}

impl From<pnpr_auth::Throttled> for Refusal {
    fn from(t: pnpr_auth::Throttled) -> Self {
        Refusal::Throttled {
            retry_after_secs: t.retry_after_secs(),
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let (status, message, retry) = match self {
            Refusal::Api(e) => return e.into_response(),
            Refusal::Throttled { retry_after_secs } => (
                StatusCode::TOO_MANY_REQUESTS,
                "too many failed login attempts; retry later",
                retry_after_secs,
            ),
            Refusal::HashQueueFull => (
                StatusCode::SERVICE_UNAVAILABLE,
                "too many password checks in progress; retry later",
                1,
            ),
        };
        let mut resp = ApiError::new(status, message).into_response();
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(retry));
        resp
    }
}

impl From<pnpr_store::StoreError> for ApiError {
    fn from(e: pnpr_store::StoreError) -> Self {
        Self::internal("storage failure", e)
    }
}

impl From<pnpr_auth::AuthError> for ApiError {
    fn from(e: pnpr_auth::AuthError) -> Self {
        use pnpr_auth::AuthError as A;
        match e {
            A::BadCredentials => Self::unauthorized("bad username or password"),
            A::UserExists => Self::new(StatusCode::CONFLICT, "user already exists"),
            A::RegistrationDisabled => Self::forbidden("user registration is disabled"),
            A::MaxUsersReached => Self::forbidden("maximum number of users reached"),
            A::InvalidUsername(why) => Self::bad_request(format!("invalid user name: {why}")),
            A::ReservedName(name) => Self::forbidden(format!(
                "user name '{name}' is reserved: it names a group or an access-policy token"
            )),
            A::EmptyPassword => Self::bad_request("password must not be empty"),
            A::InvalidCidr(c) => Self::bad_request(format!("invalid CIDR {c}")),
            A::InvalidTokenName => Self::bad_request(
                "token name must be at most 128 characters without control characters",
            ),
            A::AmbiguousToken => Self::bad_request("token id prefix is ambiguous"),
            other => Self::internal("authentication store failure", other),
        }
    }
}

impl From<pnpr_hosted::HostedError> for ApiError {
    fn from(e: pnpr_hosted::HostedError) -> Self {
        use pnpr_hosted::{HostedError, Permission};
        match e {
            HostedError::BadRequest(m) => ApiError::bad_request(m),
            HostedError::NotFound(m) => ApiError::new(StatusCode::NOT_FOUND, m),
            HostedError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, m),
            e @ HostedError::IntegrityMismatch { .. } => ApiError::bad_request(e.to_string()),
            HostedError::Denied {
                permission,
                package,
                unauthenticated,
            } => {
                let verb = match permission {
                    Permission::Unpublish => "unpublish",
                    _ => "publish",
                };
                if unauthenticated {
                    ApiError::unauthorized(format!("authentication required to {verb} {package}"))
                } else {
                    ApiError::forbidden(format!("not allowed to {verb} {package}"))
                }
            }
            e @ (HostedError::NotOwner { .. }
            | HostedError::ClaimNotAdmitted { .. }
            | HostedError::NameServedUpstream { .. }) => ApiError::forbidden(e.to_string()),
            e @ HostedError::UnknownUser(_) => ApiError::bad_request(e.to_string()),
            e @ HostedError::ClaimUnverifiable { .. } => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
            }
            e @ HostedError::Bucket(_) => {
                tracing::warn!(error = %e, "hosted tarball: blob storage failed");
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
            }
            other => ApiError::internal("hosted storage failure", other),
        }
    }
}

impl From<pnpr_packument::PackumentError> for ApiError {
    fn from(e: pnpr_packument::PackumentError) -> Self {
        match e {
            pnpr_packument::PackumentError::BadName(_) => Self::bad_request("invalid package name"),
            other => Self::new(
                StatusCode::BAD_GATEWAY,
                format!("bad upstream document: {other}"),
            ),
        }
    }
}

#[cfg(test)]
mod upstream_status_tests {
    use super::*;
    use pnpr_store::{FetchFailure, StoreError};
    use pnpr_upstream::UpstreamError as E;

    fn status(e: E) -> u16 {
        ApiError::upstream("corp", &e).status.as_u16()
    }

    #[test]
    fn upstream_failures_map_to_gateway_statuses() {
        let url = || "http://corp.test/p".to_string();
        assert_eq!(status(E::Timeout { url: url() }), 504);
        let deadline = std::time::Duration::from_secs(1);
        assert_eq!(
            status(E::DeadlineExceeded {
                url: url(),
                deadline
            }),
            504
        );
        assert_eq!(
            status(E::BadStatus {
                url: url(),
                status: 500
            }),
            502
        );
        let message = "reset".to_string();
        assert_eq!(
            status(E::Transport {
                url: url(),
                message
            }),
            502
        );
        assert_eq!(
            status(E::BodyTooLarge {
                url: url(),
                limit: 1
            }),
            502
        );
        let name = "corp".to_string();
        assert_eq!(status(E::UplinkDown { name }), 503);
        assert_eq!(status(E::NotAllowed { url: url() }), 403);
    }

    #[test]
    fn tarball_failures_keep_the_cause_status() {
        let of = |f: FetchFailure| {
            ApiError::tarball_failure("corp", &StoreError::Fetch(f))
                .status
                .as_u16()
        };
        let url = "http://corp.test/t.tgz".to_string();
        let deadline = std::time::Duration::from_secs(1);
        assert_eq!(
            of(FetchFailure::upstream(E::DeadlineExceeded {
                url,
                deadline
            })),
            504
        );
        let name = "corp".to_string();
        assert_eq!(of(FetchFailure::upstream(E::UplinkDown { name })), 503);
        assert_eq!(of(FetchFailure::status(500, "corp")), 502);
        assert_eq!(of(FetchFailure::status(404, "corp")), 404);
        assert_eq!(of(FetchFailure::status(410, "corp")), 404);
        assert_eq!(of(FetchFailure::TooLarge(1)), 502);
        let mismatch = StoreError::IntegrityMismatch {
            expected: "a".into(),
            actual: "b".into(),
        };
        let e = ApiError::tarball_failure("corp", &mismatch);
        assert_eq!(e.status.as_u16(), 502);
        assert!(!e.message.contains("corp.test"), "{}", e.message);
    }
}
