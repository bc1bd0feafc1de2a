//! criterion micro-benchmarks of pnpr's hot paths: semver matching,
//! packument parse + abbreviation, msgpack store-index encoding, tarball
//! unpack + hash into the CAFS, `/v1/install` response framing, and a
//! resolver walk over registry-mock's packuments held in memory.
//!
//! Invariant guarded: inputs are real fixture data (registry-mock's storage
//! from `tests/.deps`) or deterministic synthetic data built once outside
//! the timed closure, so a figure measures the code path and not I/O setup.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use base64::Engine;
use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use futures_util::future::BoxFuture;
use pnpr_protocol::{encode_index, FileMeta, IndexValue, InlineBody};
use pnpr_resolver::{MetadataSource, ProjectInput, ResolveError, ResolveOptions};
use serde_json::Value;
use sha2::{Digest, Sha512};

fn storage() -> &'static Path {
    &pnpr_e2e::Deps::get().registry_mock_storage
}

/// `(name, packument dir)` of every package in registry-mock's storage.
fn packages() -> Vec<(String, std::path::PathBuf)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(storage()).expect("storage").flatten() {
        let n = e.file_name().to_string_lossy().to_string();
        if n.starts_with('@') {
            for s in std::fs::read_dir(e.path()).expect("scope").flatten() {
                out.push((format!("{n}/{}", s.file_name().to_string_lossy()), s.path()));
            }
        } else if e.path().is_dir() {
            out.push((n, e.path()));
        }
    }
    out.retain(|(_, d)| d.join("package.json").is_file());
    out.sort();
    out
}

/// A registry-mock packument blown up to `n` versions (real packuments of
/// popular packages carry hundreds of versions).
fn big_packument(n: usize) -> Vec<u8> {
    let text = std::fs::read(
        storage()
            .join("@pnpm.e2e")
            .join("pkg-with-1-dep")
            .join("package.json"),
    )
    .expect("packument");
    let mut doc: Value = serde_json::from_slice(&text).expect("json");
    let template = doc["versions"]
        .as_object()
        .and_then(|v| v.values().next().cloned())
        .expect("a version");
    let mut versions = serde_json::Map::new();
    let mut time = serde_json::Map::new();
    for i in 0..n {
        let v = format!("{}.{}.{}", i / 100, (i / 10) % 10, i % 10);
        let mut m = template.clone();
        m["version"] = Value::from(v.clone());
        m["description"] = Value::from("a package used to benchmark packument handling ".repeat(4));
        versions.insert(v.clone(), m);
        time.insert(v, Value::from("2020-01-01T00:00:00.000Z"));
    }
    doc["versions"] = Value::Object(versions);
    doc["time"] = Value::Object(time);
    serde_json::to_vec(&doc).expect("serialize")
}

fn semver(c: &mut Criterion) {
    let versions: Vec<nodejs_semver::Version> = (0..300)
        .map(|i| format!("{}.{}.{}", i / 100, (i / 10) % 10, i % 10))
        .chain(["1.0.0-beta.1".to_string(), "2.0.0-rc.0".to_string()])
        .map(|v| nodejs_semver::Version::parse(v).expect("version"))
        .collect();
    let ranges = [
        "^1.2.3",
        "~0.4.1",
        ">=1.0.0 <2.0.0 || ^2.5",
        "1.x",
        "*",
        "2.9.9",
    ];
    c.bench_function("semver: parse 6 ranges", |b| {
        b.iter(|| {
            for r in ranges {
                black_box(nodejs_semver::Range::parse(black_box(r)).expect("range"));
            }
        })
    });
    let parsed: Vec<_> = ranges
        .iter()
        .map(|r| nodejs_semver::Range::parse(r).expect("range"))
        .collect();
    c.bench_function("semver: max satisfying of 302 versions x 6 ranges", |b| {
        b.iter(|| {
            for r in &parsed {
                black_box(versions.iter().filter(|v| v.satisfies(r)).max());
            }
        })
    });
}

fn packument(c: &mut Criterion) {
    let mut g = c.benchmark_group("packument");
    for n in [10usize, 300] {
        let bytes = big_packument(n);
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        g.bench_function(
            format!("parse, {n} versions ({} KB)", bytes.len() / 1024),
            |b| b.iter(|| black_box(pnpr_packument::parse(black_box(&bytes)).expect("parse"))),
        );
        let doc = pnpr_packument::parse(&bytes).expect("parse");
        g.bench_function(format!("abbreviate, {n} versions"), |b| {
            b.iter(|| black_box(pnpr_packument::abbreviate(black_box(&doc))))
        });
        g.bench_function(
            format!("parse + abbreviate + serialize, {n} versions"),
            |b| {
                b.iter(|| {
                    let d = pnpr_packument::parse(&bytes).expect("parse");
                    black_box(serde_json::to_vec(&pnpr_packument::abbreviate(&d)).expect("ser"))
                })
            },
        );
    }
    g.finish();
}

fn index_value(files: usize) -> IndexValue {
    IndexValue {
        requires_build: Some(false),
        manifest: Some(serde_json::json!({"name": "bench", "version": "1.0.0",
            "dependencies": {"a": "^1.0.0", "b": "~2.1.0"}})),
        algo: "sha512".into(),
        files: (0..files)
            .map(|i| {
                (
                    format!("lib/dir{}/file{i}.js", i % 17),
                    FileMeta {
                        digest_hex: hex::encode(Sha512::digest(i.to_le_bytes())),
                        mode: if i % 13 == 0 { 493 } else { 420 },
                        size: 1000 + i as u64,
                        checked_at: Some(1_700_000_000_000.0 + i as f64),
                    },
                )
            })
            .collect(),
    }
}

fn msgpack(c: &mut Criterion) {
    for files in [10usize, 1000] {
        let v = index_value(files);
        c.bench_function(&format!("encode_index: {files} files"), |b| {
            b.iter(|| black_box(encode_index(black_box(&v))))
        });
    }
}

fn cafs(c: &mut Criterion) {
    // The largest tarball of the fixture registry.
    let tgz = packages()
        .iter()
        .flat_map(|(_, d)| std::fs::read_dir(d).into_iter().flatten().flatten())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tgz"))
        .max_by_key(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
        .map(|e| std::fs::read(e.path()).expect("tgz"))
        .expect("a tarball");
    let integrity = format!(
        "sha512-{}",
        base64::engine::general_purpose::STANDARD.encode(Sha512::digest(&tgz))
    );
    let limits = pnpr_cafs::Limits::default();
    let mut g = c.benchmark_group("cafs");
    g.throughput(Throughput::Bytes(tgz.len() as u64));
    g.bench_function(
        format!("add_tarball ({} bytes tgz), fresh store", tgz.len()),
        |b| {
            b.iter_batched(
                || {
                    let dir = tempfile::tempdir().expect("tempdir");
                    let store = pnpr_cafs::FileStore::open(dir.path()).expect("store");
                    (dir, store)
                },
                |(dir, store)| {
                    black_box(
                        store
                            .add_tarball(&integrity, &tgz[..], &limits)
                            .expect("add"),
                    );
                    drop(store);
                    dir
                },
                BatchSize::PerIteration,
            )
        },
    );
    g.finish();
}

fn framing(c: &mut Criterion) {
    // 500 JS-like files of 4 KiB: text that compresses like real sources.
    let files: Vec<(Vec<u8>, [u8; 64])> = (0..500)
        .map(|i| {
            let text = format!(
                "'use strict';\nmodule.exports = function f{i}(a, b) {{ return a + b * {i}; }};\n"
            )
            .repeat(60);
            let digest: [u8; 64] = Sha512::digest(text.as_bytes()).into();
            (text.into_bytes(), digest)
        })
        .collect();
    let total: usize = files.iter().map(|f| f.0.len()).sum();
    let header = br#"{"lockfile":{},"missing":[]}"#;
    let mut g = c.benchmark_group("framing");
    g.throughput(Throughput::Bytes(total as u64));
    for level in [1u32, pnpr_protocol::DEFAULT_GZIP_LEVEL, 9] {
        g.bench_function(format!("InlineBody 500 files, gzip level {level}"), |b| {
            b.iter(|| {
                let mut body = InlineBody::new(header, level).expect("new");
                for (content, digest) in &files {
                    body.frame(digest, false, content).expect("frame");
                }
                black_box(body.finish().expect("finish"))
            })
        });
    }
    g.finish();
}

struct MemSource(HashMap<String, Arc<Value>>);

impl MetadataSource for MemSource {
    fn packument<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Arc<Value>, ResolveError>> {
        Box::pin(async move {
            self.0
                .get(name)
                .cloned()
                .ok_or_else(|| ResolveError::NotFound(name.to_string()))
        })
    }
}

fn resolver(c: &mut Criterion) {
    let docs: HashMap<String, Arc<Value>> = packages()
        .into_iter()
        .filter_map(|(name, dir)| {
            let bytes = std::fs::read(dir.join("package.json")).ok()?;
            let doc = pnpr_packument::parse(&bytes).ok()?;
            Some((name, Arc::new(pnpr_packument::abbreviate(&doc))))
        })
        .collect();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/projects/bench-large");
    let pkg: Value = serde_json::from_slice(
        &std::fs::read(fixture.join("package.json")).expect("bench-large package.json"),
    )
    .expect("json");
    let deps: BTreeMap<String, String> = pkg["dependencies"]
        .as_object()
        .expect("dependencies")
        .iter()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
        .collect();
    let projects = vec![ProjectInput {
        dir: ".".into(),
        name: "bench-large".into(),
        version: "1.0.0".into(),
        dependencies: deps,
        ..Default::default()
    }];
    let source = MemSource(docs);
    let opts = ResolveOptions {
        now_ms: 1_900_000_000_000,
        ..Default::default()
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let first = rt
        .block_on(pnpr_resolver::resolve(&projects, &source, &opts))
        .expect("bench-large resolves from registry-mock's packuments");
    let n = first.packages.len();
    c.bench_function(
        &format!("resolve bench-large ({n} packages), in-memory packuments"),
        |b| {
            b.iter(|| {
                black_box(
                    rt.block_on(pnpr_resolver::resolve(&projects, &source, &opts))
                        .expect("resolve"),
                )
            })
        },
    );
}

criterion_group!(benches, semver, packument, msgpack, cafs, framing, resolver);
criterion_main!(benches);
