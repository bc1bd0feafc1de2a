//! The real-world corpus on disk: the pinned projects of
//! `fixtures/real-world/<name>/` (manifests plus `update.json`, the dependency
//! the "update" mode adds) and the frozen Verdaccio storage
//! `tests/build-real-world.sh` builds from them.
//!
//! Invariant guarded: a project is only ever copied out of the fixture
//! folder (never run in place), lockfiles are never taken from it, and a
//! project without a readable `update.json` is refused up front, so every
//! project really runs all four modes.

use std::path::{Path, PathBuf};

use crate::Project;

/// What the "update" mode adds: `dependency: spec` in the `dependencies` of
/// the project at `project` (`.` = the root; a workspace project's folder).
#[derive(Debug, Clone)]
pub struct Update {
    pub project: String,
    pub dependency: String,
    pub spec: String,
}

/// One project of the corpus.
#[derive(Debug, Clone)]
pub struct CorpusProject {
    pub name: String,
    pub dir: PathBuf,
    pub update: Update,
}

/// `fixtures/real-world` of this checkout.
pub fn default_fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/real-world")
}

/// `tests/.corpus/real-world` of this checkout (holds `storage/`).
pub fn default_corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(".corpus/real-world")
}

/// Every project folder under `fixtures` (sorted by name), with its update.
pub fn load_projects(fixtures: &Path) -> Result<Vec<CorpusProject>, String> {
    let entries = std::fs::read_dir(fixtures)
        .map_err(|e| format!("cannot list {}: {e}", fixtures.display()))?;
    let mut projects = Vec::new();
    for entry in entries.flatten() {
        let dir = entry.path();
        if !dir.join("package.json").is_file() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().to_string();
        let update = read_update(&dir.join("update.json"))?;
        projects.push(CorpusProject { name, dir, update });
    }
    projects.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(projects)
}

fn read_update(path: &Path) -> Result<Update, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let doc: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let field = |key: &str| doc.get(key).and_then(|v| v.as_str()).map(str::to_string);
    match (field("dependency"), field("spec")) {
        (Some(dependency), Some(spec)) => Ok(Update {
            project: field("project").unwrap_or_else(|| ".".to_string()),
            dependency,
            spec,
        }),
        _ => Err(format!(
            "{}: needs \"dependency\" and \"spec\"",
            path.display()
        )),
    }
}

impl CorpusProject {
    /// Whether the project has a `pnpm-workspace.yaml` (workspace or settings).
    pub fn has_workspace_yaml(&self) -> bool {
        self.dir.join("pnpm-workspace.yaml").is_file()
    }

    /// A fresh client project holding a byte-for-byte copy of the fixture's
    /// manifests (no `update.json`, no lockfile).
    pub fn materialize(&self) -> Result<Project, String> {
        let project = Project::new(&serde_json::json!({}), None);
        copy_manifests(&self.dir, &self.dir, &project)?;
        Ok(project)
    }

    /// Adds the update dependency to the manifest in `project` the way a
    /// user edits it (serde_json keeps the keys in their order).
    pub fn apply_update(&self, project: &Project) -> Result<(), String> {
        let rel = Path::new(&self.update.project).join("package.json");
        let rel = rel.to_string_lossy().to_string();
        let path = project.path().join(&rel);
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut pkg: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let obj = pkg
            .as_object_mut()
            .ok_or_else(|| format!("{} is not an object", path.display()))?;
        let deps = obj
            .entry("dependencies")
            .or_insert_with(|| serde_json::json!({}));
        let deps = deps
            .as_object_mut()
            .ok_or_else(|| format!("{}: dependencies is not an object", path.display()))?;
        deps.insert(
            self.update.dependency.clone(),
            serde_json::Value::String(self.update.spec.clone()),
        );
        let out = serde_json::to_string_pretty(&pkg).map_err(|e| e.to_string())? + "\n";
        std::fs::write(&path, out).map_err(|e| format!("{}: {e}", path.display()))
    }
}

fn copy_manifests(base: &Path, dir: &Path, project: &Project) -> Result<(), String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            copy_manifests(base, &path, project)?;
            continue;
        }
        let rel = path
            .strip_prefix(base)
            .map_err(|e| e.to_string())?
            .to_string_lossy()
            .to_string();
        if rel == "update.json" || rel.ends_with("pnpm-lock.yaml") {
            continue;
        }
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        project.write_file(&rel, &text);
    }
    Ok(())
}
