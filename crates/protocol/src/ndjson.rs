//! The resolve protocol v0 response: `application/x-ndjson`, one JSON object
//! per line (spec §5.0, RFC 0006).
//!
//! Invariant: every frame is exactly one line ending in `\n` (serde_json
//! escapes newlines inside strings), so a client splitting on `\n` reads
//! whole frames, and the frame shapes are the ones pnpm 11.28 and pnpm 12
//! deserialize (`type` tag in snake case, camelCase fields).

use serde::Serialize;

use crate::{AppliedPolicies, InstallError, Violation, LOCKFILE_FORMAT};

/// Content type of both v0 endpoints' `200` answers.
pub const NDJSON_CONTENT_TYPE: &str = "application/x-ndjson";

/// One resolved tarball the client may start fetching before the lockfile
/// arrives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PackageFrame {
    /// `name@version`.
    pub id: String,
    /// Package name.
    pub name: String,
    /// Exact version.
    pub version: String,
    /// SRI integrity the client verifies the tarball against.
    pub integrity: String,
    /// Absolute URL the client GETs the tarball from.
    pub tarball: String,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Frame<'a, L: Serialize> {
    Package(&'a PackageFrame),
    Done {
        lockfile: &'a L,
        stats: Stats,
        /// pnpm 12 refuses a `done` frame without it (it must be one of the
        /// request's `acceptedLockfileFormats`).
        #[serde(rename = "lockfileFormat")]
        lockfile_format: &'static str,
        /// pnpm 12 refuses a `done` frame without it, or with a value that
        /// differs from its request (see [`AppliedPolicies`]).
        #[serde(rename = "appliedPolicies")]
        applied_policies: &'a AppliedPolicies,
    },
    Error {
        message: &'a str,
    },
    Violations {
        violations: &'a [Violation],
    },
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Stats {
    total_packages: u64,
}

/// Frames without a lockfile; `()` stands in for its type.
type Plain<'a> = Frame<'a, ()>;

fn line<T: Serialize>(frame: &T) -> Result<Vec<u8>, InstallError> {
    let mut out = serde_json::to_vec(frame).map_err(InstallError::Json)?;
    out.push(b'\n');
    Ok(out)
}

/// A `package` frame line.
pub fn package_frame(p: &PackageFrame) -> Result<Vec<u8>, InstallError> {
    line(&Plain::Package(p))
}

/// The terminal `done` frame of `resolve`: the lockfile (v9, on-disk shape)
/// and `stats.totalPackages`, with the settings it was resolved under.
pub fn done_frame<L: Serialize>(
    lockfile: &L,
    total_packages: u64,
    applied_policies: &AppliedPolicies,
) -> Result<Vec<u8>, InstallError> {
    line(&Frame::Done {
        lockfile,
        stats: Stats { total_packages },
        lockfile_format: LOCKFILE_FORMAT,
        applied_policies,
    })
}

/// The terminal `done` frame of `verify-lockfile`: no lockfile, only the
/// settings the check applied (pnpm 12 requires them here too).
pub fn verified_frame(applied_policies: &AppliedPolicies) -> Result<Vec<u8>, InstallError> {
    line(&Verified {
        kind: "done",
        applied_policies,
    })
}

#[derive(Serialize)]
struct Verified<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(rename = "appliedPolicies")]
    applied_policies: &'a AppliedPolicies,
}

/// The terminal `error` frame (a failure after the `200` was sent).
pub fn error_frame(message: &str) -> Vec<u8> {
    // Serialising a `&str` cannot fail; fall back to a fixed text anyway.
    line(&Plain::Error { message })
        .unwrap_or_else(|_| b"{\"type\":\"error\",\"message\":\"internal error\"}\n".to_vec())
}

/// The terminal `violations` frame (input lockfile refused by policy).
pub fn violations_frame(violations: &[Violation]) -> Result<Vec<u8>, InstallError> {
    line(&Plain::Violations { violations })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_single_tagged_lines() {
        let p = PackageFrame {
            id: "a@1.0.0".into(),
            name: "a".into(),
            version: "1.0.0".into(),
            integrity: "sha512-x".into(),
            tarball: "http://h/a/-/a-1.0.0.tgz".into(),
        };
        assert_eq!(
            String::from_utf8(package_frame(&p).unwrap()).unwrap(),
            "{\"type\":\"package\",\"id\":\"a@1.0.0\",\"name\":\"a\",\"version\":\"1.0.0\",\"integrity\":\"sha512-x\",\"tarball\":\"http://h/a/-/a-1.0.0.tgz\"}\n"
        );
        let applied = AppliedPolicies::of(&serde_json::Map::new());
        let done = done_frame(&serde_json::json!({"lockfileVersion": "9.0"}), 3, &applied).unwrap();
        let done: serde_json::Value = serde_json::from_slice(&done).unwrap();
        assert_eq!(
            done,
            serde_json::json!({"type": "done", "lockfile": {"lockfileVersion": "9.0"},
                "stats": {"totalPackages": 3}, "lockfileFormat": "pnpm-lock/9.0",
                "appliedPolicies": {"autoInstallPeers": true, "dedupePeers": false,
                    "excludeLinksFromLockfile": false, "addMissingPeerTypes": false,
                    "projectScopedOptionalPeers": false, "frozenLockfile": false,
                    "resolutionMode": "highest", "trustLockfile": false,
                    "minimumReleaseAge": null, "minimumReleaseAgeExclude": [],
                    "minimumReleaseAgeIgnoreMissingTime": true,
                    "minimumReleaseAgeStrict": false, "trustPolicy": null,
                    "trustPolicyExclude": [], "trustPolicyIgnoreAfter": null}})
        );
        assert_eq!(
            String::from_utf8(error_frame("a\nb")).unwrap(),
            "{\"type\":\"error\",\"message\":\"a\\nb\"}\n"
        );
        let v = violations_frame(&[Violation {
            name: "a".into(),
            version: "1.0.0".into(),
            code: "MINIMUM_RELEASE_AGE_VIOLATION".into(),
            reason: "young".into(),
        }])
        .unwrap();
        assert!(String::from_utf8(v)
            .unwrap()
            .starts_with("{\"type\":\"violations\",\"violations\":[{\"name\":\"a\""));
        let verified: serde_json::Value =
            serde_json::from_slice(&verified_frame(&applied).unwrap()).unwrap();
        assert_eq!(verified["type"], "done");
        assert_eq!(verified["appliedPolicies"], done["appliedPolicies"]);
    }
}
