use super::*;

#[test]
fn hmac_matches_rfc4231_case_1() {
    let key = [0x0bu8; 20];
    assert_eq!(
        hmac_hex(&key, b"Hi There"),
        "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
    );
}

#[test]
fn ids_depend_on_secret_and_credential() {
    let a = alias_id(
        b"0123456789abcdef",
        "corp",
        &credential_digest("Bearer one"),
    );
    let b = alias_id(
        b"0123456789abcdef",
        "corp",
        &credential_digest("Bearer two"),
    );
    let c = alias_id(
        b"fedcba9876543210",
        "corp",
        &credential_digest("Bearer one"),
    );
    assert_eq!(a.len(), 64);
    assert_ne!(a, b);
    assert_ne!(a, c);
    assert!(!a.contains("one"));
}
