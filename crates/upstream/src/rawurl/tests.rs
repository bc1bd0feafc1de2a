use super::*;

#[test]
fn accepts_plain_http_and_https() {
    let u = check_raw("http://127.0.0.1:4873/@scope%2fname").expect("ok");
    assert_eq!(u.path(), "/@scope%2fname");
    check_raw("HTTPS://Example.test/a/b?x=1#frag").expect("ok");
}

#[test]
fn refuses_other_schemes_and_relative() {
    for raw in ["ftp://h/x", "file:///etc/passwd", "git://h/x"] {
        assert!(
            matches!(check_raw(raw), Err(UpstreamError::NotAllowed { .. })),
            "{raw}"
        );
    }
    for raw in ["http:h/x", "http:/h/x", "/relative", "", "http:\\\\h\\x"] {
        assert!(
            matches!(check_raw(raw), Err(UpstreamError::BadUrl { .. })),
            "{raw}"
        );
    }
}

#[test]
fn refuses_userinfo_without_echoing_it() {
    for raw in [
        "http://user:s3cret@127.0.0.1/x",
        "http://s3cret@127.0.0.1/x",
        "https://a:s3cret@h.test:8443/p?token=s3cret",
    ] {
        let err = check_raw(raw).expect_err(raw);
        assert!(
            matches!(err, UpstreamError::InlineCredentials { .. }),
            "{raw}"
        );
        let text = err.to_string();
        assert!(!text.contains("s3cret"), "{text}");
    }
}

#[test]
fn refuses_dot_segments_in_all_spellings() {
    for raw in [
        "http://h.test/a/../b",
        "http://h.test/a/./b",
        "http://h.test/..",
        "http://h.test/a/%2e%2e/b",
        "http://h.test/a/%2E%2e/b",
        "http://h.test/a/.%2E/b",
        "http://h.test/a/%2e/b",
        "http://h.test/a/%252e%252e/b",
        "http://h.test/a\\..\\b",
    ] {
        assert!(
            matches!(check_raw(raw), Err(UpstreamError::DotSegment { .. })),
            "{raw}"
        );
    }
    // Dots inside names are fine, and dots in the query are not path segments.
    check_raw("http://h.test/a/.b/..c/x.tgz?p=..").expect("ok");
}

#[test]
fn refuses_whitespace_smuggling() {
    for raw in [
        "http://h.test/a/.\t./b",
        " http://h.test/",
        "http://h.test/a\n",
    ] {
        assert!(
            matches!(check_raw(raw), Err(UpstreamError::BadUrl { .. })),
            "{raw:?}"
        );
    }
}

#[test]
fn redaction_drops_userinfo_query_fragment() {
    let u = Url::parse("http://h.test:8080/a/b?token=x#f").expect("url");
    assert_eq!(redact(&u), "http://h.test:8080/a/b");
    assert_eq!(redact_origin(&u), "http://h.test");
    assert_eq!(
        redact_raw("https://u:p@h.test:1/p/q?token=x#f"),
        "https://h.test:1/p/q"
    );
    assert_eq!(redact_raw("garbage"), "<unparsable URL>");
}

#[test]
fn location_raw_checks() {
    assert!(check_raw_location("/a/../b").is_err());
    assert!(check_raw_location("../b").is_err());
    assert!(check_raw_location("%2e%2e/b").is_err());
    assert!(check_raw_location("//u:p@h.test/x").is_err());
    assert!(check_raw_location("http://u@h.test/x").is_err());
    assert!(check_raw_location("/next?x=..").is_ok());
    assert!(check_raw_location("http://h.test/next").is_ok());
}

mod props {
    use super::*;
    use proptest::prelude::*;

    fn url_like() -> impl Strategy<Value = String> {
        let atom = prop_oneof![
            Just("http://"),
            Just("https://"),
            Just("h"),
            Just("@"),
            Just(":"),
            Just("/"),
            Just("\\"),
            Just("."),
            Just(".."),
            Just("%2e"),
            Just("%252e"),
            Just("%"),
            Just("?"),
            Just("#"),
            Just("[::1]"),
            Just("\t"),
        ];
        prop_oneof![
            prop::collection::vec(atom, 0..16).prop_map(|v| v.concat()),
            ".{0,60}",
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn accepted_urls_keep_the_invariant(raw in url_like()) {
            let Ok(url) = check_raw(&raw) else {
                let _ = check_raw_location(&raw);
                return Ok(());
            };
            prop_assert!(matches!(url.scheme(), "http" | "https"));
            prop_assert!(url.username().is_empty() && url.password().is_none());
            prop_assert!(url.host_str().is_some_and(|h| !h.is_empty()));
            prop_assert!(!raw.chars().any(|c| c.is_control() || c.is_whitespace()));
            prop_assert!(!has_dot_segment(url.path()));
            let shown = redact(&url);
            prop_assert!(!shown.contains(['?', '#', '@']) || url.path().contains(['@']), "{}", shown);
            prop_assert!(redact_raw(&raw).chars().count() <= 512);
        }
    }
}
