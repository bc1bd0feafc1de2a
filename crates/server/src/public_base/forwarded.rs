//! The RFC 7239 `Forwarded` header: the `host` and `proto` a trusted proxy
//! saw in the original request.
//!
//! Only the first element counts (the proxy nearest the client appends
//! last, so the first element describes the client's own request). The
//! parser is total and bounded: it reads at most one element of one header
//! value, never allocates more than that value, and yields nothing for a
//! malformed element rather than a guess, so a bad header falls back to the
//! next source instead of naming URLs.

/// What the first `Forwarded` element names.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Forwarded {
    pub host: Option<String>,
    pub proto: Option<String>,
}

/// Parses the first element of a `Forwarded` value; `None` when malformed.
pub(crate) fn first_element(value: &str) -> Option<Forwarded> {
    let mut out = Forwarded::default();
    let mut rest = value.trim_start();
    loop {
        let (key, after_eq) = rest.split_once('=')?;
        let key = key.trim().to_ascii_lowercase();
        if key.is_empty() || !key.bytes().all(is_token_byte) {
            return None;
        }
        let (val, tail) = pair_value(after_eq.trim_start())?;
        match key.as_str() {
            "host" if out.host.is_none() => out.host = Some(val),
            "proto" if out.proto.is_none() => out.proto = Some(val.to_ascii_lowercase()),
            "host" | "proto" => return None, // a repeated parameter is invalid
            _ => {}
        }
        let tail = tail.trim_start();
        match tail.as_bytes().first() {
            None | Some(b',') => return Some(out),
            Some(b';') => rest = tail[1..].trim_start(),
            Some(_) => return None,
        }
    }
}

/// One value (a token or a quoted-string) and what follows it.
fn pair_value(s: &str) -> Option<(String, &str)> {
    if let Some(quoted) = s.strip_prefix('"') {
        let mut val = String::new();
        let mut chars = quoted.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => return Some((val, &quoted[i + 1..])),
                '\\' => val.push(chars.next()?.1),
                c => val.push(c),
            }
        }
        return None; // unterminated
    }
    let end = s.find([';', ',']).unwrap_or(s.len());
    let token = s[..end].trim_end();
    (!token.is_empty() && token.bytes().all(is_token_byte)).then(|| (token.to_string(), &s[end..]))
}

/// RFC 7230 `tchar`, plus `:` `[` `]` which real proxies send unquoted in
/// `host` and `for` (the origin check that follows refuses anything odd).
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~:[]".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::{first_element, Forwarded};

    fn parsed(host: Option<&str>, proto: Option<&str>) -> Option<Forwarded> {
        Some(Forwarded {
            host: host.map(str::to_string),
            proto: proto.map(str::to_string),
        })
    }

    #[test]
    fn reads_the_first_element() {
        assert_eq!(
            first_element("for=192.0.2.60;proto=HTTPS;host=reg.corp.test"),
            parsed(Some("reg.corp.test"), Some("https"))
        );
        assert_eq!(
            first_element("host=\"[::1]:8443\"; proto=https, host=second.test"),
            parsed(Some("[::1]:8443"), Some("https"))
        );
        assert_eq!(
            first_element("for=\"_hidden\", host=second.test"),
            parsed(None, None)
        );
        assert_eq!(first_element("host=\"a\\\"b\""), parsed(Some("a\"b"), None));
    }

    #[test]
    fn malformed_elements_yield_nothing() {
        for bad in [
            "",
            "host",
            "host=",
            "=x",
            "host=\"unterminated",
            "host=a b",
            "host=a;host=b",
            "host=a/b",
            "ho st=a",
            "host=\"a\"x",
        ] {
            assert_eq!(first_element(bad), None, "{bad:?}");
        }
    }
}
