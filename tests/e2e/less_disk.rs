//! Less disk (issue 13, RFC 0008 §4) end to end with pnpm 11.5.2: after a
//! real install through `/v1/install` the server keeps, per package, its
//! index row and its one stored member — no raw copy of the files and no
//! tarball fetched only for the install — so its package stores stay
//! within 1.5x the tarballs' bytes; a second client that already has part
//! of the files gets the rest cut from the stored members, byte for byte;
//! and a later `/` GET of such a tarball still answers it (fetched from the
//! uplink, then kept).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use pnpr_e2e::install::{section_frames, Frame};
use pnpr_e2e::publish::compressible_text;
use pnpr_e2e::{Http, Pnpr, Project, RegistryMock};
use sha2::{Digest, Sha512};

fn config(mock: &RegistryMock) -> String {
    format!(
        "uplinks:\n  mock:\n    url: {}\npackages:\n  '**':\n    access: $all\n    publish: $authenticated\n    proxy: mock\n",
        mock.url
    )
}

struct Published {
    name: String,
    integrity: String,
    tarball_len: u64,
    files: Vec<(String, Vec<u8>)>,
}

async fn publish(
    http: &Http,
    mock: &RegistryMock,
    token: &str,
    name: &str,
    files: Vec<(String, Vec<u8>)>,
) -> Published {
    let refs: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_slice()))
        .collect();
    let tgz = pnpr_e2e::publish::tarball(name, "1.0.0", &refs);
    let integrity = pnpr_e2e::publish(http, &mock.url, token, name, "1.0.0", &refs).await;
    assert_eq!(
        pnpr_e2e::publish::sri(&tgz),
        integrity,
        "the published tarball is the one measured"
    );
    Published {
        name: name.to_string(),
        integrity,
        tarball_len: tgz.len() as u64,
        files,
    }
}

/// Every file of `p` in the project's `node_modules`, byte for byte.
fn installed(project: &Project, p: &Published) {
    for (path, content) in &p.files {
        let file = project.path().join("node_modules").join(&p.name).join(path);
        let got = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert!(got == *content, "{} differs", file.display());
    }
}

fn walk(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(meta) = e.metadata() else { continue };
            if meta.is_dir() {
                stack.push(e.path());
            } else if meta.is_file() {
                out.push((e.path(), meta.len()));
            }
        }
    }
    out
}

/// Bytes of the package stores: tarball CAS, and the file store (members,
/// index rows, and raw files if any were kept), temp files left out.
struct Disk {
    tarballs: Vec<(PathBuf, u64)>,
    raw_files: Vec<(PathBuf, u64)>,
    store: u64,
}

impl Disk {
    fn of(pnpr: &Pnpr) -> Disk {
        let cache = pnpr.data_dir().join(".pnpr-cache");
        let store_dir = cache.join("files");
        let store = walk(&store_dir)
            .into_iter()
            .filter(|(p, _)| {
                let inside = p.strip_prefix(&store_dir).expect("under the store");
                !inside.components().any(|c| c.as_os_str() == "tmp")
            })
            .map(|(_, len)| len)
            .sum();
        Disk {
            tarballs: walk(&cache.join("tarballs")),
            raw_files: walk(&store_dir.join("files")),
            store,
        }
    }

    fn total(&self) -> u64 {
        self.store + self.tarballs.iter().map(|t| t.1).sum::<u64>()
    }
}

/// A real pnpm 11.5.2 install through `/v1/install`; the packages are
/// published by the test, so younger than pnpm's default release age.
fn install_through(project: &Project, pnpr: &Pnpr) {
    project.write_file("pnpm-workspace.yaml", "minimumReleaseAge: 0\n");
    project.pnpm11_install_through(&pnpr.url).assert_success();
}

fn frame_of(content: &[u8]) -> Frame {
    (Sha512::digest(content).into(), false)
}

#[tokio::test]
async fn server_disk_stays_within_one_and_a_half_tarballs_and_partial_packages_are_cut_from_members(
) {
    let mock = RegistryMock::start();
    let token = mock.private_token().await;
    let http = Http::new();
    const KB: usize = 1024;
    // `two` shares `lib/shared.js` with `one`: a client holding `one` lacks
    // only part of `two`.
    let shared = compressible_text(300 * KB, "shared");
    let one = publish(
        &http,
        &mock,
        &token,
        "@pnpm.e2e/less-disk-one",
        vec![
            ("lib/shared.js".into(), shared.clone()),
            ("one.js".into(), compressible_text(400 * KB, "one")),
        ],
    )
    .await;
    let two = publish(
        &http,
        &mock,
        &token,
        "@pnpm.e2e/less-disk-two",
        vec![
            ("lib/shared.js".into(), shared.clone()),
            ("two.js".into(), compressible_text(500 * KB, "two")),
            ("README.md".into(), compressible_text(20 * KB, "readme")),
        ],
    )
    .await;
    let pnpr = Pnpr::start(&config(&mock), &[]);

    // A cold install by a real client.
    let first = Project::with_dependencies(&[(&one.name, "1.0.0"), (&two.name, "1.0.0")]);
    install_through(&first, &pnpr);
    installed(&first, &one);
    installed(&first, &two);

    let disk = Disk::of(&pnpr);
    let tarball_bytes = one.tarball_len + two.tarball_len;
    assert!(
        disk.raw_files.is_empty(),
        "raw files kept: {:?}",
        disk.raw_files
    );
    assert!(
        disk.tarballs.is_empty(),
        "install-only tarballs kept: {:?}",
        disk.tarballs
    );
    let ratio = disk.total() as f64 / tarball_bytes as f64;
    eprintln!(
        "server disk {} bytes for {tarball_bytes} tarball bytes: {ratio:.3}x",
        disk.total()
    );
    assert!(
        disk.total() * 2 <= tarball_bytes * 3,
        "server disk {} bytes > 1.5x the tarballs' {tarball_bytes}: {:#?}",
        disk.total(),
        walk(&pnpr.data_dir().join(".pnpr-cache"))
    );
    // And it still holds everything: the members are the packages.
    assert!(
        disk.store >= tarball_bytes * 9 / 10,
        "{} < {tarball_bytes}",
        disk.store
    );

    // On the wire: a client holding `one` gets exactly `two`'s other files,
    // cut from `two`'s stored member (shared.js is not sent again).
    let mut body = pnpr_e2e::install_body(
        &pnpr.url,
        &[(&two.name, "1.0.0"), (&one.name, "1.0.0")],
        std::slice::from_ref(&one.integrity),
        serde_json::json!({}),
    );
    body.as_object_mut().map(|o| o.remove("minimumReleaseAge"));
    let partial = pnpr_e2e::post_install(&pnpr.url, &body, None).await;
    assert_eq!(partial.status, 200, "{}", partial.text);
    let got: Vec<Frame> = section_frames(&partial.rest);
    let got_set: HashSet<Frame> = got.iter().copied().collect();
    assert_eq!(got_set.len(), got.len(), "a file was framed twice");
    let two_manifest = serde_json::json!({"name": two.name, "version": "1.0.0"}).to_string();
    let expected: HashSet<Frame> = [
        frame_of(&two.files[1].1),
        frame_of(&two.files[2].1),
        frame_of(two_manifest.as_bytes()),
    ]
    .into();
    assert_eq!(got_set, expected);
    assert_eq!(partial.header["stats"]["packagesToFetch"], 1);
    assert_eq!(partial.header["stats"]["filesAlreadyInCafs"], 1);

    // The same through a real client: a second project (its own store)
    // installs `one`, then adds `two`, and gets every byte of it.
    let second = Project::with_dependencies(&[(&one.name, "1.0.0")]);
    install_through(&second, &pnpr);
    installed(&second, &one);
    second.write_file(
        "package.json",
        &serde_json::json!({"name": "pnpr-e2e-second", "version": "1.0.0", "private": true,
            "dependencies": {one.name.as_str(): "1.0.0", two.name.as_str(): "1.0.0"}})
        .to_string(),
    );
    install_through(&second, &pnpr);
    installed(&second, &one);
    installed(&second, &two);
    // Serving partial packages wrote nothing.
    assert_eq!(Disk::of(&pnpr).tarballs.len(), 0);

    // A `/` GET of a tarball the server never kept: fetched from the
    // uplink, the right bytes, and kept from then on (control: the CAS is
    // the `/` route's cache, as before).
    let url = format!("{}{}/-/less-disk-one-1.0.0.tgz", pnpr.url, one.name);
    let got = http.get(&url).await;
    got.assert_status(200);
    assert_eq!(pnpr_e2e::publish::sri(&got.body), one.integrity);
    assert_eq!(Disk::of(&pnpr).tarballs.len(), 1);
}
