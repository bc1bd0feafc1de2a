//! The input lockfile's `minimumReleaseAge` check (spec §1.6, §2.2): every
//! locked registry package published less than that many minutes ago is a
//! violation, reported instead of an install.
//!
//! Invariant: a package the caller may not read is a denial, never a pass —
//! the check reads metadata only through the catalog.

use axum::http::StatusCode;
use futures_util::StreamExt;
use pnpr_lockfile::Lockfile;

use crate::catalog::Session;
use crate::error::ApiError;

/// Packuments read at once (the resolver's own fetch width).
const LOOKUPS: usize = 16;

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
    // Owned pairs: a stream of futures borrowing from the lockfile through a
    // closure is not `Send` for every lifetime the handler's task needs.
    let locked: Vec<(String, String)> = lockfile
        .packages
        .keys()
        .filter_map(|key| split_package_key(key))
        .filter(|(name, _)| !excluded.is_match(name))
        .map(|(name, version)| (name.to_string(), version.to_string()))
        .collect();
    // One packument per package: on a cold server each is an upstream round
    // trip, so they are read LOOKUPS at a time; results come back in lockfile
    // order, so the first refusal reported is the same as one by one.
    let times = futures_util::stream::iter(
        locked
            .into_iter()
            .map(|(name, version)| checked(session, name, version)),
    )
    .buffered(LOOKUPS);
    futures_util::pin_mut!(times);
    let mut out = Vec::new();
    while let Some(checked) = times.next().await {
        let (name, version, published) = checked?;
        let Some(published) = published else {
            // pnpm's `minimumReleaseAgeIgnoreMissingTime` default.
            continue;
        };
        if published.1 > cutoff {
            out.push(pnpr_protocol::Violation {
                name,
                version,
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

/// `name@version` with its publish time.
async fn checked(
    session: &Session,
    name: String,
    version: String,
) -> Result<(String, String, Option<(String, i64)>), ApiError> {
    let published = published_at(session, &name, &version).await?;
    Ok((name, version, published))
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
