//! What "the same install" means for the parity harness: a byte-identical
//! `pnpm-lock.yaml`, the same entries under `node_modules/.pnpm`, and every
//! direct dependency of every importer resolvable by `require` or `import`.
//!
//! Invariant guarded: the only thing ever ignored is what pnpm itself does
//! differently between a resolving and a headless install of the same
//! lockfile: the bins of a package's dependencies linked into the package's
//! own `node_modules/.bin` (pnpm links them only when it resolves). Files are
//! compared by relative path and size, symlinks by their target, and bin
//! shims by their text with the project's absolute path replaced and the
//! `NODE_PATH` block left out: pnpm 11.5.2's pnpr install path
//! (`mutateModulesViaPnpr`) calls its headless installer without the
//! `extraNodePaths` its own installs compute, so its shims never carry that
//! block; a client quirk no server answer can change.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sha2::Digest as _;

/// Lines of a diff excerpt shown per difference.
const EXCERPT_LINES: usize = 24;
/// Lines of context around the first difference.
const CONTEXT: usize = 3;
/// Bound on the lines of each side the excerpt aligns (quadratic table).
const ALIGN_WINDOW: usize = 400;

/// A small unified-diff excerpt of the first difference between two texts,
/// or `None` when they are byte-identical.
pub fn diff_excerpt(expected: &str, got: &str) -> Option<String> {
    if expected == got {
        return None;
    }
    let a: Vec<&str> = expected.lines().collect();
    let b: Vec<&str> = got.lines().collect();
    let prefix = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let start = prefix.saturating_sub(CONTEXT);
    let a_win = &a[start..a.len().min(prefix + ALIGN_WINDOW)];
    let b_win = &b[start..b.len().min(prefix + ALIGN_WINDOW)];
    let mut out = vec![format!("@@ -{} +{} @@", start + 1, start + 1)];
    let (mut since_change, mut changed) = (0usize, false);
    for line in align(a_win, b_win) {
        let same = line.starts_with(' ');
        changed |= !same;
        since_change = if same { since_change + 1 } else { 0 };
        out.push(line);
        // The first hunk: its changes and CONTEXT lines after them.
        if changed && since_change >= CONTEXT {
            break;
        }
        if out.len() > EXCERPT_LINES {
            out.push("…".to_string());
            break;
        }
    }
    if a.len() == b.len() && out.len() == 1 {
        out.push("(texts differ only in line endings)".to_string());
    }
    Some(out.join("\n"))
}

/// Longest-common-subsequence alignment of two short windows, as
/// ` `/`-`/`+` prefixed lines.
fn align(a: &[&str], b: &[&str]) -> Vec<String> {
    let (n, m) = (a.len(), b.len());
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            out.push(format!(" {}", a[i]));
            i += 1;
            j += 1;
        } else if j < m && (i == n || lcs[i][j + 1] >= lcs[i + 1][j]) {
            out.push(format!("+{}", b[j]));
            j += 1;
        } else {
            out.push(format!("-{}", a[i]));
            i += 1;
        }
    }
    out
}

/// Every entry under `<project>/node_modules/.pnpm` as `path -> "size N"` or
/// `path -> "-> target"`, minus dependency bins inside packages and minus
/// package folders nothing links to any more (pnpm's own `add` keeps a
/// superseded peer variant's folder, its pnpr path removes it: a client
/// difference, not a resolution one).
pub fn pnpm_tree(project: &Path) -> Result<BTreeMap<String, String>, String> {
    let root = project.join("node_modules/.pnpm");
    let mut out = BTreeMap::new();
    if root.is_dir() {
        let text = project.to_string_lossy().to_string();
        walk(&text, &root, &root, &mut out)?;
        let canonical = root
            .canonicalize()
            .map_err(|e| format!("{}: {e}", root.display()))?;
        let live = linked_packages(project, &canonical);
        out.retain(|rel, _| {
            let top = rel.split('/').next().unwrap_or_default();
            !top.contains('@') || live.contains(top)
        });
    }
    Ok(out)
}

/// The `.pnpm/<id>` folders reachable by symlinks from the importers'
/// `node_modules` (every `node_modules` outside `.pnpm`), then from each
/// reached package's own `node_modules`. Bounded: each folder once.
fn linked_packages(project: &Path, root: &Path) -> std::collections::BTreeSet<String> {
    let mut links = Vec::new();
    importer_links(project, root, &mut links, 0);
    let mut live = std::collections::BTreeSet::new();
    while let Some(target) = links.pop() {
        let Ok(rel) = target.strip_prefix(root) else {
            continue;
        };
        let Some(top) = rel.iter().next().map(|t| t.to_string_lossy().to_string()) else {
            continue;
        };
        if live.insert(top.clone()) {
            symlinks_into(&root.join(&top).join("node_modules"), root, &mut links);
        }
    }
    live
}

/// Symlinks into `.pnpm` under every folder of the project outside
/// `node_modules/.pnpm` (importers of a workspace included), not following
/// links; depth-bounded.
fn importer_links(dir: &Path, root: &Path, out: &mut Vec<PathBuf>, depth: usize) {
    if depth > 8 || dir == root {
        return;
    }
    symlinks_into(dir, root, out);
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().to_string();
        // The harness keeps the client's store, caches and home beside
        // the project: never importers.
        let harness = ["home", "npm-cache", "pnpm-store", "pnpm-cache"].contains(&name.as_str());
        if e.file_type().is_ok_and(|t| t.is_dir())
            && p != root
            && !harness
            && !name.starts_with('.')
        {
            importer_links(&p, root, out, depth + 1);
        }
    }
}

/// The resolved targets of the symlinks directly in `dir` (and in its
/// `@scope` folders) that point into `root`.
fn symlinks_into(dir: &Path, root: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        let Ok(t) = e.file_type() else { continue };
        if t.is_symlink() {
            if let Ok(target) = std::fs::canonicalize(&p) {
                if target.starts_with(root) {
                    out.push(target);
                }
            }
        } else if t.is_dir() && e.file_name().to_string_lossy().starts_with('@') {
            symlinks_into(&p, root, out);
        }
    }
}

fn walk(
    project: &str,
    root: &Path,
    dir: &Path,
    out: &mut BTreeMap<String, String>,
) -> Result<(), String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in entries.flatten() {
        let path = entry.path();
        let rel = path
            .strip_prefix(root)
            .map_err(|e| e.to_string())?
            .to_string_lossy()
            .to_string();
        if is_package_bin_dir(&rel) {
            continue;
        }
        let meta = std::fs::symlink_metadata(&path).map_err(|e| format!("{rel}: {e}"))?;
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&path).map_err(|e| format!("{rel}: {e}"))?;
            out.insert(rel, format!("-> {}", target.display()));
        } else if meta.is_dir() {
            walk(project, root, &path, out)?;
        } else if rel.split('/').any(|p| p == ".bin") {
            let text = std::fs::read_to_string(&path).map_err(|e| format!("{rel}: {e}"))?;
            out.insert(rel, shim_digest(&text, project));
        } else {
            out.insert(rel, format!("size {}", meta.len()));
        }
    }
    Ok(())
}

/// A bin shim's text without the project path and the `NODE_PATH` block,
/// as `shim <length> <sha256 prefix>`.
fn shim_digest(text: &str, project: &str) -> String {
    let mut kept = Vec::new();
    let mut in_node_path = false;
    for line in text.lines() {
        if line.starts_with("if [ -z \"$NODE_PATH\" ]") {
            in_node_path = true;
        } else if in_node_path {
            in_node_path = line != "fi";
        } else {
            kept.push(line.replace(project, "<root>"));
        }
    }
    let text = kept.join("\n");
    let digest = hex::encode(sha2::Sha256::digest(text.as_bytes()));
    format!("shim {} {}", text.len(), &digest[..16])
}

/// `<id>/node_modules/<pkg>/node_modules/.bin` (also scoped `<pkg>`): the
/// bins pnpm links into a package only in a resolving install.
fn is_package_bin_dir(rel: &str) -> bool {
    let parts: Vec<&str> = rel.split('/').collect();
    let Some(bin) = parts.iter().position(|p| *p == ".bin") else {
        return false;
    };
    bin >= 4 && parts[bin - 1] == "node_modules" && parts[1] == "node_modules"
}

/// The differences between two `.pnpm` trees as a small excerpt, or `None`.
pub fn tree_excerpt(
    expected: &BTreeMap<String, String>,
    got: &BTreeMap<String, String>,
) -> Option<String> {
    if expected == got {
        return None;
    }
    let mut lines = Vec::new();
    let (mut missing, mut extra, mut changed) = (0usize, 0usize, 0usize);
    for (path, want) in expected {
        match got.get(path) {
            None => {
                missing += 1;
                push_capped(&mut lines, format!("-{path} ({want})"));
            }
            Some(have) if have != want => {
                changed += 1;
                push_capped(&mut lines, format!("~{path}: {want} vs {have}"));
            }
            Some(_) => {}
        }
    }
    for (path, have) in got {
        if !expected.contains_key(path) {
            extra += 1;
            push_capped(&mut lines, format!("+{path} ({have})"));
        }
    }
    lines.insert(
        0,
        format!(
            "{missing} missing, {extra} extra, {changed} changed entries under node_modules/.pnpm"
        ),
    );
    Some(lines.join("\n"))
}

fn push_capped(lines: &mut Vec<String>, line: String) {
    if lines.len() < EXCERPT_LINES {
        lines.push(line);
    }
}

/// The direct dependency names of every importer in `project`: `(importer
/// dir relative to the root, name)`, workspace links left out (they are
/// checked as importers themselves).
pub fn direct_dependencies(project: &Path) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for importer in importers(project)? {
        let file = project.join(&importer).join("package.json");
        let text =
            std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
        let pkg: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", file.display()))?;
        for key in ["dependencies", "devDependencies", "optionalDependencies"] {
            for (name, spec) in pkg
                .get(key)
                .and_then(|m| m.as_object())
                .into_iter()
                .flatten()
            {
                let spec = spec.as_str().unwrap_or_default();
                if !["workspace:", "link:", "file:"]
                    .iter()
                    .any(|p| spec.starts_with(p))
                {
                    out.push((importer.clone(), name.clone()));
                }
            }
        }
    }
    Ok(out)
}

/// `.` plus every `packages/<x>` folder holding a package.json (the layout
/// the corpus' workspaces use).
fn importers(project: &Path) -> Result<Vec<String>, String> {
    let mut out = vec![".".to_string()];
    let packages = project.join("packages");
    if project.join("pnpm-workspace.yaml").is_file() && packages.is_dir() {
        let entries = std::fs::read_dir(&packages).map_err(|e| e.to_string())?;
        let mut dirs: Vec<String> = entries
            .flatten()
            .filter(|e| e.path().join("package.json").is_file())
            .map(|e| format!("packages/{}", e.file_name().to_string_lossy()))
            .collect();
        dirs.sort();
        out.extend(dirs);
    }
    Ok(out)
}

/// Node script (ESM, written next to each importer's package.json) that
/// resolves every name given on its command line: `import` resolution, else
/// `require` resolution, else a types-only package's own `package.json`
/// under `node_modules`. Prints the names that resolve none of those ways.
pub const RESOLVE_SCRIPT: &str = r#"import { createRequire } from "node:module";
import fs from "node:fs";
import path from "node:path";
const require = createRequire(import.meta.url);
const dir = path.dirname(new URL(import.meta.url).pathname);
const bad = [];
for (const name of process.argv.slice(2)) {
  let ok = false;
  try { import.meta.resolve(name); ok = true; } catch {}
  if (!ok) { try { require.resolve(name); ok = true; } catch {} }
  if (!ok) { ok = fs.existsSync(path.join(dir, "node_modules", name, "package.json")); }
  if (!ok) bad.push(name);
}
if (bad.length) { console.log(bad.join("\n")); process.exit(1); }
"#;
