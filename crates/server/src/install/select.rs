//! Stage 4: which packages of a resolved tree this client is served —
//! everything but optional-only packages for another platform (pnpm keeps
//! every platform's optional binaries in the lockfile, the client skips
//! them) — and, after fetching, without optional packages whose tarball
//! could not be had (pnpm tolerates those too).
//!
//! Works on the typed lockfile (`pnpr_lockfile`), never on raw JSON.

use std::collections::{HashMap, HashSet};

use pnpr_lockfile::Lockfile;

use super::Resolved;
use crate::catalog::PackageClaim;
use crate::state::AppState;

/// The packages one response serves.
pub(crate) struct Selection {
    /// Served packages the client's store lacks (these are authorized and
    /// made available); packages it already has are neither served nor
    /// checked (spec §4).
    pub(crate) serve: Vec<PackageClaim>,
    /// Every package listed in the response's stats and index diff.
    all: Vec<PackageClaim>,
    /// `name@version` of optional-only packages.
    optional: HashSet<String>,
}

fn id(p: &PackageClaim) -> String {
    format!("{}@{}", p.name, p.version)
}

pub(super) fn servable(resolved: &Resolved, req: &pnpr_protocol::InstallRequest) -> Selection {
    let lockfile = &resolved.tree.lockfile;
    let optional = optional_only_packages(lockfile);
    let all: Vec<PackageClaim> = resolved
        .tree
        .packages
        .iter()
        .filter(|p| !optional.contains(&id(p)) || installable_here(lockfile, &id(p), req))
        .cloned()
        .collect();
    let have: HashSet<&str> = req.store_integrities.iter().map(String::as_str).collect();
    let serve = all
        .iter()
        .filter(|p| !have.contains(p.integrity.as_str()))
        .cloned()
        .collect();
    Selection {
        serve,
        all,
        optional,
    }
}

impl Selection {
    /// Served packages whose files the server does not hold yet.
    pub(crate) fn missing(&self, state: &AppState) -> Vec<&PackageClaim> {
        self.serve
            .iter()
            .filter(|p| !state.accelerator.files.has_index(&p.integrity))
            .collect()
    }

    pub(crate) fn is_optional(&self, p: &PackageClaim) -> bool {
        self.optional.contains(&id(p))
    }

    /// Removes optional packages whose tarball could not be fetched.
    pub(super) fn drop_optional(&mut self, dropped: Vec<String>) {
        if dropped.is_empty() {
            return;
        }
        let dropped: HashSet<String> = dropped.into_iter().collect();
        self.all.retain(|p| !dropped.contains(&id(p)));
        self.serve.retain(|p| !dropped.contains(&id(p)));
    }

    pub(super) fn package_refs(&self) -> Vec<pnpr_protocol::PackageRef> {
        self.all
            .iter()
            .map(|p| pnpr_protocol::PackageRef {
                integrity: p.integrity.clone(),
                pkg_id: id(p),
            })
            .collect()
    }
}

/// Package ids (`name@version`) every snapshot of which is optional.
pub(super) fn optional_only_packages(lockfile: &Lockfile) -> HashSet<String> {
    let mut all: HashMap<&str, bool> = HashMap::new();
    for (key, snap) in &lockfile.snapshots {
        let id = key.split('(').next().unwrap_or(key);
        *all.entry(id).or_insert(true) &= snap.optional;
    }
    all.into_iter()
        .filter(|(_, o)| *o)
        .map(|(id, _)| id.to_string())
        .collect()
}

/// npm's `os`/`cpu`/`libc` rules against the client's platform (from the
/// request; libc is assumed glibc on Linux, pnpm's usual detection).
pub(super) fn installable_here(
    lockfile: &Lockfile,
    id: &str,
    req: &pnpr_protocol::InstallRequest,
) -> bool {
    let Some(info) = lockfile.packages.get(id) else {
        return true;
    };
    let os = req.os.as_deref();
    let libc = (os == Some("linux")).then_some("glibc");
    platform_ok(&info.os, os)
        && platform_ok(&info.cpu, req.arch.as_deref())
        && platform_ok(&info.libc, libc)
}

/// npm's `os`/`cpu`/`libc` rules of a version's manifest against a
/// platform (`None` = any): the prefetchers skip what the client would not
/// install.
pub(super) fn manifest_platform_ok(
    manifest: &serde_json::Value,
    os: Option<&str>,
    cpu: Option<&str>,
    libc: Option<&str>,
) -> bool {
    let list = |k: &str| -> Vec<String> {
        manifest
            .get(k)
            .and_then(serde_json::Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    platform_ok(&list("os"), os)
        && platform_ok(&list("cpu"), cpu)
        && platform_ok(&list("libc"), libc)
}

pub(super) fn platform_ok(list: &[String], current: Option<&str>) -> bool {
    let Some(current) = current else {
        return true;
    };
    if list.iter().any(|e| e.strip_prefix('!') == Some(current)) {
        return false;
    }
    let mut positives = list.iter().filter(|e| !e.starts_with('!')).peekable();
    positives.peek().is_none() || positives.any(|e| e == current || e == "any")
}

/// Resolver inputs for the request's projects. pnpm 11.5.2 sends only each
/// project's dir and dependency maps, not its name, so a `workspace:`
/// dependency is matched to the project whose directory name equals the
/// dependency's unscoped name (`packages/b` for `b` or `@s/b`).
pub(super) fn project_inputs(
    req: &pnpr_protocol::InstallRequest,
) -> Vec<pnpr_resolver::ProjectInput> {
    let names = workspace_names(req);
    req.projects
        .iter()
        .map(|p| pnpr_resolver::ProjectInput {
            dir: p.dir.clone(),
            name: names.get(&p.dir).cloned().unwrap_or_default(),
            version: String::new(),
            dependencies: p.dependencies.clone(),
            dev_dependencies: p.dev_dependencies.clone(),
            optional_dependencies: p.optional_dependencies.clone(),
            // Sent by pnpm 12 on v0; never by pnpm 11.5.2 (then empty).
            peer_dependencies: p.peer_dependencies.clone(),
        })
        .collect()
}

/// Project dir → the name `workspace:` dependencies call it by.
fn workspace_names(req: &pnpr_protocol::InstallRequest) -> HashMap<String, String> {
    let basename = |dir: &str| dir.rsplit('/').next().unwrap_or(dir).to_string();
    let mut names = HashMap::new();
    for p in &req.projects {
        let deps = p
            .dependencies
            .iter()
            .chain(&p.dev_dependencies)
            .chain(&p.optional_dependencies);
        for (alias, spec) in deps {
            if !spec.starts_with("workspace:") {
                continue;
            }
            let bare = alias.rsplit('/').next().unwrap_or(alias);
            let mut matches = req
                .projects
                .iter()
                .filter(|q| q.dir != "." && basename(&q.dir) == bare);
            if let (Some(target), None) = (matches.next(), matches.next()) {
                names
                    .entry(target.dir.clone())
                    .or_insert_with(|| alias.clone());
            }
        }
    }
    names
}
