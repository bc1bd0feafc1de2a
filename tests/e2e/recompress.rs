//! The idle-time member recompression (RFC 0010 §4b, issue 13) end to end
//! with pnpm 11.5.2: after a real install through `/v1/install` the idle
//! server re-encodes the stored members at libdeflate 12, the member files
//! get smaller but each still inflates to exactly the same frames under the
//! same name, and a second client with a cold store installs the same
//! lockfile and the same files byte for byte. Control: with
//! `installAccelerator.recompress.enabled: false` no member changes.
//! Stored cuts (RFC 0010 §4c): the partial group of a package whose file an
//! earlier package of the body carried is kept, re-encoded by the pass too,
//! and served to the next cold client, which gets the same files.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use pnpr_e2e::publish::compressible_text;
use pnpr_e2e::{Http, Pnpr, Project, RegistryMock};

/// Bound on the wait for the pass (the brief's 30 s).
const PASS_TIMEOUT: Duration = Duration::from_secs(30);

fn config(mock: &RegistryMock, recompress: &str) -> String {
    format!(
        "uplinks:\n  mock:\n    url: {}\npackages:\n  '**':\n    access: $all\n    publish: $authenticated\n    proxy: mock\ninstallAccelerator:\n  recompress: {recompress}\n",
        mock.url
    )
}

struct Published {
    name: String,
    files: Vec<(String, Vec<u8>)>,
}

/// Publishes two packages of compressible text to the mock.
async fn publish_two(mock: &RegistryMock, prefix: &str) -> Vec<Published> {
    let token = mock.private_token().await;
    let http = Http::new();
    let mut out = Vec::new();
    for (name, files) in [
        (
            format!("@pnpm.e2e/{prefix}-big"),
            vec![
                (
                    "lib/big.js".to_string(),
                    compressible_text(700 << 10, "big"),
                ),
                (
                    "README.md".to_string(),
                    compressible_text(30 << 10, "readme"),
                ),
            ],
        ),
        (
            format!("@pnpm.e2e/{prefix}-small"),
            vec![(
                "index.js".to_string(),
                compressible_text(200 << 10, "small"),
            )],
        ),
    ] {
        let refs: Vec<(&str, &[u8])> = files
            .iter()
            .map(|(p, c)| (p.as_str(), c.as_slice()))
            .collect();
        pnpr_e2e::publish(&http, &mock.url, &token, &name, "1.0.0", &refs).await;
        out.push(Published { name, files });
    }
    out
}

/// Every stored member: file name → bytes.
fn members(pnpr: &Pnpr) -> BTreeMap<PathBuf, Vec<u8>> {
    stored(pnpr, "members")
}

/// Every file under `frames/<kind>/`: file name → bytes.
fn stored(pnpr: &Pnpr, kind: &str) -> BTreeMap<PathBuf, Vec<u8>> {
    let dir = pnpr
        .data_dir()
        .join(".pnpr-cache")
        .join("files")
        .join("frames")
        .join(kind);
    let mut out = BTreeMap::new();
    for fanout in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        for member in std::fs::read_dir(fanout.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let path = member.path();
            let bytes = std::fs::read(&path).expect("member");
            out.insert(path, bytes);
        }
    }
    out
}

fn total(members: &BTreeMap<PathBuf, Vec<u8>>) -> usize {
    members.values().map(Vec::len).sum()
}

fn inflate(gz: &[u8]) -> Vec<u8> {
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(gz)
        .read_to_end(&mut raw)
        .expect("a member inflates");
    raw
}

fn install_through(project: &Project, pnpr: &Pnpr) {
    project.write_file("pnpm-workspace.yaml", "minimumReleaseAge: 0\n");
    project.pnpm11_install_through(&pnpr.url).assert_success();
}

/// Every published file in the project's `node_modules`, byte for byte.
fn installed(project: &Project, packages: &[Published]) {
    for p in packages {
        for (path, content) in &p.files {
            let file = project.path().join("node_modules").join(&p.name).join(path);
            let got = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            assert!(got == *content, "{} differs", file.display());
        }
    }
}

/// One sample of `/-/metrics` (`name` or `name{labels}`), if present.
async fn metric(http: &Http, pnpr: &Pnpr, sample: &str) -> Option<f64> {
    let resp = http.get(&format!("{}-/metrics", pnpr.url)).await;
    resp.assert_status(200);
    resp.text().lines().find_map(|line| {
        let rest = line.strip_prefix(sample)?;
        rest.strip_prefix(' ')?.trim().parse().ok()
    })
}

fn deps(packages: &[Published]) -> Vec<(&str, &str)> {
    packages
        .iter()
        .map(|p| (p.name.as_str(), "1.0.0"))
        .collect()
}

/// Waits (at most [`PASS_TIMEOUT`]) until the pass has replaced at least
/// `replaced` members or cuts and has nothing pending.
async fn wait_for_pass(http: &Http, pnpr: &Pnpr, replaced: f64) {
    let started = Instant::now();
    loop {
        let done = metric(
            http,
            pnpr,
            "pnpr_recompress_members_total{outcome=\"replaced\"}",
        )
        .await
        .unwrap_or(0.0);
        let pending = metric(http, pnpr, "pnpr_recompress_pending").await;
        if done >= replaced && pending == Some(0.0) {
            break;
        }
        assert!(
            started.elapsed() < PASS_TIMEOUT,
            "the pass did not finish in {PASS_TIMEOUT:?} (replaced {done}, pending {pending:?})\n{}",
            pnpr.logs()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    eprintln!("pass done after {:?}", started.elapsed());
}

/// A second client with a cold store installs the same lockfile as
/// `first` and every published file byte for byte.
fn a_second_cold_client_matches(first: &Project, pnpr: &Pnpr, packages: &[Published]) {
    let second = Project::with_dependencies(&deps(packages));
    install_through(&second, pnpr);
    installed(&second, packages);
    assert_eq!(
        second.read_file("pnpm-lock.yaml"),
        first.read_file("pnpm-lock.yaml")
    );
}

fn same_frames(before: &BTreeMap<PathBuf, Vec<u8>>, after: &BTreeMap<PathBuf, Vec<u8>>) {
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>(),
        "member names changed"
    );
    for (path, old) in before {
        assert!(
            inflate(old) == inflate(&after[path]),
            "{} inflates to other frames",
            path.display()
        );
    }
}

#[tokio::test]
async fn idle_server_recompresses_members_and_a_cold_client_installs_the_same_files() {
    let mock = RegistryMock::start();
    let packages = publish_two(&mock, "recompress").await;
    let pnpr = Pnpr::start(&config(&mock, "{enabled: true, level: 12}"), &[]);
    let http = Http::new();

    let first = Project::with_dependencies(&deps(&packages));
    install_through(&first, &pnpr);
    installed(&first, &packages);
    // Taken at once: the pass starts only after 5 s without a request.
    let before = members(&pnpr);
    assert_eq!(before.len(), 2, "one member per package");

    wait_for_pass(&http, &pnpr, 2.0).await;

    let after = members(&pnpr);
    same_frames(&before, &after);
    for (path, old) in &before {
        assert!(
            after[path].len() < old.len(),
            "{}: {} -> {} bytes",
            path.display(),
            old.len(),
            after[path].len()
        );
    }
    let saved_before = metric(&http, &pnpr, "pnpr_recompress_bytes_before_total")
        .await
        .expect("bytes before");
    let saved_after = metric(&http, &pnpr, "pnpr_recompress_bytes_after_total")
        .await
        .expect("bytes after");
    assert_eq!(saved_before as usize, total(&before));
    assert_eq!(saved_after as usize, total(&after));
    eprintln!(
        "members {} -> {} bytes ({:.2}%)",
        total(&before),
        total(&after),
        100.0 * (total(&after) as f64 / total(&before) as f64 - 1.0)
    );
    assert!(pnpr.logs().contains("recompress: member replaced"));

    // A second client with a cold store: the same lockfile, the same files.
    a_second_cold_client_matches(&first, &pnpr, &packages);
    // Serving them did not change the members, and the pass is not
    // repeated for them (nothing pending, nothing re-encoded).
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(members(&pnpr), after);
    assert_eq!(
        metric(
            &http,
            &pnpr,
            "pnpr_recompress_members_total{outcome=\"replaced\"}"
        )
        .await,
        Some(2.0)
    );
    assert_eq!(
        metric(
            &http,
            &pnpr,
            "pnpr_recompress_members_total{outcome=\"failed\"}"
        )
        .await,
        None
    );
}

#[tokio::test]
async fn with_the_knob_off_no_member_changes() {
    let mock = RegistryMock::start();
    let packages = publish_two(&mock, "recompress-off").await;
    let pnpr = Pnpr::start(&config(&mock, "{enabled: false}"), &[]);
    let http = Http::new();

    let first = Project::with_dependencies(&deps(&packages));
    install_through(&first, &pnpr);
    installed(&first, &packages);
    let before = members(&pnpr);
    assert_eq!(before.len(), 2);
    // Idle well past the grace (5 s) and a poll or two.
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(members(&pnpr), before, "a member changed with the pass off");
    assert_eq!(
        metric(
            &http,
            &pnpr,
            "pnpr_recompress_members_total{outcome=\"replaced\"}"
        )
        .await,
        None
    );
    assert!(
        pnpr.logs().contains("member recompression is off"),
        "{}",
        pnpr.logs()
    );
    a_second_cold_client_matches(&first, &pnpr, &packages);
}

/// Publishes a large package and a smaller one sharing its `LICENSE`: the
/// larger goes first in a body, so the smaller one's group is partial.
async fn publish_sharing(mock: &RegistryMock) -> Vec<Published> {
    let token = mock.private_token().await;
    let http = Http::new();
    let license = compressible_text(8 << 10, "license");
    let mut out = Vec::new();
    for (name, main, len) in [
        ("@pnpm.e2e/cuts-large", "lib/large.js", 2 << 20),
        ("@pnpm.e2e/cuts-small", "index.js", 150 << 10),
    ] {
        let files = vec![
            (main.to_string(), compressible_text(len, name)),
            ("LICENSE".to_string(), license.clone()),
        ];
        let refs: Vec<(&str, &[u8])> = files
            .iter()
            .map(|(p, c)| (p.as_str(), c.as_slice()))
            .collect();
        pnpr_e2e::publish(&http, &mock.url, &token, name, "1.0.0", &refs).await;
        out.push(Published {
            name: name.to_string(),
            files,
        });
    }
    out
}

fn modified(path: &std::path::Path) -> std::time::SystemTime {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .expect("mtime")
}

#[tokio::test]
async fn a_partial_group_is_kept_recompressed_and_served_to_the_next_cold_client() {
    let mock = RegistryMock::start();
    let packages = publish_sharing(&mock).await;
    let pnpr = Pnpr::start(&config(&mock, "{enabled: true, level: 12}"), &[]);
    let http = Http::new();

    let first = Project::with_dependencies(&deps(&packages));
    install_through(&first, &pnpr);
    installed(&first, &packages);
    let cuts = stored(&pnpr, "cuts");
    assert_eq!(cuts.len(), 1, "the small package's partial group is kept");
    let (cut_path, cut) = cuts.into_iter().next().expect("one cut");
    let frames = inflate(&cut);
    let small = &packages[1].files[0].1;
    assert!(
        frames.windows(small.len()).any(|w| w == small.as_slice()),
        "the cut holds the small package's own file"
    );
    let license = &packages[1].files[1].1;
    assert!(
        !frames
            .windows(license.len())
            .any(|w| w == license.as_slice()),
        "the cut leaves out the file the large package carried"
    );

    // The pass re-encodes the two members and the cut.
    wait_for_pass(&http, &pnpr, 3.0).await;
    let dense = std::fs::read(&cut_path).expect("the cut is still there");
    assert!(dense.len() < cut.len(), "{} -> {}", cut.len(), dense.len());
    assert!(inflate(&dense) == frames, "same frames after the pass");

    // The next cold client gets the stored cut (marked used) and the same
    // files and lockfile.
    let used_before = modified(&cut_path);
    tokio::time::sleep(Duration::from_millis(50)).await;
    a_second_cold_client_matches(&first, &pnpr, &packages);
    assert!(
        modified(&cut_path) > used_before,
        "the stored cut was served"
    );
    assert_eq!(stored(&pnpr, "cuts").len(), 1, "no second copy");
}
