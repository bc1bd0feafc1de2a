use std::time::Duration;

use super::*;

fn url(s: &str) -> Url {
    Url::parse(s).expect("test url")
}

fn uplink(name: &str, u: &str) -> UplinkRoute {
    UplinkRoute {
        name: name.to_owned(),
        url: url(u),
        authorization: Some(Secret::new("Bearer tok".to_owned())),
        headers: Vec::new(),
        timeout: Duration::from_secs(5),
        deadline: Duration::from_secs(60),
        max_fails: 2,
        fail_timeout: Duration::from_secs(1),
    }
}

fn table(public: Vec<PublicRoute>) -> RouteTable {
    RouteTable::new(RouteTableInput {
        own: url("http://pnpr.test:7677/"),
        uplinks: vec![
            uplink("corp", "https://corp.test/npm/"),
            uplink("corp2", "https://corp.test/"),
            uplink("mirror", "http://mirror.test:8080"),
        ],
        public,
    })
    .expect("table")
}

#[test]
fn uplink_match_is_origin_then_path_prefix() {
    let t = table(Vec::new());
    assert_eq!(
        t.classify("https://corp.test/npm/@a/b").expect("ok"),
        RouteKind::Uplink("corp".into())
    );
    assert_eq!(
        t.classify("https://corp.test/npm").expect("ok"),
        RouteKind::Uplink("corp".into())
    );
    // `/npmx` is not under `/npm/`; the second uplink covers the whole host.
    assert_eq!(
        t.classify("https://corp.test/npmx/a").expect("ok"),
        RouteKind::Uplink("corp2".into())
    );
    // Default port is the same origin.
    assert_eq!(
        t.classify("https://corp.test:443/npm/a").expect("ok"),
        RouteKind::Uplink("corp".into())
    );
    assert_eq!(
        t.classify("http://mirror.test:8080/x").expect("ok"),
        RouteKind::Uplink("mirror".into())
    );
    for off in [
        "http://corp.test/npm/a",   // scheme mismatch
        "https://corp.test:8443/a", // port mismatch
        "http://mirror.test/x",     // port mismatch
        "https://other.test/a",
        "https://corp.test.evil.test/npm/a",
    ] {
        let err = t.classify(off).expect_err(off);
        assert!(matches!(err, UpstreamError::NotAllowed { .. }), "{off}");
        assert!(err.to_string().contains("uplink or a public route"));
    }
}

#[test]
fn precedence_public_then_own_then_first_uplink() {
    let t = RouteTable::new(RouteTableInput {
        own: url("https://corp.test/pnpr/"),
        uplinks: vec![
            uplink("a", "https://corp.test/"),
            uplink("b", "https://corp.test/"),
        ],
        public: vec![PublicRoute {
            registry: Some(url("https://corp.test/pnpr/pub/")),
            package: None,
        }],
    })
    .expect("table");
    assert_eq!(
        t.classify("https://corp.test/pnpr/pub/x").expect("ok"),
        RouteKind::Public
    );
    assert_eq!(
        t.classify("https://corp.test/pnpr/x").expect("ok"),
        RouteKind::Own
    );
    assert_eq!(
        t.classify("https://corp.test/x").expect("ok"),
        RouteKind::Uplink("a".into())
    );
}

#[test]
fn public_route_with_registry_and_package_glob() {
    let t = table(vec![PublicRoute {
        registry: Some(url("https://corp.test/npm/")),
        package: Some("@oss/*".into()),
    }]);
    assert_eq!(
        t.classify("https://corp.test/npm/@oss/lib").expect("ok"),
        RouteKind::Public
    );
    assert_eq!(
        t.classify("https://corp.test/npm/@oss%2flib").expect("ok"),
        RouteKind::Public
    );
    assert_eq!(
        t.classify("https://corp.test/npm/@oss/lib/-/lib-1.0.0.tgz")
            .expect("ok"),
        RouteKind::Public
    );
    // Not matching the glob: falls through to the uplink (credentialed).
    assert_eq!(
        t.classify("https://corp.test/npm/@secret/lib").expect("ok"),
        RouteKind::Uplink("corp".into())
    );
    assert_eq!(
        t.classify("https://corp.test/npm/oss").expect("ok"),
        RouteKind::Uplink("corp".into())
    );
}

#[test]
fn package_only_public_route_applies_to_every_allowlisted_registry() {
    let t = table(vec![PublicRoute {
        registry: None,
        package: Some("left-*".into()),
    }]);
    assert_eq!(
        t.classify("https://corp.test/npm/left-pad").expect("ok"),
        RouteKind::Public
    );
    assert_eq!(
        t.classify("http://mirror.test:8080/left-pad/-/left-pad-1.tgz")
            .expect("ok"),
        RouteKind::Public
    );
    assert_eq!(
        t.classify("https://corp.test/npm/right-pad").expect("ok"),
        RouteKind::Uplink("corp".into())
    );
    // A package glob never widens the allowlist.
    assert!(matches!(
        t.classify("https://elsewhere.test/left-pad"),
        Err(UpstreamError::NotAllowed { .. })
    ));
}

#[test]
fn globs() {
    let g = |p: &str| Glob::new(p, "t").expect("glob");
    assert!(g("@oss/*").matches("@oss/lib"));
    assert!(!g("@oss/*").matches("@oss/lib/x"));
    assert!(!g("@oss/*").matches("@ossx/lib"));
    assert!(g("@oss/**").matches("@oss/lib/x"));
    assert!(g("**").matches("@any/thing"));
    assert!(g("*").matches("lodash"));
    assert!(!g("*").matches("@a/b"));
    assert!(g("lo?ash").matches("lodash"));
    assert!(!g("lo?ash").matches("lo/ash"));
    assert!(g("a*b*c").matches("aXXbYYc"));
    assert!(!g("a*b*c").matches("aXXbYY"));
    // Pathological input stays cheap.
    let long = "a".repeat(2000);
    assert!(!g("*a*a*a*a*a*a*a*a*b").matches(&long));
    assert!(Glob::new("", "t").is_err());
}

#[test]
fn package_names() {
    assert_eq!(package_name("lodash").as_deref(), Some("lodash"));
    assert_eq!(package_name("lodash/-/x.tgz").as_deref(), Some("lodash"));
    assert_eq!(package_name("@a/b/-/b.tgz").as_deref(), Some("@a/b"));
    assert_eq!(package_name("@a%2Fb").as_deref(), Some("@a/b"));
    assert_eq!(package_name("%40a%2fb").as_deref(), Some("@a/b"));
    assert_eq!(package_name("@a"), None);
    assert_eq!(package_name(""), None);
}

#[test]
fn invalid_inputs_fail_closed_without_leaking() {
    let base = || RouteTableInput {
        own: url("http://pnpr.test/"),
        uplinks: Vec::new(),
        public: Vec::new(),
    };
    let mut i = base();
    i.public.push(PublicRoute::default());
    assert!(RouteTable::new(i).is_err());

    let mut i = base();
    i.uplinks.push(uplink("x", "ftp://h.test/"));
    assert!(RouteTable::new(i).is_err());

    let mut i = base();
    i.uplinks.push(uplink("x", "http://u:pw@h.test/"));
    let err = RouteTable::new(i).expect_err("userinfo");
    assert!(!err.to_string().contains("pw"));

    let mut i = base();
    let mut u = uplink("x", "http://h.test/");
    u.authorization = Some(Secret::new("Bearer bad\nvalue-sekrit".into()));
    i.uplinks.push(u);
    let err = RouteTable::new(i).expect_err("bad header");
    assert!(!err.to_string().contains("sekrit"));

    let mut i = base();
    i.uplinks.push(uplink("x", "http://h.test/"));
    i.uplinks.push(uplink("x", "http://h2.test/"));
    assert!(RouteTable::new(i).is_err());
}

#[test]
fn literal_hosts_are_recorded() {
    let t = RouteTable::new(RouteTableInput {
        own: url("http://localhost:7677/"),
        uplinks: vec![
            uplink("a", "http://10.1.2.3/"),
            uplink("b", "http://[fd00::1]/"),
        ],
        public: vec![PublicRoute {
            registry: Some(url("http://192.168.1.1:81/")),
            package: None,
        }],
    })
    .expect("table");
    assert!(t.localhost_configured());
    for ip in ["10.1.2.3", "fd00::1", "192.168.1.1"] {
        assert!(t.literal_ips().contains(&ip.parse().expect("ip")), "{ip}");
    }
}

#[test]
fn debug_output_is_redacted() {
    let mut u = uplink("x", "http://user:pw-SEKRIT@h.test/p?token=SEKRIT");
    u.headers
        .push(("x-key".into(), Secret::new("SEKRIT".into())));
    let input = RouteTableInput {
        own: url("http://pnpr.test/"),
        uplinks: vec![u],
        public: vec![PublicRoute {
            registry: Some(url("http://a:SEKRIT@p.test/")),
            package: None,
        }],
    };
    let text = format!("{input:?}");
    assert!(!text.contains("SEKRIT") && !text.contains("tok"), "{text}");
    assert!(text.contains("x-key"));
}
