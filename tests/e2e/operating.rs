//! Operating pnpr (issue 14) end to end: request ids in headers, log lines
//! and error bodies; Prometheus metrics scraped with a real exposition
//! parser around a real pnpm 11.5.2 install; disk budgets with eviction.

use pnpr_e2e::{Http, Pnpr, RegistryMock};

const PKG: &str = "@pnpm.e2e/pkg-with-1-dep";

fn config(mock: &RegistryMock, extra: &str) -> String {
    format!(
        "log:\n  level: debug\nuplinks:\n  mock:\n    url: {}\npackages:\n  '**':\n    access: $all\n    publish: $authenticated\n    proxy: mock\n{extra}",
        mock.url
    )
}

/// The log lines of `logs` that carry `id`.
fn lines_with<'a>(logs: &'a str, id: &str) -> Vec<&'a str> {
    logs.lines().filter(|l| l.contains(id)).collect()
}

#[tokio::test]
async fn request_ids_reach_headers_logs_and_error_bodies() {
    let mock = RegistryMock::start();
    let pnpr = Pnpr::start(&config(&mock, ""), &[]);
    let http = Http::new();

    // A well-formed id is kept, echoed, and on every line of the request,
    // including the upstream fetch it caused.
    let id = "op-test.0001:a_b";
    let url = format!("{}{}", pnpr.url, PKG.replace('/', "%2f"));
    let resp = http.send("GET", &url, &[("x-request-id", id)], None).await;
    resp.assert_status(200);
    assert_eq!(resp.header("x-request-id"), Some(id));
    // The access log line is written after the body is handed over.
    let mut logs = pnpr.logs();
    for _ in 0..50 {
        if lines_with(&logs, id).iter().any(|l| l.contains("request")) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        logs = pnpr.logs();
    }
    let tagged = lines_with(&logs, id);
    assert!(
        tagged.iter().any(|l| l.contains("upstream fetch")),
        "no upstream fetch line carries the id:\n{logs}"
    );
    assert!(
        tagged
            .iter()
            .any(|l| l.contains("pnpr::http") && l.contains("status=200")),
        "the access log line lacks the id:\n{logs}"
    );

    // Error bodies carry it too; a generated one when none was sent.
    let missing = format!("{}@pnpm.e2e%2fno-such-package-here", pnpr.url);
    let resp = http
        .send("GET", &missing, &[("x-request-id", "err-1")], None)
        .await;
    resp.assert_status(404);
    assert_eq!(resp.header("x-request-id"), Some("err-1"));
    assert_eq!(resp.json()["requestId"], "err-1", "{}", resp.text());
    assert!(resp.json()["error"].is_string(), "{}", resp.text());

    let resp = http.get(&missing).await;
    let generated = resp
        .header("x-request-id")
        .expect("generated id")
        .to_string();
    assert_eq!(generated.len(), 32, "{generated}");
    assert_eq!(resp.json()["requestId"], generated.as_str());

    // Ill-formed ids (too long, unsafe characters) are replaced, never echoed.
    for bad in ["x".repeat(129), "a b\"c".to_string(), "a/b;c=d".to_string()] {
        let resp = http
            .send("GET", &missing, &[("x-request-id", &bad)], None)
            .await;
        let got = resp.header("x-request-id").expect("an id").to_string();
        assert_ne!(got, bad);
        assert_eq!(got.len(), 32, "{got}");
        assert_eq!(resp.json()["requestId"], got.as_str());
    }

    // 401s from the identity gate and axum's own rejections are stamped too.
    let resp = http
        .send(
            "GET",
            &format!("{}-/whoami", pnpr.url),
            &[("x-request-id", "who-1")],
            None,
        )
        .await;
    assert!(resp.status >= 400, "{}", resp.text());
    assert_eq!(resp.json()["requestId"], "who-1", "{}", resp.text());
}

/// One scrape, parsed by a Prometheus text-format parser.
struct Scrape(prometheus_parse::Scrape);

impl Scrape {
    async fn take(http: &Http, pnpr: &Pnpr) -> Scrape {
        let resp = http.get(&format!("{}-/metrics", pnpr.url)).await;
        resp.assert_status(200);
        assert!(
            resp.header("content-type")
                .is_some_and(|t| t.starts_with("text/plain; version=0.0.4")),
            "{:?}",
            resp.header("content-type")
        );
        let text = resp.text();
        let lines = text.lines().map(|l| Ok(l.to_string()));
        let parsed = prometheus_parse::Scrape::parse(lines).expect("valid exposition");
        // Every sample line was understood: the parser drops what it cannot
        // read, so compare with the sample lines of the text.
        let sample_lines = text
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .count();
        let buckets: usize = parsed
            .samples
            .iter()
            .map(|s| match &s.value {
                prometheus_parse::Value::Histogram(b) => b.len(),
                _ => 1,
            })
            .sum();
        assert_eq!(buckets, sample_lines, "unparsed lines in:\n{text}");
        Scrape(parsed)
    }

    /// Sum of the values of `metric` whose labels include every `labels` pair.
    fn sum(&self, metric: &str, labels: &[(&str, &str)]) -> f64 {
        self.0
            .samples
            .iter()
            .filter(|s| s.metric == metric)
            .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match &s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => *v,
                _ => 0.0,
            })
            .sum()
    }

    /// Every label value of `label` on `metric`.
    fn label_values(&self, label: &str) -> Vec<String> {
        self.0
            .samples
            .iter()
            .filter_map(|s| s.labels.get(label).map(str::to_string))
            .collect()
    }
}

fn pnpm_install_accelerated(pnpr: &Pnpr, deps: &[(&str, &str)]) {
    let project = pnpr_e2e::Project::with_dependencies(deps);
    project.pnpm11_install_through(&pnpr.url).assert_success();
    project.node_require(deps[0].0).assert_success();
}

#[tokio::test]
async fn metrics_move_with_a_real_pnpm_install() {
    let mock = RegistryMock::start();
    let pnpr = Pnpr::start(&config(&mock, ""), &[]);
    let http = Http::new();
    let before = Scrape::take(&http, &pnpr).await;

    pnpm_install_accelerated(&pnpr, &[(PKG, "^100.0.0")]);
    // Store sizes are measured at most once a second.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let after = Scrape::take(&http, &pnpr).await;
    let moved = |metric: &str, labels: &[(&str, &str)]| {
        after.sum(metric, labels) - before.sum(metric, labels)
    };
    let install = [("class", "install"), ("status", "200")];
    assert!(moved("pnpr_http_requests_total", &install) >= 1.0);
    assert!(
        moved(
            "pnpr_http_request_duration_seconds_count",
            &[("class", "install")]
        ) >= 1.0
    );
    assert!(moved("pnpr_install_requests_total", &[]) >= 1.0);
    assert!(moved("pnpr_install_packages_total", &[]) >= 2.0);
    assert!(moved("pnpr_install_files_sent_total", &[]) >= 2.0);
    assert!(moved("pnpr_install_bytes_sent_total", &[]) > 0.0);
    let fetched = [("uplink", "mock"), ("outcome", "ok")];
    assert!(moved("pnpr_upstream_fetches_total", &fetched) >= 4.0);
    assert!(
        moved(
            "pnpr_upstream_fetch_duration_seconds_count",
            &[("uplink", "mock")]
        ) >= 4.0
    );
    assert!(moved("pnpr_cache_lookups_total", &[("cache", "packument")]) >= 2.0);
    assert!(
        moved(
            "pnpr_cache_lookups_total",
            &[("cache", "tarball"), ("result", "miss")]
        ) >= 2.0
    );
    assert!(moved("pnpr_resolution_cache_lookups_total", &[("result", "miss")]) >= 1.0);
    assert_eq!(
        after.sum("pnpr_uplink_breaker_open", &[("uplink", "mock")]),
        0.0
    );
    assert!(after.sum("pnpr_resolution_cache_candidates", &[]) >= 1.0);
    assert!(after.sum("pnpr_resolution_cache_bytes", &[]) > 0.0);
    // One stored member per package, no raw files and no tarball kept for
    // an install-only fetch (RFC 0008 §4).
    assert!(after.sum("pnpr_store_objects", &[("store", "frames")]) >= 2.0);
    assert_eq!(after.sum("pnpr_store_objects", &[("store", "files")]), 0.0);
    assert_eq!(after.sum("pnpr_store_bytes", &[("store", "tarballs")]), 0.0);
    // The scrape itself is in flight while it renders.
    assert!(after.sum("pnpr_http_requests_in_flight", &[]) >= 1.0);

    // The same tree again: a resolution-cache hit, nothing fetched upstream.
    pnpm_install_accelerated(&pnpr, &[(PKG, "^100.0.0")]);
    let third = Scrape::take(&http, &pnpr).await;
    let hits = |s: &Scrape| s.sum("pnpr_resolution_cache_lookups_total", &[("result", "hit")]);
    assert!(hits(&third) - hits(&after) >= 1.0);

    // Bounded labels: no package or user name ever is one.
    for value in third.label_values("class") {
        assert!(!value.contains("pnpm.e2e"), "{value}");
    }
    for label in ["uplink", "store", "cache", "result", "outcome", "status"] {
        for value in third.label_values(label) {
            assert!(
                !value.contains('@') && !value.contains('/'),
                "{label}={value}"
            );
        }
    }
}

#[tokio::test]
async fn metrics_are_refused_outside_their_access_list() {
    let cfg = "auth:\n  htpasswd:\n    file: ./htpasswd\ngroups:\n  ops: [alice]\nmetrics:\n  access: [ops]\nuplinks: {}\n";
    let pnpr = Pnpr::start(cfg, &[]);
    let http = Http::new();
    let alice = pnpr_e2e::add_user(&http, &pnpr, "alice").await;
    let bob = pnpr_e2e::add_user(&http, &pnpr, "bob").await;
    let url = format!("{}-/metrics", pnpr.url);
    // Loopback alone no longer admits once the list does not name it.
    http.get(&url).await.assert_status(401);
    http.get_auth(&url, &bob).await.assert_status(403);
    let ok = http.get_auth(&url, &alice).await;
    ok.assert_status(200);
    assert!(
        ok.text().contains("pnpr_http_requests_total"),
        "{}",
        ok.text()
    );
}
