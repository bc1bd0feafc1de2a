//! `uplinks:` entries: URL, server-owned credentials, headers and timing knobs.
//!
//! Invariants: an uplink URL is http(s) without userinfo (credentials live only in
//! `auth`/`headers`, as [`Secret`]s); an `auth` block that yields no token is an error,
//! never an anonymous uplink; token and header values cannot inject header lines.

use serde_yaml_ng::Value;

use crate::env::Env;
use crate::error::ConfigError;
use crate::path::child;
use crate::units::duration_value;
use crate::walk::{self, entries, kind, opt_mapping, opt_string, token_list};
use crate::{AuthKind, Secret, UplinkAuth, UplinkConfig};

use super::http_url;

/// Uplink keys Verdaccio knows that pnpr does not implement.
const IGNORED_UPLINK_KEYS: &[&str] = &[
    "strict_ssl",
    "agent_options",
    "proxy",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "ca",
    "cert",
    "key",
    "max_sockets",
    "keepAlive",
    "timeout_ms",
];

/// Variable read by `token_env: true`, as in Verdaccio.
const DEFAULT_TOKEN_ENV: &str = "NPM_TOKEN";

pub(crate) fn parse_uplinks(
    v: &Value,
    env: &Env,
    warnings: &mut Vec<String>,
) -> Result<Vec<UplinkConfig>, ConfigError> {
    let mut out = Vec::new();
    for (name, node) in entries(v, "uplinks")? {
        out.push(parse_uplink(name, node, env, warnings)?);
    }
    Ok(out)
}

/// Uplink names become the `/~<name>/` path segment, so they are restricted to
/// characters that need no escaping and cannot form `.`/`..` segments.
fn validate_name(name: &str) -> Result<(), String> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
    if name.is_empty() || !ok_chars || name.starts_with('.') {
        return Err(
            "uplink names may only contain letters, digits, '-', '_' and '.' (not leading)"
                .to_owned(),
        );
    }
    Ok(())
}

fn parse_uplink(
    name: String,
    v: &Value,
    env: &Env,
    warnings: &mut Vec<String>,
) -> Result<UplinkConfig, ConfigError> {
    let path = child("uplinks", &name);
    validate_name(&name).map_err(|r| ConfigError::invalid(&path, r))?;
    if opt_mapping(v, &path)?.is_none() {
        return Err(ConfigError::invalid(
            &path,
            "expected a mapping with at least `url`",
        ));
    }
    let url_path = child(&path, "url");
    let url_node = v
        .get("url")
        .ok_or_else(|| ConfigError::invalid(&url_path, "required"))?;
    let url = http_url(&walk::string(url_node, &url_path)?)
        .map_err(|r| ConfigError::invalid(&url_path, r))?;
    let mut auth_node = None;
    let mut up = UplinkConfig::new(name, url);
    for (key, node) in entries(v, &path)? {
        let fpath = child(&path, &key);
        let dur = |node: &Value| duration_value(node).map_err(|r| ConfigError::invalid(&fpath, r));
        match key.as_str() {
            "url" => {}
            "auth" => auth_node = Some(node),
            "headers" => up.headers = headers(node, &fpath)?,
            "timeout" => {
                up.timeout = dur(node)?;
                if up.timeout.is_zero() {
                    return Err(ConfigError::invalid(fpath, "must be greater than 0"));
                }
            }
            "deadline" => {
                up.deadline = dur(node)?;
                if up.deadline.is_zero() {
                    return Err(ConfigError::invalid(fpath, "must be greater than 0"));
                }
            }
            "maxage" => up.maxage = dur(node)?,
            "fail_timeout" => up.fail_timeout = dur(node)?,
            "max_fails" => {
                let n = walk::integer(node, &fpath)?;
                up.max_fails = u32::try_from(n).map_err(|_| {
                    ConfigError::invalid(&fpath, "must be a non-negative whole number")
                })?;
            }
            "cache" => up.cache = walk::boolean(node, &fpath)?,
            "access" => up.access = Some(token_list(node, &fpath)?),
            other => {
                let at = child(&path, other);
                if IGNORED_UPLINK_KEYS.contains(&other) {
                    warnings.push(format!("{at}: not supported by pnpr; ignored"));
                } else {
                    warnings.push(format!("{at}: unknown key; ignored"));
                }
            }
        }
    }
    if let Some(node) = auth_node {
        up.auth = Some(parse_auth(node, &child(&path, "auth"), env, warnings)?);
    }
    Ok(up)
}

fn parse_auth(
    v: &Value,
    path: &str,
    env: &Env,
    warnings: &mut Vec<String>,
) -> Result<UplinkAuth, ConfigError> {
    if opt_mapping(v, path)?.is_none() {
        return Err(ConfigError::invalid(
            path,
            "expected {type, token} or {type, token_env}",
        ));
    }
    let mut kind_value = None;
    let mut token = None;
    let mut token_env: Option<String> = None;
    let mut saw_camel_case = false;
    for (key, node) in entries(v, path)? {
        let fpath = child(path, &key);
        match key.as_str() {
            "type" => kind_value = opt_string(node, &fpath)?,
            "token" => token = opt_string(node, &fpath)?,
            "token_env" => token_env = token_env_value(node, fpath)?,
            "tokenEnv" => {
                saw_camel_case = true;
                warnings.push(format!("{fpath}: not recognized; did you mean token_env?"));
            }
            other => warnings.push(format!("{}: unknown key; ignored", child(path, other))),
        }
    }
    let kind = auth_kind(kind_value.as_deref(), path)?;
    // Verdaccio precedence: an inline token wins over token_env.
    let token = token.or_else(|| {
        token_env
            .as_deref()
            .and_then(|var| env.get(var))
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
    });
    let Some(token) = token else {
        return Err(ConfigError::invalid(
            path,
            missing_token_reason(token_env.as_deref(), saw_camel_case),
        ));
    };
    if !is_header_safe(&token) || token.trim() != token {
        return Err(ConfigError::invalid(
            child(path, "token"),
            "token contains a control character or surrounding whitespace",
        ));
    }
    Ok(UplinkAuth {
        kind,
        token: Secret::new(token),
    })
}

/// `token_env:`: `true` names the default variable; empty or `false` none.
fn token_env_value(node: &Value, fpath: String) -> Result<Option<String>, ConfigError> {
    Ok(match node {
        Value::Bool(true) => Some(DEFAULT_TOKEN_ENV.to_owned()),
        Value::Bool(false) | Value::Null => None,
        Value::String(s) if s.trim().is_empty() => None,
        Value::String(s) if s.trim().eq_ignore_ascii_case("true") => {
            Some(DEFAULT_TOKEN_ENV.to_owned())
        }
        Value::String(s) => Some(s.trim().to_owned()),
        other => {
            return Err(ConfigError::invalid(
                fpath,
                format!("expected true or a variable name, found {}", kind(other)),
            ))
        }
    })
}

/// `type:`, case-insensitively; required.
fn auth_kind(kind_value: Option<&str>, path: &str) -> Result<AuthKind, ConfigError> {
    match kind_value.map(str::to_ascii_lowercase).as_deref() {
        Some("bearer") => Ok(AuthKind::Bearer),
        Some("basic") => Ok(AuthKind::Basic),
        Some(_) => Err(ConfigError::invalid(
            child(path, "type"),
            "must be bearer or basic",
        )),
        None => Err(ConfigError::invalid(
            child(path, "type"),
            "required (bearer or basic)",
        )),
    }
}

/// Why no token was found, pointing at the likely mistake.
fn missing_token_reason(token_env: Option<&str>, saw_camel_case: bool) -> String {
    let mut reason = match token_env {
        Some(var) => {
            format!("no token: environment variable {var} (from token_env) is unset or empty")
        }
        None => "no token: set `token` or `token_env`".to_owned(),
    };
    if saw_camel_case {
        reason.push_str(" (`tokenEnv` is not recognized; use `token_env`)");
    }
    reason
}

fn headers(v: &Value, path: &str) -> Result<Vec<(String, Secret)>, ConfigError> {
    let mut out = Vec::new();
    for (name, node) in entries(v, path)? {
        let hpath = child(path, &name);
        if name.is_empty() || !name.chars().all(is_tchar) {
            return Err(ConfigError::invalid(hpath, "not a valid HTTP header name"));
        }
        let value = walk::string(node, &hpath)?;
        if !is_header_safe(&value) {
            return Err(ConfigError::invalid(
                hpath,
                "header value contains a control character",
            ));
        }
        out.push((name, Secret::new(value)));
    }
    Ok(out)
}

/// RFC 9110 `tchar`.
fn is_tchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

/// No CR, LF, NUL or other control characters (tab allowed), so the value can never
/// split into a second header line.
fn is_header_safe(s: &str) -> bool {
    s.chars().all(|c| c == '\t' || !c.is_control())
}
