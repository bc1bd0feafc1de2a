//! Property tests for `parse_request`, the parser of the `/v1/install` body
//! any caller sends: arbitrary bytes and request-shaped JSON with wrong types,
//! hostile dirs and planted secrets. It must never panic, what it returns
//! must satisfy the module's invariants (normalised unique dirs, a registry
//! ending in `/`), its output must be bounded by its input, and no planted
//! secret may reach an error message or `Debug` output.

use proptest::prelude::*;
use serde_json::{json, Map, Value};

use pnpr_protocol::parse_request;

const DEFAULT_REGISTRY: &str = "http://127.0.0.1:4873";
const SECRET: &str = "SEKRIT-7f3a";

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<i32>().prop_map(|n| json!(f64::from(n) / 4.0)),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(".{0,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn or_junk(good: impl Strategy<Value = Value>) -> impl Strategy<Value = Value> {
    prop_oneof![6 => good, 1 => any_json()]
}

fn dir() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just(".".to_owned()),
        Just("./".to_owned()),
        Just("..".to_owned()),
        Just("/abs".to_owned()),
        Just("a\\b".to_owned()),
        Just("a//b".to_owned()),
        Just("a/../b".to_owned()),
        Just("///".to_owned()),
        Just("a\0b".to_owned()),
        "[a-z./]{1,12}",
    ]
}

fn deps() -> impl Strategy<Value = Value> {
    prop::collection::btree_map("[a-z@/]{1,8}", ".{0,8}", 0..4).prop_map(|m| json!(m))
}

fn project() -> impl Strategy<Value = Value> {
    (prop::option::of(dir()), or_junk(deps()), or_junk(deps()))
        .prop_map(|(dir, d, dev)| json!({"dir": dir, "dependencies": d, "devDependencies": dev}))
}

fn string_list() -> impl Strategy<Value = Value> {
    prop::collection::vec(".{0,10}", 0..4).prop_map(|v| json!(v))
}

/// A request body with every field the parser reads, each sometimes junk.
fn request() -> impl Strategy<Value = Value> {
    let flags = prop::collection::vec(or_junk(any::<bool>().prop_map(Value::Bool)), 6);
    let numbers = prop::collection::vec(or_junk(any::<u64>().prop_map(|n| json!(n))), 2);
    let policy = or_junk(prop_oneof![Just(json!("off")), Just(json!("no-downgrade"))]);
    let secrets = prop::collection::btree_map("[a-z:/.]{1,10}", Just(()), 0..3);
    (
        prop::option::of(or_junk(
            prop::collection::vec(project(), 0..4).prop_map(Value::Array),
        )),
        or_junk(deps()),
        prop::option::of(or_junk(".{0,16}".prop_map(Value::String))),
        (flags, numbers, policy),
        (secrets, or_junk(string_list()), any_json()),
    )
        .prop_map(
            |(
                projects,
                top_deps,
                registry,
                (flags, numbers, policy),
                (secrets, list, lockfile),
            )| {
                let mut m = Map::new();
                if let Some(p) = projects {
                    m.insert("projects".into(), p);
                }
                m.insert("dependencies".into(), top_deps);
                if let Some(r) = registry {
                    m.insert("registry".into(), r);
                }
                let flag_keys = [
                    "frozenLockfile",
                    "preferFrozenLockfile",
                    "ignoreManifestCheck",
                    "trustLockfile",
                    "lockfileOnly",
                    "minimumReleaseAgeIgnoreMissingTime",
                ];
                for (k, v) in flag_keys.iter().zip(flags) {
                    m.insert((*k).into(), v);
                }
                for (k, v) in ["minimumReleaseAge", "trustPolicyIgnoreAfter"]
                    .iter()
                    .zip(numbers)
                {
                    m.insert((*k).into(), v);
                }
                m.insert("trustPolicy".into(), policy);
                let auth: Map<String, Value> = secrets
                    .into_keys()
                    .map(|k| (k, json!(format!("Bearer {SECRET}"))))
                    .collect();
                m.insert("authHeaders".into(), Value::Object(auth));
                m.insert("storeIntegrities".into(), list.clone());
                m.insert("minimumReleaseAgeExclude".into(), list);
                m.insert("lockfile".into(), json!({"secret": SECRET, "x": lockfile}));
                m.insert("nodeVersion".into(), json!("22.0.0"));
                Value::Object(m)
            },
        )
}

fn dir_ok(d: &str) -> bool {
    d == "."
        || (!d.starts_with('/')
            && !d.contains(['\\', '\0'])
            && d.split('/').all(|c| !c.is_empty() && c != ".."))
}

fn check(body: &[u8]) -> Result<(), TestCaseError> {
    let req = match parse_request(body, DEFAULT_REGISTRY) {
        Ok(req) => req,
        Err(e) => {
            // Errors never echo request values such as credentials.
            prop_assert!(!e.to_string().contains(SECRET), "{e}");
            return Ok(());
        }
    };
    prop_assert!(!req.projects.is_empty());
    let mut dirs: Vec<&str> = req.projects.iter().map(|p| p.dir.as_str()).collect();
    for d in &dirs {
        prop_assert!(dir_ok(d), "{d:?}");
    }
    dirs.sort_unstable();
    dirs.dedup();
    prop_assert_eq!(dirs.len(), req.projects.len(), "duplicate dirs");
    prop_assert!(req.registry.ends_with('/'));
    let debug = format!("{req:?}");
    prop_assert!(!debug.contains(SECRET), "{debug}");

    // Bounded by the input: every string came out of the body (or is the
    // default registry, or a `"."` dir).
    let strings: usize = req
        .projects
        .iter()
        .map(|p| {
            p.dir.len()
                + [
                    &p.dependencies,
                    &p.dev_dependencies,
                    &p.optional_dependencies,
                ]
                .iter()
                .flat_map(|m| m.iter())
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>()
        })
        .sum::<usize>()
        + req.store_integrities.iter().map(String::len).sum::<usize>()
        + req
            .auth_headers
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>();
    prop_assert!(
        strings <= body.len() + req.projects.len(),
        "{strings} > {}",
        body.len()
    );
    prop_assert!(req.registry.len() <= body.len().max(DEFAULT_REGISTRY.len()) + 1);
    prop_assert!(req.store_integrities.len() <= body.len());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        check(&bytes)?;
    }

    #[test]
    fn shaped_requests_keep_the_invariants(v in request()) {
        check(&serde_json::to_vec(&v).expect("serialise"))?;
    }

    #[test]
    fn deep_nesting_is_refused_without_overflow(depth in 100usize..5000) {
        let body = format!(
            r#"{{"lockfile":{}{}}}"#,
            "[".repeat(depth),
            "]".repeat(depth)
        );
        let parsed = parse_request(body.as_bytes(), DEFAULT_REGISTRY);
        if depth > 130 {
            prop_assert!(parsed.is_err());
        }
    }
}

/// The shaped generator must reach the success path often enough.
#[test]
fn shaped_generator_reaches_the_success_path() {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = request();
    let ok = (0..200)
        .filter(|_| {
            let v = strategy.new_tree(&mut runner).expect("value").current();
            parse_request(&serde_json::to_vec(&v).expect("ser"), DEFAULT_REGISTRY).is_ok()
        })
        .count();
    assert!(ok >= 10, "only {ok} of 200 generated requests parsed");
}
