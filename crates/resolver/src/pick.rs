//! Version selection from an abbreviated packument.
//!
//! Invariant guarded here: a picked version always exists in the packument, satisfies
//! the wanted range (or is the dist-tag's target) and is not younger than the
//! `minimumReleaseAge` cut-off; preference order mirrors pnpm's "highest" mode:
//! preferred versions, then the `latest` tag when it satisfies, then the highest match.

use nodejs_semver::{Range, Version};
use serde_json::Value;

/// What a dependency specifier asks for, after stripping an `npm:` alias.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Wanted {
    /// A registry package: real name and range or dist-tag.
    Registry { name: String, spec: String },
    /// A workspace protocol reference (`workspace:*`, `workspace:^`, ...).
    Workspace,
    /// A `link:` directory reference (path kept verbatim).
    Link(String),
}

/// Parses `spec` for the dependency declared as `alias`.
pub(crate) fn parse_spec(alias: &str, spec: &str) -> Option<Wanted> {
    let spec = spec.trim();
    if let Some(rest) = spec.strip_prefix("npm:") {
        let (name, range) = split_name_range(rest);
        return Some(Wanted::Registry {
            name: name.to_string(),
            spec: range.unwrap_or("latest").to_string(),
        });
    }
    if spec.starts_with("workspace:") {
        return Some(Wanted::Workspace);
    }
    if let Some(path) = spec.strip_prefix("link:") {
        return Some(Wanted::Link(path.to_string()));
    }
    if spec.contains(':') || spec.contains('/') {
        // git, file, tarball URLs: not registry packages.
        return None;
    }
    Some(Wanted::Registry {
        name: alias.to_string(),
        spec: if spec.is_empty() {
            "latest".into()
        } else {
            spec.into()
        },
    })
}

/// Splits `name@range` where `name` may be scoped (`@scope/name@range`).
pub(crate) fn split_name_range(s: &str) -> (&str, Option<&str>) {
    let search_from = usize::from(s.starts_with('@'));
    match s[search_from..].find('@') {
        Some(i) => {
            let at = i + search_from;
            (&s[..at], Some(&s[at + 1..]))
        }
        None => (s, None),
    }
}

/// Parses an RFC 3339 UTC timestamp (`2026-03-19T00:39:53.165Z`) into epoch ms.
pub(crate) fn parse_time_ms(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 19 {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> { s.get(r)?.parse().ok() };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut ms = 0i64;
    if b.get(19) == Some(&b'.') {
        let frac: String = s[20..].chars().take_while(|c| c.is_ascii_digit()).collect();
        let padded = format!("{frac:0<3}");
        ms = padded.get(..3)?.parse().ok()?;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 24 + h) * 60 + mi) * 60_000 + se * 1000 + ms)
}

/// Inputs that constrain a pick besides the range.
pub(crate) struct PickPolicy {
    pub min_age_ms: Option<i64>,
    pub now_ms: i64,
    /// Names exempt from the age rule (`minimumReleaseAgeExclude`).
    pub age_exempt: globset::GlobSet,
}

/// pnpm's exclusion patterns: `*` matches any run of characters (scope
/// slashes included); everything else is literal. Invalid patterns cannot
/// occur (everything but `*` is escaped).
pub(crate) fn exemptions(patterns: &[String]) -> globset::GlobSet {
    let mut set = globset::GlobSetBuilder::new();
    for p in patterns {
        let literal: Vec<String> = p.split('*').map(globset::escape).collect();
        if let Ok(glob) = globset::GlobBuilder::new(&literal.join("*"))
            .literal_separator(false)
            .build()
        {
            set.add(glob);
        }
    }
    set.build().unwrap_or_else(|_| globset::GlobSet::empty())
}

fn old_enough(packument: &Value, version: &str, policy: &PickPolicy) -> bool {
    let Some(age) = policy.min_age_ms else {
        return true;
    };
    let name = packument.get("name").and_then(Value::as_str).unwrap_or("");
    if !name.is_empty() && policy.age_exempt.is_match(name) {
        return true;
    }
    // Versions without a publish time are accepted (pnpm's ignore-missing-time default).
    match packument
        .get("time")
        .and_then(|t| t.get(version))
        .and_then(Value::as_str)
        .and_then(parse_time_ms)
    {
        Some(t) => policy.now_ms - t >= age,
        None => true,
    }
}

/// Every version in the packument that the policy allows, parsed and
/// sorted. The resolver computes this once per packument and passes it to
/// every pick of that name: parsing thousands of version strings per pick
/// dominated resolution time.
pub(crate) fn candidate_versions(packument: &Value, policy: &PickPolicy) -> Vec<Version> {
    let mut out: Vec<Version> = packument
        .get("versions")
        .and_then(Value::as_object)
        .map(|m| {
            m.keys()
                .filter(|v| old_enough(packument, v, policy))
                .filter_map(|v| Version::parse(v).ok())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// Picks the version for `spec`, honouring `preferred` (already used nearby);
/// `candidates` is [`candidate_versions`] of `packument` under `policy`.
pub(crate) fn pick_version(
    packument: &Value,
    candidates: &[Version],
    spec: &str,
    preferred: &[String],
    policy: &PickPolicy,
) -> Option<String> {
    let tags = packument.get("dist-tags");
    if let Some(v) = tags.and_then(|t| t.get(spec)).and_then(Value::as_str) {
        return old_enough(packument, v, policy).then(|| v.to_string());
    }
    let range = Range::parse(spec).ok()?;
    pick_in_ranges(packument, candidates, &[range], preferred)
}

/// Picks the best of `candidates` (the policy's allowed versions of
/// `packument`) satisfying all `ranges`.
pub(crate) fn pick_in_ranges(
    packument: &Value,
    candidates: &[Version],
    ranges: &[Range],
    preferred: &[String],
) -> Option<String> {
    let ok = |v: &Version| ranges.iter().all(|r| r.satisfies(v));
    let best_preferred = preferred
        .iter()
        .filter_map(|p| Version::parse(p).ok())
        .filter(|v| candidates.contains(v) && ok(v))
        .max();
    if let Some(v) = best_preferred {
        return Some(v.to_string());
    }
    if let Some(latest) = packument
        .get("dist-tags")
        .and_then(|t| t.get("latest"))
        .and_then(Value::as_str)
        .and_then(|l| Version::parse(l).ok())
    {
        if candidates.contains(&latest) && ok(&latest) {
            return Some(latest.to_string());
        }
    }
    if let Some(v) = candidates.iter().rev().find(|v| ok(v)) {
        return Some(v.to_string());
    }
    // Only prereleases could match: accept the `latest` tag when it satisfies with
    // prereleases included (a package published only as betas resolves `*`).
    let latest = packument
        .get("dist-tags")
        .and_then(|t| t.get("latest"))
        .and_then(Value::as_str)
        .and_then(|l| Version::parse(l).ok())?;
    (candidates.contains(&latest)
        && ranges
            .iter()
            .all(|r| r.satisfies_with_prerelease(&latest, true)))
    .then(|| latest.to_string())
}

/// Version to auto-install for a missing peer named with `ranges`, given the
/// versions of that package name already resolved anywhere in the graph
/// (aliased entries included).
///
/// pnpm prefers reusing what the graph holds over fetching another copy: an
/// exact-version peer takes the highest graph version equal to it; any other
/// range takes the highest graph version outright, even outside the range
/// (the mismatch is only reported as a peer issue). Only when the graph holds
/// no version of the name is the registry consulted.
pub(crate) fn pick_missing_peer(
    packument: &Value,
    candidates: &[Version],
    ranges: &[Range],
    exact: Option<&Version>,
    in_graph: &[String],
) -> Option<String> {
    let present: Vec<Version> = in_graph
        .iter()
        .filter_map(|v| Version::parse(v).ok())
        .collect();
    if present.is_empty() {
        return pick_in_ranges(packument, candidates, ranges, &[]);
    }
    match exact {
        Some(want) => present
            .iter()
            .find(|v| *v == want)
            .map(ToString::to_string)
            .or_else(|| pick_in_ranges(packument, candidates, ranges, &[])),
        None => present.into_iter().max().map(|v| v.to_string()),
    }
}

#[cfg(test)]
mod tests;

/// The highest of `versions` (versions already in the graph) that satisfies
/// every range; prereleases only where a range admits them (node-semver's
/// `satisfies` without `includePrerelease`). A range that does not parse
/// matches nothing.
pub(crate) fn highest_in_graph(versions: &[String], ranges: &[String]) -> Option<String> {
    let ranges: Vec<Range> = ranges
        .iter()
        .map(|r| Range::parse(r.trim()))
        .collect::<Result<_, _>>()
        .ok()?;
    versions
        .iter()
        .filter_map(|v| Version::parse(v).ok().map(|p| (p, v)))
        .filter(|(p, _)| ranges.iter().all(|r| r.satisfies(p)))
        .max_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, v)| v.clone())
}
