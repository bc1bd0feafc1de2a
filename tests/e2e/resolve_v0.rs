//! The resolve protocol v0 (`GET /-/pnpr`, `POST /-/pnpr/v0/resolve`,
//! `POST /-/pnpr/v0/verify-lockfile`) end to end with the released clients
//! that speak it: pnpm 12.21.0, pnpm 12.23.0 (native) and pnpm 11.28.10 (on
//! Node 22). Each installs through `--pnpr-server` from an empty store and
//! must write the lockfile it writes when resolving against pnpr as a plain
//! registry; frozen installs, private packages through `/~<uplink>/`,
//! refusals and unsupported settings are checked on the wire too, and pnpm
//! 11.9.0's body (its `.npmrc` credentials as `authHeaders`) with raw requests.

#[path = "fake_upstream.rs"]
mod fake_upstream;

use fake_upstream::{FakeUpstream, Reply};
use pnpr_e2e::fixtures::{direct_dependency_names, fixture_dirs, fixture_name, project_from};
use pnpr_e2e::{add_user, Http, Pnpr, Project, RegistryMock};

/// Every released client of the resolve protocol the setup installs.
const CLIENTS: &[&str] = &["11.28.10", "12.21.0", "12.23.0"];

/// The clients the per-client flows run with: [`CLIENTS`], or the
/// comma-separated `PNPR_V0_CLIENTS` (e.g. a version installed on demand by
/// `PNPR_EXTRA_CLIENTS=<v> tests/setup.sh`, RFC 0006 "Other released
/// clients").
fn clients() -> Vec<String> {
    env_clients().unwrap_or_else(|| CLIENTS.iter().map(|c| c.to_string()).collect())
}

fn env_clients() -> Option<Vec<String>> {
    let list = std::env::var("PNPR_V0_CLIENTS").ok()?;
    Some(
        list.split(',')
            .map(|c| c.trim().to_string())
            .filter(|c| !c.is_empty())
            .collect(),
    )
}

/// Open mirror of registry-mock plus an access-bearing `corp` uplink (the
/// same upstream with the private user's token) that only `team` may use;
/// `@private/*` on `/` is routed through it for the callers it admits.
fn config(mock: &RegistryMock) -> String {
    format!(
        "auth:\n  htpasswd:\n    file: ./htpasswd\ngroups:\n  team: [alice]\nuplinks:\n  mock:\n    url: {u}\n  corp:\n    url: {u}\n    access: team\n    auth:\n      type: bearer\n      token_env: CORP_TOKEN\npackages:\n  '@private/*':\n    access: $authenticated\n    proxy: corp\n  '**':\n    access: $all\n    publish: $authenticated\n    proxy: mock\n",
        u = mock.url
    )
}

struct Setup {
    _mock: RegistryMock,
    pnpr: Pnpr,
    alice: String,
}

async fn setup() -> Setup {
    let mock = RegistryMock::start();
    let (user, password) = RegistryMock::private_credentials();
    let upstream_token = mock.login(user, password).await;
    let pnpr = Pnpr::start(&config(&mock), &[("CORP_TOKEN", &upstream_token)]);
    let http = Http::new();
    let alice = add_user(&http, &pnpr, "alice").await;
    Setup {
        _mock: mock,
        pnpr,
        alice,
    }
}

/// `.npmrc` giving `token` for every path of pnpr (registry, `/~corp/`
/// and the resolver endpoints share the host).
fn npmrc(pnpr: &Pnpr, token: &str) -> String {
    format!(
        "{}:_authToken={token}\n",
        pnpr.url.trim_start_matches("http:")
    )
}

fn public_project(pnpr: &Pnpr, token: &str) -> Project {
    let pkg = serde_json::json!({"name": "t", "version": "1.0.0", "private": true,
        "dependencies": {"@pnpm.e2e/pkg-with-1-dep": "^100.0.0", "@pnpm.e2e/foo": "100.0.0"},
        "devDependencies": {"@foo/no-deps": "1.0.0"}});
    Project::new(&pkg, Some(&npmrc(pnpr, token)))
}

/// Flags every run shares: resolve against pnpr, and don't fail on build
/// scripts nobody approved (not a resolution concern).
fn flags<'a>(registry: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["--registry", registry, "--config.strict-dep-builds=false"];
    args.extend_from_slice(extra);
    args
}

#[tokio::test]
async fn handshake_advertises_v0_only() {
    let s = setup().await;
    let r = Http::new().get(&format!("{}-/pnpr", s.pnpr.url)).await;
    r.assert_status(200);
    assert_eq!(r.json(), serde_json::json!({"pnpr": {"versions": [0]}}));
}

#[tokio::test]
async fn each_client_installs_through_the_resolver_with_lockfile_parity() {
    let s = setup().await;
    let url = s.pnpr.url.clone();
    for v in &clients() {
        let direct = public_project(&s.pnpr, &s.alice);
        direct
            .pnpm_v(v, &flags(&url, &["install", "--lockfile-only"]))
            .assert_success();
        let expected = direct.read_file("pnpm-lock.yaml");

        let through = public_project(&s.pnpr, &s.alice);
        let out = through.pnpm_v(v, &flags(&url, &["install", "--pnpr-server", &url]));
        out.assert_success();
        assert_eq!(
            through.read_file("pnpm-lock.yaml"),
            expected,
            "pnpm {v}: lockfile differs\n{out}"
        );
        through
            .node_require("@pnpm.e2e/pkg-with-1-dep")
            .assert_success();
        assert!(
            s.pnpr.logs().contains("resolve v0"),
            "pnpm {v} did not use the resolver:\n{}",
            s.pnpr.logs()
        );

        // Frozen install with the lockfile just written, fresh store.
        let frozen = public_project(&s.pnpr, &s.alice);
        frozen.write_file("pnpm-lock.yaml", &expected);
        frozen
            .pnpm_v(
                v,
                &flags(
                    &url,
                    &["install", "--frozen-lockfile", "--pnpr-server", &url],
                ),
            )
            .assert_success();
        assert_eq!(frozen.read_file("pnpm-lock.yaml"), expected, "pnpm {v}");
        frozen
            .node_require("@foo/no-deps/package.json")
            .assert_success();
    }
}

async fn post(url: &str, token: Option<&str>, body: &serde_json::Value) -> (u16, String) {
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let mut req = client
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.expect("request");
    let status = r.status().as_u16();
    (status, r.text().await.expect("body"))
}

#[tokio::test]
async fn anonymous_callers_and_unsupported_settings_are_refused() {
    let s = setup().await;
    let url = format!("{}-/pnpr/v0/resolve", s.pnpr.url);
    let body = serde_json::json!({"projects": [{"dir": ".",
        "dependencies": {"@pnpm.e2e/pkg-with-1-dep": "^100.0.0"}}],
        "registry": s.pnpr.url});
    let (status, text) = post(&url, None, &body).await;
    assert_eq!(status, 401, "{text}");

    let mut with_catalog = body.clone();
    with_catalog["catalogs"] = serde_json::json!({"default": {"a": "1.0.0"}});
    let (status, text) = post(&url, Some(&s.alice), &with_catalog).await;
    assert_eq!(status, 400, "{text}");
    assert!(
        text.contains("`catalogs`") && text.contains("not supported"),
        "{text}"
    );

    let (status, text) = post(&url, Some(&s.alice), &body).await;
    assert_eq!(status, 200, "{text}");
    let frames: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    let (last, packages) = frames.split_last().expect("frames");
    assert_eq!(last["type"], "done", "{text}");
    assert_eq!(last["lockfileFormat"], "pnpm-lock/9.0");
    assert_eq!(packages.len(), 2, "{text}");
    for p in packages {
        assert_eq!(p["type"], "package");
        let tarball = p["tarball"].as_str().expect("tarball");
        assert!(tarball.starts_with(&s.pnpr.url), "{tarball}");
        let r = Http::new().get_auth(tarball, &s.alice).await;
        r.assert_status(200);
    }
}

/// A project needing the private `@private/foo` next to a public package,
/// with `token` for every pnpr path.
fn private_project(pnpr: &Pnpr, token: &str) -> Project {
    let pkg = serde_json::json!({"name": "p", "version": "1.0.0", "private": true,
        "dependencies": {"@private/foo": "1.0.0", "@pnpm.e2e/pkg-with-1-dep": "^100.0.0"}});
    Project::new(&pkg, Some(&npmrc(pnpr, token)))
}

#[tokio::test]
async fn private_packages_resolve_for_admitted_callers_only_on_every_client() {
    let s = setup().await;
    let http = Http::new();
    let bob = add_user(&http, &s.pnpr, "bob").await;
    let url = s.pnpr.url.clone();
    let corp = format!("{url}~corp/");
    for v in &clients() {
        // Control: alice (in `team`) through the endpoint and through `/`.
        for registry in [&corp, &url] {
            let p = private_project(&s.pnpr, &s.alice);
            let out = p.pnpm_v(v, &flags(registry, &["install", "--pnpr-server", &url]));
            out.assert_success();
            p.node_require("@private/foo/package.json").assert_success();
            let lock = p.read_file("pnpm-lock.yaml");
            assert!(lock.contains("'@private/foo@1.0.0':"), "pnpm {v}:\n{lock}");
        }
        // Attack: bob asks for the same tree both ways and gets nothing.
        for registry in [&corp, &url] {
            let p = private_project(&s.pnpr, &bob);
            let out = p.pnpm_v(v, &flags(registry, &["install", "--pnpr-server", &url]));
            out.assert_failure();
            assert!(!p.exists("node_modules/@private/foo"), "pnpm {v}");
            assert!(!out.combined().contains("sha512-"), "pnpm {v}: {out}");
        }
    }
    // On the wire: whatever bob's requests answer, no frame names the
    // private package, its integrity or an endpoint tarball.
    let alice_lock = private_project(&s.pnpr, &s.alice);
    alice_lock
        .pnpm_v("12.23.0", &flags(&corp, &["install", "--lockfile-only"]))
        .assert_success();
    let lock = alice_lock.read_file("pnpm-lock.yaml");
    let integrity = lock
        .lines()
        .skip_while(|l| !l.contains("'@private/foo@1.0.0':"))
        .find_map(|l| l.split("integrity: ").nth(1))
        .expect("private integrity in alice's lockfile")
        .trim_end_matches('}')
        .to_string();
    let resolve = format!("{url}-/pnpr/v0/resolve");
    for registry in [&corp, &url] {
        let body = serde_json::json!({"projects": [{"dir": ".",
            "dependencies": {"@private/foo": "1.0.0", "@pnpm.e2e/pkg-with-1-dep": "^100.0.0"}}],
            "registry": registry});
        let (status, text) = post(&resolve, Some(&bob), &body).await;
        assert_ne!(status, 200, "{text}");
        for secret in [integrity.as_str(), "@private/foo/-/", "foo-1.0.0.tgz"] {
            assert!(!text.contains(secret), "leaked {secret}: {text}");
        }
        let (status, text) = post(&resolve, Some(&s.alice), &body).await;
        assert_eq!(status, 200, "control: {text}");
        assert!(text.contains(&integrity), "control: {text}");
    }
}

#[tokio::test]
async fn release_age_violations_and_refused_settings_reach_each_client() {
    let s = setup().await;
    let http = Http::new();
    let url = s.pnpr.url.clone();
    pnpr_e2e::publish::publish(&http, &url, &s.alice, "fresh-pkg", "1.0.0", &[]).await;
    let pkg = serde_json::json!({"name": "f", "version": "1.0.0", "private": true,
        "dependencies": {"fresh-pkg": "1.0.0"}});
    for v in &clients() {
        // A lockfile written without an age rule...
        let young = Project::new(&pkg, Some(&npmrc(&s.pnpr, &s.alice)));
        young.write_file("pnpm-workspace.yaml", "minimumReleaseAge: 0\n");
        young
            .pnpm_v(v, &flags(&url, &["install", "--pnpr-server", &url]))
            .assert_success();
        let lock = young.read_file("pnpm-lock.yaml");
        // ...is refused by the verify path under the default age rule.
        let frozen = Project::new(&pkg, Some(&npmrc(&s.pnpr, &s.alice)));
        frozen.write_file("pnpm-lock.yaml", &lock);
        let out = frozen.pnpm_v(
            v,
            &flags(
                &url,
                &["install", "--frozen-lockfile", "--pnpr-server", &url],
            ),
        );
        out.assert_failure();
        assert!(
            out.combined().contains("fresh-pkg"),
            "pnpm {v}: the violation does not name the package\n{out}"
        );
        assert!(!frozen.exists("node_modules/fresh-pkg"), "pnpm {v}");

        // A setting the server does not implement is refused by name.
        let cat = Project::new(
            &serde_json::json!({"name": "c", "version": "1.0.0", "private": true,
                "dependencies": {"@pnpm.e2e/foo": "catalog:"}}),
            Some(&npmrc(&s.pnpr, &s.alice)),
        );
        cat.write_file(
            "pnpm-workspace.yaml",
            "catalog:\n  '@pnpm.e2e/foo': 100.0.0\n",
        );
        let out = cat.pnpm_v(v, &flags(&url, &["install", "--pnpr-server", &url]));
        out.assert_failure();
        assert!(
            out.combined().contains("catalogs"),
            "pnpm {v}: the refusal does not name the field\n{out}"
        );
    }
}

#[tokio::test]
async fn an_update_through_the_resolver_matches_the_client_resolving_directly() {
    let s = setup().await;
    let url = s.pnpr.url.clone();
    for v in &clients() {
        let mut locks = Vec::new();
        for through in [false, true] {
            let p = public_project(&s.pnpr, &s.alice);
            if through {
                // `pnpm add` has no `--pnpr-server` flag; the setting does.
                p.write_file("pnpm-workspace.yaml", &format!("pnprServer: {url}\n"));
            }
            p.pnpm_v(v, &flags(&url, &["install"])).assert_success();
            let add = ["add", "@pnpm.e2e/dep-of-pkg-with-1-dep@100.0.0"];
            let out = p.pnpm_v(v, &flags(&url, &add));
            out.assert_success();
            p.node_require("@pnpm.e2e/dep-of-pkg-with-1-dep")
                .assert_success();
            if through {
                assert!(s.pnpr.logs().contains("resolve v0"), "pnpm {v}: {out}");
            }
            locks.push(p.read_file("pnpm-lock.yaml"));
        }
        assert_eq!(locks[0], locks[1], "pnpm {v}: update lockfiles differ");
    }
}

/// The clients the fixture-corpus parity runs with: pnpm 12.23.0 (the
/// latest) in the README test command; `PNPR_V0_CLIENTS=11.28.10,12.21.0,12.23.0`
/// runs the whole matrix.
fn corpus_clients() -> Vec<String> {
    env_clients().unwrap_or_else(|| vec!["12.23.0".to_string()])
}

/// Each fixture, resolved by the client through `--pnpr-server`, gets the
/// lockfile the same client writes resolving directly against the same
/// upstream (registry-mock), and its direct dependencies are installed.
#[tokio::test]
async fn lockfile_parity_over_the_fixture_corpus() {
    let mock = RegistryMock::start();
    let pnpr = Pnpr::start(
        &format!(
            "auth:\n  htpasswd:\n    file: ./htpasswd\nuplinks:\n  mock:\n    url: {}\npackages:\n  '**':\n    access: $all\n    publish: $authenticated\n    proxy: mock\n",
            mock.url
        ),
        &[],
    );
    let token = add_user(&Http::new(), &pnpr, "alice").await;
    let rc = npmrc(&pnpr, &token);
    let url = pnpr.url.clone();
    let mut failures = Vec::new();
    let fixtures = fixture_dirs();
    for v in corpus_clients() {
        for fixture in &fixtures {
            let name = fixture_name(fixture);
            if let Err(e) = fixture_parity(&v, fixture, &mock.url, &url, &rc) {
                failures.push(format!("pnpm {v}, {name}: {e}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures over {} fixtures:\n\n{}",
        failures.len(),
        fixtures.len(),
        failures.join("\n\n")
    );
}

fn fixture_parity(
    v: &str,
    fixture: &std::path::Path,
    upstream: &str,
    pnpr_url: &str,
    rc: &str,
) -> Result<(), String> {
    let direct = project_from(fixture, None);
    let direct_out = direct.pnpm_v(v, &flags(upstream, &["install", "--lockfile-only"]));
    let through = project_from(fixture, Some(rc));
    let out = through.pnpm_v(
        v,
        &flags(
            pnpr_url,
            &["install", "--config.save=false", "--pnpr-server", pnpr_url],
        ),
    );
    match (direct_out.success(), out.success()) {
        // A project this client refuses (pnpm 12: a registry package's
        // `link:` dependency) must be refused through pnpr too.
        (false, false) => return Ok(()),
        (false, true) => return Err(format!("direct pnpm failed, pnpr installed:\n{direct_out}")),
        (true, false) => return Err(format!("install through pnpr failed:\n{out}")),
        (true, true) => {}
    }
    let expected = direct.read_file("pnpm-lock.yaml");
    let got = through.read_file("pnpm-lock.yaml");
    if got != expected {
        return Err(format!(
            "lockfiles differ\n--- direct ---\n{expected}\n--- through pnpr ---\n{got}"
        ));
    }
    let pkg: serde_json::Value =
        serde_json::from_str(&through.read_file("package.json")).map_err(|e| e.to_string())?;
    for dep in direct_dependency_names(&pkg) {
        let out = through.node_require(&format!("{dep}/package.json"));
        if !out.success() {
            return Err(format!("{dep} not linked:\n{out}"));
        }
    }
    Ok(())
}

/// `.npmrc` of a user who maps the `@private` scope to pnpr's `/~corp/`
/// endpoint (what `npm login --scope=@private --registry=…/~corp/` leaves)
/// next to `registry=` pnpr, with `token` for every pnpr path.
fn scoped_npmrc(base: &str, scope_registry: &str, token: &str) -> String {
    let host = base.trim_start_matches("http:");
    format!("registry={base}\n@private:registry={scope_registry}\n{host}:_authToken={token}\n")
}

fn scoped_project(base: &str, scope_registry: &str, token: &str) -> Project {
    let pkg = serde_json::json!({"name": "p", "version": "1.0.0", "private": true,
        "dependencies": {"@private/foo": "1.0.0", "@pnpm.e2e/pkg-with-1-dep": "^100.0.0"}});
    Project::new(&pkg, Some(&scoped_npmrc(base, scope_registry, token)))
}

/// A v0 body as pnpm 11.28/12 send it for `scoped_npmrc` (`registries`:
/// registry URL → the scopes routed to it).
fn scoped_body(registry: &str, scope_registry: &str) -> serde_json::Value {
    serde_json::json!({"projects": [{"dir": ".",
        "dependencies": {"@private/foo": "1.0.0", "@pnpm.e2e/pkg-with-1-dep": "^100.0.0"}}],
        "registry": registry,
        "registries": {scope_registry: {"scopes": ["@private"]}},
        "acceptedLockfileFormats": ["pnpm-lock/9.0"]})
}

/// Per-scope registries (`@private:registry=<pnpr>/~corp/` in `.npmrc`,
/// sent as `registries`): every client installs the private package through
/// `--pnpr-server` with the lockfile it writes resolving directly through
/// the same endpoints, and frozen from that lockfile; a caller the uplink
/// does not admit gets no private name, integrity or URL in any frame and
/// no package from the lockfile; a scope mapped to any URL that is not
/// pnpr's own is refused with 400 before anything reaches that URL.
#[tokio::test]
async fn scope_registries_route_to_pnpr_endpoints_for_admitted_callers_only() {
    let s = setup().await;
    let http = Http::new();
    let bob = add_user(&http, &s.pnpr, "bob").await;
    let url = s.pnpr.url.clone();
    let corp = format!("{url}~corp/");
    let mut integrity = String::new();
    for v in &clients() {
        // Control: alice resolving directly, then through the resolver.
        let direct = scoped_project(&url, &corp, &s.alice);
        direct
            .pnpm_v(v, &flags(&url, &["install", "--lockfile-only"]))
            .assert_success();
        let expected = direct.read_file("pnpm-lock.yaml");
        assert!(
            expected.contains("'@private/foo@1.0.0':"),
            "pnpm {v}:\n{expected}"
        );
        // pnpm writes no tarball for a package at its scope registry's
        // default URL; the resolver must not either.
        assert!(!expected.contains("tarball:"), "pnpm {v}:\n{expected}");
        let through = scoped_project(&url, &corp, &s.alice);
        let out = through.pnpm_v(v, &flags(&url, &["install", "--pnpr-server", &url]));
        out.assert_success();
        assert_eq!(
            through.read_file("pnpm-lock.yaml"),
            expected,
            "pnpm {v}: lockfile differs\n{out}"
        );
        through
            .node_require("@private/foo/package.json")
            .assert_success();
        // Frozen install of that lockfile from an empty store (the verify
        // path): alice gets the package, bob holding the same lockfile not.
        for (token, admitted) in [(&s.alice, true), (&bob, false)] {
            let frozen = scoped_project(&url, &corp, token);
            frozen.write_file("pnpm-lock.yaml", &expected);
            let out = frozen.pnpm_v(
                v,
                &flags(
                    &url,
                    &["install", "--frozen-lockfile", "--pnpr-server", &url],
                ),
            );
            assert_eq!(out.success(), admitted, "pnpm {v} frozen: {out}");
            assert_eq!(
                frozen.exists("node_modules/@private/foo/package.json"),
                admitted,
                "pnpm {v} frozen"
            );
        }
        integrity = expected
            .lines()
            .skip_while(|l| !l.contains("'@private/foo@1.0.0':"))
            .find_map(|l| l.split("integrity: ").nth(1))
            .expect("private integrity")
            .trim_end_matches('}')
            .to_string();

        // Attack: bob, not admitted by corp, with the same `.npmrc`.
        let p = scoped_project(&url, &corp, &bob);
        let out = p.pnpm_v(v, &flags(&url, &["install", "--pnpr-server", &url]));
        out.assert_failure();
        assert!(!p.exists("node_modules/@private/foo"), "pnpm {v}");
        assert!(!out.combined().contains(&integrity), "pnpm {v}: {out}");
    }

    // On the wire, and through the host name too: pnpr matches its own
    // endpoints by the request's public base.
    let name_base = format!("http://localhost:{}/", s.pnpr.port);
    for base in [&url, &name_base] {
        let corp = format!("{base}~corp/");
        let resolve = format!("{base}-/pnpr/v0/resolve");
        let (status, text) = post(&resolve, Some(&bob), &scoped_body(base, &corp)).await;
        assert_eq!(status, 403, "{text}");
        for secret in [integrity.as_str(), "@private/foo/-/", "foo-1.0.0.tgz"] {
            assert!(!text.contains(secret), "leaked {secret}: {text}");
        }
        let (status, text) = post(&resolve, Some(&s.alice), &scoped_body(base, &corp)).await;
        assert_eq!(status, 200, "control: {text}");
        let frame = text
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("frame"))
            .find(|f| f["name"] == "@private/foo")
            .expect("a frame for the private package");
        assert_eq!(frame["integrity"], integrity.as_str());
        let tarball = frame["tarball"].as_str().expect("tarball");
        assert!(
            tarball.starts_with(&format!("{corp}@private/foo/-/")),
            "{tarball}"
        );
        http.get_auth(tarball, &s.alice).await.assert_status(200);
    }

    // Attack: the scope mapped to a foreign loopback server, to another
    // path on pnpr's host, or to a host pnpr is not serving this request as.
    let foreign = FakeUpstream::start(|_| Reply::status(404));
    let resolve = format!("{url}-/pnpr/v0/resolve");
    for target in [
        foreign.url.clone(),
        format!("{}~corp/", foreign.url),
        format!("{url}-/pnpr/"),
        format!("http://elsewhere.test:{}/~corp/", s.pnpr.port),
    ] {
        let (status, text) = post(&resolve, Some(&s.alice), &scoped_body(&url, &target)).await;
        assert_eq!(status, 400, "{target}: {text}");
        assert!(
            text.contains("`registries`") && text.contains("scope @private is mapped to"),
            "{text}"
        );
    }
    // The real client, scope on the foreign server: refused, nothing fetched
    // from that server by pnpr.
    let p = scoped_project(&url, &foreign.url, &s.alice);
    let out = p.pnpm_v("12.23.0", &flags(&url, &["install", "--pnpr-server", &url]));
    out.assert_failure();
    assert!(
        out.combined().contains("scope @private is mapped to"),
        "{out}"
    );
    assert_eq!(foreign.accepts(), 0, "pnpr reached a client-chosen URL");
}

// ---- Cold-server prefetch and early frames (RFC 0006 "Cold server") ----

/// A v0 body as pnpm 12 sends it (`acceptedLockfileFormats` marks pnpm 12).
fn pnpm12_body(registry: &str, dependencies: serde_json::Value) -> serde_json::Value {
    serde_json::json!({"projects": [{"dir": ".", "dependencies": dependencies}],
        "registry": registry, "acceptedLockfileFormats": ["pnpm-lock/9.0"]})
}

/// The NDJSON frames of a resolve answer.
fn frames_of(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("frame {l}: {e}")))
        .collect()
}

/// Whether the CAS under `dir` holds the object of `integrity` (its file is
/// named after the digest's hex, minus the two-character directory).
fn in_cas(dir: &std::path::Path, integrity: &str) -> bool {
    use base64::Engine;
    let b64 = integrity.split_once('-').map_or(integrity, |(_, b)| b);
    let Ok(digest) = base64::engine::general_purpose::STANDARD.decode(b64) else {
        return false;
    };
    let hex = hex::encode(digest);
    file_named(dir, &hex[2..])
}

fn file_named(dir: &std::path::Path, name: &str) -> bool {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return false;
    };
    rd.flatten().any(|e| {
        let p = e.path();
        if p.is_dir() {
            file_named(&p, name)
        } else {
            e.file_name() == name
        }
    })
}

/// Waits up to 20 s for `done()`.
async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Upstream fetches pnpr made so far (every uplink and outcome).
async fn upstream_fetches(pnpr: &Pnpr) -> u64 {
    let text = Http::new()
        .get(&format!("{}-/metrics", pnpr.url))
        .await
        .text();
    text.lines()
        .filter(|l| l.starts_with("pnpr_upstream_fetches_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// A cold v0 resolution from pnpm 12 frames packages while it resolves
/// (`x-pnpr-early-frames`), frames every package of the final lockfile with
/// its integrity, and leaves every framed tarball in the CAS without the
/// client asking for it: the GETs that follow are served without another
/// upstream fetch. A second, cached resolution is answered as before. Then
/// the real pnpm 12.21.0 client installs through a cold server and writes
/// the lockfile it writes resolving directly.
#[tokio::test]
async fn a_cold_resolution_frames_early_and_prefetches_every_tarball() {
    let s = setup().await;
    let url = s.pnpr.url.clone();
    let resolve = format!("{url}-/pnpr/v0/resolve");
    let body = pnpm12_body(
        &url,
        serde_json::json!({"@pnpm.e2e/pkg-with-1-dep": "^100.0.0", "@pnpm.e2e/foo": "100.0.0",
            "@foo/no-deps": "1.0.0"}),
    );
    let http = Http::new();
    let r = http.post_json(&resolve, &body, Some(&s.alice)).await;
    r.assert_status(200);
    assert_eq!(r.header("x-pnpr-early-frames"), Some("1"), "{}", r.text());
    assert_eq!(r.header("x-pnpr-resolution"), Some("resolved"));
    let frames = frames_of(&r.text());
    let done = frames.last().expect("frames");
    assert_eq!(done["type"], "done", "{}", r.text());
    let framed: std::collections::HashMap<String, (String, String)> = frames
        .iter()
        .filter(|f| f["type"] == "package")
        .map(|f| {
            let s = |k: &str| f[k].as_str().unwrap_or_default().to_string();
            (s("id"), (s("integrity"), s("tarball")))
        })
        .collect();
    let packages = done["lockfile"]["packages"].as_object().expect("packages");
    assert_eq!(packages.len(), 4, "{}", r.text());
    for (id, info) in packages {
        let integrity = info["resolution"]["integrity"].as_str().expect("integrity");
        assert_eq!(
            framed.get(id).map(|(i, _)| i.as_str()),
            Some(integrity),
            "{id} framed with its integrity"
        );
    }
    // Nobody fetched a tarball, yet every one lands in the CAS.
    for (id, (integrity, _)) in &framed {
        eventually(&format!("{id} prefetched"), || {
            in_cas(s.pnpr.data_dir(), integrity)
        })
        .await;
    }
    let before = upstream_fetches(&s.pnpr).await;
    for (id, (_, tarball)) in &framed {
        assert!(tarball.starts_with(&url), "{id}: {tarball}");
        http.get_auth(tarball, &s.alice).await.assert_status(200);
    }
    assert_eq!(
        upstream_fetches(&s.pnpr).await,
        before,
        "the client's tarball GETs went upstream again"
    );
    // Cached: no early frames, the same packages.
    let again = http.post_json(&resolve, &body, Some(&s.alice)).await;
    again.assert_status(200);
    assert_eq!(again.header("x-pnpr-resolution"), Some("cached"));
    assert_eq!(again.header("x-pnpr-early-frames"), None);
    let ids: std::collections::BTreeSet<String> = frames_of(&again.text())
        .iter()
        .filter(|f| f["type"] == "package")
        .map(|f| f["id"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(ids, framed.keys().cloned().collect());

    // With an input lockfile: a fresh resolution, answered after it (no
    // early frames).
    let mut with_lock = pnpm12_body(
        &url,
        serde_json::json!({"@pnpm.e2e/pkg-with-1-dep": "^100.0.0"}),
    );
    with_lock["lockfile"] = done["lockfile"].clone();
    let locked = http.post_json(&resolve, &with_lock, Some(&s.alice)).await;
    locked.assert_status(200);
    assert_eq!(locked.header("x-pnpr-resolution"), Some("resolved"));
    assert_eq!(locked.header("x-pnpr-early-frames"), None);

    // The real client on a cold server: same lockfile as resolving directly.
    let cold = setup().await;
    let curl = cold.pnpr.url.clone();
    let through = public_project(&cold.pnpr, &cold.alice);
    let out = through.pnpm_v(
        "12.21.0",
        &flags(&curl, &["install", "--pnpr-server", &curl]),
    );
    out.assert_success();
    assert!(
        cold.pnpr.logs().contains("resolve v0"),
        "{}",
        cold.pnpr.logs()
    );
    let direct = public_project(&cold.pnpr, &cold.alice);
    direct
        .pnpm_v("12.21.0", &flags(&curl, &["install", "--lockfile-only"]))
        .assert_success();
    assert_eq!(
        through.read_file("pnpm-lock.yaml"),
        direct.read_file("pnpm-lock.yaml"),
        "{out}"
    );
    through
        .node_require("@pnpm.e2e/pkg-with-1-dep")
        .assert_success();
}

/// Requests the fake upstream saw: `(path, head)`.
type Seen = std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>;

/// A private uplink `fake` (only `team` = alice) on a fake upstream that
/// records every request head; `@fake/pkg@1.0.0` lives only there.
fn fake_uplink(tarball: Vec<u8>) -> (FakeUpstream, Seen, String) {
    let integrity = fake_upstream::sri(&tarball);
    let seen: Seen = Default::default();
    let (log, sri) = (std::sync::Arc::clone(&seen), integrity.clone());
    let up = FakeUpstream::start_with_head(move |path, head| {
        log.lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((path.to_string(), head.to_string()));
        if path.ends_with(".tgz") {
            return Reply::bytes(tarball.clone());
        }
        let host = head
            .lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.eq_ignore_ascii_case("host"))
            .map_or("", |(_, v)| v.trim());
        let at = format!("http://{host}/@fake/pkg/-/pkg-1.0.0.tgz");
        Reply::json(&fake_upstream::packument("@fake/pkg", &at, &sri))
    });
    (up, seen, integrity)
}

/// pnpr with the private uplink `fake` (only `team` = alice; credential
/// `uplink-secret`) serving `@fake/*` on `/`, everything else hosted.
fn start_with_fake_uplink(up: &FakeUpstream) -> Pnpr {
    let config = format!(
        "auth:\n  htpasswd:\n    file: ./htpasswd\ngroups:\n  team: [alice]\nuplinks:\n  fake:\n    url: {u}\n    access: team\n    auth:\n      type: bearer\n      token_env: FAKE_TOKEN\npackages:\n  '@fake/*':\n    access: $authenticated\n    proxy: fake\n  '**':\n    access: $all\n    publish: $authenticated\n",
        u = up.url
    );
    Pnpr::start(&config, &[("FAKE_TOKEN", "uplink-secret")])
}

fn tarball_requests(seen: &Seen) -> Vec<String> {
    seen.lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .filter(|(p, _)| p.ends_with(".tgz"))
        .map(|(_, h)| h.clone())
        .collect()
}

/// Attack: a caller the private uplink does not admit asks (on `/~fake/`
/// and on `/`) for its package: no `done`, no integrity or tarball in the
/// answer, and nothing is prefetched for it. Control: the admitted caller's
/// resolution prefetches the tarball (the upstream sees it before anyone
/// GETs it) with the uplink's configured credential, never a caller's
/// token, and the caller's GET is then served from the CAS.
#[tokio::test]
async fn prefetches_use_the_uplink_credential_for_admitted_callers_only() {
    let (up, seen, integrity) = fake_uplink(b"v0 prefetch fixture bytes".to_vec());
    let pnpr = start_with_fake_uplink(&up);
    let http = Http::new();
    let alice = add_user(&http, &pnpr, "alice").await;
    let bob = add_user(&http, &pnpr, "bob").await;
    let url = pnpr.url.clone();
    let fake = format!("{url}~fake/");
    let resolve = format!("{url}-/pnpr/v0/resolve");
    let deps = serde_json::json!({"@fake/pkg": "1.0.0"});
    for registry in [&fake, &url] {
        let r = http
            .post_json(&resolve, &pnpm12_body(registry, deps.clone()), Some(&bob))
            .await;
        let text = r.text();
        assert!(
            r.status != 200 || !text.contains("\"type\":\"done\""),
            "{text}"
        );
        for secret in [integrity.as_str(), "pkg-1.0.0.tgz"] {
            assert!(!text.contains(secret), "leaked {secret}: {text}");
        }
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(tarball_requests(&seen).is_empty(), "prefetched for bob");

    let r = http
        .post_json(&resolve, &pnpm12_body(&fake, deps.clone()), Some(&alice))
        .await;
    r.assert_status(200);
    assert!(r.text().contains(&integrity), "control: {}", r.text());
    eventually("the tarball prefetched", || {
        !tarball_requests(&seen).is_empty()
    })
    .await;
    let tarball = frames_of(&r.text())
        .iter()
        .find(|f| f["type"] == "package" && f["name"] == "@fake/pkg")
        .and_then(|f| f["tarball"].as_str().map(str::to_string))
        .expect("a frame for @fake/pkg");
    assert!(tarball.starts_with(&fake), "{tarball}");
    let got = http.get_auth(&tarball, &alice).await;
    got.assert_status(200);
    assert_eq!(&got.body[..], b"v0 prefetch fixture bytes");
    let requests = tarball_requests(&seen);
    assert_eq!(requests.len(), 1, "fetched once: {requests:?}");
    assert!(
        requests[0]
            .to_ascii_lowercase()
            .contains("bearer uplink-secret"),
        "{requests:?}"
    );
    for (path, head) in seen.lock().unwrap_or_else(|p| p.into_inner()).iter() {
        for token in [&alice, &bob] {
            assert!(
                !head.contains(token.as_str()),
                "{path} carried a caller's token"
            );
        }
    }
}

/// A public upstream whose `pub-host@1.0.0` names the private `@fake/pkg`
/// only as an optional peer: the resolution never needs it, but the
/// resolver's look-ahead (RFC 0007) offers every dependency field of the
/// version it guesses, peers included. `slow-*` answer after 400 ms, so the
/// look-ahead has a level to run alongside.
fn public_upstream_naming_a_private_peer() -> FakeUpstream {
    let bytes = b"pub-host tarball bytes".to_vec();
    let sri = fake_upstream::sri(&bytes);
    FakeUpstream::start(move |path| {
        if path.ends_with(".tgz") {
            return Reply::bytes(bytes.clone());
        }
        if let Some(name) = path.strip_prefix("/slow-").map(|n| format!("slow-{n}")) {
            // Keeps the level waiting, so the look-ahead runs meanwhile.
            std::thread::sleep(std::time::Duration::from_millis(400));
            let at = format!("http://127.0.0.1:1/{name}/-/{name}-1.0.0.tgz");
            return Reply::json(&fake_upstream::packument(&name, &at, &sri));
        }
        if path.trim_start_matches('/') != "pub-host" {
            return Reply::status(404);
        }
        Reply::json(&serde_json::json!({
            "name": "pub-host",
            "dist-tags": {"latest": "1.0.0"},
            "versions": {"1.0.0": {"name": "pub-host", "version": "1.0.0",
                "peerDependencies": {"@fake/pkg": "1.0.0"},
                "peerDependenciesMeta": {"@fake/pkg": {"optional": true}},
                "dist": {"tarball": "http://127.0.0.1:1/pub-host/-/pub-host-1.0.0.tgz",
                    "integrity": sri}}},
            "time": {"1.0.0": "2020-01-01T00:00:00.000Z"}
        }))
    })
}

/// Attack on the look-ahead: a caller the private uplink does not admit
/// resolves a public package that names a private one. Nothing is asked of
/// the private upstream on their behalf (the look-ahead checks access like
/// a read), their answer names neither the private package nor its
/// integrity, and their resolution still succeeds.
/// Control: the admitted caller's identical resolution does make the
/// look-ahead fetch the private document, with the uplink's credential,
/// so the refusal above is the access check and not an idle look-ahead.
#[tokio::test]
async fn the_lookahead_asks_upstream_nothing_a_caller_may_not_read() {
    let public = public_upstream_naming_a_private_peer();
    let (private, seen, integrity) = fake_uplink(b"private peer bytes".to_vec());
    let config = format!(
        "auth:\n  htpasswd:\n    file: ./htpasswd\ngroups:\n  team: [alice]\nuplinks:\n  pub:\n    url: {p}\n  fake:\n    url: {f}\n    access: team\n    auth:\n      type: bearer\n      token_env: FAKE_TOKEN\npackages:\n  '@fake/*':\n    access: $authenticated\n    proxy: fake\n  '**':\n    access: $all\n    proxy: pub\n",
        p = public.url,
        f = private.url
    );
    let pnpr = Pnpr::start(&config, &[("FAKE_TOKEN", "uplink-secret")]);
    let http = Http::new();
    let alice = add_user(&http, &pnpr, "alice").await;
    let bob = add_user(&http, &pnpr, "bob").await;
    let resolve = format!("{}-/pnpr/v0/resolve", pnpr.url);
    // Each caller waits on its own uncached slow document (the look-ahead
    // runs while it waits) and resolves afresh, not from the first answer
    // in the resolution cache.
    let body = |slow: &str| {
        pnpm12_body(
            &pnpr.url,
            serde_json::json!({"pub-host": "^1.0.0", slow: "1.0.0"}),
        )
    };
    let done = |text: &str| {
        let frames = frames_of(text);
        assert!(
            frames.iter().any(|f| f["type"] == "done"),
            "no done: {text}"
        );
        assert!(
            frames.iter().any(|f| f["name"] == "pub-host"),
            "no pub-host: {text}"
        );
    };

    let r = http.post_json(&resolve, &body("slow-b"), Some(&bob)).await;
    r.assert_status(200);
    let bob_text = r.text();
    done(&bob_text);
    // The public manifest names the peer (public knowledge); nothing of the
    // private package itself may appear.
    for secret in [integrity.as_str(), "pkg-1.0.0.tgz"] {
        assert!(!bob_text.contains(secret), "leaked {secret}: {bob_text}");
    }
    assert!(
        !frames_of(&bob_text)
            .iter()
            .any(|f| f["name"] == "@fake/pkg"),
        "{bob_text}"
    );
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let asked: Vec<String> = seen
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(|(path, _)| path.clone())
        .collect();
    assert!(asked.is_empty(), "asked for bob: {asked:?}");

    let r = http
        .post_json(&resolve, &body("slow-a"), Some(&alice))
        .await;
    r.assert_status(200);
    done(&r.text());
    eventually("the look-ahead fetched the private document", || {
        seen.lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|(path, head)| {
                path.contains("fake") && !path.ends_with(".tgz") && head.contains("uplink-secret")
            })
    })
    .await;
    for (path, head) in seen.lock().unwrap_or_else(|p| p.into_inner()).iter() {
        for token in [&alice, &bob] {
            assert!(
                !head.contains(token.as_str()),
                "{path} carried a caller's token"
            );
        }
    }
}

/// The body pnpm 11.9.0 sends (captured shape,
/// `crates/protocol/tests/fixtures/pnpr-v0-resolve-request.pnpm-11.9.0.body.json`),
/// with `auth` as its `authHeaders`.
fn body_of_11_9(registry: &str, auth: serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "projects": [{"dir": ".", "dependencies": {"@fake/pkg": "1.0.0"}}],
        "registry": registry,
        "authHeaders": auth,
        "nodeVersion": "22.23.3", "os": "linux", "arch": "x64",
        "minimumReleaseAge": 1440
    })
}

/// Control: alice (admitted by the uplink) sends 11.9.0's body whose
/// `authHeaders` hold a made-up token for the uplink's host next to her
/// pnpr token: the package resolves, the uplink is asked with pnpr's own
/// credential only, and the client's token appears in no upstream request.
/// Attack: bob (not admitted) sends the uplink's real token in
/// `authHeaders`: he is refused as without it, with no integrity or
/// tarball in the answer and nothing fetched for him. A malformed
/// `authHeaders` is a 400 naming the field.
#[tokio::test]
async fn pnpm_11_9_credentials_are_dropped_never_forwarded() {
    let (up, seen, integrity) = fake_uplink(b"11.9 credentials fixture".to_vec());
    let pnpr = start_with_fake_uplink(&up);
    let http = Http::new();
    let alice = add_user(&http, &pnpr, "alice").await;
    let bob = add_user(&http, &pnpr, "bob").await;
    let url = pnpr.url.clone();
    let resolve = format!("{url}-/pnpr/v0/resolve");
    let nerf = |u: &str| u.trim_start_matches("http:").to_string();

    // Attack first, so any upstream request is bob's doing.
    let stolen = serde_json::json!({
        nerf(&up.url): {"@": "Bearer uplink-secret"},
        nerf(&url): {"@": format!("Bearer {bob}")},
    });
    let r = http
        .post_json(&resolve, &body_of_11_9(&url, stolen), Some(&bob))
        .await;
    let text = r.text();
    assert!(
        r.status != 200 || !text.contains("\"type\":\"done\""),
        "bob resolved with a client-sent credential: {text}"
    );
    for secret in [integrity.as_str(), "pkg-1.0.0.tgz"] {
        assert!(!text.contains(secret), "leaked {secret}: {text}");
    }

    // Control.
    let made_up = serde_json::json!({
        nerf(&up.url): {"@": "Bearer client-upstream-secret"},
        nerf(&url): {"@": format!("Bearer {alice}")},
    });
    let r = http
        .post_json(&resolve, &body_of_11_9(&url, made_up), Some(&alice))
        .await;
    r.assert_status(200);
    assert!(
        r.text().contains("\"type\":\"done\"") && r.text().contains(&integrity),
        "control: {}",
        r.text()
    );
    let heads = seen.lock().unwrap_or_else(|p| p.into_inner()).clone();
    assert!(!heads.is_empty(), "the uplink was never asked");
    for (path, head) in &heads {
        let lower = head.to_ascii_lowercase();
        assert!(
            !lower.contains("client-upstream-secret"),
            "{path} carried a client-sent credential"
        );
        for token in [&alice, &bob] {
            assert!(
                !head.contains(token.as_str()),
                "{path} carried a caller's token"
            );
        }
        assert!(
            lower.contains("bearer uplink-secret"),
            "{path} without the uplink's own credential"
        );
    }

    let bad = body_of_11_9(&url, serde_json::json!({"//x/": {"@": 1}}));
    let r = http.post_json(&resolve, &bad, Some(&alice)).await;
    r.assert_status(400);
    assert!(r.text().contains("authHeaders"), "{}", r.text());
}
