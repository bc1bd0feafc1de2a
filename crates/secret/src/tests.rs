use super::Secret;

#[test]
fn debug_and_display_are_redacted() {
    let s = Secret::new("npm_abcdef123456".to_owned());
    assert_eq!(format!("{s:?}"), "<redacted>");
    assert_eq!(format!("{s}"), "<redacted>");
    assert_eq!(format!("{:?}", Some(s.clone())), "Some(<redacted>)");
    assert_eq!(s.expose(), "npm_abcdef123456");
}

#[test]
fn equality_compares_values() {
    assert_eq!(Secret::new("a".into()), Secret::new("a".into()));
    assert_ne!(Secret::new("a".into()), Secret::new("b".into()));
}

#[test]
fn digest_is_sha256() {
    // sha256("abc") from FIPS 180-2.
    assert_eq!(
        Secret::new("abc".to_owned()).digest(),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}
