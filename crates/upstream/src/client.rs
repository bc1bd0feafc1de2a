//! [`UpstreamClient`]: the only way pnpr sends an HTTP request.
//!
//! Invariants guarded here:
//! * every hop (the first URL and each redirect target) passes the raw checks
//!   and the allowlist before anything is sent; a refused hop sends nothing;
//! * an uplink's credentials are attached only when the hop's origin (scheme,
//!   host, port) equals that uplink's URL origin, only for the uplink named in
//!   [`FetchRequest::via`], and never for a hop classified Public;
//! * a caller-forwarded credential ([`UpstreamClient::fetch_forwarded`])
//!   is attached only to a hop classified Public that lies on the origin of
//!   the first URL, is not pnpr's own origin (fail closed when that origin
//!   was never declared with [`UpstreamClient::with_own_url`]) and is not an
//!   uplink's origin, so it never replaces a server-held credential and a
//!   redirect to another origin drops it; no other source of credentials
//!   exists;
//! * IP-literal hosts are checked by the connect-time guard before sending, and
//!   names are checked inside the resolver reqwest connects with;
//! * no error or log line carries userinfo, a query string or a credential;
//! * at most [`MAX_IN_FLIGHT_PER_UPLINK`] fetches per uplink are on the wire
//!   (headers or body) at once; the rest queue for a slot before their
//!   timeout and deadline start, so a burst of misses never reaches an uplink
//!   as a storm of connections;
//! * only evidence that the uplink is unreachable counts against its breaker
//!   (see [`verdict`]);
//! * a GET whose reused keep-alive connection the upstream closed under it
//!   (the request failed before any response head, not by timeout or at
//!   connect) is sent once more on a fresh connection; a POST never is.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_util::stream::{self, BoxStream, StreamExt};
use http::header::{
    HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, ETAG, IF_MODIFIED_SINCE,
    IF_NONE_MATCH, LAST_MODIFIED, LOCATION,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use url::{Host, Url};

use crate::breaker::{Breaker, Outcome};
use crate::guard::{Guard, GuardRefusal, GuardedResolver};
use crate::rawurl::{check_raw, check_raw_location, redact, redact_origin, redact_raw};
use crate::route::UplinkEntry;
use crate::{GuardPolicy, NameResolver, RouteKind, RouteTable, Secret, UpstreamError};

/// Redirect hops followed before giving up.
pub const MAX_REDIRECTS: usize = 5;

/// What a request carries beyond its [`FetchRequest`].
#[derive(Clone, Copy, Default)]
struct Extras<'a> {
    /// A caller's `Authorization` for a `routes.public` registry.
    forwarded: Option<&'a Secret>,
    /// A JSON body: the request is a POST.
    json: Option<&'a Bytes>,
}

/// Fetches one uplink serves at once (headers and body). Like Verdaccio's
/// per-uplink socket bound: a client's parallel tarball fetches (pnpm 12
/// asks for dozens at a time, per client) queue here instead of opening
/// a connection each.
pub const MAX_IN_FLIGHT_PER_UPLINK: usize = 32;

/// How long an idle pooled connection is kept. Below the 5 s keep-alive
/// timeout of Node's HTTP server (Verdaccio and most JavaScript registries),
/// so pnpr rarely picks a connection the uplink is about to close.
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(4);

/// Timeout for requests without `via` (no uplink-specific setting applies).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Whole-fetch deadline for requests without `via`.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(300);

const USER_AGENT: &str = concat!("pnpr/", env!("CARGO_PKG_VERSION"));

/// One GET to perform.
#[derive(Clone, Default)]
pub struct FetchRequest {
    /// Checked as a raw string before it is parsed.
    pub url: String,
    /// The uplink whose credentials MAY be attached (on an origin match) and
    /// whose breaker and timeout apply.
    pub via: Option<String>,
    pub accept: Option<String>,
    pub if_none_match: Option<String>,
    pub if_modified_since: Option<String>,
}

impl std::fmt::Debug for FetchRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The raw URL may carry userinfo or a tokenised query.
        f.debug_struct("FetchRequest")
            .field("url", &redact_raw(&self.url))
            .field("via", &self.via)
            .field("accept", &self.accept)
            .field("if_none_match", &self.if_none_match)
            .field("if_modified_since", &self.if_modified_since)
            .finish()
    }
}

/// A response whose headers arrived; the body is still on the wire.
pub struct FetchResponse {
    pub status: u16,
    /// The URL after redirects.
    pub final_url: Url,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub content_length: Option<u64>,
    pub content_type: Option<String>,
    /// How the final URL was classified.
    pub route: RouteKind,
    body: reqwest::Response,
    idle_timeout: Duration,
    /// When the whole fetch must be over, body included.
    deadline_at: tokio::time::Instant,
    deadline: Duration,
    /// The uplink slot this fetch holds until its body is read or dropped.
    slot: Option<OwnedSemaphorePermit>,
}

impl std::fmt::Debug for FetchResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FetchResponse")
            .field("status", &self.status)
            .field("final_url", &redact(&self.final_url))
            .field("etag", &self.etag)
            .field("content_length", &self.content_length)
            .field("content_type", &self.content_type)
            .field("route", &self.route)
            .finish_non_exhaustive()
    }
}

impl FetchResponse {
    /// The final hop's answer, its headers read, its body still unread.
    fn of(
        resp: reqwest::Response,
        final_url: Url,
        route: RouteKind,
        idle_timeout: Duration,
        (deadline_at, deadline): (tokio::time::Instant, Duration),
    ) -> FetchResponse {
        let header = |name| {
            resp.headers()
                .get(name)
                .and_then(|v: &HeaderValue| v.to_str().ok())
                .map(str::to_owned)
        };
        FetchResponse {
            status: resp.status().as_u16(),
            etag: header(ETAG),
            last_modified: header(LAST_MODIFIED),
            content_type: header(CONTENT_TYPE),
            content_length: resp.content_length(),
            final_url,
            route,
            body: resp,
            idle_timeout,
            deadline_at,
            deadline,
            slot: None,
        }
    }

    /// The (gzip-decoded) body. Each gap between chunks is bounded by the idle
    /// timeout and the whole body by the fetch's deadline, so neither a stalled
    /// nor a dripping upstream can hold a task forever.
    pub fn into_stream(self) -> BoxStream<'static, Result<Bytes, UpstreamError>> {
        let label = redact(&self.final_url);
        let (idle, deadline_at, deadline) = (self.idle_timeout, self.deadline_at, self.deadline);
        let inner = Box::pin(self.body.bytes_stream());
        // The slot rides with the body: released when the stream ends or is dropped.
        stream::unfold(Some((inner, self.slot)), move |state| {
            let label = label.clone();
            async move {
                let (mut body, slot) = state?;
                let idle_at = tokio::time::Instant::now() + idle;
                match tokio::time::timeout_at(idle_at.min(deadline_at), body.next()).await {
                    Err(_) if idle_at < deadline_at => {
                        Some((Err(UpstreamError::Timeout { url: label }), None))
                    }
                    Err(_) => Some((
                        Err(UpstreamError::DeadlineExceeded {
                            url: label,
                            deadline,
                        }),
                        None,
                    )),
                    Ok(None) => None,
                    Ok(Some(Ok(chunk))) => Some((Ok(chunk), Some((body, slot)))),
                    Ok(Some(Err(e))) => Some((Err(transport_error(&label, e)), None)),
                }
            }
        })
        .boxed()
    }

    /// A typed error for a status the caller cannot use (URL redacted).
    pub fn status_error(&self) -> UpstreamError {
        UpstreamError::BadStatus {
            url: redact(&self.final_url),
            status: self.status,
        }
    }

    /// The error for a body of more than `limit` bytes (URL redacted), for
    /// callers that consume [`FetchResponse::into_stream`] themselves.
    pub fn too_large(&self, limit: u64) -> UpstreamError {
        UpstreamError::BodyTooLarge {
            url: redact(&self.final_url),
            limit,
        }
    }

    /// The whole body, refusing more than `limit` bytes.
    pub async fn bytes(self, limit: u64) -> Result<Bytes, UpstreamError> {
        let label = redact(&self.final_url);
        let too_large = || UpstreamError::BodyTooLarge {
            url: label.clone(),
            limit,
        };
        if self.content_length.is_some_and(|n| n > limit) {
            return Err(too_large());
        }
        let mut buf = BytesMut::new();
        let mut body = self.into_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk?;
            if (buf.len() as u64).saturating_add(chunk.len() as u64) > limit {
                return Err(too_large());
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(buf.freeze())
    }
}

struct UplinkState {
    breaker: Breaker,
    /// [`MAX_IN_FLIGHT_PER_UPLINK`] permits; a fetch holds one to its end.
    slots: Arc<Semaphore>,
}

/// One hop of a fetch: where it goes, how that URL classified, and where
/// the fetch started (forwarded credentials never follow to another origin).
struct Hop<'a> {
    url: &'a Url,
    kind: &'a RouteKind,
    first: &'a Url,
}

/// The outgoing HTTP client (see the module docs for its invariants).
pub struct UpstreamClient {
    table: RouteTable,
    http: reqwest::Client,
    guard: Arc<Guard>,
    breakers: Vec<(String, UplinkState)>,
    /// pnpr's own origin; forwarded credentials never go there.
    own: Option<Url>,
}

impl std::fmt::Debug for UpstreamClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamClient")
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

impl UpstreamClient {
    pub fn new(
        table: RouteTable,
        resolver: Arc<dyn NameResolver>,
        guard: GuardPolicy,
    ) -> Result<Self, UpstreamError> {
        let guard = Arc::new(Guard::new(
            guard,
            table.literal_ips().clone(),
            table.localhost_configured(),
        ));
        let http = reqwest::Client::builder()
            // Redirects are followed by hand so each hop is re-checked.
            .redirect(reqwest::redirect::Policy::none())
            // A proxy would connect on our behalf, bypassing the guard; it would
            // also mean reading process env, which library code must not do.
            .no_proxy()
            .dns_resolver(Arc::new(GuardedResolver {
                inner: resolver,
                guard: Arc::clone(&guard),
            }))
            .user_agent(USER_AGENT)
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .build()
            .map_err(|e| UpstreamError::Client {
                message: e.to_string(),
            })?;
        let breakers = table
            .uplinks()
            .iter()
            .map(|u| {
                (
                    u.name.clone(),
                    UplinkState {
                        breaker: Breaker::new(u.max_fails, u.fail_timeout),
                        slots: Arc::new(Semaphore::new(MAX_IN_FLIGHT_PER_UPLINK)),
                    },
                )
            })
            .collect();
        Ok(Self {
            table,
            http,
            guard,
            breakers,
            own: None,
        })
    }

    /// Declares pnpr's own URL. Until this is called no forwarded credential
    /// is ever attached, because the client could not tell a hop to pnpr
    /// itself apart from one to a public registry.
    pub fn with_own_url(mut self, own: &Url) -> Self {
        self.own = Some(own.clone());
        self
    }

    /// Whether a forwarded credential may ride on this hop (module docs).
    fn may_forward(&self, first: &Url, url: &Url, kind: &RouteKind) -> bool {
        let origin = |u: &Url| {
            (
                u.scheme().to_owned(),
                u.host_str().map(str::to_owned),
                u.port_or_known_default(),
            )
        };
        *kind == RouteKind::Public
            && origin(first) == origin(url)
            && self
                .own
                .as_ref()
                .is_some_and(|own| origin(own) != origin(url))
            && !self
                .table
                .uplinks()
                .iter()
                .any(|u| u.prefix.same_origin(url))
    }

    pub fn table(&self) -> &RouteTable {
        &self.table
    }

    /// Whether a request `via` this uplink would be let through now (closed or
    /// half-open breaker). Unknown uplinks are never available.
    pub fn uplink_available(&self, name: &str) -> bool {
        self.breaker(name)
            .is_some_and(|b| b.available(Instant::now()))
    }

    fn breaker(&self, name: &str) -> Option<&Breaker> {
        self.state(name).map(|s| &s.breaker)
    }

    fn state(&self, name: &str) -> Option<&UplinkState> {
        self.breakers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, s)| s)
    }

    /// Waits (at most the uplink's deadline) for one of its fetch slots.
    /// An open breaker refuses at once rather than queueing; waiting says
    /// nothing about the uplink, so it never reaches the breaker.
    async fn slot(
        &self,
        up: &UplinkEntry,
        url: &str,
    ) -> Result<OwnedSemaphorePermit, UpstreamError> {
        let unknown = || UpstreamError::UnknownUplink {
            name: up.name.clone(),
        };
        let state = self.state(&up.name).ok_or_else(unknown)?;
        if !state.breaker.available(Instant::now()) {
            return Err(UpstreamError::UplinkDown {
                name: up.name.clone(),
            });
        }
        let slots = Arc::clone(&state.slots);
        match tokio::time::timeout(up.deadline, slots.acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            // The semaphore is never closed; treat it like a full queue.
            Ok(Err(_)) | Err(_) => Err(UpstreamError::DeadlineExceeded {
                url: redact_raw(url),
                deadline: up.deadline,
            }),
        }
    }

    /// GET `req.url`, following up to [`MAX_REDIRECTS`] checked redirects.
    ///
    /// Non-2xx statuses are returned as responses, not errors (except that a 5xx
    /// counts as a failure for the uplink's breaker).
    pub async fn fetch(&self, req: FetchRequest) -> Result<FetchResponse, UpstreamError> {
        self.fetch_inner(req, Extras::default()).await
    }

    /// POST `json` to `req.url` (audit requests): the same allowlist,
    /// connect guard, credential rule (the `via` uplink's credential on an
    /// origin match only), breaker and deadlines as [`Self::fetch`]; every
    /// redirect hop is re-checked and re-posted.
    pub async fn post_json(
        &self,
        req: FetchRequest,
        json: Bytes,
    ) -> Result<FetchResponse, UpstreamError> {
        let extras = Extras {
            forwarded: None,
            json: Some(&json),
        };
        self.fetch_inner(req, extras).await
    }

    /// Like [`Self::fetch`], offering a complete `Authorization` value the
    /// caller of pnpr forwarded for a `routes.public` registry. It rides only
    /// on hops the module docs allow; elsewhere the request goes out exactly
    /// as [`Self::fetch`] would send it. (A separate entry point rather than
    /// a [`FetchRequest`] field keeps every existing request literal valid.)
    pub async fn fetch_forwarded(
        &self,
        req: FetchRequest,
        authorization: Secret,
    ) -> Result<FetchResponse, UpstreamError> {
        let extras = Extras {
            forwarded: Some(&authorization),
            json: None,
        };
        self.fetch_inner(req, extras).await
    }

    async fn fetch_inner(
        &self,
        req: FetchRequest,
        extras: Extras<'_>,
    ) -> Result<FetchResponse, UpstreamError> {
        let (url, kind) = self.table.check(&req.url)?;
        let uplink = match req.via.as_deref() {
            None => None,
            Some(name) => {
                Some(
                    self.table
                        .uplink(name)
                        .ok_or_else(|| UpstreamError::UnknownUplink {
                            name: name.to_owned(),
                        })?,
                )
            }
        };
        let slot = match uplink {
            None => None,
            Some(up) => Some(self.slot(up, &req.url).await?),
        };
        let permit = match uplink {
            None => None,
            Some(up) => {
                let breaker =
                    self.breaker(&up.name)
                        .ok_or_else(|| UpstreamError::UnknownUplink {
                            name: up.name.clone(),
                        })?;
                let permit = breaker.try_acquire(Instant::now()).ok_or_else(|| {
                    UpstreamError::UplinkDown {
                        name: up.name.clone(),
                    }
                })?;
                Some(permit)
            }
        };
        let deadline = uplink.map_or(DEFAULT_DEADLINE, |u| u.deadline);
        let deadline_at = tokio::time::Instant::now() + deadline;
        let label = redact(&url);
        let mut result = match tokio::time::timeout_at(
            deadline_at,
            self.follow(url, kind, uplink, &req, extras, (deadline_at, deadline)),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => Err(UpstreamError::DeadlineExceeded {
                url: label,
                deadline,
            }),
        };
        if let Some(permit) = permit {
            permit.finish(verdict(&result), Instant::now());
        }
        if let Ok(resp) = &mut result {
            resp.slot = slot;
        }
        result
    }

    async fn follow(
        &self,
        mut url: Url,
        mut kind: RouteKind,
        uplink: Option<&UplinkEntry>,
        req: &FetchRequest,
        extras: Extras<'_>,
        (deadline_at, deadline): (tokio::time::Instant, Duration),
    ) -> Result<FetchResponse, UpstreamError> {
        let forwarded = extras.forwarded;
        let timeout = uplink.map_or(DEFAULT_TIMEOUT, |u| u.timeout);
        let base = base_headers(req)?;
        let first = url.clone();
        let mut hops = 0;
        loop {
            self.check_literal_host(&url)?;
            let hop = Hop {
                url: &url,
                kind: &kind,
                first: &first,
            };
            let (headers, with_credentials, forwarded) =
                self.hop_headers(&base, &hop, uplink, forwarded, req)?;
            let label = redact(&url);
            let resp = self
                .send_hop(&url, headers, extras.json, timeout, &label)
                .await?;
            let status = resp.status().as_u16();
            tracing::debug!(
                method = if extras.json.is_some() { "POST" } else { "GET" },
                url = %label,
                status,
                route = ?kind,
                credentials = with_credentials.is_some(),
                forwarded = forwarded.is_some(),
                "upstream fetch"
            );

            let location = resp.headers().get(LOCATION);
            if matches!(status, 301 | 302 | 303 | 307 | 308) && location.is_some() {
                if hops == MAX_REDIRECTS {
                    return Err(UpstreamError::TooManyRedirects {
                        limit: MAX_REDIRECTS,
                    });
                }
                hops += 1;
                let (next, next_kind) = self.redirect_target(&url, location)?;
                url = next;
                kind = next_kind;
                continue;
            }

            return Ok(FetchResponse::of(
                resp,
                url,
                kind,
                timeout,
                (deadline_at, deadline),
            ));
        }
    }

    /// One request (GET, or POST of `json`) within the idle `timeout`.
    async fn send_hop(
        &self,
        url: &Url,
        headers: HeaderMap,
        json: Option<&Bytes>,
        timeout: Duration,
        label: &str,
    ) -> Result<reqwest::Response, UpstreamError> {
        let Some(json) = json else {
            let get = || self.http.get(url.clone()).headers(headers.clone()).send();
            return match tokio::time::timeout(timeout, get()).await {
                Ok(Err(e)) if closed_under_us(&e) => {
                    tracing::debug!(url = %label, "upstream closed a reused connection; resending");
                    within_result(tokio::time::timeout(timeout, get()).await, label)
                }
                first => within_result(first, label),
            };
        };
        let post = self
            .http
            .post(url.clone())
            .headers(headers)
            .header(CONTENT_TYPE, "application/json")
            .body(json.clone())
            .send();
        within_result(tokio::time::timeout(timeout, post).await, label)
    }

    /// The headers of one hop: the uplink's server-held credentials when the
    /// hop is on its exact origin and not a public route (protocol §5.1,
    /// §5.3), else the caller's forwarded credential where it may follow.
    /// Returns the headers and which of the two was attached.
    fn hop_headers<'a>(
        &self,
        base: &HeaderMap,
        hop: &Hop<'_>,
        uplink: Option<&'a UplinkEntry>,
        forwarded: Option<&'a Secret>,
        req: &FetchRequest,
    ) -> Result<(HeaderMap, Option<&'a UplinkEntry>, Option<&'a Secret>), UpstreamError> {
        let mut headers = base.clone();
        let with_credentials =
            uplink.filter(|u| *hop.kind != RouteKind::Public && u.prefix.same_origin(hop.url));
        if let Some(up) = with_credentials {
            for (name, value) in &up.credentials {
                headers.insert(name.clone(), value.clone());
            }
        }
        let forwarded = forwarded.filter(|_| {
            with_credentials.is_none() && self.may_forward(hop.first, hop.url, hop.kind)
        });
        if let Some(secret) = forwarded {
            let mut hv =
                HeaderValue::from_str(secret.expose()).map_err(|_| UpstreamError::BadUrl {
                    url: redact_raw(&req.url),
                    reason: "invalid forwarded authorization value".to_owned(),
                })?;
            hv.set_sensitive(true);
            headers.insert(AUTHORIZATION, hv);
        }
        Ok((headers, with_credentials, forwarded))
    }

    /// Resolve and vet a `Location`; refusals are reported as scheme+host only.
    fn redirect_target(
        &self,
        current: &Url,
        location: Option<&HeaderValue>,
    ) -> Result<(Url, RouteKind), UpstreamError> {
        let blocked = |target: String, reason| UpstreamError::BlockedRedirect { target, reason };
        let raw = location
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| blocked(redact_origin(current), "malformed Location header"))?;
        let joined = current
            .join(raw)
            .map_err(|_| blocked("<unparsable URL>".to_owned(), "malformed Location header"))?;
        let target = redact_origin(&joined);
        check_raw_location(raw).map_err(|reason| blocked(target.clone(), reason))?;
        let url = check_raw(joined.as_str()).map_err(|e| {
            let reason = match e {
                UpstreamError::InlineCredentials { .. } => "inline credentials in URL",
                UpstreamError::DotSegment { .. } => "`.` or `..` path segment",
                UpstreamError::NotAllowed { .. } => "not on the fetch allowlist",
                _ => "malformed URL",
            };
            blocked(target.clone(), reason)
        })?;
        let kind = self.table.classify_parsed(&url).ok_or_else(|| {
            blocked(
                target.clone(),
                "not on the fetch allowlist; declare its registry as an uplink or a public route",
            )
        })?;
        Ok((url, kind))
    }

    /// reqwest skips the resolver for IP literals, so check them here.
    fn check_literal_host(&self, url: &Url) -> Result<(), UpstreamError> {
        let ip = match url.host() {
            Some(Host::Ipv4(ip)) => ip.into(),
            Some(Host::Ipv6(ip)) => ip.into(),
            _ => return Ok(()),
        };
        let host = url.host_str().unwrap_or_default();
        self.guard.check(host, ip).map_err(|reason| {
            UpstreamError::from(GuardRefusal {
                host: host.to_owned(),
                addr: ip,
                reason,
            })
        })
    }
}

/// What one fetch says about its uplink's availability. Only evidence that
/// the uplink cannot be reached counts as a failure: transport errors,
/// timeouts and the gateway statuses 502-504 (nothing answers behind it). Any
/// other 5xx is the uplink's answer about that one resource (a Verdaccio
/// whose own uplink lacks one tarball answers 500 while serving everything
/// else), so it neither counts nor proves health; like a proxy's default
/// `max_fails` accounting, which counts errors and timeouts, not 500s.
fn verdict(result: &Result<FetchResponse, UpstreamError>) -> Outcome {
    match result {
        Ok(resp) => status_verdict(resp.status),
        Err(e) if e.is_transport() => Outcome::Failure,
        Err(_) => Outcome::Neutral,
    }
}

fn status_verdict(status: u16) -> Outcome {
    match status {
        502..=504 => Outcome::Failure,
        500..=599 => Outcome::Neutral,
        _ => Outcome::Success,
    }
}

fn base_headers(req: &FetchRequest) -> Result<HeaderMap, UpstreamError> {
    let mut headers = HeaderMap::new();
    let pairs = [
        (ACCEPT, &req.accept),
        (IF_NONE_MATCH, &req.if_none_match),
        (IF_MODIFIED_SINCE, &req.if_modified_since),
    ];
    for (name, value) in pairs {
        if let Some(v) = value {
            let hv = HeaderValue::from_str(v).map_err(|_| UpstreamError::BadUrl {
                url: redact_raw(&req.url),
                reason: format!("invalid {name} request header value"),
            })?;
            headers.insert(name, hv);
        }
    }
    // `accept-encoding: gzip` is added (and decoded) by reqwest's gzip feature.
    Ok(headers)
}

/// A send that timed out, failed, or got a response head, as the caller sees it.
fn within_result(
    sent: Result<Result<reqwest::Response, reqwest::Error>, tokio::time::error::Elapsed>,
    label: &str,
) -> Result<reqwest::Response, UpstreamError> {
    match sent {
        Err(_) => Err(UpstreamError::Timeout {
            url: label.to_string(),
        }),
        Ok(Err(e)) => Err(send_error(label, e)),
        Ok(Ok(resp)) => Ok(resp),
    }
}

/// The request failed after the connection was up and before a response
/// head arrived, not by timeout: the signature of an upstream closing an
/// idle keep-alive connection just as pnpr reused it. Connect failures
/// (refused, guard refusals) are not this and are never resent.
fn closed_under_us(err: &reqwest::Error) -> bool {
    err.is_request() && !err.is_connect() && !err.is_timeout()
}

/// Map a failed `send`, recovering a guard refusal from the error chain.
fn send_error(label: &str, err: reqwest::Error) -> UpstreamError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&err);
    while let Some(e) = source {
        if let Some(refusal) = e.downcast_ref::<GuardRefusal>() {
            return UpstreamError::BlockedAddress {
                host: refusal.host.clone(),
                addr: refusal.addr,
                reason: refusal.reason,
            };
        }
        source = e.source();
    }
    transport_error(label, err)
}

fn transport_error(label: &str, err: reqwest::Error) -> UpstreamError {
    if err.is_timeout() {
        return UpstreamError::Timeout {
            url: label.to_owned(),
        };
    }
    // reqwest's Display includes the full URL (query and all): strip it.
    let err = err.without_url();
    let mut message = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(e) = source {
        message.push_str(": ");
        message.push_str(&e.to_string());
        source = e.source();
    }
    UpstreamError::Transport {
        url: label.to_owned(),
        message,
    }
}

#[cfg(test)]
mod tests;
