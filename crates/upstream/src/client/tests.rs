//! Real-socket tests: tiny hand-written HTTP/1.1 servers on 127.0.0.1 that count
//! accepted connections, so "nothing was sent" is observed, not assumed.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;
use crate::resolver::LookupFuture;
use crate::{PublicRoute, RouteTableInput, Secret, UplinkRoute};

const TOKEN: &str = "Bearer tok-SEKRIT-123";

type Handler = Arc<dyn Fn(&str) -> Vec<u8> + Send + Sync>;

struct TestServer {
    addr: SocketAddr,
    accepts: Arc<AtomicUsize>,
    heads: Arc<Mutex<Vec<String>>>,
}

impl TestServer {
    async fn start(handler: impl Fn(&str) -> Vec<u8> + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let accepts = Arc::new(AtomicUsize::new(0));
        let heads = Arc::new(Mutex::new(Vec::new()));
        let handler: Handler = Arc::new(handler);
        let (a, h) = (Arc::clone(&accepts), Arc::clone(&heads));
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                a.fetch_add(1, Ordering::SeqCst);
                let (h, handler) = (Arc::clone(&h), Arc::clone(&handler));
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 64 * 1024 {
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&buf).into_owned();
                    h.lock().expect("heads").push(head.clone());
                    let resp = handler(&head);
                    if resp.is_empty() {
                        // Simulate a stalled upstream: hold the socket open.
                        tokio::time::sleep(Duration::from_secs(5)).await;
                        return;
                    }
                    let _ = sock.write_all(&resp).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        Self {
            addr,
            accepts,
            heads,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn accepts(&self) -> usize {
        self.accepts.load(Ordering::SeqCst)
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().expect("heads").clone()
    }
}

fn response(status: &str, extra: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in extra {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

fn ok(body: &str) -> Vec<u8> {
    response(
        "200 OK",
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    )
}

fn redirect(to: &str) -> Vec<u8> {
    response("302 Found", &[("Location", to)], b"")
}

/// Resolver with fixed answers that counts lookups; unknown names fail.
#[derive(Default)]
struct MapResolver {
    map: HashMap<String, Vec<IpAddr>>,
    lookups: AtomicUsize,
}

impl MapResolver {
    fn with(host: &str, ips: &[&str]) -> Self {
        let mut map = HashMap::new();
        map.insert(
            host.to_owned(),
            ips.iter().map(|s| s.parse().expect("ip")).collect(),
        );
        Self {
            map,
            lookups: AtomicUsize::new(0),
        }
    }
}

impl NameResolver for MapResolver {
    fn lookup(&self, host: &str) -> LookupFuture<'_> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        let found = self.map.get(host).cloned();
        Box::pin(
            async move { found.ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "unknown")) },
        )
    }
}

fn uplink(name: &str, url: &str) -> UplinkRoute {
    UplinkRoute {
        name: name.to_owned(),
        url: Url::parse(url).expect("uplink url"),
        authorization: Some(Secret::new(TOKEN.to_owned())),
        headers: vec![(
            "x-corp-key".to_owned(),
            Secret::new("key-SEKRIT".to_owned()),
        )],
        timeout: Duration::from_secs(5),
        deadline: Duration::from_secs(60),
        max_fails: 2,
        fail_timeout: Duration::from_millis(200),
    }
}

fn public(url: &str) -> PublicRoute {
    PublicRoute {
        registry: Some(Url::parse(url).expect("public url")),
        package: None,
    }
}

fn client_with(
    uplinks: Vec<UplinkRoute>,
    public: Vec<PublicRoute>,
    resolver: Arc<dyn NameResolver>,
    policy: GuardPolicy,
) -> UpstreamClient {
    let table = RouteTable::new(RouteTableInput {
        // A name, not a literal: a literal own IP would allow that IP everywhere.
        own: Url::parse("http://pnpr.test:1/pnpr/").expect("own"),
        uplinks,
        public,
    })
    .expect("table");
    UpstreamClient::new(table, resolver, policy).expect("client")
}

fn client(uplinks: Vec<UplinkRoute>, public: Vec<PublicRoute>) -> UpstreamClient {
    client_with(
        uplinks,
        public,
        Arc::new(MapResolver::default()),
        GuardPolicy::default(),
    )
}

fn get(url: String, via: Option<&str>) -> FetchRequest {
    FetchRequest {
        url,
        via: via.map(str::to_owned),
        ..FetchRequest::default()
    }
}

fn has_header(head: &str, name: &str) -> bool {
    head.lines()
        .any(|l| l.to_ascii_lowercase().starts_with(&format!("{name}:")))
}

fn assert_no_secret(err: &UpstreamError) {
    let text = format!("{err} {err:?}");
    for s in ["SEKRIT", "tok-", "token="] {
        assert!(!text.contains(s), "{text}");
    }
}

#[tokio::test]
async fn credentials_only_on_origin_match_and_not_across_redirects() {
    let other = TestServer::start(|_| ok("{\"other\":true}")).await;
    let other_url = other.url("/pkg");
    let corp = TestServer::start(move |head| {
        if head.starts_with("GET /npm/redir ") {
            redirect(&other_url)
        } else if head.starts_with("GET /npm/same ") {
            redirect("/npm/final")
        } else {
            ok("{}")
        }
    })
    .await;
    let c = client(
        vec![uplink("corp", &corp.url("/npm/"))],
        vec![public(&other.url("/"))],
    );

    // Direct fetch via the uplink: credentials attached.
    let r = c
        .fetch(FetchRequest {
            accept: Some("application/vnd.npm.install-v1+json".into()),
            if_none_match: Some("\"abc\"".into()),
            if_modified_since: Some("Wed, 21 Oct 2015 07:28:00 GMT".into()),
            ..get(corp.url("/npm/pkg"), Some("corp"))
        })
        .await
        .expect("fetch");
    assert_eq!(r.status, 200);
    assert_eq!(r.route, RouteKind::Uplink("corp".into()));
    assert_eq!(r.content_type.as_deref(), Some("application/json"));
    let head = corp.heads().pop().expect("request");
    let lower = head.to_ascii_lowercase();
    assert!(head.contains(&format!("authorization: {TOKEN}")), "{head}");
    assert!(lower.contains("x-corp-key: key-sekrit"), "{head}");
    assert!(
        lower.contains("accept: application/vnd.npm.install-v1+json"),
        "{head}"
    );
    assert!(lower.contains("if-none-match: \"abc\""), "{head}");
    assert!(
        lower.contains("if-modified-since: wed, 21 oct 2015"),
        "{head}"
    );
    assert!(lower.contains("accept-encoding: gzip"), "{head}");
    assert!(lower.contains(&format!("user-agent: pnpr/{}", env!("CARGO_PKG_VERSION"))));

    // Without `via`: anonymous even on the uplink's origin.
    c.fetch(get(corp.url("/npm/pkg"), None))
        .await
        .expect("anon");
    assert!(!has_header(
        &corp.heads().pop().expect("req"),
        "authorization"
    ));

    // Redirect to another allowlisted origin: followed, but anonymously.
    let r = c
        .fetch(get(corp.url("/npm/redir"), Some("corp")))
        .await
        .expect("redirected");
    assert_eq!(r.final_url.as_str(), other.url("/pkg"));
    assert_eq!(r.route, RouteKind::Public);
    assert_eq!(
        r.bytes(1024).await.expect("body").as_ref(),
        b"{\"other\":true}"
    );
    let other_head = other.heads().pop().expect("other saw request");
    assert!(!has_header(&other_head, "authorization"), "{other_head}");
    assert!(!has_header(&other_head, "x-corp-key"), "{other_head}");

    // Redirect within the uplink origin keeps the credential.
    let before = corp.heads().len();
    c.fetch(get(corp.url("/npm/same"), Some("corp")))
        .await
        .expect("same-origin redirect");
    let heads = corp.heads();
    assert_eq!(heads.len(), before + 2);
    assert!(heads[before + 1].starts_with("GET /npm/final "));
    assert!(has_header(&heads[before + 1], "authorization"));
}

#[tokio::test]
async fn scheme_mismatch_and_public_route_never_carry_the_token() {
    let srv = TestServer::start(|_| ok("{}")).await;
    let https_uplink = format!("https://{}/", srv.addr);
    // The http origin is allowlisted as a public route; the uplink is https.
    let c = client(
        vec![uplink("corp", &https_uplink)],
        vec![public(&srv.url("/"))],
    );
    c.fetch(get(srv.url("/x"), Some("corp")))
        .await
        .expect("fetch");
    assert!(!has_header(
        &srv.heads().pop().expect("req"),
        "authorization"
    ));

    // Same origin declared both as uplink and public route: public wins.
    let c = client(
        vec![uplink("corp", &srv.url("/"))],
        vec![public(&srv.url("/oss/"))],
    );
    let r = c
        .fetch(get(srv.url("/oss/x"), Some("corp")))
        .await
        .expect("fetch");
    assert_eq!(r.route, RouteKind::Public);
    assert!(!has_header(
        &srv.heads().pop().expect("req"),
        "authorization"
    ));
}

#[tokio::test]
async fn redirect_to_off_list_host_is_refused_without_connecting() {
    let target = TestServer::start(|_| ok("{}")).await;
    let target_url = target.url("/steal?token=SEKRIT");
    let corp = TestServer::start(move |_| redirect(&target_url)).await;
    let c = client(vec![uplink("corp", &corp.url("/"))], Vec::new());
    let err = c
        .fetch(get(corp.url("/pkg"), Some("corp")))
        .await
        .expect_err("blocked");
    assert!(
        matches!(err, UpstreamError::BlockedRedirect { .. }),
        "{err}"
    );
    assert_eq!(err.to_string().matches("127.0.0.1").count(), 1);
    assert!(
        !err.to_string().contains(&target.addr.port().to_string()),
        "{err}"
    );
    assert_no_secret(&err);
    assert_eq!(
        target.accepts(),
        0,
        "off-list target must see no connection"
    );
    assert_eq!(corp.accepts(), 1);
}

#[tokio::test]
async fn redirect_with_dot_segments_or_userinfo_is_refused() {
    let corp = TestServer::start(|head| {
        if head.starts_with("GET /a/dots ") {
            redirect("../../admin")
        } else if head.starts_with("GET /a/enc ") {
            redirect("/a/%2e%2e/admin")
        } else {
            redirect("http://u:SEKRIT@127.0.0.1:9/x")
        }
    })
    .await;
    let c = client(vec![uplink("corp", &corp.url("/"))], Vec::new());
    for path in ["/a/dots", "/a/enc", "/a/creds"] {
        let err = c.fetch(get(corp.url(path), None)).await.expect_err(path);
        assert!(
            matches!(err, UpstreamError::BlockedRedirect { .. }),
            "{path}: {err}"
        );
        assert_no_secret(&err);
    }
    assert_eq!(corp.accepts(), 3);
}

#[tokio::test]
async fn too_many_redirects() {
    let srv = TestServer::start(|_| redirect("/loop")).await;
    let c = client(vec![uplink("corp", &srv.url("/"))], Vec::new());
    let err = c
        .fetch(get(srv.url("/loop"), None))
        .await
        .expect_err("loop");
    assert!(
        matches!(err, UpstreamError::TooManyRedirects { limit: 5 }),
        "{err}"
    );
    assert_eq!(srv.accepts(), 6);
}

#[tokio::test]
async fn refused_urls_send_nothing() {
    let srv = TestServer::start(|_| ok("{}")).await;
    let allowed = TestServer::start(|_| ok("{}")).await;
    let c = client(vec![uplink("corp", &allowed.url("/"))], Vec::new());

    let err = c
        .fetch(get(srv.url("/x"), None))
        .await
        .expect_err("off-list");
    assert!(matches!(err, UpstreamError::NotAllowed { .. }), "{err}");
    assert!(err.to_string().contains("uplink or a public route"));

    let creds = format!("http://user:SEKRIT@{}/x?token=SEKRIT", allowed.addr);
    let err = c
        .fetch(get(creds, Some("corp")))
        .await
        .expect_err("userinfo");
    assert!(
        matches!(err, UpstreamError::InlineCredentials { .. }),
        "{err}"
    );
    assert_no_secret(&err);

    for path in ["/a/../x", "/a/%2e%2e/x", "/a/%2E%2e/x", "/./x"] {
        let err = c.fetch(get(allowed.url(path), None)).await.expect_err(path);
        assert!(
            matches!(err, UpstreamError::DotSegment { .. }),
            "{path}: {err}"
        );
    }
    assert_eq!(srv.accepts(), 0);
    assert_eq!(allowed.accepts(), 0);
}

#[tokio::test]
async fn name_resolving_to_metadata_is_refused_without_connecting() {
    let resolver = Arc::new(MapResolver::with("meta.test", &["169.254.169.254"]));
    let c = client_with(
        vec![uplink("corp", "http://meta.test:8080/")],
        Vec::new(),
        Arc::clone(&resolver) as Arc<dyn NameResolver>,
        // Even an allow-all policy cannot open the always-refused classes.
        GuardPolicy {
            allow_private: vec!["0.0.0.0/0".parse().expect("net")],
        },
    );
    let err = tokio::time::timeout(
        Duration::from_secs(2),
        c.fetch(get("http://meta.test:8080/latest/".into(), Some("corp"))),
    )
    .await
    .expect("refused immediately, no connect attempt")
    .expect_err("blocked");
    match &err {
        UpstreamError::BlockedAddress { host, addr, .. } => {
            assert_eq!(host, "meta.test");
            assert_eq!(*addr, "169.254.169.254".parse::<IpAddr>().expect("ip"));
        }
        other => panic!("unexpected {other}"),
    }
    assert!(err.to_string().contains("169.254.169.254"));
    assert!(!err.is_transport());
    assert_eq!(resolver.lookups.load(Ordering::SeqCst), 1);
    // A guard refusal says nothing about the uplink's health.
    assert!(c.uplink_available("corp"));

    // The literal form is refused before sending, too.
    let c = client(vec![uplink("m", "http://169.254.169.254/")], Vec::new());
    let err = c
        .fetch(get("http://169.254.169.254/latest/".into(), None))
        .await
        .expect_err("literal");
    assert!(matches!(err, UpstreamError::BlockedAddress { .. }), "{err}");
}

/// IPv6 forms that carry a dangerous IPv4 address, as a DNS answer and as a
/// literal URL host: refused before any connection, even under an allow-all
/// IPv4 policy.
#[tokio::test]
async fn embedded_ipv4_forms_are_refused_by_name_and_as_literals() {
    let allow_all_v4 = || GuardPolicy {
        allow_private: vec!["0.0.0.0/0".parse().expect("net")],
    };
    for form in [
        "::ffff:0:169.254.169.254",
        "64:ff9b::a9fe:a9fe",
        "64:ff9b:1::a9fe:a9fe",
        "::169.254.169.254",
        "::127.0.0.1",
        "::ffff:0:127.0.0.1",
        "64:ff9b::7f00:1",
        "2002:a9fe:a9fe::1",
        "2001:0:808:808::5601:5601",
    ] {
        let resolver = Arc::new(MapResolver::with("embed.test", &[form]));
        let c = client_with(
            vec![uplink("e", "http://embed.test:8080/")],
            Vec::new(),
            Arc::clone(&resolver) as Arc<dyn NameResolver>,
            allow_all_v4(),
        );
        let err = tokio::time::timeout(
            Duration::from_secs(2),
            c.fetch(get("http://embed.test:8080/x".into(), None)),
        )
        .await
        .expect("refused without a connect attempt")
        .expect_err(form);
        assert!(
            matches!(&err, UpstreamError::BlockedAddress { addr, .. }
                if *addr == form.parse::<IpAddr>().expect("ip")),
            "{form}: {err}"
        );

        // The same address written as a URL host, configured as an uplink:
        // forbidden forms are refused before sending. (Restricted ones are
        // vouched for by being configured literally, so they are not tried
        // here: that would send packets off the loopback interface.)
        let forbidden = matches!(
            crate::guard::classify_ip(form.parse().expect("ip")),
            crate::guard::IpClass::Forbidden(_)
        );
        if forbidden {
            let literal = format!("http://[{form}]:8080/");
            let c = client_with(
                vec![uplink("l", &literal)],
                Vec::new(),
                Arc::new(MapResolver::default()),
                allow_all_v4(),
            );
            let err = c
                .fetch(get(format!("{literal}x"), None))
                .await
                .expect_err(form);
            assert!(
                matches!(err, UpstreamError::BlockedAddress { .. }),
                "{form}: {err}"
            );
        }
    }
}

#[tokio::test]
async fn name_resolving_to_loopback_needs_an_allowance() {
    let srv = TestServer::start(|_| ok("{}")).await;
    let port = srv.addr.port();
    let uplink_url = format!("http://reg.test:{port}/");
    let resolver =
        || -> Arc<dyn NameResolver> { Arc::new(MapResolver::with("reg.test", &["127.0.0.1"])) };

    let c = client_with(
        vec![uplink("reg", &uplink_url)],
        Vec::new(),
        resolver(),
        GuardPolicy::default(),
    );
    let err = c
        .fetch(get(format!("{uplink_url}x"), None))
        .await
        .expect_err("loopback refused");
    assert!(matches!(err, UpstreamError::BlockedAddress { .. }), "{err}");
    assert!(err.to_string().contains("loopback"), "{err}");
    assert_eq!(srv.accepts(), 0);

    let c = client_with(
        vec![uplink("reg", &uplink_url)],
        Vec::new(),
        resolver(),
        GuardPolicy {
            allow_private: vec!["127.0.0.0/8".parse().expect("net")],
        },
    );
    let r = c
        .fetch(get(format!("{uplink_url}x"), None))
        .await
        .expect("allowed");
    assert_eq!(r.status, 200);
    assert_eq!(srv.accepts(), 1);
    // The Host header still names the configured host.
    assert!(srv.heads()[0]
        .to_ascii_lowercase()
        .contains(&format!("host: reg.test:{port}")));

    // Mixed answers: the refused address is skipped, the allowed one is used.
    let c = client_with(
        vec![uplink("reg", &uplink_url)],
        Vec::new(),
        Arc::new(MapResolver::with(
            "reg.test",
            &["169.254.169.254", "127.0.0.1"],
        )),
        GuardPolicy {
            allow_private: vec!["127.0.0.0/8".parse().expect("net")],
        },
    );
    c.fetch(get(format!("{uplink_url}x"), None))
        .await
        .expect("allowed");
    assert_eq!(srv.accepts(), 2);
}

#[tokio::test]
async fn configured_localhost_may_reach_loopback() {
    let srv = TestServer::start(|_| ok("{}")).await;
    let url = format!("http://localhost:{}/", srv.addr.port());
    let c = client_with(
        vec![uplink("local", &url)],
        Vec::new(),
        Arc::new(MapResolver::with("localhost", &["127.0.0.1"])),
        GuardPolicy::default(),
    );
    c.fetch(get(format!("{url}pkg"), None))
        .await
        .expect("localhost configured");
    assert_eq!(srv.accepts(), 1);
}

#[tokio::test]
async fn circuit_breaker_opens_after_max_fails_and_recovers() {
    let healthy = Arc::new(AtomicBool::new(false));
    let h = Arc::clone(&healthy);
    let srv = TestServer::start(move |_| {
        if h.load(Ordering::SeqCst) {
            ok("{}")
        } else {
            response("503 Service Unavailable", &[], b"down")
        }
    })
    .await;
    let c = client(vec![uplink("corp", &srv.url("/"))], Vec::new());

    for _ in 0..2 {
        let r = c
            .fetch(get(srv.url("/p"), Some("corp")))
            .await
            .expect("5xx is a response");
        assert_eq!(r.status, 503);
    }
    assert!(!c.uplink_available("corp"));
    let err = c
        .fetch(get(srv.url("/p"), Some("corp")))
        .await
        .expect_err("open");
    assert!(
        matches!(err, UpstreamError::UplinkDown { ref name } if name == "corp"),
        "{err}"
    );
    assert!(err.is_transport());
    assert_eq!(srv.accepts(), 2, "open breaker sends nothing");
    // Requests without `via` are not subject to the uplink's breaker.
    c.fetch(get(srv.url("/p"), None)).await.expect("no via");
    assert_eq!(srv.accepts(), 3);

    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(c.uplink_available("corp"));
    healthy.store(true, Ordering::SeqCst);
    let r = c
        .fetch(get(srv.url("/p"), Some("corp")))
        .await
        .expect("trial");
    assert_eq!(r.status, 200);
    assert!(c.uplink_available("corp"));
    assert!(!c.uplink_available("nope"));
}

#[tokio::test]
async fn transport_failures_and_timeouts_count_and_never_leak() {
    // A port with nothing listening.
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        l.local_addr().expect("addr")
    };
    let mut up = uplink("dead", &format!("http://{closed}/"));
    up.max_fails = 1;
    up.fail_timeout = Duration::from_secs(60);
    let stalled = TestServer::start(|_| Vec::new()).await;
    let mut slow = uplink("slow", &stalled.url("/"));
    slow.timeout = Duration::from_millis(200);
    let c = client(vec![up, slow], Vec::new());

    let err = c
        .fetch(get(format!("http://{closed}/p?token=SEKRIT"), Some("dead")))
        .await
        .expect_err("refused");
    assert!(matches!(err, UpstreamError::Transport { .. }), "{err}");
    assert!(err.is_transport());
    assert_no_secret(&err);
    assert!(!c.uplink_available("dead"));

    let err = c
        .fetch(get(stalled.url("/p?token=SEKRIT"), Some("slow")))
        .await
        .expect_err("timeout");
    assert!(matches!(err, UpstreamError::Timeout { .. }), "{err}");
    assert_no_secret(&err);
}

#[tokio::test]
async fn gzip_bodies_are_decoded_and_limits_enforced() {
    const HELLO_GZ: [u8; 30] = [
        31, 139, 8, 0, 0, 0, 0, 0, 2, 255, 203, 72, 205, 201, 201, 87, 72, 175, 202, 44, 0, 0, 25,
        106, 210, 223, 10, 0, 0, 0,
    ];
    let srv = TestServer::start(|head| {
        if head.starts_with("GET /gz ") {
            response(
                "200 OK",
                &[("Content-Encoding", "gzip"), ("ETag", "\"e1\"")],
                &HELLO_GZ,
            )
        } else if head.starts_with("GET /big ") {
            ok(&"x".repeat(100))
        } else {
            response(
                "304 Not Modified",
                &[("ETag", "\"e1\""), ("Location", "/elsewhere")],
                b"",
            )
        }
    })
    .await;
    let c = client(vec![uplink("corp", &srv.url("/"))], Vec::new());

    let r = c.fetch(get(srv.url("/gz"), None)).await.expect("gz");
    assert_eq!(r.etag.as_deref(), Some("\"e1\""));
    assert_eq!(r.bytes(1024).await.expect("body").as_ref(), b"hello gzip");

    let r = c.fetch(get(srv.url("/big"), None)).await.expect("big");
    assert_eq!(r.content_length, Some(100));
    let err = r.bytes(10).await.expect_err("too large");
    assert!(
        matches!(err, UpstreamError::BodyTooLarge { limit: 10, .. }),
        "{err}"
    );

    let r = c.fetch(get(srv.url("/big"), None)).await.expect("big");
    let mut s = r.into_stream();
    let mut total = 0;
    while let Some(chunk) = s.next().await {
        total += chunk.expect("chunk").len();
    }
    assert_eq!(total, 100);

    // 304 is not a redirect even with a Location header.
    let r = c.fetch(get(srv.url("/cond"), None)).await.expect("304");
    assert_eq!(r.status, 304);
    assert_eq!(srv.accepts(), 4);
}

#[tokio::test]
async fn unknown_via_is_refused() {
    let srv = TestServer::start(|_| ok("{}")).await;
    let c = client(vec![uplink("corp", &srv.url("/"))], Vec::new());
    let err = c
        .fetch(get(srv.url("/p"), Some("ghost")))
        .await
        .expect_err("unknown");
    assert!(matches!(err, UpstreamError::UnknownUplink { .. }), "{err}");
    assert_eq!(srv.accepts(), 0);
}

#[test]
fn fetch_request_debug_is_redacted() {
    let r = get("http://u:SEKRIT@h.test/p?token=SEKRIT".into(), Some("corp"));
    let text = format!("{r:?}");
    assert!(!text.contains("SEKRIT"), "{text}");
    assert!(text.contains("http://h.test/p"), "{text}");
}

#[tokio::test]
async fn forwarded_credential_only_on_public_registry_origin() {
    const FWD: &str = "Bearer fwd-SEKRIT-9";
    let other = TestServer::start(|_| ok("{}")).await;
    let other_url = other.url("/pkg");
    let reg = TestServer::start(move |head| {
        if head.starts_with("GET /away ") {
            redirect(&other_url)
        } else if head.starts_with("GET /same ") {
            redirect("/final")
        } else {
            ok("{}")
        }
    })
    .await;
    let corp = TestServer::start(|_| ok("{}")).await;
    let own = Url::parse("http://pnpr.test:1/pnpr/").expect("own");
    let c = client(
        vec![uplink("corp", &corp.url("/npm/"))],
        vec![public(&reg.url("/")), public(&other.url("/"))],
    )
    .with_own_url(&own);
    let fwd = || Secret::new(FWD.to_owned());
    let auth_line = format!("authorization: {FWD}");

    // Public registry: attached, also after a same-origin redirect.
    c.fetch_forwarded(get(reg.url("/pkg"), None), fwd())
        .await
        .expect("fetch");
    c.fetch_forwarded(get(reg.url("/same"), None), fwd())
        .await
        .expect("fetch");
    let heads = reg.heads();
    assert_eq!(heads.len(), 3, "{heads:?}");
    for h in &heads {
        assert!(h.contains(&auth_line), "{h}");
    }

    // A redirect to another (also public) origin drops it.
    c.fetch_forwarded(get(reg.url("/away"), None), fwd())
        .await
        .expect("fetch");
    let head = other.heads().pop().expect("followed");
    assert!(!has_header(&head, "authorization"), "{head}");

    // An uplink keeps its own server credential; the forwarded one never
    // replaces it.
    c.fetch_forwarded(get(corp.url("/npm/pkg"), Some("corp")), fwd())
        .await
        .expect("fetch");
    let head = corp.heads().pop().expect("request");
    assert!(head.contains(&format!("authorization: {TOKEN}")), "{head}");
    assert!(!head.contains("fwd-SEKRIT"), "{head}");

    // Plain fetch never sends it, and without a declared own URL nothing is
    // forwarded at all (fail closed).
    c.fetch(get(reg.url("/pkg"), None)).await.expect("fetch");
    let bare = client(vec![], vec![public(&reg.url("/"))]);
    bare.fetch_forwarded(get(reg.url("/pkg"), None), fwd())
        .await
        .expect("fetch");
    let heads = reg.heads();
    for h in &heads[heads.len() - 2..] {
        assert!(!has_header(h, "authorization"), "{h}");
    }
}

#[tokio::test]
async fn forwarded_credential_never_goes_to_own_origin() {
    let own_srv = TestServer::start(|_| ok("{}")).await;
    let own = Url::parse(&own_srv.url("/")).expect("own");
    let table = RouteTable::new(RouteTableInput {
        own: own.clone(),
        uplinks: vec![],
        // Even a (mis)declared public route on our own origin gets nothing.
        public: vec![public(&own_srv.url("/"))],
    })
    .expect("table");
    let c = UpstreamClient::new(
        table,
        Arc::new(MapResolver::default()),
        GuardPolicy::default(),
    )
    .expect("client")
    .with_own_url(&own);
    c.fetch_forwarded(
        get(own_srv.url("/pkg"), None),
        Secret::new("Bearer x".to_owned()),
    )
    .await
    .expect("fetch");
    let head = own_srv.heads().pop().expect("request");
    assert!(!has_header(&head, "authorization"), "{head}");
}

/// An upstream that sends its headers at once, then one body byte every
/// `gap` (up to `total` bytes), so only a whole-fetch deadline can end it.
async fn drip_server(gap: Duration, total: usize) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = sock.read(&mut buf).await;
                let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {total}\r\n\r\n");
                if sock.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                for _ in 0..total {
                    tokio::time::sleep(gap).await;
                    if sock.write_all(b"x").await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_dripping_body_misses_the_whole_fetch_deadline() {
    let addr = drip_server(Duration::from_millis(50), 1000).await;
    let mut up = uplink("drip", &format!("http://{addr}/"));
    // Every gap is well inside the idle timeout; only the deadline can fire.
    up.timeout = Duration::from_secs(2);
    up.deadline = Duration::from_millis(600);
    let c = client(vec![up], Vec::new());
    let started = std::time::Instant::now();
    let resp = c
        .fetch(get(format!("http://{addr}/p?token=SEKRIT"), Some("drip")))
        .await
        .expect("headers arrive at once");
    let err = resp.bytes(1 << 20).await.expect_err("deadline");
    let took = started.elapsed();
    assert!(
        matches!(err, UpstreamError::DeadlineExceeded { .. }),
        "{err}"
    );
    assert!(err.is_timeout() && err.is_transport());
    assert_no_secret(&err);
    assert!(took >= Duration::from_millis(550), "{took:?}");
    assert!(took < Duration::from_millis(1500), "{took:?}");
}

#[tokio::test]
async fn the_deadline_also_bounds_headers_and_the_idle_timeout_stays_per_gap() {
    // Stalled before any header: the deadline (shorter than the idle
    // timeout) ends the fetch and is reported as such.
    let stalled = TestServer::start(|_| Vec::new()).await;
    let mut up = uplink("slow", &stalled.url("/"));
    up.timeout = Duration::from_secs(3);
    up.deadline = Duration::from_millis(300);
    let c = client(vec![up], Vec::new());
    let started = std::time::Instant::now();
    let err = c
        .fetch(get(stalled.url("/p"), Some("slow")))
        .await
        .expect_err("deadline");
    assert!(
        matches!(err, UpstreamError::DeadlineExceeded { .. }),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));

    // A body gap longer than the idle timeout is an idle timeout.
    let addr = drip_server(Duration::from_millis(800), 10).await;
    let mut up = uplink("gappy", &format!("http://{addr}/"));
    up.timeout = Duration::from_millis(200);
    let c = client(vec![up], Vec::new());
    let resp = c
        .fetch(get(format!("http://{addr}/p"), Some("gappy")))
        .await
        .expect("headers");
    let err = resp.bytes(1024).await.expect_err("idle");
    assert!(matches!(err, UpstreamError::Timeout { .. }), "{err}");
}

#[tokio::test]
async fn status_errors_name_the_status_without_the_query() {
    let srv = TestServer::start(|_| response("502 Bad Gateway", &[], b"")).await;
    let c = client(vec![uplink("corp", &srv.url("/"))], Vec::new());
    let resp = c
        .fetch(get(srv.url("/p?token=SEKRIT"), Some("corp")))
        .await
        .expect("answer");
    let err = resp.status_error();
    assert!(
        matches!(err, UpstreamError::BadStatus { status: 502, .. }),
        "{err}"
    );
    assert!(err.is_transport() && !err.is_timeout());
    assert_no_secret(&err);
}

/// An upstream that holds every answer for `delay` and records the most
/// connections it ever had open at once: `/missing/...` answers 500 (one
/// resource it cannot deliver, as a Verdaccio whose own uplink lacks a
/// tarball does), `/down/...` 503, everything else 200.
async fn busy_server(delay: Duration) -> (SocketAddr, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (open, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let accepted = Arc::new(AtomicUsize::new(0));
    let (p, a) = (Arc::clone(&peak), Arc::clone(&accepted));
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let (open, peak) = (Arc::clone(&open), Arc::clone(&p));
            a.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let now = open.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                let mut buf = [0u8; 4096];
                let n = sock.read(&mut buf).await.unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]).into_owned();
                tokio::time::sleep(delay).await;
                let resp = if head.starts_with("GET /missing/") {
                    response("500 Internal Server Error", &[], b"{}")
                } else if head.starts_with("GET /down/") {
                    response("503 Service Unavailable", &[], b"{}")
                } else {
                    ok("{}")
                };
                let _ = sock.write_all(&resp).await;
                let _ = sock.shutdown().await;
                open.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    (addr, peak, accepted)
}

#[tokio::test]
async fn a_burst_of_healthy_fetches_queues_per_uplink_and_keeps_the_breaker_closed() {
    let (addr, peak, accepted) = busy_server(Duration::from_millis(20)).await;
    let c = client(vec![uplink("up", &format!("http://{addr}/"))], Vec::new());
    // 240 fetches at once, one in eight for a resource the upstream answers
    // 500 for: two of those in a row used to open the breaker.
    let fetches = (0..240).map(|i| {
        let path = if i % 8 == 0 { "missing" } else { "pkg" };
        let c = &c;
        async move {
            let resp = c
                .fetch(get(format!("http://{addr}/{path}/{i}"), Some("up")))
                .await?;
            let status = resp.status;
            resp.bytes(1024).await?;
            Ok::<_, UpstreamError>(status)
        }
    });
    let results = futures_util::future::join_all(fetches).await;
    let statuses: Vec<u16> = results
        .into_iter()
        .map(|r| r.expect("every fetch reaches the healthy upstream"))
        .collect();
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 210);
    assert_eq!(statuses.iter().filter(|s| **s == 500).count(), 30);
    assert_eq!(accepted.load(Ordering::SeqCst), 240);
    assert!(c.uplink_available("up"));
    let peak = peak.load(Ordering::SeqCst);
    assert!(
        (2..=MAX_IN_FLIGHT_PER_UPLINK).contains(&peak),
        "at most {MAX_IN_FLIGHT_PER_UPLINK} on the wire at once, saw {peak}"
    );
    // Sequential 500s do not open it either: they are answers, not outages.
    for i in 0..4 {
        let r = c
            .fetch(get(format!("http://{addr}/missing/s{i}"), Some("up")))
            .await
            .expect("answer");
        assert_eq!(r.status, 500);
    }
    assert!(c.uplink_available("up"));
}

#[tokio::test]
async fn a_really_failing_upstream_still_opens_the_breaker_under_a_burst() {
    let (addr, _, accepted) = busy_server(Duration::from_millis(20)).await;
    let c = client(vec![uplink("up", &format!("http://{addr}/"))], Vec::new());
    let fetches = (0..100).map(|i| {
        let c = &c;
        async move {
            c.fetch(get(format!("http://{addr}/down/{i}"), Some("up")))
                .await
                .map(|r| r.status)
        }
    });
    let results = futures_util::future::join_all(fetches).await;
    assert!(!c.uplink_available("up"), "503s open the breaker");
    let refused = results
        .iter()
        .filter(|r| matches!(r, Err(UpstreamError::UplinkDown { .. })))
        .count();
    let sent = accepted.load(Ordering::SeqCst);
    assert_eq!(
        refused + sent,
        100,
        "every fetch either went out or was refused"
    );
    assert!(
        sent <= MAX_IN_FLIGHT_PER_UPLINK + 2,
        "once open, queued fetches are refused without asking ({sent} sent)"
    );
    // A refused connection (nothing listening) opens it as well.
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        l.local_addr().expect("addr")
    };
    let c = client(
        vec![uplink("gone", &format!("http://{closed}/"))],
        Vec::new(),
    );
    for _ in 0..2 {
        let err = c
            .fetch(get(format!("http://{closed}/p"), Some("gone")))
            .await
            .expect_err("nothing listens");
        assert!(matches!(err, UpstreamError::Transport { .. }), "{err}");
    }
    assert!(!c.uplink_available("gone"));
}

#[tokio::test]
async fn an_uplink_slot_is_held_until_the_body_is_read_or_dropped() {
    let srv = TestServer::start(|_| ok("{}")).await;
    let c = client(vec![uplink("up", &srv.url("/"))], Vec::new());
    let mut held = Vec::new();
    for i in 0..MAX_IN_FLIGHT_PER_UPLINK {
        let resp = c
            .fetch(get(srv.url(&format!("/p{i}")), Some("up")))
            .await
            .expect("slot free");
        held.push(resp);
    }
    // Every slot is taken by an unread body: the next fetch queues.
    let next = c.fetch(get(srv.url("/next"), Some("up")));
    tokio::pin!(next);
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut next)
            .await
            .is_err(),
        "a fetch beyond the bound waits for a slot"
    );
    assert_eq!(srv.accepts(), MAX_IN_FLIGHT_PER_UPLINK);
    // Reading one body to its end frees its slot.
    let first = held.pop().expect("held");
    first.bytes(1024).await.expect("body");
    let resp = tokio::time::timeout(Duration::from_secs(5), &mut next)
        .await
        .expect("slot freed")
        .expect("fetch");
    assert_eq!(resp.status, 200);
    drop(resp);
    // Dropping an unread response frees its slot too.
    drop(held.pop());
    tokio::time::timeout(
        Duration::from_secs(5),
        c.fetch(get(srv.url("/after-drop"), Some("up"))),
    )
    .await
    .expect("slot freed by drop")
    .expect("fetch");
    assert!(c.uplink_available("up"));
}

/// Reads one request head from `sock`; false when the peer closed first.
async fn read_head(sock: &mut tokio::net::TcpStream) -> bool {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match sock.read(&mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    true
}

/// A keep-alive server that answers the first request of its first
/// connection, then closes that connection on reading the next request
/// (the race of an upstream's keep-alive timeout); `drop_all` closes every
/// connection on its first request instead. Counts accepted connections.
async fn closing_server(drop_all: bool) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let accepts = Arc::new(AtomicUsize::new(0));
    let a = Arc::clone(&accepts);
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let nth = a.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                if !read_head(&mut sock).await || drop_all {
                    return;
                }
                let keep = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n";
                let close = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\n";
                let (head, body) = if nth == 0 {
                    (keep, "one")
                } else {
                    (close, "two")
                };
                let _ = sock.write_all(format!("{head}{body}").as_bytes()).await;
                if nth == 0 {
                    // The next request on this connection is read and dropped.
                    let _ = read_head(&mut sock).await;
                }
            });
        }
    });
    (addr, accepts)
}

#[tokio::test]
async fn a_get_on_a_connection_the_upstream_closed_is_resent_once() {
    let (addr, accepts) = closing_server(false).await;
    let c = client(vec![uplink("up", &format!("http://{addr}/"))], Vec::new());
    let first = c
        .fetch(get(format!("http://{addr}/a"), Some("up")))
        .await
        .expect("first");
    assert_eq!(&first.bytes(1024).await.expect("body")[..], b"one");
    let second = c
        .fetch(get(format!("http://{addr}/b"), Some("up")))
        .await
        .expect("resent on a fresh connection");
    assert_eq!(&second.bytes(1024).await.expect("body")[..], b"two");
    assert_eq!(accepts.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_get_the_upstream_always_drops_fails_after_one_resend() {
    let (addr, accepts) = closing_server(true).await;
    let c = client(vec![uplink("up", &format!("http://{addr}/"))], Vec::new());
    let err = c
        .fetch(get(format!("http://{addr}/a?token=SEKRIT"), Some("up")))
        .await
        .expect_err("dropped twice");
    assert!(err.is_transport(), "{err}");
    assert_no_secret(&err);
    assert_eq!(accepts.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_post_is_never_resent() {
    let (addr, accepts) = closing_server(true).await;
    let c = client(vec![uplink("up", &format!("http://{addr}/"))], Vec::new());
    let body = Bytes::from_static(b"{}");
    let err = c
        .post_json(get(format!("http://{addr}/audit"), Some("up")), body)
        .await
        .expect_err("dropped");
    assert!(err.is_transport(), "{err}");
    assert_eq!(accepts.load(Ordering::SeqCst), 1);
}
