use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::{AuthKind, Config, ConfigError, Env, LogFormat, DEFAULT_MAX_BODY_SIZE};

fn env(pairs: &[(&str, &str)]) -> Env {
    Env::from_pairs(
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    )
}

fn base() -> &'static Path {
    Path::new("/srv/pnpr")
}

fn load(yaml: &str) -> Config {
    load_env(yaml, &Env::default())
}

fn load_env(yaml: &str, e: &Env) -> Config {
    match Config::from_yaml_str(yaml, base(), e) {
        Ok(c) => c,
        Err(err) => panic!("config should load: {err}"),
    }
}

fn err(yaml: &str) -> String {
    err_env(yaml, &Env::default())
}

fn err_env(yaml: &str, e: &Env) -> String {
    match Config::from_yaml_str(yaml, base(), e) {
        Ok(_) => panic!("config should be rejected:\n{yaml}"),
        Err(err) => err.to_string(),
    }
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

// ---- defaults and top level ----

#[test]
fn empty_file_gives_defaults() {
    for text in ["", "{}", "# only a comment\n"] {
        let c = load(text);
        assert_eq!(c.storage, PathBuf::from("/srv/pnpr/storage"));
        assert_eq!(c.cache, PathBuf::from("/srv/pnpr/storage/.pnpr-cache"));
        assert_eq!(c.listen, None);
        assert_eq!(c.public_url, None);
        assert_eq!(c.secret, None);
        assert_eq!(c.auth.htpasswd, None);
        assert!(c.uplinks.is_empty());
        assert_eq!(c.max_body_size, DEFAULT_MAX_BODY_SIZE);
        assert_eq!(c.max_body_size, 52_428_800);
        assert_eq!(c.log.format, LogFormat::Pretty);
        assert_eq!(c.log.level, "info");
        assert_eq!(c.install_accelerator.grant_ttl, None);
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        assert_eq!(c.packages.len(), 1);
        assert_eq!(c.packages[0].pattern, "**");
        assert_eq!(c.packages[0].access, strs(&["$all"]));
        assert_eq!(c.packages[0].publish, strs(&["$authenticated"]));
        assert_eq!(c.packages[0].unpublish, None);
        assert!(c.packages[0].proxy.is_empty());
    }
}

#[test]
fn root_must_be_a_mapping() {
    assert_eq!(
        err("- a\n- b\n"),
        "(root): expected a mapping, found a list"
    );
    assert!(err("storage: [unclosed\n").starts_with("config is not valid YAML"));
}

#[test]
fn duplicate_keys_are_rejected() {
    let e = err("storage: a\nstorage: b\n");
    assert!(e.starts_with("config is not valid YAML"), "{e}");
}

#[test]
fn yaml_tags_are_rejected() {
    assert_eq!(
        err("uplinks:\n  a:\n    url: !secret https://x/\n"),
        "uplinks.a.url: YAML tags (!tag) are not supported"
    );
}

#[test]
fn merge_keys_work() {
    let c = load(
        "x-defaults: &d\n  timeout: 10s\n  maxage: 5m\nuplinks:\n  a:\n    <<: *d\n    url: http://127.0.0.1:1/\n",
    );
    assert_eq!(c.uplinks[0].timeout, Duration::from_secs(10));
    assert_eq!(c.uplinks[0].maxage, Duration::from_secs(300));
}

#[test]
fn unknown_and_verdaccio_top_level_keys_warn() {
    let c = load(
        "web:\n  title: x\nplugins: ./plugins\nmiddlewares: {audit: {enabled: true}}\nserver: {keepAliveTimeout: 60}\n\
         security: {}\nnotify: {}\ni18n: {web: en-US}\npublish: {allow_offline: true}\nurl_prefix: /x/\n\
         experiments: {}\nstoragee: ./typo\n",
    );
    for key in [
        "web",
        "plugins",
        "middlewares",
        "server",
        "security",
        "notify",
        "i18n",
        "publish",
        "url_prefix",
        "experiments",
    ] {
        let expected = format!("{key}: not supported by pnpr; ignored");
        assert!(
            c.warnings.contains(&expected),
            "missing {expected:?} in {:?}",
            c.warnings
        );
    }
    assert!(
        c.warnings
            .contains(&"storagee: unknown key; ignored".to_owned()),
        "{:?}",
        c.warnings
    );
    assert_eq!(c.warnings.len(), 11);
}

#[test]
fn relative_paths_resolve_against_base_dir() {
    let c = load(
        "storage: ./data/../store\ncache: cache\nauth:\n  htpasswd:\n    file: ./users/htpasswd\n",
    );
    assert_eq!(c.storage, PathBuf::from("/srv/pnpr/data/../store"));
    assert_eq!(c.cache, PathBuf::from("/srv/pnpr/cache"));
    assert_eq!(
        c.auth.htpasswd.as_ref().map(|h| h.file.clone()),
        Some(PathBuf::from("/srv/pnpr/users/htpasswd"))
    );
    let c = load("storage: /var/lib/pnpr\n");
    assert_eq!(c.storage, PathBuf::from("/var/lib/pnpr"));
    assert_eq!(c.cache, PathBuf::from("/var/lib/pnpr/.pnpr-cache"));
}

#[test]
fn listen_forms() {
    let addr = |s: &str| load(s).listen;
    let local: SocketAddr = "127.0.0.1:4873".parse().unwrap();
    assert_eq!(addr("listen: 127.0.0.1:4873\n"), Some(local));
    assert_eq!(addr("listen: http://127.0.0.1:4873\n"), Some(local));
    assert_eq!(addr("listen: http://127.0.0.1:4873/\n"), Some(local));
    assert_eq!(
        addr("listen:\n  - 127.0.0.1:4873\n  - 0.0.0.0:80\n"),
        Some(local)
    );
    assert_eq!(addr("listen: 4873\n"), Some(local));
    assert_eq!(addr("listen: '4873'\n"), Some(local));
    assert_eq!(addr("listen: localhost:4873\n"), Some(local));
    assert_eq!(
        addr("listen: '[::1]:7677'\n"),
        Some("[::1]:7677".parse().unwrap())
    );
    assert_eq!(
        addr("listen: http://[::]:80\n"),
        Some("[::]:80".parse().unwrap())
    );
    assert_eq!(addr("listen: ''\n"), None);
    assert_eq!(addr("listen:\n"), None);
    assert!(err("listen: https://0.0.0.0:443\n")
        .starts_with("listen: https listeners are not supported"));
    assert!(err("listen: unix:/tmp/sock\n").starts_with("listen: unix socket"));
    assert_eq!(err("listen: []\n"), "listen: empty list");
    assert!(err("listen: example-host:80\n").starts_with("listen: expected an IP address and port"));
    assert!(err("listen: 70000\n").starts_with("listen: not a valid port"));
    assert!(err("listen: [nope]\n").starts_with("listen[0]: expected an IP address"));
}

#[test]
fn public_url_gets_trailing_slash_and_is_validated() {
    let c = load("public_url: https://127.0.0.1:8443/registry\n");
    assert_eq!(
        c.public_url.unwrap().as_str(),
        "https://127.0.0.1:8443/registry/"
    );
    assert_eq!(load("public_url: ''\n").public_url, None);
    assert!(err("public_url: /relative\n")
        .starts_with("public_url: not a valid URL (relative URL without a base)"));
    assert_eq!(
        err("public_url: ftp://127.0.0.1/\n"),
        "public_url: URL scheme must be http or https"
    );
    let e = err("public_url: https://user:hunter2secret@127.0.0.1/\n");
    assert!(
        e.starts_with("public_url: URL must not contain credentials"),
        "{e}"
    );
    assert!(!e.contains("hunter2secret"));
}

#[test]
fn secret_length_and_empty() {
    assert_eq!(err("secret: short\n"), "secret: must be at least 16 bytes");
    assert_eq!(load("secret: ''\n").secret, None);
    let c = load("secret: 0123456789abcdef\n");
    assert_eq!(
        c.secret.as_ref().map(crate::Secret::expose),
        Some("0123456789abcdef")
    );
    assert!(!format!("{c:?}").contains("0123456789abcdef"));
    // Unset variable: empty, hence no secret, plus a warning naming the variable.
    let c = load("secret: ${PNPR_TEST_UNSET}\n");
    assert_eq!(c.secret, None);
    assert_eq!(c.warnings.len(), 1);
    assert!(c.warnings[0].contains("${PNPR_TEST_UNSET}"));
}

#[test]
fn secret_substituted_from_env_is_not_leaked_in_errors() {
    let e = env(&[("S", "tiny-secret")]);
    let msg = err_env("secret: ${S}\n", &e);
    assert_eq!(msg, "secret: must be at least 16 bytes");
}

#[test]
fn max_body_size_forms() {
    assert_eq!(load("max_body_size: 1048576\n").max_body_size, 1_048_576);
    assert_eq!(load("max_body_size: 50mb\n").max_body_size, 50 << 20);
    assert_eq!(load("max_body_size: 10MB\n").max_body_size, 10 << 20);
    assert_eq!(load("max_body_size: 512kb\n").max_body_size, 512 << 10);
    assert_eq!(load("max_body_size: 1gb\n").max_body_size, 1 << 30);
    assert!(err("max_body_size: lots\n").starts_with("max_body_size: invalid size"));
    assert_eq!(
        err("max_body_size: 0\n"),
        "max_body_size: must be greater than 0"
    );
}

#[test]
fn install_accelerator_grant_ttl() {
    let ttl = |s: &str| load(s).install_accelerator.grant_ttl;
    assert_eq!(
        ttl("installAccelerator:\n  grantTtl: 86400\n"),
        Some(Duration::from_secs(86_400))
    );
    assert_eq!(
        ttl("installAccelerator:\n  grantTtl: 1d\n"),
        Some(Duration::from_secs(86_400))
    );
    assert_eq!(ttl("installAccelerator:\n  grantTtl:\n"), None);
    assert_eq!(ttl("installAccelerator: {}\n"), None);
    assert!(err("installAccelerator:\n  grantTtl: soon\n")
        .starts_with("installAccelerator.grantTtl: invalid duration"));
}

#[test]
fn log_section() {
    let c = load("log:\n  type: stdout\n  format: json\n  level: HTTP\n");
    assert_eq!(c.log.format, LogFormat::Json);
    assert_eq!(c.log.level, "http");
    assert_eq!(c.log.tracing_level(), "info");
    assert!(c.warnings.is_empty());
    let c = load("log: {type: file, path: /tmp/x.log, format: pretty-timestamped, level: fatal}\n");
    assert_eq!(c.log.format, LogFormat::Pretty);
    assert_eq!(c.log.tracing_level(), "error");
    assert!(
        c.warnings
            .iter()
            .any(|w| w.starts_with("log.type: only stdout")),
        "{:?}",
        c.warnings
    );
    assert!(c
        .warnings
        .contains(&"log.path: not supported by pnpr; ignored".to_owned()));
    assert_eq!(
        err("log: {level: loud}\n"),
        "log.level: must be one of trace, debug, http, info, warn, error, fatal"
    );
    assert_eq!(
        err("log: {format: xml}\n"),
        "log.format: must be pretty or json"
    );
    assert_eq!(
        err("log: verbose\n"),
        "log: expected a mapping, found a string"
    );
}

// ---- auth ----

#[test]
fn htpasswd_max_users() {
    let mu = |s: &str| load(s).auth.htpasswd.and_then(|h| h.max_users);
    assert_eq!(
        mu("auth: {htpasswd: {file: ./h, max_users: -1}}\n"),
        Some(-1)
    );
    assert_eq!(
        mu("auth: {htpasswd: {file: ./h, max_users: 100}}\n"),
        Some(100)
    );
    assert_eq!(mu("auth: {htpasswd: {file: ./h}}\n"), None);
    assert_eq!(mu("auth: {htpasswd: {file: ./h, max_users: .inf}}\n"), None);
    assert_eq!(
        mu("auth: {htpasswd: {file: ./h, max_users: Infinity}}\n"),
        None
    );
    assert_eq!(
        err("auth: {htpasswd: {file: ./h, max_users: -2}}\n"),
        "auth.htpasswd.max_users: must be -1 (registration disabled) or a non-negative number"
    );
    assert_eq!(
        err("auth: {htpasswd: {file: ./h, max_users: many}}\n"),
        "auth.htpasswd.max_users: expected a whole number"
    );
    // An empty htpasswd block still gets a file next to the config.
    let c = load("auth:\n  htpasswd:\n");
    assert_eq!(
        c.auth.htpasswd.unwrap().file,
        PathBuf::from("/srv/pnpr/htpasswd")
    );
}

#[test]
fn auth_plugins_and_tokens_warn() {
    let c = load("auth:\n  ldap: {url: x}\n  tokens: {file: ./t.db}\n  htpasswd: {file: ./h, algorithm: bcrypt}\n");
    assert!(c.auth.htpasswd.is_some());
    assert!(
        c.warnings.iter().any(|w| w.starts_with("auth.ldap:")),
        "{:?}",
        c.warnings
    );
    assert!(
        c.warnings.iter().any(|w| w.starts_with("auth.tokens:")),
        "{:?}",
        c.warnings
    );
    assert!(c
        .warnings
        .contains(&"auth.htpasswd.algorithm: not supported by pnpr; ignored".to_owned()));
}

// ---- groups and access lists ----

#[test]
fn groups_preserve_order_and_split_members() {
    let c =
        load("groups:\n  zeta: alice bob\n  alpha: [alice, 'carol  dave']\n  mid: ''\n  none:\n");
    assert_eq!(
        c.groups,
        vec![
            ("zeta".to_owned(), strs(&["alice", "bob"])),
            ("alpha".to_owned(), strs(&["alice", "carol", "dave"])),
            ("mid".to_owned(), Vec::new()),
            ("none".to_owned(), Vec::new()),
        ]
    );
    assert_eq!(
        err("groups:\n  team: {a: b}\n"),
        "groups.team: expected a space-separated string or a list, found a mapping"
    );
    assert_eq!(
        err("groups:\n  team: [ok, [nested]]\n"),
        "groups.team[1]: expected a name, found a list"
    );
    assert!(err("groups: {'a b': x}\n").starts_with("groups.'a b': group names"));
}

#[test]
fn package_access_list_forms() {
    let c = load(
        "packages:\n  '@a/*':\n    access: alice  bob\n    publish: [alice, 'bob carol']\n    unpublish: alice\n  \
         '@b/*':\n    access: [$authenticated]\n  '@c/*': {}\n  '@d/*':\n  '@e/*':\n    access: []\n    publish:\n",
    );
    let p = &c.packages;
    assert_eq!(p.len(), 5);
    assert_eq!(p[0].access, strs(&["alice", "bob"]));
    assert_eq!(p[0].publish, strs(&["alice", "bob", "carol"]));
    assert_eq!(p[0].unpublish, Some(strs(&["alice"])));
    assert_eq!(p[1].access, strs(&["$authenticated"]));
    assert_eq!(p[1].publish, strs(&["$authenticated"]));
    assert_eq!(p[1].unpublish, None);
    for rule in &p[2..4] {
        assert_eq!(rule.access, strs(&["$all"]));
        assert_eq!(rule.publish, strs(&["$authenticated"]));
        assert!(rule.proxy.is_empty());
    }
    // Present but empty admits nobody.
    assert!(p[4].access.is_empty());
    assert!(p[4].publish.is_empty());
}

#[test]
fn packages_preserve_order() {
    let c = load("packages:\n  'z*': {}\n  '@private/*': {}\n  'a*': {}\n  '**': {}\n");
    let order: Vec<&str> = c.packages.iter().map(|p| p.pattern.as_str()).collect();
    assert_eq!(order, ["z*", "@private/*", "a*", "**"]);
}

#[test]
fn packages_explicitly_empty_means_no_rules() {
    assert!(load("packages: {}\n").packages.is_empty());
    // `packages:` with nothing after it reads as absent.
    assert_eq!(load("packages:\n").packages.len(), 1);
}

#[test]
fn default_packages_proxy_every_uplink_in_order() {
    let c =
        load("uplinks:\n  b: {url: 'http://127.0.0.1:2/'}\n  a: {url: 'http://127.0.0.1:1/'}\n");
    assert_eq!(c.packages.len(), 1);
    assert_eq!(c.packages[0].proxy, strs(&["b", "a"]));
}

#[test]
fn proxy_must_name_configured_uplinks() {
    let base =
        "uplinks:\n  up1: {url: 'http://127.0.0.1:1/'}\n  up2: {url: 'http://127.0.0.1:2/'}\n";
    let c = load(&format!("{base}packages:\n  '**':\n    proxy: up2 up1\n"));
    assert_eq!(c.packages[0].proxy, strs(&["up2", "up1"]));
    let c = load(&format!(
        "{base}packages:\n  '**':\n    proxy: [up1, 'up2']\n"
    ));
    assert_eq!(c.packages[0].proxy, strs(&["up1", "up2"]));
    assert_eq!(
        err(&format!(
            "{base}packages:\n  '@corp/*':\n    proxy: up1 nope\n"
        )),
        "packages.'@corp/*'.proxy: 'nope' is not a configured uplink"
    );
    assert_eq!(
        err("packages:\n  '**':\n    proxy: npmjs\n"),
        "packages.'**'.proxy: 'npmjs' is not a configured uplink"
    );
}

#[test]
fn package_rule_typos_fail_closed() {
    assert_eq!(
        err("packages:\n  '@internal/*':\n    acess: $authenticated\n"),
        "packages.'@internal/*'.acess: unknown key in a package rule (expected access, publish, unpublish or proxy)"
    );
    assert!(err("packages:\n  '@a/[b':\n    access: $all\n")
        .starts_with("packages.'@a/[b': invalid package glob"));
    assert_eq!(
        err("packages:\n  '@a/*': everyone\n"),
        "packages.'@a/*': expected a mapping, found a string"
    );
    // Verdaccio's per-package storage is tolerated.
    let c = load("packages:\n  '**':\n    storage: ./elsewhere\n");
    assert!(
        c.warnings
            .iter()
            .any(|w| w.starts_with("packages.'**'.storage: not supported")),
        "{:?}",
        c.warnings
    );
}

#[test]
fn unknown_dollar_tokens_warn() {
    let c = load("packages:\n  '**':\n    access: $authenticatd\n    publish: $anonymous @all\n");
    assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
    assert!(c.warnings[0].starts_with("packages.'**'.access: '$authenticatd'"));
}

// ---- uplinks ----

#[test]
fn uplink_defaults_and_order() {
    let c = load(
        "uplinks:\n  zed: {url: 'http://127.0.0.1:9/npm'}\n  abc:\n    url: https://127.0.0.1:8/\n",
    );
    let names: Vec<&str> = c.uplinks.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(names, ["zed", "abc"]);
    let u = &c.uplinks[0];
    assert_eq!(u.url.as_str(), "http://127.0.0.1:9/npm/");
    assert_eq!(u.timeout, Duration::from_secs(30));
    assert_eq!(u.maxage, Duration::from_secs(120));
    assert_eq!(u.max_fails, 2);
    assert_eq!(u.fail_timeout, Duration::from_secs(300));
    assert!(u.cache);
    assert_eq!(u.access, None);
    assert_eq!(u.auth, None);
    assert!(u.headers.is_empty());
}

#[test]
fn uplink_timing_knobs() {
    let c = load(
        "uplinks:\n  a:\n    url: http://127.0.0.1:1/\n    timeout: 500ms\n    maxage: 1h 30m\n    max_fails: 0\n    \
         fail_timeout: 90\n    cache: false\n    access: [alice, 'team-a team-b']\n",
    );
    let u = &c.uplinks[0];
    assert_eq!(u.timeout, Duration::from_millis(500));
    assert_eq!(u.maxage, Duration::from_secs(5400));
    assert_eq!(u.max_fails, 0);
    assert_eq!(u.fail_timeout, Duration::from_secs(90));
    assert!(!u.cache);
    assert_eq!(u.access, Some(strs(&["alice", "team-a", "team-b"])));
    let up = "uplinks:\n  a:\n    url: http://127.0.0.1:1/\n";
    assert!(
        err(&format!("{up}    timeout: fast\n")).starts_with("uplinks.a.timeout: invalid duration")
    );
    assert_eq!(
        err(&format!("{up}    timeout: 0\n")),
        "uplinks.a.timeout: must be greater than 0"
    );
    assert_eq!(
        err(&format!("{up}    max_fails: -1\n")),
        "uplinks.a.max_fails: must be a non-negative whole number"
    );
    assert_eq!(
        err(&format!("{up}    cache: maybe\n")),
        "uplinks.a.cache: expected true or false, found a string"
    );
}

#[test]
fn uplink_url_validation() {
    let e = |url: &str| err(&format!("uplinks:\n  corp:\n    url: '{url}'\n"));
    assert_eq!(
        e("not a url"),
        "uplinks.corp.url: not a valid URL (relative URL without a base)"
    );
    assert_eq!(
        e("git://127.0.0.1/"),
        "uplinks.corp.url: URL scheme must be http or https"
    );
    assert_eq!(
        e("http://127.0.0.1/?a=b"),
        "uplinks.corp.url: URL must not contain a query string"
    );
    assert_eq!(
        e("http://127.0.0.1/#x"),
        "uplinks.corp.url: URL must not contain a fragment"
    );
    let msg = e("https://bob:s3cr3tpass@127.0.0.1/");
    assert!(
        msg.starts_with("uplinks.corp.url: URL must not contain credentials"),
        "{msg}"
    );
    assert!(!msg.contains("s3cr3tpass") && !msg.contains("bob"));
    assert_eq!(
        err("uplinks:\n  corp: {timeout: 5s}\n"),
        "uplinks.corp.url: required"
    );
    assert_eq!(
        err("uplinks:\n  corp:\n"),
        "uplinks.corp: expected a mapping with at least `url`"
    );
    assert_eq!(
        err("uplinks:\n  corp: 'http://x/'\n"),
        "uplinks.corp: expected a mapping, found a string"
    );
    // Unset variable in the URL: empty string, hence an error rather than a silent mirror.
    assert!(err("uplinks:\n  corp: {url: '${NOPE_URL}'}\n")
        .starts_with("uplinks.corp.url: not a valid URL"));
}

#[test]
fn uplink_names_are_path_safe() {
    assert!(err("uplinks:\n  'a/b': {url: 'http://127.0.0.1/'}\n")
        .starts_with("uplinks.'a/b': uplink names"));
    assert!(err("uplinks:\n  '..': {url: 'http://127.0.0.1/'}\n")
        .starts_with("uplinks.'..': uplink names"));
    load("uplinks:\n  my-corp_2.x: {url: 'http://127.0.0.1/'}\n");
}

#[test]
fn uplink_verdaccio_keys_warn() {
    let c = load(
        "uplinks:\n  a:\n    url: http://127.0.0.1:1/\n    strict_ssl: false\n    agent_options: {keepAlive: true}\n    \
         ca: /etc/ca.pem\n    https_proxy: http://127.0.0.1:3128\n    urll: typo\n",
    );
    for key in ["strict_ssl", "agent_options", "ca", "https_proxy"] {
        let w = format!("uplinks.a.{key}: not supported by pnpr; ignored");
        assert!(c.warnings.contains(&w), "missing {w} in {:?}", c.warnings);
    }
    assert!(c
        .warnings
        .contains(&"uplinks.a.urll: unknown key; ignored".to_owned()));
}

#[test]
fn uplink_auth_inline_token() {
    let c = load("uplinks:\n  corp:\n    url: https://127.0.0.1/\n    auth:\n      type: Bearer\n      token: abc.def\n");
    let auth = c.uplinks[0].auth.as_ref().unwrap();
    assert_eq!(auth.kind, AuthKind::Bearer);
    assert_eq!(auth.token.expose(), "abc.def");
    assert_eq!(auth.header_value().expose(), "Bearer abc.def");
    assert!(!format!("{c:?}").contains("abc.def"));

    let c = load("uplinks:\n  corp:\n    url: https://127.0.0.1/\n    auth: {type: basic, token: dXNlcjpwYXNz}\n");
    let auth = c.uplinks[0].auth.as_ref().unwrap();
    assert_eq!(auth.kind, AuthKind::Basic);
    assert_eq!(auth.header_value().expose(), "Basic dXNlcjpwYXNz");
}

#[test]
fn uplink_auth_token_env() {
    let up = "uplinks:\n  corp:\n    url: https://127.0.0.1/\n    auth:\n      type: bearer\n";
    let e = env(&[
        ("NPM_TOKEN", "npm-tok"),
        ("CORP_TOKEN", "corp-tok"),
        ("EMPTY", ""),
    ]);
    let tok = |yaml: &str| {
        let c = load_env(yaml, &e);
        c.uplinks[0]
            .auth
            .as_ref()
            .unwrap()
            .token
            .expose()
            .to_owned()
    };
    assert_eq!(tok(&format!("{up}      token_env: true\n")), "npm-tok");
    assert_eq!(
        tok(&format!("{up}      token_env: CORP_TOKEN\n")),
        "corp-tok"
    );
    assert_eq!(
        tok(&format!("{up}      token: '${{CORP_TOKEN}}'\n")),
        "corp-tok"
    );
    // Inline token wins over token_env.
    assert_eq!(
        tok(&format!(
            "{up}      token: inline\n      token_env: CORP_TOKEN\n"
        )),
        "inline"
    );

    assert_eq!(
        err_env(&format!("{up}      token_env: MISSING_TOKEN\n"), &e),
        "uplinks.corp.auth: no token: environment variable MISSING_TOKEN (from token_env) is unset or empty"
    );
    assert_eq!(
        err_env(&format!("{up}      token_env: EMPTY\n"), &e),
        "uplinks.corp.auth: no token: environment variable EMPTY (from token_env) is unset or empty"
    );
    assert_eq!(
        err_env(&format!("{up}      token_env: true\n"), &Env::default()),
        "uplinks.corp.auth: no token: environment variable NPM_TOKEN (from token_env) is unset or empty"
    );
    assert_eq!(
        err_env(up, &e),
        "uplinks.corp.auth: no token: set `token` or `token_env`"
    );
    assert_eq!(
        err_env(&format!("{up}      tokenEnv: CORP_TOKEN\n"), &e),
        "uplinks.corp.auth: no token: set `token` or `token_env` (`tokenEnv` is not recognized; use `token_env`)"
    );
    // Unset ${VAR} as the inline token: empty, so no token.
    assert_eq!(
        err_env(&format!("{up}      token: '${{NOT_SET}}'\n"), &e),
        "uplinks.corp.auth: no token: set `token` or `token_env`"
    );
}

#[test]
fn uplink_auth_shape_errors() {
    let up = "uplinks:\n  corp:\n    url: https://127.0.0.1/\n";
    assert_eq!(
        err(&format!("{up}    auth: {{token: x}}\n")),
        "uplinks.corp.auth.type: required (bearer or basic)"
    );
    assert_eq!(
        err(&format!("{up}    auth: {{type: digest, token: x}}\n")),
        "uplinks.corp.auth.type: must be bearer or basic"
    );
    assert_eq!(
        err(&format!("{up}    auth:\n")),
        "uplinks.corp.auth: expected {type, token} or {type, token_env}"
    );
    assert_eq!(
        err(&format!("{up}    auth: {{type: bearer, token_env: [A]}}\n")),
        "uplinks.corp.auth.token_env: expected true or a variable name, found a list"
    );
    let e = env(&[("T", "abc\r\nX-Injected: 1")]);
    let msg = err_env(
        &format!("{up}    auth: {{type: bearer, token_env: T}}\n"),
        &e,
    );
    assert_eq!(
        msg,
        "uplinks.corp.auth.token: token contains a control character or surrounding whitespace"
    );
    assert!(!msg.contains("Injected"));
}

#[test]
fn uplink_headers_are_secrets_in_order() {
    let c = load(
        "uplinks:\n  a:\n    url: http://127.0.0.1:1/\n    headers:\n      X-Zeta: one\n      Authorization: Bearer zzz-secret\n      X-Num: 42\n",
    );
    let h = &c.uplinks[0].headers;
    let names: Vec<&str> = h.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["X-Zeta", "Authorization", "X-Num"]);
    assert_eq!(h[1].1.expose(), "Bearer zzz-secret");
    assert_eq!(h[2].1.expose(), "42");
    assert!(!format!("{c:?}").contains("zzz-secret"));
    let up = "uplinks:\n  a:\n    url: http://127.0.0.1:1/\n    headers:\n";
    assert_eq!(
        err(&format!("{up}      'Bad Name': x\n")),
        "uplinks.a.headers.'Bad Name': not a valid HTTP header name"
    );
    assert_eq!(
        err(&format!("{up}      X-A: \"v\\nX-B: injected\"\n")),
        "uplinks.a.headers.X-A: header value contains a control character"
    );
}

// ---- routes ----

#[test]
fn public_routes_parse() {
    let c = load(
        "routes:\n  public:\n    - registry: https://127.0.0.1:9000/mirror\n    - registry: http://127.0.0.1:9001/npm/\n      \
         package: '@oss/*'\n    - package: 'left-pad'\n",
    );
    let r = &c.routes.public;
    assert_eq!(r.len(), 3);
    assert_eq!(
        r[0].registry.as_ref().map(url::Url::as_str),
        Some("https://127.0.0.1:9000/mirror/")
    );
    assert_eq!(r[0].package, None);
    assert_eq!(r[1].package.as_deref(), Some("@oss/*"));
    assert_eq!(r[2].registry, None);
    assert_eq!(load("routes: {public: []}\n").routes.public.len(), 0);
    assert_eq!(load("routes:\n  public:\n").routes.public.len(), 0);
}

#[test]
fn public_routes_fail_closed() {
    assert_eq!(
        err("routes:\n  public:\n    - registry: 'not a url'\n"),
        "routes.public[0].registry: not a valid URL (relative URL without a base)"
    );
    assert!(
        err("routes:\n  public:\n    - registry: http://127.0.0.1/\n    - package: '@a/[b'\n")
            .starts_with("routes.public[1].package: invalid package glob")
    );
    assert_eq!(
        err("routes:\n  public:\n    - package: ''\n"),
        "routes.public[0].package: empty package glob"
    );
    assert_eq!(
        err("routes:\n  public:\n    - registry: http://127.0.0.1/\n      pakage: '@a/*'\n"),
        "routes.public[0].pakage: unknown key in a public route (expected registry and/or package)"
    );
    assert_eq!(
        err("routes:\n  public:\n    - {}\n"),
        "routes.public[0]: a public route needs registry and/or package"
    );
    assert_eq!(
        err("routes:\n  public:\n    - http://127.0.0.1/\n"),
        "routes.public[0]: expected a mapping with registry and/or package, found a string"
    );
    assert_eq!(
        err("routes:\n  public: {registry: x}\n"),
        "routes.public: expected a list of rules, found a mapping"
    );
    // An unset variable yields "" which is unparsable: the rule fails instead of widening.
    assert!(
        err("routes:\n  public:\n    - registry: ${NOT_SET_MIRROR}\n")
            .starts_with("routes.public[0].registry: not a valid URL")
    );
    assert!(
        err("routes:\n  public:\n    - registry: https://u:p@127.0.0.1/\n")
            .starts_with("routes.public[0].registry: URL must not contain credentials")
    );
    // Other keys under routes are only warnings.
    let c = load("routes:\n  private: []\n");
    assert!(c
        .warnings
        .contains(&"routes.private: unknown key; ignored".to_owned()));
}

// ---- network ----

#[test]
fn network_section() {
    let c = load(
        "network:\n  hosts:\n    Corp.Internal.: 10.1.2.3\n    v6.internal: '::1'\n  allow_private:\n    - 10.0.0.0/8\n    \
         - 192.168.1.7\n    - fd00::/8\n",
    );
    assert_eq!(
        c.network.hosts,
        vec![
            (
                "corp.internal".to_owned(),
                "10.1.2.3".parse::<IpAddr>().unwrap()
            ),
            ("v6.internal".to_owned(), "::1".parse::<IpAddr>().unwrap()),
        ]
    );
    let nets: Vec<String> = c
        .network
        .allow_private
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(nets, ["10.0.0.0/8", "192.168.1.7/32", "fd00::/8"]);
    let c = load("network:\n  allow_private: 10.0.0.0/8 172.16.0.0/12\n");
    assert_eq!(c.network.allow_private.len(), 2);
    assert_eq!(
        err("network:\n  hosts:\n    corp: nope\n"),
        "network.hosts.corp: not an IP address"
    );
    assert_eq!(
        err("network:\n  hosts:\n    'http://x': 10.0.0.1\n"),
        "network.hosts.'http://x': not a valid host name"
    );
    assert_eq!(
        err("network:\n  allow_private: [10.0.0.0/8, 10.0.0.0/99]\n"),
        "network.allow_private[1]: not a CIDR network or IP address"
    );
    let c = load("network:\n  trusted_proxies: [10.0.0.0/8, 127.0.0.2]\n");
    let nets: Vec<String> = c
        .network
        .trusted_proxies
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(nets, ["10.0.0.0/8", "127.0.0.2/32"]);
    assert_eq!(
        err("network:\n  trusted_proxies: [proxy.internal]\n"),
        "network.trusted_proxies[0]: not a CIDR network or IP address"
    );
}

// ---- substitution ----

#[test]
fn env_substitution_everywhere_with_warnings_naming_vars() {
    let e = env(&[
        ("PORT", "4999"),
        ("DIR", "/data/pnpr"),
        ("TEAM", "alice bob"),
        ("UP", "http://127.0.0.1:5000"),
    ]);
    let c = load_env(
        "listen: 127.0.0.1:${PORT}\nstorage: ${DIR}/store\ngroups:\n  team: ${TEAM}\nuplinks:\n  up: {url: '${UP}/npm'}\n\
         packages:\n  '**': {access: '${MISSING_A} $all', proxy: up}\n",
        &e,
    );
    assert_eq!(c.listen, Some("127.0.0.1:4999".parse().unwrap()));
    assert_eq!(c.storage, PathBuf::from("/data/pnpr/store"));
    assert_eq!(c.groups[0].1, strs(&["alice", "bob"]));
    assert_eq!(c.uplinks[0].url.as_str(), "http://127.0.0.1:5000/npm/");
    assert_eq!(c.packages[0].access, strs(&["$all"]));
    assert_eq!(c.warnings.len(), 1);
    assert!(c.warnings[0]
        .starts_with("packages.'**'.access: environment variable ${MISSING_A} is not set"));
}

#[test]
fn warnings_never_contain_env_values() {
    let e = env(&[("TOK", "very-secret-token-value")]);
    let c = load_env(
        "uplinks:\n  a:\n    url: http://127.0.0.1/\n    auth: {type: bearer, token: '${TOK}', extra: '${TOK}'}\n    weird: '${TOK}'\n",
        &e,
    );
    let all = c.warnings.join("\n");
    assert!(!all.contains("very-secret-token-value"), "{all}");
    assert!(all.contains("uplinks.a.auth.extra: unknown key"));
    assert!(!format!("{c:?}").contains("very-secret-token-value"));
}

#[test]
fn errors_carry_key_paths() {
    let e = Config::from_yaml_str(
        "uplinks:\n  corp:\n    url: nope\n",
        base(),
        &Env::default(),
    )
    .unwrap_err();
    match e {
        ConfigError::Invalid { key, reason } => {
            assert_eq!(key, "uplinks.corp.url");
            assert_eq!(reason, "not a valid URL (relative URL without a base)");
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn ownership_defaults_to_maintainers_and_parses_admins() {
    use crate::OwnershipMode;
    let c = load("listen: 127.0.0.1:4873\n");
    assert_eq!(c.ownership.mode, OwnershipMode::Maintainers);
    assert!(c.ownership.admins.is_empty());
    let c = load("ownership:\n  mode: maintainers\n  admins: [release, 'root ops']\n");
    assert_eq!(c.ownership.admins, vec!["release", "root", "ops"]);
    let c = load("ownership:\n  mode: publish-rights\n");
    assert_eq!(c.ownership.mode, OwnershipMode::PublishRights);
    let c = load("ownership:\n  admins: release\n");
    assert_eq!(c.ownership.mode, OwnershipMode::Maintainers);
    assert_eq!(c.ownership.admins, vec!["release"]);
    assert_eq!(
        load("ownership:\n").ownership,
        crate::OwnershipConfig::default()
    );
}

#[test]
fn ownership_typos_fail_closed_naming_the_key() {
    let e = err("ownership:\n  mode: verdaccio\n");
    assert!(e.starts_with("ownership.mode: "), "{e}");
    assert!(e.contains("maintainers or publish-rights"), "{e}");
    let e = err("ownership:\n  admin: [release]\n");
    assert!(e.starts_with("ownership.admin: unknown key"), "{e}");
    for token in ["$authenticated", "$all", "@all"] {
        let e = err(&format!("ownership:\n  admins: ['{token}']\n"));
        assert!(e.starts_with("ownership.admins: "), "{e}");
        assert!(e.contains("mode: publish-rights"), "{e}");
    }
    let e = err("ownership: [maintainers]\n");
    assert!(e.starts_with("ownership"), "{e}");
    let e = err("ownership:\n  mode: [maintainers]\n");
    assert!(e.starts_with("ownership.mode: expected a string"), "{e}");
}

#[test]
fn uplink_deadline_is_separate_from_the_idle_timeout() {
    let up = "uplinks:\n  a:\n    url: http://127.0.0.1:1/\n";
    let c = load(up);
    assert_eq!(c.uplinks[0].deadline, Duration::from_secs(300));
    assert_eq!(c.uplinks[0].timeout, Duration::from_secs(30));
    let c = load(&format!("{up}    timeout: 5s\n    deadline: 2m\n"));
    assert_eq!(c.uplinks[0].timeout, Duration::from_secs(5));
    assert_eq!(c.uplinks[0].deadline, Duration::from_secs(120));
    assert_eq!(
        err(&format!("{up}    deadline: 0\n")),
        "uplinks.a.deadline: must be greater than 0"
    );
}

#[test]
fn shutdown_grace_defaults_and_parses() {
    assert_eq!(load("").limits.shutdown_grace, Duration::from_secs(10));
    let c = load("limits:\n  shutdown_grace: 3s\n  header_timeout: 2s\n");
    assert_eq!(c.limits.shutdown_grace, Duration::from_secs(3));
    assert_eq!(c.limits.header_timeout, Duration::from_secs(2));
    assert_eq!(
        err("limits:\n  shutdown_grace: 0\n"),
        "limits.shutdown_grace: must be greater than 0"
    );
}
