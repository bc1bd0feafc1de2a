//! Every real tarball shipped with `@pnpm/registry-mock` must unpack, and the
//! index of the packages pnpm 11.5.2 was captured installing must match the
//! rows pnpm itself wrote (digests, modes, sizes, manifest subset).

mod common;

use std::path::{Path, PathBuf};

use common::sri;
use pnpr_cafs::{FileStore, Limits};
use serde_json::json;

fn storage_cache() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/.deps/node/node_modules/@pnpm/registry-mock/registry/storage-cache")
}

fn collect_tgz(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("read storage-cache")
        .map(|e| e.expect("dir entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            collect_tgz(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "tgz") {
            out.push(path);
        }
    }
}

#[test]
fn every_registry_mock_tarball_unpacks() {
    let root = storage_cache();
    if !root.is_dir() {
        eprintln!("skipping: {} is not installed", root.display());
        return;
    }
    let mut tarballs = Vec::new();
    collect_tgz(&root, &mut tarballs);
    assert!(
        tarballs.len() >= 253,
        "found only {} tarballs",
        tarballs.len()
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let store = FileStore::open(dir.path()).expect("open store");
    let mut failures = Vec::new();
    for path in &tarballs {
        let bytes = std::fs::read(path).expect("read tarball");
        match store.add_tarball(&sri(&bytes), bytes.as_slice(), &Limits::default()) {
            Ok(index) => assert!(
                index.files.contains_key("package.json"),
                "{}",
                path.display()
            ),
            Err(err) => failures.push(format!("{}: {err}", path.display())),
        }
    }
    assert!(
        failures.is_empty(),
        "failed tarballs:\n{}",
        failures.join("\n")
    );
    // Identical tarballs (same integrity) share one row.
    let distinct: std::collections::BTreeSet<String> = tarballs
        .iter()
        .map(|p| sri(&std::fs::read(p).expect("read")))
        .collect();
    assert_eq!(store.index_count().expect("count"), distinct.len() as u64);
}

/// Values decoded from the rows pnpm 11.5.2 wrote into its own store index
/// (`store-index-samples.pnpm-11.5.2.json` in the shared reference captures).
#[test]
fn matches_the_rows_pnpm_wrote() {
    let root = storage_cache();
    if !root.is_dir() {
        eprintln!("skipping: {} is not installed", root.display());
        return;
    }
    struct Captured {
        tarball: &'static str,
        integrity: &'static str,
        files: &'static [(&'static str, &'static str, u64)],
        manifest: serde_json::Value,
    }
    let captured = [
        Captured {
            tarball: "@pnpm.e2e/dep-of-pkg-with-1-dep/dep-of-pkg-with-1-dep-100.1.0.tgz",
            integrity: "sha512-60+yiZtuRbojMieLzg4UxzBs5fxSVfRtTRNKvdfTaLTb/2XLZTZORTSWkz8ttCGmNbMv5Li2gP4TNgVFMbnYgw==",
            files: &[
                ("index.js", "d406e4ced2d4f7e3db9d745dbb8fe0b5e2562cc874361ff0571094f0ff38f735d5041db835d6aa245c086bcc1fefec441c46b5cbeca340b2201ac9ff281fd28a", 49),
                ("package.json", "793be62571dda14f2b6fc2bf2ea51fe9680f6b62568437636f731cc61e347e825862b2ad011c3213fc89bfe583a880697964e58a67ad959687ce9938f48b68aa", 72),
            ],
            manifest: json!({ "version": "100.1.0", "name": "@pnpm.e2e/dep-of-pkg-with-1-dep" }),
        },
        Captured {
            tarball: "@pnpm.e2e/foo/foo-100.0.0.tgz",
            integrity: "sha512-cZ/nSxIU5S7e9vwdClyuO2DNRbgeV/+ii2VO+NKSsvMYRzus4RVPviDinwJsW533XuhLKTB3ttBoCMRp4NAJiA==",
            files: &[
                ("package.json", "d8ef0f0fe06ba4aec5012e3aff18da48cbf2afe62c457aa346e557aeaa48010f92506a37c9132b0f3d73f761be614765e2b39271ce7a156a33043f67bffda5b8", 54),
            ],
            manifest: json!({ "version": "100.0.0", "name": "@pnpm.e2e/foo" }),
        },
        Captured {
            tarball: "@pnpm.e2e/pkg-with-1-dep/pkg-with-1-dep-100.1.0.tgz",
            integrity: "sha512-k3NhVlUkKa6oqLhIW+XMpX2NStzhhZyJcnapYRWFkbTPzsT7hxsnpeTkhiAy1YcTn3XJAPo7HersqZAPhVBETQ==",
            files: &[
                ("index.js", "52758c2788a25ff44783559bf9779bda8b8561af15b652475faf0ab977d6dfb8278a2abaea9f51202c41ff3901c9a882d4681e14f576afed83cfb77e54c2167f", 60),
                ("package.json", "f792821e1030cbd7d10c69d4640c3ad4de15f376aef7f674b2256c725bee72a787befdba2bb2aa3f63341ffc4b1505e0a27c53b9116d53d8c442debf9be1a65b", 140),
            ],
            manifest: json!({
                "version": "100.1.0",
                "dependencies": { "@pnpm.e2e/dep-of-pkg-with-1-dep": "^100.0.0" },
                "name": "@pnpm.e2e/pkg-with-1-dep",
            }),
        },
    ];
    let dir = tempfile::tempdir().expect("tempdir");
    let store = FileStore::open(dir.path()).expect("open store");
    for row in captured {
        let bytes = std::fs::read(root.join(row.tarball)).expect("read tarball");
        let index = store
            .add_tarball(row.integrity, bytes.as_slice(), &Limits::default())
            .expect("add");
        let files: Vec<(&str, &str, u32, u64)> = index
            .files
            .iter()
            .map(|(p, f)| (p.as_str(), f.digest_hex.as_str(), f.mode, f.size))
            .collect();
        let want: Vec<(&str, &str, u32, u64)> = row
            .files
            .iter()
            .map(|(p, d, s)| (*p, *d, 420, *s))
            .collect();
        assert_eq!(files, want, "{}", row.tarball);
        assert!(!index.requires_build);
        let manifest = index.index_manifest().expect("manifest");
        // Key order matters: pnpm's msgpack record lists fields in this order.
        assert_eq!(
            serde_json::to_string(&manifest).expect("json"),
            serde_json::to_string(&row.manifest).expect("json"),
            "{}",
            row.tarball
        );
    }
}
