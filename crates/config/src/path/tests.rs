use super::{child, index};

#[test]
fn plain_and_quoted_segments() {
    assert_eq!(child("", "uplinks"), "uplinks");
    assert_eq!(child("uplinks", "corp"), "uplinks.corp");
    assert_eq!(
        child("uplinks.corp.headers", "X-Api_Key"),
        "uplinks.corp.headers.X-Api_Key"
    );
    assert_eq!(child("packages", "@internal/*"), "packages.'@internal/*'");
    assert_eq!(child("packages", "**"), "packages.'**'");
    assert_eq!(child("packages", "it's"), "packages.'it''s'");
    assert_eq!(child("groups", ""), "groups.''");
    assert_eq!(index("routes.public", 2), "routes.public[2]");
}
