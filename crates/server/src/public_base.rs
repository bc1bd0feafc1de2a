//! The public base URL of one request: what every URL pnpr writes into a
//! response (packument tarballs, `/~<uplink>/` rewrites, lockfile tarball
//! URLs, v0 `package` frames) starts with.
//!
//! With `public_url` configured that is always it. Without it, the URL is
//! derived per request from the `Host` header (or the HTTP/2 authority), so
//! a client that reaches the server as `localhost` gets `localhost` URLs and
//! its `.npmrc` token (keyed by host) matches them; a request without a
//! usable host gets the bound address.
//!
//! Invariants guarded here:
//! - a derived base is always `http(s)://<host>[:<port>]/`: the host value is
//!   validated as an origin (no userinfo, path, query or odd characters)
//!   before it can reach a URL, so a header cannot inject a path or a second
//!   authority;
//! - `Forwarded` (RFC 7239; its first element) and `X-Forwarded-Host` /
//!   `X-Forwarded-Proto` are read only when the peer address is in
//!   `network.trusted_proxies`; from any other peer they are ignored (a
//!   client must not pick the URLs another proxy layer sees). `Forwarded`
//!   wins over the `X-` pair when both name a value;
//! - the base is carried as a request extension ([`PublicBase`]) set before
//!   routing, and caches of rendered bodies key by it, so one host's URLs
//!   are never served to another.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, Uri};
use axum::middleware::Next;
use axum::response::Response;
use url::Url;

use crate::state::AppState;

mod forwarded;

/// The public base URL of the request being served (always ends in `/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicBase(Arc<Url>);

impl PublicBase {
    pub fn url(&self) -> &Url {
        &self.0
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The base of a request that carries none (a handler driven without
    /// the middleware): the configured or bound URL.
    pub fn fallback(state: &AppState) -> Self {
        Self(Arc::new(state.public_url.clone()))
    }

    /// The request's base as set by [`layer`], or [`PublicBase::fallback`].
    pub fn of(state: &AppState, extensions: &http::Extensions) -> Self {
        extensions
            .get::<PublicBase>()
            .cloned()
            .unwrap_or_else(|| Self::fallback(state))
    }
}

/// Handlers take the base as an extractor.
impl axum::extract::FromRequestParts<Arc<AppState>> for PublicBase {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self::of(state, &parts.extensions))
    }
}

/// Middleware (outermost, before routing): derives the request's base once.
pub async fn layer(State(state): State<Arc<AppState>>, mut req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let base = derive(&state, req.headers(), req.uri(), peer);
    req.extensions_mut().insert(base);
    next.run(req).await
}

/// The base for one request: `public_url` when configured, otherwise the
/// forwarded host/proto from a trusted proxy, the `Host` header, the HTTP/2
/// authority, and finally the bound address.
pub fn derive(
    state: &AppState,
    headers: &HeaderMap,
    uri: &Uri,
    peer: Option<IpAddr>,
) -> PublicBase {
    if state.config.public_url.is_some() {
        return PublicBase::fallback(state);
    }
    let trusted = peer.is_some_and(|ip| {
        let ip = canonical(ip);
        state
            .live()
            .config
            .network
            .trusted_proxies
            .iter()
            .any(|net| net.contains(&ip))
    });
    let (forwarded_host, scheme) = if trusted {
        proxy_view(headers)
    } else {
        (None, None)
    };
    let scheme = scheme
        .filter(|p| p == "http" || p == "https")
        .unwrap_or_else(|| "http".to_string());
    let host = forwarded_host
        .or_else(|| first_value(headers, header::HOST.as_str()))
        .or_else(|| uri.authority().map(|a| a.as_str().to_string()));
    host.and_then(|h| origin(&scheme, &h))
        .map(|u| PublicBase(Arc::new(u)))
        .unwrap_or_else(|| PublicBase::fallback(state))
}

/// The host and proto a trusted proxy reports: `Forwarded`'s first element
/// where it names them, else `X-Forwarded-Host` / `X-Forwarded-Proto`.
fn proxy_view(headers: &HeaderMap) -> (Option<String>, Option<String>) {
    let rfc = headers
        .get(header::FORWARDED)
        .and_then(|v| v.to_str().ok())
        .and_then(forwarded::first_element)
        .unwrap_or_default();
    let host = rfc
        .host
        .or_else(|| first_value(headers, "x-forwarded-host"));
    let proto = rfc
        .proto
        .or_else(|| first_value(headers, "x-forwarded-proto").map(|p| p.to_ascii_lowercase()));
    (host, proto)
}

/// An IPv4 peer seen through a dual-stack socket (`::ffff:a.b.c.d`) is the
/// IPv4 address the config names.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// The first comma-separated value of a header (a proxy chain lists the
/// original value first), trimmed; `None` when absent or not ASCII.
fn first_value(headers: &HeaderMap, name: &str) -> Option<String> {
    let raw = headers.get(name)?.to_str().ok()?;
    let first = raw.split(',').next()?.trim();
    (!first.is_empty()).then(|| first.to_string())
}

/// `scheme://host[:port]/` when `host` is a bare authority: a DNS name
/// (letters, digits, `-`, `.`), an IPv4 address or a bracketed IPv6
/// address, optionally with a numeric port. Anything else (userinfo, a
/// path, a query, spaces, percent signs) is refused.
pub(crate) fn origin(scheme: &str, host: &str) -> Option<Url> {
    if host.len() > 255 {
        return None;
    }
    let (name, port) = split_port(host)?;
    let name_ok = if let Some(inner) = name.strip_prefix('[') {
        inner
            .strip_suffix(']')
            .is_some_and(|v6| v6.parse::<std::net::Ipv6Addr>().is_ok())
    } else {
        !name.is_empty()
            && !name.starts_with(['.', '-'])
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    };
    if !name_ok {
        return None;
    }
    let authority = match port {
        Some(p) => format!("{}:{p}", name.to_ascii_lowercase()),
        None => name.to_ascii_lowercase(),
    };
    let url = Url::parse(&format!("{scheme}://{authority}/")).ok()?;
    // The parser agrees it is a plain origin (and normalised nothing away).
    (url.path() == "/" && url.username().is_empty() && url.password().is_none()).then_some(url)
}

/// `host[:port]` split at the port colon (after a bracketed IPv6 address);
/// `None` when the port is not a number in 1..=65535.
fn split_port(host: &str) -> Option<(&str, Option<u16>)> {
    let colon = match host.rfind(']') {
        Some(end) => host[end..].find(':').map(|i| end + i),
        None => host.rfind(':'),
    };
    let Some(at) = colon else {
        return Some((host, None));
    };
    let digits = &host[at + 1..];
    if digits.is_empty() || digits.len() > 5 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let port: u16 = digits.parse().ok().filter(|p| *p != 0)?;
    Some((&host[..at], Some(port)))
}

#[cfg(test)]
mod tests {
    use super::origin;

    #[test]
    fn origins_are_bare_authorities() {
        let ok = |h: &str| origin("http", h).map(|u| u.to_string());
        assert_eq!(
            ok("localhost:4873").as_deref(),
            Some("http://localhost:4873/")
        );
        assert_eq!(
            ok("Reg.Example.Internal").as_deref(),
            Some("http://reg.example.internal/")
        );
        assert_eq!(ok("127.0.0.1:80").as_deref(), Some("http://127.0.0.1/"));
        assert_eq!(ok("[::1]:4873").as_deref(), Some("http://[::1]:4873/"));
        for bad in [
            "",
            "a@b",
            "evil.test/path",
            "evil.test?x",
            "evil.test#x",
            "h:0",
            "h:99999",
            "h:",
            "h:12x",
            "ev il",
            "%65vil",
            "[::1",
            "::1",
            "[zz]:1",
            ".evil",
            "a\\b",
        ] {
            assert_eq!(ok(bad), None, "{bad:?}");
        }
    }
}
