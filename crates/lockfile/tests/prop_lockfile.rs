//! Property tests for the input lockfile a client sends: arbitrary bytes and
//! lockfile-shaped JSON with hostile strings and wrong types. Parsing must
//! never panic; what parses must re-serialise to something that parses back
//! to the same value, and its size must stay linear in the input.

use proptest::prelude::*;
use serde_json::{json, Map, Value};

use pnpr_lockfile::Lockfile;

fn config() -> ProptestConfig {
    ProptestConfig::with_cases(256)
}

/// Strings an attacker would try: peer suffixes, `@` aliases, URLs, dots,
/// control and non-ASCII characters.
fn hostile_string() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z@/()._0-9^~<>=| -]{0,24}",
        ".{0,16}",
        Just("9.0".to_owned()),
        Just("a@1.0.0(b@2.0.0)(c@3.0.0)".to_owned()),
        Just("@s/n@npm:x@1".to_owned()),
        Just("((((((".to_owned()),
        Just("http://u:p@h/x/-/x-1.tgz".to_owned()),
    ]
}

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        // Exactly representable fractions: serde_json's default float
        // parsing is not bit-exact for long mantissas, which is no concern
        // here and would only make the round-trip property flaky.
        any::<i32>().prop_map(|n| json!(f64::from(n) / 8.0)),
        hostile_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(hostile_string(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Mostly the right type, sometimes anything.
fn or_junk(good: impl Strategy<Value = Value>) -> impl Strategy<Value = Value> {
    prop_oneof![8 => good, 1 => any_json()]
}

fn string_map() -> impl Strategy<Value = Value> {
    prop::collection::btree_map(hostile_string(), hostile_string(), 0..4).prop_map(|m| json!(m))
}

fn importer_deps() -> impl Strategy<Value = Value> {
    let dep = (hostile_string(), hostile_string())
        .prop_map(|(s, v)| json!({"specifier": s, "version": v}));
    prop::collection::btree_map(hostile_string(), or_junk(dep), 0..4)
        .prop_map(|m| Value::Object(m.into_iter().collect()))
}

fn importer() -> impl Strategy<Value = Value> {
    (or_junk(importer_deps()), or_junk(importer_deps()), any_json()).prop_map(|(d, dev, meta)| {
        json!({"dependencies": d, "devDependencies": dev, "dependenciesMeta": meta})
    })
}

fn package() -> impl Strategy<Value = Value> {
    (
        prop::option::of(hostile_string()),
        prop::option::of(hostile_string()),
        or_junk(string_map()),
        or_junk(prop::collection::vec(hostile_string(), 0..3).prop_map(|v| json!(v))),
        or_junk(
            prop::collection::btree_map(hostile_string(), any::<bool>(), 0..3).prop_map(|m| {
                Value::Object(
                    m.into_iter()
                        .map(|(k, o)| (k, json!({"optional": o})))
                        .collect(),
                )
            }),
        ),
    )
        .prop_map(|(integrity, tarball, peers, os, meta)| {
            json!({
                "resolution": {"integrity": integrity, "tarball": tarball},
                "peerDependencies": peers,
                "os": os,
                "peerDependenciesMeta": meta,
            })
        })
}

fn snapshot() -> impl Strategy<Value = Value> {
    (or_junk(string_map()), or_junk(string_map()), any::<bool>()).prop_map(
        |(d, o, opt)| json!({"dependencies": d, "optionalDependencies": o, "optional": opt}),
    )
}

fn lockfile_json() -> impl Strategy<Value = Value> {
    (
        prop_oneof![
            4 => Just(json!("9.0")),
            1 => hostile_string().prop_map(Value::String),
            1 => any_json(),
        ],
        prop::collection::btree_map(hostile_string(), or_junk(importer()), 0..3),
        prop::collection::btree_map(hostile_string(), or_junk(package()), 0..4),
        prop::collection::btree_map(hostile_string(), or_junk(snapshot()), 0..4),
        prop::option::of(any_json()),
    )
        .prop_map(|(version, importers, packages, snapshots, settings)| {
            let mut m = Map::new();
            m.insert("lockfileVersion".into(), version);
            m.insert(
                "importers".into(),
                Value::Object(importers.into_iter().collect()),
            );
            m.insert(
                "packages".into(),
                Value::Object(packages.into_iter().collect()),
            );
            m.insert(
                "snapshots".into(),
                Value::Object(snapshots.into_iter().collect()),
            );
            if let Some(s) = settings {
                m.insert("settings".into(), s);
            }
            Value::Object(m)
        })
}

fn check_parsed(lf: &Lockfile, input_len: usize) -> Result<(), TestCaseError> {
    prop_assert_eq!(lf.lockfile_version.split('.').next(), Some("9"));
    let out = lf.to_json().expect("a parsed lockfile serialises");
    // Defaults for absent fields add a bounded amount per entry.
    prop_assert!(
        out.len() <= 16 * input_len + 64,
        "{} bytes out of {} in",
        out.len(),
        input_len
    );
    let again = Lockfile::from_json(&out).expect("own output parses");
    prop_assert_eq!(&again, lf);
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(lf) = Lockfile::from_json(&bytes) {
            check_parsed(&lf, bytes.len())?;
        }
    }

    #[test]
    fn shaped_json_parses_or_fails_cleanly(v in lockfile_json()) {
        let bytes = serde_json::to_vec(&v).expect("serialise");
        if let Ok(lf) = Lockfile::from_json(&bytes) {
            check_parsed(&lf, bytes.len())?;
        }
        // The server's path: an already parsed JSON value.
        let typed: Result<Lockfile, _> = serde_json::from_value(v);
        if let (Ok(lf), true) = (&typed, typed.as_ref().is_ok_and(|l| l.lockfile_version.starts_with("9."))) {
            check_parsed(lf, bytes.len())?;
        }
    }

    #[test]
    fn deep_nesting_is_refused_without_overflow(depth in 100usize..5000) {
        let meta = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let body = format!(
            r#"{{"lockfileVersion":"9.0","importers":{{".":{{"dependenciesMeta":{meta}}}}}}}"#
        );
        let parsed = Lockfile::from_json(body.as_bytes());
        // serde_json's recursion limit (128 levels, three used by the
        // enclosing objects) refuses the deep ones.
        if depth > 130 {
            prop_assert!(parsed.is_err());
        }
    }
}

/// The shaped generator must mostly produce lockfiles that parse, or the
/// properties above would only ever exercise the error path.
#[test]
fn shaped_generator_reaches_the_success_path() {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = lockfile_json();
    let ok = (0..200)
        .filter(|_| {
            let v = strategy.new_tree(&mut runner).expect("value").current();
            Lockfile::from_json(&serde_json::to_vec(&v).expect("ser")).is_ok()
        })
        .count();
    assert!(ok >= 20, "only {ok} of 200 generated lockfiles parsed");
}
