//! The registry-mock fixture corpus (`fixtures/projects/*`): listing it and
//! copying a fixture into a fresh [`Project`], shared by every parity test
//! (`/v1/install`, the v0 resolve protocol) so they all read the same files.
//!
//! Invariant: a copy holds the fixture's files except its lockfiles and
//! `*.expected.json` notes, so every client resolves from the manifests.

use std::path::{Path, PathBuf};

use crate::Project;

/// `fixtures/projects`.
pub fn fixtures_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/projects")
}

/// Every fixture folder with a `package.json`, sorted.
pub fn fixture_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(fixtures_root())
        .expect("fixtures/projects exists")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("package.json").is_file())
        .collect();
    dirs.sort();
    dirs
}

/// The fixture's folder name.
pub fn fixture_name(fixture: &Path) -> String {
    fixture
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .to_string()
}

fn walk(dir: &Path, base: &Path, out: &mut Vec<(String, String)>) {
    for e in std::fs::read_dir(dir).expect("read fixture").flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(&p, base, out);
        } else if let Ok(text) = std::fs::read_to_string(&p) {
            let rel = p
                .strip_prefix(base)
                .expect("prefix")
                .to_string_lossy()
                .to_string();
            out.push((rel, text));
        }
    }
}

/// A project holding a copy of the fixture's files (lockfiles excluded),
/// with `npmrc` as its `.npmrc` when given.
pub fn project_from(fixture: &Path, npmrc: Option<&str>) -> Project {
    let pkg: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture.join("package.json")).expect("package.json"),
    )
    .expect("fixture package.json is JSON");
    let project = Project::new(&pkg, npmrc);
    let mut files = Vec::new();
    walk(fixture, fixture, &mut files);
    for (rel, text) in files {
        if rel == ".npmrc" {
            // The fixture's own settings first, then the caller's lines.
            project.write_file(&rel, &format!("{text}\n{}", npmrc.unwrap_or_default()));
        } else if rel != "package.json"
            && !rel.ends_with("pnpm-lock.yaml")
            && !rel.ends_with(".expected.json")
        {
            project.write_file(&rel, &text);
        }
    }
    project
}

/// The names a project's own code can `require`: its registry
/// dependencies and devDependencies (not workspace, link or file ones).
pub fn direct_dependency_names(pkg: &serde_json::Value) -> Vec<String> {
    let mut names = Vec::new();
    for key in ["dependencies", "devDependencies"] {
        if let Some(map) = pkg.get(key).and_then(|m| m.as_object()) {
            for (name, spec) in map {
                let s = spec.as_str().unwrap_or_default();
                if !s.starts_with("workspace:")
                    && !s.starts_with("link:")
                    && !s.starts_with("file:")
                {
                    names.push(name.clone());
                }
            }
        }
    }
    names
}
