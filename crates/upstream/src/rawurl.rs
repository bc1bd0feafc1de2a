//! Raw-string URL checks and redaction.
//!
//! `url::Url` normalises `..`, `%2e%2e`, backslashes, tabs and `http:host` forms
//! away while parsing, which would hide exactly what the SSRF boundary must refuse.
//! So [`check_raw`] inspects the string first and only then parses it.
//!
//! Invariant: every URL that reaches the network passed [`check_raw`] (scheme is
//! http/https, no userinfo, no dot segment, no whitespace or control characters),
//! and every URL shown to a human went through [`redact`] / [`redact_raw`] /
//! [`redact_origin`], which never keep userinfo, query or fragment.

use url::Url;

use crate::UpstreamError;

/// Longest URL we accept; far above any registry URL, low enough to bound work.
const MAX_URL_LEN: usize = 8 * 1024;

/// How many rounds of percent-decoding a path segment gets before the dot check;
/// covers double encoding (`%252e`) that a sloppy upstream might decode twice.
const DECODE_ROUNDS: usize = 3;

/// Validate `raw` as a fetchable URL and parse it.
///
/// Non-http(s) schemes are reported as [`UpstreamError::NotAllowed`] because they
/// are off the allowlist by construction (protocol §5.2 rejects `file://`, `git://`
/// and friends with the same 403).
pub fn check_raw(raw: &str) -> Result<Url, UpstreamError> {
    let bad = |reason: &str| UpstreamError::BadUrl {
        url: redact_raw(raw),
        reason: reason.to_owned(),
    };
    if raw.len() > MAX_URL_LEN {
        return Err(bad("URL is too long"));
    }
    if raw.chars().any(|c| c.is_control() || c.is_whitespace()) {
        // The URL parser silently strips these, so they could smuggle `.\t.`.
        return Err(bad("URL contains whitespace or control characters"));
    }
    let Some((scheme, rest)) = raw.split_once("://") else {
        return Err(bad("URL is not absolute (expected scheme://host/...)"));
    };
    if scheme.is_empty()
        || !scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    {
        return Err(bad("invalid scheme"));
    }
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return Err(UpstreamError::NotAllowed {
            url: redact_raw(raw),
        });
    }
    let (authority, after) = split_authority(rest);
    if authority.contains('@') {
        return Err(UpstreamError::InlineCredentials {
            url: redact_raw(raw),
        });
    }
    if authority.is_empty() {
        return Err(bad("URL has no host"));
    }
    if has_dot_segment(path_part(after)) {
        return Err(UpstreamError::DotSegment {
            url: redact_raw(raw),
        });
    }
    let url = Url::parse(raw).map_err(|e| bad(&e.to_string()))?;
    // Defence in depth: the raw checks above should make these unreachable.
    if !url.username().is_empty() || url.password().is_some() {
        return Err(UpstreamError::InlineCredentials {
            url: redact_raw(raw),
        });
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("URL has no host"));
    }
    Ok(url)
}

/// Check the raw form of a redirect `Location` (which may be relative) for dot
/// segments and inline credentials before it is resolved, because `Url::join`
/// normalises `..` away. The resolved URL is checked again with [`check_raw`].
pub fn check_raw_location(location: &str) -> Result<(), &'static str> {
    if location
        .chars()
        .any(|c| c.is_control() || c.is_whitespace())
    {
        return Err("malformed Location header");
    }
    let path_and_more = if let Some((_, rest)) = location.split_once("://") {
        let (authority, after) = split_authority(rest);
        if authority.contains('@') {
            return Err("inline credentials in URL");
        }
        after
    } else if location.starts_with("//")
        || location.starts_with("\\\\")
        || location.starts_with("/\\")
        || location.starts_with("\\/")
    {
        // Scheme-relative: an authority follows.
        let (authority, after) = split_authority(&location[2..]);
        if authority.contains('@') {
            return Err("inline credentials in URL");
        }
        after
    } else {
        location
    };
    if has_dot_segment(path_part(path_and_more)) {
        return Err("`.` or `..` path segment");
    }
    Ok(())
}

/// `scheme://host[:port]/path` with userinfo, query and fragment dropped.
pub fn redact(url: &Url) -> String {
    let mut out = redact_origin(url);
    if let Some(port) = url.port() {
        out.push(':');
        out.push_str(&port.to_string());
    }
    out.push_str(url.path());
    sanitize(&out)
}

/// `scheme://host`, the form redirect targets are reported in.
pub fn redact_origin(url: &Url) -> String {
    sanitize(&format!(
        "{}://{}",
        url.scheme(),
        url.host_str().unwrap_or("")
    ))
}

/// Redaction for strings that may not even parse: keeps scheme, host[:port] (the
/// part after the last `@`) and the path, drops userinfo, query and fragment.
pub fn redact_raw(raw: &str) -> String {
    let Some((scheme, rest)) = raw.split_once("://") else {
        return "<unparsable URL>".to_owned();
    };
    let (authority, after) = split_authority(rest);
    let host = authority.rsplit('@').next().unwrap_or("");
    let path = path_part(after);
    let mut out = String::with_capacity(scheme.len() + host.len() + path.len() + 3);
    out.push_str(scheme);
    out.push_str("://");
    out.push_str(host);
    out.push_str(path);
    // Bounded so a hostile URL cannot flood logs.
    sanitize(&out.chars().take(512).collect::<String>())
}

/// Split `host-and-rest` (what follows `://`) into authority and the remainder,
/// using the same delimiters the WHATWG parser uses for special schemes.
fn split_authority(rest: &str) -> (&str, &str) {
    let end = rest.find(['/', '\\', '?', '#']).unwrap_or(rest.len());
    rest.split_at(end)
}

/// The path portion of a path-and-more string (query and fragment removed).
fn path_part(s: &str) -> &str {
    let end = s.find(['?', '#']).unwrap_or(s.len());
    &s[..end]
}

/// Whether any `/`- or `\`-separated segment is `.` or `..` once decoded.
fn has_dot_segment(path: &str) -> bool {
    path.split(['/', '\\']).any(is_dot_segment)
}

fn is_dot_segment(segment: &str) -> bool {
    let mut bytes = segment.as_bytes().to_vec();
    for _ in 0..=DECODE_ROUNDS {
        if bytes == b"." || bytes == b".." {
            return true;
        }
        let decoded = percent_decode(&bytes);
        if decoded == bytes {
            break;
        }
        bytes = decoded;
    }
    false
}

fn percent_decode(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input[i] == b'%' && i + 2 < input.len() {
            if let (Some(h), Some(l)) = (hex_val(input[i + 1]), hex_val(input[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(input[i]);
        i += 1;
    }
    out
}

pub(crate) fn percent_decode_str(input: &str) -> String {
    String::from_utf8_lossy(&percent_decode(input.as_bytes())).into_owned()
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Replace characters that could forge log lines or confuse terminals.
fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests;
