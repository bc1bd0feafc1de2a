//! The `packages:` access policy (Verdaccio model) and the `/~<uplink>/` gate.
//!
//! Owns the compiled form of the ordered `packages:` map, `groups:` and each
//! uplink's `access` list. Invariants:
//! * evaluation is pure: the same (identity, package, action) always yields
//!   the same answer, with no I/O, so the resolver can reuse it in-process;
//! * the first matching rule wins; with no match, access is `$all` and
//!   publish/unpublish are `$authenticated`;
//! * an empty list admits nobody, and an unknown uplink or one without
//!   `access` is never exposed (fail closed);
//! * a bad glob is a compile error naming the pattern, never "match anything";
//! * group and user names are separate namespaces where it matters: a bare
//!   token that names a configured group admits that group's members only,
//!   never a user who happens to carry the group's name, and
//!   [`Policy::reserves_name`] keeps such names from being registered.

use crate::AuthError;
use globset::{GlobBuilder, GlobMatcher};
use std::collections::{HashMap, HashSet};

#[cfg(test)]
mod tests;

/// Who is calling, after authentication.
#[derive(Clone, PartialEq, Eq, Debug, Hash)]
pub enum Identity {
    /// No credential, or one that did not check out.
    Anonymous,
    /// An identified user (htpasswd name or the owner of a token).
    User(String),
}

impl Identity {
    /// The user name, if identified.
    pub fn user(&self) -> Option<&str> {
        match self {
            Identity::Anonymous => None,
            Identity::User(name) => Some(name),
        }
    }
}

/// What the caller wants to do with a package.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum Action {
    /// Read packuments and tarballs.
    Access,
    /// Publish a new version.
    Publish,
    /// Remove versions or the whole package.
    Unpublish,
}

/// Why a policy check failed; maps to the HTTP status in the server.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Denial {
    /// Anonymous caller not admitted: `401`, so clients retry with credentials.
    Unauthenticated,
    /// Identified caller not admitted: `403`.
    Forbidden,
}

/// Why the `/~<uplink>/` gate refused.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum UplinkDenial {
    /// Unknown uplink, or an uplink without `access`: `404`, indistinguishable
    /// from a route that does not exist.
    NotExposed,
    /// Anonymous caller not admitted by the uplink's `access`. The spec
    /// (§5.4) answers `403` here too; the server chooses the status.
    Unauthenticated,
    /// Identified caller not admitted: `403`.
    Forbidden,
}

/// One `packages:` entry as written in configuration.
///
/// List items are token lists; items are additionally split on whitespace,
/// so `["alice bob"]` and `["alice", "bob"]` mean the same.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PackageRuleInput {
    /// Glob over package names (`**`, `@*/*`, `@scope/*`, `private-*`).
    pub pattern: String,
    /// Who may read.
    pub access: Vec<String>,
    /// Who may publish.
    pub publish: Vec<String>,
    /// Who may unpublish; `None` falls back to `publish`.
    pub unpublish: Option<Vec<String>>,
    /// Uplink names to proxy matching packages from, in order.
    pub proxy: Vec<String>,
}

/// Everything the policy needs, decoupled from the config crate's types.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PolicyInput {
    /// `packages:` entries in configuration order (first match wins).
    pub packages: Vec<PackageRuleInput>,
    /// `groups:`: group name → member user names.
    pub groups: Vec<(String, Vec<String>)>,
    /// Every configured uplink with its `access` list (`None` = no `access`,
    /// a plain mirror that is not exposed at `/~<name>/`).
    pub uplink_access: Vec<(String, Option<Vec<String>>)>,
}

/// One parsed entry of a token list.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Principal {
    All,
    Authenticated,
    Anonymous,
    /// A user name or a group name.
    Name(String),
}

impl Principal {
    fn parse(token: &str) -> Self {
        match token {
            "$all" | "@all" | "all" => Principal::All,
            "$authenticated" | "@authenticated" => Principal::Authenticated,
            "$anonymous" | "@anonymous" => Principal::Anonymous,
            name => Principal::Name(name.to_owned()),
        }
    }
}

/// A compiled token list.
#[derive(Clone, Debug, PartialEq, Eq)]
struct AccessList(Vec<Principal>);

impl AccessList {
    fn parse(items: &[String]) -> Self {
        AccessList(
            items
                .iter()
                .flat_map(|item| item.split_whitespace())
                .map(Principal::parse)
                .collect(),
        )
    }

    fn of(principal: Principal) -> Self {
        AccessList(vec![principal])
    }

    fn admits(&self, who: &Identity, groups: &HashMap<String, HashSet<String>>) -> bool {
        self.0.iter().any(|p| match (p, who) {
            (Principal::All, _) => true,
            (Principal::Authenticated, Identity::User(_)) => true,
            (Principal::Anonymous, Identity::Anonymous) => true,
            // A group name means the group, even if a user took that name.
            (Principal::Name(name), Identity::User(user)) => match groups.get(name) {
                Some(members) => members.contains(user),
                None => name == user,
            },
            _ => false,
        })
    }
}

struct Rule {
    pattern: String,
    matcher: GlobMatcher,
    access: AccessList,
    publish: AccessList,
    unpublish: AccessList,
    proxy: Vec<String>,
}

/// The compiled access policy. Cheap to share behind an `Arc`; all methods
/// take `&self` and do no I/O.
pub struct Policy {
    rules: Vec<Rule>,
    groups: HashMap<String, HashSet<String>>,
    /// Uplink name → `access` list; uplinks without `access` are absent.
    uplinks: HashMap<String, AccessList>,
    default_access: AccessList,
    default_write: AccessList,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy")
            .field(
                "patterns",
                &self.rules.iter().map(|r| &r.pattern).collect::<Vec<_>>(),
            )
            .field("groups", &self.groups.len())
            .field("exposed_uplinks", &self.uplinks.len())
            .finish()
    }
}

/// Compiles a package glob with minimatch-like semantics: `*` stays within
/// one path segment, `**` crosses `/`.
fn compile_glob(pattern: &str) -> Result<GlobMatcher, AuthError> {
    let invalid = |reason: String| AuthError::InvalidPattern {
        pattern: pattern.to_owned(),
        reason,
    };
    if pattern.trim().is_empty() {
        return Err(invalid("pattern is empty".to_owned()));
    }
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()
        .map(|glob| glob.compile_matcher())
        .map_err(|e| invalid(e.kind().to_string()))
}

impl Policy {
    /// Compiles the policy. Fails on the first invalid glob, naming it, so a
    /// typo in a security rule stops startup instead of matching everything.
    pub fn compile(input: PolicyInput) -> Result<Policy, AuthError> {
        let rules = input
            .packages
            .into_iter()
            .map(|rule| {
                let matcher = compile_glob(&rule.pattern)?;
                let publish = AccessList::parse(&rule.publish);
                let unpublish = match &rule.unpublish {
                    Some(list) => AccessList::parse(list),
                    None => publish.clone(),
                };
                Ok(Rule {
                    matcher,
                    access: AccessList::parse(&rule.access),
                    publish,
                    unpublish,
                    proxy: rule.proxy,
                    pattern: rule.pattern,
                })
            })
            .collect::<Result<Vec<_>, AuthError>>()?;

        let mut groups: HashMap<String, HashSet<String>> = HashMap::new();
        for (name, members) in input.groups {
            // A group repeated in input unions its members rather than
            // silently dropping the earlier definition.
            groups.entry(name).or_default().extend(
                members
                    .iter()
                    .flat_map(|m| m.split_whitespace())
                    .map(str::to_owned),
            );
        }

        let mut uplinks = HashMap::new();
        for (name, access) in input.uplink_access {
            if let Some(list) = access {
                // First definition wins, like the uplink order in config.
                uplinks
                    .entry(name)
                    .or_insert_with(|| AccessList::parse(&list));
            }
        }

        Ok(Policy {
            rules,
            groups,
            uplinks,
            default_access: AccessList::of(Principal::All),
            default_write: AccessList::of(Principal::Authenticated),
        })
    }

    fn rule_for(&self, package: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.matcher.is_match(package))
    }

    fn list_for(&self, package: &str, action: Action) -> &AccessList {
        match (self.rule_for(package), action) {
            (Some(rule), Action::Access) => &rule.access,
            (Some(rule), Action::Publish) => &rule.publish,
            (Some(rule), Action::Unpublish) => &rule.unpublish,
            (None, Action::Access) => &self.default_access,
            (None, Action::Publish | Action::Unpublish) => &self.default_write,
        }
    }

    fn deny(who: &Identity) -> Denial {
        match who {
            Identity::Anonymous => Denial::Unauthenticated,
            Identity::User(_) => Denial::Forbidden,
        }
    }

    /// May `who` perform `action` on `package`? Anonymous callers that are
    /// refused get [`Denial::Unauthenticated`], identified ones
    /// [`Denial::Forbidden`].
    pub fn check(&self, who: &Identity, package: &str, action: Action) -> Result<(), Denial> {
        if self.list_for(package, action).admits(who, &self.groups) {
            Ok(())
        } else {
            Err(Self::deny(who))
        }
    }

    /// Uplink names of the first rule matching `package` (empty if none).
    pub fn proxies(&self, package: &str) -> &[String] {
        self.rule_for(package).map_or(&[], |r| r.proxy.as_slice())
    }

    /// The pattern of the first rule matching `package`, for diagnostics.
    pub fn matching_pattern(&self, package: &str) -> Option<&str> {
        self.rule_for(package).map(|r| r.pattern.as_str())
    }

    /// Whether an anonymous caller may perform `action` on `package`
    /// (route classification: such a package is Public).
    pub fn admits_anonymous(&self, package: &str, action: Action) -> bool {
        self.check(&Identity::Anonymous, package, action).is_ok()
    }

    /// The `/~<uplink>/` gate: unknown uplinks and uplinks without `access`
    /// are [`UplinkDenial::NotExposed`].
    pub fn check_uplink(&self, who: &Identity, uplink: &str) -> Result<(), UplinkDenial> {
        let list = self.uplinks.get(uplink).ok_or(UplinkDenial::NotExposed)?;
        if list.admits(who, &self.groups) {
            Ok(())
        } else {
            Err(match who {
                Identity::Anonymous => UplinkDenial::Unauthenticated,
                Identity::User(_) => UplinkDenial::Forbidden,
            })
        }
    }

    /// Whether `uplink` is configured with an `access` list.
    pub fn uplink_has_access(&self, uplink: &str) -> bool {
        self.uplinks.contains_key(uplink)
    }

    /// Whether `name` may not become a user name: a configured group, or a
    /// token the policy reads specially (`$all`, `@all`, `all`,
    /// `$authenticated`, `$anonymous`, and any other `$`/`@` token).
    pub fn reserves_name(&self, name: &str) -> bool {
        name.starts_with('$')
            || name.starts_with('@')
            || Principal::parse(name) != Principal::Name(name.to_owned())
            || matches!(name, "anonymous" | "authenticated")
            || self.groups.contains_key(name)
    }

    /// Whether `user` is a member of the `groups:` group `group`.
    pub fn in_group(&self, user: &str, group: &str) -> bool {
        self.groups.get(group).is_some_and(|m| m.contains(user))
    }

    /// Whether `name` is a `groups:` group (as opposed to a user name).
    pub fn is_group(&self, name: &str) -> bool {
        self.groups.contains_key(name)
    }
}
