//! `database:` and `blobs:` (pnpr's own keys): where several nodes keep
//! their shared state (PostgreSQL) and their blobs (S3-compatible storage).
//!
//! Invariants guarded: the database password is held only as a [`Secret`]
//! and no error names the URL or any part of its userinfo; both endpoints
//! are infrastructure the operator names, never uplinks (the uplink
//! allowlist does not apply, and nothing a client sends can choose them);
//! anything this build cannot honour (an unknown query parameter, an
//! `sslmode` it does not implement, other schemes) is an error rather than
//! a silently different connection.
//!
//! TLS: libpq's `sslmode` (`disable`, `prefer`, `require`, `verify-ca`,
//! `verify-full`) and `sslrootcert`. Absent `sslmode` means `prefer`, as in
//! libpq: a URL copied from `psql` behaves the same here (TLS when the
//! server offers it, plain otherwise) and a managed server that requires
//! TLS works without edits; authenticating the server takes `verify-full`.

use std::path::PathBuf;

use percent_encoding::percent_decode_str;
use serde_yaml_ng::Value;

use crate::error::ConfigError;
use crate::parse::http_url;
use crate::path::child;
use crate::walk::{entries, opt_string, string};
use crate::Secret;

#[cfg(test)]
mod tests;

/// PostgreSQL's default port.
const DEFAULT_PG_PORT: u16 = 5432;
/// Region sent to S3 when none is configured (most compatible servers
/// accept any).
const DEFAULT_REGION: &str = "us-east-1";

/// `database: postgres://USER:PASSWORD@HOST:PORT/DB`, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseConfig {
    pub host: String,
    pub port: u16,
    pub user: String,
    /// `None` when the URL has no password (trust or peer authentication).
    pub password: Option<Secret>,
    pub dbname: String,
    /// `?sslmode=`; [`SslMode::Prefer`] when absent (libpq's default).
    pub sslmode: SslMode,
    /// `?sslrootcert=`: a PEM CA bundle trusted instead of the system
    /// roots; only with `verify-ca` / `verify-full`.
    pub sslrootcert: Option<PathBuf>,
}

/// libpq's `sslmode` values this build implements (`allow` is not one).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    #[default]
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

/// `blobs:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobsConfig {
    /// `blobs: {s3: {bucket, endpoint, region, prefix}}`; credentials come
    /// from the `AWS_*` environment, read by the binary.
    S3(S3Config),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Config {
    pub bucket: String,
    /// An S3-compatible server; `None` means the provider's default.
    pub endpoint: Option<url::Url>,
    pub region: String,
    /// Key prefix inside the bucket, empty or ending in `/`.
    pub prefix: String,
}

/// `database:`; `None` (absent, `null` or empty) keeps the embedded SQLite.
pub(crate) fn database(v: Option<&Value>) -> Result<Option<DatabaseConfig>, ConfigError> {
    let Some(s) = v.map(|v| opt_string(v, "database")).transpose()?.flatten() else {
        return Ok(None);
    };
    postgres_url(s.trim())
        .map(Some)
        .map_err(|r| ConfigError::invalid("database", r))
}

/// Decodes a `postgres://` URL. Reasons never include the input.
pub(crate) fn postgres_url(s: &str) -> Result<DatabaseConfig, String> {
    const SHAPE: &str = "expected postgres://USER:PASSWORD@HOST:PORT/DB";
    let url = url::Url::parse(s).map_err(|e| format!("not a valid URL ({e}); {SHAPE}"))?;
    if url.scheme() != "postgres" && url.scheme() != "postgresql" {
        return Err(format!("scheme must be postgres or postgresql; {SHAPE}"));
    }
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| format!("missing host; {SHAPE}"))?;
    let decode = |part: &str, what: &str| {
        percent_decode_str(part)
            .decode_utf8()
            .map(|c| c.into_owned())
            .map_err(|_| format!("{what} is not valid percent-encoded UTF-8"))
    };
    let user = decode(url.username(), "user")?;
    if user.is_empty() {
        return Err(format!("missing user; {SHAPE}"));
    }
    let password = url
        .password()
        .map(|p| decode(p, "password"))
        .transpose()?
        .filter(|p| !p.is_empty())
        .map(Secret::new);
    let dbname = decode(url.path().trim_start_matches('/'), "database name")?;
    if dbname.is_empty() || dbname.contains('/') {
        return Err(format!("missing or invalid database name; {SHAPE}"));
    }
    if url.fragment().is_some() {
        return Err(format!("a URL fragment (#...) is not allowed; {SHAPE}"));
    }
    let (sslmode, sslrootcert) = tls_params(&url)?;
    Ok(DatabaseConfig {
        // IPv6 literals come bracketed; the client wants the bare address.
        host: host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned(),
        port: url.port().unwrap_or(DEFAULT_PG_PORT),
        user,
        password,
        dbname,
        sslmode,
        sslrootcert,
    })
}

/// `?sslmode=...&sslrootcert=...`. Reasons name the parameter, never its
/// neighbours in the URL.
fn tls_params(url: &url::Url) -> Result<(SslMode, Option<PathBuf>), String> {
    let (mut mode, mut root) = (None, None);
    for (key, value) in url.query_pairs() {
        let seen = match key.as_ref() {
            "sslmode" => mode.replace(ssl_mode(&value)?).is_some(),
            "sslrootcert" if value.is_empty() => return Err("sslrootcert is empty".to_owned()),
            "sslrootcert" => root.replace(PathBuf::from(value.as_ref())).is_some(),
            other => {
                return Err(format!(
                    "unknown query parameter `{other}` (supported: sslmode, sslrootcert)"
                ))
            }
        };
        if seen {
            return Err(format!("query parameter `{key}` given twice"));
        }
    }
    let mode = mode.unwrap_or_default();
    // libpq's `sslrootcert=system`: the system roots, as when absent.
    let root = root.filter(|p| p.as_os_str() != "system");
    if root.is_some() && !matches!(mode, SslMode::VerifyCa | SslMode::VerifyFull) {
        // libpq would quietly upgrade to verify-ca; say so instead.
        return Err("sslrootcert needs sslmode=verify-ca or sslmode=verify-full".to_owned());
    }
    Ok((mode, root))
}

fn ssl_mode(value: &str) -> Result<SslMode, String> {
    Ok(match value {
        "disable" => SslMode::Disable,
        "prefer" => SslMode::Prefer,
        "require" => SslMode::Require,
        "verify-ca" => SslMode::VerifyCa,
        "verify-full" => SslMode::VerifyFull,
        "allow" => return Err("sslmode=allow is not supported (use prefer or require)".to_owned()),
        _ => {
            return Err(
                "unknown sslmode (expected disable, prefer, require, verify-ca, verify-full)"
                    .to_owned(),
            )
        }
    })
}

/// `blobs:`; `None` (absent or `null`) keeps blobs on local disk.
pub(crate) fn blobs(v: Option<&Value>) -> Result<Option<BlobsConfig>, ConfigError> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let mut out = None;
    for (key, node) in entries(v, "blobs")? {
        let path = child("blobs", &key);
        match key.as_str() {
            "s3" => out = Some(BlobsConfig::S3(s3(node, &path)?)),
            _ => {
                return Err(ConfigError::invalid(
                    path,
                    "unknown blob backend (expected s3)",
                ))
            }
        }
    }
    Ok(out)
}

fn s3(v: &Value, path: &str) -> Result<S3Config, ConfigError> {
    let mut bucket = None;
    let mut out = S3Config {
        bucket: String::new(),
        endpoint: None,
        region: DEFAULT_REGION.to_owned(),
        prefix: String::new(),
    };
    for (key, node) in entries(v, path)? {
        let p = child(path, &key);
        match key.as_str() {
            "bucket" => bucket = Some(string(node, &p)?),
            "endpoint" => {
                out.endpoint = opt_string(node, &p)?
                    .map(|s| http_url(&s).map_err(|r| ConfigError::invalid(&p, r)))
                    .transpose()?;
            }
            "region" => {
                if let Some(r) = opt_string(node, &p)? {
                    out.region = r;
                }
            }
            "prefix" => {
                let prefix = opt_string(node, &p)?.unwrap_or_default();
                let prefix = prefix.trim_start_matches('/');
                out.prefix = match prefix {
                    "" => String::new(),
                    p if p.ends_with('/') => p.to_owned(),
                    p => format!("{p}/"),
                };
            }
            _ => {
                return Err(ConfigError::invalid(
                    p,
                    "unknown key (expected bucket, endpoint, region, prefix; credentials come from AWS_* variables)",
                ))
            }
        }
    }
    out.bucket = bucket
        .filter(|b| !b.trim().is_empty())
        .ok_or_else(|| ConfigError::invalid(child(path, "bucket"), "is required"))?;
    Ok(out)
}
