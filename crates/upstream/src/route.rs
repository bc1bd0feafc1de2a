//! Route classification and the default-deny fetch allowlist (protocol §5.1–5.2).
//!
//! Invariant: [`RouteTable::classify`] is the single decision point for "may pnpr
//! fetch this URL, and as what". A URL is allowed only when, after the raw checks
//! of [`crate::rawurl`], it lies under pnpr's own public URL, a public route's
//! registry, or a configured uplink's URL, each matched by exact origin
//! (scheme + host + port) and then by path prefix on a segment boundary.
//! Everything else is refused.
//!
//! Precedence is Public, then Own, then the first matching uplink in config order:
//! a public route wins over an uplink for the same origin, so public content is
//! always fetched anonymously.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::time::Duration;

use http::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION};
use url::{Host, Url};

use crate::rawurl::{check_raw, percent_decode_str, redact};
use crate::{Secret, UpstreamError};

/// Longest package glob accepted; npm names are at most 214 characters.
const MAX_GLOB_LEN: usize = 512;

/// One configured uplink, as this crate needs it.
#[derive(Clone)]
pub struct UplinkRoute {
    pub name: String,
    /// Allowlisted prefix; also the only origin its credentials are sent to.
    pub url: Url,
    /// Full `Authorization` header value, e.g. `Bearer x`.
    pub authorization: Option<Secret>,
    /// Extra headers, applied over `authorization` (a configured `Authorization`
    /// header wins, as in the config format).
    pub headers: Vec<(String, Secret)>,
    /// Bound on connect + response headers, and on each idle gap in the body.
    pub timeout: Duration,
    /// Bound on the whole fetch (every redirect hop, headers and the entire
    /// body), so an upstream that keeps dripping bytes cannot hold it forever.
    pub deadline: Duration,
    /// Consecutive failures that open the circuit breaker; 0 disables it.
    pub max_fails: u32,
    /// How long an open breaker refuses requests before a trial is allowed.
    pub fail_timeout: Duration,
}

/// An operator-declared public route: `registry` prefix and/or `package` glob.
#[derive(Clone, Default)]
pub struct PublicRoute {
    pub registry: Option<Url>,
    /// npm-name glob such as `@oss/*`; `*` stays within one `/` segment, `**`
    /// matches anything. Without `registry` the rule applies to every
    /// allowlisted registry.
    pub package: Option<String>,
}

#[derive(Clone)]
pub struct RouteTableInput {
    /// pnpr's own public URL.
    pub own: Url,
    pub uplinks: Vec<UplinkRoute>,
    pub public: Vec<PublicRoute>,
}

/// Debug output goes through [`redact`] so a URL that (wrongly) carries
/// userinfo or a tokenised query never reaches a log via `{:?}`.
struct RedactedUrl<'a>(&'a Url);

impl std::fmt::Debug for RedactedUrl<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&redact(self.0))
    }
}

impl std::fmt::Debug for UplinkRoute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UplinkRoute")
            .field("name", &self.name)
            .field("url", &RedactedUrl(&self.url))
            .field("authorization", &self.authorization)
            .field(
                "headers",
                &self.headers.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .field("timeout", &self.timeout)
            .field("deadline", &self.deadline)
            .field("max_fails", &self.max_fails)
            .field("fail_timeout", &self.fail_timeout)
            .finish()
    }
}

impl std::fmt::Debug for PublicRoute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublicRoute")
            .field("registry", &self.registry.as_ref().map(RedactedUrl))
            .field("package", &self.package)
            .finish()
    }
}

impl std::fmt::Debug for RouteTableInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteTableInput")
            .field("own", &RedactedUrl(&self.own))
            .field("uplinks", &self.uplinks)
            .field("public", &self.public)
            .finish()
    }
}

/// What a URL is, for the purpose of credentials and caching.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RouteKind {
    /// Under pnpr's own public URL (hosted packages and `/~<uplink>/`).
    Own,
    /// Under a public route: fetched anonymously.
    Public,
    /// Under the named uplink's URL.
    Uplink(String),
}

/// An origin plus a path prefix that always ends in `/`.
#[derive(Clone, Debug)]
pub(crate) struct Prefix {
    scheme: String,
    host: String,
    port: u16,
    path: String,
}

impl Prefix {
    fn from_url(url: &Url, what: &str) -> Result<Self, UpstreamError> {
        let invalid = |why: &str| UpstreamError::InvalidRoute {
            reason: format!("{what}: {why}"),
        };
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid("URL scheme must be http or https"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(invalid(
                "URL must not carry inline credentials; use the auth settings",
            ));
        }
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| invalid("URL has no host"))?;
        let port = url
            .port_or_known_default()
            .ok_or_else(|| invalid("URL has no port"))?;
        let mut path = url.path().to_owned();
        if !path.ends_with('/') {
            path.push('/');
        }
        Ok(Self {
            scheme: url.scheme().to_owned(),
            host: host.to_owned(),
            port,
            path,
        })
    }

    pub(crate) fn same_origin(&self, url: &Url) -> bool {
        url.scheme() == self.scheme
            && url.host_str() == Some(self.host.as_str())
            && url.port_or_known_default() == Some(self.port)
    }

    /// The path below this prefix, if `url` is under it.
    fn strip<'u>(&self, url: &'u Url) -> Option<&'u str> {
        if !self.same_origin(url) {
            return None;
        }
        let path = url.path();
        if let Some(rest) = path.strip_prefix(self.path.as_str()) {
            Some(rest)
        } else if path.len() + 1 == self.path.len() && self.path.starts_with(path) {
            // `/npm` under prefix `/npm/`.
            Some("")
        } else {
            None
        }
    }

    fn depth(&self) -> usize {
        self.path.len()
    }
}

/// A validated uplink with its credential headers pre-built (and marked
/// sensitive so `http` never prints them).
pub(crate) struct UplinkEntry {
    pub(crate) name: String,
    pub(crate) prefix: Prefix,
    pub(crate) credentials: HeaderMap,
    pub(crate) timeout: Duration,
    pub(crate) deadline: Duration,
    pub(crate) max_fails: u32,
    pub(crate) fail_timeout: Duration,
}

struct PublicRule {
    registry: Option<Prefix>,
    package: Option<Glob>,
}

/// The compiled allowlist and classifier.
pub struct RouteTable {
    own: Prefix,
    uplinks: Vec<UplinkEntry>,
    public: Vec<PublicRule>,
    /// IPs written literally as hosts in configured URLs: the operator named them,
    /// so the connect-time guard lets them through even when private.
    literal_ips: HashSet<IpAddr>,
    /// `localhost` is itself a configured host, so loopback is fine for it.
    localhost_configured: bool,
}

impl std::fmt::Debug for RouteTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteTable")
            .field("own", &self.own)
            .field(
                "uplinks",
                &self.uplinks.iter().map(|u| &u.name).collect::<Vec<_>>(),
            )
            .field("public_rules", &self.public.len())
            .finish_non_exhaustive()
    }
}

impl RouteTable {
    pub fn new(input: RouteTableInput) -> Result<Self, UpstreamError> {
        let mut literal_ips = HashSet::new();
        let mut localhost_configured = false;
        let mut note_host = |url: &Url| match url.host() {
            Some(Host::Ipv4(ip)) => {
                literal_ips.insert(IpAddr::V4(ip));
            }
            Some(Host::Ipv6(ip)) => {
                literal_ips.insert(IpAddr::V6(ip));
            }
            Some(Host::Domain(d)) if is_localhost(d) => {
                localhost_configured = true;
            }
            Some(Host::Domain(_)) | None => {}
        };

        let own = Prefix::from_url(&input.own, "own public URL")?;
        note_host(&input.own);

        let mut seen = HashMap::new();
        let mut uplinks = Vec::with_capacity(input.uplinks.len());
        for up in input.uplinks {
            let what = format!("uplink {}", up.name);
            if up.name.is_empty() {
                return Err(UpstreamError::InvalidRoute {
                    reason: "uplink with an empty name".to_owned(),
                });
            }
            if seen.insert(up.name.clone(), ()).is_some() {
                return Err(UpstreamError::InvalidRoute {
                    reason: format!("{what} is declared twice"),
                });
            }
            let prefix = Prefix::from_url(&up.url, &what)?;
            note_host(&up.url);
            let credentials = build_credentials(&what, up.authorization.as_ref(), &up.headers)?;
            uplinks.push(UplinkEntry {
                name: up.name,
                prefix,
                credentials,
                timeout: up.timeout,
                deadline: up.deadline,
                max_fails: up.max_fails,
                fail_timeout: up.fail_timeout,
            });
        }

        let mut public = Vec::with_capacity(input.public.len());
        for (i, route) in input.public.into_iter().enumerate() {
            let what = format!("public route #{}", i + 1);
            let registry = match &route.registry {
                Some(url) => {
                    note_host(url);
                    Some(Prefix::from_url(url, &what)?)
                }
                None => None,
            };
            let package = route
                .package
                .as_deref()
                .map(|g| Glob::new(g, &what))
                .transpose()?;
            if registry.is_none() && package.is_none() {
                // Would otherwise match everything: fail closed.
                return Err(UpstreamError::InvalidRoute {
                    reason: format!("{what} names neither a registry nor a package"),
                });
            }
            public.push(PublicRule { registry, package });
        }

        Ok(Self {
            own,
            uplinks,
            public,
            literal_ips,
            localhost_configured,
        })
    }

    /// Raw checks, then allowlist, then classification.
    pub fn classify(&self, url: &str) -> Result<RouteKind, UpstreamError> {
        self.check(url).map(|(_, kind)| kind)
    }

    /// Like [`Self::classify`], also returning the parsed URL.
    pub(crate) fn check(&self, raw: &str) -> Result<(Url, RouteKind), UpstreamError> {
        let url = check_raw(raw)?;
        let kind = self
            .classify_parsed(&url)
            .ok_or_else(|| UpstreamError::NotAllowed { url: redact(&url) })?;
        Ok((url, kind))
    }

    /// Classification of an already raw-checked URL; `None` = not allowlisted.
    pub(crate) fn classify_parsed(&self, url: &Url) -> Option<RouteKind> {
        // The deepest allowlisted prefix the URL sits under decides where the
        // package name starts for registry-less public rules.
        let mut deepest: Option<(&Prefix, &str)> = None;
        for rule in &self.public {
            if let Some(reg) = &rule.registry {
                if let Some(rest) = reg.strip(url) {
                    keep_deepest(&mut deepest, reg, rest);
                    let ok = match &rule.package {
                        None => true,
                        Some(glob) => package_name(rest).is_some_and(|n| glob.matches(&n)),
                    };
                    if ok {
                        return Some(RouteKind::Public);
                    }
                }
            }
        }
        let own = self.own.strip(url);
        if let Some(rest) = own {
            keep_deepest(&mut deepest, &self.own, rest);
        }
        let mut first_uplink = None;
        for u in &self.uplinks {
            if let Some(rest) = u.prefix.strip(url) {
                keep_deepest(&mut deepest, &u.prefix, rest);
                first_uplink.get_or_insert(u);
            }
        }

        if let Some((_, rest)) = deepest {
            let name = package_name(rest);
            let public_by_package = self.public.iter().any(|rule| {
                rule.registry.is_none()
                    && rule
                        .package
                        .as_ref()
                        .is_some_and(|g| name.as_deref().is_some_and(|n| g.matches(n)))
            });
            if public_by_package {
                return Some(RouteKind::Public);
            }
        }

        if own.is_some() {
            return Some(RouteKind::Own);
        }
        first_uplink.map(|u| RouteKind::Uplink(u.name.clone()))
    }

    pub(crate) fn uplink(&self, name: &str) -> Option<&UplinkEntry> {
        self.uplinks.iter().find(|u| u.name == name)
    }

    pub(crate) fn uplinks(&self) -> &[UplinkEntry] {
        &self.uplinks
    }

    pub(crate) fn literal_ips(&self) -> &HashSet<IpAddr> {
        &self.literal_ips
    }

    pub(crate) fn localhost_configured(&self) -> bool {
        self.localhost_configured
    }
}

fn keep_deepest<'a>(cur: &mut Option<(&'a Prefix, &'a str)>, p: &'a Prefix, rest: &'a str) {
    if cur.is_none_or(|(d, _)| p.depth() > d.depth()) {
        *cur = Some((p, rest));
    }
}

pub(crate) fn is_localhost(host: &str) -> bool {
    host.trim_end_matches('.').eq_ignore_ascii_case("localhost")
}

fn build_credentials(
    what: &str,
    authorization: Option<&Secret>,
    headers: &[(String, Secret)],
) -> Result<HeaderMap, UpstreamError> {
    let mut map = HeaderMap::new();
    let value = |v: &Secret, header: &str| {
        let mut hv =
            HeaderValue::from_str(v.expose()).map_err(|_| UpstreamError::InvalidRoute {
                // The value itself is a secret: name only the header.
                reason: format!("{what}: the {header} value is not a valid header value"),
            })?;
        hv.set_sensitive(true);
        Ok::<_, UpstreamError>(hv)
    };
    if let Some(auth) = authorization {
        map.insert(AUTHORIZATION, value(auth, "authorization")?);
    }
    for (name, secret) in headers {
        let hn =
            HeaderName::from_bytes(name.as_bytes()).map_err(|_| UpstreamError::InvalidRoute {
                reason: format!("{what}: {name:?} is not a valid header name"),
            })?;
        let hv = value(secret, hn.as_str())?;
        map.insert(hn, hv);
    }
    Ok(map)
}

/// The npm package name at the start of a registry-relative path: `name`,
/// `@scope/name`, or the percent-encoded `@scope%2fname` packument form.
pub(crate) fn package_name(rest: &str) -> Option<String> {
    let mut segments = rest.split('/');
    let first = percent_decode_str(segments.next()?);
    if first.is_empty() {
        return None;
    }
    if first.starts_with('@') {
        if first.contains('/') {
            return Some(first);
        }
        let second = percent_decode_str(segments.next()?);
        if second.is_empty() {
            return None;
        }
        return Some(format!("{first}/{second}"));
    }
    Some(first)
}

/// A package-name glob: `*` and `?` stay within a `/` segment, `**` crosses it.
#[derive(Clone, Debug)]
pub(crate) struct Glob {
    tokens: Vec<GlobToken>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum GlobToken {
    Lit(char),
    Any,
    Star,
    DoubleStar,
}

impl Glob {
    pub(crate) fn new(pattern: &str, what: &str) -> Result<Self, UpstreamError> {
        if pattern.is_empty() || pattern.len() > MAX_GLOB_LEN {
            return Err(UpstreamError::InvalidRoute {
                reason: format!("{what}: package glob must be 1..={MAX_GLOB_LEN} characters"),
            });
        }
        if pattern.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(UpstreamError::InvalidRoute {
                reason: format!("{what}: package glob contains whitespace"),
            });
        }
        let mut tokens = Vec::new();
        let mut chars = pattern.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '*' if chars.peek() == Some(&'*') => {
                    chars.next();
                    while chars.peek() == Some(&'*') {
                        chars.next();
                    }
                    tokens.push(GlobToken::DoubleStar);
                }
                '*' => tokens.push(GlobToken::Star),
                '?' => tokens.push(GlobToken::Any),
                c => tokens.push(GlobToken::Lit(c)),
            }
        }
        Ok(Self { tokens })
    }

    /// Dynamic programming over (token, char): linear memory, no backtracking
    /// blow-up on hostile names.
    pub(crate) fn matches(&self, name: &str) -> bool {
        let text: Vec<char> = name.chars().collect();
        // reach[j] = tokens[..i] can match text[..j]
        let mut reach = vec![false; text.len() + 1];
        reach[0] = true;
        for tok in &self.tokens {
            let mut next = vec![false; text.len() + 1];
            match tok {
                GlobToken::Lit(c) => {
                    for j in 0..text.len() {
                        next[j + 1] = reach[j] && text[j] == *c;
                    }
                }
                GlobToken::Any => {
                    for j in 0..text.len() {
                        next[j + 1] = reach[j] && text[j] != '/';
                    }
                }
                GlobToken::Star | GlobToken::DoubleStar => {
                    let crosses = *tok == GlobToken::DoubleStar;
                    next[0] = reach[0];
                    for j in 0..text.len() {
                        next[j + 1] = reach[j + 1] || (next[j] && (crosses || text[j] != '/'));
                    }
                }
            }
            reach = next;
        }
        reach[text.len()]
    }
}

#[cfg(test)]
mod tests;
