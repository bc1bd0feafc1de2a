//! The durable hosted store: packument rows behind a [`HostedBackend`]
//! (`<storage>/hosted.sqlite` by default, PostgreSQL when shared), tarballs
//! in `<storage>/hosted-tarballs/`.
//!
//! Invariants guarded here:
//! - every edit reads the stored document inside its own backend
//!   transaction (writers of one package are serialized there), so
//!   concurrent edits of one package compose instead of overwriting each
//!   other;
//! - a transaction that references a tarball commits only after the tarball
//!   file is durable, and it re-checks that every blob it newly references
//!   exists (blobs referenced before were checked by the commit that added
//!   them); blobs are deleted only after the commit that dropped their last
//!   reference, through [`HostedBackend::collect`] (a crash in between
//!   leaves harmless garbage);
//! - every edit of an existing package asks [`Actor::may_change`] about the
//!   document read inside its own transaction, before anything is written;
//! - the set of hosted names is this node's only cache of the rows: it is
//!   updated by this node's commits and, on a shared backend, by every
//!   other node's (see [`HostedStore::on_change`]).

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, RwLock};

use serde_json::Value;

use crate::backend::{sqlite::SqliteHosted, ChangeSink, HostedBackend, RowWrite, StoredRow};
use crate::blobs::{Blobs, StoredTarball};
use crate::doc::{self, Attachment, Permission, PreparedPublish};
use crate::ownership::{maintainer_names, Actor, Change};
use crate::{HostedError, Result};

/// A stored packument and its revision.
#[derive(Debug, Clone)]
pub struct Packument {
    pub doc: Value,
    pub rev: String,
}

/// The result of an edit that may remove the last version.
#[derive(Debug, Clone)]
pub enum UpdateOutcome {
    Updated(Packument),
    /// No version remained; the package is gone (its name is free again).
    Deleted,
}

/// The gates of a modified-packument PUT, which can only be chosen once the
/// edit's effect is known.
pub struct UpdateGate<'a> {
    /// The caller; ownership is checked against the stored maintainers.
    pub actor: &'a Actor,
    /// The `packages:` check: [`Permission::Unpublish`] for an edit that
    /// removes versions, [`Permission::Publish`] for any other edit.
    pub permission: &'a dyn Fn(Permission) -> Result<()>,
    /// Whether a user name exists (owners may only be added when it does).
    pub user_exists: &'a dyn Fn(&str) -> bool,
}

impl std::fmt::Debug for UpdateGate<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpdateGate")
            .field("actor", self.actor)
            .finish_non_exhaustive()
    }
}

/// What an edit closure decided.
enum Edit {
    Put(Value),
    /// Nothing to write; answer with the stored document.
    Keep(Value),
    Delete,
}

/// A hook told which package changed (`None`: any may have).
pub type ChangeHook = Box<dyn Fn(Option<&str>) + Send + Sync>;

/// Hosted packuments and tarballs under one storage directory.
pub struct HostedStore {
    backend: Box<dyn HostedBackend>,
    /// The names of hosted packages and the hooks of derived caches,
    /// shared with the backend's change watcher.
    derived: Arc<Derived>,
    blobs: Blobs,
}

impl std::fmt::Debug for HostedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostedStore")
            .field("backend", &self.backend)
            .field("blobs", &self.blobs)
            .finish_non_exhaustive()
    }
}

/// What this node derives from the rows: the names of hosted packages (the
/// per-request "is this hosted?" check on the read path is a set lookup,
/// not a query) and the hooks of caches outside this crate.
#[derive(Default)]
struct Derived {
    names: RwLock<HashSet<String>>,
    hooks: RwLock<Vec<ChangeHook>>,
}

impl Derived {
    fn set_hosted(&self, name: &str, hosted: bool) {
        let mut names = self.names.write().unwrap_or_else(|p| p.into_inner());
        if hosted {
            names.insert(name.to_string());
        } else {
            names.remove(name);
        }
    }

    fn notify(&self, name: Option<&str>) {
        for hook in self.hooks.read().unwrap_or_else(|p| p.into_inner()).iter() {
            hook(name);
        }
    }
}

impl ChangeSink for Derived {
    fn package(&self, name: &str, hosted: bool) {
        self.set_hosted(name, hosted);
        self.notify(Some(name));
    }

    fn all(&self, names: HashSet<String>) {
        *self.names.write().unwrap_or_else(|p| p.into_inner()) = names;
        self.notify(None);
    }
}

fn parse_doc(name: &str, body: &[u8]) -> Result<Value> {
    serde_json::from_slice::<Value>(body)
        .ok()
        .filter(Value::is_object)
        .ok_or_else(|| HostedError::Corrupt(name.to_string()))
}

impl HostedStore {
    /// Opens (creating) the embedded store under `storage`.
    pub fn open(storage: &Path) -> Result<Self> {
        std::fs::create_dir_all(storage)?;
        let backend = SqliteHosted::open(storage)?;
        Self::with_backend(storage, Box::new(backend))
    }

    /// Opens the store with its rows in `backend` (tarballs still under
    /// `storage`), and starts following other nodes' changes when the
    /// backend is shared.
    pub fn with_backend(storage: &Path, backend: Box<dyn HostedBackend>) -> Result<Self> {
        std::fs::create_dir_all(storage)?;
        let blobs = Blobs::open(&storage.join("hosted-tarballs"))?;
        let derived = Arc::new(Derived::default());
        *derived.names.write().unwrap_or_else(|p| p.into_inner()) = backend.names()?;
        backend.watch(Arc::clone(&derived) as Arc<dyn ChangeSink>)?;
        Ok(Self {
            backend,
            derived,
            blobs,
        })
    }

    /// Calls `hook` after every change of a hosted package that this node
    /// learns of from a shared backend (another node's commit, or its own
    /// as the backend reports it back), and with `None` when changes may
    /// have been missed. Derived caches outside this crate drop what they
    /// hold of that package there. Never called on the embedded backend.
    pub fn on_change(&self, hook: ChangeHook) {
        self.derived
            .hooks
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(hook);
    }

    /// Puts the shared blob bucket behind the local tarball files: publishes
    /// return only after the bucket `PUT`, local misses fill from it.
    pub fn with_blob_backend(
        mut self,
        backend: std::sync::Arc<dyn pnpr_store::BlobBackend>,
    ) -> Self {
        self.blobs.set_backend(backend);
        self
    }

    /// Whether `name` is a hosted package (it then never comes from an uplink).
    pub fn is_hosted(&self, name: &str) -> bool {
        self.derived
            .names
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(name)
    }

    /// Whether `name` is hosted, asking the backend when this node's set
    /// may lag behind it (a shared backend: published on another node a
    /// moment ago, its notice still on the way). Blocks on the backend;
    /// callers ask only when nothing else answered for the name.
    pub fn recheck(&self, name: &str) -> Result<bool> {
        if !self.backend.shared() {
            return Ok(self.is_hosted(name));
        }
        let hosted = self.backend.row(name)?.is_some();
        self.derived.set_hosted(name, hosted);
        Ok(hosted)
    }

    /// The stored packument of `name`.
    pub fn get(&self, name: &str) -> Result<Option<Packument>> {
        self.backend
            .row(name)?
            .map(|row| {
                Ok(Packument {
                    doc: parse_doc(name, &row.body)?,
                    rev: row.rev,
                })
            })
            .transpose()
    }

    /// Every hosted packument (for search).
    pub fn all(&self) -> Result<Vec<Value>> {
        self.backend
            .rows()?
            .into_iter()
            .map(|(name, body)| parse_doc(&name, &body))
            .collect()
    }

    /// The tarball `file` of package `name`, if a current version lists it.
    pub fn tarball(&self, name: &str, file: &str) -> Result<Option<StoredTarball>> {
        let Some(p) = self.get(name)? else {
            return Ok(None);
        };
        let Some((_, manifest)) = pnpr_packument::find_by_file(&p.doc, file) else {
            return Ok(None);
        };
        let Some(hex) = doc::version_blob(manifest) else {
            return Ok(None);
        };
        self.blobs.lookup(&hex)
    }

    /// Refuses early when `actor` may not make `change` to `name` as stored
    /// now (a name not hosted passes). Writes re-check inside their own
    /// transaction; this only spares a refused caller the expensive part of
    /// a request (decoding and hashing a publish body).
    pub fn precheck(&self, name: &str, actor: &Actor, change: Change) -> Result<()> {
        match self.get(name)? {
            Some(stored) => owned_by(actor, name, &stored.doc, change),
            None => Ok(()),
        }
    }

    /// Publishes new versions (see [`doc::merge_publish`]); the tarballs are
    /// durable before the row that references them commits. A first publish
    /// makes `actor` the maintainer; later ones need [`Actor::may_change`].
    pub fn publish(&self, prep: &PreparedPublish, actor: &Actor, now_ms: i64) -> Result<Packument> {
        let out = self.edit(&prep.name, &prep.attachments, |current| {
            if let Some(stored) = &current {
                owned_by(actor, &prep.name, stored, Change::Publish)?;
            }
            doc::merge_publish(current, prep, actor.user(), now_ms).map(Edit::Put)
        })?;
        out.ok_or_else(|| HostedError::Corrupt(prep.name.clone()))
    }

    /// Applies a modified-packument PUT ([`doc::apply_update`]). The gates
    /// run inside the transaction, once the edit's effect is known: the
    /// `packages:` permission, then ownership, then the existence of added
    /// maintainers.
    pub fn update(
        &self,
        name: &str,
        body: &Value,
        rev: Option<&str>,
        now_ms: i64,
        gate: &UpdateGate<'_>,
    ) -> Result<UpdateOutcome> {
        let out = self.edit(name, &[], |current| {
            let current = current.ok_or_else(|| not_found(name))?;
            let maintainers = maintainer_names(&current);
            let (next, effect) = doc::apply_update(current, body, rev, now_ms)?;
            let change = effect.change(next.is_none());
            // Removing versions is an unpublish; any other edit (deprecate,
            // tags, owners) is a publish-level change.
            (gate.permission)(if change == Change::Unpublish {
                Permission::Unpublish
            } else {
                Permission::Publish
            })?;
            gate.actor.may_change(name, &maintainers, change)?;
            if let Some(unknown) = effect
                .added_maintainers
                .iter()
                .find(|u| !(gate.user_exists)(u))
            {
                return Err(HostedError::UnknownUser(unknown.clone()));
            }
            Ok(next.map_or(Edit::Delete, Edit::Put))
        })?;
        Ok(out.map_or(UpdateOutcome::Deleted, UpdateOutcome::Updated))
    }

    /// The tarball `DELETE` that ends `npm unpublish <name>@<version>`. When
    /// the version is already gone (the usual case) this is a no-op; when it
    /// is still listed, the version is unpublished.
    pub fn remove_tarball(
        &self,
        name: &str,
        file: &str,
        rev: Option<&str>,
        actor: &Actor,
        now_ms: i64,
    ) -> Result<UpdateOutcome> {
        let out = self.edit(name, &[], |current| {
            // Even the usual no-op is refused to non-owners: it is a write.
            let current = owned_existing(actor, name, current, Change::Unpublish)?;
            doc::check_rev(&current, rev)?;
            let Some((version, _)) = pnpr_packument::find_by_file(&current, file) else {
                return Ok(Edit::Keep(current));
            };
            let version = version.to_string();
            Ok(doc::remove_version(current, &version, now_ms)?.map_or(Edit::Delete, Edit::Put))
        })?;
        Ok(out.map_or(UpdateOutcome::Deleted, UpdateOutcome::Updated))
    }

    /// `npm unpublish <name>` (whole package).
    pub fn unpublish_all(&self, name: &str, rev: Option<&str>, actor: &Actor) -> Result<()> {
        self.edit(name, &[], |current| {
            let current = owned_existing(actor, name, current, Change::Unpublish)?;
            doc::check_rev(&current, rev)?;
            Ok(Edit::Delete)
        })?;
        Ok(())
    }

    /// `npm dist-tag add`.
    pub fn set_tag(
        &self,
        name: &str,
        tag: &str,
        version: &str,
        actor: &Actor,
        now_ms: i64,
    ) -> Result<Packument> {
        self.edit_tags(name, actor, |current| {
            doc::set_tag(current, tag, version, now_ms)
        })
    }

    /// `npm dist-tag rm`.
    pub fn remove_tag(
        &self,
        name: &str,
        tag: &str,
        actor: &Actor,
        now_ms: i64,
    ) -> Result<Packument> {
        self.edit_tags(name, actor, |current| doc::remove_tag(current, tag, now_ms))
    }

    /// A dist-tag edit by an owner of an existing package.
    fn edit_tags(
        &self,
        name: &str,
        actor: &Actor,
        f: impl FnOnce(Value) -> Result<Value>,
    ) -> Result<Packument> {
        let out = self.edit(name, &[], |current| {
            let current = owned_existing(actor, name, current, Change::DistTag)?;
            f(current).map(Edit::Put)
        })?;
        out.ok_or_else(|| HostedError::Corrupt(name.to_string()))
    }

    /// The one write path: reads the stored document inside a backend
    /// transaction, lets `f` decide, makes `new_blobs` durable, writes the
    /// row and its blob references, commits, then drops unreferenced blobs.
    fn edit(
        &self,
        name: &str,
        new_blobs: &[Attachment],
        f: impl FnOnce(Option<Value>) -> Result<Edit>,
    ) -> Result<Option<Packument>> {
        let mut result = None;
        let mut old_blobs = HashSet::new();
        let committed = self.backend.transact(
            name,
            Box::new(|stored: Option<StoredRow>, blobs: HashSet<String>| {
                let prev_rev = stored.as_ref().map(|row| row.rev.clone());
                let current = stored.map(|row| parse_doc(name, &row.body)).transpose()?;
                let write = match f(current)? {
                    Edit::Put(doc) => {
                        let (p, write) =
                            self.prepare_doc(name, prev_rev.as_deref(), doc, new_blobs, &blobs)?;
                        result = Some(p);
                        write
                    }
                    Edit::Keep(doc) => {
                        result = Some(Packument {
                            doc,
                            rev: prev_rev.unwrap_or_default(),
                        });
                        RowWrite::Keep
                    }
                    Edit::Delete => RowWrite::Delete,
                };
                old_blobs = blobs;
                Ok(write)
            }),
        )?;
        if !committed {
            return Ok(result);
        }
        self.derived.set_hosted(name, result.is_some());
        // Rows every node shares decide for the bucket too; a node's own
        // rows decide only for its disk.
        let shared = self.backend.shared();
        self.backend.collect(old_blobs, &mut |hex| {
            self.blobs.remove(hex);
            if shared {
                self.blobs.remove_from_bucket(hex);
            }
        })?;
        Ok(result)
    }

    /// Inside the transaction: stamps a new revision, makes `new_blobs`
    /// durable, checks every tarball the document newly references is
    /// present, and says what to write.
    fn prepare_doc(
        &self,
        name: &str,
        prev_rev: Option<&str>,
        mut doc: Value,
        new_blobs: &[Attachment],
        referenced: &HashSet<String>,
    ) -> Result<(Packument, RowWrite)> {
        let rev = doc::next_rev(prev_rev, &doc);
        if let Some(o) = doc.as_object_mut() {
            o.insert("_rev".into(), Value::String(rev.clone()));
        }
        for blob in new_blobs {
            self.blobs.put(&blob.sha512_hex, &blob.bytes)?;
        }
        let refs = blob_refs(name, &doc)?;
        // Blobs put just above are durable already (in the bucket, when
        // there is one); only references to blobs this edit did not carry
        // are checked.
        let carried = |hex: &String| new_blobs.iter().any(|b| &b.sha512_hex == hex);
        for (_, hex) in refs
            .iter()
            .filter(|(_, hex)| !referenced.contains(hex) && !carried(hex))
        {
            if !self.blobs.durable(hex)? {
                return Err(HostedError::Corrupt(format!(
                    "{name}: a version references a missing tarball"
                )));
            }
        }
        let body = serde_json::to_vec(&doc).map_err(|_| HostedError::Corrupt(name.to_string()))?;
        let write = RowWrite::Put {
            rev: rev.clone(),
            body,
            tarballs: refs,
        };
        Ok((Packument { doc, rev }, write))
    }
}

/// The stored document of an existing package `actor` may make `change` to.
fn owned_existing(
    actor: &Actor,
    name: &str,
    current: Option<Value>,
    change: Change,
) -> Result<Value> {
    let current = current.ok_or_else(|| not_found(name))?;
    owned_by(actor, name, &current, change)?;
    Ok(current)
}

/// The ownership gate against a stored document.
fn owned_by(actor: &Actor, name: &str, stored: &Value, change: Change) -> Result<()> {
    actor.may_change(name, &maintainer_names(stored), change)
}

fn not_found(name: &str) -> HostedError {
    HostedError::NotFound(format!("package {name} not found"))
}

/// (version, sha512 hex) for every version of a document.
fn blob_refs(name: &str, doc: &Value) -> Result<Vec<(String, String)>> {
    let Some(versions) = doc.get("versions").and_then(Value::as_object) else {
        return Ok(Vec::new());
    };
    versions
        .iter()
        .map(|(v, m)| {
            doc::version_blob(m)
                .map(|hex| (v.clone(), hex))
                .ok_or_else(|| HostedError::Corrupt(format!("{name}@{v} has no sha512 integrity")))
        })
        .collect()
}

#[cfg(test)]
mod tests;
