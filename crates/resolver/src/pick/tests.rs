use super::*;
use serde_json::json;

fn pack() -> Value {
    json!({
        "name": "@s/pack",
        "dist-tags": {"latest": "3.0.0-rc.0", "next": "2.0.0"},
        "versions": {"1.0.0": {}, "1.5.0": {}, "2.0.0": {}, "3.0.0-rc.0": {}},
        "time": {"1.0.0": "2020-01-01T00:00:00.000Z", "1.5.0": "2026-03-19T00:00:00.000Z",
                 "2.0.0": "2020-01-01T00:00:00Z", "3.0.0-rc.0": "2020-01-01T00:00:00.000Z"}
    })
}

fn no_age() -> PickPolicy {
    PickPolicy {
        min_age_ms: None,
        now_ms: 0,
        age_exempt: globset::GlobSet::empty(),
    }
}

#[test]
fn picks_highest_non_prerelease_for_star() {
    assert_eq!(
        pick_version(
            &pack(),
            &candidate_versions(&pack(), &no_age()),
            "*",
            &[],
            &no_age()
        )
        .as_deref(),
        Some("2.0.0")
    );
    assert_eq!(
        pick_version(
            &pack(),
            &candidate_versions(&pack(), &no_age()),
            "^3.0.0-rc.0",
            &[],
            &no_age()
        )
        .as_deref(),
        Some("3.0.0-rc.0")
    );
    assert_eq!(
        pick_version(
            &pack(),
            &candidate_versions(&pack(), &no_age()),
            "1.0.0 - 1.9.x",
            &[],
            &no_age()
        )
        .as_deref(),
        Some("1.5.0")
    );
    assert_eq!(
        pick_version(
            &pack(),
            &candidate_versions(&pack(), &no_age()),
            "next",
            &[],
            &no_age()
        )
        .as_deref(),
        Some("2.0.0")
    );
    assert_eq!(
        pick_version(
            &pack(),
            &candidate_versions(&pack(), &no_age()),
            "^9",
            &[],
            &no_age()
        ),
        None
    );
}

#[test]
fn preferred_versions_win_over_highest() {
    let pref = vec!["1.0.0".to_string()];
    assert_eq!(
        pick_version(
            &pack(),
            &candidate_versions(&pack(), &no_age()),
            "^1.0.0",
            &pref,
            &no_age()
        )
        .as_deref(),
        Some("1.0.0")
    );
}

#[test]
fn minimum_release_age_skips_young_versions() {
    let now = parse_time_ms("2026-03-19T12:00:00.000Z").unwrap();
    let policy = PickPolicy {
        min_age_ms: Some(1440 * 60_000),
        now_ms: now,
        age_exempt: globset::GlobSet::empty(),
    };
    assert_eq!(
        pick_version(
            &pack(),
            &candidate_versions(&pack(), &policy),
            "^1.0.0",
            &[],
            &policy
        )
        .as_deref(),
        Some("1.0.0")
    );
    // An excluded name is exempt from the age rule (`*` spans the scope).
    for pattern in ["@s/pack", "@*"] {
        let exempt = PickPolicy {
            age_exempt: exemptions(&[pattern.to_string()]),
            ..policy
        };
        assert_ne!(
            pick_version(
                &pack(),
                &candidate_versions(&pack(), &exempt),
                "^1.0.0",
                &[],
                &exempt
            )
            .as_deref(),
            Some("1.0.0"),
            "{pattern}"
        );
    }
    assert!(exemptions(&["@corp/*".into()]).is_match("@corp/x"));
    assert!(!exemptions(&["a".into()]).is_match("ab"));
}

#[test]
fn parses_specs_and_times() {
    assert_eq!(
        parse_spec("x", "npm:@a/b@^1"),
        Some(Wanted::Registry {
            name: "@a/b".into(),
            spec: "^1".into()
        })
    );
    assert_eq!(
        parse_spec("x", "npm:@a/b"),
        Some(Wanted::Registry {
            name: "@a/b".into(),
            spec: "latest".into()
        })
    );
    assert_eq!(parse_spec("x", "workspace:*"), Some(Wanted::Workspace));
    assert_eq!(
        parse_spec("x", "link:../a"),
        Some(Wanted::Link("../a".into()))
    );
    assert_eq!(parse_spec("x", "github:a/b"), None);
    assert_eq!(parse_time_ms("1970-01-02T00:00:00Z"), Some(86_400_000));
    assert_eq!(parse_time_ms("bad"), None);
}

#[test]
fn missing_peer_reuses_graph_versions_before_the_registry() {
    let p = pack();
    let all = candidate_versions(&p, &no_age());
    let caret = [Range::parse("^1.0.0").unwrap()];
    // Nothing of the name in the graph: highest registry match of the range.
    assert_eq!(
        pick_missing_peer(&p, &all, &caret, None, &[]).as_deref(),
        Some("1.5.0")
    );
    // A non-exact range takes the highest graph version even outside the range.
    let graph = ["1.0.0".to_string(), "2.0.0".to_string()];
    assert_eq!(
        pick_missing_peer(&p, &all, &caret, None, &graph).as_deref(),
        Some("2.0.0")
    );
    // An exact range only reuses that very version, else asks the registry.
    let exact = Version::parse("1.5.0").unwrap();
    let eq = [Range::parse("1.5.0").unwrap()];
    assert_eq!(
        pick_missing_peer(&p, &all, &eq, Some(&exact), &graph).as_deref(),
        Some("1.5.0")
    );
    let one = Version::parse("1.0.0").unwrap();
    let eq1 = [Range::parse("1.0.0").unwrap()];
    assert_eq!(
        pick_missing_peer(&p, &all, &eq1, Some(&one), &graph).as_deref(),
        Some("1.0.0")
    );
}
