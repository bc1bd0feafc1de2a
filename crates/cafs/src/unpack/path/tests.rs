use super::*;

fn refused(list: &[&str]) {
    for bad in list {
        assert!(
            normalize_entry_path(bad).is_err(),
            "{bad:?} must be refused, got {:?}",
            normalize_entry_path(bad)
        );
    }
}

#[test]
fn trailing_dots_and_spaces_that_windows_reads_as_dot_dot_are_refused() {
    refused(&[
        "package/.. /x",
        "package/..  /x",
        "package/... /x",
        "package/.../x",
        "package/..../x",
        "package/. ./x",
        "package/ /x",
        "package/. /x",
        "package/a/.. \\x",
        "package\\.. \\x",
        "package/x/.. ",
        "package/x/...",
    ]);
}

#[test]
fn names_windows_renames_are_refused() {
    let err = normalize_entry_path("package/package.json.").expect_err("trailing dot");
    assert!(err.contains("strips"), "{err}");
    refused(&[
        "package/package.json ",
        "package/lib./a.js",
        "package/lib /a.js",
        "package/index.js. . ",
    ]);
}

#[test]
fn drive_letters_and_streams_are_refused() {
    refused(&[
        "C:/x",
        "c:x",
        "package/C:/x",
        "package/c:x",
        "package/lib/D:evil.js",
        "package/package.json::$DATA",
        "package/a.js:stream",
    ]);
}

#[test]
fn reserved_device_names_are_refused() {
    refused(&[
        "package/CON",
        "package/con",
        "package/nul.txt",
        "package/lib/aux.js",
        "package/Com1",
        "package/lpt9.d.ts",
        "package/COM¹",
        "package/conin$",
        "package/CONOUT$.x",
        "package/NUL .txt",
        "package/prn/x.js",
    ]);
    // Merely starting with a device name is fine.
    for ok in [
        "package/console.js",
        "package/nullable.js",
        "package/auxiliary/x",
        "package/com10",
        "package/lpt",
        "package/com",
        "package/icon.png",
    ] {
        assert!(normalize_entry_path(ok).is_ok(), "{ok:?} must be accepted");
    }
}

#[test]
fn backslashes_are_separators() {
    assert_eq!(
        normalize_entry_path("package/lib\\a.js").as_deref(),
        Ok("lib/a.js")
    );
    assert_eq!(
        normalize_entry_path("package\\lib\\\\a.js").as_deref(),
        Ok("lib/a.js")
    );
    assert_eq!(
        normalize_entry_path("package/lib\\.\\a.js").as_deref(),
        Ok("lib/a.js")
    );
    refused(&["package/lib\\..\\..\\x"]);
}

#[test]
fn ordinary_names_are_kept() {
    for (raw, want) in [
        ("package/.npmignore", ".npmignore"),
        ("package/..foo", "..foo"),
        ("package/.bin/x", ".bin/x"),
        ("package/a b/c d.js", "a b/c d.js"),
        ("package/a.b.c", "a.b.c"),
        ("package/ leading", " leading"),
        ("package/ünïcode.js", "ünïcode.js"),
        ("package.json", "package.json"),
        // The package folder itself is dropped unread.
        ("pkg. /index.js", "index.js"),
    ] {
        assert_eq!(normalize_entry_path(raw).as_deref(), Ok(want), "{raw:?}");
    }
}

#[test]
fn link_targets_with_windows_dot_dot_escape() {
    assert!(symlink_escapes("tool", ".. /x"));
    assert!(symlink_escapes("a/tool", "../... /x"));
    assert!(symlink_escapes("tool", "..\\x"));
    assert!(!symlink_escapes("a/tool", ".. /x"));
    assert!(hardlink_escapes("package/.. /x"));
    assert!(!symlink_escapes("tool", "..foo"));
}

mod props {
    use super::*;
    use proptest::prelude::*;

    fn path_like() -> impl Strategy<Value = String> {
        let atom = prop_oneof![
            Just("/"),
            Just("\\"),
            Just("."),
            Just(".."),
            Just(" "),
            Just(":"),
            Just("\0"),
            Just("con"),
            Just("COM1"),
            Just("a"),
            Just("x.js"),
        ];
        prop_oneof![
            prop::collection::vec(atom, 0..12).prop_map(|v| v.concat()),
            ".{0,40}",
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn accepted_paths_are_the_same_file_everywhere(raw in path_like()) {
            let Ok(p) = normalize_entry_path(&raw) else { return Ok(()) };
            prop_assert!(p.len() <= raw.len());
            prop_assert!(!p.starts_with('/') && !p.contains(['\\', '\0', ':']), "{p:?}");
            for c in p.split('/').filter(|_| !p.is_empty()) {
                prop_assert!(!c.is_empty() && c != "." && c != "..", "{p:?}");
                prop_assert!(!c.ends_with(['.', ' ']), "{p:?}");
                prop_assert!(check_component(c).is_ok(), "{p:?}");
            }
            // Normalising again under a package folder is a no-op.
            if !p.is_empty() {
                let again = normalize_entry_path(&format!("package/{p}"));
                prop_assert_eq!(again.as_deref(), Ok(p.as_str()));
            }
        }

        #[test]
        fn link_checks_are_total(link in path_like(), target in path_like()) {
            let _ = symlink_escapes(&link, &target);
            let _ = hardlink_escapes(&target);
        }
    }
}
