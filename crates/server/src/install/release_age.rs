//! The input lockfile's `minimumReleaseAge` check (spec §1.6, §2.2): every
//! locked registry package published less than that many minutes ago is a
//! violation, reported instead of an install.
//!
//! Invariant: a package the caller may not read is a denial, never a pass —
//! the check reads metadata only through the catalog.

use axum::http::StatusCode;
use pnpr_lockfile::Lockfile;

use crate::catalog::Session;
use crate::error::ApiError;

pub(super) async fn violations(
    req: &pnpr_protocol::InstallRequest,
    lockfile: Option<&Lockfile>,
    session: &Session,
) -> Result<Vec<pnpr_protocol::Violation>, ApiError> {
    let (Some(lockfile), Some(minutes)) = (lockfile, req.minimum_release_age) else {
        return Ok(Vec::new());
    };
    if minutes == 0 || req.trust_lockfile {
        return Ok(Vec::new());
    }
    let excluded = exclusions(req.minimum_release_age_exclude.as_deref().unwrap_or(&[]))?;
    let cutoff =
        pnpr_store::now_ms() - i64::try_from(minutes).unwrap_or(i64::MAX / 60_000) * 60_000;
    let mut out = Vec::new();
    for key in lockfile.packages.keys() {
        let Some((name, version)) = split_package_key(key) else {
            continue;
        };
        if excluded.is_match(name) {
            continue;
        }
        let Some(published) = published_at(session, name, version).await? else {
            // pnpm's `minimumReleaseAgeIgnoreMissingTime` default.
            continue;
        };
        if published.1 > cutoff {
            out.push(pnpr_protocol::Violation {
                name: name.to_string(),
                version: version.to_string(),
                code: "MINIMUM_RELEASE_AGE_VIOLATION".to_string(),
                reason: format!(
                    "was published at {}, less than the minimumReleaseAge of {minutes} minutes ago",
                    published.0
                ),
            });
        }
    }
    Ok(out)
}

/// The version's publish time (as written, and in epoch ms), if known.
async fn published_at(
    session: &Session,
    name: &str,
    version: &str,
) -> Result<Option<(String, i64)>, ApiError> {
    let doc = match session.packument(name).await {
        Ok(d) => d,
        Err(e) if e.status == StatusCode::UNAUTHORIZED || e.status == StatusCode::FORBIDDEN => {
            return Err(e)
        }
        Err(_) => return Ok(None),
    };
    let Some(raw) = doc
        .get("time")
        .and_then(|t| t.get(version))
        .and_then(serde_json::Value::as_str)
    else {
        return Ok(None);
    };
    Ok(parse_rfc3339_ms(raw).map(|ms| (raw.to_string(), ms)))
}

/// pnpm's exclusion patterns: `*` matches any run of characters (scope
/// slashes included); everything else is literal.
fn exclusions(patterns: &[String]) -> Result<globset::GlobSet, ApiError> {
    let mut set = globset::GlobSetBuilder::new();
    for p in patterns {
        let literal: Vec<String> = p.split('*').map(globset::escape).collect();
        let glob = globset::GlobBuilder::new(&literal.join("*"))
            .literal_separator(false)
            .build()
            .map_err(|_| {
                ApiError::bad_request(format!("invalid minimumReleaseAgeExclude entry {p:?}"))
            })?;
        set.add(glob);
    }
    set.build()
        .map_err(|_| ApiError::bad_request("invalid minimumReleaseAgeExclude"))
}

/// `name@version` lockfile keys (scoped names keep their leading `@`).
pub(super) fn split_package_key(key: &str) -> Option<(&str, &str)> {
    let key = key.split('(').next().unwrap_or(key);
    let at = key.get(1..)?.find('@')? + 1;
    let (name, version) = (&key[..at], &key[at + 1..]);
    (!name.is_empty() && !version.is_empty()).then_some((name, version))
}

/// Milliseconds since the epoch of an RFC 3339 timestamp.
pub(super) fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    let t = humantime::parse_rfc3339_weak(s).ok()?;
    let ms = t.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis();
    i64::try_from(ms).ok()
}
