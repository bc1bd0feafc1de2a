//! Packument rows in the PostgreSQL database several nodes share, so every
//! node serves the same cached document and one node's fetch or
//! revalidation spares the others an upstream request.
//!
//! Owns the `pnpr_mirror_*` tables and their migrations (component
//! `mirror`), and this node's local copies of large bodies. Invariants:
//! - keys are (namespace, package, uplink), as in the embedded [`MetaDb`]:
//!   no lookup in one namespace can name another namespace's row;
//! - one transaction per write, so a crash leaves the old entry or the new;
//!   writers of one key are serialised across nodes by a transaction
//!   advisory lock on the key (a first fetch has no row to lock yet), and an
//!   entry fetched earlier never replaces one fetched later;
//! - bounded memory: a body the caller held in memory (up to its in-memory
//!   limit) is stored inline (`body`); a spilled body is stored as ordered
//!   [`CHUNK`]-byte rows of `pnpr_mirror_chunks` under a fresh `body_id`,
//!   written in the same transaction as the index row that names them, and
//!   is read back one chunk at a time inside one repeatable-read
//!   transaction (a consistent snapshot even if another node replaces the
//!   entry meanwhile) into a local file, checked against the row's length
//!   and SHA-256 before it is served;
//! - a local body file is named by the key and the body's digest, so a file
//!   found under a row's name has that row's content: a row replaced by any
//!   node is never answered from an older local copy. Each key keeps at most
//!   one local file (the previous is removed when a new one is seen), and all
//!   are removed at open.
//!
//! [`MetaDb`]: crate::MetaDb

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use pnpr_pg::postgres::types::Type;
use pnpr_pg::postgres::{Client, IsolationLevel, Row, Transaction};
use pnpr_pg::{Migration, PgError, Pool};
use sha2::{Digest, Sha256};

use crate::db::{PackumentEntry, PackumentMeta, PackumentRow, StoredBody};
use crate::meta::MetaBackend;
use crate::Result;

/// The `mirror` component's schema, in order. Never edit a released entry.
pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "metadata mirror",
    sql: "CREATE SEQUENCE pnpr_mirror_body_ids;
          CREATE TABLE pnpr_mirror_packuments (
              ns TEXT NOT NULL,
              name TEXT NOT NULL,
              uplink TEXT NOT NULL,
              etag TEXT,
              last_modified TEXT,
              fetched_at_ms BIGINT NOT NULL,
              body BYTEA,
              body_id BIGINT,
              body_len BIGINT NOT NULL,
              body_sha256 TEXT,
              PRIMARY KEY (ns, name, uplink),
              CHECK ((body IS NULL) = (body_id IS NOT NULL))
          );
          CREATE TABLE pnpr_mirror_chunks (
              body_id BIGINT NOT NULL,
              seq INTEGER NOT NULL,
              data BYTEA NOT NULL,
              PRIMARY KEY (body_id, seq)
          );",
}];

/// Bytes per chunk row of a large body: what one statement carries and
/// what a reader holds at a time.
pub const CHUNK: usize = 1 << 20;

/// First key of the two-key advisory locks on entry keys ("pnpm").
const KEY_LOCK_SPACE: i32 = 0x706e_706d;

const INDEX_COLUMNS: &str =
    "etag, last_modified, fetched_at_ms, body, body_id, body_len, body_sha256";

/// (namespace, package, uplink).
type Key = (String, String, String);

/// Packument rows in PostgreSQL, large bodies copied to local files.
pub struct PgMeta {
    pool: Arc<Pool>,
    /// Where callers spill bodies and downloads are written before they are
    /// checked (`<dir>/tmp`).
    spill: PathBuf,
    /// Local copies of chunked bodies (`<dir>/bodies`).
    local: PathBuf,
    /// The local file each key was last served from or stored as.
    files: Mutex<HashMap<Key, String>>,
}

impl std::fmt::Debug for PgMeta {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgMeta")
            .field("pool", &self.pool)
            .finish_non_exhaustive()
    }
}

/// What a statement inside a pool job can fail with: the database, or the
/// local file it streams from or to.
enum Fail {
    Pg(pnpr_pg::postgres::Error),
    Io(std::io::Error),
}

impl From<pnpr_pg::postgres::Error> for Fail {
    fn from(e: pnpr_pg::postgres::Error) -> Self {
        Fail::Pg(e)
    }
}

impl From<std::io::Error> for Fail {
    fn from(e: std::io::Error) -> Self {
        Fail::Io(e)
    }
}

/// An index row as read.
struct Indexed {
    etag: Option<String>,
    last_modified: Option<String>,
    fetched_at_ms: i64,
    /// Inline body; `None` when chunked.
    body: Option<Vec<u8>>,
    body_id: Option<i64>,
    len: i64,
    sha256: Option<String>,
}

impl Indexed {
    fn from_row(r: &Row) -> Self {
        Indexed {
            etag: r.get(0),
            last_modified: r.get(1),
            fetched_at_ms: r.get(2),
            body: r.get(3),
            body_id: r.get(4),
            len: r.get(5),
            sha256: r.get(6),
        }
    }

    fn meta(&self, key: &Key) -> PackumentMeta {
        PackumentMeta {
            ns: key.0.clone(),
            name: key.1.clone(),
            uplink: key.2.clone(),
            etag: self.etag.clone(),
            last_modified: self.last_modified.clone(),
            fetched_at_ms: self.fetched_at_ms,
        }
    }
}

impl PgMeta {
    /// Applies the `mirror` migrations (under the shared advisory lock) and
    /// prepares `dir` (this node's disk) for spills and local body copies,
    /// emptying what a previous run left there.
    pub fn open(pool: Arc<Pool>, dir: &Path) -> Result<Self> {
        pnpr_pg::migrate(&pool, "mirror", MIGRATIONS)?;
        let (spill, local) = (dir.join("tmp"), dir.join("bodies"));
        for d in [&spill, &local] {
            std::fs::create_dir_all(d)?;
            // Spills and downloads of a previous run, and local copies
            // this run has not checked against a row yet.
            for entry in std::fs::read_dir(d)?.flatten() {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(Self {
            pool,
            spill,
            local,
            files: Mutex::new(HashMap::new()),
        })
    }

    /// Runs `f` on a pooled client; local I/O failures keep their kind.
    fn run<T: Send + 'static>(
        &self,
        f: impl Fn(&mut Client) -> std::result::Result<T, Fail> + Send + 'static,
    ) -> Result<T> {
        let answer = self.pool.run(move |c| match f(c) {
            Ok(v) => Ok(Ok(v)),
            Err(Fail::Io(e)) => Ok(Err(e)),
            Err(Fail::Pg(e)) => Err(PgError::from(e)),
        })?;
        Ok(answer?)
    }

    /// Records that `key`'s body is the local file `file` now, removing the
    /// one it had before (a reader that opened it keeps reading it).
    fn remember(&self, key: Key, file: String) {
        let old = {
            let mut files = self.files.lock().unwrap_or_else(|p| p.into_inner());
            files.insert(key, file.clone())
        };
        if let Some(old) = old.filter(|o| *o != file) {
            let _ = std::fs::remove_file(self.local.join(old));
        }
    }

    /// `key` has no local body any more.
    fn forget(&self, key: &Key) {
        let old = {
            let mut files = self.files.lock().unwrap_or_else(|p| p.into_inner());
            files.remove(key)
        };
        if let Some(old) = old {
            let _ = std::fs::remove_file(self.local.join(old));
        }
    }

    /// The index row of `key`, inline body included (one round trip: the
    /// hot path of every metadata read).
    fn read_index(&self, key: &Key) -> Result<Option<Indexed>> {
        let key = key.clone();
        self.run(move |c| {
            // Typed parameters: one round trip, no separate prepare.
            let row = c.query_typed_opt(
                &format!(
                    "SELECT {INDEX_COLUMNS} FROM pnpr_mirror_packuments
                     WHERE ns = $1 AND name = $2 AND uplink = $3"
                ),
                &[
                    (&key.0, Type::TEXT),
                    (&key.1, Type::TEXT),
                    (&key.2, Type::TEXT),
                ],
            )?;
            Ok(row.as_ref().map(Indexed::from_row))
        })
    }

    /// The local copy of a chunked body, opened, if this node has it whole.
    fn open_local(&self, file: &str, len: i64) -> Result<Option<File>> {
        match File::open(self.local.join(file)) {
            Ok(f) if i64::try_from(f.metadata()?.len()).ok() == Some(len) => Ok(Some(f)),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Reads the entry again in one snapshot and, when its body is chunked,
    /// streams the chunks into a checked local file.
    fn download(&self, key: &Key) -> Result<Option<(Indexed, StoredBody)>> {
        let (k, spill) = (key.clone(), self.spill.clone());
        let got = self.run(move |c| {
            let mut tx = c
                .build_transaction()
                .isolation_level(IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()?;
            let sql = format!(
                "SELECT {INDEX_COLUMNS} FROM pnpr_mirror_packuments
                 WHERE ns = $1 AND name = $2 AND uplink = $3"
            );
            let Some(found) = tx.query_opt(&sql, &[&k.0, &k.1, &k.2])? else {
                return Ok(None);
            };
            let found = Indexed::from_row(&found);
            let Some(id) = found.body_id else {
                return Ok(Some((found, None)));
            };
            let tmp = spill.join(format!("{:032x}.get", rand::random::<u128>()));
            let streamed = chunks_to_file(&mut tx, id, &tmp);
            if streamed.is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
            let (len, sha) = streamed?;
            if len != found.len || found.sha256.as_deref() != Some(sha.as_str()) {
                let _ = std::fs::remove_file(&tmp);
                let e = std::io::Error::other("stored packument chunks do not match their row");
                return Err(e.into());
            }
            Ok(Some((found, Some(tmp))))
        })?;
        let Some((found, tmp)) = got else {
            return Ok(None);
        };
        let Some(tmp) = tmp else {
            let body = StoredBody::Inline(found.body.clone().unwrap_or_default());
            return Ok(Some((found, body)));
        };
        let name = local_name(key, found.sha256.as_deref().unwrap_or_default());
        let placed = self.local.join(&name);
        if let Err(e) = std::fs::rename(&tmp, &placed) {
            let _ = std::fs::remove_file(&tmp);
            return Err(e.into());
        }
        let file = File::open(&placed)?;
        let len = file.metadata()?.len();
        self.remember(key.clone(), name);
        Ok(Some((found, StoredBody::File { file, len })))
    }

    /// Stores the spilled body as chunks with its index row; returns the
    /// body's digest, or `None` when the stored entry was fetched later
    /// (kept).
    fn store_file(&self, meta: &PackumentMeta, spilled: &Path) -> Result<Option<String>> {
        let (m, path) = (meta.clone(), spilled.to_path_buf());
        self.run(move |c| {
            let mut tx = c.transaction()?;
            let Some(old) = lock_and_check(&mut tx, &m)? else {
                return Ok(None);
            };
            let id: i64 = tx
                .query_one("SELECT nextval('pnpr_mirror_body_ids')", &[])?
                .get(0);
            let (len, sha) = file_to_chunks(&mut tx, id, &path)?;
            upsert(&mut tx, &m, None, Some(id), len, Some(&sha))?;
            drop_chunks(&mut tx, old)?;
            tx.commit()?;
            Ok(Some(sha))
        })
    }
}

/// Takes the key's write lock and reads the stored entry's facts: `None`
/// when it was fetched later than `m` (it stays), else the chunk group it
/// names (to drop once replaced), if any.
fn lock_and_check(
    tx: &mut Transaction<'_>,
    m: &PackumentMeta,
) -> std::result::Result<Option<Option<i64>>, pnpr_pg::postgres::Error> {
    let lock = format!("{}\n{}\n{}", m.ns, m.name, m.uplink);
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, hashtext($2))",
        &[&KEY_LOCK_SPACE, &lock],
    )?;
    let old = tx.query_opt(
        "SELECT fetched_at_ms, body_id FROM pnpr_mirror_packuments
         WHERE ns = $1 AND name = $2 AND uplink = $3 FOR UPDATE",
        &[&m.ns, &m.name, &m.uplink],
    )?;
    Ok(match old {
        Some(r) if r.get::<_, i64>(0) > m.fetched_at_ms => None,
        Some(r) => Some(r.get(1)),
        None => Some(None),
    })
}

/// Writes the index row of `m`.
fn upsert(
    tx: &mut Transaction<'_>,
    m: &PackumentMeta,
    body: Option<&[u8]>,
    body_id: Option<i64>,
    len: i64,
    sha256: Option<&str>,
) -> std::result::Result<(), pnpr_pg::postgres::Error> {
    tx.execute(
        "INSERT INTO pnpr_mirror_packuments
           (ns, name, uplink, etag, last_modified, fetched_at_ms,
            body, body_id, body_len, body_sha256)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
         ON CONFLICT (ns, name, uplink) DO UPDATE SET etag = excluded.etag,
           last_modified = excluded.last_modified,
           fetched_at_ms = excluded.fetched_at_ms, body = excluded.body,
           body_id = excluded.body_id, body_len = excluded.body_len,
           body_sha256 = excluded.body_sha256",
        &[
            &m.ns,
            &m.name,
            &m.uplink,
            &m.etag,
            &m.last_modified,
            &m.fetched_at_ms,
            &body,
            &body_id,
            &len,
            &sha256,
        ],
    )?;
    Ok(())
}

/// Removes the chunks of a replaced or deleted body.
fn drop_chunks(
    tx: &mut Transaction<'_>,
    body_id: Option<i64>,
) -> std::result::Result<(), pnpr_pg::postgres::Error> {
    if let Some(id) = body_id {
        tx.execute("DELETE FROM pnpr_mirror_chunks WHERE body_id = $1", &[&id])?;
    }
    Ok(())
}

/// Reads `path` [`CHUNK`] bytes at a time into chunk rows of `id`; returns
/// the total length and SHA-256 (hex).
fn file_to_chunks(
    tx: &mut Transaction<'_>,
    id: i64,
    path: &Path,
) -> std::result::Result<(i64, String), Fail> {
    let mut file = File::open(path)?;
    let mut buf = vec![0u8; CHUNK];
    let (mut hash, mut len, mut seq) = (Sha256::new(), 0i64, 0i32);
    loop {
        let n = read_full(&mut file, &mut buf)?;
        if n == 0 {
            break;
        }
        let data = &buf[..n];
        hash.update(data);
        tx.execute(
            "INSERT INTO pnpr_mirror_chunks (body_id, seq, data) VALUES ($1, $2, $3)",
            &[&id, &seq, &data],
        )?;
        len += i64::try_from(n).unwrap_or(i64::MAX);
        seq += 1;
    }
    Ok((len, hex::encode(hash.finalize())))
}

/// Streams the chunks of `id`, in order and one row at a time, into a new
/// file at `path`; returns the length and SHA-256 (hex) written.
fn chunks_to_file(
    tx: &mut Transaction<'_>,
    id: i64,
    path: &Path,
) -> std::result::Result<(i64, String), Fail> {
    let mut out = std::io::BufWriter::new(File::create(path)?);
    let portal = tx.bind(
        "SELECT data FROM pnpr_mirror_chunks WHERE body_id = $1 ORDER BY seq",
        &[&id],
    )?;
    let (mut hash, mut len) = (Sha256::new(), 0i64);
    loop {
        let rows = tx.query_portal(&portal, 1)?;
        let Some(row) = rows.first() else { break };
        let data: &[u8] = row.get(0);
        hash.update(data);
        out.write_all(data)?;
        len += i64::try_from(data.len()).unwrap_or(i64::MAX);
    }
    out.flush()?;
    Ok((len, hex::encode(hash.finalize())))
}

/// Fills `buf` unless the file ends first; returns how much was read.
fn read_full(file: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// The local file name of `key`'s body with digest `sha256`.
fn local_name(key: &Key, sha256: &str) -> String {
    let mut h = Sha256::new();
    for part in [&key.0, &key.1, &key.2] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    h.update(sha256.as_bytes());
    format!("{}.json", hex::encode(h.finalize()))
}

fn key(ns: &str, name: &str, uplink: &str) -> Key {
    (ns.to_owned(), name.to_owned(), uplink.to_owned())
}

impl MetaBackend for PgMeta {
    fn entry(&self, ns: &str, name: &str, uplink: &str) -> Result<Option<PackumentEntry>> {
        let key = key(ns, name, uplink);
        let Some(found) = self.read_index(&key)? else {
            self.forget(&key);
            return Ok(None);
        };
        let meta = found.meta(&key);
        if let Some(body) = found.body {
            self.forget(&key);
            let body = StoredBody::Inline(body);
            return Ok(Some(PackumentEntry { meta, body }));
        }
        let file = local_name(&key, found.sha256.as_deref().unwrap_or_default());
        if let Some(f) = self.open_local(&file, found.len)? {
            self.remember(key, file);
            let len = u64::try_from(found.len).unwrap_or(0);
            let body = StoredBody::File { file: f, len };
            return Ok(Some(PackumentEntry { meta, body }));
        }
        // Not here yet (or replaced since): the row as of one snapshot.
        match self.download(&key)? {
            Some((found, body)) => {
                if matches!(body, StoredBody::Inline(_)) {
                    self.forget(&key);
                }
                let meta = found.meta(&key);
                Ok(Some(PackumentEntry { meta, body }))
            }
            None => {
                self.forget(&key);
                Ok(None)
            }
        }
    }

    fn put_packument(&self, row: &PackumentRow) -> Result<()> {
        let row = Arc::new(row.clone());
        let key = key(&row.ns, &row.name, &row.uplink);
        let stored = self.run(move |c| {
            let m = PackumentMeta {
                ns: row.ns.clone(),
                name: row.name.clone(),
                uplink: row.uplink.clone(),
                etag: row.etag.clone(),
                last_modified: row.last_modified.clone(),
                fetched_at_ms: row.fetched_at_ms,
            };
            let mut tx = c.transaction()?;
            let Some(old) = lock_and_check(&mut tx, &m)? else {
                return Ok(false);
            };
            let len = i64::try_from(row.body.len()).unwrap_or(i64::MAX);
            upsert(&mut tx, &m, Some(&row.body), None, len, None)?;
            drop_chunks(&mut tx, old)?;
            tx.commit()?;
            Ok(true)
        })?;
        if stored {
            self.forget(&key);
        }
        Ok(())
    }

    fn put_packument_file(&self, meta: &PackumentMeta, spilled: &Path) -> Result<()> {
        let sha = match self.store_file(meta, spilled) {
            Ok(Some(sha)) => sha,
            other => {
                let _ = std::fs::remove_file(spilled);
                return other.map(drop);
            }
        };
        // The committed chunks are the truth; the spill becomes this node's
        // local copy so it need not download what it just wrote.
        let key = key(&meta.ns, &meta.name, &meta.uplink);
        let name = local_name(&key, &sha);
        match std::fs::rename(spilled, self.local.join(&name)) {
            Ok(()) => self.remember(key, name),
            Err(e) => {
                let _ = std::fs::remove_file(spilled);
                tracing::warn!(error = %e, "could not keep a local copy of a stored packument");
                self.forget(&key);
            }
        }
        Ok(())
    }

    fn touch_packument(&self, ns: &str, name: &str, uplink: &str, at_ms: i64) -> Result<()> {
        let key = key(ns, name, uplink);
        self.run(move |c| {
            c.execute(
                "UPDATE pnpr_mirror_packuments SET fetched_at_ms = $4
                 WHERE ns = $1 AND name = $2 AND uplink = $3 AND fetched_at_ms < $4",
                &[&key.0, &key.1, &key.2, &at_ms],
            )?;
            Ok(())
        })
    }

    fn delete_packument(&self, ns: &str, name: &str, uplink: &str) -> Result<()> {
        let key = key(ns, name, uplink);
        let k = key.clone();
        self.run(move |c| {
            let mut tx = c.transaction()?;
            // "Fetched" at the end of time: the stored entry is never newer,
            // so the check only takes the lock and names the old chunks.
            let m = PackumentMeta {
                ns: k.0.clone(),
                name: k.1.clone(),
                uplink: k.2.clone(),
                etag: None,
                last_modified: None,
                fetched_at_ms: i64::MAX,
            };
            if let Some(old) = lock_and_check(&mut tx, &m)? {
                tx.execute(
                    "DELETE FROM pnpr_mirror_packuments
                     WHERE ns = $1 AND name = $2 AND uplink = $3",
                    &[&k.0, &k.1, &k.2],
                )?;
                drop_chunks(&mut tx, old)?;
            }
            tx.commit()?;
            Ok(())
        })?;
        self.forget(&key);
        Ok(())
    }

    fn ping(&self) -> Result<()> {
        self.run(|c| Ok(c.simple_query("SELECT 1").map(drop)?))
    }

    fn public_search_candidates(
        &self,
        word: &str,
        limit: usize,
        max_body: usize,
    ) -> Result<Vec<(String, Vec<u8>)>> {
        let word = word.to_string();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let max_body = i64::try_from(max_body).unwrap_or(i64::MAX);
        self.run(move |c| {
            // Chunked bodies (body IS NULL) match by name only and come
            // back empty; bodies are JSON the mirror parsed, so UTF-8.
            let rows = c.query_typed(
                "SELECT name, coalesce(body, ''::bytea) FROM pnpr_mirror_packuments
                 WHERE ns = 'public'
                   AND ($1 = '' OR strpos(lower(name), $1) > 0
                        OR (body IS NOT NULL AND body_len <= $3
                            AND strpos(lower(convert_from(body, 'UTF8')), $1) > 0))
                 ORDER BY name LIMIT $2",
                &[
                    (&word, Type::TEXT),
                    (&limit, Type::INT8),
                    (&max_body, Type::INT8),
                ],
            )?;
            Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        })
    }

    fn spill_dir(&self) -> &Path {
        &self.spill
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_names_differ_by_key_and_digest() {
        let a = key("public", "a", "up");
        let b = key("ns2", "a", "up");
        assert_ne!(local_name(&a, "d1"), local_name(&b, "d1"));
        assert_ne!(local_name(&a, "d1"), local_name(&a, "d2"));
        assert_eq!(local_name(&a, "d1"), local_name(&a, "d1"));
    }
}
