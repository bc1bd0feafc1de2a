use std::io::Read;

use sha2::{Digest, Sha512};

use super::*;

fn dirs() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let root = tempfile::tempdir().unwrap();
    let tmp = root.path().join("tmp");
    let files = root.path().join("files");
    fs::create_dir_all(&tmp).unwrap();
    (root, tmp, files)
}

fn temp_count(tmp: &Path) -> usize {
    fs::read_dir(tmp).unwrap().count()
}

/// Streams `chunks`, names the blob after the digest of what was written.
fn store_addressed(tmp: &Path, files: &Path, chunks: &[&[u8]], d: Durability) -> (PathBuf, Placed) {
    let mut w = BlobWriter::create(tmp, Sha512::new(), d).unwrap();
    for c in chunks {
        w.write(c).unwrap();
    }
    let (hasher, sealed) = w.seal().unwrap();
    let dest = files.join(hex::encode(hasher.finalize()));
    let placed = sealed.place(&dest).unwrap();
    (dest, placed)
}

#[test]
fn content_addressed_under_the_digest_of_the_written_bytes() {
    let (_root, tmp, files) = dirs();
    for d in [Durability::Durable, Durability::ProcessCrash] {
        let (dest, placed) = store_addressed(&tmp, &files, &[b"hel", b"lo"], d);
        assert_eq!(fs::read(&dest).unwrap(), b"hello");
        assert_eq!(
            dest.file_name().unwrap().to_str().unwrap(),
            hex::encode(Sha512::digest(b"hello"))
        );
        assert!(matches!(placed, Placed::Created | Placed::Existed));
        assert_eq!(temp_count(&tmp), 0, "temp file removed after placing");
    }
}

#[test]
fn no_partial_file_is_visible_after_a_crash_mid_write() {
    let (_root, tmp, files) = dirs();
    let dest = files.join(hex::encode(Sha512::digest(b"complete content")));
    let mut w = BlobWriter::create(&tmp, Sha512::new(), Durability::Durable).unwrap();
    w.write(b"complete").unwrap();
    // A crash: no destructor runs, nothing is sealed or placed.
    std::mem::forget(w);
    assert!(!dest.exists(), "final path never holds partial bytes");
    assert!(!files.exists() || fs::read_dir(&files).unwrap().count() == 0);
    assert_eq!(temp_count(&tmp), 1, "only a temp file is left");
    // The next open sweeps it.
    sweep_temp_dir(&tmp, Duration::ZERO);
    assert_eq!(temp_count(&tmp), 0);
}

#[test]
fn rewriting_the_same_content_is_idempotent() {
    let (_root, tmp, files) = dirs();
    let dest = files.join("ab").join("cdef");
    assert_eq!(
        put(&tmp, &dest, b"same", Durability::Durable).unwrap(),
        Placed::Created
    );
    let inode_before = fs::metadata(&dest).unwrap().modified().unwrap();
    assert_eq!(
        put(&tmp, &dest, b"same", Durability::Durable).unwrap(),
        Placed::Existed
    );
    assert_eq!(fs::read(&dest).unwrap(), b"same");
    assert_eq!(
        fs::metadata(&dest).unwrap().modified().unwrap(),
        inode_before
    );
    assert_eq!(temp_count(&tmp), 0);
}

#[test]
fn a_damaged_file_under_the_name_is_replaced() {
    let (_root, tmp, files) = dirs();
    let dest = files.join("x");
    fs::create_dir_all(&files).unwrap();
    fs::write(&dest, b"trunc").unwrap();
    assert_eq!(
        put(&tmp, &dest, b"truncated no more", Durability::ProcessCrash).unwrap(),
        Placed::Repaired
    );
    assert_eq!(fs::read(&dest).unwrap(), b"truncated no more");
    assert_eq!(temp_count(&tmp), 0);
}

#[test]
fn discarded_and_dropped_writes_leave_nothing() {
    let (_root, tmp, _files) = dirs();
    let mut w = BlobWriter::create(&tmp, (), Durability::ProcessCrash).unwrap();
    w.write(b"abc").unwrap();
    drop(w);
    assert_eq!(temp_count(&tmp), 0);

    let mut w = BlobWriter::create(&tmp, (), Durability::ProcessCrash).unwrap();
    w.write(b"abc").unwrap();
    let ((), sealed) = w.seal().unwrap();
    assert_eq!(sealed.len(), 3);
    sealed.discard();
    assert_eq!(temp_count(&tmp), 0);
}

#[test]
fn a_reader_opened_mid_write_survives_placement() {
    let (_root, tmp, files) = dirs();
    let mut w = BlobWriter::create(&tmp, (), Durability::ProcessCrash).unwrap();
    let mut reader = w.reader().unwrap();
    w.write(b"streamed").unwrap();
    let ((), sealed) = w.seal().unwrap();
    sealed.place(&files.join("s")).unwrap();
    let mut got = Vec::new();
    reader.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"streamed");
}

#[test]
fn sweep_keeps_young_temp_files_when_asked() {
    let (_root, tmp, _files) = dirs();
    fs::write(tmp.join("young.tmp"), b"x").unwrap();
    sweep_temp_dir(&tmp, Duration::from_secs(3600));
    assert_eq!(temp_count(&tmp), 1);
    sweep_temp_dir(&tmp, Duration::ZERO);
    assert_eq!(temp_count(&tmp), 0);
}
