//! Prometheus metrics: the process-wide recorder, the per-request counters
//! and histograms, the scrape-time gauges and `GET /-/metrics`.
//!
//! Invariants guarded here:
//! - label values are bounded: route classes and outcomes come from fixed
//!   lists, statuses are HTTP codes, uplinks and stores are config names.
//!   No package name, user name, path or token ever becomes a label;
//! - the exposition is rendered by `metrics-exporter-prometheus`, never by
//!   hand;
//! - `/-/metrics` answers only callers `metrics.access` admits (loopback
//!   peers by default); others get the same 401/403 as a package denial.

use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use pnpr_auth::Identity;

use crate::error::ApiError;
use crate::identity::ClientAddr;
use crate::state::AppState;

/// Latency buckets in seconds: sub-millisecond cache hits up to slow
/// cold installs.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// The process-wide recorder's handle; installs the recorder on first use.
/// Metrics are process-global by nature (the `metrics` facade), so several
/// servers in one process (unit tests) share one exposition.
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets(BUCKETS)
            .unwrap_or_else(|_| PrometheusBuilder::new())
            .build_recorder();
        let handle = recorder.handle();
        // Fails only when another recorder was installed first; this
        // handle then renders nothing, which the scrape test would catch.
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; /-/metrics will be empty");
        }
        describe();
        handle
    })
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        "pnpr_http_requests_total",
        "HTTP requests answered, by route class and status"
    );
    describe_histogram!(
        "pnpr_http_request_duration_seconds",
        Unit::Seconds,
        "Time to the response head, by route class"
    );
    describe_gauge!("pnpr_http_requests_in_flight", "Requests being handled");
    describe_counter!(
        "pnpr_upstream_fetches_total",
        "Upstream fetches, by uplink and outcome"
    );
    describe_histogram!(
        "pnpr_upstream_fetch_duration_seconds",
        Unit::Seconds,
        "Upstream fetch time to the response head, by uplink"
    );
    describe_gauge!(
        "pnpr_uplink_breaker_open",
        "1 while an uplink's circuit breaker refuses requests"
    );
    describe_counter!(
        "pnpr_cache_lookups_total",
        "Tarball and packument cache lookups, by cache and result"
    );
    describe_counter!(
        "pnpr_resolution_cache_lookups_total",
        "Resolution cache lookups, by result"
    );
    describe_gauge!(
        "pnpr_resolution_cache_candidates",
        "Candidates held by the resolution cache"
    );
    describe_gauge!(
        "pnpr_resolution_cache_bytes",
        "Estimated bytes held by the resolution cache"
    );
    describe_counter!("pnpr_install_requests_total", "Accelerated installs served");
    describe_counter!(
        "pnpr_install_packages_total",
        "Packages in the trees of accelerated installs"
    );
    describe_counter!(
        "pnpr_install_files_sent_total",
        "Files sent inline to install clients"
    );
    describe_counter!(
        "pnpr_install_bytes_sent_total",
        "File bytes sent inline to install clients"
    );
    describe_counter!(
        "pnpr_install_files_present_total",
        "Files install clients already had in their store"
    );
    describe_gauge!("pnpr_store_bytes", "Bytes on disk, by store");
    describe_gauge!("pnpr_store_objects", "Objects on disk, by store");
    describe_gauge!("pnpr_cache_budget_bytes", "cache_max_size (0 = unbounded)");
    describe_counter!(
        "pnpr_cache_evictions_total",
        "Cache objects evicted for the disk budget, by store"
    );
    describe_counter!(
        "pnpr_cache_evicted_bytes_total",
        "Bytes evicted for the disk budget, by store"
    );
}

/// Which kind of route a request is; the `class` label.
pub fn route_class(method: &Method, path: &str) -> &'static str {
    const AUTH: &[&str] = &["/-/user/", "/-/whoami", "/-/npm/v1/tokens", "/-/v1/login"];
    if path == "/-/metrics" {
        "metrics"
    } else if path == "/-/pnpr/status" {
        "status"
    } else if matches!(path, "/-/ping" | "/-/health" | "/-/ready") {
        "health"
    } else if AUTH.iter().any(|p| path.starts_with(p)) {
        "auth"
    } else if path.starts_with("/-/npm/v1/security/") {
        "audit"
    } else if path == "/v1/install" {
        "install"
    } else if path == "/-/pnpr" || path.starts_with("/-/pnpr/v0/") {
        "resolve"
    } else if path.starts_with("/-/v1/search") {
        "search"
    } else if path.starts_with("/~") {
        "uplink_endpoint"
    } else if *method == Method::GET || *method == Method::HEAD {
        "registry_read"
    } else if matches!(*method, Method::PUT | Method::DELETE | Method::POST) {
        "hosted_write"
    } else {
        "other"
    }
}

/// Decrements the in-flight gauge however the request ends (also when the
/// client goes away and the future is dropped).
struct InFlight;

impl InFlight {
    fn enter() -> Self {
        gauge!("pnpr_http_requests_in_flight").increment(1.0);
        InFlight
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        gauge!("pnpr_http_requests_in_flight").decrement(1.0);
    }
}

/// Middleware: counts every request by class and status and times it to
/// the response head.
pub async fn track(req: Request, next: Next) -> Response {
    let class = route_class(req.method(), req.uri().path());
    let id = req
        .extensions()
        .get::<crate::request_id::RequestId>()
        .map(|id| id.0.clone());
    let _in_flight = InFlight::enter();
    let started = Instant::now();
    let resp = next.run(req).await;
    crate::recent::request(class, resp.status().as_u16(), id.as_deref());
    let status = resp.status().as_u16().to_string();
    counter!("pnpr_http_requests_total", "class" => class, "status" => status).increment(1);
    histogram!("pnpr_http_request_duration_seconds", "class" => class)
        .record(started.elapsed().as_secs_f64());
    resp
}

/// One upstream fetch's outcome; the `outcome` label.
pub fn upstream_outcome<T>(
    result: &Result<T, pnpr_upstream::UpstreamError>,
    status: impl Fn(&T) -> u16,
) -> &'static str {
    use pnpr_upstream::UpstreamError as E;
    match result {
        Ok(r) => match status(r) {
            200..=299 => "ok",
            304 => "not_modified",
            404 => "not_found",
            400..=499 => "client_error",
            _ => "server_error",
        },
        Err(e) if e.is_timeout() => "timeout",
        Err(E::UplinkDown { .. }) => "breaker_open",
        Err(E::NotAllowed { .. } | E::BlockedAddress { .. } | E::BlockedRedirect { .. }) => {
            "refused"
        }
        Err(_) => "error",
    }
}

/// Records one upstream fetch made through `uplink` (a config name, or
/// `forwarded` for `routes.public` registries).
pub fn record_upstream(uplink: &str, outcome: &'static str, started: Instant) {
    crate::recent::upstream(uplink, outcome);
    let uplink = uplink.to_string();
    counter!("pnpr_upstream_fetches_total", "uplink" => uplink.clone(), "outcome" => outcome)
        .increment(1);
    histogram!("pnpr_upstream_fetch_duration_seconds", "uplink" => uplink)
        .record(started.elapsed().as_secs_f64());
}

/// A tarball or packument cache lookup (`cache` is `tarball` or `packument`;
/// `result` is `hit`, `stale` or `miss`).
pub fn record_cache(cache: &'static str, result: &'static str) {
    counter!("pnpr_cache_lookups_total", "cache" => cache, "result" => result).increment(1);
    crate::recent::lookup(cache, result);
}

/// A resolution cache lookup.
pub fn record_resolution(hit: bool) {
    let result = if hit { "hit" } else { "miss" };
    crate::recent::lookup("resolution", result);
    counter!("pnpr_resolution_cache_lookups_total", "result" => result).increment(1);
}

/// What one accelerated install sent.
pub struct InstallStats {
    pub packages: u64,
    pub files_sent: u64,
    pub bytes_sent: u64,
    pub files_present: u64,
}

pub fn record_install(s: &InstallStats) {
    counter!("pnpr_install_requests_total").increment(1);
    counter!("pnpr_install_packages_total").increment(s.packages);
    counter!("pnpr_install_files_sent_total").increment(s.files_sent);
    counter!("pnpr_install_bytes_sent_total").increment(s.bytes_sent);
    counter!("pnpr_install_files_present_total").increment(s.files_present);
}

/// Whether the caller may read operator views: `$loopback` admits loopback
/// peers, `$all` everyone, `$authenticated` any user; other entries name
/// users or `groups:` groups.
pub(crate) fn admitted(
    state: &AppState,
    who: &Identity,
    peer: Option<IpAddr>,
    list: &[String],
) -> bool {
    let policy = state.policy();
    list.iter().any(|entry| match entry.as_str() {
        pnpr_config::LOOPBACK => peer.is_some_and(|p| p.is_loopback()),
        "$all" => true,
        "$authenticated" => who.user().is_some(),
        name => who
            .user()
            .is_some_and(|u| u == name || policy.in_group(u, name)),
    })
}

/// Refusal for an operator view: 401 when anonymous (a token might help),
/// 403 otherwise.
pub(crate) fn refuse(who: &Identity, what: &str) -> ApiError {
    match who {
        Identity::Anonymous => {
            ApiError::unauthorized(format!("authentication required for {what}"))
        }
        Identity::User(_) => ApiError::forbidden(format!("not allowed to read {what}")),
    }
}

/// `GET /-/metrics`: the Prometheus text exposition.
pub async fn scrape(
    State(state): State<Arc<AppState>>,
    axum::Extension(ClientAddr(peer)): axum::Extension<ClientAddr>,
    headers: HeaderMap,
) -> Response {
    let who = crate::users::identify(&state, &headers);
    let access = &state.live().config.operations.metrics_access;
    if !admitted(&state, &who, peer, access) {
        return refuse(&who, "metrics").into_response();
    }
    refresh_gauges(&state).await;
    let mut resp = handle().render().into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    resp
}

/// Gauges read at scrape time: breakers, the resolution cache, stores.
async fn refresh_gauges(state: &Arc<AppState>) {
    let net = state.net();
    for name in net.uplinks.keys() {
        let open = !net.client.uplink_available(name);
        gauge!("pnpr_uplink_breaker_open", "uplink" => name.clone()).set(f64::from(u8::from(open)));
    }
    let (candidates, bytes) = {
        let cache = state.accelerator.resolutions();
        (cache.len(), cache.bytes())
    };
    gauge!("pnpr_resolution_cache_candidates").set(candidates as f64);
    gauge!("pnpr_resolution_cache_bytes").set(bytes as f64);
    let budget = state.config.operations.cache_max_size.unwrap_or(0);
    gauge!("pnpr_cache_budget_bytes").set(budget as f64);
    for usage in crate::stores::usage(state).await {
        gauge!("pnpr_store_bytes", "store" => usage.store).set(usage.bytes as f64);
        gauge!("pnpr_store_objects", "store" => usage.store).set(usage.objects as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_classes_are_fixed_words() {
        let get = Method::GET;
        assert_eq!(route_class(&get, "/@scope%2fname"), "registry_read");
        assert_eq!(route_class(&get, "/~corp/x"), "uplink_endpoint");
        assert_eq!(route_class(&Method::PUT, "/x"), "hosted_write");
        assert_eq!(route_class(&Method::POST, "/v1/install"), "install");
        assert_eq!(route_class(&Method::POST, "/-/pnpr/v0/resolve"), "resolve");
        assert_eq!(
            route_class(&Method::PUT, "/-/user/org.couchdb.user:a"),
            "auth"
        );
        assert_eq!(route_class(&get, "/-/metrics"), "metrics");
    }
}
