use std::path::{Path, PathBuf};

use crate::{Config, ConfigError, Env, LogFormat, UplinkConfig};

fn env(pairs: &[(&str, &str)]) -> Env {
    Env::from_pairs(
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    )
}

#[test]
fn embedded_default_uses_data_dir() {
    let c = Config::embedded_default(Path::new("/var/lib/pnpr"), &Env::default()).unwrap();
    assert_eq!(c.config_path, None);
    assert_eq!(c.listen, None);
    assert_eq!(c.storage, PathBuf::from("/var/lib/pnpr"));
    assert_eq!(c.cache, PathBuf::from("/var/lib/pnpr/.pnpr-cache"));
    let h = c.auth.htpasswd.as_ref().unwrap();
    assert_eq!(h.file, PathBuf::from("/var/lib/pnpr/htpasswd"));
    assert_eq!(h.max_users, None);
    assert!(c.uplinks.is_empty());
    assert_eq!(c.packages.len(), 1);
    assert_eq!(c.packages[0].pattern, "**");
    assert!(c.packages[0].proxy.is_empty());
    assert_eq!(c.log.format, LogFormat::Pretty);
    assert_eq!(c.log.level, "info");
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn embedded_default_with_pnpr_uplink() {
    let c = Config::embedded_default(
        Path::new("/d"),
        &env(&[("PNPR_UPLINK", "http://127.0.0.1:4000")]),
    )
    .unwrap();
    assert_eq!(c.uplinks.len(), 1);
    assert_eq!(c.uplinks[0].name, "default");
    assert_eq!(c.uplinks[0].url.as_str(), "http://127.0.0.1:4000/");
    assert_eq!(c.packages[0].proxy, ["default"]);
}

#[test]
fn load_file_sets_path_and_resolves_relative_to_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(
        &path,
        "storage: ./store\nauth:\n  htpasswd:\n    file: htpasswd\n",
    )
    .unwrap();
    let c = Config::load_file(&path, &Env::default()).unwrap();
    assert_eq!(c.config_path.as_deref(), Some(path.as_path()));
    assert_eq!(c.storage, dir.path().join("store"));
    assert_eq!(c.cache, dir.path().join("store/.pnpr-cache"));
    assert_eq!(c.auth.htpasswd.unwrap().file, dir.path().join("htpasswd"));
}

#[test]
fn load_file_missing_is_io_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = Config::load_file(&dir.path().join("nope.yaml"), &Env::default()).unwrap_err();
    assert!(matches!(err, ConfigError::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("nope.yaml"));
}

#[test]
fn relative_base_dir_is_made_absolute() {
    let c = Config::from_yaml_str("", Path::new("rel"), &Env::default()).unwrap();
    assert!(c.storage.is_absolute());
    assert!(c.cache.is_absolute());
}

#[test]
fn uplink_auth_header_value() {
    let auth = crate::UplinkAuth {
        kind: crate::AuthKind::Bearer,
        token: crate::Secret::new("t0k".into()),
    };
    assert_eq!(auth.header_value().expose(), "Bearer t0k");
    assert_eq!(format!("{:?}", auth.header_value()), "<redacted>");
    let u = UplinkConfig::new("x", url::Url::parse("http://127.0.0.1/").unwrap());
    assert_eq!(u.max_fails, UplinkConfig::DEFAULT_MAX_FAILS);
}

const POLICY: &str = "groups:\n  team: alice bob\nuplinks:\n  corp:\n    url: http://127.0.0.1:1/\n    access: team\n    \
                      auth: {type: bearer, token: tok-SECRET-1}\npackages:\n  '@corp/*': {access: team, proxy: corp}\n  '**': {}\n";

fn fingerprint(yaml: &str) -> String {
    Config::from_yaml_str(yaml, Path::new("/srv"), &Env::default())
        .unwrap()
        .policy_fingerprint()
}

#[test]
fn policy_fingerprint_is_stable_and_secret_free() {
    let a = fingerprint(POLICY);
    assert_eq!(a, fingerprint(POLICY));
    assert!(serde_json::from_str::<serde_json::Value>(&a).is_ok());
    assert!(!a.contains("tok-SECRET"), "{a}");
    // Non-policy edits and token rotation do not change it.
    assert_eq!(
        a,
        fingerprint(&format!(
            "{POLICY}max_body_size: 1mb\nlog: {{level: debug}}\n"
        ))
    );
    assert_eq!(
        a,
        fingerprint(&POLICY.replace("tok-SECRET-1", "tok-SECRET-2"))
    );
    assert_eq!(
        a,
        fingerprint(&POLICY.replace(
            "url: http://127.0.0.1:1/\n",
            "url: http://127.0.0.1:1/\n    maxage: 9m\n"
        ))
    );
}

#[test]
fn policy_fingerprint_changes_on_policy_edits() {
    let a = fingerprint(POLICY);
    let edits = [
        POLICY.replace("team: alice bob", "team: alice bob carol"),
        POLICY.replace("access: team\n    auth", "access: $authenticated\n    auth"),
        POLICY.replace("{access: team, proxy: corp}", "{access: $all, proxy: corp}"),
        POLICY.replace("'**': {}", "'**': {publish: team}"),
        POLICY.replace("'**': {}", "'**': {unpublish: team}"),
        format!("{POLICY}routes:\n  public:\n    - package: '@oss/*'\n"),
        POLICY.replace("127.0.0.1:1/", "127.0.0.1:2/"),
        // Reordering rules changes first-match semantics.
        POLICY.replace(
            "  '@corp/*': {access: team, proxy: corp}\n  '**': {}\n",
            "  '**': {}\n  '@corp/*': {access: team, proxy: corp}\n",
        ),
    ];
    for edit in &edits {
        assert_ne!(a, fingerprint(edit), "edit not detected:\n{edit}");
    }
}

/// The shipped example must load once the variables it references are set.
#[test]
fn example_config_parses() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../pnpr.yaml.example");
    let e = env(&[
        ("PNPR_PUBLIC_BASE", "https://127.0.0.1:8443/"),
        ("PNPR_SECRET", "an-example-secret-of-32-bytes!!!"),
        ("PNPR_NPM_REGISTRY", "http://127.0.0.1:4000/"),
        ("CORP_REGISTRY", "https://127.0.0.1:4001/npm/"),
        ("CORP_NPM_TOKEN", "corp-token"),
        ("INTERNAL_MIRROR", "https://127.0.0.1:4002/"),
    ]);
    let c = match Config::load_file(&path, &e) {
        Ok(c) => c,
        Err(err) => panic!("pnpr.yaml.example must load: {err}"),
    };
    assert!(
        c.warnings.is_empty(),
        "example should produce no warnings: {:?}",
        c.warnings
    );
    let dir = std::path::absolute(path.parent().unwrap()).unwrap();
    assert_eq!(c.storage, crate::parse::resolve(&dir, "storage"));
    assert_eq!(c.cache, crate::parse::resolve(&dir, "cache"));
    assert_eq!(c.listen, Some("127.0.0.1:4873".parse().unwrap()));
    assert!(c.secret.is_some());
    assert_eq!(c.auth.htpasswd.as_ref().and_then(|h| h.max_users), Some(-1));
    assert_eq!(c.groups.len(), 2);
    let names: Vec<&str> = c.uplinks.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(names, ["npmjs", "corp"]);
    let corp = &c.uplinks[1];
    assert_eq!(
        corp.auth.as_ref().unwrap().header_value().expose(),
        "Bearer corp-token"
    );
    assert_eq!(
        corp.access.as_deref(),
        Some(&["platform".to_owned(), "release".to_owned()][..])
    );
    assert_eq!(corp.headers.len(), 1);
    assert_eq!(c.routes.public.len(), 2);
    let patterns: Vec<&str> = c.packages.iter().map(|p| p.pattern.as_str()).collect();
    assert_eq!(patterns, ["@internal/*", "@corp/*", "**"]);
    assert_eq!(c.network.hosts.len(), 1);
    assert_eq!(c.network.allow_private.len(), 2);
    assert_eq!(
        c.install_accelerator.grant_ttl,
        Some(std::time::Duration::from_secs(86_400))
    );
    assert_eq!(c.log.level, "http");
    assert_eq!(c.max_body_size, 50 << 20);
    assert_eq!(c.ownership.mode, crate::OwnershipMode::Maintainers);
    assert_eq!(c.ownership.admins, ["platform"]);
}

#[test]
fn example_config_without_env_fails_closed() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../pnpr.yaml.example");
    let err = Config::load_file(&path, &Env::default())
        .unwrap_err()
        .to_string();
    // An unset public_url just means "not set"; the first unset uplink URL is fatal.
    assert_eq!(
        err,
        "uplinks.npmjs.url: not a valid URL (relative URL without a base)"
    );
}
