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
