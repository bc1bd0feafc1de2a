//! The §2.8 diff: dedupe, client-held packages, unknown rows, corruption.

use std::collections::HashMap;
use std::sync::Arc;

use super::*;
use crate::index::FileMeta;

struct MapLookup(HashMap<String, Arc<IndexValue>>);

impl IndexLookup for MapLookup {
    fn lookup(&self, integrity: &str) -> Option<Arc<IndexValue>> {
        self.0.get(integrity).cloned()
    }
}

fn digest(c: char) -> String {
    c.to_string().repeat(128)
}

fn value(files: &[(&str, char, u32, u64)]) -> Arc<IndexValue> {
    Arc::new(IndexValue {
        requires_build: Some(false),
        manifest: None,
        algo: "sha512".into(),
        files: files
            .iter()
            .map(|(path, d, mode, size)| {
                (
                    (*path).to_owned(),
                    FileMeta {
                        digest_hex: digest(*d),
                        mode: *mode,
                        size: *size,
                        checked_at: None,
                    },
                )
            })
            .collect(),
    })
}

fn pkg(integrity: &str, id: &str) -> PackageRef {
    PackageRef {
        integrity: integrity.into(),
        pkg_id: id.into(),
    }
}

fn store() -> MapLookup {
    let mut m = HashMap::new();
    // a: shares file "1" with b; b has "1" twice (once executable).
    m.insert(
        "sha512-a".to_owned(),
        value(&[("i.js", '1', 0o644, 10), ("p.json", '2', 0o644, 20)]),
    );
    m.insert(
        "sha512-b".to_owned(),
        value(&[
            ("bin", '1', 0o755, 10),
            ("i.js", '1', 0o644, 10),
            ("x", '3', 0o644, 30),
        ]),
    );
    m.insert(
        "sha512-c".to_owned(),
        value(&[("c.js", '4', 0o644, 40), ("d.js", '3', 0o644, 30)]),
    );
    MapLookup(m)
}

#[test]
fn cold_install_dedupes_by_digest_and_exec() {
    let store = store();
    let pkgs = [pkg("sha512-a", "a@1.0.0"), pkg("sha512-b", "@s/b@2.0.0")];
    let plan = plan(&pkgs, &[], &store).unwrap();
    assert_eq!(
        plan.stats,
        Stats {
            total_packages: 2,
            already_in_store: 0,
            packages_to_fetch: 2,
            files_in_new_packages: 5,
            files_already_in_cafs: 1,
            files_to_download: 4,
            download_bytes: 10 + 20 + 10 + 30,
        }
    );
    let frames: Vec<(u8, bool)> = plan
        .frames
        .iter()
        .map(|f| (f.digest[0], f.executable))
        .collect();
    // b (50 bytes) claims its files before a (30): a's i.js is b's.
    assert_eq!(
        frames,
        vec![(0x11, true), (0x11, false), (0x33, false), (0x22, false)]
    );
    assert_eq!(plan.frames[0].digest_hex, digest('1'));
    assert_eq!(plan.frames[2].size, 30);
    let keys: Vec<&str> = plan.index_entries.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, vec!["sha512-a\ta@1.0.0", "sha512-b\t@s/b@2.0.0"]);
    let b = store.lookup("sha512-b").unwrap();
    assert_eq!(plan.index_entries[1].value, crate::encode_index(&b));
}

#[test]
fn groups_cut_frames_by_package_and_say_which_are_whole() {
    let store = store();
    // Largest first: c (70 bytes) is whole; b loses x (c sent it) and a
    // loses i.js (b sent it).
    let pkgs = [
        pkg("sha512-a", "a@1.0.0"),
        pkg("sha512-b", "b@1.0.0"),
        pkg("sha512-c", "c@1.0.0"),
    ];
    let p = plan(&pkgs, &[], &store).unwrap();
    let groups: Vec<(std::ops::Range<usize>, bool)> = p
        .groups
        .iter()
        .map(|g| (g.frames.clone(), g.complete))
        .collect();
    assert_eq!(groups, vec![(0..2, true), (2..4, false), (4..5, false)]);
    let order: Vec<usize> = p.groups.iter().map(|g| g.package).collect();
    assert_eq!(order, vec![2, 1, 0]);
    // The header keeps resolution order whatever the frames' order.
    let keys: Vec<&str> = p.index_entries.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        keys,
        vec![
            "sha512-a\ta@1.0.0",
            "sha512-b\tb@1.0.0",
            "sha512-c\tc@1.0.0"
        ]
    );
    // Alone, b and c are whole (b's second "1" differs by the exec bit).
    let b = plan(&[pkg("sha512-b", "b@1.0.0")], &[], &store).unwrap();
    assert_eq!(b.groups.len(), 1);
    assert!(b.groups[0].complete && b.groups[0].frames == (0..3));
    // A package's own duplicate does not make it partial.
    let mut m = HashMap::new();
    m.insert(
        "sha512-d".to_owned(),
        value(&[("a", '5', 0o644, 1), ("b", '5', 0o644, 1)]),
    );
    let d = plan(&[pkg("sha512-d", "d@1.0.0")], &[], &MapLookup(m)).unwrap();
    assert_eq!(d.frames.len(), 1);
    assert!(d.groups[0].complete);
    // The member key names exactly the frames, in order.
    assert_eq!(member_key(&b.frames), member_key(&b.frames.clone()));
    assert_ne!(member_key(&p.frames[0..2]), member_key(&p.frames[0..1]));
    let mut swapped = p.frames[0..2].to_vec();
    swapped.swap(0, 1);
    assert_ne!(member_key(&p.frames[0..2]), member_key(&swapped));
    // Packages the client has contribute no group.
    let warm = plan(&pkgs, &["sha512-a".to_owned()], &store).unwrap();
    assert!(warm
        .groups
        .iter()
        .all(|g| g.frames.start < warm.frames.len()));
    assert_eq!(warm.groups.len(), 2);
}

#[test]
fn client_store_and_unknown_integrities() {
    let store = store();
    let pkgs = [
        pkg("sha512-a", "a@1.0.0"),
        pkg("sha512-missing", "m@1.0.0"),
        pkg("sha512-c", "c@1.0.0"),
    ];
    // The client has b (never requested) and a; "sha512-zzz" is unknown to the server.
    let client = [
        "sha512-b".to_owned(),
        "sha512-a".to_owned(),
        "sha512-zzz".to_owned(),
    ];
    let plan = plan(&pkgs, &client, &store).unwrap();
    assert_eq!(
        plan.stats,
        Stats {
            total_packages: 3,
            already_in_store: 1,
            packages_to_fetch: 1,
            files_in_new_packages: 2,
            files_already_in_cafs: 1, // d.js = digest 3, known from b
            files_to_download: 1,
            download_bytes: 40,
        }
    );
    assert_eq!(plan.frames.len(), 1);
    assert_eq!(plan.frames[0].digest_hex, digest('4'));
    assert_eq!(plan.index_entries.len(), 1);
    assert_eq!(plan.index_entries[0].key, "sha512-c\tc@1.0.0");
}

#[test]
fn warm_install_sends_nothing() {
    let store = store();
    let pkgs = [pkg("sha512-a", "a@1.0.0"), pkg("sha512-b", "b@1.0.0")];
    let client = ["sha512-a".to_owned(), "sha512-b".to_owned()];
    let plan = plan(&pkgs, &client, &store).unwrap();
    assert_eq!(plan.stats.total_packages, 2);
    assert_eq!(plan.stats.already_in_store, 2);
    assert_eq!(plan.stats.packages_to_fetch, 0);
    assert!(plan.frames.is_empty() && plan.index_entries.is_empty());
}

#[test]
fn corrupt_digests_and_huge_files_fail() {
    let mut m = HashMap::new();
    let mut bad = (*value(&[("x", '1', 0o644, 1)])).clone();
    bad.files[0].1.digest_hex = "A".repeat(128);
    m.insert("sha512-upper".to_owned(), Arc::new(bad.clone()));
    bad.files[0].1.digest_hex = "ab".into();
    m.insert("sha512-short".to_owned(), Arc::new(bad.clone()));
    bad.files[0].1.digest_hex = "0".repeat(128);
    m.insert("sha512-zero".to_owned(), Arc::new(bad));
    m.insert(
        "sha512-huge".to_owned(),
        value(&[("x", '5', 0o644, u64::from(u32::MAX) + 1)]),
    );
    let store = MapLookup(m);
    let run = |i: &str| plan(&[pkg(i, "x@1.0.0")], &[], &store);
    assert!(matches!(
        run("sha512-upper"),
        Err(InstallError::InvalidDigest)
    ));
    assert!(matches!(
        run("sha512-short"),
        Err(InstallError::InvalidDigest)
    ));
    assert!(matches!(
        run("sha512-zero"),
        Err(InstallError::ReservedDigest)
    ));
    assert!(matches!(
        run("sha512-huge"),
        Err(InstallError::TooLarge { what: "file", .. })
    ));
    // A corrupt row the client already has is harmless.
    let ok = plan(
        &[pkg("sha512-upper", "x@1.0.0")],
        &["sha512-upper".to_owned()],
        &store,
    )
    .unwrap();
    assert_eq!(ok.stats.already_in_store, 1);
}

#[test]
fn lockfile_only_and_serde_names() {
    let stats = lockfile_only_stats(7);
    assert_eq!(
        stats,
        Stats {
            total_packages: 7,
            ..Stats::default()
        }
    );
    assert_eq!(
        serde_json::to_string(&stats).unwrap(),
        r#"{"totalPackages":7,"alreadyInStore":0,"packagesToFetch":0,"filesInNewPackages":0,"filesAlreadyInCafs":0,"filesToDownload":0,"downloadBytes":0}"#
    );
}

#[test]
fn digest_parsing() {
    let d = parse_digest(&format!("{}{}", "0".repeat(126), "0f")).unwrap();
    assert_eq!(d[63], 0x0f);
    assert!(parse_digest(&"g".repeat(128)).is_err());
    assert!(parse_digest(&"a".repeat(130)).is_err());
}
