use std::sync::Arc;

use super::*;

/// A gzipped npm tarball holding `package/package.json` and one file.
fn tgz(name: &str, body: &[u8]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let manifest = format!("{{\"name\":\"{name}\",\"version\":\"1.0.0\"}}");
    for (path, data) in [
        ("package/package.json", manifest.as_bytes()),
        ("package/index.js", body),
    ] {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, path, data).unwrap();
    }
    let tar = builder.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &tar).unwrap();
    gz.finish().unwrap()
}

struct Fixture {
    _dir: tempfile::TempDir,
    cas: std::path::PathBuf,
    files: pnpr_cafs::FileStore,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let cas = dir.path().join("tarballs");
        let files = pnpr_cafs::FileStore::open(&dir.path().join("files")).unwrap();
        Self {
            _dir: dir,
            cas,
            files,
        }
    }

    /// Caches a package version the way the server does: CAS + unpack.
    fn add(&self, name: &str, body: &[u8]) -> (String, std::path::PathBuf) {
        let bytes = tgz(name, body);
        let sri = ssri::Integrity::from(&bytes);
        let (algo, hex) = sri.to_hex();
        let path = self
            .cas
            .join("public")
            .join(algo.to_string())
            .join(&hex[..2])
            .join(&hex[2..]);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &bytes).unwrap();
        let integrity = sri.to_string();
        self.files
            .add_tarball(&integrity, &bytes[..], &pnpr_cafs::Limits::default())
            .unwrap();
        (integrity, path)
    }
}

fn budget(fx: &Fixture, limit: Option<u64>) -> Arc<Budget> {
    Budget::open(fx._dir.path(), &fx.cas, limit).unwrap()
}

#[test]
fn least_recently_used_goes_first_and_pins_and_shared_files_stay() {
    let fx = Fixture::new();
    let shared = vec![b's'; 4000];
    let (a, a_path) = fx.add("a", &shared);
    let (b, b_path) = fx.add("b", &vec![b'b'; 4000]);
    let (c, c_path) = fx.add("c", &vec![b'c'; 4000]);
    let unbounded = budget(&fx, None);
    let total = unbounded.report(&fx.files).unwrap().total();
    drop(unbounded);
    // Room for about two of the three.
    let limit = total * 8 / 10;
    let b_budget = budget(&fx, Some(limit));
    b_budget.touch(&a);
    std::thread::sleep(std::time::Duration::from_millis(5));
    b_budget.touch(&b);
    std::thread::sleep(std::time::Duration::from_millis(5));
    b_budget.touch(&c);
    // `a` was read first, but pinning reads it again: `b` goes.
    let pin = b_budget.pin([a.as_str()]);
    let report = b_budget.enforce(&fx.files).unwrap();
    assert!(report.total_after() <= limit, "{report}");
    assert!(a_path.exists() && fx.files.has_index(&a));
    assert!(!b_path.exists() && !fx.files.has_index(&b), "{report}");
    assert!(c_path.exists());
    // Files of kept packages can all be read from their members.
    for integrity in [&a, &c] {
        let index = fx.files.index(integrity).unwrap().unwrap();
        for f in index.files.values() {
            let content = fx.files.read_packaged(integrity, &f.digest_hex).unwrap();
            assert_eq!(content.len() as u64, f.size);
        }
    }
    // A budget nothing fits in: everything goes but the pinned unit.
    drop((pin, b_budget));
    let tiny = budget(&fx, Some(1));
    let pin = tiny.pin([a.as_str()]);
    let report = tiny.enforce(&fx.files).unwrap();
    assert_eq!(report.pinned_kept, 1, "{report}");
    assert!(a_path.exists() && fx.files.has_index(&a));
    assert!(!c_path.exists() && !fx.files.has_index(&c));
    drop(pin);
    let report = tiny.enforce(&fx.files).unwrap();
    assert_eq!(report.total_after(), 0, "{report}");
    assert!(!a_path.exists());
}

#[test]
fn access_times_survive_reopening() {
    let fx = Fixture::new();
    let (a, a_path) = fx.add("a", &vec![b'a'; 4000]);
    let (b, b_path) = fx.add("b", &vec![b'b'; 4000]);
    let total = budget(&fx, None).report(&fx.files).unwrap().total();
    {
        let first = budget(&fx, None);
        first.touch(&b);
        std::thread::sleep(std::time::Duration::from_millis(5));
        first.touch(&a);
        first.flush().unwrap();
    }
    // `a` was unpacked first but read last: `b` is the one to go.
    let second = budget(&fx, Some(total * 7 / 10));
    let report = second.enforce(&fx.files).unwrap();
    assert_eq!(report.units_evicted, 1, "{report}");
    assert!(a_path.exists());
    assert!(!b_path.exists());
    assert!(!fx.files.has_index(&b));
}

#[test]
fn what_older_versions_kept_is_purged_on_every_pass_and_members_stay() {
    let fx = Fixture::new();
    let (a, _) = fx.add("a", &vec![b'a'; 4000]);
    // A raw file and a per-file frame as an older version left them.
    let digest = "cd".repeat(64);
    let raw = fx.files.files_dir().join(&digest[..2]).join(&digest[2..]);
    let frame = fx
        .files
        .derived_dir()
        .join(&digest[..2])
        .join(format!("{}.gz", &digest[2..]));
    for (path, len) in [(&raw, 3000), (&frame, 700)] {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, vec![b'x'; len]).unwrap();
    }
    // No budget at all: still purged, and nothing else is touched.
    let unbounded = budget(&fx, None);
    let report = unbounded.enforce(&fx.files).unwrap();
    assert!(!raw.exists() && !frame.exists(), "{report}");
    assert_eq!(report.total() - report.total_after(), 3700, "{report}");
    assert_eq!(report.units_evicted, 0);
    assert!(fx.files.has_index(&a));
    let index = fx.files.index(&a).unwrap().unwrap();
    for f in index.files.values() {
        fx.files.read_packaged(&a, &f.digest_hex).unwrap();
    }
    // The member is what the store holds of `a`: a budget nothing fits in
    // takes it with the unit, and the package reads as absent.
    let tiny = budget(&fx, Some(1));
    let report = tiny.enforce(&fx.files).unwrap();
    assert_eq!(report.units_evicted, 1, "{report}");
    assert_eq!(report.total_after(), 0, "{report}");
    assert!(!fx.files.has_index(&a));
}
