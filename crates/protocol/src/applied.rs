//! `appliedPolicies`: the resolve-protocol `done` frame's statement of the
//! settings the server resolved under (pnpm 12 refuses a `done` frame
//! without it, and refuses one whose values differ from what it asked for:
//! "pnpr server ignored requested <field>"). Field names and types were
//! learned from pnpm 12.21.0/12.23.0's own answers to a probe server (RFC
//! 0006).
//!
//! Invariant: every value is what this server really applied. Because
//! [`crate::parse_resolve_request`] refuses every setting it would not
//! honour, that is the client's request with pnpm's defaults filled in for
//! what it left out; a trust policy of `off` is no policy (`null`).

use serde::Serialize;
use serde_json::{Map, Value};

/// The 15 settings pnpm 12 expects echoed (camelCase on the wire).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AppliedPolicies {
    pub auto_install_peers: bool,
    pub dedupe_peers: bool,
    pub exclude_links_from_lockfile: bool,
    pub add_missing_peer_types: bool,
    pub project_scoped_optional_peers: bool,
    pub frozen_lockfile: bool,
    pub resolution_mode: String,
    pub trust_lockfile: bool,
    /// Minutes; `None` when the client set no release-age policy.
    pub minimum_release_age: Option<u64>,
    pub minimum_release_age_exclude: Vec<String>,
    pub minimum_release_age_ignore_missing_time: bool,
    pub minimum_release_age_strict: bool,
    pub trust_policy: Option<String>,
    pub trust_policy_exclude: Vec<String>,
    pub trust_policy_ignore_after: Option<Value>,
}

impl AppliedPolicies {
    /// The settings of an already-validated v0 body, defaults filled in.
    pub(crate) fn of(obj: &Map<String, Value>) -> Self {
        let flag =
            |key: &str, default: bool| obj.get(key).and_then(Value::as_bool).unwrap_or(default);
        let strings = |key: &str| -> Vec<String> {
            obj.get(key)
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        let trust_policy = obj
            .get("trustPolicy")
            .and_then(Value::as_str)
            .filter(|p| *p != "off")
            .map(str::to_owned);
        AppliedPolicies {
            auto_install_peers: flag("autoInstallPeers", true),
            dedupe_peers: flag("dedupePeers", false),
            exclude_links_from_lockfile: flag("excludeLinksFromLockfile", false),
            add_missing_peer_types: flag("addMissingPeerTypes", false),
            project_scoped_optional_peers: flag("projectScopedOptionalPeers", false),
            frozen_lockfile: flag("frozenLockfile", false),
            resolution_mode: obj
                .get("resolutionMode")
                .and_then(Value::as_str)
                .unwrap_or("highest")
                .to_owned(),
            trust_lockfile: flag("trustLockfile", false),
            minimum_release_age: obj.get("minimumReleaseAge").and_then(Value::as_u64),
            minimum_release_age_exclude: strings("minimumReleaseAgeExclude"),
            minimum_release_age_ignore_missing_time: flag(
                "minimumReleaseAgeIgnoreMissingTime",
                true,
            ),
            minimum_release_age_strict: flag("minimumReleaseAgeStrict", false),
            trust_policy,
            trust_policy_exclude: strings("trustPolicyExclude"),
            trust_policy_ignore_after: obj
                .get("trustPolicyIgnoreAfter")
                .filter(|v| !v.is_null())
                .cloned(),
        }
    }
}
