use super::Secret;

#[test]
fn debug_is_redacted_and_digest_is_sha256() {
    let s = Secret::new("Bearer hunter2".to_owned());
    assert_eq!(format!("{s:?}"), "<redacted>");
    assert_eq!(format!("{:?}", Some(s.clone())), "Some(<redacted>)");
    assert_eq!(s.expose(), "Bearer hunter2");
    // sha256("abc") from FIPS 180-2.
    assert_eq!(
        Secret::new("abc".to_owned()).digest(),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}
