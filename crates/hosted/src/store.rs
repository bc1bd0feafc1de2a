//! The durable hosted store: packument rows in `<storage>/hosted.sqlite`,
//! tarballs in `<storage>/hosted-tarballs/`.
//!
//! Invariants guarded here:
//! - one writer at a time (a mutex around the write connection, plus
//!   `BEGIN IMMEDIATE`), and every edit reads the stored document inside its
//!   own transaction, so concurrent edits of one package compose instead of
//!   overwriting each other;
//! - a transaction that references a tarball commits only after the tarball
//!   file is durable, and it re-checks that every blob its rows reference
//!   exists; blobs are deleted only after the commit that dropped their last
//!   reference (a crash in between leaves harmless garbage);
//! - `synchronous=FULL`: a committed publish survives a crash or power loss;
//! - every edit of an existing package asks [`Actor::may_change`] about the
//!   document read inside its own transaction, before anything is written.

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Mutex, MutexGuard, RwLock};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use serde_json::Value;

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

/// Hosted packuments and tarballs under one storage directory.
pub struct HostedStore {
    writer: Mutex<Connection>,
    /// Separate connection so reads never wait behind a publish's file I/O
    /// (WAL lets readers see the last committed state meanwhile).
    reader: Mutex<Connection>,
    /// Names of hosted packages: the per-request "is this hosted?" check on
    /// the read path is a set lookup, not a query.
    names: RwLock<HashSet<String>>,
    blobs: Blobs,
}

impl std::fmt::Debug for HostedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostedStore")
            .field("blobs", &self.blobs)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic mid-transaction drops (rolls back) the transaction, so the
    // connection behind a poisoned lock is still consistent.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn connect(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.busy_timeout(Duration::from_secs(10))?;
    Ok(conn)
}

fn parse_doc(name: &str, body: &[u8]) -> Result<Value> {
    serde_json::from_slice::<Value>(body)
        .ok()
        .filter(Value::is_object)
        .ok_or_else(|| HostedError::Corrupt(name.to_string()))
}

impl HostedStore {
    /// Opens (creating) the store under `storage`.
    pub fn open(storage: &Path) -> Result<Self> {
        std::fs::create_dir_all(storage)?;
        let blobs = Blobs::open(&storage.join("hosted-tarballs"))?;
        let db_path = storage.join("hosted.sqlite");
        let writer = connect(&db_path)?;
        writer.execute_batch(
            "CREATE TABLE IF NOT EXISTS packages (
                name TEXT PRIMARY KEY,
                rev TEXT NOT NULL,
                body BLOB NOT NULL
            );
            CREATE TABLE IF NOT EXISTS tarballs (
                name TEXT NOT NULL,
                version TEXT NOT NULL,
                sha512 TEXT NOT NULL,
                PRIMARY KEY (name, version)
            );
            CREATE INDEX IF NOT EXISTS tarballs_by_blob ON tarballs (sha512);",
        )?;
        let names = {
            let mut stmt = writer.prepare("SELECT name FROM packages")?;
            let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
            rows.collect::<rusqlite::Result<HashSet<String>>>()?
        };
        let reader = connect(&db_path)?;
        Ok(Self {
            writer: Mutex::new(writer),
            reader: Mutex::new(reader),
            names: RwLock::new(names),
            blobs,
        })
    }

    /// Puts the shared blob bucket behind the local tarball files: publishes
    /// return only after the bucket `PUT`, local misses fill from it.
    pub fn with_blob_backend(mut self, backend: std::sync::Arc<dyn pnpr_store::BlobBackend>) -> Self {
        self.blobs.set_backend(backend);
        self
    }

    /// Whether `name` is a hosted package (it then never comes from an uplink).
    pub fn is_hosted(&self, name: &str) -> bool {
        self.names
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(name)
    }

    /// The stored packument of `name`.
    pub fn get(&self, name: &str) -> Result<Option<Packument>> {
        let conn = lock(&self.reader);
        stored_row(&conn, name)?
            .map(|(rev, body)| {
                Ok(Packument {
                    doc: parse_doc(name, &body)?,
                    rev,
                })
            })
            .transpose()
    }

    /// Every hosted packument (for search).
    pub fn all(&self) -> Result<Vec<Value>> {
        let conn = lock(&self.reader);
        let mut stmt = conn.prepare("SELECT name, body FROM packages ORDER BY name")?;
        let rows = stmt.query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (name, body) = row?;
            out.push(parse_doc(&name, &body)?);
        }
        Ok(out)
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

    /// The one write path: reads the stored document inside an immediate
    /// transaction, lets `f` decide, makes `new_blobs` durable, writes the
    /// row and its blob references, commits, then drops unreferenced blobs.
    fn edit(
        &self,
        name: &str,
        new_blobs: &[Attachment],
        f: impl FnOnce(Option<Value>) -> Result<Edit>,
    ) -> Result<Option<Packument>> {
        let mut conn = lock(&self.writer);
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let stored = stored_row(&tx, name)?;
        let prev_rev = stored.as_ref().map(|(rev, _)| rev.clone());
        let current = stored.map(|(_, body)| parse_doc(name, &body)).transpose()?;
        let old_blobs: HashSet<String> = {
            let mut stmt = tx.prepare("SELECT sha512 FROM tarballs WHERE name = ?1")?;
            let rows = stmt.query_map(params![name], |r| r.get::<_, String>(0))?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        let result = match f(current)? {
            Edit::Put(doc) => {
                Some(self.write_doc(&tx, name, prev_rev.as_deref(), doc, new_blobs)?)
            }
            Edit::Keep(doc) => {
                return Ok(Some(Packument {
                    doc,
                    rev: prev_rev.unwrap_or_default(),
                }));
            }
            Edit::Delete => {
                tx.execute("DELETE FROM packages WHERE name = ?1", params![name])?;
                tx.execute("DELETE FROM tarballs WHERE name = ?1", params![name])?;
                None
            }
        };
        tx.commit()?;
        {
            let mut names = self.names.write().unwrap_or_else(|p| p.into_inner());
            if result.is_some() {
                names.insert(name.to_string());
            } else {
                names.remove(name);
            }
        }
        self.drop_unreferenced(&conn, old_blobs)?;
        Ok(result)
    }

    /// Inside `tx`: stamps a new revision, makes `new_blobs` durable, checks
    /// every version's tarball is present, then writes the row and its blob
    /// references.
    fn write_doc(
        &self,
        tx: &Connection,
        name: &str,
        prev_rev: Option<&str>,
        mut doc: Value,
        new_blobs: &[Attachment],
    ) -> Result<Packument> {
        let rev = doc::next_rev(prev_rev, &doc);
        if let Some(o) = doc.as_object_mut() {
            o.insert("_rev".into(), Value::String(rev.clone()));
        }
        for blob in new_blobs {
            self.blobs.put(&blob.sha512_hex, &blob.bytes)?;
        }
        let refs = blob_refs(name, &doc)?;
        for (_, hex) in &refs {
            if self.blobs.lookup(hex)?.is_none() {
                return Err(HostedError::Corrupt(format!(
                    "{name}: a version references a missing tarball"
                )));
            }
        }
        let body = serde_json::to_vec(&doc).map_err(|_| HostedError::Corrupt(name.to_string()))?;
        tx.execute(
            "INSERT INTO packages (name, rev, body) VALUES (?1, ?2, ?3)
             ON CONFLICT (name) DO UPDATE SET rev = excluded.rev, body = excluded.body",
            params![name, rev, body],
        )?;
        tx.execute("DELETE FROM tarballs WHERE name = ?1", params![name])?;
        for (version, hex) in &refs {
            tx.execute(
                "INSERT INTO tarballs (name, version, sha512) VALUES (?1, ?2, ?3)",
                params![name, version, hex],
            )?;
        }
        Ok(Packument { doc, rev })
    }

    /// After a commit: removes the blobs the package referenced before that
    /// no row references any more.
    fn drop_unreferenced(&self, conn: &Connection, old_blobs: HashSet<String>) -> Result<()> {
        for hex in old_blobs {
            let referenced: bool = conn.query_row(
                "SELECT EXISTS (SELECT 1 FROM tarballs WHERE sha512 = ?1)",
                params![hex],
                |r| r.get(0),
            )?;
            if !referenced {
                self.blobs.remove(&hex);
            }
        }
        Ok(())
    }
}

/// `(rev, body)` of a stored package.
fn stored_row(conn: &Connection, name: &str) -> Result<Option<(String, Vec<u8>)>> {
    Ok(conn
        .query_row(
            "SELECT rev, body FROM packages WHERE name = ?1",
            params![name],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?)
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
