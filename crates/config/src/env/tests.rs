use serde_yaml_ng::Value;

use super::{substitute_str, substitute_tree, Env};

fn env(pairs: &[(&str, &str)]) -> Env {
    Env::from_pairs(
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    )
}

#[test]
fn get_and_non_empty() {
    let e = env(&[("A", "1"), ("EMPTY", "")]);
    assert_eq!(e.get("A"), Some("1"));
    assert_eq!(e.get("EMPTY"), Some(""));
    assert_eq!(e.non_empty("EMPTY"), None);
    assert_eq!(e.get("MISSING"), None);
}

#[test]
fn substitutes_set_vars_and_warns_on_unset_without_values() {
    let e = env(&[("HOST", "corp.example"), ("PORT", "8080")]);
    let mut w = Vec::new();
    let out = substitute_str(
        "https://${HOST}:${PORT}/${NOPE}x",
        "uplinks.a.url",
        &e,
        &mut w,
    );
    assert_eq!(out, "https://corp.example:8080/x");
    assert_eq!(w.len(), 1);
    assert!(w[0].contains("${NOPE}"), "{}", w[0]);
    assert!(w[0].starts_with("uplinks.a.url:"), "{}", w[0]);
}

#[test]
fn malformed_references_stay_literal() {
    let e = env(&[("A", "1")]);
    let mut w = Vec::new();
    assert_eq!(substitute_str("${", "k", &e, &mut w), "${");
    assert_eq!(substitute_str("a${b c}${A}", "k", &e, &mut w), "a${b c}1");
    assert_eq!(substitute_str("${1X}", "k", &e, &mut w), "${1X}");
    assert_eq!(substitute_str("$A ${A}", "k", &e, &mut w), "$A 1");
    assert!(w.is_empty());
}

#[test]
fn substituted_value_is_not_rescanned() {
    let e = env(&[("A", "${B}"), ("B", "boom")]);
    let mut w = Vec::new();
    assert_eq!(substitute_str("${A}", "k", &e, &mut w), "${B}");
}

#[test]
fn tree_walk_substitutes_values_not_keys() {
    let e = env(&[("V", "val"), ("K", "key")]);
    let mut v: Value = serde_yaml_ng::from_str("'${K}': ['${V}', {x: '${V}'}]\nn: 3\n").unwrap();
    let mut w = Vec::new();
    substitute_tree(&mut v, "", &e, &mut w);
    let back = serde_yaml_ng::to_string(&v).unwrap();
    assert!(back.contains("${K}"), "{back}");
    assert_eq!(back.matches("val").count(), 2, "{back}");
    assert!(w.is_empty());
}
