use serde_json::json;

use super::*;

fn groups() -> Vec<(String, Vec<String>)> {
    vec![
        ("release".to_string(), vec!["carol dave".to_string()]),
        ("empty".to_string(), Vec::new()),
    ]
}

#[test]
fn admins_are_named_users_or_group_members() {
    let rules = Ownership::new(
        OwnershipMode::Maintainers,
        vec!["release".into(), "erin".into(), "empty".into()],
    );
    let g = groups();
    assert!(rules.is_admin("carol", &g));
    assert!(rules.is_admin("dave", &g));
    assert!(rules.is_admin("erin", &g));
    assert!(!rules.is_admin("bob", &g));
    // A user who registered a group's name is not its member.
    assert!(!rules.is_admin("release", &g));
    assert!(!rules.is_admin("empty", &g));
    assert!(!Ownership::default().is_admin("carol", &g));
}

#[test]
fn maintainers_decide_unless_publish_rights_is_chosen() {
    let doc = json!({ "maintainers": [{ "name": "alice", "email": "" }, { "name": "" }] });
    let names = maintainer_names(&doc);
    assert_eq!(names, vec!["alice"]);
    let g = groups();
    let rules = Ownership::default();
    assert_eq!(rules.mode(), OwnershipMode::Maintainers);
    rules
        .actor("alice", &g)
        .may_change("demo", &names, Change::Publish)
        .expect("maintainer");
    let refused = rules
        .actor("bob", &g)
        .may_change("demo", &names, Change::DistTag);
    match refused {
        Err(e @ HostedError::NotOwner { .. }) => assert_eq!(
            e.to_string(),
            "bob is not a maintainer of demo and cannot change the dist-tags of it"
        ),
        other => panic!("expected NotOwner, got {other:?}"),
    }
    Ownership::new(OwnershipMode::PublishRights, Vec::new())
        .actor("bob", &g)
        .may_change("demo", &names, Change::Unpublish)
        .expect("publish-rights mode");
}

#[test]
fn documents_without_maintainers_are_for_admins_only() {
    let g = groups();
    let rules = Ownership::new(OwnershipMode::Maintainers, vec!["release".into()]);
    let names = maintainer_names(&json!({ "name": "legacy" }));
    assert!(names.is_empty());
    assert!(rules
        .actor("alice", &g)
        .may_change("legacy", &names, Change::Update)
        .is_err());
    rules
        .actor("carol", &g)
        .may_change("legacy", &names, Change::Owners)
        .expect("admin");
}

#[test]
fn a_claim_needs_admission_by_every_access_bearing_uplink() {
    claim_admission("@corp/x", &[]).expect("no access-bearing uplink");
    claim_admission("@corp/x", &[("corp".into(), true)]).expect("admitted");
    assert!(matches!(
        claim_admission("@corp/x", &[("corp".into(), true), ("other".into(), false)]),
        Err(HostedError::ClaimNotAdmitted { uplink, .. }) if uplink == "other"
    ));
}

#[test]
fn a_claim_is_refused_when_any_uplink_serves_the_name_and_fails_closed() {
    use UplinkAnswer::*;
    claim_verdict("x", &[]).expect("no uplinks");
    claim_verdict("x", &[("a".into(), Absent), ("b".into(), Absent)]).expect("free");
    assert!(matches!(
        claim_verdict("x", &[("a".into(), Absent), ("corp".into(), Serves)]),
        Err(HostedError::NameServedUpstream { uplinks, .. }) if uplinks == vec!["corp".to_string()]
    ));
    // Serving wins over unreachable: the name is known to be taken.
    assert!(matches!(
        claim_verdict("x", &[("a".into(), Unreachable), ("b".into(), Serves)]),
        Err(HostedError::NameServedUpstream { .. })
    ));
    assert!(matches!(
        claim_verdict("x", &[("a".into(), Absent), ("b".into(), Unreachable)]),
        Err(HostedError::ClaimUnverifiable { uplinks, .. }) if uplinks == vec!["b".to_string()]
    ));
}

#[test]
fn change_kinds_follow_the_update_effect() {
    use crate::doc::UpdateEffect;
    let mut e = UpdateEffect::default();
    assert_eq!(e.change(false), Change::Update);
    assert_eq!(e.change(true), Change::Unpublish);
    e.owners_changed = true;
    assert_eq!(e.change(false), Change::Owners);
    e.removed.push("1.0.0".into());
    assert_eq!(e.change(false), Change::Unpublish);
}
