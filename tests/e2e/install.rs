//! `POST /v1/install` end to end with the one real client of that protocol,
//! pnpm 11.5.2 on Node 22: lockfile parity with a direct install over the
//! fixture corpus, warm-store diffs checked on the wire, policy denials and
//! hostile tarballs.

#[path = "fake_upstream.rs"]
mod fake_upstream;

use std::path::Path;

use fake_upstream::{FakeUpstream, Reply};
use pnpr_e2e::fixtures::{direct_dependency_names, fixture_dirs, fixture_name, project_from};
use pnpr_e2e::install::{section_frames, Frame};
use pnpr_e2e::{Http, Pnpr, Project, RegistryMock};

fn proxy_config(upstream: &str, packages: &str) -> String {
    format!("uplinks:\n  up:\n    url: {upstream}\npackages:\n{packages}")
}

const OPEN: &str = "  '**':\n    access: $all\n    publish: $authenticated\n    proxy: up\n";

/// Fixtures whose lockfile is known to differ from pnpm's, each for a
/// documented peer-resolution subtlety the resolver does not reproduce yet
/// (see `crates/resolver/tests/parity.rs`). Reported, not fatal; every other
/// fixture must match byte for byte.
const KNOWN_DIVERGENT: &[&str] = &[];

// The corpus in two shards, so the test binary runs them side by side
// (each fixture is one pnpm run after another; the machine has two cores).
#[test]
fn lockfile_parity_with_direct_pnpm_over_the_corpus_shard_0() {
    parity_over_shard(0);
}

#[test]
fn lockfile_parity_with_direct_pnpm_over_the_corpus_shard_1() {
    parity_over_shard(1);
}

fn parity_over_shard(shard: usize) {
    let all = fixture_dirs();
    assert!(
        all.len() >= 25,
        "the corpus needs at least 25 projects, found {}",
        all.len()
    );
    let fixtures: Vec<_> = all.iter().skip(shard).step_by(2).collect();
    let mock = RegistryMock::start();
    let pnpr = Pnpr::start(&proxy_config(&mock.url, OPEN), &[]);
    let mut failures = Vec::new();
    for fixture in &fixtures {
        let name = fixture_name(fixture);
        let direct = project_from(fixture, None);
        let out = direct.pnpm11(&["install", "--lockfile-only", "--registry", &mock.url]);
        if !out.success() {
            failures.push(format!("{name}: direct pnpm failed:\n{out}"));
            continue;
        }
        let expected = direct.read_file("pnpm-lock.yaml");

        let through = project_from(fixture, None);
        // Two client-side switches, neither about resolution:
        // - pnpm 11.5.2 crashes after a successful pnpr install in a project
        //   with a pnpm-workspace.yaml ("Cannot read properties of undefined
        //   (reading 'filter')": its pnpr path hands no
        //   `resolutionPolicyViolations` to the manifest-update step, which
        //   runs only when saving), so don't save;
        // - pnpm 11 fails a full install whose deps have unapproved build
        //   scripts (ERR_PNPM_IGNORED_BUILDS); the direct run is lockfile-only
        //   and never gets there, so make that a warning here too.
        let out = through.pnpm11(&[
            "install",
            "--config.save=false",
            "--config.strict-dep-builds=false",
            "--registry",
            &pnpr.url,
            "--pnpr-server",
            &pnpr.url,
        ]);
        if !out.success() {
            failures.push(format!("{name}: install through pnpr failed:\n{out}"));
            continue;
        }
        let got = through.read_file("pnpm-lock.yaml");
        if got != expected && KNOWN_DIVERGENT.contains(&name.as_str()) {
            eprintln!("{name}: known divergence from pnpm, lockfiles differ");
        } else if got != expected {
            failures.push(format!(
                "{name}: lockfiles differ\n--- direct ---\n{expected}\n--- through pnpr ---\n{got}"
            ));
            continue;
        }
        let pkg: serde_json::Value =
            serde_json::from_str(&through.read_file("package.json")).expect("json");
        for dep in direct_dependency_names(&pkg) {
            let out = through.node_require(&format!("{dep}/package.json"));
            if !out.success() {
                failures.push(format!("{name}: {dep} not linked:\n{out}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} fixtures failed:\n\n{}\n\n--- pnpr logs ---\n{}",
        failures.len(),
        fixtures.len(),
        failures.join("\n\n"),
        pnpr.logs()
    );
}

/// The integrities in a pnpm 11 store, as the client sends them.
fn store_integrities(store: &Path) -> Vec<String> {
    let db = rusqlite::Connection::open(store.join("v11").join("index.db")).expect("index.db");
    let mut stmt = db.prepare("SELECT key FROM package_index").expect("query");
    let keys: Vec<String> = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .expect("rows")
        .flatten()
        .collect();
    let mut out: Vec<String> = keys
        .iter()
        .filter_map(|k| k.split('\t').next())
        .filter(|i| i.starts_with("sha512-"))
        .map(str::to_string)
        .collect();
    out.sort();
    out.dedup();
    out
}

/// POSTs a /v1/install body and returns (header JSON, bytes after the header).
async fn post_install(url: &str, body: &serde_json::Value) -> (serde_json::Value, Vec<u8>) {
    let answer = pnpr_e2e::post_install(url, body, None).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    (answer.header, answer.rest)
}

#[tokio::test]
async fn warm_store_receives_no_frames_for_packages_it_has() {
    let mock = RegistryMock::start();
    let pnpr = Pnpr::start(&proxy_config(&mock.url, OPEN), &[]);
    let deps = [
        ("@pnpm.e2e/pkg-with-1-dep", "^100.0.0"),
        ("@pnpm.e2e/foo", "100.0.0"),
    ];
    let first = Project::with_dependencies(&deps);
    first
        .pnpm11(&[
            "install",
            "--registry",
            &pnpr.url,
            "--pnpr-server",
            &pnpr.url,
        ])
        .assert_success();
    first
        .node_require("@pnpm.e2e/pkg-with-1-dep")
        .assert_success();
    let integrities = store_integrities(&first.pnpm_store());
    assert_eq!(integrities.len(), 3, "{integrities:?}");

    // Cold: everything is framed.
    let body = |have: &[String]| {
        serde_json::json!({
            "projects": [{"dir": ".", "dependencies": {"@pnpm.e2e/pkg-with-1-dep": "^100.0.0", "@pnpm.e2e/foo": "100.0.0"}}],
            "registry": pnpr.url, "authHeaders": {}, "nodeVersion": "22.23.3", "os": "linux", "arch": "x64",
            "minimumReleaseAge": 1440, "storeIntegrities": have, "inlineFiles": true
        })
    };
    let (header, rest) = post_install(&pnpr.url, &body(&[])).await;
    let stats = &header["stats"];
    assert_eq!(stats["totalPackages"], 3, "{header}");
    assert_eq!(stats["packagesToFetch"], 3);
    assert!(stats["filesToDownload"].as_u64().unwrap_or(0) > 0);
    assert_eq!(header["indexEntries"].as_array().map(Vec::len), Some(3));
    assert!(rest.len() > 70);

    // Warm: the client has every package, so nothing but the empty section.
    let (header, rest) = post_install(&pnpr.url, &body(&integrities)).await;
    let stats = &header["stats"];
    assert_eq!(stats["totalPackages"], 3, "{header}");
    assert_eq!(stats["alreadyInStore"], 3);
    assert_eq!(stats["packagesToFetch"], 0);
    assert_eq!(stats["filesToDownload"], 0);
    assert_eq!(stats["downloadBytes"], 0);
    assert_eq!(header["indexEntries"].as_array().map(Vec::len), Some(0));
    let mut empty = vec![0, 0, 0, 2, b'{', b'}'];
    empty.extend_from_slice(&[0u8; 64]);
    assert_eq!(rest, empty);

    // And the real client with that warm store installs fine.
    let mut second = Project::with_dependencies(&deps);
    second.set_env(
        "pnpm_config_store_dir",
        &first.pnpm_store().to_string_lossy(),
    );
    second
        .pnpm11(&[
            "install",
            "--registry",
            &pnpr.url,
            "--pnpr-server",
            &pnpr.url,
        ])
        .assert_success();
    second
        .node_require("@pnpm.e2e/pkg-with-1-dep")
        .assert_success();
}

/// RFC 0008: one gzip member per package, each (digest, executable) framed
/// once per response, files the client has never sent, also when a package
/// is only partly new (its member is then made for that response).
#[tokio::test]
async fn one_member_per_package_and_every_file_once() {
    use std::collections::HashSet;
    let mock = RegistryMock::start();
    let pnpr = Pnpr::start(&proxy_config(&mock.url, OPEN), &[]);
    let deps = [
        ("@pnpm.e2e/pkg-with-1-dep", "^100.0.0"),
        ("@pnpm.e2e/foo", "100.0.0"),
    ];
    let ask = |deps: &[(&str, &str)], have: &[String]| {
        pnpr_e2e::install_body(&pnpr.url, deps, have, serde_json::json!({}))
    };
    let cold = pnpr_e2e::post_install(&pnpr.url, &ask(&deps, &[]), None).await;
    assert_eq!(cold.status, 200, "{}", cold.text);
    let all = section_frames(&cold.rest);
    let all_set: HashSet<Frame> = all.iter().copied().collect();
    assert_eq!(all_set.len(), all.len(), "a file was framed twice");
    let stats = &cold.header["stats"];
    assert_eq!(stats["filesToDownload"], all.len() as u64, "{stats}");
    assert_eq!(stats["packagesToFetch"], 3, "{stats}");
    // Header member + one per package + end member, for more frames.
    assert_eq!(cold.gzip_members, 3 + 2);
    assert!(all.len() > 3, "{all:?}");

    // Warm server (stored members): the same frames.
    let warm = pnpr_e2e::post_install(&pnpr.url, &ask(&deps, &[]), None).await;
    let warm_set: HashSet<Frame> = section_frames(&warm.rest).into_iter().collect();
    assert_eq!(warm_set, all_set);

    // The client has foo: none of foo's files is sent, everything else is.
    let foo = pnpr_e2e::post_install(&pnpr.url, &ask(&deps[1..], &[]), None).await;
    let foo_set: HashSet<Frame> = section_frames(&foo.rest).into_iter().collect();
    let key = foo.header["indexEntries"][0]["key"].as_str().expect("key");
    let foo_integrity = key.split('\t').next().expect("integrity").to_string();
    let partial = pnpr_e2e::post_install(&pnpr.url, &ask(&deps, &[foo_integrity]), None).await;
    let got: Vec<Frame> = section_frames(&partial.rest);
    let got_set: HashSet<Frame> = got.iter().copied().collect();
    assert_eq!(got_set.len(), got.len(), "a file was framed twice");
    let expected: HashSet<Frame> = all_set.difference(&foo_set).copied().collect();
    assert!(!expected.is_empty());
    assert_eq!(got_set, expected);
    assert_eq!(partial.header["stats"]["packagesToFetch"], 2);
}

#[test]
fn bins_are_linked_and_lockfile_only_writes_no_modules() {
    let mock = RegistryMock::start();
    let pnpr = Pnpr::start(&proxy_config(&mock.url, OPEN), &[]);
    let project = Project::with_dependencies(&[("@pnpm.e2e/hello-world-js-bin", "*")]);
    project
        .pnpm11(&[
            "install",
            "--registry",
            &pnpr.url,
            "--pnpr-server",
            &pnpr.url,
        ])
        .assert_success();
    assert!(
        project.exists("node_modules/.bin/hello-world-js-bin"),
        "bin not linked"
    );

    let only = Project::with_dependencies(&[("@pnpm.e2e/pkg-with-1-dep", "^100.0.0")]);
    only.pnpm11(&[
        "install",
        "--lockfile-only",
        "--registry",
        &pnpr.url,
        "--pnpr-server",
        &pnpr.url,
    ])
    .assert_success();
    assert!(only.exists("pnpm-lock.yaml"));
    assert!(!only.exists("node_modules/@pnpm.e2e/pkg-with-1-dep"));
}

#[test]
fn a_denied_package_fails_the_install_with_the_servers_message() {
    let mock = RegistryMock::start();
    let packages = format!("  '@pnpm.e2e/foo':\n    access: alice\n    proxy: up\n{OPEN}");
    let pnpr = Pnpr::start(&proxy_config(&mock.url, &packages), &[]);
    let project = Project::with_dependencies(&[("@pnpm.e2e/foo", "100.0.0")]);
    let out = project.pnpm11(&[
        "install",
        "--registry",
        &pnpr.url,
        "--pnpr-server",
        &pnpr.url,
    ]);
    out.assert_failure();
    let text = out.combined();
    assert!(
        text.contains("401") && text.contains("@pnpm.e2e/foo"),
        "{text}"
    );
}

/// A gzipped tarball with one entry whose raw name is `name`.
fn hostile_tarball(name: &[u8], contents: &[u8]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let pkg = br#"{"name":"@x/evil","version":"1.0.0"}"#;
    let mut h = tar::Header::new_old();
    h.set_path("package/package.json").expect("path");
    h.set_size(pkg.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    builder.append(&h, &pkg[..]).expect("append");
    let mut h = tar::Header::new_old();
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    h.set_size(contents.len() as u64);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    builder.append(&h, contents).expect("append");
    let tar = builder.into_inner().expect("tar");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &tar).expect("gzip");
    gz.finish().expect("gzip")
}

#[test]
fn a_tarball_escaping_its_folder_is_refused() {
    let tgz = hostile_tarball(b"package/../../escaped.js", b"module.exports = 1\n");
    let integrity = fake_upstream::sri(&tgz);
    let holder = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let h2 = std::sync::Arc::clone(&holder);
    let up = FakeUpstream::start(move |path| {
        if path.ends_with(".tgz") {
            Reply::bytes(tgz.clone())
        } else {
            let base = h2.lock().map(|s| s.clone()).unwrap_or_default();
            Reply::json(&fake_upstream::packument(
                "@x/evil",
                &format!("{base}@x/evil/-/evil-1.0.0.tgz"),
                &integrity,
            ))
        }
    });
    *holder.lock().expect("lock") = up.url.clone();
    let pnpr = Pnpr::start(&proxy_config(&up.url, OPEN), &[]);
    let project = Project::with_dependencies(&[("@x/evil", "1.0.0")]);
    let out = project.pnpm11(&[
        "install",
        "--registry",
        &pnpr.url,
        "--pnpr-server",
        &pnpr.url,
    ]);
    out.assert_failure();
    let text = out.combined();
    assert!(
        text.contains("escaped.js") || text.contains(".."),
        "unclear error: {text}"
    );
    assert!(!project.path().join("../escaped.js").exists());
}

#[tokio::test]
async fn an_input_lockfile_younger_than_minimum_release_age_is_a_violation() {
    use base64::Engine;
    let pnpr = Pnpr::start(
        "packages:\n  '**':\n    access: $all\n    publish: $authenticated\n",
        &[],
    );
    let http = Http::new();
    let r = http
        .put_json(
            &format!("{}-/user/org.couchdb.user:alice", pnpr.url),
            &serde_json::json!({"name": "alice", "password": "alice-pw"}),
            None,
        )
        .await;
    let token = r.json()["token"].as_str().expect("token").to_string();
    let tgz = pnpr_e2e::publish::tarball("fresh-pkg", "1.0.0", &[]);
    let integrity = fake_upstream::sri(&tgz);
    let publish = serde_json::json!({
        "_id": "fresh-pkg", "name": "fresh-pkg",
        "dist-tags": {"latest": "1.0.0"},
        "versions": {"1.0.0": {"name": "fresh-pkg", "version": "1.0.0",
            "dist": {"integrity": integrity, "tarball": format!("{}fresh-pkg/-/fresh-pkg-1.0.0.tgz", pnpr.url)}}},
        "_attachments": {"fresh-pkg-1.0.0.tgz": {"content_type": "application/octet-stream",
            "data": base64::engine::general_purpose::STANDARD.encode(&tgz), "length": tgz.len()}}
    });
    let r = http
        .put_json(&format!("{}fresh-pkg", pnpr.url), &publish, Some(&token))
        .await;
    assert!(r.status == 200 || r.status == 201, "{}", r.text());

    let lockfile = serde_json::json!({
        "lockfileVersion": "9.0",
        "settings": {"autoInstallPeers": true, "excludeLinksFromLockfile": false},
        "importers": {".": {"dependencies": {"fresh-pkg": {"specifier": "1.0.0", "version": "1.0.0"}}}},
        "packages": {"fresh-pkg@1.0.0": {"resolution": {"integrity": integrity}}},
        "snapshots": {"fresh-pkg@1.0.0": {}}
    });
    let body = |age: u64| {
        serde_json::json!({
            "projects": [{"dir": ".", "dependencies": {"fresh-pkg": "1.0.0"}}],
            "registry": pnpr.url, "authHeaders": {}, "minimumReleaseAge": age,
            "lockfile": lockfile, "storeIntegrities": [], "inlineFiles": true
        })
    };
    let (header, rest) = post_install(&pnpr.url, &body(1440)).await;
    let v = &header["violations"][0];
    assert_eq!(v["name"], "fresh-pkg", "{header}");
    assert_eq!(v["version"], "1.0.0");
    assert_eq!(v["code"], "MINIMUM_RELEASE_AGE_VIOLATION");
    assert!(header.get("lockfile").is_none());
    let mut empty = vec![0, 0, 0, 2, b'{', b'}'];
    empty.extend_from_slice(&[0u8; 64]);
    assert_eq!(rest, empty);
    // Without the age rule the same request installs.
    let (header, _) = post_install(&pnpr.url, &body(0)).await;
    assert!(
        header["lockfile"]["packages"]["fresh-pkg@1.0.0"].is_object(),
        "{header}"
    );
}

/// Deterministic text-like bytes (words from a small dictionary), so the
/// content compresses like source code rather than like noise.
fn wordy(seed: u64, len: usize) -> Vec<u8> {
    const WORDS: [&str; 16] = [
        "const ",
        "return ",
        "function",
        "(value)",
        " => ",
        "module.exports",
        ";\n",
        "if (",
        "} else {",
        "undefined",
        "this.",
        "options",
        ", ",
        "require('",
        "')",
        "  ",
    ];
    let mut x = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    let mut out = Vec::with_capacity(len + 16);
    while out.len() < len {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        out.extend_from_slice(WORDS[(x >> 60) as usize].as_bytes());
    }
    out.truncate(len);
    out
}

/// A package tarball: `package.json` from `manifest`, then `files` as
/// (path, mode, content).
fn package_tarball(manifest: &serde_json::Value, files: &[(String, u32, Vec<u8>)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let pkg = serde_json::to_vec(manifest).expect("json");
    let all = std::iter::once(("package.json".to_owned(), 0o644, pkg)).chain(files.iter().cloned());
    for (path, mode, content) in all {
        let mut h = tar::Header::new_gnu();
        h.set_path(format!("package/{path}")).expect("path");
        h.set_size(content.len() as u64);
        h.set_mode(mode);
        h.set_cksum();
        builder.append(&h, content.as_slice()).expect("append");
    }
    let tar = builder.into_inner().expect("tar");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &tar).expect("gzip");
    gz.finish().expect("gzip")
}

/// Every file of the package under `dir` (not its `node_modules`, whose bin
/// shims name the project's own path) as relative path → (length, FNV-1a
/// of the content, executable).
fn tree(dir: &Path) -> std::collections::BTreeMap<String, (usize, u64, bool)> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir").flatten() {
            let p = e.path();
            let meta = std::fs::metadata(&p).expect("metadata");
            if meta.is_dir() {
                if e.file_name() != "node_modules" {
                    stack.push(p);
                }
            } else {
                let rel = p.strip_prefix(dir).expect("prefix").display().to_string();
                let exec = meta.permissions().mode() & 0o111 != 0;
                let bytes = std::fs::read(&p).expect("read");
                let fnv = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                    (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
                });
                out.insert(rel, (bytes.len(), fnv, exec));
            }
        }
    }
    out
}

/// RFC 0010: a package whose frames outgrow the whole-buffer cap (its
/// member streams through zlib-rs) and a small one (held whole, libdeflate)
/// install through pnpm 11.5.2 exactly as a direct install lays them out:
/// same lockfile, same files byte for byte, same executable bits, bins
/// linked and runnable, install scripts seen (requiresBuild), on a cold
/// server and again from its stored members.
#[test]
fn big_and_small_members_install_exactly_like_a_direct_install() {
    let big_files: Vec<(String, u32, Vec<u8>)> = (0..33)
        .map(|i| (format!("lib/part{i:02}.js"), 0o644, wordy(i, 1 << 20)))
        .chain([
            (
                "bin/big.js".to_owned(),
                0o755,
                b"#!/usr/bin/env node\nconsole.log('big ran')\n".to_vec(),
            ),
            (
                "tools/run.sh".to_owned(),
                0o755,
                b"#!/bin/sh\necho run\n".to_vec(),
            ),
        ])
        .collect();
    let framed: usize = big_files.iter().map(|(_, _, c)| c.len() + 69).sum();
    // pnpr_protocol::WHOLE_BUFFER_CAP (32 MiB): past it a member streams.
    assert!(framed > 32 << 20, "big must outgrow the whole-buffer cap");
    let big_manifest = serde_json::json!({
        "name": "@x/big", "version": "1.0.0", "bin": {"big": "bin/big.js"},
        "scripts": {"install": "node -e \"require('fs').writeFileSync('built', '1')\""},
        "dependencies": {"@x/small": "1.0.0"}
    });
    let small_manifest = serde_json::json!({
        "name": "@x/small", "version": "1.0.0", "bin": {"small": "cli.js"}
    });
    let small_files = vec![
        (
            "cli.js".to_owned(),
            0o755,
            b"#!/usr/bin/env node\nconsole.log('small ran')\n".to_vec(),
        ),
        ("index.js".to_owned(), 0o644, wordy(99, 5000)),
    ];
    let packages: Vec<(String, serde_json::Value, Vec<u8>)> = vec![
        (
            "@x/big".into(),
            big_manifest.clone(),
            package_tarball(&big_manifest, &big_files),
        ),
        (
            "@x/small".into(),
            small_manifest.clone(),
            package_tarball(&small_manifest, &small_files),
        ),
    ];
    let holder = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let h2 = std::sync::Arc::clone(&holder);
    let up = FakeUpstream::start(move |path| {
        let base = h2.lock().map(|s| s.clone()).unwrap_or_default();
        for (name, manifest, tgz) in &packages {
            let short = name.trim_start_matches("@x/");
            if path.ends_with(&format!("/{short}-1.0.0.tgz")) {
                return Reply::bytes(tgz.clone());
            }
            let lower = path.to_ascii_lowercase();
            if lower.ends_with(&format!("@x%2f{short}")) || lower.ends_with(&format!("@x/{short}"))
            {
                let mut version = manifest.clone();
                version["dist"] = serde_json::json!({
                    "tarball": format!("{base}{name}/-/{short}-1.0.0.tgz"),
                    "integrity": fake_upstream::sri(tgz),
                });
                return Reply::json(&serde_json::json!({
                    "name": name, "dist-tags": {"latest": "1.0.0"},
                    "versions": {"1.0.0": version},
                    "time": {"1.0.0": "2020-01-01T00:00:00.000Z"}
                }));
            }
        }
        Reply::status(404)
    });
    *holder.lock().expect("lock") = up.url.clone();
    let pnpr = Pnpr::start(&proxy_config(&up.url, OPEN), &[]);
    let deps = [("@x/big", "1.0.0")];
    let lenient = "--config.strict-dep-builds=false";

    let direct = Project::with_dependencies(&deps);
    let out = direct.pnpm11(&["install", lenient, "--registry", &up.url]);
    out.assert_success();
    let direct_text = out.combined();
    let expected_lock = direct.read_file("pnpm-lock.yaml");
    let store_dir = |p: &Project, name: &str| {
        p.path().join(format!(
            "node_modules/.pnpm/@x+{name}@1.0.0/node_modules/@x/{name}"
        ))
    };
    for round in ["cold server", "warm server"] {
        let through = Project::with_dependencies(&deps);
        let out = through.pnpm11(&[
            "install",
            "--config.save=false",
            lenient,
            "--registry",
            &pnpr.url,
            "--pnpr-server",
            &pnpr.url,
        ]);
        assert!(
            out.success(),
            "{round}: {out}\n--- pnpr logs ---\n{}",
            pnpr.logs()
        );
        assert_eq!(
            through.read_file("pnpm-lock.yaml"),
            expected_lock,
            "{round}"
        );
        for name in ["big", "small"] {
            assert_eq!(
                tree(&store_dir(&through, name)),
                tree(&store_dir(&direct, name)),
                "{round}: @x/{name} differs from the direct install"
            );
        }
        // Bins: the direct dependency's at the root, its dependency's
        // inside its own node_modules (pnpm reads that one's `bin` from
        // the index row's manifest).
        let small_bin =
            "node_modules/.pnpm/@x+big@1.0.0/node_modules/@x/big/node_modules/.bin/small";
        for bin in ["node_modules/.bin/big", small_bin] {
            assert!(direct.exists(bin), "direct: {bin}");
            assert!(through.exists(bin), "{round}: {bin} not linked");
        }
        let ran = through.node(&["node_modules/@x/big/bin/big.js"]);
        assert!(ran.stdout.contains("big ran"), "{round}: {ran}");
        // requiresBuild reached the client: pnpm records the build it
        // skipped (the script-less small is not listed), as for the direct
        // install. (Its pnpr path does not print the skipped builds.)
        assert!(
            direct_text.contains("Ignored build scripts: @x/big"),
            "{direct_text}"
        );
        let ignored = |p: &Project| {
            let m: serde_json::Value =
                serde_json::from_str(&p.read_file("node_modules/.modules.yaml")).expect("json");
            m["ignoredBuilds"].clone()
        };
        assert_eq!(
            ignored(&through),
            serde_json::json!(["@x/big@1.0.0"]),
            "{round}"
        );
        assert_eq!(ignored(&through), ignored(&direct), "{round}");
    }
}
