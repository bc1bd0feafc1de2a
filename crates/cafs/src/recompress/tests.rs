use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;

use super::*;
use crate::{Limits, PackageIndex};

/// Text that compresses about as well as source code: words drawn from a
/// SHA-512 chain (level 12 finds more than level 6 in it).
fn text(len: usize, seed: &str) -> Vec<u8> {
    const WORDS: [&str; 16] = [
        "const", "return", "function", "value", "module", "exports", "if", "else", "for", "let",
        "this", "null", "length", "push", "index", "=>",
    ];
    let mut out = Vec::with_capacity(len + 16);
    let mut block = Sha512::digest(seed.as_bytes());
    while out.len() < len {
        for b in block.iter() {
            out.extend_from_slice(WORDS[usize::from(b & 15)].as_bytes());
            out.push(if b & 0x30 == 0 { b'\n' } else { b' ' });
        }
        block = Sha512::digest(block);
    }
    out.truncate(len);
    out
}

fn tgz(files: &[(&str, u32, &[u8])]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    for (path, mode, content) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(*mode);
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut header, format!("package/{path}"), *content)
            .expect("tar entry");
    }
    let tar = tar.into_inner().expect("tar");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).expect("gzip");
    gz.finish().expect("gzip")
}

fn sri(bytes: &[u8]) -> String {
    ssri::IntegrityOpts::new()
        .algorithm(ssri::Algorithm::Sha512)
        .chain(bytes)
        .result()
        .to_string()
}

struct Stored {
    _dir: tempfile::TempDir,
    store: FileStore,
    integrity: String,
    index: Arc<PackageIndex>,
    key: String,
}

fn stored(files: &[(&str, u32, &[u8])]) -> Stored {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = FileStore::open(&dir.path().join("files")).expect("open");
    let tgz = tgz(files);
    let integrity = sri(&tgz);
    let index = store
        .add_tarball(&integrity, tgz.as_slice(), &Limits::default())
        .expect("add");
    let key = store.member_key(&integrity, &index).expect("key");
    Stored {
        _dir: dir,
        store,
        integrity,
        index,
        key,
    }
}

fn big_package() -> Stored {
    let a = text(300 << 10, "a");
    let b = text(200 << 10, "b");
    stored(&[
        (
            "package.json",
            0o644,
            br#"{"name":"demo","version":"1.0.0"}"#,
        ),
        ("a.js", 0o644, &a),
        ("bin/b.js", 0o755, &b),
    ])
}

fn member_bytes(s: &Stored) -> Vec<u8> {
    std::fs::read(s.store.member_path(&s.key).expect("path")).expect("member")
}

fn inflate(gz: &[u8]) -> Vec<u8> {
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(gz)
        .read_to_end(&mut raw)
        .expect("gunzip");
    raw
}

/// Every file of the package, read back through the cut path.
fn contents(s: &Stored) -> HashMap<String, Vec<u8>> {
    s.index
        .files
        .iter()
        .map(|(path, f)| {
            let got = s
                .store
                .read_packaged(&s.integrity, &f.digest_hex)
                .expect("read back");
            (path.clone(), got)
        })
        .collect()
}

#[test]
fn recompressed_member_holds_the_same_frames_under_the_same_key_and_is_smaller() {
    let s = big_package();
    let old = member_bytes(&s);
    let files_before = contents(&s);
    let candidates = s.store.recompress_candidates(12).expect("candidates");
    assert_eq!(candidates.len(), 1);
    assert_eq!(candidates[0].key, s.key);
    assert_eq!(candidates[0].stored_bytes, old.len() as u64);

    let outcome = s.store.recompress(&s.key, 12).expect("recompress");
    let Recompressed::Replaced { before, after } = outcome else {
        panic!("not replaced: {outcome:?}");
    };
    assert_eq!(before, old.len() as u64);
    assert!(after < before, "{after} >= {before}");
    let new = member_bytes(&s);
    assert_eq!(new.len() as u64, after);
    assert_ne!(new, old);
    // The same frames, byte for byte, under the key the row names.
    assert_eq!(inflate(&new), inflate(&old));
    assert_eq!(
        s.store.member_key(&s.integrity, &s.index).expect("key"),
        s.key
    );
    assert!(s.store.has_index(&s.integrity));
    assert_eq!(contents(&s), files_before);
    // Nothing left behind in tmp/.
    assert_eq!(
        std::fs::read_dir(s.store.root().join("tmp"))
            .expect("tmp")
            .count(),
        0
    );
}

#[test]
fn the_record_prevents_rework_and_survives_a_reopen() {
    let s = big_package();
    assert!(matches!(
        s.store.recompress(&s.key, 12).expect("first"),
        Recompressed::Replaced { .. }
    ));
    let len = member_bytes(&s).len() as u64;
    assert_eq!(
        s.store.recompress(&s.key, 12).expect("second"),
        Recompressed::AlreadyDone { bytes: len }
    );
    // A lower level is covered by the denser one.
    assert_eq!(
        s.store.recompress(&s.key, 10).expect("lower"),
        Recompressed::AlreadyDone { bytes: len }
    );
    assert!(s.store.recompress_candidates(12).expect("scan").is_empty());

    let reopened = FileStore::open(s.store.root()).expect("reopen");
    assert!(reopened.recompress_candidates(12).expect("scan").is_empty());
    assert_eq!(
        reopened.recompress(&s.key, 12).expect("after reopen"),
        Recompressed::AlreadyDone { bytes: len }
    );
}

#[test]
fn a_member_made_again_after_eviction_is_a_candidate_again() {
    let s = big_package();
    s.store.recompress(&s.key, 12).expect("recompress");
    // Evicted and made again from the tarball at the cold-path level: the
    // record's length no longer matches, so the pass redoes it.
    let path = s.store.member_path(&s.key).expect("path");
    let dense = std::fs::read(&path).expect("member");
    std::fs::remove_file(&path).expect("evict");
    let files: Vec<(&str, u32, Vec<u8>)> = vec![
        (
            "package.json",
            0o644,
            br#"{"name":"demo","version":"1.0.0"}"#.to_vec(),
        ),
        ("a.js", 0o644, text(300 << 10, "a")),
        ("bin/b.js", 0o755, text(200 << 10, "b")),
    ];
    let refs: Vec<(&str, u32, &[u8])> = files
        .iter()
        .map(|(p, m, c)| (*p, *m, c.as_slice()))
        .collect();
    s.store
        .add_tarball(&s.integrity, tgz(&refs).as_slice(), &Limits::default())
        .expect("unpack again");
    assert_ne!(std::fs::read(&path).expect("member"), dense);
    let again = s.store.recompress_candidates(12).expect("scan");
    assert_eq!(again.len(), 1, "{again:?}");
    assert!(matches!(
        s.store.recompress(&s.key, 12).expect("again"),
        Recompressed::Replaced { .. }
    ));
}

#[test]
fn a_member_no_smaller_is_kept_and_recorded() {
    let s = stored(&[("package.json", 0o644, br#"{"name":"t","version":"1.0.0"}"#)]);
    let old = member_bytes(&s);
    let outcome = s.store.recompress(&s.key, 12).expect("recompress");
    let Recompressed::Kept { before, after } = outcome else {
        panic!("a one-line member got smaller: {outcome:?}");
    };
    assert_eq!(before, old.len() as u64);
    assert!(after >= before);
    assert_eq!(member_bytes(&s), old);
    assert!(matches!(
        s.store.recompress(&s.key, 12).expect("again"),
        Recompressed::AlreadyDone { .. }
    ));
    assert!(s.store.recompress_candidates(12).expect("scan").is_empty());
}

/// Puts `bytes` at the member's path (a damaged member).
fn damage(s: &Stored, bytes: &[u8]) {
    std::fs::write(s.store.member_path(&s.key).expect("path"), bytes).expect("write");
}

fn assert_refused(s: &Stored, what: &str) {
    let before = member_bytes(s);
    let err = s
        .store
        .recompress(&s.key, 12)
        .expect_err(&format!("{what}: accepted"));
    assert!(matches!(err, CafsError::Recompress { .. }), "{what}: {err}");
    assert_eq!(member_bytes(s), before, "{what}: the stored member changed");
    // Not recorded: a refused member is not marked as done.
    assert_eq!(s.store.db.member_level(&s.key).expect("db"), None, "{what}");
}

#[test]
fn corrupted_members_are_refused_and_left_as_they_were() {
    let s = big_package();
    let good = member_bytes(&s);
    let raw = inflate(&good);

    // Not gzip at all.
    damage(&s, b"this is not a gzip member");
    assert_refused(&s, "not gzip");

    // Cut short.
    damage(&s, &good[..good.len() / 2]);
    assert_refused(&s, "truncated");

    // A valid member whose first content byte was flipped: the digest no
    // longer matches.
    let mut flipped = raw.clone();
    flipped[69] ^= 1;
    damage(&s, &pnpr_protocol::whole_member(&flipped, 6).expect("gz"));
    assert_refused(&s, "content changed");

    // Valid frames, but not the ones the key names (one frame dropped).
    let first_len = u32::from_be_bytes([raw[64], raw[65], raw[66], raw[67]]) as usize;
    let rest = &raw[69 + first_len..];
    damage(&s, &pnpr_protocol::whole_member(rest, 6).expect("gz"));
    assert_refused(&s, "other frames");

    // A header whose length runs past the end.
    let mut long = raw.clone();
    long[64..68].copy_from_slice(&u32::MAX.to_be_bytes());
    damage(&s, &pnpr_protocol::whole_member(&long, 6).expect("gz"));
    assert_refused(&s, "length past the end");

    // Control: the intact member is accepted.
    damage(&s, &good);
    assert!(matches!(
        s.store.recompress(&s.key, 12).expect("intact"),
        Recompressed::Replaced { .. }
    ));
}

#[test]
fn an_oversize_member_is_refused_without_reading_past_the_cap() {
    let s = big_package();
    let before = member_bytes(&s);
    let err = s
        .store
        .recompress_within(&s.key, 12, 64 << 10)
        .expect_err("oversize accepted");
    assert!(matches!(err, CafsError::Recompress { .. }), "{err}");
    assert_eq!(member_bytes(&s), before);
    assert_eq!(s.store.db.member_level(&s.key).expect("db"), None);
}

#[test]
fn an_absent_member_is_gone() {
    let s = big_package();
    assert_eq!(
        s.store.recompress(&"0".repeat(64), 12).expect("absent"),
        Recompressed::Gone
    );
    assert!(s.store.recompress("../x", 12).is_err());
}
