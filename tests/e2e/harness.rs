//! Smoke test of the e2e harness itself, without pnpr: registry-mock starts
//! and serves the fixtures, each real client installs from it into an
//! isolated project, and its auth rules hold (private packages need a token).

use std::time::Instant;

use pnpr_e2e::{Http, Project, RegistryMock};

const PKG: &str = "@pnpm.e2e/pkg-with-1-dep";
const PKG_JSON: &str = "node_modules/@pnpm.e2e/pkg-with-1-dep/package.json";

fn assert_installed(project: &Project, client: &str) {
    assert!(
        project.exists(PKG_JSON),
        "{client}: {PKG_JSON} missing after install"
    );
    project.node_require(PKG).assert_success();
}

#[test]
fn clients_install_from_registry_mock() {
    let registry = RegistryMock::start();
    eprintln!("RegistryMock::start took {:?}", registry.startup);
    let url = registry.url.as_str();

    let npm = Project::with_dependencies(&[(PKG, "^100.0.0")]);
    let t = Instant::now();
    npm.npm(&["install", "--registry", url]).assert_success();
    eprintln!("npm install took {:?}", t.elapsed());
    assert_installed(&npm, "npm 11");
    assert!(npm.exists("package-lock.json"));

    let pnpm11 = Project::with_dependencies(&[(PKG, "^100.0.0")]);
    let t = Instant::now();
    pnpm11
        .pnpm11(&["install", "--registry", url])
        .assert_success();
    eprintln!("pnpm 11 install took {:?}", t.elapsed());
    assert_installed(&pnpm11, "pnpm 11.5.2");
    assert!(pnpm11.exists("pnpm-lock.yaml"));
    // The store went where the harness pointed it, not into a shared HOME.
    assert!(pnpm11.pnpm_store().join("v11").is_dir());

    let pnpm12 = Project::with_dependencies(&[(PKG, "^100.0.0")]);
    let t = Instant::now();
    pnpm12
        .pnpm12(&["install", "--registry", url])
        .assert_success();
    eprintln!("pnpm 12 install took {:?}", t.elapsed());
    assert_installed(&pnpm12, "pnpm 12.21.0");
    assert!(pnpm12.exists("pnpm-lock.yaml"));
    assert!(pnpm12.pnpm_store().join("v11").is_dir());
}

#[test]
fn node_require_fails_for_a_missing_package() {
    let project = Project::with_dependencies(&[]);
    let out = project.node_require("@pnpm.e2e/not-installed");
    out.assert_failure();
    assert!(out.stderr.contains("Cannot find module"), "{out}");
}

#[tokio::test]
async fn private_packages_need_a_token() {
    let registry = RegistryMock::start();
    let http = Http::new();
    let packument = format!("{}@private%2Ffoo", registry.url);

    http.get(&packument).await.assert_status(401);

    let (user, password) = RegistryMock::private_credentials();
    let token = registry.login(user, password).await;
    let response = http.get_auth(&packument, &token).await;
    response.assert_status(200);
    assert_eq!(response.json()["name"], "@private/foo");

    // A wrong token is not accepted either.
    http.get_auth(&packument, "not-a-token")
        .await
        .assert_status(401);
}

#[tokio::test]
async fn unknown_packages_are_a_local_404() {
    let registry = RegistryMock::start();
    let started = Instant::now();
    Http::new()
        .get(&format!("{}is-positive", registry.url))
        .await
        .assert_status(404);
    // No uplink: the answer comes from local storage, not a network timeout.
    assert!(started.elapsed().as_secs() < 5, "{:?}", started.elapsed());
}

#[tokio::test]
async fn project_npmrc_carries_registry_and_token() {
    let registry = RegistryMock::start();
    let token = registry.private_token().await;
    let host = registry.url.trim_start_matches("http:");
    let npmrc = format!("registry={}\n{host}:_authToken={token}\n", registry.url);
    let project = Project::new(
        &serde_json::json!({
            "name": "private-consumer",
            "version": "1.0.0",
            "private": true,
            "dependencies": {"@private/foo": "1.0.0"},
        }),
        Some(&npmrc),
    );
    // No --registry: registry and token both come from the project's .npmrc.
    project.npm(&["install"]).assert_success();
    assert!(project.exists("node_modules/@private/foo/package.json"));
    project.pnpm12(&["install"]).assert_success();
    assert!(project.exists("node_modules/@private/foo/package.json"));

    // Without the token the same install is refused by the registry.
    let denied = Project::new(
        &serde_json::json!({"name": "anon", "version": "1.0.0", "dependencies": {"@private/foo": "1.0.0"}}),
        Some(&format!("registry={}\n", registry.url)),
    );
    let out = denied.npm(&["install"]);
    out.assert_failure();
    assert!(out.combined().contains("401"), "{out}");
}
