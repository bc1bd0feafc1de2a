//! Stored cuts: round trip, the cap and its least-recently-used eviction,
//! recompression of a cut, and a cut that is not what its key names.

use std::collections::HashMap;
use std::io::{Read, Write};

use pnpr_protocol::{FrameRef, MemberWriter, MEMBER_GZIP_LEVEL};
use sha2::{Digest, Sha512};

use crate::{FileStore, Limits, Recompressed};

/// Compressible text (words from a SHA-512 chain).
fn text(len: usize, seed: &str) -> Vec<u8> {
    const WORDS: [&str; 8] = [
        "const", "return", "function", "value", "module", "exports", "this", "=>",
    ];
    let mut out = Vec::with_capacity(len + 16);
    let mut block = Sha512::digest(seed.as_bytes());
    while out.len() < len {
        for b in block.iter() {
            out.extend_from_slice(WORDS[usize::from(b & 7)].as_bytes());
            out.push(if b & 0x30 == 0 { b'\n' } else { b' ' });
        }
        block = Sha512::digest(block);
    }
    out.truncate(len);
    out
}

fn tgz(files: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    for (path, content) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut header, format!("package/{path}"), content.as_slice())
            .expect("tar entry");
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar.into_inner().expect("tar")).expect("gzip");
    gz.finish().expect("gzip")
}

struct Fixture {
    _dir: tempfile::TempDir,
    store: FileStore,
    integrity: String,
    frames: Vec<FrameRef>,
}

fn add(store: &FileStore, files: &[(&str, Vec<u8>)]) -> (String, Vec<FrameRef>) {
    let tgz = tgz(files);
    let integrity = ssri::IntegrityOpts::new()
        .algorithm(ssri::Algorithm::Sha512)
        .chain(&tgz)
        .result()
        .to_string();
    let index = store
        .add_tarball(&integrity, tgz.as_slice(), &Limits::default())
        .expect("add");
    (integrity, crate::member::frames(&index).expect("frames"))
}

/// Bytes that do not compress (a SHA-512 chain).
fn noise(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 64);
    let mut block = Sha512::digest(b"noise");
    while out.len() < len {
        out.extend_from_slice(&block);
        block = Sha512::digest(block);
    }
    out.truncate(len);
    out
}

/// A store holding a package of five text files, plus one of `bulk`
/// incompressible bytes so the members weigh what the test needs.
fn fixture(bulk: usize) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = FileStore::open(&dir.path().join("files")).expect("open");
    let files: Vec<(&str, Vec<u8>)> = ["a", "b", "c", "d", "e"]
        .iter()
        .map(|n| (*n, text(64 << 10, n)))
        .collect();
    let (integrity, frames) = add(&store, &files);
    if bulk > 0 {
        add(&store, &[("bulk.bin", noise(bulk))]);
    }
    Fixture {
        _dir: dir,
        store,
        integrity,
        frames,
    }
}

/// Bytes of every stored member.
fn members_len(f: &Fixture) -> u64 {
    let mut total = 0;
    let mut stack = vec![f.store.root.join("frames").join("members")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let meta = e.metadata().expect("meta");
            if meta.is_dir() {
                stack.push(e.path());
            } else {
                total += meta.len();
            }
        }
    }
    total
}

/// The member of `frames` (a subset of the package's), cut as a response
/// cuts it, and its key.
fn cut(f: &Fixture, frames: &[FrameRef]) -> (String, Vec<u8>) {
    let wanted: HashMap<([u8; 64], bool), u64> = frames
        .iter()
        .map(|x| ((x.digest, x.executable), x.size))
        .collect();
    let mut w = MemberWriter::new(Vec::new(), MEMBER_GZIP_LEVEL);
    f.store
        .cut(&f.integrity, &wanted, |d, e, content| {
            w.frame(d, e, &content).map_err(std::io::Error::other)
        })
        .expect("cut");
    (
        pnpr_protocol::member_key(frames),
        w.finish().expect("member"),
    )
}

fn read(mut file: std::fs::File) -> Vec<u8> {
    let mut out = Vec::new();
    file.read_to_end(&mut out).expect("read");
    out
}

#[test]
fn a_kept_cut_is_served_back_byte_for_byte_and_recompressed_in_place() {
    let f = fixture(1 << 20);
    let (key, member) = cut(&f, &f.frames[1..4]);
    assert!(f.store.open_cut(&key).is_none());
    f.store.keep_cut(&key, &member).expect("keep");
    let (file, len) = f.store.open_cut(&key).expect("kept");
    assert_eq!(len, member.len() as u64);
    assert_eq!(read(file), member);
    // Not a member: a whole-package lookup never finds it.
    assert!(!f.store.has_member(&key));

    let candidates = f.store.recompress_candidates(12).expect("candidates");
    assert!(candidates.iter().any(|c| c.key == key), "{candidates:?}");
    let outcome = f.store.recompress(&key, 12).expect("recompress");
    let Recompressed::Replaced { after, .. } = outcome else {
        panic!("not replaced: {outcome:?}");
    };
    let (file, len) = f.store.open_cut(&key).expect("still there");
    assert_eq!(len, after);
    let mut raw_new = Vec::new();
    flate2::read::GzDecoder::new(file)
        .read_to_end(&mut raw_new)
        .expect("gunzip");
    let mut raw_old = Vec::new();
    flate2::read::GzDecoder::new(member.as_slice())
        .read_to_end(&mut raw_old)
        .expect("gunzip");
    assert_eq!(raw_new, raw_old);
}

#[test]
fn cuts_stay_under_a_quarter_of_the_members_evicting_the_least_recently_used() {
    // Single-file cuts weigh about the same: size the members so two of
    // them fit under the cap and three do not.
    let probe = fixture(0);
    let one = cut(&probe, &probe.frames[0..1]).1.len();
    let bulk = (one * 10).saturating_sub(members_len(&probe) as usize);
    let f = fixture(bulk);
    let cap = members_len(&f) / 4;
    let (a, ma) = cut(&f, &f.frames[0..1]);
    let (b, mb) = cut(&f, &f.frames[1..2]);
    let (c, mc) = cut(&f, &f.frames[2..3]);
    assert!(ma.len() as u64 + mb.len() as u64 <= cap, "fixture: two fit");
    assert!(
        (ma.len() + mb.len() + mc.len()) as u64 > cap,
        "fixture: three do not"
    );
    f.store.keep_cut(&a, &ma).expect("keep a");
    std::thread::sleep(std::time::Duration::from_millis(20));
    f.store.keep_cut(&b, &mb).expect("keep b");
    std::thread::sleep(std::time::Duration::from_millis(20));
    // Using a makes b the least recently used.
    assert!(f.store.open_cut(&a).is_some());
    std::thread::sleep(std::time::Duration::from_millis(20));
    f.store.keep_cut(&c, &mc).expect("keep c");
    assert!(f.store.open_cut(&a).is_some());
    assert!(f.store.open_cut(&b).is_none(), "b evicted");
    assert!(f.store.open_cut(&c).is_some());
    // A cut past the cap on its own is not kept (and evicts nothing).
    let (all, mall) = cut(&f, &f.frames[0..4]);
    assert!(mall.len() as u64 > cap);
    f.store.keep_cut(&all, &mall).expect("not kept, no error");
    assert!(f.store.open_cut(&all).is_none());
    assert!(f.store.open_cut(&a).is_some() && f.store.open_cut(&c).is_some());
}

#[test]
fn a_cut_holding_other_frames_than_its_key_names_is_never_recompressed() {
    let f = fixture(1 << 20);
    let (key, _) = cut(&f, &f.frames[0..2]);
    let (_, other) = cut(&f, &f.frames[2..4]);
    f.store.keep_cut(&key, &other).expect("keep");
    let err = f.store.recompress(&key, 12).expect_err("refused");
    assert!(
        err.to_string().contains("not the ones its key names"),
        "{err}"
    );
    let (file, _) = f.store.open_cut(&key).expect("left as it was");
    assert_eq!(read(file), other);
    // Keys are validated like member keys.
    assert!(f.store.keep_cut("../../etc", b"x").is_err());
    assert!(f.store.open_cut("../../etc").is_none());
}
