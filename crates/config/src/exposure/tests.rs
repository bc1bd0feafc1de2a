use std::net::SocketAddr;
use std::path::Path;

use crate::{Config, Env, RateLimitConfig};

fn load(yaml: &str) -> Config {
    Config::from_yaml_str(yaml, Path::new("/srv/pnpr"), &Env::default()).expect("config")
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("socket address")
}

#[test]
fn loopback_keeps_open_registration() {
    let c = Config::embedded_default(Path::new("/d"), &Env::default()).expect("default");
    for a in [
        "127.0.0.1:4873",
        "127.8.9.10:1",
        "[::1]:4873",
        "[::ffff:127.0.0.1]:80",
    ] {
        assert!(c.check_exposure(addr(a)).is_ok(), "{a}");
    }
}

#[test]
fn exposed_listener_needs_an_explicit_registration_policy() {
    let embedded = Config::embedded_default(Path::new("/d"), &Env::default()).expect("default");
    let no_auth = load("storage: ./s\n");
    let unset = load("auth: {htpasswd: {file: ./h}}\n");
    let empty = load("auth: {htpasswd: {file: ./h, max_users: }}\n");
    for c in [&embedded, &no_auth, &unset, &empty] {
        for a in [
            "0.0.0.0:4873",
            "[::]:4873",
            "192.0.2.10:4873",
            "[2001:db8::1]:80",
        ] {
            let err = c.check_exposure(addr(a)).expect_err(a).to_string();
            assert!(
                err.starts_with(
                    "auth.htpasswd.max_users: must be set explicitly when listening on"
                ),
                "{err}"
            );
            assert!(
                err.contains("-1") && err.contains("infinity"),
                "says what to set: {err}"
            );
        }
    }
    for yaml in [
        "auth: {htpasswd: {file: ./h, max_users: -1}}\n",
        "auth: {htpasswd: {file: ./h, max_users: 5}}\n",
        "auth: {htpasswd: {file: ./h, max_users: infinity}}\n",
    ] {
        assert!(
            load(yaml).check_exposure(addr("0.0.0.0:4873")).is_ok(),
            "{yaml}"
        );
    }
}

#[test]
fn rate_limit_defaults_and_values() {
    let c = load("auth: {htpasswd: {file: ./h}}\n");
    assert_eq!(c.auth.rate_limit, RateLimitConfig::default());
    assert_eq!(c.auth.rate_limit.per_user, 10);
    assert_eq!(c.auth.rate_limit.per_address, 50);
    assert_eq!(
        c.auth.rate_limit.window,
        std::time::Duration::from_secs(300)
    );
    let c = load("auth:\n  rate_limit: {per_user: 3, per_address: '7', window: 90s}\n");
    assert_eq!(
        c.auth.rate_limit,
        RateLimitConfig {
            per_user: 3,
            per_address: 7,
            window: std::time::Duration::from_secs(90),
        }
    );
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn rate_limit_errors_name_the_key() {
    let err = |yaml: &str| {
        Config::from_yaml_str(yaml, Path::new("/srv"), &Env::default())
            .expect_err(yaml)
            .to_string()
    };
    assert_eq!(
        err("auth: {rate_limit: {per_user: 0}}\n"),
        "auth.rate_limit.per_user: must be a whole number of at least 1"
    );
    assert_eq!(
        err("auth: {rate_limit: {per_address: -5}}\n"),
        "auth.rate_limit.per_address: must be a whole number of at least 1"
    );
    assert_eq!(
        err("auth: {rate_limit: {per_user: many}}\n"),
        "auth.rate_limit.per_user: expected a whole number"
    );
    assert_eq!(
        err("auth: {rate_limit: {window: 0s}}\n"),
        "auth.rate_limit.window: must be at least 1s"
    );
    assert!(err("auth: {rate_limit: {window: soon}}\n").starts_with("auth.rate_limit.window: "));
    assert_eq!(
        err("auth: {rate_limit: {per_usr: 3}}\n"),
        "auth.rate_limit.per_usr: unknown key (expected per_user, per_address or window)"
    );
    assert_eq!(
        err("auth: {rate_limit: 5}\n"),
        "auth.rate_limit: expected a mapping, found a number"
    );
}

#[test]
fn example_config_documents_the_auth_budgets() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../pnpr.yaml.example");
    let e = Env::from_pairs(
        [
            ("PNPR_NPM_REGISTRY", "http://127.0.0.1:4000/"),
            ("CORP_REGISTRY", "https://127.0.0.1:4001/npm/"),
            ("CORP_NPM_TOKEN", "corp-token"),
            ("INTERNAL_MIRROR", "https://127.0.0.1:4002/"),
            ("PNPR_SECRET", "an-example-secret-of-32-bytes!!!"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    let c = Config::load_file(&path, &e).expect("example loads");
    assert_eq!(c.auth.rate_limit, RateLimitConfig::default());
    assert!(c.auth.htpasswd.as_ref().is_some_and(|h| h.max_users_set));
    assert!(c.check_exposure(addr("0.0.0.0:4873")).is_ok());
}
