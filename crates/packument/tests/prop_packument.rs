//! Property tests for the packument parsers an outsider controls: request
//! paths (`parse_registry_path`, `validate_name`), upstream packument bodies
//! (`parse` and the transformations run on them) and the tarball file-name
//! helpers. Each property asserts no panic, the invariant the module claims,
//! and output bounded by the input.

use proptest::prelude::*;
use serde_json::{json, Value};

use pnpr_packument::{
    abbreviate, default_file_name, find_by_file, merge, parse, parse_registry_path,
    rewrite_tarballs, tarball_file_name, validate_name, RegistryTarget,
};

fn config() -> ProptestConfig {
    ProptestConfig::with_cases(256)
}

/// Characters that matter to path parsing, plus percent escapes of them.
fn path_like() -> impl Strategy<Value = String> {
    let atom = prop_oneof![
        Just("/".to_owned()),
        Just("@".to_owned()),
        Just("~".to_owned()),
        Just("-".to_owned()),
        Just(".".to_owned()),
        Just("..".to_owned()),
        Just("%2f".to_owned()),
        Just("%2F".to_owned()),
        Just("%2e".to_owned()),
        Just("%00".to_owned()),
        Just("%0a".to_owned()),
        Just("%5c".to_owned()),
        Just("%ff".to_owned()),
        Just("%".to_owned()),
        Just(".tgz".to_owned()),
        "[a-z0-9_]{1,8}",
        any::<char>().prop_map(String::from),
    ];
    prop::collection::vec(atom, 0..24).prop_map(|v| v.concat())
}

/// Arbitrary JSON, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("versions".to_owned()),
                    Just("dist".to_owned()),
                    Just("tarball".to_owned()),
                    Just("name".to_owned()),
                    Just("dist-tags".to_owned()),
                    Just("time".to_owned()),
                    Just("scripts".to_owned()),
                    Just("install".to_owned()),
                    Just("modified".to_owned()),
                    "[a-z0-9.]{0,6}",
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A packument-shaped document with arbitrary parts.
fn packument_like() -> impl Strategy<Value = Value> {
    (
        prop::option::of(".{0,20}"),
        prop::collection::btree_map(
            ".{0,10}",
            (
                prop::option::of(".{0,20}"),
                prop::option::of(path_like()),
                json_value(),
            ),
            0..5,
        ),
        json_value(),
    )
        .prop_map(|(name, versions, extra)| {
            let versions: serde_json::Map<String, Value> = versions
                .into_iter()
                .map(|(ver, (vname, tarball, scripts))| {
                    let mut v = json!({"scripts": scripts, "dist": {}});
                    if let Some(n) = vname {
                        v["name"] = json!(n);
                    }
                    if let Some(t) = tarball {
                        v["dist"]["tarball"] = json!(t);
                    }
                    (ver, v)
                })
                .collect();
            let mut doc = json!({"versions": versions, "extra": extra, "time": {"modified": "x"}});
            if let Some(n) = name {
                doc["name"] = json!(n);
            }
            doc
        })
}

fn name_ok(name: &str) -> bool {
    let parts: Vec<&str> = name.trim_start_matches('@').split('/').collect();
    name.len() <= 214
        && parts.len() <= 2
        && (parts.len() == 2) == name.starts_with('@')
        && parts.iter().all(|p| {
            !p.is_empty()
                && !p.starts_with('.')
                && !p.starts_with('_')
                && !p.chars().any(|c| c.is_control() || c == '\\' || c == '%')
        })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn validate_name_accepts_only_safe_names(name in prop_oneof![path_like(), ".{0,230}"]) {
        if validate_name(&name).is_ok() {
            prop_assert!(name_ok(&name), "{name:?}");
        }
    }

    #[test]
    fn registry_paths_parse_to_safe_parts(raw in path_like()) {
        let Ok(p) = parse_registry_path(&raw) else { return Ok(()) };
        prop_assert!(validate_name(&p.name).is_ok());
        prop_assert!(name_ok(&p.name), "{:?} from {raw:?}", p.name);
        // Decoding never grows a segment.
        prop_assert!(p.name.len() <= raw.len());
        if let Some(u) = &p.uplink {
            prop_assert!(!u.is_empty() && u.len() <= raw.len());
            prop_assert!(!u.contains('/') && !u.chars().any(char::is_control), "{u:?}");
        }
        match &p.target {
            RegistryTarget::Packument => {}
            RegistryTarget::Version(v) => {
                prop_assert!(v.len() <= raw.len());
                prop_assert!(!v.contains('/') && !v.contains('\\'), "{v:?}");
                prop_assert!(!v.chars().any(char::is_control), "{v:?}");
            }
            RegistryTarget::Tarball(f) => {
                prop_assert!(f.ends_with(".tgz") && !f.starts_with('.'), "{f:?}");
                prop_assert!(!f.contains('/') && !f.contains('\\'), "{f:?}");
                prop_assert!(!f.chars().any(char::is_control), "{f:?}");
            }
        }
    }

    #[test]
    fn parse_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        if let Ok(v) = parse(&bytes) {
            prop_assert!(v.is_object());
        }
    }

    #[test]
    fn parse_accepts_objects_only(v in json_value()) {
        let bytes = serde_json::to_vec(&v).expect("serialise");
        prop_assert_eq!(parse(&bytes).is_ok(), v.is_object());
    }

    #[test]
    fn tarball_file_name_is_a_bare_suffix(url in prop_oneof![path_like(), ".{0,40}"]) {
        if let Some(f) = tarball_file_name(&url) {
            prop_assert!(!f.is_empty());
            prop_assert!(!f.contains(['/', '?', '#']), "{f:?}");
            prop_assert!(url.contains(f));
        }
    }

    #[test]
    fn default_file_name_drops_the_scope(
        name in "(@[a-z0-9]{1,6}/)?[a-z0-9.-]{1,10}",
        version in "[0-9a-z.+-]{0,16}",
    ) {
        let f = default_file_name(&name, &version);
        prop_assert!(f.ends_with(".tgz") && !f.contains('/'), "{f:?}");
        prop_assert!(f.len() <= name.len() + version.len() + 5);
    }

    #[test]
    fn transformations_are_total_and_bounded(doc in packument_like(), base in "http://h/[a-z~/]{0,10}") {
        let base = format!("{base}/");
        let in_len = serde_json::to_vec(&doc).expect("ser").len();

        let slim = abbreviate(&doc);
        let slim_len = serde_json::to_vec(&slim).expect("ser").len();
        prop_assert!(slim_len <= 2 * in_len + 64, "{slim_len} > 2 * {in_len}");

        let merged = merge(vec![("a".into(), doc.clone()), ("b".into(), doc.clone())]);
        prop_assert!(merged.is_some());

        let mut rewritten = doc.clone();
        rewrite_tarballs(&mut rewritten, &base);
        if let Some(Value::Object(versions)) = rewritten.get("versions") {
            for v in versions.values() {
                prop_assert!(v.get("_pnprUplink").is_none());
                if let Some(t) = v.get("dist").and_then(|d| d.get("tarball")) {
                    let t = t.as_str().expect("string tarball");
                    prop_assert!(t.starts_with(&base), "{t:?} not under {base:?}");
                }
            }
        }
        if let Some(Value::Object(versions)) = doc.get("versions") {
            for v in versions.values() {
                let url = v.get("dist").and_then(|d| d.get("tarball")).and_then(Value::as_str);
                if let Some(file) = url.and_then(tarball_file_name) {
                    prop_assert!(find_by_file(&doc, file).is_some());
                }
            }
        }
    }
}
