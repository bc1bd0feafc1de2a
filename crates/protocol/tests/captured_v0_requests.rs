//! The resolve protocol v0 bodies captured from real pnpm 12.23.0,
//! 11.28.10 and 12.21.0, and from the other released clients of the sweep
//! in RFC 0006 (11.9.0, 11.10.0, 12.0.0, 12.10.1), parse, with every
//! setting at a supported value.

mod common;

use common::fixture;
use pnpr_protocol::parse_resolve_request;

const DEFAULT: &str = "http://127.0.0.1:1/";

#[test]
fn every_captured_client_request_is_accepted() {
    for name in [
        "pnpr-v0-resolve-request.pnpm-12.23.0.body.json",
        "pnpr-v0-resolve-request.pnpm-11.28.10.body.json",
        "other-protocol.pnpm-12.21.0.pnpr-v0-resolve.body.json",
        "pnpr-v0-resolve-request.pnpm-11.9.0.body.json",
        "pnpr-v0-resolve-request.pnpm-11.10.0.body.json",
        "pnpr-v0-resolve-request.pnpm-12.0.0.body.json",
        "pnpr-v0-resolve-request.pnpm-12.10.1.body.json",
    ] {
        let parsed = parse_resolve_request(fixture(name).as_bytes(), DEFAULT)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        // What the done frame echoes is what the client asked for.
        assert_eq!(parsed.applied.minimum_release_age, Some(1440), "{name}");
        assert!(parsed.applied.auto_install_peers, "{name}");
        assert_eq!(parsed.applied.resolution_mode, "highest", "{name}");
        assert_eq!(parsed.applied.trust_policy, None, "{name}");
        let req = parsed.install;
        let p = &req.projects[0];
        assert_eq!(p.dir, ".", "{name}");
        assert_eq!(
            p.dependencies["@pnpm.e2e/pkg-with-1-dep"], "^100.0.0",
            "{name}"
        );
        assert_eq!(req.minimum_release_age, Some(1440), "{name}");
        assert!(!req.frozen_lockfile, "{name}");
        // The pnpm 12 dialect is for the releases that behave so (12.21
        // on, which send `acceptedLockfileFormats`); 12.0.0 and 12.10.1
        // record an array `engines` as pnpm 11 does.
        let twelve = name.contains("pnpm-12.2");
        assert_eq!(
            req.generation == pnpr_protocol::Generation::V0ResolvePnpm12,
            twelve,
            "{name}"
        );
    }
}

/// pnpm 11.9.0 still sends every `.npmrc` credential as `authHeaders`,
/// the pnpr token and a token for an unrelated host included: the body is
/// accepted and none of them survives parsing.
#[test]
fn pnpm_11_9_credentials_are_accepted_and_dropped() {
    let body = fixture("pnpr-v0-resolve-request.pnpm-11.9.0.body.json");
    assert!(body.contains("\"authHeaders\""));
    let parsed = parse_resolve_request(body.as_bytes(), DEFAULT).unwrap();
    assert!(parsed.install.auth_headers.is_empty());
    let debug = format!("{parsed:?}");
    for secret in ["tok-123", "secret-xyz"] {
        assert!(!debug.contains(secret), "{debug}");
    }
}
