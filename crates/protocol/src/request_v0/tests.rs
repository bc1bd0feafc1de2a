use serde_json::json;

use super::*;

const DEFAULT: &str = "http://127.0.0.1:1/";

fn parse(v: serde_json::Value) -> Result<InstallRequest, InstallError> {
    parse_resolve_request(v.to_string().as_bytes(), DEFAULT).map(|r| r.install)
}

fn refused_field(v: serde_json::Value) -> String {
    match parse(v) {
        Err(InstallError::Unsupported { field, .. }) => field,
        other => panic!("expected Unsupported, got {other:?}"),
    }
}

#[test]
fn defaults_as_pnpm_12_sends_them_are_accepted() {
    let req = parse(json!({
        "projects": [{"dir": ".", "name": "t", "version": "1.0.0",
            "dependencies": {"a": "^1.0.0"}, "devDependencies": {}, "optionalDependencies": {}}],
        "fixLockfile": false, "registry": "http://127.0.0.1:2", "registries": {},
        "overrides": null, "patchedDependencies": null, "packageExtensions": null,
        "allowUnusedPatches": false, "catalogs": null, "autoInstallPeers": true,
        "dedupePeers": false, "excludeLinksFromLockfile": false, "addMissingPeerTypes": false,
        "projectScopedOptionalPeers": false, "resolutionMode": "highest", "lockfile": null,
        "frozenLockfile": false, "preferFrozenLockfile": true, "updatePatches": false,
        "ignoreManifestCheck": false, "trustLockfile": false, "minimumReleaseAge": 1440,
        "minimumReleaseAgeExclude": null, "minimumReleaseAgeIgnoreMissingTime": true,
        "minimumReleaseAgeStrict": false, "trustPolicy": "off", "trustPolicyExclude": null,
        "trustPolicyIgnoreAfter": null, "acceptedLockfileFormats": ["pnpm-lock/9.0"]
    }))
    .unwrap();
    assert_eq!(req.registry, "http://127.0.0.1:2/");
    assert_eq!(req.projects[0].dependencies["a"], "^1.0.0");
    assert_eq!(req.minimum_release_age, Some(1440));
    assert_eq!(req.prefer_frozen_lockfile, Some(true));
}

#[test]
fn every_unimplemented_setting_is_refused_by_name() {
    let cases = [
        json!({"catalogs": {"default": {"a": "1.0.0"}}}),
        json!({"patchedDependencies": {"a@1.0.0": "abc"}}),
        json!({"packageExtensions": {"a": {"dependencies": {"b": "1"}}}}),
        json!({"resolutionMode": "time-based"}),
        json!({"dedupePeers": true}),
        json!({"autoInstallPeers": false}),
        json!({"excludeLinksFromLockfile": true}),
        json!({"fixLockfile": true}),
        json!({"trustPolicy": "no-downgrade"}),
        json!({"minimumReleaseAgeIgnoreMissingTime": false}),
        json!({"acceptedLockfileFormats": ["pnpm-lock/10.0"]}),
        json!({"someFutureSetting": 3}),
    ];
    for case in cases {
        let key = case.as_object().unwrap().keys().next().unwrap().clone();
        assert_eq!(refused_field(case), key);
    }
    assert_eq!(
        refused_field(json!({"projects": [{"dir": ".", "publishConfig": {"x": 1}}]})),
        "projects[0].publishConfig"
    );
}

#[test]
fn the_message_names_the_field_and_the_rule() {
    let err = parse(json!({"catalogs": {"default": {"a": "1"}}})).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("`catalogs`") && msg.contains("not supported"),
        "{msg}"
    );
}

#[test]
fn unset_looking_unknown_fields_and_empty_maps_pass() {
    parse(json!({"newFlag": false, "newMap": {}, "catalogs": {"default": {}}})).unwrap();
}

#[test]
fn override_values_must_be_strings() {
    let err = parse(json!({"overrides": {"a": {"b": "1"}}})).unwrap_err();
    assert!(matches!(err, InstallError::InvalidField { .. }), "{err:?}");
    let req = parse(json!({"overrides": {"a": "1.0.0"}})).unwrap();
    assert_eq!(req.overrides.unwrap()["a"], "1.0.0");
}

#[test]
fn wrong_types_are_field_errors() {
    let err = parse(json!({"dedupePeers": "yes"})).unwrap_err();
    assert!(matches!(err, InstallError::InvalidField { .. }), "{err:?}");
}

#[test]
fn release_age_strictness_is_refused_only_where_it_would_change_the_answer() {
    let base = json!({"projects": [{"dir": "."}], "minimumReleaseAgeStrict": true});
    // No policy (what pnpm 12 sends with `minimumReleaseAge: 0`): moot.
    for age in [json!(0), json!(null)] {
        let mut v = base.clone();
        v["minimumReleaseAge"] = age;
        assert!(parse(v).is_ok());
    }
    assert!(parse(base.clone()).is_ok());
    let mut v = base;
    v["minimumReleaseAge"] = json!(1440);
    assert_eq!(refused_field(v), "minimumReleaseAgeStrict");
}

#[test]
fn the_generation_is_the_endpoints_not_the_bodys() {
    let parsed = parse_resolve_request(
        br#"{"projects": [{"dir": "."}], "generation": null}"#,
        DEFAULT,
    )
    .expect("parses");
    assert_eq!(parsed.install.generation, crate::Generation::V0Resolve);
    // pnpm 12 is told apart by the field only it sends.
    let twelve = parse_resolve_request(
        br#"{"projects": [{"dir": "."}], "acceptedLockfileFormats": ["pnpm-lock/9.0"]}"#,
        DEFAULT,
    )
    .expect("parses");
    assert_eq!(
        twelve.install.generation,
        crate::Generation::V0ResolvePnpm12
    );
    let v1 = crate::parse_request(br#"{"projects": [{"dir": "."}]}"#, DEFAULT).expect("parses");
    assert_eq!(v1.generation, crate::Generation::V1Install);
}

#[test]
fn a_projects_own_peers_are_parsed_and_keyed_only_when_present() {
    let req = parse(json!({"projects": [
        {"dir": ".", "dependencies": {"a": "1.0.0"}},
        {"dir": "packages/ui", "name": "ui", "peerDependencies": {"react": "^18.0.0"}}
    ]}))
    .unwrap();
    assert!(req.projects[0].peer_dependencies.is_empty());
    assert_eq!(req.projects[1].peer_dependencies["react"], "^18.0.0");
    // Part of the cache key when sent, absent from it otherwise.
    let key = serde_json::to_value(&req).unwrap();
    assert!(key["projects"][0].get("peer_dependencies").is_none());
    assert_eq!(
        key["projects"][1]["peer_dependencies"]["react"],
        json!("^18.0.0")
    );
    let bad = parse(json!({"projects": [{"dir": ".", "peerDependencies": {"react": 18}}]}));
    assert!(
        matches!(bad, Err(InstallError::InvalidField { ref field, .. }) if field == "projects[0].peerDependencies"),
        "{bad:?}"
    );
}

#[test]
fn scope_registries_are_parsed_as_pnpm_sends_them() {
    let req = parse(json!({
        "registry": "http://127.0.0.1:2/",
        "registries": {"http://127.0.0.1:2/~corp": {"scopes": ["@corp", "@b"]},
                       "http://127.0.0.1:2/": {"scopes": ["@pub"]}}
    }))
    .unwrap();
    assert_eq!(req.scope_registries["@corp"], "http://127.0.0.1:2/~corp/");
    assert_eq!(req.scope_registries["@b"], "http://127.0.0.1:2/~corp/");
    assert_eq!(req.scope_registries["@pub"], "http://127.0.0.1:2/");
    assert!(parse(json!({"registries": {}}))
        .unwrap()
        .scope_registries
        .is_empty());
}

#[test]
fn registry_declarations_beyond_scopes_are_refused_without_echoing_values() {
    let secret = "http://user:hunter2@127.0.0.1:2/";
    for (case, field) in [
        (json!({secret: {"prefix": "work"}}), "registries.*.prefix"),
        (
            json!({secret: {"scopes": ["@a"], "serverType": "x"}}),
            "registries.*.serverType",
        ),
    ] {
        let err = parse(json!({ "registries": case })).unwrap_err();
        assert!(
            matches!(&err, InstallError::Unsupported { field: f, .. } if f == field),
            "{err:?}"
        );
        assert!(!err.to_string().contains("hunter2"));
    }
    for bad in [
        json!({"registries": {secret: {"scopes": ["corp"]}}}),
        json!({"registries": {secret: {"scopes": ["@a/b"]}}}),
        json!({"registries": {secret: {"scopes": "@a"}}}),
        json!({"registries": {secret: ["@a"]}}),
        json!({"registries": {secret: {"scopes": ["@a"]}, "http://127.0.0.1:3/": {"scopes": ["@a"]}}}),
    ] {
        let err = parse(bad).unwrap_err();
        assert!(matches!(err, InstallError::InvalidField { .. }), "{err:?}");
        assert!(!err.to_string().contains("hunter2"));
    }
}

/// pnpm 11.9.0's `authHeaders` (nerf-dart → `{"@": header}`) and the
/// one-level shape are accepted and never reach the parsed request.
#[test]
fn forwarded_credentials_are_dropped_not_refused() {
    for auth in [
        json!({"//127.0.0.1:2/": {"@": "Bearer pnpr-token"}, "//elsewhere/": {"@": "Bearer up"}}),
        json!({"//127.0.0.1:2/": "Bearer pnpr-token"}),
        json!({}),
        json!(null),
    ] {
        let req = parse(
            json!({"projects": [{"dir": "."}], "registry": "http://127.0.0.1:2/",
            "authHeaders": auth}),
        )
        .unwrap();
        assert!(req.auth_headers.is_empty());
        let debug = format!("{req:?}");
        assert!(
            !debug.contains("pnpr-token") && !debug.contains("Bearer"),
            "{debug}"
        );
    }
}

/// A malformed `authHeaders` is a bad body naming the field, not dropped.
#[test]
fn malformed_credentials_are_refused_by_name() {
    for auth in [
        json!("Bearer t"),
        json!(["Bearer t"]),
        json!({"//x/": 1}),
        json!({"//x/": {"@": {"nested": "t"}}}),
    ] {
        match parse(json!({"authHeaders": auth})) {
            Err(InstallError::InvalidField { field, .. }) => assert_eq!(field, "authHeaders"),
            other => panic!("{auth}: expected InvalidField, got {other:?}"),
        }
    }
}

/// pnpm 12.0 through 12.1x send no `acceptedLockfileFormats` and record
/// an array `engines` as pnpm 11 does, so they get the 11.x dialect; the
/// fields only the Rust client sends do not switch it.
#[test]
fn only_accepted_formats_select_the_pnpm_12_dialect() {
    let generation = |v: serde_json::Value| parse(v).unwrap().generation;
    let early_12 = json!({"projects": [{"dir": "."}], "ignoreManifestCheck": false,
        "preferFrozenLockfile": true, "trustPolicy": "off"});
    assert_eq!(generation(early_12), crate::Generation::V0Resolve);
    let late_12 = json!({"projects": [{"dir": "."}], "ignoreManifestCheck": false,
        "acceptedLockfileFormats": ["pnpm-lock/9.0"]});
    assert_eq!(generation(late_12), crate::Generation::V0ResolvePnpm12);
    let pnpm_11 = json!({"projects": [{"dir": "."}], "nodeVersion": "22.23.3",
        "os": "linux", "arch": "x64"});
    assert_eq!(generation(pnpm_11), crate::Generation::V0Resolve);
}

/// pnpm 11.9 through 11.22 send `catalog:` specifiers without `catalogs`:
/// refused by name before resolving, as the `catalogs` field is.
#[test]
fn catalog_specifiers_are_refused_without_catalogs() {
    for map in [
        "dependencies",
        "devDependencies",
        "optionalDependencies",
        "peerDependencies",
    ] {
        let body =
            json!({"projects": [{"dir": "."}, {"dir": "b", map: {"a": "catalog:", "b": "1.0.0"}}]});
        assert_eq!(refused_field(body), format!("projects[1].{map}"));
    }
    let named = json!({"projects": [{"dir": ".", "dependencies": {"a": "catalog:react18"}}]});
    assert_eq!(refused_field(named), "projects[0].dependencies");
    // A package whose name merely contains the word is not a catalog.
    parse(json!({"projects": [{"dir": ".", "dependencies": {"catalog": "1.0.0"}}]})).unwrap();
}
