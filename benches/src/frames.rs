//! `frames` mode: how many bytes the `/v1/install` body of a cold client
//! would carry under each candidate gzip member layout, against the
//! tarballs' own bytes, and what each costs to compress (issue 13, RFC
//! 0008).
//!
//! Every `.tgz` under a Verdaccio storage folder is unpacked through the
//! real file store (`pnpr_cafs`), then its files are framed exactly as the
//! server frames them (`pnpr_protocol::frame_bytes`), in package order, each
//! (digest, executable) pair once (spec §2.8), and compressed per layout:
//! one member per file (the layout before RFC 0008), one member per package
//! at level 6 and 9, and one stream over everything (the lower bound of
//! DEFLATE with a 32 KiB window over this byte order).
//!
//! Invariant guarded: every layout compresses the very same frames.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine as _;
use sha2::{Digest, Sha512};

use crate::fail;

#[derive(Default)]
struct Layout {
    bytes: u64,
    cpu: Duration,
}

impl Layout {
    fn add(&mut self, started: Instant, bytes: usize) {
        self.cpu += started.elapsed();
        self.bytes += bytes as u64;
    }
}

#[derive(Default)]
struct Totals {
    packages: u64,
    tarball_bytes: u64,
    frames: u64,
    raw: u64,
    per_file_6: Layout,
    per_package_6: Layout,
    per_package_9: Layout,
    one_stream_6: Layout,
}

/// Runs the mode over every tarball under `storage`.
pub(crate) fn run(storage: &Path) {
    let mut tarballs = Vec::new();
    collect_tarballs(storage, &mut tarballs);
    tarballs.sort();
    if tarballs.is_empty() {
        fail(&format!("no .tgz under {}", storage.display()));
    }
    let dir = tempfile::tempdir().unwrap_or_else(|e| fail(&format!("tempdir: {e}")));
    let store = pnpr_cafs::FileStore::open(dir.path())
        .unwrap_or_else(|e| fail(&format!("file store: {e}")));
    let mut t = Totals::default();
    let mut sent: HashSet<(String, bool)> = HashSet::new();
    let mut stream = flate2::write::GzEncoder::new(Counter(0), flate2::Compression::new(6));
    for path in &tarballs {
        let Some(frames) = package_frames(&store, path, &mut sent, &mut t) else {
            continue;
        };
        let raw: Vec<u8> = frames.concat();
        t.raw += raw.len() as u64;
        for f in &frames {
            let s = Instant::now();
            let m = member(f, 6);
            t.per_file_6.add(s, m.len());
        }
        let s = Instant::now();
        let m = member(&raw, 6);
        t.per_package_6.add(s, m.len());
        let s = Instant::now();
        let m = member(&raw, 9);
        t.per_package_9.add(s, m.len());
        let s = Instant::now();
        stream
            .write_all(&raw)
            .unwrap_or_else(|e| fail(&format!("gzip: {e}")));
        t.one_stream_6.cpu += s.elapsed();
    }
    let s = Instant::now();
    t.one_stream_6.bytes = count_stream(stream);
    t.one_stream_6.cpu += s.elapsed();
    print(storage, &t);
}

fn member(data: &[u8], level: u32) -> Vec<u8> {
    pnpr_protocol::gzip_member(data, level).unwrap_or_else(|e| fail(&format!("gzip: {e}")))
}

/// Counts the bytes written to it.
struct Counter(u64);

impl Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn count_stream(stream: flate2::write::GzEncoder<Counter>) -> u64 {
    stream
        .finish()
        .unwrap_or_else(|e| fail(&format!("gzip: {e}")))
        .0
}

/// The frames a cold client would get for one tarball after everything
/// framed before it; `None` when the tarball does not unpack.
fn package_frames(
    store: &pnpr_cafs::FileStore,
    path: &Path,
    sent: &mut HashSet<(String, bool)>,
    t: &mut Totals,
) -> Option<Vec<Vec<u8>>> {
    let bytes = std::fs::read(path).ok()?;
    let integrity = format!(
        "sha512-{}",
        base64::engine::general_purpose::STANDARD.encode(Sha512::digest(&bytes))
    );
    let index = store
        .add_tarball(&integrity, &bytes[..], &pnpr_cafs::Limits::default())
        .ok()?;
    t.packages += 1;
    t.tarball_bytes += bytes.len() as u64;
    let mut frames = Vec::new();
    for f in index.files.values() {
        if !sent.insert((f.digest_hex.clone(), f.is_executable())) {
            continue;
        }
        let content = store.read_packaged(&integrity, &f.digest_hex).ok()?;
        let digest = pnpr_protocol::parse_digest(&f.digest_hex).ok()?;
        frames.push(pnpr_protocol::frame_bytes(&digest, f.is_executable(), &content).ok()?);
        t.frames += 1;
    }
    Some(frames)
}

fn collect_tarballs(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect_tarballs(&p, out);
        } else if p.extension().is_some_and(|x| x == "tgz") {
            out.push(p);
        }
    }
}

fn print(storage: &Path, t: &Totals) {
    let tb = t.tarball_bytes as f64;
    println!(
        "\n{}: {} tarballs, {:.2} MB; {} frames (each (digest, exec) once), {:.2} MB uncompressed\n",
        storage.display(),
        t.packages,
        tb / 1e6,
        t.frames,
        t.raw as f64 / 1e6
    );
    println!("| layout | MB | x tarballs | compress CPU |");
    println!("| --- | ---: | ---: | ---: |");
    for (name, l) in [
        ("one member per file, level 6", &t.per_file_6),
        ("one member per package, level 6", &t.per_package_6),
        ("one member per package, level 9", &t.per_package_9),
        ("one stream over all frames, level 6", &t.one_stream_6),
    ] {
        println!(
            "| {name} | {:.2} | {:.3} | {} ms |",
            l.bytes as f64 / 1e6,
            l.bytes as f64 / tb,
            l.cpu.as_millis()
        );
    }
}
