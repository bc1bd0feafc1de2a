//! Audit passthrough end to end: npm 11 and pnpm 12 `audit` against pnpr
//! report the advisory of an audit-capable upstream, while names the caller
//! sees only through an access-bearing uplink (`@private/*` via `corp`) or
//! the hosted store never reach that upstream (asserted on the upstream's
//! side), with the public names as the control. Also: identical requests
//! are answered from the cache, bodies are bounded, and a registry without
//! an audit-capable upstream answers an npm-style error instead of 404.

#[path = "audit_upstream.rs"]
mod audit_upstream;

use audit_upstream::{AuditUpstream, TITLE, VULNERABLE};
use pnpr_e2e::{add_user, Http, Pnpr, Project, RegistryMock};
use serde_json::{json, Value};

const PUBLIC_DEP: &str = "@pnpm.e2e/pkg-with-1-dep";
const PRIVATE_DEP: &str = "@private/foo";
const HOSTED: &str = "hosted-secret-lib";

fn config(mock: &RegistryMock, auditor: &AuditUpstream) -> String {
    format!(
        "auth:\n  htpasswd:\n    file: ./htpasswd\n\
         uplinks:\n  mock:\n    url: {m}\n  corp:\n    url: {m}\n    access: $authenticated\n    auth:\n      type: bearer\n      token_env: CORP_TOKEN\n  auditor:\n    url: {a}\n\
         audit:\n  uplink: auditor\n  cache_ttl: 1m\n\
         packages:\n  '@private/*':\n    access: $authenticated\n    proxy: corp\n  'hosted-*':\n    access: $authenticated\n    publish: $authenticated\n  '**':\n    access: $all\n    publish: $authenticated\n    proxy: mock\n",
        m = mock.url,
        a = auditor.url
    )
}

fn npmrc(pnpr: &Pnpr, token: &str) -> String {
    let host = pnpr.url.trim_start_matches("http:");
    format!(
        "registry={url}\n{host}:_authToken={token}\n@private:registry={url}~corp/\n{host}~corp/:_authToken={token}\n",
        url = pnpr.url
    )
}

async fn publish_hosted(pnpr: &Pnpr, token: &str) {
    let pkg = Project::new(
        &json!({"name": HOSTED, "version": "1.0.0", "main": "index.js"}),
        Some(&npmrc(pnpr, token)),
    );
    pkg.write_file("index.js", "module.exports = 1;\n");
    pkg.npm(&["publish"]).assert_success();
}

fn consumer(pnpr: &Pnpr, token: &str) -> Project {
    Project::new(
        &json!({"name": "consumer-app-secret", "version": "1.0.0", "private": true,
                "dependencies": {PUBLIC_DEP: "100.0.0", PRIVATE_DEP: "*", HOSTED: "1.0.0"}}),
        Some(&npmrc(pnpr, token)),
    )
}

fn assert_nothing_private_arrived(auditor: &AuditUpstream) {
    let sent = auditor.all_bodies();
    for private in [PRIVATE_DEP, HOSTED, "consumer-app-secret", "~corp"] {
        assert!(
            !sent.contains(private),
            "{private} reached the audit upstream: {sent}"
        );
    }
}

#[tokio::test]
async fn npm_and_pnpm_audit_report_upstream_advisories_without_leaking_private_names() {
    let mock = RegistryMock::start();
    let auditor = AuditUpstream::start();
    let (user, password) = RegistryMock::private_credentials();
    let corp_token = mock.login(user, password).await;
    let pnpr = Pnpr::start(&config(&mock, &auditor), &[("CORP_TOKEN", &corp_token)]);
    let http = Http::new();
    let alice = add_user(&http, &pnpr, "alice").await;
    publish_hosted(&pnpr, &alice).await;

    let npm_project = consumer(&pnpr, &alice);
    npm_project.npm(&["install"]).assert_success();
    npm_project
        .node_require("@private/foo/package.json")
        .assert_success();
    let out = npm_project.npm(&["audit", "--json"]);
    let report: Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("npm audit --json is not JSON ({e}): {out}"));
    let vuln = &report["vulnerabilities"][VULNERABLE];
    assert_eq!(vuln["severity"], "high", "{out}");
    assert!(report.to_string().contains(TITLE), "{out}");
    // Control: the public names of the tree did reach the upstream.
    let sent = auditor.all_bodies();
    assert!(
        sent.contains(VULNERABLE) && sent.contains(PUBLIC_DEP),
        "{sent}"
    );
    assert_nothing_private_arrived(&auditor);

    let pnpm_project = consumer(&pnpr, &alice);
    pnpm_project.pnpm12(&["install"]).assert_success();
    let out = pnpm_project.pnpm12(&["audit"]);
    assert!(out.combined().contains(TITLE), "{out}");
    assert!(out.combined().contains(VULNERABLE), "{out}");
    assert_nothing_private_arrived(&auditor);
    assert!(!pnpr.logs().contains(&corp_token), "uplink token logged");
}

/// The quick/full endpoints (yarn 1's `yarn audit`) withhold private names
/// at every depth of the tree; identical requests are served from the
/// cache; anonymous callers are filtered the same way.
#[tokio::test]
async fn audit_trees_are_filtered_and_identical_requests_cached() {
    let mock = RegistryMock::start();
    let auditor = AuditUpstream::start();
    let pnpr = Pnpr::start(&config(&mock, &auditor), &[("CORP_TOKEN", "unused")]);
    let http = Http::new();
    let alice = add_user(&http, &pnpr, "alice").await;
    let tree = json!({
        "name": "consumer-app-secret", "version": "1.0.0",
        "install": [], "remove": [], "metadata": {},
        "requires": {PUBLIC_DEP: "100.0.0", PRIVATE_DEP: "^1.0.0"},
        "dependencies": {
            PUBLIC_DEP: {"version": "100.0.0", "requires": {VULNERABLE: "^100.0.0"}},
            VULNERABLE: {"version": "100.0.0",
                         "requires": {HOSTED: "1.0.0"},
                         "dependencies": {HOSTED: {"version": "1.0.0"}}},
            PRIVATE_DEP: {"version": "1.0.0", "resolved": format!("{}~corp/@private/foo/-/foo-1.0.0.tgz", pnpr.url)}
        }
    });
    for path in ["-/npm/v1/security/audits/quick", "-/npm/v1/security/audits"] {
        let r = http
            .post_json(&format!("{}{path}", pnpr.url), &tree, Some(&alice))
            .await;
        r.assert_status(200);
        assert_eq!(
            r.json()["metadata"]["vulnerabilities"]["high"],
            1,
            "{}",
            r.text()
        );
    }
    assert_nothing_private_arrived(&auditor);

    let bulk = json!({VULNERABLE: ["100.0.0"], PRIVATE_DEP: ["1.0.0"], HOSTED: ["1.0.0"]});
    let url = format!("{}-/npm/v1/security/advisories/bulk", pnpr.url);
    let first = http.post_json(&url, &bulk, None).await;
    first.assert_status(200);
    assert_eq!(first.header("x-pnpr-audit"), Some("forwarded"));
    assert_eq!(first.json()[VULNERABLE][0]["title"], TITLE);
    let upstream_calls = auditor.received().len();
    let again = http.post_json(&url, &bulk, None).await;
    assert_eq!(again.header("x-pnpr-audit"), Some("cached"));
    assert_eq!(again.json(), first.json());
    assert_eq!(
        auditor.received().len(),
        upstream_calls,
        "cache hit reached upstream"
    );
    // A different body is a different question.
    let other = http
        .post_json(&url, &json!({PUBLIC_DEP: ["100.0.0"]}), None)
        .await;
    assert_eq!(other.header("x-pnpr-audit"), Some("forwarded"));
    assert_nothing_private_arrived(&auditor);
}

/// No audit-capable upstream: an npm-style error, not a 404; bodies above
/// `audit.max_body` are refused before anything is forwarded.
#[tokio::test]
async fn audits_without_a_capable_upstream_fail_clearly_and_bodies_are_bounded() {
    let mock = RegistryMock::start();
    let disabled = Pnpr::start("audit:\n  uplink: false\n", &[]);
    let http = Http::new();
    let url = format!("{}-/npm/v1/security/advisories/bulk", disabled.url);
    let r = http.post_json(&url, &json!({"a": ["1.0.0"]}), None).await;
    r.assert_status(501);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap_or_default()
            .contains("audit"),
        "{}",
        r.text()
    );

    // Default: the shared mirror's first uplink, here registry-mock, which
    // does not audit; and a small body bound.
    let pnpr = Pnpr::start(
        &format!(
            "uplinks:\n  mock:\n    url: {}\naudit:\n  max_body: 1kb\npackages:\n  '**':\n    access: $all\n    proxy: mock\n",
            mock.url
        ),
        &[],
    );
    let url = format!("{}-/npm/v1/security/advisories/bulk", pnpr.url);
    let r = http.post_json(&url, &json!({"a": ["1.0.0"]}), None).await;
    r.assert_status(501);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap_or_default()
            .contains("mock"),
        "{}",
        r.text()
    );
    let big: serde_json::Map<String, Value> = (0..200)
        .map(|i| (format!("pkg-{i}"), json!(["1.0.0"])))
        .collect();
    http.post_json(&url, &Value::Object(big), None)
        .await
        .assert_status(413);
    // npm reports the failure instead of crashing on a 404.
    let project = Project::new(
        &json!({"name": "c", "version": "1.0.0", "private": true,
                "dependencies": {PUBLIC_DEP: "100.0.0"}}),
        Some(&format!("registry={}\n", pnpr.url)),
    );
    project.npm(&["install"]).assert_success();
    let out = project.npm(&["audit"]);
    out.assert_failure();
    assert!(
        out.combined().contains("audit endpoint returned an error"),
        "{out}"
    );
}

/// Every pnpm the setup installs publishes to pnpr, installs a tree with a
/// private scope on `/~corp/` and a hosted package, and its `pnpm audit`
/// reports the upstream's advisory while no private name reaches it.
#[tokio::test]
async fn every_pnpm_publishes_installs_and_audits_through_pnpr() {
    let mock = RegistryMock::start();
    let auditor = AuditUpstream::start();
    let (user, password) = RegistryMock::private_credentials();
    let corp_token = mock.login(user, password).await;
    let pnpr = Pnpr::start(&config(&mock, &auditor), &[("CORP_TOKEN", &corp_token)]);
    let alice = add_user(&Http::new(), &pnpr, "alice").await;
    for (i, v) in ["11.5.2", "11.28.10", "12.23.0"].iter().enumerate() {
        let name = format!("hosted-by-pnpm-{i}");
        let pkg = Project::new(
            &json!({"name": name, "version": "1.0.0", "main": "index.js"}),
            Some(&npmrc(&pnpr, &alice)),
        );
        pkg.write_file("index.js", "module.exports = 1;\n");
        pkg.pnpm_v(v, &["publish", "--no-git-checks"])
            .assert_success();

        let app = Project::new(
            &json!({"name": "consumer-app-secret", "version": "1.0.0", "private": true,
                    "dependencies": {PUBLIC_DEP: "100.0.0", PRIVATE_DEP: "*", name.as_str(): "1.0.0"}}),
            Some(&npmrc(&pnpr, &alice)),
        );
        // The package was published a second ago; pnpm 11's default age
        // rule would hold it back.
        app.write_file("pnpm-workspace.yaml", "minimumReleaseAge: 0\n");
        app.pnpm_v(v, &["install"]).assert_success();
        app.node_require("@private/foo/package.json")
            .assert_success();
        let out = app.pnpm_v(v, &["audit"]);
        assert!(out.combined().contains(TITLE), "pnpm {v}: {out}");
        assert!(out.combined().contains(VULNERABLE), "pnpm {v}: {out}");
        let sent = auditor.all_bodies();
        assert!(
            !sent.contains(&name),
            "pnpm {v}: hosted name reached the upstream"
        );
        assert_nothing_private_arrived(&auditor);
    }
}
