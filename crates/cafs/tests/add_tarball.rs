//! Black-box tests of `FileStore::add_tarball` over hand-built tarballs.

mod common;

use std::io::Read;
use std::sync::{Arc, Barrier};

use common::{gzip, sha512_hex, sri, TarBuilder};
use pnpr_cafs::{CafsError, FileStore, Limits, PackageIndex};
use serde_json::json;
use tar::EntryType;

const MANIFEST: &str = r#"{"name":"demo","version":"v1.2.3","description":"x","bin":{"demo":"bin/cli.js"},"dependencies":{"a":"^1"}}"#;

fn store() -> (tempfile::TempDir, FileStore) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = FileStore::open(&dir.path().join("v1")).expect("open store");
    (dir, store)
}

fn add(store: &FileStore, tgz: &[u8]) -> Result<Arc<PackageIndex>, CafsError> {
    store.add_tarball(&sri(tgz), tgz, &Limits::default())
}

fn temp_dir_is_empty(store: &FileStore) -> bool {
    std::fs::read_dir(store.root().join("tmp"))
        .expect("tmp dir")
        .next()
        .is_none()
}

fn demo_tgz() -> Vec<u8> {
    TarBuilder::new()
        .dir("package/")
        .file("package/package.json", 0o644, MANIFEST.as_bytes())
        .file("package/index.js", 0o644, b"module.exports = 1\n")
        .file("package/bin/cli.js", 0o755, b"#!/usr/bin/env node\n")
        .file("package/lib/empty.txt", 0o644, b"")
        .tgz()
}

#[test]
fn unpacks_a_normal_package() {
    let (_dir, store) = store();
    let tgz = demo_tgz();
    let integrity = sri(&tgz);
    let index = add(&store, &tgz).expect("add");

    let expected: [(&str, &[u8], u32); 4] = [
        ("package.json", MANIFEST.as_bytes(), 420),
        ("index.js", b"module.exports = 1\n", 420),
        ("bin/cli.js", b"#!/usr/bin/env node\n", 493),
        ("lib/empty.txt", b"", 420),
    ];
    assert_eq!(index.files.len(), expected.len());
    for (path, content, mode) in expected {
        let entry = &index.files[path];
        assert_eq!(entry.digest_hex, sha512_hex(content), "{path}");
        assert_eq!(entry.mode, mode, "{path}");
        assert_eq!(entry.size, content.len() as u64, "{path}");
        let read = store.read_packaged(&integrity, &entry.digest_hex);
        assert_eq!(read.expect("read"), content, "{path}");
    }
    // One member holds the package; no raw copy of any file is kept.
    let key = store.member_key(&integrity, &index).expect("key");
    assert!(store.has_member(&key));
    assert_eq!(count_files(store.root()), 1);
    assert!(!store.root().join("files").exists());
    assert!(index.files["bin/cli.js"].is_executable());
    assert_eq!(
        index.manifest,
        serde_json::from_str::<serde_json::Value>(MANIFEST).expect("json")
    );
    assert!(!index.requires_build);
    // pnpm's subset: cleaned version first, then its fields in its order.
    let bundled = index.index_manifest().expect("bundled manifest");
    assert_eq!(
        serde_json::to_string(&bundled).expect("json"),
        r#"{"version":"1.2.3","bin":{"demo":"bin/cli.js"},"dependencies":{"a":"^1"},"name":"demo"}"#
    );
    assert!(index.checked_at_ms > 1.0e12);
    assert_eq!(index.totals(), (4, (MANIFEST.len() + 19 + 20) as u64));

    assert!(store.has_index(&integrity));
    assert_eq!(store.index_count().expect("count"), 1);
    assert!(temp_dir_is_empty(&store));

    // The row survives a reopen (no cache) with identical content.
    let root = store.root().to_path_buf();
    drop(store);
    let reopened = FileStore::open_with_cache(&root, 0).expect("reopen");
    let again = reopened.index(&integrity).expect("index").expect("row");
    assert_eq!(*again, *index);
}

#[test]
fn a_package_without_its_member_reads_as_absent_and_is_unpacked_again() {
    let (_dir, store) = store();
    let tgz = demo_tgz();
    let integrity = sri(&tgz);
    let index = add(&store, &tgz).expect("add");
    let digest = index.files["index.js"].digest_hex.clone();
    for bad in ["", "zz", &digest.to_uppercase(), &digest[..127]] {
        assert!(matches!(
            store.read_packaged(&integrity, bad),
            Err(CafsError::InvalidDigest(_))
        ));
    }
    assert!(matches!(
        store.read_packaged(&integrity, &sha512_hex(b"not in the package")),
        Err(CafsError::MissingFile { .. })
    ));
    // The member is gone (evicted, or never made by an older version):
    // the row alone does not count, and a re-add makes the member again
    // from the tarball instead of returning the row.
    let key = store.member_key(&integrity, &index).expect("key");
    let members = store.root().join("frames").join("members");
    std::fs::remove_file(members.join(&key[..2]).join(&key[2..])).expect("unlink");
    assert!(!store.has_index(&integrity));
    assert!(store.index(&integrity).expect("row").is_some());
    assert!(store.read_packaged(&integrity, &digest).is_err());
    let again = add(&store, &tgz).expect("re-add");
    assert_eq!(again.files, index.files);
    assert!(store.has_index(&integrity));
    assert_eq!(
        store.read_packaged(&integrity, &digest).expect("read"),
        b"module.exports = 1\n"
    );
}

#[test]
fn strips_a_first_folder_not_named_package() {
    let (_dir, store) = store();
    let tgz = TarBuilder::new()
        .file(
            "node-v1/package.json",
            0o644,
            br#"{"name":"n","version":"1.0.0"}"#,
        )
        .file("node-v1/lib/a.js", 0o644, b"a")
        .file("./node-v1/odd.js", 0o644, b"odd")
        .tgz();
    let index = add(&store, &tgz).expect("add");
    let paths: Vec<&str> = index.files.keys().map(String::as_str).collect();
    // `./node-v1/odd.js` strips `.` like pnpm, leaving the folder name.
    assert_eq!(paths, ["lib/a.js", "node-v1/odd.js", "package.json"]);
    assert_eq!(index.manifest["name"], "n");
}

#[test]
fn any_execute_bit_makes_a_file_executable() {
    let (_dir, store) = store();
    let tgz = TarBuilder::new()
        .file("package/package.json", 0o644, b"{}")
        .file("package/owner", 0o700, b"1")
        .file("package/group", 0o650, b"2")
        .file("package/other", 0o601, b"3")
        .file("package/plain", 0o640, b"4")
        .file("package/setuid", 0o4644, b"5")
        .tgz();
    let index = add(&store, &tgz).expect("add");
    let modes: Vec<(&str, u32)> = index
        .files
        .iter()
        .map(|(p, f)| (p.as_str(), f.mode))
        .collect();
    assert_eq!(
        modes,
        [
            ("group", 493),
            ("other", 493),
            ("owner", 493),
            ("package.json", 420),
            ("plain", 420),
            ("setuid", 420)
        ]
    );
}

#[test]
fn later_duplicates_win() {
    let (_dir, store) = store();
    let tgz = TarBuilder::new()
        .file("package/package.json", 0o644, br#"{"name":"first"}"#)
        .file("package/a.js", 0o644, b"first")
        .file("package/a.js", 0o755, b"second!")
        .file("package/package.json", 0o644, br#"{"name":"second"}"#)
        .tgz();
    let index = add(&store, &tgz).expect("add");
    assert_eq!(index.files.len(), 2);
    let a = &index.files["a.js"];
    assert_eq!(
        (a.digest_hex.as_str(), a.mode, a.size),
        (sha512_hex(b"second!").as_str(), 493, 7)
    );
    assert_eq!(index.manifest["name"], "second");
}

#[test]
fn links_inside_the_package_are_ignored() {
    let (_dir, store) = store();
    let tgz = TarBuilder::new()
        .file("package/package.json", 0o644, b"{}")
        .file("package/lib/a.js", 0o644, b"a")
        .symlink("package/bin/a", "../lib/a.js")
        .hardlink("package/b.js", "package/lib/a.js")
        .tgz();
    let index = add(&store, &tgz).expect("add");
    let paths: Vec<&str> = index.files.keys().map(String::as_str).collect();
    assert_eq!(paths, ["lib/a.js", "package.json"]);
}

#[test]
fn missing_package_json_gets_pnpm_placeholder() {
    let (_dir, store) = store();
    let tgz = TarBuilder::new().file("package/a.js", 0o644, b"a").tgz();
    let index = add(&store, &tgz).expect("add");
    let placeholder: &[u8] = br#"{"_pnpmPlaceholder":"This file was generated by pnpm. The original package did not contain a package.json."}"#;
    let entry = &index.files["package.json"];
    assert_eq!(entry.digest_hex, sha512_hex(placeholder));
    assert_eq!((entry.mode, entry.size), (420, placeholder.len() as u64));
    assert_eq!(
        store
            .read_packaged(&sri(&tgz), &entry.digest_hex)
            .expect("read"),
        placeholder
    );
    assert_eq!(index.manifest, json!({}));
    assert_eq!(index.index_manifest(), None);
}

#[test]
fn requires_build_like_pnpm() {
    let (_dir, store) = store();
    let cases: [(&[u8], &str, bool); 5] = [
        (br#"{"scripts":{"install":"node x"}}"#, "a.js", true),
        (br#"{"scripts":{"postinstall":""}}"#, "a.js", false),
        (br#"{"scripts":{"test":"x"}}"#, "binding.gyp", true),
        (b"{}", ".hooks/pre", true),
        (b"{}", "src/binding.gyp", false),
    ];
    for (manifest, extra, want) in cases {
        let tgz = TarBuilder::new()
            .file("package/package.json", 0o644, manifest)
            .file(&format!("package/{extra}"), 0o644, b"x")
            .tgz();
        let index = add(&store, &tgz).expect("add");
        assert_eq!(
            index.requires_build,
            want,
            "{extra} with {:?}",
            String::from_utf8_lossy(manifest)
        );
    }
}

/// Adds `tgz` expecting failure, and checks nothing was indexed.
fn refused(tgz: &[u8], limits: &Limits) -> CafsError {
    let (_dir, store) = store();
    let integrity = sri(tgz);
    let err = store
        .add_tarball(&integrity, tgz, limits)
        .expect_err("must be refused");
    assert!(!store.has_index(&integrity), "{err}");
    assert_eq!(store.index_count().expect("count"), 0);
    assert!(temp_dir_is_empty(&store), "temp files left after: {err}");
    err
}

#[test]
fn refuses_absolute_paths() {
    let tgz = TarBuilder::new()
        .file("package/package.json", 0o644, b"{}")
        .file("/etc/evil", 0o644, b"x")
        .tgz();
    let err = refused(&tgz, &Limits::default());
    assert!(
        matches!(
            err,
            CafsError::UnsafePath {
                reason: "absolute path",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("/etc/evil"), "{err}");
}

#[test]
fn refuses_dot_dot() {
    let tgz = TarBuilder::new()
        .file("package/package.json", 0o644, b"{}")
        .file("package/../../evil", 0o644, b"x")
        .tgz();
    let err = refused(&tgz, &Limits::default());
    assert!(matches!(err, CafsError::UnsafePath { .. }), "{err}");
    assert!(err.to_string().contains("package/../../evil"), "{err}");
}

#[test]
fn refuses_names_windows_reads_differently() {
    for name in [
        "package/.. /evil",
        "package/a/... /evil",
        "package/. ./evil",
        "package/package.json.",
        "package/index.js ",
        "package/C:evil",
        "package/package.json::$DATA",
        "package/lib/NUL",
        "package/con.js",
        "package/COM1.txt",
    ] {
        let tgz = TarBuilder::new()
            .file("package/package.json", 0o644, b"{}")
            .file(name, 0o644, b"x")
            .tgz();
        let err = refused(&tgz, &Limits::default());
        assert!(
            matches!(err, CafsError::UnsafePath { .. }),
            "{name:?}: {err}"
        );
    }
}

#[test]
fn backslashes_are_stored_as_separators() {
    let (_dir, store) = store();
    let tgz = TarBuilder::new()
        .file("package/package.json", 0o644, b"{}")
        .file("package\\lib\\a.js", 0o644, b"a")
        .tgz();
    let index = add(&store, &tgz).expect("added");
    let names: Vec<&str> = index.files.keys().map(String::as_str).collect();
    assert_eq!(names, ["lib/a.js", "package.json"]);
}

#[test]
fn refuses_nul_in_a_pax_path() {
    let tgz = TarBuilder::new()
        .file("package/package.json", 0o644, b"{}")
        .pax_file(b"package/a\0b.js", b"x")
        .tgz();
    let err = refused(&tgz, &Limits::default());
    assert!(
        matches!(
            err,
            CafsError::UnsafePath {
                reason: "path contains NUL",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn long_pax_paths_are_accepted() {
    let (_dir, store) = store();
    let long = format!("package/{}/file.js", "d".repeat(150));
    let tgz = TarBuilder::new()
        .file("package/package.json", 0o644, b"{}")
        .pax_file(long.as_bytes(), b"deep")
        .tgz();
    let index = add(&store, &tgz).expect("add");
    assert_eq!(index.files[&long["package/".len()..]].size, 4);
}

#[test]
fn refuses_escaping_symlinks() {
    for target in ["../../etc/passwd", "/etc/passwd"] {
        let tgz = TarBuilder::new()
            .file("package/package.json", 0o644, b"{}")
            .symlink("package/lib/link", target)
            .tgz();
        let err = refused(&tgz, &Limits::default());
        assert!(matches!(err, CafsError::LinkEscapes { .. }), "{err}");
        assert!(err.to_string().contains("package/lib/link"), "{err}");
    }
}

#[test]
fn refuses_escaping_hardlinks() {
    let tgz = TarBuilder::new()
        .file("package/package.json", 0o644, b"{}")
        .hardlink("package/link", "package/../../etc/passwd")
        .tgz();
    let err = refused(&tgz, &Limits::default());
    assert!(matches!(err, CafsError::LinkEscapes { .. }), "{err}");
}

#[test]
fn refuses_devices_and_fifos() {
    for kind in [EntryType::Char, EntryType::Block, EntryType::Fifo] {
        let tgz = TarBuilder::new()
            .file("package/package.json", 0o644, b"{}")
            .raw(b"package/dev", kind, 0o644, b"", None)
            .tgz();
        let err = refused(&tgz, &Limits::default());
        assert!(matches!(err, CafsError::UnsupportedEntry { .. }), "{err}");
        assert!(err.to_string().contains("package/dev"), "{err}");
    }
}

#[test]
fn refuses_too_many_entries() {
    let mut builder = TarBuilder::new().file("package/package.json", 0o644, b"{}");
    for i in 0..10 {
        builder = builder.file(&format!("package/f{i}"), 0o644, format!("{i}").as_bytes());
    }
    let limits = Limits {
        max_entries: 5,
        ..Limits::default()
    };
    let err = refused(&builder.tgz(), &limits);
    assert!(
        matches!(err, CafsError::TooManyEntries { limit: 5, .. }),
        "{err}"
    );
}

#[test]
fn refuses_too_many_bytes() {
    let tgz = TarBuilder::new()
        .file("package/package.json", 0o644, b"{}")
        .file("package/a", 0o644, &[b'a'; 600])
        .file("package/b", 0o644, &[b'b'; 600])
        .tgz();
    let limits = Limits {
        max_unpacked_bytes: 1000,
        ..Limits::default()
    };
    let err = refused(&tgz, &limits);
    assert!(
        matches!(err, CafsError::TooLarge { limit: 1000, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("package/b"), "{err}");
}

#[test]
fn refuses_a_bomb_hidden_in_pax_metadata() {
    // No file is large, but the PAX path record the tar reader buffers is.
    let huge_path = format!("package/{}", "p".repeat(2 * 1024 * 1024));
    let tgz = TarBuilder::new()
        .file("package/package.json", 0o644, b"{}")
        .pax_file(huge_path.as_bytes(), b"x")
        .tgz();
    let limits = Limits {
        max_unpacked_bytes: 1000,
        max_entries: 10,
        ..Limits::default()
    };
    let err = refused(&tgz, &limits);
    assert!(
        matches!(err, CafsError::TooLarge { limit: 1000, .. }),
        "{err}"
    );
}

#[test]
fn refuses_one_oversized_file() {
    let tgz = TarBuilder::new()
        .file("package/package.json", 0o644, b"{}")
        .file("package/big", 0o644, &[0u8; 2048])
        .tgz();
    let limits = Limits {
        max_file_bytes: 1024,
        ..Limits::default()
    };
    let err = refused(&tgz, &limits);
    assert!(
        matches!(err, CafsError::FileTooLarge { size: 2048, .. }),
        "{err}"
    );
}

#[test]
fn refuses_an_oversized_root_package_json() {
    let big = format!("{{\"name\":\"x\",\"pad\":\"{}\"}}", " ".repeat(4096));
    let tgz = TarBuilder::new()
        .file("package/package.json", 0o644, big.as_bytes())
        .tgz();
    let limits = Limits {
        max_manifest_bytes: 1024,
        ..Limits::default()
    };
    let err = refused(&tgz, &limits);
    assert!(
        matches!(err, CafsError::ManifestTooLarge { limit: 1024, size } if size == big.len() as u64),
        "{err}"
    );
    // A nested package.json is an ordinary file, not held whole.
    let (_dir, store) = store();
    let tgz = TarBuilder::new()
        .file("package/package.json", 0o644, b"{}")
        .file("package/lib/package.json", 0o644, big.as_bytes())
        .tgz();
    store
        .add_tarball(&sri(&tgz), tgz.as_slice(), &limits)
        .expect("nested manifest is a plain file");
    // The default bound is a few MiB, far below the per-file bound.
    let d = Limits::default();
    assert!(d.max_manifest_bytes <= 8 * 1024 * 1024 && d.max_manifest_bytes >= 1024 * 1024);
}

#[test]
fn refuses_a_zip_bomb() {
    // 32 MiB of zeros gzips to ~32 KiB: a ~1000x expansion.
    let zeros = vec![0u8; 32 * 1024 * 1024];
    let tgz = TarBuilder::new()
        .file("package/package.json", 0o644, b"{}")
        .file("package/bomb", 0o644, &zeros)
        .tgz();
    let err = refused(&tgz, &Limits::default());
    assert!(
        matches!(err, CafsError::RatioExceeded { limit: 200, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("package/bomb"), "{err}");
    // The same bytes are fine when the ratio limit allows them.
    let (_dir, store) = store();
    let lenient = Limits {
        max_ratio: 10_000,
        ..Limits::default()
    };
    let index = store
        .add_tarball(&sri(&tgz), tgz.as_slice(), &lenient)
        .expect("add");
    assert_eq!(index.files["bomb"].size, zeros.len() as u64);
}

#[test]
fn refuses_non_gzip_and_corrupt_gzip() {
    let tar = TarBuilder::new()
        .file("package/package.json", 0o644, b"{}")
        .tar_bytes();
    let err = refused(&tar, &Limits::default());
    assert!(matches!(err, CafsError::NotGzip), "{err}");
    let err = refused(b"", &Limits::default());
    assert!(matches!(err, CafsError::NotGzip), "{err}");

    let tgz = gzip(&tar);
    let truncated = &tgz[..tgz.len() - 12];
    let err = refused(truncated, &Limits::default());
    assert!(matches!(err, CafsError::CorruptTarball { .. }), "{err}");

    let mut flipped = tgz.clone();
    let last = flipped.len() - 5;
    flipped[last] ^= 0xff; // inside the CRC32/ISIZE trailer
    let err = refused(&flipped, &Limits::default());
    assert!(matches!(err, CafsError::CorruptTarball { .. }), "{err}");
}

#[test]
fn refuses_integrity_mismatch_and_bad_integrity() {
    let (_dir, store) = store();
    let tgz = demo_tgz();
    let other = sri(b"something else");
    let err = store
        .add_tarball(&other, tgz.as_slice(), &Limits::default())
        .expect_err("mismatch");
    assert!(matches!(err, CafsError::IntegrityMismatch(_)), "{err}");
    assert!(!store.has_index(&other));
    let err = store
        .add_tarball("not an integrity", tgz.as_slice(), &Limits::default())
        .expect_err("invalid");
    assert!(matches!(err, CafsError::InvalidIntegrity(_)), "{err}");
    assert_eq!(store.index_count().expect("count"), 0);
    // Not a byte of the unverified tarball was kept: no member, no spool.
    let members = store.root().join("frames").join("members");
    assert!(!members.exists() || count_files(store.root()) == 0);
    assert!(temp_dir_is_empty(&store));
}

#[test]
fn refuses_invalid_package_json() {
    let tgz = TarBuilder::new()
        .file("package/package.json", 0o644, b"{\"name\": ")
        .tgz();
    let err = refused(&tgz, &Limits::default());
    assert!(
        err.to_string().contains("package.json is not valid JSON"),
        "{err}"
    );
}

#[test]
fn re_adding_is_idempotent() {
    let (_dir, store) = store();
    let tgz = demo_tgz();
    let integrity = sri(&tgz);
    let first = add(&store, &tgz).expect("first");
    let files_before = count_files(store.root());

    // Indexed already: the reader is not even consulted.
    struct Exploding;
    impl Read for Exploding {
        fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("must not be read"))
        }
    }
    let second = store
        .add_tarball(&integrity, Exploding, &Limits::default())
        .expect("second");
    assert_eq!(*first, *second);

    // A fresh store over the same directory re-reads the row, and unpacking
    // the same files under another integrity rewrites nothing.
    let root = store.root().to_path_buf();
    drop(store);
    let reopened = FileStore::open(&root).expect("reopen");
    let third = add(&reopened, &tgz).expect("third");
    assert_eq!(*first, *third);
    let renamed = TarBuilder::new()
        .file("other/package.json", 0o644, MANIFEST.as_bytes())
        .file("other/index.js", 0o644, b"module.exports = 1\n")
        .file("other/bin/cli.js", 0o755, b"#!/usr/bin/env node\n")
        .file("other/lib/empty.txt", 0o644, b"")
        .tgz();
    let fourth = add(&reopened, &renamed).expect("fourth");
    assert_eq!(fourth.files, first.files);
    assert_eq!(count_files(&root), files_before);
    assert_eq!(reopened.index_count().expect("count"), 2);
}

/// Stored package members.
fn count_files(root: &std::path::Path) -> usize {
    std::fs::read_dir(root.join("frames").join("members"))
        .expect("members dir")
        .map(|d| {
            std::fs::read_dir(d.expect("entry").path())
                .expect("fan-out dir")
                .count()
        })
        .sum()
}

#[test]
fn concurrent_adds_sharing_files_both_succeed() {
    fn package(name: &str, shared: usize) -> Vec<u8> {
        let mut builder = TarBuilder::new().file(
            "package/package.json",
            0o644,
            format!(r#"{{"name":"{name}","version":"1.0.0"}}"#).as_bytes(),
        );
        for i in 0..shared {
            builder = builder.file(
                &format!("package/shared/{i}.js"),
                0o644,
                format!("shared {i}").as_bytes(),
            );
        }
        // One large shared file takes the streaming (temp file) path.
        builder
            .file("package/big.bin", 0o644, &vec![7u8; 3 * 1024 * 1024])
            .tgz()
    }
    let (_dir, store) = store();
    let tarballs = [package("one", 200), package("two", 200)];
    for _round in 0..3 {
        let barrier = Barrier::new(2);
        let results: Vec<_> = std::thread::scope(|scope| {
            let handles: Vec<_> = tarballs
                .iter()
                .map(|tgz| {
                    let (store, barrier) = (&store, &barrier);
                    scope.spawn(move || {
                        barrier.wait();
                        add(store, tgz)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("thread"))
                .collect()
        });
        for result in &results {
            let index = result.as_ref().expect("concurrent add");
            assert_eq!(index.files.len(), 202);
        }
    }
    assert_eq!(store.index_count().expect("count"), 2);
    for tgz in &tarballs {
        let index = store.index(&sri(tgz)).expect("index").expect("row");
        for entry in index.files.values() {
            let bytes = store
                .read_packaged(&sri(tgz), &entry.digest_hex)
                .expect("read");
            assert_eq!(sha512_hex(&bytes), entry.digest_hex);
        }
    }
    // One member per package (their files are not shared on disk).
    assert_eq!(count_files(store.root()), 2);
    assert!(temp_dir_is_empty(&store));
}

#[test]
fn concurrent_adds_of_the_same_tarball_agree() {
    let (_dir, store) = store();
    let tgz = demo_tgz();
    let barrier = Barrier::new(4);
    let results: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let (store, barrier, tgz) = (&store, &barrier, &tgz);
                scope.spawn(move || {
                    barrier.wait();
                    add(store, tgz).expect("add")
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    assert!(results.windows(2).all(|w| w[0].files == w[1].files));
    assert_eq!(store.index_count().expect("count"), 1);
}

#[test]
fn store_is_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<FileStore>();
}
