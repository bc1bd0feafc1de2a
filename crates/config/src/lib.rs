//! `pnpr-config`: the server config file (a superset of Verdaccio's `config.yaml`),
//! parsed once at startup into a typed, validated [`Config`].
//!
//! What this crate owns and the invariants it guards:
//!
//! * **Parsing.** The YAML is read into a `serde_yaml_ng::Value` and walked by hand, so
//!   every error names the exact key path (`uplinks.corp.url: ...`) and map order of
//!   `uplinks:`, `packages:` and `groups:` is kept (first match wins in `packages:`).
//! * **Tolerance vs. fail-closed.** Verdaccio keys we do not implement, and unknown
//!   keys, become [`Config::warnings`]. Anything that decides *who may see what*
//!   fails closed instead: an unknown `proxy` uplink, an invalid package glob, and any
//!   typo inside a `routes.public` rule are errors, never a silently broader rule.
//! * **Environment.** `${VAR}` is substituted in every string value before
//!   interpretation (unset = `""` plus a warning naming the variable), and the `PNPR_*`
//!   overrides are applied by [`Config::apply_env_overrides`]. The environment comes in
//!   as an [`Env`]; this crate never reads process env.
//! * **Secrets.** Tokens, header values and the HMAC `secret:` are [`Secret`]s whose
//!   `Debug`/`Display` print `<redacted>`; errors never echo values, and URLs carrying
//!   userinfo are rejected (so no credential hides in a URL either).
//! * **Paths.** `storage`, `cache` and `auth.htpasswd.file` are absolute: relative
//!   values resolve against the config file's directory.
//!
//! `PNPR_*` overrides (empty = unset; an invalid value is an error naming the variable):
//!
//! | Variable | Overrides |
//! |---|---|
//! | `PNPR_LISTEN` | `listen` (`127.0.0.1:4873`, `http://[::1]:4873`, or a bare port) |
//! | `PNPR_PUBLIC_URL` | `public_url` |
//! | `PNPR_STORAGE` | `storage` (absolute path; a defaulted `cache` follows it) |
//! | `PNPR_CACHE` | `cache` (absolute path) |
//! | `PNPR_SECRET` | `secret` (at least 16 bytes) |
//! | `PNPR_LOG_LEVEL` | `log.level` |
//! | `PNPR_LOG_FORMAT` | `log.format` (`pretty` / `json`) |
//! | `PNPR_MAX_BODY_SIZE` | `max_body_size` (`50mb`, bytes, ...) |
//! | `PNPR_UPLINK` | URL of the uplink named `default` (added if missing; joins the catch-all's `proxy` when `packages:` was not configured) |

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

mod audit;
mod backends;
pub use audit::{AuditConfig, AuditUplink, DEFAULT_AUDIT_CACHE_TTL, DEFAULT_AUDIT_MAX_BODY};
pub use backends::{BlobsConfig, DatabaseConfig, S3Config, SslMode};
mod env;
mod error;
mod exposure;
mod limits;
mod operations;
pub use operations::{OperationsConfig, LOOPBACK};
mod overrides;
mod parse;
mod path;
mod recompress;
pub use recompress::RecompressConfig;
mod units;
mod walk;

pub use env::Env;
pub use error::ConfigError;
pub use limits::Limits;
pub use overrides::DEFAULT_UPLINK_NAME;
pub use pnpr_secret::Secret;

/// Default `max_body_size`: 50 MiB, enough for large tarball publishes.
pub const DEFAULT_MAX_BODY_SIZE: u64 = 50 * 1024 * 1024;

/// The bundled config used when no file is found; paths in it resolve against the
/// data dir.
pub const EMBEDDED_DEFAULT_YAML: &str = include_str!("default.yaml");

/// The validated server configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Absolute path of the file this came from; `None` for the embedded default.
    pub config_path: Option<PathBuf>,
    /// `listen:`; `None` lets the binary apply its own default.
    pub listen: Option<SocketAddr>,
    /// `public_url:` with a trailing `/`, the base for absolute URLs we hand out and the
    /// prefix that marks "hosted" routes.
    pub public_url: Option<url::Url>,
    /// Durable data (hosted packages, users, tokens). Absolute.
    pub storage: PathBuf,
    /// Disposable cache root (metadata mirror, tarball cache). Absolute.
    pub cache: PathBuf,
    /// Key for every private-cache HMAC; `None` makes those digests process-local.
    pub secret: Option<Secret>,
    pub auth: AuthConfig,
    /// Static teams (`groups:`), usable wherever a username is; file order.
    pub groups: Vec<(String, Vec<String>)>,
    /// `uplinks:` in file order (the first matching access-bearing uplink wins).
    pub uplinks: Vec<UplinkConfig>,
    pub routes: RoutesConfig,
    /// `packages:` rules in file order (first match wins).
    pub packages: Vec<PackageRuleConfig>,
    pub network: NetworkConfig,
    /// Largest accepted request body in bytes.
    pub max_body_size: u64,
    pub install_accelerator: InstallAcceleratorConfig,
    /// `ownership:` (pnpr's own key): who may change an existing hosted package.
    pub ownership: OwnershipConfig,
    /// `limits:` (pnpr's own key): resource budgets.
    pub limits: Limits,
    /// `audit:` (pnpr's own key): the audit passthrough.
    pub audit: AuditConfig,
    /// `cache_max_size`, `metrics:` and `status:` (pnpr's own keys).
    pub operations: OperationsConfig,
    pub log: LogConfig,
    /// `database:` (pnpr's own key): the PostgreSQL that several nodes share;
    /// `None` keeps the embedded SQLite under `storage`/`cache`.
    pub database: Option<DatabaseConfig>,
    /// `blobs:` (pnpr's own key): S3-compatible blob storage; `None` keeps
    /// blobs on local disk.
    pub blobs: Option<BlobsConfig>,
    /// Ignored keys and unset `${VAR}`s, for the binary to log at startup.
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuthConfig {
    /// Local user database; `None` means no self-service login or registration.
    pub htpasswd: Option<HtpasswdConfig>,
    /// `auth.rate_limit`: budgets for failed password checks.
    pub rate_limit: RateLimitConfig,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HtpasswdConfig {
    /// Absolute path of the htpasswd file.
    pub file: PathBuf,
    /// `None` = unlimited registrations, `-1` = registration disabled, `n` = at most n users.
    pub max_users: Option<i64>,
    /// Whether `max_users` was written in the file (even as `infinity`): the operator
    /// chose a registration policy, which a network-exposed server requires
    /// ([`Config::check_exposure`]).
    pub max_users_set: bool,
}

/// `auth.rate_limit`: failed password checks (Basic credentials, `npm login`, token
/// creation) allowed per user name and per client address within `window`; over
/// budget the server answers 429 with `Retry-After` and runs no hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitConfig {
    pub per_user: u32,
    pub per_address: u32,
    pub window: Duration,
}

impl RateLimitConfig {
    pub const DEFAULT_PER_USER: u32 = 10;
    pub const DEFAULT_PER_ADDRESS: u32 = 50;
    pub const DEFAULT_WINDOW: Duration = Duration::from_secs(300);
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            per_user: Self::DEFAULT_PER_USER,
            per_address: Self::DEFAULT_PER_ADDRESS,
            window: Self::DEFAULT_WINDOW,
        }
    }
}

/// One `uplinks:` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct UplinkConfig {
    /// The key under `uplinks:`; also the `/~<name>/` path segment.
    pub name: String,
    /// http(s), no userinfo, no query, always ending in `/`.
    pub url: url::Url,
    pub auth: Option<UplinkAuth>,
    /// Extra request headers (merged over the auth-derived `Authorization`).
    pub headers: Vec<(String, Secret)>,
    /// Bound on connect + response headers and on each idle gap in a body.
    pub timeout: Duration,
    /// Bound on a whole fetch (headers and entire body), however it trickles.
    pub deadline: Duration,
    /// How long fetched metadata counts as fresh.
    pub maxage: Duration,
    /// Consecutive failures before the uplink is considered down.
    pub max_fails: u32,
    /// How long a down uplink is skipped.
    pub fail_timeout: Duration,
    /// Whether tarballs fetched through this uplink are cached.
    pub cache: bool,
    /// Who may use this uplink's credentials; `None` = plain mirror (anonymous, no
    /// `/~<name>/` endpoint).
    pub access: Option<Vec<String>>,
}

impl UplinkConfig {
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
    pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(300);
    pub const DEFAULT_MAXAGE: Duration = Duration::from_secs(120);
    pub const DEFAULT_MAX_FAILS: u32 = 2;
    pub const DEFAULT_FAIL_TIMEOUT: Duration = Duration::from_secs(300);

    /// A plain mirror uplink with every optional setting at its default.
    pub fn new(name: impl Into<String>, url: url::Url) -> Self {
        Self {
            name: name.into(),
            url,
            auth: None,
            headers: Vec::new(),
            timeout: Self::DEFAULT_TIMEOUT,
            deadline: Self::DEFAULT_DEADLINE,
            maxage: Self::DEFAULT_MAXAGE,
            max_fails: Self::DEFAULT_MAX_FAILS,
            fail_timeout: Self::DEFAULT_FAIL_TIMEOUT,
            cache: true,
            access: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthKind {
    Bearer,
    Basic,
}

/// Server-owned credentials for an uplink.
#[derive(Debug, Clone, PartialEq)]
pub struct UplinkAuth {
    pub kind: AuthKind,
    pub token: Secret,
}

impl UplinkAuth {
    /// The `Authorization` value: `Bearer <token>` or `Basic <token>` (the token is used
    /// verbatim; for basic it is already base64 `user:pass`).
    pub fn header_value(&self) -> Secret {
        let scheme = match self.kind {
            AuthKind::Bearer => "Bearer",
            AuthKind::Basic => "Basic",
        };
        Secret::new(format!("{scheme} {}", self.token.expose()))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RoutesConfig {
    /// Operator-declared public routes (fetched anonymously; allowlisted when they name
    /// a registry).
    pub public: Vec<PublicRouteConfig>,
}

/// One `routes.public` rule; at least one field is set (an empty rule is rejected
/// because it would match everything).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicRouteConfig {
    /// Registry prefix (http(s), trailing `/`).
    pub registry: Option<url::Url>,
    /// Package-name glob, validated at load time.
    pub package: Option<String>,
}

/// One `packages:` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageRuleConfig {
    pub pattern: String,
    pub access: Vec<String>,
    pub publish: Vec<String>,
    /// `None` falls back to `publish`.
    pub unpublish: Option<Vec<String>>,
    /// Uplink names, each guaranteed to exist in [`Config::uplinks`].
    pub proxy: Vec<String>,
}

/// `network:` (pnpr's own key) for the outgoing-fetch guard.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NetworkConfig {
    /// Static host → IP map consulted before DNS (lower-cased host names).
    pub hosts: Vec<(String, IpAddr)>,
    /// Private/internal networks the fetch guard may connect to anyway.
    pub allow_private: Vec<ipnet::IpNet>,
    /// Peers whose `X-Forwarded-Host` / `X-Forwarded-Proto` name the public
    /// URL of a request when `public_url` is unset (reverse proxies).
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InstallAcceleratorConfig {
    /// How long an accelerator grant stays valid; `None` = permanent.
    pub grant_ttl: Option<Duration>,
    /// `recompress:`: the idle-time re-encoding of stored members (on by
    /// default, level 12; see [`RecompressConfig`]).
    pub recompress: RecompressConfig,
}

/// Who may change a hosted package after its first publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OwnershipMode {
    /// npm-registry semantics: the package's maintainers, or an admin (default).
    #[default]
    Maintainers,
    /// Verdaccio's semantics: anyone the `packages:` rule lets publish.
    PublishRights,
}

/// `ownership:`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OwnershipConfig {
    pub mode: OwnershipMode,
    /// User or `groups:` names whose members may change every hosted package.
    pub admins: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    pub format: LogFormat,
    /// One of [`LogConfig::LEVELS`], lower-cased (Verdaccio's names, kept as written).
    pub level: String,
}

impl LogConfig {
    /// Levels Verdaccio understands.
    pub const LEVELS: [&'static str; 7] =
        ["trace", "debug", "http", "info", "warn", "error", "fatal"];

    /// The nearest `tracing` level name: `http` → `info`, `fatal` → `error`.
    pub fn tracing_level(&self) -> &'static str {
        match self.level.as_str() {
            "trace" => "trace",
            "debug" => "debug",
            "warn" => "warn",
            "error" | "fatal" => "error",
            _ => "info",
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Pretty,
            level: "info".to_owned(),
        }
    }
}

impl Config {
    /// Parses `text`, resolving relative paths against `base_dir`, substituting `${VAR}`
    /// from `env`, then applying the `PNPR_*` overrides from the same `env`.
    pub fn from_yaml_str(text: &str, base_dir: &Path, env: &Env) -> Result<Config, ConfigError> {
        let base = absolute_dir(base_dir)?;
        let mut cfg = parse::parse(text, &base, env)?;
        cfg.apply_env_overrides(env)?;
        Ok(cfg)
    }

    /// Reads and parses the file at `path`; relative paths in it resolve against its
    /// directory and [`Config::config_path`] is set.
    pub fn load_file(path: &Path, env: &Env) -> Result<Config, ConfigError> {
        let abs = std::path::absolute(path).map_err(|source| ConfigError::Io {
            path: path.to_owned(),
            source,
        })?;
        let text = std::fs::read_to_string(&abs).map_err(|source| ConfigError::Io {
            path: abs.clone(),
            source,
        })?;
        let base = abs
            .parent()
            .map_or_else(|| PathBuf::from("/"), Path::to_path_buf);
        let mut cfg = parse::parse(&text, &base, env)?;
        cfg.config_path = Some(abs);
        cfg.apply_env_overrides(env)?;
        Ok(cfg)
    }

    /// The bundled default: storage is `data_dir`, htpasswd at `<data_dir>/htpasswd`,
    /// no uplinks unless `PNPR_UPLINK` is set.
    pub fn embedded_default(data_dir: &Path, env: &Env) -> Result<Config, ConfigError> {
        Self::from_yaml_str(EMBEDDED_DEFAULT_YAML, data_dir, env)
    }

    /// Applies the `PNPR_*` overrides (table in the crate docs). Idempotent, so calling
    /// it again after a constructor (which already applies it) changes nothing.
    pub fn apply_env_overrides(&mut self, env: &Env) -> Result<(), ConfigError> {
        overrides::apply(self, env)
    }

    /// A stable JSON string of everything that decides who may see what: `packages:`,
    /// `groups:`, each uplink's name, URL, `access` and whether it has credentials, and
    /// `routes.public`. A change means cached authorization decisions must be dropped on
    /// reload. Contains no secret.
    pub fn policy_fingerprint(&self) -> String {
        let packages: Vec<_> = self
            .packages
            .iter()
            .map(|p| {
                serde_json::json!({
                    "pattern": p.pattern,
                    "access": p.access,
                    "publish": p.publish,
                    "unpublish": p.unpublish,
                    "proxy": p.proxy,
                })
            })
            .collect();
        let groups: Vec<_> = self
            .groups
            .iter()
            .map(|(name, members)| serde_json::json!([name, members]))
            .collect();
        let uplinks: Vec<_> = self
            .uplinks
            .iter()
            .map(|u| {
                serde_json::json!({
                    "name": u.name,
                    "url": u.url.as_str(),
                    "access": u.access,
                    "auth": u.auth.is_some(),
                })
            })
            .collect();
        let routes: Vec<_> = self
            .routes
            .public
            .iter()
            .map(|r| {
                serde_json::json!({
                    "registry": r.registry.as_ref().map(url::Url::as_str),
                    "package": r.package,
                })
            })
            .collect();
        serde_json::json!({
            "packages": packages,
            "groups": groups,
            "uplinks": uplinks,
            "routes": { "public": routes },
        })
        .to_string()
    }
}

/// `dir` made absolute (against the current directory when relative) so every path we
/// hand out is absolute.
fn absolute_dir(dir: &Path) -> Result<PathBuf, ConfigError> {
    std::path::absolute(dir).map_err(|source| ConfigError::Io {
        path: dir.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests;
