use std::path::{Path, PathBuf};

use crate::{Config, Env, LogFormat};

fn env(pairs: &[(&str, &str)]) -> Env {
    Env::from_pairs(
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    )
}

fn parse_plain(yaml: &str) -> Config {
    Config::from_yaml_str(yaml, Path::new("/srv/pnpr"), &Env::default()).unwrap()
}

fn apply_err(cfg: &mut Config, pairs: &[(&str, &str)]) -> String {
    cfg.apply_env_overrides(&env(pairs))
        .unwrap_err()
        .to_string()
}

#[test]
fn scalar_overrides() {
    let mut c = parse_plain("listen: 127.0.0.1:1\nlog: {level: info}\n");
    c.apply_env_overrides(&env(&[
        ("PNPR_LISTEN", "http://0.0.0.0:4873"),
        ("PNPR_PUBLIC_URL", "https://127.0.0.1:8443/base"),
        ("PNPR_SECRET", "0123456789abcdef-xyz"),
        ("PNPR_LOG_LEVEL", "debug"),
        ("PNPR_LOG_FORMAT", "JSON"),
        ("PNPR_MAX_BODY_SIZE", "10mb"),
    ]))
    .unwrap();
    assert_eq!(c.listen, Some("0.0.0.0:4873".parse().unwrap()));
    assert_eq!(
        c.public_url.as_ref().map(url::Url::as_str),
        Some("https://127.0.0.1:8443/base/")
    );
    assert_eq!(
        c.secret.as_ref().map(crate::Secret::expose),
        Some("0123456789abcdef-xyz")
    );
    assert_eq!(c.log.level, "debug");
    assert_eq!(c.log.format, LogFormat::Json);
    assert_eq!(c.max_body_size, 10 << 20);
}

#[test]
fn empty_override_counts_as_unset() {
    let mut c = parse_plain("listen: 127.0.0.1:1\n");
    let before = c.clone();
    c.apply_env_overrides(&env(&[
        ("PNPR_LISTEN", ""),
        ("PNPR_SECRET", ""),
        ("PNPR_UPLINK", ""),
    ]))
    .unwrap();
    assert_eq!(c, before);
}

#[test]
fn invalid_overrides_name_the_variable_not_the_value() {
    let mut c = parse_plain("");
    assert_eq!(
        apply_err(&mut c, &[("PNPR_LISTEN", "nowhere")]),
        "PNPR_LISTEN: expected an IP address and port such as 127.0.0.1:4873"
    );
    assert_eq!(
        apply_err(&mut c, &[("PNPR_SECRET", "short-pass")]),
        "PNPR_SECRET: must be at least 16 bytes"
    );
    assert_eq!(
        apply_err(&mut c, &[("PNPR_LOG_LEVEL", "chatty")]),
        "PNPR_LOG_LEVEL: must be one of trace, debug, http, info, warn, error, fatal"
    );
    assert_eq!(
        apply_err(&mut c, &[("PNPR_LOG_FORMAT", "xml")]),
        "PNPR_LOG_FORMAT: must be pretty or json"
    );
    assert!(apply_err(&mut c, &[("PNPR_MAX_BODY_SIZE", "huge")])
        .starts_with("PNPR_MAX_BODY_SIZE: invalid size"));
    assert_eq!(
        apply_err(&mut c, &[("PNPR_MAX_BODY_SIZE", "0")]),
        "PNPR_MAX_BODY_SIZE: must be greater than 0"
    );
    assert_eq!(
        apply_err(&mut c, &[("PNPR_STORAGE", "rel/dir")]),
        "PNPR_STORAGE: must be an absolute path"
    );
    assert_eq!(
        apply_err(&mut c, &[("PNPR_CACHE", "rel/dir")]),
        "PNPR_CACHE: must be an absolute path"
    );
    assert!(apply_err(&mut c, &[("PNPR_PUBLIC_URL", "/x")])
        .starts_with("PNPR_PUBLIC_URL: not a valid URL"));
    let msg = apply_err(
        &mut c,
        &[("PNPR_UPLINK", "https://me:pw-hunter2@127.0.0.1/")],
    );
    assert!(
        msg.starts_with("PNPR_UPLINK: URL must not contain credentials"),
        "{msg}"
    );
    assert!(!msg.contains("hunter2"));
}

#[test]
fn storage_override_moves_defaulted_cache_only() {
    let mut c = parse_plain("");
    c.apply_env_overrides(&env(&[("PNPR_STORAGE", "/var/lib/pnpr/./data")]))
        .unwrap();
    assert_eq!(c.storage, PathBuf::from("/var/lib/pnpr/data"));
    assert_eq!(c.cache, PathBuf::from("/var/lib/pnpr/data/.pnpr-cache"));

    let mut c = parse_plain("cache: /tmp/pnpr-cache\n");
    c.apply_env_overrides(&env(&[("PNPR_STORAGE", "/var/lib/pnpr")]))
        .unwrap();
    assert_eq!(c.cache, PathBuf::from("/tmp/pnpr-cache"));

    let mut c = parse_plain("");
    c.apply_env_overrides(&env(&[("PNPR_STORAGE", "/a"), ("PNPR_CACHE", "/b")]))
        .unwrap();
    assert_eq!(c.storage, PathBuf::from("/a"));
    assert_eq!(c.cache, PathBuf::from("/b"));
}

#[test]
fn uplink_override_adds_default_and_joins_auto_catch_all() {
    let mut c = parse_plain("uplinks:\n  mirror: {url: 'http://127.0.0.1:1/'}\n");
    c.apply_env_overrides(&env(&[("PNPR_UPLINK", "http://127.0.0.1:2/npm")]))
        .unwrap();
    let names: Vec<&str> = c.uplinks.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(names, ["mirror", "default"]);
    assert_eq!(c.uplinks[1].url.as_str(), "http://127.0.0.1:2/npm/");
    assert_eq!(c.packages.len(), 1);
    assert_eq!(c.packages[0].proxy, ["mirror", "default"]);
}

#[test]
fn uplink_override_replaces_url_of_existing_default() {
    let mut c = parse_plain(
        "uplinks:\n  default:\n    url: http://127.0.0.1:1/\n    timeout: 5s\npackages:\n  '@x/*': {proxy: default}\n",
    );
    c.apply_env_overrides(&env(&[("PNPR_UPLINK", "http://127.0.0.1:3/")]))
        .unwrap();
    assert_eq!(c.uplinks.len(), 1);
    assert_eq!(c.uplinks[0].url.as_str(), "http://127.0.0.1:3/");
    assert_eq!(c.uplinks[0].timeout, std::time::Duration::from_secs(5));
    assert_eq!(c.packages[0].proxy, ["default"]);
}

#[test]
fn uplink_override_leaves_explicit_packages_alone() {
    let mut c = parse_plain("packages:\n  '**': {access: $authenticated}\n");
    c.apply_env_overrides(&env(&[("PNPR_UPLINK", "http://127.0.0.1:2/")]))
        .unwrap();
    assert_eq!(c.uplinks.len(), 1);
    assert!(c.packages[0].proxy.is_empty());
    assert_eq!(c.packages[0].access, ["$authenticated"]);
}

#[test]
fn overrides_are_idempotent() {
    let e = env(&[
        ("PNPR_UPLINK", "http://127.0.0.1:2/"),
        ("PNPR_STORAGE", "/s"),
        ("PNPR_LISTEN", "127.0.0.1:9"),
    ]);
    // from_yaml_str already applied them once.
    let mut c = Config::from_yaml_str("", Path::new("/srv"), &e).unwrap();
    let once = c.clone();
    c.apply_env_overrides(&e).unwrap();
    assert_eq!(c, once);
    assert_eq!(c.packages[0].proxy, ["default"]);
    assert_eq!(c.cache, PathBuf::from("/s/.pnpr-cache"));
}
