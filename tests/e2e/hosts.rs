//! Host-aware URLs (issue 16): without `public_url`, every URL pnpr writes
//! (packument tarballs, `/~<uplink>/` rewrites, hosted packuments, lockfile
//! tarball URLs, v0 `package` frames) follows the host the client reached
//! it by, so a token keyed by that host in `.npmrc` matches them.
//!
//! Attacks: a spoofed `X-Forwarded-Host` from a peer outside
//! `network.trusted_proxies` changes nothing (control: from a trusted peer
//! it does); a `Host` that is not a bare origin falls back to the bound
//! address; a document rendered (and compressed) for one host is never
//! served with its URLs to another.

use pnpr_e2e::{add_user, Http, Pnpr, Project, RegistryMock};
use serde_json::{json, Value};

const PRIVATE: &str = "@private/foo";

/// An open mirror of registry-mock plus `corp`, an access-bearing uplink on
/// the same upstream with the private user's token; `@private/*` on `/`
/// routes through it for callers it admits. `extra` is appended.
fn config(mock: &RegistryMock, extra: &str) -> String {
    format!(
        "auth:\n  htpasswd:\n    file: ./htpasswd\nuplinks:\n  mock:\n    url: {u}\n  corp:\n    url: {u}\n    access: $authenticated\n    auth:\n      type: bearer\n      token_env: CORP_TOKEN\npackages:\n  '@private/*':\n    access: $authenticated\n    proxy: corp\n  '**':\n    access: $all\n    publish: $authenticated\n    proxy: mock\n{extra}",
        u = mock.url
    )
}

async fn start(mock: &RegistryMock, extra: &str) -> Pnpr {
    let (user, password) = RegistryMock::private_credentials();
    let upstream_token = mock.login(user, password).await;
    Pnpr::start(&config(mock, extra), &[("CORP_TOKEN", &upstream_token)])
}

/// Every `dist.tarball` of a packument.
fn tarballs(doc: &Value) -> Vec<String> {
    doc["versions"]
        .as_object()
        .map(|vs| {
            vs.values()
                .filter_map(|v| v["dist"]["tarball"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[track_caller]
fn assert_all_under(doc: &Value, base: &str) {
    let urls = tarballs(doc);
    assert!(!urls.is_empty(), "no tarballs in {doc}");
    for u in urls {
        assert!(u.starts_with(base), "{u} is not under {base}");
    }
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .expect("valid gzip");
    out
}

/// GET `url` (gzip offered, and decoded here) with `headers`.
async fn get_doc(http: &Http, url: &str, headers: &[(&str, &str)]) -> Value {
    let mut all = vec![("accept-encoding", "gzip")];
    all.extend_from_slice(headers);
    let r = http.send("GET", url, &all, None).await;
    r.assert_status(200);
    let body = match r.header("content-encoding") {
        Some("gzip") => gunzip(&r.body),
        _ => r.body.to_vec(),
    };
    serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{url}: {e}"))
}

/// `.npmrc` for a client that reaches pnpr at `base`: the scope on the
/// `/~corp/` endpoint, and the token keyed by that host (as `npm login`
/// writes it).
fn scoped_npmrc(base: &str, token: &str) -> String {
    let host = base.trim_start_matches("http:");
    format!("registry={base}\n@private:registry={base}~corp/\n{host}:_authToken={token}\n")
}

/// The server reached as `127.0.0.1` and as `localhost` in turn answers
/// each with its own URLs (mirror, endpoint and hosted packuments,
/// abbreviated and compressed), and npm, pnpm 12, pnpm 11.5.2
/// (`/v1/install`) and pnpm 12 (`--pnpr-server`, v0) install a private
/// package through each.
#[tokio::test]
async fn each_host_gets_its_own_urls_and_private_installs_work_through_both() {
    let mock = RegistryMock::start();
    let pnpr = start(&mock, "").await;
    let http = Http::raw();
    let alice = add_user(&Http::new(), &pnpr, "alice").await;
    let ip_base = pnpr.url.clone();
    let name_base = format!("http://localhost:{}/", pnpr.port);
    assert_ne!(ip_base, name_base);

    let hosted = Project::new(
        &json!({"name": "hosted-here", "version": "1.0.0", "main": "index.js"}),
        Some(&scoped_npmrc(&ip_base, &alice)),
    );
    hosted.write_file("index.js", "module.exports = 1;\n");
    hosted.npm(&["publish"]).assert_success();

    let auth = format!("Bearer {alice}");
    // Twice round, so each host also follows a cached rendering for the
    // other one.
    for base in [&ip_base, &name_base, &ip_base, &name_base] {
        for accept in ["application/json", "application/vnd.npm.install-v1+json"] {
            let h = [("accept", accept)];
            let doc = get_doc(&http, &format!("{base}@pnpm.e2e%2ffoo"), &h).await;
            assert_all_under(&doc, base);
            let doc = get_doc(&http, &format!("{base}hosted-here"), &h).await;
            assert_all_under(&doc, base);
            let h = [("accept", accept), ("authorization", auth.as_str())];
            let doc = get_doc(&http, &format!("{base}~corp/@private%2ffoo"), &h).await;
            assert_all_under(&doc, &format!("{base}~corp/"));
        }
        let v = get_doc(&http, &format!("{base}@pnpm.e2e%2ffoo/100.0.0"), &[]).await;
        let t = v["dist"]["tarball"].as_str().expect("tarball");
        assert!(t.starts_with(base.as_str()), "{t}");
    }

    for base in [&ip_base, &name_base] {
        let other = if base == &ip_base {
            &name_base
        } else {
            &ip_base
        };
        let pkg = json!({"name": "t", "version": "1.0.0", "private": true,
            "dependencies": {PRIVATE: "1.0.0", "@pnpm.e2e/pkg-with-1-dep": "^100.0.0"}});
        // npm and pnpm as plain registry clients, the scope on /~corp/.
        let npm = Project::new(&pkg, Some(&scoped_npmrc(base, &alice)));
        npm.npm(&["install"]).assert_success();
        npm.node_require("@private/foo/package.json")
            .assert_success();
        let lock = npm.read_file("package-lock.json");
        assert!(
            lock.contains(&format!("{base}~corp/@private/foo/-/")),
            "{lock}"
        );
        let pnpm = Project::new(&pkg, Some(&scoped_npmrc(base, &alice)));
        pnpm.pnpm12(&["install", "--registry", base])
            .assert_success();
        pnpm.node_require("@private/foo/package.json")
            .assert_success();

        // The accelerators, with `/` routing @private to corp: the lockfile
        // names the private tarball under the host the client used.
        let rc = format!("{}:_authToken={alice}\n", base.trim_start_matches("http:"));
        let v1 = Project::new(&pkg, Some(&rc));
        v1.pnpm11(&[
            "install",
            "--config.save=false",
            "--registry",
            base,
            "--pnpr-server",
            base,
        ])
        .assert_success();
        v1.node_require("@private/foo/package.json")
            .assert_success();
        let lock = v1.read_file("pnpm-lock.yaml");
        assert!(
            lock.contains(&format!("tarball: {base}~corp/@private/foo/-/")),
            "{lock}"
        );
        assert!(!lock.contains(other.as_str()), "{lock}");
        let v0 = Project::new(&pkg, Some(&rc));
        v0.pnpm12(&["install", "--registry", base, "--pnpr-server", base])
            .assert_success();
        v0.node_require("@private/foo/package.json")
            .assert_success();
        let lock = v0.read_file("pnpm-lock.yaml");
        assert!(
            lock.contains(&format!("tarball: {base}~corp/@private/foo/-/")),
            "{lock}"
        );
        assert!(!lock.contains(other.as_str()), "{lock}");
    }
}

/// v0 `package` frames carry tarball URLs under the registry the request
/// named, and a registry that is neither the request's host nor the bound
/// address is refused.
#[tokio::test]
async fn resolve_frames_follow_the_named_registry() {
    let mock = RegistryMock::start();
    let pnpr = start(&mock, "").await;
    let alice = add_user(&Http::new(), &pnpr, "alice").await;
    let http = Http::new();
    let name_base = format!("http://localhost:{}/", pnpr.port);
    let body = |registry: &str| {
        json!({"projects": [{"dir": ".", "dependencies": {"@pnpm.e2e/pkg-with-1-dep": "^100.0.0"}}],
               "registry": registry})
    };
    for base in [&pnpr.url, &name_base] {
        let r = http
            .post_json(
                &format!("{base}-/pnpr/v0/resolve"),
                &body(base),
                Some(&alice),
            )
            .await;
        r.assert_status(200);
        let frames: Vec<Value> = r
            .text()
            .lines()
            .map(|l| serde_json::from_str(l).expect("frame"))
            .collect();
        let packages: Vec<&Value> = frames.iter().filter(|f| f["type"] == "package").collect();
        assert!(!packages.is_empty(), "{}", r.text());
        for p in packages {
            let t = p["tarball"].as_str().expect("tarball");
            assert!(t.starts_with(base.as_str()), "{t}");
        }
    }
    // Attack: a registry on another host is not this pnpr.
    let r = http
        .post_json(
            &format!("{name_base}-/pnpr/v0/resolve"),
            &body(&format!("http://elsewhere.test:{}/", pnpr.port)),
            Some(&alice),
        )
        .await;
    r.assert_status(403);
}

/// `X-Forwarded-Host` / `-Proto` count only from `network.trusted_proxies`
/// (here 127.0.0.2); a `Host` that is not a bare origin is ignored; and no
/// rendering for one host reaches another.
#[tokio::test]
async fn forwarded_headers_count_only_from_trusted_proxies() {
    let mock = RegistryMock::start();
    let pnpr = start(&mock, "network:\n  trusted_proxies: [127.0.0.2]\n").await;
    let direct = Http::raw();
    let proxy = Http::raw_from("127.0.0.2".parse().expect("ip"));
    let url = format!("{}@pnpm.e2e%2ffoo", pnpr.url);
    let spoof = [
        ("x-forwarded-host", "registry.proxy.test"),
        ("x-forwarded-proto", "https"),
    ];

    // Attack: an untrusted peer's forwarded headers change nothing.
    let doc = get_doc(&direct, &url, &spoof).await;
    assert_all_under(&doc, &pnpr.url);
    // Control: the same headers from the trusted proxy name the URLs.
    let doc = get_doc(&proxy, &url, &spoof).await;
    assert_all_under(&doc, "https://registry.proxy.test/@pnpm.e2e/foo/-/");
    // ... and only for that request: the next direct one is back.
    let doc = get_doc(&direct, &url, &spoof).await;
    assert_all_under(&doc, &pnpr.url);
    let plain = direct.send("GET", &url, &[], None).await;
    assert!(!plain.text().contains("proxy.test"), "{}", plain.text());

    // A Host that is not a bare origin falls back to the bound address.
    for bad in [
        "evil.test/x",
        "user@evil.test",
        "evil.test:99999",
        "evil test",
        "evil.test?x=1",
    ] {
        let doc = get_doc(&direct, &url, &[("host", bad)]).await;
        assert_all_under(&doc, &pnpr.url);
    }

    // Two hosts in turn, compressed and not: neither sees the other's URLs.
    for round in 0..2 {
        for host in ["a.host.test", "b.host.test"] {
            let other = if host == "a.host.test" {
                "b.host"
            } else {
                "a.host"
            };
            let with_port = format!("{host}:{}", pnpr.port);
            let doc = get_doc(&direct, &url, &[("host", &with_port)]).await;
            assert_all_under(&doc, &format!("http://{with_port}/"));
            let r = direct
                .send("GET", &url, &[("host", &with_port)], None)
                .await;
            assert!(!r.text().contains(other), "round {round}: {}", r.text());
        }
    }
}

/// RFC 7239 `Forwarded` (first element) counts only from a trusted proxy,
/// wins over the `X-Forwarded-*` pair, and a malformed value or a host that
/// is not a bare origin names nothing.
#[tokio::test]
async fn rfc7239_forwarded_counts_only_from_trusted_proxies() {
    let mock = RegistryMock::start();
    let pnpr = start(&mock, "network:\n  trusted_proxies: [127.0.0.2]\n").await;
    let direct = Http::raw();
    let proxy = Http::raw_from("127.0.0.2".parse().expect("ip"));
    let url = format!("{}@pnpm.e2e%2ffoo", pnpr.url);
    let forwarded = [(
        "forwarded",
        "for=192.0.2.60;proto=https;host=\"reg.corp.test:8443\", host=inner.test",
    )];

    // Attack: an untrusted peer's `Forwarded` changes nothing.
    let doc = get_doc(&direct, &url, &forwarded).await;
    assert_all_under(&doc, &pnpr.url);
    // Control: from the trusted proxy its first element names the URLs...
    let doc = get_doc(&proxy, &url, &forwarded).await;
    assert_all_under(&doc, "https://reg.corp.test:8443/@pnpm.e2e/foo/-/");
    // ... over `X-Forwarded-*` when both are sent.
    let both = [
        forwarded[0],
        ("x-forwarded-host", "x.proxy.test"),
        ("x-forwarded-proto", "http"),
    ];
    let doc = get_doc(&proxy, &url, &both).await;
    assert_all_under(&doc, "https://reg.corp.test:8443/@pnpm.e2e/foo/-/");
    // An element without host/proto leaves the `X-` pair in charge.
    let only_for = [
        ("forwarded", "for=192.0.2.60"),
        ("x-forwarded-host", "x.proxy.test"),
    ];
    let doc = get_doc(&proxy, &url, &only_for).await;
    assert_all_under(&doc, "http://x.proxy.test/@pnpm.e2e/foo/-/");

    // Attack from the trusted peer's position: malformed values and hosts
    // that are not bare origins fall back to the `Host` the client used.
    for bad in [
        "host=evil.test/x",
        "host=\"user@evil.test\"",
        "host=\"unterminated",
        "host=a;host=b",
        "host=\"evil.test\"junk",
    ] {
        let doc = get_doc(&proxy, &url, &[("forwarded", bad)]).await;
        assert_all_under(&doc, &pnpr.url);
    }
}
