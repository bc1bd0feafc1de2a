use super::*;

#[test]
fn strips_any_first_component() {
    assert_eq!(
        normalize_entry_path("package/lib/a.js").as_deref(),
        Ok("lib/a.js")
    );
    assert_eq!(
        normalize_entry_path("node/./lib//a.js").as_deref(),
        Ok("lib/a.js")
    );
    assert_eq!(normalize_entry_path("package/").as_deref(), Ok(""));
    assert_eq!(normalize_entry_path("index.js").as_deref(), Ok("index.js"));
    assert_eq!(normalize_entry_path("package\\a.js").as_deref(), Ok("a.js"));
}

#[test]
fn refuses_unsafe_paths() {
    for bad in [
        "/etc/passwd",
        "\\x",
        "C:/x",
        "package/../x",
        "package/a/../../x",
        "package/a\\..\\x",
        "package/a\0b",
        "package/C:/x",
    ] {
        assert!(
            normalize_entry_path(bad).is_err(),
            "{bad:?} must be refused"
        );
    }
}

#[test]
fn symlink_targets_resolve_from_the_link_directory() {
    assert!(!symlink_escapes("bin/tool", "../lib/tool.js"));
    assert!(!symlink_escapes("a/b/c", "../../x"));
    assert!(symlink_escapes("a/b/c", "../../../x"));
    assert!(symlink_escapes("tool", "../x"));
    assert!(symlink_escapes("tool", "/etc/passwd"));
    assert!(!symlink_escapes("tool", "./x/../y"));
}

#[test]
fn hardlink_targets_are_archive_paths() {
    assert!(!hardlink_escapes("package/lib/a.js"));
    assert!(hardlink_escapes("package/../a.js"));
    assert!(hardlink_escapes("/etc/passwd"));
    assert!(hardlink_escapes("package/a/../../b"));
}
