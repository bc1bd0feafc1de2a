//! Who may change a hosted package, and who may claim a new name.
//!
//! Owns npm-registry ownership semantics for hosted packages: the first
//! publisher of a name is its maintainer, and every later change (new
//! versions, dist-tags, deprecation, unpublish, owner changes) needs a
//! maintainer of the package or an admin named in config. Verdaccio's model
//! ("anyone with publish rights may change any package") is
//! [`OwnershipMode::PublishRights`], which an operator has to choose
//! explicitly. It also owns the verdict on a first publish (see
//! [`claim_admission`] and [`claim_verdict`]): a name an uplink serves is
//! never claimed locally.
//!
//! Invariants guarded here:
//! - the decision is made against the document as stored inside the write
//!   transaction (the store calls [`Actor::may_change`] with that document's
//!   [`maintainer_names`]), so an owner
//!   change and a competing write can never race past each other;
//! - admin rights come from an explicit user entry or membership of a
//!   configured group; a user whose name merely equals a group's name is not
//!   that group's member;
//! - an owner change may only add users that exist;
//! - a document without maintainers is changed by admins only (fail closed);
//! - a first publish is refused when any uplink of the name's rule serves it,
//!   and fails closed when one of them cannot be asked.

use serde_json::Value;

use crate::{HostedError, Result};

/// Who may change an existing hosted package (`ownership.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OwnershipMode {
    /// Maintainers of the package, or admins (the default).
    #[default]
    Maintainers,
    /// Anyone the `packages:` rule lets publish (Verdaccio's behaviour).
    PublishRights,
}

/// What a write does to an existing package, for the refusal message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Change {
    /// Publish new versions.
    Publish,
    /// Add, move or remove a dist-tag.
    DistTag,
    /// Deprecate, undeprecate or otherwise edit metadata.
    Update,
    /// Remove versions or the whole package.
    Unpublish,
    /// Change the maintainer list.
    Owners,
}

impl Change {
    /// The verb used in refusals ("... cannot {verb} it").
    pub fn verb(self) -> &'static str {
        match self {
            Change::Publish => "publish new versions of",
            Change::DistTag => "change the dist-tags of",
            Change::Update => "change",
            Change::Unpublish => "unpublish",
            Change::Owners => "change the owners of",
        }
    }
}

/// How the access policy answers group questions (its live `groups:`).
pub trait Groups {
    /// Whether `name` is a configured group.
    fn is_group(&self, name: &str) -> bool;
    /// Whether `user` is a member of the group `group`.
    fn is_member(&self, user: &str, group: &str) -> bool;
}

/// `groups:` as (group, members) pairs; members may be space-separated.
impl Groups for Vec<(String, Vec<String>)> {
    fn is_group(&self, name: &str) -> bool {
        self.iter().any(|(g, _)| g == name)
    }

    fn is_member(&self, user: &str, group: &str) -> bool {
        self.iter()
            .filter(|(g, _)| g == group)
            .flat_map(|(_, members)| members.iter().flat_map(|m| m.split_whitespace()))
            .any(|m| m == user)
    }
}

/// The ownership rules from config: the mode and the admin entries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ownership {
    mode: OwnershipMode,
    /// User or group names whose members may change every package.
    admins: Vec<String>,
}

impl Ownership {
    pub fn new(mode: OwnershipMode, admins: Vec<String>) -> Self {
        Self { mode, admins }
    }

    pub fn mode(&self) -> OwnershipMode {
        self.mode
    }

    /// Whether `user` is an admin: named directly (when that entry is not a
    /// group) or a member of a named group.
    pub fn is_admin(&self, user: &str, groups: &dyn Groups) -> bool {
        self.admins.iter().any(|entry| {
            if groups.is_group(entry) {
                groups.is_member(user, entry)
            } else {
                entry == user
            }
        })
    }

    /// The identified `user` as the store's ownership checks see it.
    pub fn actor(&self, user: &str, groups: &dyn Groups) -> Actor {
        Actor {
            user: user.to_string(),
            admin: self.is_admin(user, groups),
            mode: self.mode,
        }
    }
}

/// An identified caller of a hosted write, with its ownership standing
/// resolved once per request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    user: String,
    admin: bool,
    mode: OwnershipMode,
}

impl Actor {
    /// The user name (recorded as publisher and first maintainer).
    pub fn user(&self) -> &str {
        &self.user
    }

    pub fn is_admin(&self) -> bool {
        self.admin
    }

    /// May this caller make `change` to `package`, whose stored document
    /// lists `maintainers`? Refusals are [`HostedError::NotOwner`].
    pub fn may_change(&self, package: &str, maintainers: &[String], change: Change) -> Result<()> {
        if self.mode == OwnershipMode::PublishRights
            || self.admin
            || maintainers.iter().any(|m| m == &self.user)
        {
            return Ok(());
        }
        Err(HostedError::NotOwner {
            package: package.to_string(),
            user: self.user.clone(),
            change,
        })
    }
}

/// The names in a document's `maintainers` list.
pub fn maintainer_names(doc: &Value) -> Vec<String> {
    doc.get("maintainers")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|m| m.get("name").and_then(Value::as_str))
                .filter(|n| !n.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// What one uplink said when asked whether it serves a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UplinkAnswer {
    /// It has a packument for the name (fresh, revalidated or stale).
    Serves,
    /// It answered that it does not know the name.
    Absent,
    /// It could not be asked, refused to answer, or answered nonsense.
    Unreachable,
}

/// First publish, before any uplink is asked: every access-bearing uplink of
/// the name's rule must admit the publisher. Such an uplink is the private
/// source of that namespace; letting someone outside its `access` claim a
/// name there would let an outsider pre-empt a private package that the
/// uplink publishes later (the hosted copy would then win for everyone).
/// `admissions` is (uplink, admitted) for the access-bearing uplinks only.
pub fn claim_admission(package: &str, admissions: &[(String, bool)]) -> Result<()> {
    match admissions.iter().find(|(_, admitted)| !admitted) {
        Some((uplink, _)) => Err(HostedError::ClaimNotAdmitted {
            package: package.to_string(),
            uplink: uplink.clone(),
        }),
        None => Ok(()),
    }
}

/// First publish, after asking every uplink of the name's rule (mirrors and
/// access-bearing ones alike): refused when any serves the name, and
/// unverifiable (fail closed) when any could not be asked.
pub fn claim_verdict(package: &str, answers: &[(String, UplinkAnswer)]) -> Result<()> {
    let with = |want: UplinkAnswer| -> Vec<String> {
        answers
            .iter()
            .filter(|(_, a)| *a == want)
            .map(|(u, _)| u.clone())
            .collect()
    };
    let serving = with(UplinkAnswer::Serves);
    if !serving.is_empty() {
        return Err(HostedError::NameServedUpstream {
            package: package.to_string(),
            uplinks: serving,
        });
    }
    let unreachable = with(UplinkAnswer::Unreachable);
    if !unreachable.is_empty() {
        return Err(HostedError::ClaimUnverifiable {
            package: package.to_string(),
            uplinks: unreachable,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
