//! Request parsing: field defaults, dir rules (spec §1.3), secret hygiene.

use super::*;

const DEFAULT: &str = "http://127.0.0.1:4873";

fn parse(body: &str) -> Result<InstallRequest, InstallError> {
    parse_request(body.as_bytes(), DEFAULT)
}

#[test]
fn dir_normalisation() {
    for (raw, want) in [
        ("", "."),
        (".", "."),
        ("./", "."),
        ("packages/web", "packages/web"),
        ("packages/web/", "packages/web"),
        ("packages/web///", "packages/web"),
        ("a/./b", "a/./b"),
        ("..foo/bar", "..foo/bar"),
    ] {
        assert_eq!(normalize_dir(raw).unwrap(), want, "{raw:?}");
    }
}

#[test]
fn dir_rejections() {
    for raw in [
        "/", "///", "/abs", "/abs/", "a\\b", "a//b", "//a", "..", "../x", "a/../b", "a/..", "a\0b",
    ] {
        match normalize_dir(raw) {
            Err(InstallError::InvalidProjectDir { dir, .. }) => assert_eq!(dir, raw),
            other => panic!("{raw:?} should be rejected, got {other:?}"),
        }
    }
}

#[test]
fn duplicate_dirs_after_normalisation_are_rejected() {
    let err = parse(r#"{"projects":[{"dir":"a"},{"dir":"a/"}]}"#).unwrap_err();
    assert!(
        matches!(err, InstallError::DuplicateProjectDir(ref d) if d == "a"),
        "{err:?}"
    );
    let err = parse(r#"{"projects":[{},{"dir":"."}]}"#).unwrap_err();
    assert!(
        matches!(err, InstallError::DuplicateProjectDir(ref d) if d == "."),
        "{err:?}"
    );
}

#[test]
fn workspace_projects_keep_their_maps() {
    let req = parse(
        r#"{"projects":[
            {"dir":".","dependencies":{"alpha":"^1.0.0"},"devDependencies":{}},
            {"dir":"packages/web/","dependencies":{"beta":"2.1.0"},"optionalDependencies":{"gamma":"^3"}}
        ],"dependencies":{"ignored":"1"}}"#,
    )
    .unwrap();
    assert_eq!(req.projects.len(), 2);
    assert_eq!(req.projects[0].dir, ".");
    assert_eq!(req.projects[0].dependencies["alpha"], "^1.0.0");
    assert_eq!(req.projects[1].dir, "packages/web");
    assert_eq!(req.projects[1].optional_dependencies["gamma"], "^3");
    assert!(req
        .projects
        .iter()
        .all(|p| !p.dependencies.contains_key("ignored")));
}

#[test]
fn legacy_top_level_maps_form_root_project() {
    for body in [
        r#"{"dependencies":{"a":"1"},"devDependencies":{"b":"2"},"optionalDependencies":{"c":"3"}}"#,
        r#"{"projects":[],"dependencies":{"a":"1"},"devDependencies":{"b":"2"},"optionalDependencies":{"c":"3"}}"#,
        r#"{"projects":null,"dependencies":{"a":"1"},"devDependencies":{"b":"2"},"optionalDependencies":{"c":"3"}}"#,
    ] {
        let req = parse(body).unwrap();
        assert_eq!(req.projects.len(), 1);
        let p = &req.projects[0];
        assert_eq!(p.dir, ".");
        assert_eq!(p.dependencies["a"], "1");
        assert_eq!(p.dev_dependencies["b"], "2");
        assert_eq!(p.optional_dependencies["c"], "3");
    }
}

#[test]
fn defaults() {
    let req = parse("{}").unwrap();
    assert_eq!(req.registry, "http://127.0.0.1:4873/");
    assert_eq!(req.projects.len(), 1);
    assert!(req.projects[0].dependencies.is_empty());
    assert!(req.auth_headers.is_empty());
    assert!(req.named_registries.is_empty());
    assert_eq!(req.overrides, None);
    assert_eq!(req.lockfile, None);
    assert!(!req.frozen_lockfile && !req.lockfile_only && !req.trust_lockfile);
    assert!(!req.ignore_manifest_check);
    assert_eq!(req.prefer_frozen_lockfile, None);
    assert_eq!(req.minimum_release_age, None);
    assert_eq!(req.trust_policy, TrustPolicy::Off);
    assert!(req.store_integrities.is_empty());
}

#[test]
fn every_field() {
    let req = parse(
        r#"{"registry":"http://127.0.0.1:9/npm","namedRegistries":{"work":"http://127.0.0.1:8/"},
        "authHeaders":{"//127.0.0.1:8/":"Bearer abc"},"overrides":{"a>b":"1.0.0","bad":{"x":1},"n":3},
        "lockfile":{"lockfileVersion":"9.0"},"frozenLockfile":true,"preferFrozenLockfile":false,
        "ignoreManifestCheck":true,"trustLockfile":true,"lockfileOnly":true,"minimumReleaseAge":1440,
        "minimumReleaseAgeExclude":["@corp/*"],"minimumReleaseAgeIgnoreMissingTime":false,
        "trustPolicy":"no-downgrade","trustPolicyExclude":["x"],"trustPolicyIgnoreAfter":60,
        "storeIntegrities":["sha512-AA=="],"inlineFiles":true,"nodeVersion":"22.23.3","os":"linux","arch":7,
        "somethingNew":{"deep":[1,2]}}"#,
    )
    .unwrap();
    assert_eq!(req.registry, "http://127.0.0.1:9/npm/");
    assert_eq!(req.named_registries["work"], "http://127.0.0.1:8/");
    assert_eq!(req.auth_headers.get("//127.0.0.1:8/"), Some("Bearer abc"));
    let overrides = req.overrides.as_ref().unwrap();
    assert_eq!(overrides.len(), 1);
    assert_eq!(overrides["a>b"], "1.0.0");
    assert_eq!(req.lockfile.as_ref().unwrap()["lockfileVersion"], "9.0");
    assert!(req.frozen_lockfile && req.ignore_manifest_check && req.trust_lockfile);
    assert!(req.lockfile_only);
    assert_eq!(req.prefer_frozen_lockfile, Some(false));
    assert_eq!(req.minimum_release_age, Some(1440));
    assert_eq!(
        req.minimum_release_age_exclude.as_deref(),
        Some(&["@corp/*".to_owned()][..])
    );
    assert_eq!(req.minimum_release_age_ignore_missing_time, Some(false));
    assert_eq!(req.trust_policy, TrustPolicy::NoDowngrade);
    assert_eq!(req.trust_policy_ignore_after, Some(60));
    assert_eq!(req.store_integrities, vec!["sha512-AA==".to_owned()]);
    assert_eq!(req.node_version.as_deref(), Some("22.23.3"));
    assert_eq!(req.arch, None);
}

#[test]
fn overrides_that_are_not_an_object_are_dropped() {
    assert_eq!(parse(r#"{"overrides":["a"]}"#).unwrap().overrides, None);
    assert_eq!(parse(r#"{"overrides":"x"}"#).unwrap().overrides, None);
}

#[test]
fn shape_errors_never_echo_values() {
    let secret = "Bearer s3cr3t-token";
    for body in [
        format!(r#"{{"frozenLockfile":"{secret}"}}"#),
        format!(r#"{{"authHeaders":{{"//h/":{{"t":"{secret}"}}}}}}"#),
        format!(r#"{{"authHeaders":"{secret}"}}"#),
        format!(r#"{{"registry":["{secret}"]}}"#),
        format!(r#"{{"storeIntegrities":["{secret}",1]}}"#),
        format!(r#"{{"projects":[{{"dependencies":{{"a":["{secret}"]}}}}]}}"#),
        format!(r#"{{"trustPolicy":"{secret}"}}"#),
        format!(r#"{{"minimumReleaseAge":"{secret}"}}"#),
        format!(r#"["{secret}"]"#),
        format!(r#"{{"x":"{secret}""#),
    ] {
        let err = parse(&body).unwrap_err();
        let text = format!("{err} {err:?}");
        assert!(!text.contains("s3cr3t"), "leaked: {text}");
    }
}

#[test]
fn field_errors_name_the_field() {
    let err = parse(r#"{"projects":[{"dependencies":{"a":1}}]}"#).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid request field `projects[0].dependencies`: values must be strings"
    );
    let err = parse(r#"{"minimumReleaseAge":-1}"#).unwrap_err();
    assert!(err.to_string().contains("minimumReleaseAge"));
    let err = parse(r#"{"projects":{}}"#).unwrap_err();
    assert!(err.to_string().contains("projects"));
    assert!(matches!(
        parse("not json").unwrap_err(),
        InstallError::InvalidJson(_)
    ));
}

#[test]
fn debug_redacts_credentials() {
    let req = parse(
        r#"{"registry":"https://user:hunter2@127.0.0.1/x/","namedRegistries":{"w":"http://a:pw1@127.0.0.1:1/"},
        "authHeaders":{"//127.0.0.1:8/":"Bearer tok-abc"},
        "lockfile":{"packages":{"a@1":{"resolution":{"tarball":"http://u:pw2@127.0.0.1/a.tgz"}}}}}"#,
    )
    .unwrap();
    let dbg = format!("{req:?}");
    for secret in ["hunter2", "pw1", "pw2", "tok-abc", "user:"] {
        assert!(!dbg.contains(secret), "{secret} leaked in {dbg}");
    }
    assert!(dbg.contains("//127.0.0.1:8/"));
    assert!(dbg.contains("https://<redacted>@127.0.0.1/x/"));
    assert_eq!(
        format!("{:?}", req.auth_headers),
        r#"{"//127.0.0.1:8/": <redacted>}"#
    );
}

#[test]
fn userinfo_redaction() {
    assert_eq!(
        redact_userinfo("http://127.0.0.1/a@b"),
        "http://127.0.0.1/a@b"
    );
    assert_eq!(redact_userinfo("http://u:p@h/"), "http://<redacted>@h/");
    assert_eq!(redact_userinfo("http://u:p@h"), "http://<redacted>@h");
    assert_eq!(redact_userinfo("no-scheme"), "no-scheme");
}

#[test]
fn integer_settings_given_on_the_command_line_arrive_as_digit_strings() {
    // pnpm 11.5.2 with `--config.minimum-release-age=0` sends "0".
    let req = parse(r#"{"minimumReleaseAge":"0","trustPolicyIgnoreAfter":"60"}"#).unwrap();
    assert_eq!(req.minimum_release_age, Some(0));
    assert_eq!(req.trust_policy_ignore_after, Some(60));
    for bad in [
        r#""""#, r#""-1""#, r#""1.5""#, r#"" 1""#, r#""1e3""#, "-1", "1.5",
    ] {
        let body = format!(r#"{{"minimumReleaseAge":{bad}}}"#);
        let err = parse(&body).unwrap_err();
        assert!(
            err.to_string().contains("minimumReleaseAge"),
            "{bad}: {err}"
        );
    }
    // More digits than a u64 holds is refused, not wrapped.
    assert!(parse(r#"{"minimumReleaseAge":"99999999999999999999999"}"#).is_err());
}
