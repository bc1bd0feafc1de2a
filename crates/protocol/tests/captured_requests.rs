//! Parsing of the three request bodies captured from real pnpm 11.5.2.

mod common;

use pnpr_protocol::{parse_request, TrustPolicy};

use common::fixture;

const DEFAULT: &str = "http://127.0.0.1:1/";

#[test]
fn cold() {
    let req = parse_request(
        fixture("v1-install-request.cold.body.json").as_bytes(),
        DEFAULT,
    )
    .unwrap();
    assert_eq!(req.projects.len(), 1);
    let p = &req.projects[0];
    assert_eq!(p.dir, ".");
    assert_eq!(p.dependencies["@pnpm.e2e/pkg-with-1-dep"], "^100.0.0");
    assert_eq!(p.dev_dependencies["@pnpm.e2e/foo"], "100.0.0");
    assert!(p.optional_dependencies.is_empty());
    assert_eq!(req.registry, "http://127.0.0.1:4873/");
    assert!(req.auth_headers.is_empty());
    assert_eq!(req.minimum_release_age, Some(1440));
    assert!(req.store_integrities.is_empty());
    assert_eq!(req.lockfile, None);
    assert!(!req.lockfile_only && !req.frozen_lockfile);
    assert_eq!(req.prefer_frozen_lockfile, None);
    assert_eq!(req.trust_policy, TrustPolicy::Off);
    assert_eq!(req.node_version.as_deref(), Some("22.23.3"));
    assert_eq!(req.os.as_deref(), Some("linux"));
    assert_eq!(req.arch.as_deref(), Some("x64"));
}

#[test]
fn warm_with_lockfile() {
    let req = parse_request(
        fixture("v1-install-request.warm-with-lockfile.body.json").as_bytes(),
        DEFAULT,
    )
    .unwrap();
    assert_eq!(req.store_integrities.len(), 3);
    assert!(req
        .store_integrities
        .iter()
        .all(|i| i.starts_with("sha512-")));
    let lockfile = req.lockfile.as_ref().unwrap();
    assert_eq!(lockfile["lockfileVersion"], "9.0");
    assert_eq!(lockfile["packages"].as_object().unwrap().len(), 3);
    assert_eq!(
        lockfile["importers"]["."]["dependencies"]["@pnpm.e2e/pkg-with-1-dep"]["version"],
        "100.1.0"
    );
}

#[test]
fn auth_and_scope() {
    let req = parse_request(
        fixture("v1-install-request.auth-and-scope.body.json").as_bytes(),
        DEFAULT,
    )
    .unwrap();
    let p = &req.projects[0];
    assert_eq!(p.dependencies.len(), 2);
    assert_eq!(p.optional_dependencies["@pnpm.e2e/foo"], "100.0.0");
    assert_eq!(req.auth_headers.len(), 2);
    assert_eq!(
        req.auth_headers.get("//127.0.0.1:4873/"),
        Some("Bearer test-upstream-token")
    );
    assert_eq!(
        req.auth_headers.get("//127.0.0.1:4900/"),
        Some("Bearer test-pnpr-token")
    );
    let dbg = format!("{req:?}");
    assert!(
        !dbg.contains("test-upstream-token") && !dbg.contains("test-pnpr-token"),
        "{dbg}"
    );
}
