use super::*;

fn user(name: &str) -> Identity {
    Identity::User(name.to_owned())
}

fn list(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn rule(pattern: &str, access: &[&str], publish: &[&str]) -> PackageRuleInput {
    PackageRuleInput {
        pattern: pattern.to_owned(),
        access: list(access),
        publish: list(publish),
        unpublish: None,
        proxy: vec![],
    }
}

fn policy(rules: Vec<PackageRuleInput>) -> Policy {
    Policy::compile(PolicyInput {
        packages: rules,
        groups: vec![
            ("platform".to_owned(), list(&["alice bob"])),
            ("release".to_owned(), list(&["alice", "carol"])),
        ],
        uplink_access: vec![
            ("corp".to_owned(), Some(list(&["platform"]))),
            ("open".to_owned(), Some(list(&["$all"]))),
            ("members".to_owned(), Some(list(&["$authenticated"]))),
            ("nobody".to_owned(), Some(vec![])),
            ("mirror".to_owned(), None),
        ],
    })
    .expect("policy compiles")
}

#[test]
fn all_tokens_admit_everyone() {
    for token in ["$all", "@all", "all"] {
        let p = policy(vec![rule("**", &[token], &[token])]);
        assert_eq!(p.check(&Identity::Anonymous, "x", Action::Access), Ok(()));
        assert_eq!(p.check(&user("zed"), "x", Action::Access), Ok(()));
        assert_eq!(p.check(&Identity::Anonymous, "x", Action::Publish), Ok(()));
    }
}

#[test]
fn authenticated_token() {
    for token in ["$authenticated", "@authenticated"] {
        let p = policy(vec![rule("**", &[token], &[])]);
        assert_eq!(
            p.check(&Identity::Anonymous, "x", Action::Access),
            Err(Denial::Unauthenticated)
        );
        assert_eq!(p.check(&user("zed"), "x", Action::Access), Ok(()));
    }
}

#[test]
fn anonymous_token_admits_only_anonymous() {
    for token in ["$anonymous", "@anonymous"] {
        let p = policy(vec![rule("**", &[token], &[])]);
        assert_eq!(p.check(&Identity::Anonymous, "x", Action::Access), Ok(()));
        assert_eq!(
            p.check(&user("zed"), "x", Action::Access),
            Err(Denial::Forbidden)
        );
    }
}

#[test]
fn bare_names_match_users_and_groups() {
    let p = policy(vec![rule("**", &["dave platform"], &["release"])]);
    assert_eq!(p.check(&user("dave"), "x", Action::Access), Ok(()));
    assert_eq!(p.check(&user("alice"), "x", Action::Access), Ok(()));
    assert_eq!(p.check(&user("bob"), "x", Action::Access), Ok(()));
    assert_eq!(
        p.check(&user("carol"), "x", Action::Access),
        Err(Denial::Forbidden)
    );
    assert_eq!(
        p.check(&Identity::Anonymous, "x", Action::Access),
        Err(Denial::Unauthenticated)
    );
    assert_eq!(p.check(&user("carol"), "x", Action::Publish), Ok(()));
    assert_eq!(
        p.check(&user("bob"), "x", Action::Publish),
        Err(Denial::Forbidden)
    );
    // A group name is not itself a user: a user who took the group's name
    // gets nothing from it (issue 9, class 4).
    assert_eq!(
        p.check(&user("release"), "x", Action::Publish),
        Err(Denial::Forbidden),
        "a user literally named like the group must not match"
    );
    // A bare name that is no group still names a user.
    assert_eq!(p.check(&user("dave"), "x", Action::Access), Ok(()));
    assert!(p.in_group("alice", "release"));
    assert!(!p.in_group("bob", "release"));
}

#[test]
fn empty_list_admits_nobody() {
    let p = policy(vec![rule("**", &[], &[])]);
    assert_eq!(
        p.check(&Identity::Anonymous, "x", Action::Access),
        Err(Denial::Unauthenticated)
    );
    assert_eq!(
        p.check(&user("alice"), "x", Action::Access),
        Err(Denial::Forbidden)
    );
}

#[test]
fn first_matching_rule_wins() {
    let p = policy(vec![
        rule("@internal/*", &["$authenticated"], &["release"]),
        rule("**", &["$all"], &["$authenticated"]),
        rule("@internal/*", &["$all"], &["$all"]),
    ]);
    assert_eq!(
        p.check(&Identity::Anonymous, "@internal/a", Action::Access),
        Err(Denial::Unauthenticated)
    );
    assert_eq!(
        p.check(&user("bob"), "@internal/a", Action::Publish),
        Err(Denial::Forbidden)
    );
    assert_eq!(
        p.check(&Identity::Anonymous, "lodash", Action::Access),
        Ok(())
    );
    assert_eq!(p.matching_pattern("@internal/a"), Some("@internal/*"));
    assert_eq!(p.matching_pattern("lodash"), Some("**"));
}

#[test]
fn no_match_defaults() {
    let p = policy(vec![rule("private-*", &[], &[])]);
    assert_eq!(
        p.check(&Identity::Anonymous, "left-pad", Action::Access),
        Ok(())
    );
    assert_eq!(
        p.check(&Identity::Anonymous, "left-pad", Action::Publish),
        Err(Denial::Unauthenticated)
    );
    assert_eq!(
        p.check(&Identity::Anonymous, "left-pad", Action::Unpublish),
        Err(Denial::Unauthenticated)
    );
    assert_eq!(p.check(&user("u"), "left-pad", Action::Publish), Ok(()));
    assert_eq!(p.check(&user("u"), "left-pad", Action::Unpublish), Ok(()));
    assert!(p.proxies("left-pad").is_empty());
    assert_eq!(p.matching_pattern("left-pad"), None);

    let empty = Policy::compile(PolicyInput::default()).expect("empty policy");
    assert!(empty.admits_anonymous("@a/b", Action::Access));
    assert!(!empty.admits_anonymous("@a/b", Action::Publish));
}

#[test]
fn unpublish_falls_back_to_publish() {
    let mut explicit = rule("explicit", &["$all"], &["dave"]);
    explicit.unpublish = Some(list(&["carol"]));
    let p = policy(vec![rule("fallback", &["$all"], &["dave"]), explicit]);
    assert_eq!(
        p.check(&user("dave"), "fallback", Action::Unpublish),
        Ok(())
    );
    assert_eq!(
        p.check(&user("carol"), "fallback", Action::Unpublish),
        Err(Denial::Forbidden)
    );
    assert_eq!(
        p.check(&user("carol"), "explicit", Action::Unpublish),
        Ok(())
    );
    assert_eq!(
        p.check(&user("dave"), "explicit", Action::Unpublish),
        Err(Denial::Forbidden)
    );
}

#[test]
fn scoped_globs() {
    let p = policy(vec![
        rule("@private/*", &["$authenticated"], &[]),
        rule("@*/*", &["dave"], &[]),
        rule("private-*", &["carol"], &[]),
        rule("**", &["$all"], &[]),
    ]);
    // `@private/*` matches only that scope, one segment deep.
    assert_eq!(p.matching_pattern("@private/x"), Some("@private/*"));
    assert_eq!(p.matching_pattern("@private/x/y"), Some("**"));
    assert_eq!(p.matching_pattern("@other/x"), Some("@*/*"));
    // `*` does not cross `/`.
    assert_eq!(p.matching_pattern("private-x"), Some("private-*"));
    assert_eq!(p.matching_pattern("@s/private-x"), Some("@*/*"));
    assert_eq!(p.matching_pattern("private-a/b"), Some("**"));
    // `**` alone matches scoped and unscoped names.
    let catch_all = policy(vec![rule("**", &["dave"], &[])]);
    for name in ["a", "@a/b", "@pnpm.e2e/needs-auth", "a.b-c_d"] {
        assert_eq!(catch_all.matching_pattern(name), Some("**"), "{name}");
    }
    assert!(!p.admits_anonymous("@private/x", Action::Access));
    assert!(p.admits_anonymous("lodash", Action::Access));
}

#[test]
fn proxies_follow_first_match() {
    let mut scoped = rule("@corp/*", &["$all"], &[]);
    scoped.proxy = list(&["corp", "public"]);
    let mut all = rule("**", &["$all"], &[]);
    all.proxy = list(&["public"]);
    let p = policy(vec![scoped, all]);
    assert_eq!(p.proxies("@corp/x"), ["corp", "public"]);
    assert_eq!(p.proxies("x"), ["public"]);
}

#[test]
fn bad_glob_names_the_pattern() {
    for bad in ["@scope/[abc", ""] {
        let err = Policy::compile(PolicyInput {
            packages: vec![rule("ok-*", &[], &[]), rule(bad, &[], &[])],
            ..PolicyInput::default()
        })
        .expect_err("invalid glob must fail");
        match &err {
            AuthError::InvalidPattern { pattern, .. } => assert_eq!(pattern, bad),
            other => panic!("unexpected error {other:?}"),
        }
        assert!(err.to_string().contains(bad));
    }
}

#[test]
fn uplink_gate() {
    let p = policy(vec![]);
    assert_eq!(
        p.check_uplink(&user("alice"), "unknown"),
        Err(UplinkDenial::NotExposed)
    );
    assert_eq!(
        p.check_uplink(&user("alice"), "mirror"),
        Err(UplinkDenial::NotExposed)
    );
    assert_eq!(p.check_uplink(&user("alice"), "corp"), Ok(()));
    assert_eq!(
        p.check_uplink(&user("carol"), "corp"),
        Err(UplinkDenial::Forbidden)
    );
    assert_eq!(
        p.check_uplink(&Identity::Anonymous, "corp"),
        Err(UplinkDenial::Unauthenticated)
    );
    assert_eq!(p.check_uplink(&Identity::Anonymous, "open"), Ok(()));
    assert_eq!(
        p.check_uplink(&Identity::Anonymous, "members"),
        Err(UplinkDenial::Unauthenticated)
    );
    assert_eq!(p.check_uplink(&user("x"), "members"), Ok(()));
    assert_eq!(
        p.check_uplink(&user("alice"), "nobody"),
        Err(UplinkDenial::Forbidden)
    );
    assert!(p.uplink_has_access("corp"));
    assert!(p.uplink_has_access("nobody"));
    assert!(!p.uplink_has_access("mirror"));
    assert!(!p.uplink_has_access("unknown"));
}

#[test]
fn identity_accessor() {
    assert_eq!(user("a").user(), Some("a"));
    assert_eq!(Identity::Anonymous.user(), None);
}

#[test]
fn group_names_shadow_user_names_on_uplinks_too() {
    let p = Policy::compile(PolicyInput {
        groups: vec![("team".into(), vec!["alice".into()])],
        uplink_access: vec![("corp".into(), Some(vec!["team".into()]))],
        ..Default::default()
    })
    .expect("compile");
    assert_eq!(p.check_uplink(&user("alice"), "corp"), Ok(()));
    assert_eq!(
        p.check_uplink(&user("team"), "corp"),
        Err(UplinkDenial::Forbidden)
    );
}

#[test]
fn reserved_names() {
    let p = Policy::compile(PolicyInput {
        groups: vec![("team".into(), vec!["alice".into()])],
        ..Default::default()
    })
    .expect("compile");
    for name in [
        "team",
        "$all",
        "@all",
        "all",
        "$authenticated",
        "@authenticated",
        "authenticated",
        "$anonymous",
        "@anonymous",
        "anonymous",
        "$anything",
    ] {
        assert!(p.reserves_name(name), "{name}");
    }
    for name in ["alice", "teams", "allison"] {
        assert!(!p.reserves_name(name), "{name}");
    }
}
