//! Builds a [`Config`] from YAML text: substitution, then a hand-written walk of the
//! value tree in a fixed dependency order (storage before cache, uplinks before the
//! `packages:` rules that name them).
//!
//! Invariants: map order of `uplinks:`, `packages:` and `groups:` is preserved; keys
//! that only Verdaccio understands are warnings, while anything that widens access on
//! a typo (an unknown key in a `packages:` rule or a `routes.public` rule, an invalid
//! glob, a `proxy` naming no uplink) is an error.

use std::net::{IpAddr, SocketAddr};
use std::path::{Component, Path, PathBuf};

use serde_yaml_ng::Value;

use crate::env::{substitute_tree, Env};
use crate::error::ConfigError;
use crate::path::{child, index};
use crate::units::{duration_value, size_value};
use crate::walk::{self, entries, kind, opt_string, token_list};
use crate::{
    AuthConfig, Config, HtpasswdConfig, InstallAcceleratorConfig, LogConfig, LogFormat,
    NetworkConfig, OwnershipConfig, OwnershipMode, PackageRuleConfig, PublicRouteConfig,
    RateLimitConfig, RoutesConfig, Secret, DEFAULT_MAX_BODY_SIZE,
};

mod limits;
mod uplink;

/// Top-level keys Verdaccio (or later pnpr generations) define that we accept and
/// ignore, so an existing Verdaccio config loads with a warning instead of failing.
const IGNORED_TOP_LEVEL: &[&str] = &[
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
    "self_path",
    "user_agent",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "logs",
    "store",
    "filters",
    "userRateLimit",
    "flags",
    "convert_to_local_tarball_url",
    "https",
    "keepAliveTimeout",
    "max_users",
    "_debug",
    "s3",
    "backend",
    "osv",
    "registry",
    "resolver",
];

/// Access-list tokens with a special meaning; any other `$`-token is almost certainly
/// a typo (it would only match a user literally named like that).
const KNOWN_SPECIAL_TOKENS: &[&str] = &[
    "$all",
    "$authenticated",
    "$anonymous",
    "@all",
    "@authenticated",
    "@anonymous",
];

/// The secret keys every private-cache HMAC, so it must carry real entropy.
pub(crate) const MIN_SECRET_BYTES: usize = 16;

pub(crate) fn parse(text: &str, base: &Path, env: &Env) -> Result<Config, ConfigError> {
    let mut root: Value = serde_yaml_ng::from_str(text).map_err(|e| ConfigError::Yaml {
        message: e.to_string(),
    })?;
    walk::reject_tags(&root, "")?;
    root.apply_merge().map_err(|e| ConfigError::Yaml {
        message: e.to_string(),
    })?;
    let mut warnings = Vec::new();
    substitute_tree(&mut root, "", env, &mut warnings);
    let mut p = Parser {
        base,
        env,
        warnings,
    };
    p.config(&root)
}

/// Top-level nodes collected in one pass, interpreted afterwards in dependency order.
#[derive(Default)]
struct TopLevel<'a> {
    listen: Option<&'a Value>,
    public_url: Option<&'a Value>,
    storage: Option<&'a Value>,
    cache: Option<&'a Value>,
    secret: Option<&'a Value>,
    auth: Option<&'a Value>,
    groups: Option<&'a Value>,
    uplinks: Option<&'a Value>,
    routes: Option<&'a Value>,
    packages: Option<&'a Value>,
    network: Option<&'a Value>,
    max_body_size: Option<&'a Value>,
    install_accelerator: Option<&'a Value>,
    ownership: Option<&'a Value>,
    limits: Option<&'a Value>,
    audit: Option<&'a Value>,
    log: Option<&'a Value>,
    cache_max_size: Option<&'a Value>,
    metrics: Option<&'a Value>,
    status: Option<&'a Value>,
    database: Option<&'a Value>,
    blobs: Option<&'a Value>,
}

struct Parser<'e> {
    base: &'e Path,
    env: &'e Env,
    warnings: Vec<String>,
}

impl Parser<'_> {
    fn config(&mut self, root: &Value) -> Result<Config, ConfigError> {
        let top = self.top_level(root)?;
        let listen = top
            .listen
            .map(|v| listen_value(v, "listen"))
            .transpose()?
            .flatten();
        let public_url = public_url(top.public_url)?;
        let storage = dir_setting(top.storage, "storage", self.base, || {
            self.base.join("storage")
        })?;
        let cache = dir_setting(top.cache, "cache", self.base, || {
            storage.join(".pnpr-cache")
        })?;
        let secret = secret(top.secret)?;
        let auth = section(top.auth, |v| self.auth(v))?;
        let groups = section(top.groups, |v| self.groups(v))?;
        let uplinks = self.uplinks(top.uplinks)?;
        let uplink_names: Vec<String> = uplinks.iter().map(|u| u.name.clone()).collect();
        let routes = section(top.routes, |v| self.routes(v))?;
        let packages = match top.packages {
            None | Some(Value::Null) => default_packages(&uplink_names),
            Some(v) => self.packages(v, &uplink_names)?,
        };
        let network = section(top.network, |v| self.network(v))?;
        let max_body_size = match top.max_body_size {
            None | Some(Value::Null) => DEFAULT_MAX_BODY_SIZE,
            Some(v) => positive_size(v).map_err(|r| ConfigError::invalid("max_body_size", r))?,
        };
        let install_accelerator =
            section(top.install_accelerator, |v| self.install_accelerator(v))?;
        let ownership = non_null_section(top.ownership, ownership)?;
        let limits = non_null_section(top.limits, limits::limits)?;
        let audit = match top.audit {
            None | Some(Value::Null) => crate::AuditConfig::default(),
            Some(v) => crate::audit::audit(v, &uplink_names)?,
        };
        let log = section(top.log, |v| self.log(v))?;
        let operations = crate::operations::operations(crate::operations::OperationsNodes {
            cache_max_size: top.cache_max_size,
            metrics: top.metrics,
            status: top.status,
        })?;
        let database = crate::backends::database(top.database)?;
        let blobs = crate::backends::blobs(top.blobs)?;
        Ok(Config {
            config_path: None,
            database,
            blobs,
            listen,
            public_url,
            storage,
            cache,
            secret,
            auth,
            groups,
            uplinks,
            routes,
            packages,
            network,
            max_body_size,
            install_accelerator,
            ownership,
            limits,
            audit,
            operations,
            log,
            warnings: std::mem::take(&mut self.warnings),
        })
    }

    /// Collects the top-level nodes in one pass (unknown keys warn), so they
    /// can be interpreted in dependency order.
    fn top_level<'v>(&mut self, root: &'v Value) -> Result<TopLevel<'v>, ConfigError> {
        if !matches!(root, Value::Null | Value::Mapping(_)) {
            return Err(ConfigError::invalid(
                "(root)",
                format!("expected a mapping, found {}", kind(root)),
            ));
        }
        let mut top = TopLevel::default();
        for (key, v) in entries(root, "(root)")? {
            let slot = match key.as_str() {
                "listen" => &mut top.listen,
                "public_url" => &mut top.public_url,
                "storage" => &mut top.storage,
                "cache" => &mut top.cache,
                "secret" => &mut top.secret,
                "auth" => &mut top.auth,
                "groups" => &mut top.groups,
                "uplinks" => &mut top.uplinks,
                "routes" => &mut top.routes,
                "packages" => &mut top.packages,
                "network" => &mut top.network,
                "max_body_size" => &mut top.max_body_size,
                "installAccelerator" => &mut top.install_accelerator,
                "ownership" => &mut top.ownership,
                "limits" => &mut top.limits,
                "audit" => &mut top.audit,
                "log" => &mut top.log,
                "cache_max_size" => &mut top.cache_max_size,
                "metrics" => &mut top.metrics,
                "status" => &mut top.status,
                "database" => &mut top.database,
                "blobs" => &mut top.blobs,
                other => {
                    self.ignore("", other, IGNORED_TOP_LEVEL);
                    continue;
                }
            };
            *slot = Some(v);
        }
        Ok(top)
    }

    /// `uplinks:`, with the access tokens of each checked for typos.
    fn uplinks(&mut self, v: Option<&Value>) -> Result<Vec<crate::UplinkConfig>, ConfigError> {
        let uplinks = match v {
            Some(v) => uplink::parse_uplinks(v, self.env, &mut self.warnings)?,
            None => Vec::new(),
        };
        for u in &uplinks {
            if let Some(access) = &u.access {
                self.check_tokens(&child(&child("uplinks", &u.name), "access"), access);
            }
        }
        Ok(uplinks)
    }

    /// Records an ignored key: "not supported" for keys we recognise from Verdaccio,
    /// "unknown" (probably a typo) for everything else.
    fn ignore(&mut self, parent: &str, key: &str, known: &[&str]) {
        let at = child(parent, key);
        if known.contains(&key) {
            self.warnings
                .push(format!("{at}: not supported by pnpr; ignored"));
        } else {
            self.warnings.push(format!("{at}: unknown key; ignored"));
        }
    }

    fn check_tokens(&mut self, path: &str, tokens: &[String]) {
        for t in tokens {
            if t.starts_with('$') && !KNOWN_SPECIAL_TOKENS.contains(&t.as_str()) {
                self.warnings.push(format!(
                    "{path}: '{t}' is not a known special token ($all, $authenticated, $anonymous); \
                     it only matches a user or group with that exact name"
                ));
            }
        }
    }

    fn auth(&mut self, v: &Value) -> Result<AuthConfig, ConfigError> {
        let mut auth = AuthConfig::default();
        for (key, node) in entries(v, "auth")? {
            match key.as_str() {
                "htpasswd" => auth.htpasswd = Some(self.htpasswd(node)?),
                "rate_limit" => auth.rate_limit = rate_limit(node)?,
                // Token storage location is chosen by the server (next to the user
                // database), so an explicit path would be silently misleading.
                "tokens" => self
                    .warnings
                    .push("auth.tokens: not configurable in pnpr; ignored".to_owned()),
                other => self.warnings.push(format!(
                    "{}: auth plugins are not supported by pnpr; ignored",
                    child("auth", other)
                )),
            }
        }
        Ok(auth)
    }

    fn htpasswd(&mut self, v: &Value) -> Result<HtpasswdConfig, ConfigError> {
        let mut file = None;
        let mut max_users = None;
        let mut max_users_set = false;
        for (key, node) in entries(v, "auth.htpasswd")? {
            let path = child("auth.htpasswd", &key);
            match key.as_str() {
                "file" => file = opt_string(node, &path)?,
                "max_users" => {
                    max_users = max_users_value(node, &path)?;
                    // `max_users:` with nothing after it chose nothing.
                    max_users_set = !matches!(node, Value::Null);
                }
                other => self.ignore(
                    "auth.htpasswd",
                    other,
                    &["algorithm", "rounds", "slow_verify_ms"],
                ),
            }
        }
        Ok(HtpasswdConfig {
            file: resolve(self.base, file.as_deref().unwrap_or("htpasswd")),
            max_users,
            max_users_set,
        })
    }

    fn groups(&mut self, v: &Value) -> Result<Vec<(String, Vec<String>)>, ConfigError> {
        let mut out = Vec::new();
        for (name, node) in entries(v, "groups")? {
            let path = child("groups", &name);
            if name.trim().is_empty() || name.chars().any(char::is_whitespace) {
                return Err(ConfigError::invalid(
                    path,
                    "group names must be non-empty and contain no whitespace",
                ));
            }
            let members = token_list(node, &path)?;
            self.check_tokens(&path, &members);
            out.push((name, members));
        }
        Ok(out)
    }

    fn routes(&mut self, v: &Value) -> Result<RoutesConfig, ConfigError> {
        let mut routes = RoutesConfig::default();
        for (key, node) in entries(v, "routes")? {
            match key.as_str() {
                "public" => routes.public = public_routes(node)?,
                other => self.ignore("routes", other, &[]),
            }
        }
        Ok(routes)
    }

    fn packages(
        &mut self,
        v: &Value,
        uplinks: &[String],
    ) -> Result<Vec<PackageRuleConfig>, ConfigError> {
        let mut out = Vec::new();
        for (pattern, node) in entries(v, "packages")? {
            let path = child("packages", &pattern);
            validate_glob(&pattern).map_err(|r| ConfigError::invalid(&path, r))?;
            let mut rule = PackageRuleConfig {
                pattern,
                access: vec!["$all".to_owned()],
                publish: vec!["$authenticated".to_owned()],
                unpublish: None,
                proxy: Vec::new(),
            };
            for (key, field) in entries(node, &path)? {
                let fpath = child(&path, &key);
                match key.as_str() {
                    "access" => rule.access = token_list(field, &fpath)?,
                    "publish" => rule.publish = token_list(field, &fpath)?,
                    "unpublish" => rule.unpublish = Some(token_list(field, &fpath)?),
                    "proxy" => rule.proxy = token_list(field, &fpath)?,
                    "storage" => self.ignore(&path, "storage", &["storage"]),
                    // A misspelt `access` would silently fall back to `$all`: fail closed.
                    _ => {
                        return Err(ConfigError::invalid(
                            fpath,
                            "unknown key in a package rule (expected access, publish, unpublish or proxy)",
                        ))
                    }
                }
            }
            for name in &rule.proxy {
                if !uplinks.contains(name) {
                    return Err(ConfigError::invalid(
                        child(&path, "proxy"),
                        format!("'{name}' is not a configured uplink"),
                    ));
                }
            }
            self.check_tokens(&child(&path, "access"), &rule.access);
            self.check_tokens(&child(&path, "publish"), &rule.publish);
            if let Some(u) = &rule.unpublish {
                self.check_tokens(&child(&path, "unpublish"), u);
            }
            out.push(rule);
        }
        Ok(out)
    }

    fn network(&mut self, v: &Value) -> Result<NetworkConfig, ConfigError> {
        let mut net = NetworkConfig::default();
        for (key, node) in entries(v, "network")? {
            let path = child("network", &key);
            match key.as_str() {
                "hosts" => {
                    for (host, ip) in entries(node, &path)? {
                        let hpath = child(&path, &host);
                        let host = host.trim().trim_end_matches('.').to_ascii_lowercase();
                        if host.is_empty()
                            || !host.chars().all(|c| {
                                c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_'
                            })
                        {
                            return Err(ConfigError::invalid(hpath, "not a valid host name"));
                        }
                        let ip: IpAddr = walk::string(ip, &hpath)?
                            .trim()
                            .parse()
                            .map_err(|_| ConfigError::invalid(&hpath, "not an IP address"))?;
                        net.hosts.push((host, ip));
                    }
                }
                "allow_private" => net.allow_private = net_list(node, &path)?,
                "trusted_proxies" => net.trusted_proxies = net_list(node, &path)?,
                other => self.ignore("network", other, &[]),
            }
        }
        Ok(net)
    }

    fn install_accelerator(&mut self, v: &Value) -> Result<InstallAcceleratorConfig, ConfigError> {
        let mut out = InstallAcceleratorConfig::default();
        for (key, node) in entries(v, "installAccelerator")? {
            match key.as_str() {
                "grantTtl" => {
                    out.grant_ttl =
                        match node {
                            Value::Null => None,
                            _ => Some(duration_value(node).map_err(|r| {
                                ConfigError::invalid("installAccelerator.grantTtl", r)
                            })?),
                        }
                }
                "recompress" => {
                    out.recompress =
                        crate::recompress::recompress(node, "installAccelerator.recompress")?;
                }
                other => self.ignore("installAccelerator", other, &[]),
            }
        }
        Ok(out)
    }

    fn log(&mut self, v: &Value) -> Result<LogConfig, ConfigError> {
        let mut log = LogConfig::default();
        for (key, node) in entries(v, "log")? {
            let path = child("log", &key);
            match key.as_str() {
                "type" => {
                    if let Some(t) = opt_string(node, &path)? {
                        if t != "stdout" {
                            self.warnings
                                .push(format!("log.type: only stdout is supported; '{t}' ignored"));
                        }
                    }
                }
                "format" => {
                    if let Some(f) = opt_string(node, &path)? {
                        log.format = log_format(&f).map_err(|r| ConfigError::invalid(&path, r))?;
                    }
                }
                "level" => {
                    if let Some(l) = opt_string(node, &path)? {
                        log.level = log_level(&l).map_err(|r| ConfigError::invalid(&path, r))?;
                    }
                }
                other => self.ignore("log", other, &["path", "colors", "sync"]),
            }
        }
        Ok(log)
    }
}

/// The rule set used when `packages:` is absent: everything readable by everyone,
/// publishable by any identified user, proxied through every uplink in config order.
pub(crate) fn default_packages(uplinks: &[String]) -> Vec<PackageRuleConfig> {
    vec![PackageRuleConfig {
        pattern: "**".to_owned(),
        access: vec!["$all".to_owned()],
        publish: vec!["$authenticated".to_owned()],
        unpublish: None,
        proxy: uplinks.to_vec(),
    }]
}

/// A section whose absence means its default (an explicit `null` is still
/// handed to `parse`, which decides).
fn section<T: Default>(
    v: Option<&Value>,
    parse: impl FnOnce(&Value) -> Result<T, ConfigError>,
) -> Result<T, ConfigError> {
    v.map_or_else(|| Ok(T::default()), parse)
}

/// A section whose absence or `null` means its default.
fn non_null_section<T: Default>(
    v: Option<&Value>,
    parse: impl FnOnce(&Value) -> Result<T, ConfigError>,
) -> Result<T, ConfigError> {
    match v {
        None | Some(Value::Null) => Ok(T::default()),
        Some(v) => parse(v),
    }
}

/// `public_url:`, an http(s) URL when set.
fn public_url(v: Option<&Value>) -> Result<Option<url::Url>, ConfigError> {
    match v {
        Some(v) => opt_string(v, "public_url")?
            .map(|s| http_url(&s).map_err(|r| ConfigError::invalid("public_url", r)))
            .transpose(),
        None => Ok(None),
    }
}

/// A directory setting, resolved against the config's `base` dir when set.
fn dir_setting(
    v: Option<&Value>,
    key: &str,
    base: &Path,
    default: impl FnOnce() -> PathBuf,
) -> Result<PathBuf, ConfigError> {
    Ok(match v.map(|v| opt_string(v, key)).transpose()?.flatten() {
        Some(s) => resolve(base, &s),
        None => default(),
    })
}

/// `secret:`, refused when it carries too little entropy.
fn secret(v: Option<&Value>) -> Result<Option<Secret>, ConfigError> {
    match v {
        Some(v) => opt_string(v, "secret")?
            .map(|s| validate_secret(s).map_err(|r| ConfigError::invalid("secret", r)))
            .transpose(),
        None => Ok(None),
    }
}

/// `ownership:`. Strict: it decides who may change other people's packages,
/// so a misspelt key or mode is an error, and a `$`-token among the admins
/// (which would make every user an admin) is refused in favour of the
/// explicit `mode: publish-rights`.
fn ownership(v: &Value) -> Result<OwnershipConfig, ConfigError> {
    let mut out = OwnershipConfig::default();
    for (key, node) in entries(v, "ownership")? {
        let path = child("ownership", &key);
        match key.as_str() {
            "mode" => {
                out.mode = match walk::string(node, &path)?.trim() {
                    "maintainers" => OwnershipMode::Maintainers,
                    "publish-rights" => OwnershipMode::PublishRights,
                    _ => {
                        return Err(ConfigError::invalid(
                            path,
                            "must be maintainers or publish-rights",
                        ))
                    }
                }
            }
            "admins" => {
                let admins = token_list(node, &path)?;
                if let Some(t) = admins
                    .iter()
                    .find(|t| t.starts_with('$') || KNOWN_SPECIAL_TOKENS.contains(&t.as_str()))
                {
                    return Err(ConfigError::invalid(
                        path,
                        format!(
                            "'{t}' is not a user or group name; to let everyone with publish rights change any package, set ownership.mode: publish-rights"
                        ),
                    ));
                }
                out.admins = admins;
            }
            _ => {
                return Err(ConfigError::invalid(
                    path,
                    "unknown key in ownership (expected mode or admins)",
                ))
            }
        }
    }
    Ok(out)
}

/// `routes.public`: every rule is checked strictly because a dropped or misread field
/// would turn a narrow public route into "this whole registry is public".
fn public_routes(v: &Value) -> Result<Vec<PublicRouteConfig>, ConfigError> {
    let items = match v {
        Value::Null => return Ok(Vec::new()),
        Value::Sequence(items) => items,
        other => {
            return Err(ConfigError::invalid(
                "routes.public",
                format!("expected a list of rules, found {}", kind(other)),
            ))
        }
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let path = index("routes.public", i);
        if !matches!(item, Value::Mapping(_)) {
            return Err(ConfigError::invalid(
                path,
                format!(
                    "expected a mapping with registry and/or package, found {}",
                    kind(item)
                ),
            ));
        }
        let mut rule = PublicRouteConfig {
            registry: None,
            package: None,
        };
        for (key, node) in entries(item, &path)? {
            let fpath = child(&path, &key);
            match key.as_str() {
                // Present-but-empty (for example an unset `${VAR}`) is a typo too.
                "registry" => {
                    let s = walk::string(node, &fpath)?;
                    rule.registry =
                        Some(http_url(&s).map_err(|r| ConfigError::invalid(&fpath, r))?);
                }
                "package" => {
                    let s = walk::string(node, &fpath)?;
                    validate_glob(&s).map_err(|r| ConfigError::invalid(&fpath, r))?;
                    rule.package = Some(s);
                }
                _ => {
                    return Err(ConfigError::invalid(
                        fpath,
                        "unknown key in a public route (expected registry and/or package)",
                    ))
                }
            }
        }
        if rule.registry.is_none() && rule.package.is_none() {
            return Err(ConfigError::invalid(
                path,
                "a public route needs registry and/or package",
            ));
        }
        out.push(rule);
    }
    Ok(out)
}

/// `listen:` as Verdaccio accepts it: an address string, a bare port, or a list whose
/// first item is used. `null`/`""` = not set.
fn listen_value(v: &Value, path: &str) -> Result<Option<SocketAddr>, ConfigError> {
    match v {
        Value::Null => Ok(None),
        Value::Sequence(items) => match items.first() {
            Some(first) => listen_value(first, &index(path, 0)),
            None => Err(ConfigError::invalid(path, "empty list")),
        },
        Value::Number(n) => {
            let port = n
                .as_u64()
                .and_then(|p| u16::try_from(p).ok())
                .ok_or_else(|| ConfigError::invalid(path, "not a valid port number"))?;
            Ok(Some(SocketAddr::from(([127, 0, 0, 1], port))))
        }
        Value::String(s) if s.trim().is_empty() => Ok(None),
        Value::String(s) => parse_listen(s)
            .map(Some)
            .map_err(|r| ConfigError::invalid(path, r)),
        other => Err(ConfigError::invalid(
            path,
            format!(
                "expected an address such as 127.0.0.1:4873, found {}",
                kind(other)
            ),
        )),
    }
}

/// `127.0.0.1:4873`, `[::1]:4873`, `http://0.0.0.0:4873/`, `localhost:4873` or `4873`.
pub(crate) fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    if lower.starts_with("https://") {
        return Err("https listeners are not supported; terminate TLS in front of pnpr".to_owned());
    }
    if lower.starts_with("unix:") || t.starts_with('/') {
        return Err("unix socket listeners are not supported".to_owned());
    }
    let rest = if lower.starts_with("http://") {
        &t[7..]
    } else {
        t
    };
    let rest = rest.trim_end_matches('/');
    if let Ok(addr) = rest.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let rest_lower = rest.to_ascii_lowercase();
    let port_only = rest_lower.strip_prefix("localhost:").unwrap_or(&rest_lower);
    match port_only.parse::<u16>() {
        Ok(port) => Ok(SocketAddr::from(([127, 0, 0, 1], port))),
        Err(_) => Err("expected an IP address and port such as 127.0.0.1:4873".to_owned()),
    }
}

/// An http(s) base URL: no credentials, query or fragment, path ending in `/`.
/// Reasons never include the input, which may carry userinfo.
pub(crate) fn http_url(s: &str) -> Result<url::Url, String> {
    let mut url = url::Url::parse(s.trim()).map_err(|e| format!("not a valid URL ({e})"))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err("URL scheme must be http or https".to_owned());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(
            "URL must not contain credentials (user:pass@); configure auth instead".to_owned(),
        );
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("URL must have a host".to_owned());
    }
    if url.query().is_some() {
        return Err("URL must not contain a query string".to_owned());
    }
    if url.fragment().is_some() {
        return Err("URL must not contain a fragment".to_owned());
    }
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

pub(crate) fn validate_secret(s: String) -> Result<Secret, String> {
    if s.len() < MIN_SECRET_BYTES {
        return Err(format!("must be at least {MIN_SECRET_BYTES} bytes"));
    }
    Ok(Secret::new(s))
}

pub(crate) fn log_format(s: &str) -> Result<LogFormat, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        // Verdaccio's `pretty-timestamped` is the same human format for us.
        "pretty" | "pretty-timestamped" => Ok(LogFormat::Pretty),
        "json" => Ok(LogFormat::Json),
        _ => Err("must be pretty or json".to_owned()),
    }
}

pub(crate) fn log_level(s: &str) -> Result<String, String> {
    let level = s.trim().to_ascii_lowercase();
    if LogConfig::LEVELS.contains(&level.as_str()) {
        Ok(level)
    } else {
        Err(format!("must be one of {}", LogConfig::LEVELS.join(", ")))
    }
}

pub(crate) fn positive_size(v: &Value) -> Result<u64, String> {
    match size_value(v)? {
        0 => Err("must be greater than 0".to_owned()),
        n => Ok(n),
    }
}

/// `auth.rate_limit`. Every key is checked: a typo in a security budget is an error,
/// not a silently different limit.
fn rate_limit(v: &Value) -> Result<RateLimitConfig, ConfigError> {
    let mut out = RateLimitConfig::default();
    for (key, node) in entries(v, "auth.rate_limit")? {
        let path = child("auth.rate_limit", &key);
        match key.as_str() {
            "per_user" => out.per_user = budget(node, &path)?,
            "per_address" => out.per_address = budget(node, &path)?,
            "window" => {
                out.window = duration_value(node).map_err(|r| ConfigError::invalid(&path, r))?;
                if out.window < std::time::Duration::from_secs(1) {
                    return Err(ConfigError::invalid(path, "must be at least 1s"));
                }
            }
            _ => {
                return Err(ConfigError::invalid(
                    path,
                    "unknown key (expected per_user, per_address or window)",
                ))
            }
        }
    }
    Ok(out)
}

/// A failure budget: a whole number from 1 to 2^32-1 (0 would refuse every login).
fn budget(v: &Value, path: &str) -> Result<u32, ConfigError> {
    let n = walk::integer(v, path)?;
    u32::try_from(n)
        .ok()
        .filter(|n| *n >= 1)
        .ok_or_else(|| ConfigError::invalid(path, "must be a whole number of at least 1"))
}

fn max_users_value(v: &Value, path: &str) -> Result<Option<i64>, ConfigError> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) if s.trim().eq_ignore_ascii_case("infinity") || s.trim().is_empty() => {
            Ok(None)
        }
        Value::Number(n) if n.as_f64().is_some_and(f64::is_infinite) => Ok(None),
        _ => match walk::integer(v, path)? {
            n if n >= -1 => Ok(Some(n)),
            _ => Err(ConfigError::invalid(
                path,
                "must be -1 (registration disabled) or a non-negative number",
            )),
        },
    }
}

/// Package globs are compiled by the policy engine with `globset`; compiling here too
/// turns a typo into a startup error instead of a rule that matches nothing (or all).
pub(crate) fn validate_glob(pattern: &str) -> Result<(), String> {
    if pattern.trim().is_empty() {
        return Err("empty package glob".to_owned());
    }
    globset::Glob::new(pattern)
        .map(|_| ())
        .map_err(|e| format!("invalid package glob ({})", e.kind()))
}

/// A list of CIDR networks or bare addresses (`network.allow_private`,
/// `network.trusted_proxies`), each entry's path named in its error.
fn net_list(node: &Value, path: &str) -> Result<Vec<ipnet::IpNet>, ConfigError> {
    token_list(node, path)?
        .iter()
        .enumerate()
        .map(|(i, item)| {
            parse_net(item).ok_or_else(|| {
                ConfigError::invalid(index(path, i), "not a CIDR network or IP address")
            })
        })
        .collect()
}

fn parse_net(s: &str) -> Option<ipnet::IpNet> {
    s.parse::<ipnet::IpNet>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(ipnet::IpNet::from))
}

/// `s` made absolute against `base`, with `.` segments removed (`..` is kept: without
/// touching the file system we cannot know whether it crosses a symlink).
pub(crate) fn resolve(base: &Path, s: &str) -> PathBuf {
    let p = Path::new(s);
    let joined = if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    };
    joined
        .components()
        .filter(|c| !matches!(c, Component::CurDir))
        .collect()
}

#[cfg(test)]
mod tests;
