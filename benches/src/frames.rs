//! `frames` mode: where the bytes of a cold client's `/v1/install` body go,
//! and how many each candidate encoding would save (issue 13, RFC 0008,
//! RFC 0010).
//!
//! Every `.tgz` under a Verdaccio storage folder is unpacked through the
//! real file store (`pnpr_cafs`), its store-index row is encoded exactly as
//! the server encodes it (`PackageIndex::index_value` + `encode_index`), and
//! its files are framed exactly as the server frames them
//! (`pnpr_protocol::frame_bytes`), in package order, each (digest,
//! executable) pair once (spec §2.8). With the project's `pnpm-lock.yaml`
//! only the tarballs it installs are counted and its JSON form is the
//! header's lockfile. Three tables come out:
//!
//! 1. composition: the header member (lockfile + stats, then each index row
//!    field, measured as the bytes its removal saves), the frame prefixes,
//!    the file contents and the gzip framing, at the server's levels;
//! 2. member encodings: the file section compressed per file, per package
//!    with zlib-rs 6 and 9 and libdeflate 6 and 9–12, and as one stream,
//!    with the single-thread time each took;
//! 3. whole bodies: header variant + member encoding, against the tarballs.
//!
//! Invariant guarded: every encoding compresses the very same frames, and
//! every header variant carries the same rows minus the named field.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};
use sha2::{Digest, Sha512};

use crate::fail;

/// Compressed bytes and the time it took to make them.
#[derive(Default, Clone, Copy)]
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

/// A gzip encoder for one stored member.
#[derive(Clone, Copy)]
enum Codec {
    /// flate2 with the zlib-rs backend (what `pnpr_cafs` uses today).
    ZlibRs(u32),
    /// libdeflate (whole-buffer, levels 1–12).
    Libdeflate(i32),
}

impl Codec {
    fn name(self) -> String {
        match self {
            Codec::ZlibRs(l) => format!("zlib-rs level {l}"),
            Codec::Libdeflate(l) => format!("libdeflate level {l}"),
        }
    }
}

/// The member encodings measured per package.
const CODECS: [Codec; 8] = [
    Codec::ZlibRs(6),
    Codec::ZlibRs(9),
    Codec::Libdeflate(6),
    Codec::Libdeflate(9),
    Codec::Libdeflate(10),
    Codec::Libdeflate(11),
    Codec::Libdeflate(12),
    Codec::ZlibRs(1),
];

/// Which fields of each index row a header variant keeps. The "blanked"
/// variants are not sendable; they only price one field each.
#[derive(Clone, Copy)]
struct RowShape {
    name: &'static str,
    rows: bool,
    manifest: bool,
    checked_at: bool,
    digest: bool,
    size: bool,
    mode: bool,
}

const FULL: RowShape = RowShape {
    name: "as sent today",
    rows: true,
    manifest: true,
    checked_at: true,
    digest: true,
    size: true,
    mode: true,
};

const SHAPES: [RowShape; 8] = [
    FULL,
    RowShape {
        name: "no index rows (lockfile + stats only)",
        rows: false,
        ..FULL
    },
    RowShape {
        name: "rows without `manifest`",
        manifest: false,
        ..FULL
    },
    RowShape {
        name: "rows without `checkedAt`",
        checked_at: false,
        ..FULL
    },
    RowShape {
        name: "rows with every digest the same (prices digests)",
        digest: false,
        ..FULL
    },
    RowShape {
        name: "rows with every size 0 (prices sizes)",
        size: false,
        ..FULL
    },
    RowShape {
        name: "rows with every mode 420 (prices modes)",
        mode: false,
        ..FULL
    },
    RowShape {
        name: "rows without `manifest` and `checkedAt`",
        manifest: false,
        checked_at: false,
        ..FULL
    },
];

/// One package as the header sees it.
struct Row {
    key: String,
    value: pnpr_protocol::IndexValue,
}

#[derive(Default)]
struct Totals {
    packages: u64,
    tarball_bytes: u64,
    frames: u64,
    files: u64,
    raw: u64,
    download_bytes: u64,
    per_file_6: Layout,
    codecs: Vec<Layout>,
    one_stream_6: Layout,
    /// `pnpr_protocol::MemberWriter` as shipped (libdeflate 6 up to
    /// `WHOLE_BUFFER_CAP` framed bytes, zlib-rs 6 streaming above), and the
    /// same cap with libdeflate 12 (a background re-compression of every
    /// group), and the idle-time pass as implemented (RFC 0010 §4b): only a
    /// package's whole group is its stored member, re-encoded at 12; a
    /// partial group (a file already framed by an earlier package) is cut
    /// per response at 6.
    /// The last: every package sent as its whole stored member at 12, the
    /// frames an earlier package already sent included again (not what spec
    /// §2.8 allows today; prices that option).
    capped: [Layout; 4],
    /// Packages whose group is partial, their framed bytes, and the framed
    /// bytes their whole members would repeat.
    partial: (u64, u64, u64),
    /// Frame prefixes (digest, length, flag) of each package, compressed alone.
    prefixes_6: u64,
    /// File contents of each package, compressed alone.
    contents_6: u64,
    rows: Vec<Row>,
}

/// Runs the mode over every tarball under `storage`; `lockfile` is the
/// project's `pnpm-lock.yaml` for the lockfile part of the header.
pub(crate) fn run(storage: &Path, lockfile: Option<&Path>) {
    let lock = lockfile.map(read_lockfile).unwrap_or(Value::Null);
    let wanted = lockfile_integrities(&lock);
    let mut tarballs = Vec::new();
    collect_tarballs(storage, &mut tarballs);
    tarballs.sort();
    if tarballs.is_empty() {
        fail(&format!("no .tgz under {}", storage.display()));
    }
    let dir = tempfile::tempdir().unwrap_or_else(|e| fail(&format!("tempdir: {e}")));
    let store = pnpr_cafs::FileStore::open(dir.path())
        .unwrap_or_else(|e| fail(&format!("file store: {e}")));
    let mut t = Totals {
        codecs: vec![Layout::default(); CODECS.len()],
        ..Totals::default()
    };
    let mut compressors: Vec<Option<libdeflater::Compressor>> =
        CODECS.iter().map(|c| compressor(*c)).collect();
    let mut sent: HashSet<(String, bool)> = HashSet::new();
    let mut stream = flate2::write::GzEncoder::new(Counter(0), flate2::Compression::new(6));
    for path in &tarballs {
        let Some((frames, all)) = package_frames(&store, path, &wanted, &mut sent, &mut t) else {
            continue;
        };
        measure_package(&frames, all.as_deref(), &mut compressors, &mut t);
        let raw: Vec<u8> = frames.concat();
        let s = Instant::now();
        stream
            .write_all(&raw)
            .unwrap_or_else(|e| fail(&format!("gzip: {e}")));
        t.one_stream_6.cpu += s.elapsed();
    }
    let s = Instant::now();
    t.one_stream_6.bytes = count_stream(stream);
    t.one_stream_6.cpu += s.elapsed();
    print(storage, lockfile, &lock, &t);
}

fn compressor(c: Codec) -> Option<libdeflater::Compressor> {
    match c {
        Codec::ZlibRs(_) => None,
        Codec::Libdeflate(l) => {
            let lvl = libdeflater::CompressionLvl::new(l)
                .unwrap_or_else(|_| fail(&format!("libdeflate level {l}")));
            Some(libdeflater::Compressor::new(lvl))
        }
    }
}

/// Compresses one package's frames every way the tables compare.
fn measure_package(
    frames: &[Vec<u8>],
    all: Option<&[Vec<u8>]>,
    compressors: &mut [Option<libdeflater::Compressor>],
    t: &mut Totals,
) {
    let raw: Vec<u8> = frames.concat();
    t.raw += raw.len() as u64;
    for f in frames {
        let s = Instant::now();
        let m = member(f, 6);
        t.per_file_6.add(s, m.len());
    }
    let mut took = [Layout::default(); CODECS.len()];
    for (i, codec) in CODECS.iter().enumerate() {
        let s = Instant::now();
        let len = compress(*codec, compressors[i].as_mut(), &raw);
        took[i].add(s, len);
        t.codecs[i].bytes += took[i].bytes;
        t.codecs[i].cpu += took[i].cpu;
    }
    // What ships: pnpr_protocol::MemberWriter at the member level.
    let s = Instant::now();
    let mut w = pnpr_protocol::MemberWriter::new(Vec::new(), pnpr_protocol::MEMBER_GZIP_LEVEL);
    for f in frames {
        let (prefix, content) = f.split_at(69);
        let digest: [u8; 64] = prefix[..64]
            .try_into()
            .unwrap_or_else(|_| fail("frame prefix"));
        w.frame(&digest, prefix[68] == 1, content)
            .unwrap_or_else(|e| fail(&format!("member: {e}")));
    }
    let len = w
        .finish()
        .unwrap_or_else(|e| fail(&format!("member: {e}")))
        .len();
    t.capped[0].add(s, len);
    // A background re-compression at libdeflate 12, same cap (CODECS[6]).
    let pick = if raw.len() <= pnpr_protocol::WHOLE_BUFFER_CAP {
        6
    } else {
        0
    };
    t.capped[1].bytes += took[pick].bytes;
    t.capped[1].cpu += took[pick].cpu;
    match all {
        None => {
            t.capped[2].bytes += took[pick].bytes;
            t.capped[2].cpu += took[pick].cpu;
            t.capped[3].bytes += took[pick].bytes;
        }
        Some(all) => {
            t.capped[2].bytes += len as u64;
            t.partial.0 += 1;
            t.partial.1 += raw.len() as u64;
            let whole: Vec<u8> = all.concat();
            t.partial.2 += (whole.len() - raw.len()) as u64;
            let at = if whole.len() <= pnpr_protocol::WHOLE_BUFFER_CAP {
                6
            } else {
                0
            };
            let s = Instant::now();
            let len = compress(CODECS[at], compressors[at].as_mut(), &whole);
            t.capped[3].add(s, len);
        }
    }
    let prefixes: Vec<u8> = frames.iter().flat_map(|f| f[..69].to_vec()).collect();
    let contents: Vec<u8> = frames.iter().flat_map(|f| f[69..].to_vec()).collect();
    t.prefixes_6 += member(&prefixes, 6).len() as u64;
    t.contents_6 += member(&contents, 6).len() as u64;
}

/// The gzip member length of `raw` under `codec`.
fn compress(codec: Codec, c: Option<&mut libdeflater::Compressor>, raw: &[u8]) -> usize {
    match (codec, c) {
        (Codec::Libdeflate(_), Some(c)) => {
            let mut out = vec![0u8; c.gzip_compress_bound(raw.len())];
            c.gzip_compress(raw, &mut out)
                .unwrap_or_else(|e| fail(&format!("libdeflate: {e}")))
        }
        (Codec::ZlibRs(l), _) => member(raw, l).len(),
        (Codec::Libdeflate(_), None) => fail("libdeflate compressor missing"),
    }
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

/// One package's frames, each a prefix and its content.
type Frames = Vec<Vec<u8>>;

/// The frames a cold client would get for one tarball after everything
/// framed before it and, when that is not all of its files (a partial
/// group, cut per response), all of them (its stored member's frames);
/// `None` when the tarball does not unpack. Also records the package's
/// index row.
fn package_frames(
    store: &pnpr_cafs::FileStore,
    path: &Path,
    wanted: &Option<HashSet<String>>,
    sent: &mut HashSet<(String, bool)>,
    t: &mut Totals,
) -> Option<(Frames, Option<Frames>)> {
    let bytes = std::fs::read(path).ok()?;
    let integrity = format!(
        "sha512-{}",
        base64::engine::general_purpose::STANDARD.encode(Sha512::digest(&bytes))
    );
    if wanted.as_ref().is_some_and(|w| !w.contains(&integrity)) {
        return None;
    }
    let index = store
        .add_tarball(&integrity, &bytes[..], &pnpr_cafs::Limits::default())
        .ok()?;
    t.packages += 1;
    t.tarball_bytes += bytes.len() as u64;
    t.files += index.files.len() as u64;
    t.rows.push(Row {
        key: format!("{integrity}\t{}", package_id(&index.manifest)),
        value: index.index_value(),
    });
    let mut frames = Vec::new();
    let mut all = Vec::new();
    let mut whole = true;
    let mut own: HashSet<(String, bool)> = HashSet::new();
    for f in index.files.values() {
        let pair = (f.digest_hex.clone(), f.is_executable());
        let new_here = own.insert(pair.clone());
        if !sent.insert(pair) {
            // Framed by an earlier package, not a repeat within this one.
            whole &= !new_here;
            if new_here {
                let content = store.read_packaged(&integrity, &f.digest_hex).ok()?;
                let digest = pnpr_protocol::parse_digest(&f.digest_hex).ok()?;
                all.push(pnpr_protocol::frame_bytes(&digest, f.is_executable(), &content).ok()?);
            }
            continue;
        }
        let content = store.read_packaged(&integrity, &f.digest_hex).ok()?;
        let digest = pnpr_protocol::parse_digest(&f.digest_hex).ok()?;
        let frame = pnpr_protocol::frame_bytes(&digest, f.is_executable(), &content).ok()?;
        all.push(frame.clone());
        frames.push(frame);
        t.frames += 1;
        t.download_bytes += f.size;
    }
    Some((frames, (!whole).then_some(all)))
}

fn package_id(manifest: &Value) -> String {
    let field = |k: &str| manifest.get(k).and_then(Value::as_str).unwrap_or("");
    format!("{}@{}", field("name"), field("version"))
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

/// The tarball integrities a lockfile installs; `None` (every tarball) when
/// there is no lockfile.
fn lockfile_integrities(lock: &Value) -> Option<HashSet<String>> {
    let packages = lock.get("packages")?.as_object()?;
    Some(
        packages
            .values()
            .filter_map(|p| p.pointer("/resolution/integrity")?.as_str())
            .map(str::to_owned)
            .collect(),
    )
}

/// The lockfile as the header carries it (on-disk v9 shape, as JSON).
fn read_lockfile(path: &Path) -> Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| fail(&format!("{}: {e}", path.display())));
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| fail(&format!("{}: {e}", path.display())))
}

/// The header JSON of a cold client with every row shaped by `shape`.
fn header(lock: &Value, t: &Totals, shape: RowShape) -> Vec<u8> {
    let entries: Vec<Value> = if shape.rows {
        t.rows
            .iter()
            .map(|r| {
                let b64 = base64::engine::general_purpose::STANDARD
                    .encode(pnpr_protocol::encode_index(&reshape(&r.value, shape)));
                json!({ "key": r.key, "b64": b64 })
            })
            .collect()
    } else {
        Vec::new()
    };
    let doc = json!({
        "lockfile": lock,
        "stats": {
            "totalPackages": t.packages, "alreadyInStore": 0, "packagesToFetch": t.packages,
            "filesInNewPackages": t.files, "filesAlreadyInCafs": t.files - t.frames,
            "filesToDownload": t.frames, "downloadBytes": t.download_bytes,
        },
        "indexEntries": entries,
    });
    serde_json::to_vec(&doc).unwrap_or_else(|e| fail(&format!("header: {e}")))
}

fn reshape(v: &pnpr_protocol::IndexValue, shape: RowShape) -> pnpr_protocol::IndexValue {
    let mut v = v.clone();
    if !shape.manifest {
        v.manifest = None;
    }
    for (_, f) in &mut v.files {
        if !shape.checked_at {
            f.checked_at = None;
        }
        if !shape.digest {
            f.digest_hex = "0".repeat(128);
        }
        if !shape.size {
            f.size = 0;
        }
        if !shape.mode {
            f.mode = 420;
        }
    }
    v
}

/// The header member's length, as the server sends it (`u32` length, JSON,
/// file-section prefix, one gzip member).
/// The header member's length as 2eea632 made it (zlib-rs at `level`), so
/// the composition compares like with like across shapes.
fn header_member(json: &[u8], level: u32) -> (usize, Duration) {
    let raw = header_raw(json);
    let s = Instant::now();
    let m = member(&raw, level);
    (m.len(), s.elapsed())
}

/// `u32 BE len | JSON | file-section prefix`, as the header member holds it.
fn header_raw(json: &[u8]) -> Vec<u8> {
    let len = u32::try_from(json.len()).unwrap_or_else(|_| fail("header over 4 GiB"));
    let mut raw = len.to_be_bytes().to_vec();
    raw.extend_from_slice(json);
    raw.extend_from_slice(&[0, 0, 0, 2, b'{', b'}']);
    raw
}

/// The fastest of three runs of `f` (the machine is shared), and its output.
fn best_of_3(mut f: impl FnMut() -> usize) -> (usize, Duration) {
    (0..3)
        .map(|_| {
            let s = Instant::now();
            let len = f();
            (len, s.elapsed())
        })
        .min_by_key(|(_, took)| *took)
        .unwrap_or_default()
}

fn mb(b: u64) -> f64 {
    b as f64 / 1e6
}

fn print(storage: &Path, lockfile: Option<&Path>, lock: &Value, t: &Totals) {
    let tb = t.tarball_bytes as f64;
    println!(
        "\n{}: {} tarballs, {:.2} MB; {} files, {} frames (each (digest, exec) once), {:.2} MB framed uncompressed; lockfile: {}\n",
        storage.display(),
        t.packages,
        tb / 1e6,
        t.files,
        t.frames,
        mb(t.raw),
        lockfile.map_or("none".into(), |p| p.display().to_string()),
    );
    let headers = print_composition(lock, t);
    print_header_codecs(lock, t);
    print_codecs(t);
    print_bodies(t, &headers);
}

/// Table 1; returns the header member sizes per shape at level 6.
fn print_composition(lock: &Value, t: &Totals) -> Vec<(RowShape, usize)> {
    let headers: Vec<(RowShape, usize)> = SHAPES
        .iter()
        .map(|s| (*s, header_member(&header(lock, t, *s), 6).0))
        .collect();
    let full = headers[0].1 as u64;
    let price = |i: usize| full.saturating_sub(headers[i].1 as u64);
    let rows = price(1);
    let fields = price(2) + price(3) + price(4) + price(5) + price(6);
    let members = t.codecs[0].bytes;
    let framing = members.saturating_sub(t.prefixes_6 + t.contents_6);
    let end = member(&[0u8; 64], 6).len() as u64;
    let total = full + members + end;
    println!("| part of the body (level 6, compressed) | MB | share |");
    println!("| --- | ---: | ---: |");
    let row = |name: &str, b: u64| {
        println!(
            "| {name} | {:.3} | {:.1}% |",
            mb(b),
            100.0 * b as f64 / total as f64
        )
    };
    row("header: lockfile + stats", full - rows);
    row("header: rows, `manifest`", price(2));
    row("header: rows, `checkedAt`", price(3));
    row("header: rows, hex digests", price(4));
    row("header: rows, sizes", price(5));
    row("header: rows, modes", price(6));
    row(
        "header: rows, paths, keys, record framing (rest)",
        rows.saturating_sub(fields),
    );
    row("frames: 64-byte digest + length + flag", t.prefixes_6);
    row("frames: file contents", t.contents_6);
    row(
        "gzip framing + joint-compression difference (members - parts)",
        framing,
    );
    row("end member", end);
    println!(
        "| **body** | **{:.3}** | {:.3}x tarballs |\n",
        mb(total),
        total as f64 / t.tarball_bytes as f64
    );
    headers
}

/// Table 1b: the header member (made per request) per encoder.
fn print_header_codecs(lock: &Value, t: &Totals) {
    let json = header(lock, t, FULL);
    let raw = header_raw(&json);
    println!(
        "| header member encoding ({:.2} MB JSON, per request) | MB | time (best of 3) |",
        mb(json.len() as u64)
    );
    println!("| --- | ---: | ---: |");
    for level in [6u32, 9] {
        let (len, took) = best_of_3(|| member(&raw, level).len());
        println!(
            "| zlib-rs level {level} (2eea632: level 6) | {:.3} | {} ms |",
            mb(len as u64),
            took.as_millis()
        );
    }
    for level in [6u32, 9, 12] {
        let (len, took) = best_of_3(|| {
            pnpr_protocol::header_member(&json, level)
                .unwrap_or_else(|e| fail(&format!("header: {e}")))
                .len()
        });
        println!(
            "| libdeflate level {level} (`header_member` now: level 6) | {:.3} | {} ms |",
            mb(len as u64),
            took.as_millis()
        );
    }
    println!();
}

/// Table 2: the file section per member encoding.
fn print_codecs(t: &Totals) {
    let tb = t.tarball_bytes as f64;
    let raw_mb = mb(t.raw);
    println!("| file section encoding | MB | x tarballs | compress time | ms per MB in |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    let row = |name: String, l: &Layout| {
        println!(
            "| {name} | {:.3} | {:.3} | {} ms | {:.1} |",
            mb(l.bytes),
            l.bytes as f64 / tb,
            l.cpu.as_millis(),
            l.cpu.as_secs_f64() * 1e3 / raw_mb
        )
    };
    row("one member per file, zlib-rs level 6".into(), &t.per_file_6);
    for (c, l) in CODECS.iter().zip(&t.codecs) {
        row(format!("one member per package, {}", c.name()), l);
    }
    let cap = pnpr_protocol::WHOLE_BUFFER_CAP >> 20;
    for (name, l) in [
        "`MemberWriter` as shipped: libdeflate 6",
        "background re-compression: libdeflate 12",
        "idle-time pass as implemented (whole groups 12, partial groups 6)",
        "every package as its whole stored member at 12 (repeats frames)",
    ]
    .iter()
    .zip(&t.capped)
    {
        row(format!("{name} up to {cap} MiB framed, zlib-rs 6 above"), l);
    }
    println!(
        "(partial groups: {} packages, {:.3} framed MB of {:.3}; \
         their whole members would repeat {:.3} framed MB)",
        t.partial.0,
        mb(t.partial.1),
        mb(t.raw),
        mb(t.partial.2)
    );
    row(
        "one stream over all frames, zlib-rs level 6".into(),
        &t.one_stream_6,
    );
    println!();
}

/// Table 3: header variant (level 6, per request) + file section.
fn print_bodies(t: &Totals, headers: &[(RowShape, usize)]) {
    let end = member(&[0u8; 64], 6).len() as u64;
    let sections: Vec<(String, u64)> = [0usize, 1, 3, 4, 6]
        .iter()
        .map(|&i| (CODECS[i].name(), t.codecs[i].bytes))
        .chain([
            ("`MemberWriter` as shipped".to_owned(), t.capped[0].bytes),
            (
                "background libdeflate 12, capped".to_owned(),
                t.capped[1].bytes,
            ),
            (
                "idle-time pass as implemented (whole 12, partial 6)".to_owned(),
                t.capped[2].bytes,
            ),
            (
                "whole stored members at 12, frames repeated".to_owned(),
                t.capped[3].bytes,
            ),
        ])
        .collect();
    println!("| header rows | members | body MB | x tarballs |");
    println!("| --- | --- | ---: | ---: |");
    for &h in &[0usize, 3, 2, 7] {
        for (name, bytes) in &sections {
            let body = headers[h].1 as u64 + bytes + end;
            println!(
                "| {} | {name} | {:.3} | {:.4} |",
                headers[h].0.name,
                mb(body),
                body as f64 / t.tarball_bytes as f64
            );
        }
    }
}
