//! URL helpers shared by every module that compares or shows URLs: one
//! origin type and one redactor.
//!
//! Invariant: a URL shown to a client or written to a log goes through
//! [`redact`] (no userinfo, query or fragment, which may carry credentials
//! or signed tokens).

/// scheme + host + effective port: what "same origin" means for deciding
/// whether a credential may follow a URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UrlOrigin {
    scheme: String,
    host: Option<String>,
    port: Option<u16>,
}

impl UrlOrigin {
    pub(crate) fn of(u: &url::Url) -> Self {
        Self {
            scheme: u.scheme().to_string(),
            host: u.host_str().map(str::to_string),
            port: u.port_or_known_default(),
        }
    }

    pub(crate) fn of_str(raw: &str) -> Option<Self> {
        url::Url::parse(raw).ok().map(|u| Self::of(&u))
    }
}

/// scheme://host[:port]/path with no userinfo, query or fragment (the
/// upstream crate's redactor, the one every log line and error uses).
pub(crate) fn redact(raw: &str) -> String {
    pnpr_upstream::rawurl::redact_raw(raw)
}

/// A request path as the access log shows it: `npm logout` puts the
/// plaintext token in the path (`/-/user/token/<token>`), which must never
/// reach a log line.
pub(crate) fn loggable_path(path: &str) -> String {
    const LOGOUT: &str = "/-/user/token/";
    match path.find(LOGOUT) {
        Some(at) => format!("{}<redacted>", &path[..at + LOGOUT.len()]),
        None => path.to_string(),
    }
}
