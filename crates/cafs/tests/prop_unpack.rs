//! Property tests for the unpacker, whose input is whatever bytes an upstream
//! or a publisher sends: arbitrary bytes as a `.tgz`, gzip of arbitrary bytes,
//! and real tar archives with hostile entry names, kinds and lying sizes.
//!
//! Whatever the input, `add_tarball` must not panic; a refused tarball leaves
//! no index row and no temp file; an accepted one has only safe paths (see
//! `src/unpack/path.rs`), stays inside the [`Limits`], and every file it
//! lists is in the store with the recorded size.

mod common;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use tar::{EntryType, Header};

use common::{gzip, sri};
use pnpr_cafs::{FileStore, Limits};

/// Small bounds so the generators can trip every one of them.
fn limits() -> Limits {
    Limits {
        max_unpacked_bytes: 4096,
        max_entries: 24,
        max_ratio: 200,
        max_file_bytes: 1024,
        max_manifest_bytes: 256,
    }
}

/// A deterministic runner: the same 256 cases on every run, so the
/// success-path count below is a fixed property of the generator, not a
/// coin toss that can fail CI.
fn runner() -> TestRunner {
    TestRunner::new_with_rng(
        Config {
            cases: 256,
            failure_persistence: None,
            ..Config::default()
        },
        proptest::test_runner::TestRng::deterministic_rng(
            proptest::test_runner::RngAlgorithm::ChaCha,
        ),
    )
}

fn store() -> (tempfile::TempDir, FileStore) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = FileStore::open(&dir.path().join("v1")).expect("open store");
    (dir, store)
}

fn temp_files(store: &FileStore) -> usize {
    std::fs::read_dir(store.root().join("tmp")).map_or(0, |d| d.count())
}

/// What the unpacker promises about every stored path.
fn safe_path(p: &str) -> bool {
    !p.is_empty()
        && !p.starts_with('/')
        && !p.contains(['\\', '\0', ':'])
        && p.split('/').all(|c| {
            !c.is_empty()
                && c != "."
                && c != ".."
                && !c.ends_with('.')
                && !c.ends_with(' ')
                && !["con", "nul", "aux", "prn"].contains(
                    &c.split('.')
                        .next()
                        .unwrap_or("")
                        .to_ascii_lowercase()
                        .as_str(),
                )
        })
}

/// Whether the tarball was accepted.
fn check(store: &FileStore, tgz: &[u8], entries: usize) -> Result<bool, TestCaseError> {
    let integrity = sri(tgz);
    let limits = limits();
    match store.add_tarball(&integrity, tgz, &limits) {
        Err(e) => {
            prop_assert!(!store.has_index(&integrity), "indexed after {e}");
            // Errors quote entry paths escaped and bounded.
            prop_assert!(e.to_string().len() < 2048, "{e}");
        }
        Ok(index) => {
            // Plus pnpm's placeholder `package.json` when there was none.
            prop_assert!(index.files.len() <= entries + 1);
            let mut total = 0u64;
            for (path, f) in &index.files {
                prop_assert!(safe_path(path), "unsafe stored path {path:?}");
                prop_assert!(f.size <= limits.max_file_bytes);
                total += f.size;
                let bytes = store
                    .read_packaged(&integrity, &f.digest_hex)
                    .expect("listed file stored");
                prop_assert_eq!(bytes.len() as u64, f.size);
            }
            prop_assert!(total <= limits.max_unpacked_bytes);
        }
    }
    prop_assert_eq!(temp_files(store), 0, "temp files left behind");
    Ok(store.has_index(&integrity))
}

#[test]
fn arbitrary_bytes_never_panic() {
    let (_dir, store) = store();
    let bytes = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..600),
        // Past the magic check, into the gzip header parser.
        prop::collection::vec(any::<u8>(), 0..600).prop_map(|mut v| {
            v.splice(0..0, [0x1f, 0x8b, 8, 0]);
            v
        }),
        // Valid gzip around arbitrary bytes: the tar reader's turn.
        prop::collection::vec(any::<u8>(), 0..2048).prop_map(|v| gzip(&v)),
        // Valid gzip, then a truncated or trailing tail.
        (prop::collection::vec(any::<u8>(), 0..1024), 0usize..64).prop_map(|(v, cut)| {
            let mut g = gzip(&v);
            g.truncate(g.len().saturating_sub(cut));
            g
        }),
    ];
    runner()
        .run(&bytes, |tgz| check(&store, &tgz, tgz.len()).map(drop))
        .expect("property holds");
}

/// One archive entry: name, kind, claimed size, real data, link target.
type Entry = (Vec<u8>, EntryType, Option<u64>, Vec<u8>, Vec<u8>);

fn name_bytes() -> impl Strategy<Value = Vec<u8>> {
    let atom = prop_oneof![
        Just("package/"),
        Just("package/package.json"),
        Just("/"),
        Just("\\"),
        Just("."),
        Just(".."),
        Just(".. "),
        Just("..."),
        Just(" "),
        Just(":"),
        Just("C:"),
        Just("con"),
        Just("NUL.txt"),
        Just("a"),
        Just("b.js"),
        Just("package.json"),
        Just("\0"),
        Just("é"),
    ];
    prop::collection::vec(atom, 1..8).prop_map(|v| {
        let mut s = v.concat().into_bytes();
        s.truncate(100);
        s
    })
}

fn entry() -> impl Strategy<Value = Entry> {
    let kind = prop_oneof![
        6 => Just(EntryType::Regular),
        1 => Just(EntryType::Directory),
        1 => Just(EntryType::Symlink),
        1 => Just(EntryType::Link),
        1 => Just(EntryType::Fifo),
        1 => Just(EntryType::Char),
        1 => Just(EntryType::XGlobalHeader),
    ];
    let size = prop_oneof![
        8 => Just(None),
        1 => any::<u64>().prop_map(Some),
        1 => (0u64..2048).prop_map(Some),
    ];
    (
        name_bytes(),
        kind,
        size,
        prop::collection::vec(any::<u8>(), 0..600),
        name_bytes(),
    )
}

/// Raw headers: the `tar` builder's safe API would refuse these names. A
/// claimed size other than the data length makes the archive lie.
fn archive(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, kind, claimed, data, link) in entries {
        let mut h = Header::new_gnu();
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        let link = &link[..link.len().min(100)];
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
        h.set_size(claimed.unwrap_or(data.len() as u64));
        h.set_mode(0o644);
        h.set_entry_type(*kind);
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

#[test]
fn hostile_archives_unpack_safely_or_not_at_all() {
    let (_dir, store) = store();
    let strategy = prop::collection::vec(entry(), 0..30);
    let accepted = std::cell::Cell::new(0u32);
    runner()
        .run(&strategy, |entries| {
            let ok = check(&store, &gzip(&archive(&entries)), entries.len())?;
            accepted.set(accepted.get() + u32::from(ok));
            Ok(())
        })
        .expect("property holds");
    // The success path must be exercised too, not only refusals.
    assert!(accepted.get() >= 10, "only {} accepted", accepted.get());
}
