//! Hosted rows in the PostgreSQL database several nodes share, and the
//! change notices that keep every node's derived caches coherent.
//!
//! Owns the `pnpr_hosted_*` tables and their migrations (component
//! `hosted`). Invariants:
//! - one transaction per write: the package's row, its tarball references,
//!   the change epoch and the `NOTIFY pnpr_changed, '<package>'` commit
//!   together (PostgreSQL delivers the notice only on commit), so a node
//!   killed mid-write leaves the old state or the new one;
//! - writers of one package are serialised across nodes by a transaction
//!   advisory lock on the name (a first publish has no row to lock yet);
//!   every write also holds the blob-collection lock shared, and
//!   [`HostedBackend::collect`] takes it exclusively, so "unreferenced" is
//!   never decided under a commit about to add a reference;
//! - reads go through the pool and see the last commit of any node: no
//!   document is cached here;
//! - the watcher holds one `LISTEN` session; after (re)connecting it hands
//!   the sink every name (notices may have been missed), and every
//!   [`FALLBACK`] it compares the epoch with the notices it heard, so a lost
//!   notice is noticed within that bound.

mod copy;
mod watch;

pub use copy::{copy_embedded, CopyReport};

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use pnpr_pg::postgres::{Client, Transaction};
use pnpr_pg::{Migration, PgError, Pool};

use crate::backend::{ChangeSink, Decide, HostedBackend, RowWrite, StoredRow};
use crate::{HostedError, Result};

/// The `hosted` component's schema, in order. Never edit a released entry.
pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "hosted packages",
    sql: "CREATE TABLE pnpr_hosted_packages (
              name TEXT PRIMARY KEY,
              rev TEXT NOT NULL,
              body BYTEA NOT NULL,
              updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
          );
          CREATE TABLE pnpr_hosted_tarballs (
              name TEXT NOT NULL,
              version TEXT NOT NULL,
              sha512 TEXT NOT NULL,
              PRIMARY KEY (name, version)
          );
          CREATE INDEX pnpr_hosted_tarballs_by_blob ON pnpr_hosted_tarballs (sha512);
          CREATE TABLE pnpr_hosted_epoch (
              id INTEGER PRIMARY KEY CHECK (id = 1),
              n BIGINT NOT NULL
          );
          INSERT INTO pnpr_hosted_epoch (id, n) VALUES (1, 0);",
}];

/// The notification channel (payload: the package name).
pub const CHANNEL: &str = "pnpr_changed";

/// Bound on how long a lost notice can go unnoticed.
pub const FALLBACK: Duration = Duration::from_secs(5);

/// First key of the two-key advisory locks on package names ("pnpr").
const NAME_LOCK_SPACE: i32 = 0x706e_7072;
/// The blob-collection lock ("pnps", 0): shared by writes, exclusive for
/// collection.
const GC_LOCK_SPACE: i32 = 0x706e_7073;

/// Hosted rows in PostgreSQL.
pub struct PgHosted {
    pool: Arc<Pool>,
    /// The write session: a transaction calls back into the store between
    /// its statements (to write tarballs), which a pool job cannot do.
    /// Used only from blocking threads (the write paths run there).
    writer: Mutex<Option<Client>>,
}

impl std::fmt::Debug for PgHosted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgHosted")
            .field("pool", &self.pool)
            .finish_non_exhaustive()
    }
}

impl PgHosted {
    /// Applies the `hosted` migrations (under the shared advisory lock).
    pub fn open(pool: Arc<Pool>) -> Result<Self> {
        pnpr_pg::migrate(&pool, "hosted", MIGRATIONS)?;
        Ok(Self {
            pool,
            writer: Mutex::new(None),
        })
    }

    /// The write session, connected (again) when there is none or the
    /// last one broke.
    fn writer(&self) -> Result<MutexGuard<'_, Option<Client>>> {
        let mut guard = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        if guard.as_ref().is_none_or(Client::is_closed) {
            *guard = None;
            *guard = Some(self.pool.options().connect_client()?);
        }
        Ok(guard)
    }

    /// Runs `f` on the write session; a session found broken is dropped so
    /// the next call reconnects.
    fn with_writer<T>(&self, f: impl FnOnce(&mut Client) -> Result<T>) -> Result<T> {
        let mut guard = self.writer()?;
        let client = guard.as_mut().ok_or(HostedError::Pg(PgError::Stopped))?;
        let result = f(client);
        if client.is_closed() {
            *guard = None;
        }
        result
    }
}

fn pg(e: pnpr_pg::postgres::Error) -> HostedError {
    HostedError::Pg(PgError::from(e))
}

impl HostedBackend for PgHosted {
    fn names(&self) -> Result<HashSet<String>> {
        Ok(self.pool.run(watch::names)?)
    }

    fn row(&self, name: &str) -> Result<Option<StoredRow>> {
        let name = name.to_owned();
        Ok(self.pool.run(move |c| {
            Ok(c.query_opt(
                "SELECT rev, body FROM pnpr_hosted_packages WHERE name = $1",
                &[&name],
            )?
            .map(|r| StoredRow {
                rev: r.get(0),
                body: r.get(1),
            }))
        })?)
    }

    fn rows(&self) -> Result<Vec<(String, Vec<u8>)>> {
        Ok(self.pool.run(|c| {
            Ok(c.query(
                "SELECT name, body FROM pnpr_hosted_packages ORDER BY name",
                &[],
            )?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect())
        })?)
    }

    fn transact(&self, name: &str, decide: Decide<'_>) -> Result<bool> {
        self.with_writer(|client| {
            let mut tx = client.transaction().map_err(pg)?;
            let (stored, blobs) = read_locked(&mut tx, name).map_err(pg)?;
            // An error drops `tx`: rolled back.
            match decide(stored, blobs)? {
                RowWrite::Keep => return Ok(false),
                RowWrite::Put {
                    rev,
                    body,
                    tarballs,
                } => write_row(&mut tx, name, &rev, &body, &tarballs).map_err(pg)?,
                RowWrite::Delete => {
                    tx.execute("DELETE FROM pnpr_hosted_packages WHERE name = $1", &[&name])
                        .map_err(pg)?;
                    tx.execute("DELETE FROM pnpr_hosted_tarballs WHERE name = $1", &[&name])
                        .map_err(pg)?;
                }
            }
            announce(&mut tx, name).map_err(pg)?;
            tx.commit().map_err(pg)?;
            Ok(true)
        })
    }

    fn collect(&self, candidates: HashSet<String>, remove: &mut dyn FnMut(&str)) -> Result<()> {
        if candidates.is_empty() {
            return Ok(());
        }
        self.with_writer(|client| {
            let mut tx = client.transaction().map_err(pg)?;
            tx.execute("SELECT pg_advisory_xact_lock($1, 0)", &[&GC_LOCK_SPACE])
                .map_err(pg)?;
            for hex in candidates {
                let referenced: bool = tx
                    .query_one(
                        "SELECT EXISTS (SELECT 1 FROM pnpr_hosted_tarballs WHERE sha512 = $1)",
                        &[&hex],
                    )
                    .map_err(pg)?
                    .get(0);
                if !referenced {
                    remove(&hex);
                }
            }
            tx.commit().map_err(pg)?;
            Ok(())
        })
    }

    fn shared(&self) -> bool {
        true
    }

    fn watch(&self, sink: Arc<dyn ChangeSink>) -> Result<()> {
        watch::spawn(self.pool.options().clone(), sink)
    }
}

/// Takes the package's write lock (and the collection lock, shared), then
/// reads its row and tarball references.
fn read_locked(
    tx: &mut Transaction<'_>,
    name: &str,
) -> Result<(Option<StoredRow>, HashSet<String>), pnpr_pg::postgres::Error> {
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, hashtext($2))",
        &[&NAME_LOCK_SPACE, &name],
    )?;
    tx.execute(
        "SELECT pg_advisory_xact_lock_shared($1, 0)",
        &[&GC_LOCK_SPACE],
    )?;
    let stored = tx
        .query_opt(
            "SELECT rev, body FROM pnpr_hosted_packages WHERE name = $1",
            &[&name],
        )?
        .map(|r| StoredRow {
            rev: r.get(0),
            body: r.get(1),
        });
    let blobs = tx
        .query(
            "SELECT sha512 FROM pnpr_hosted_tarballs WHERE name = $1",
            &[&name],
        )?
        .iter()
        .map(|r| r.get(0))
        .collect();
    Ok((stored, blobs))
}

/// The document and every tarball reference, replacing the old ones.
fn write_row(
    tx: &mut Transaction<'_>,
    name: &str,
    rev: &str,
    body: &[u8],
    tarballs: &[(String, String)],
) -> Result<(), pnpr_pg::postgres::Error> {
    tx.execute(
        "INSERT INTO pnpr_hosted_packages (name, rev, body) VALUES ($1, $2, $3)
         ON CONFLICT (name) DO UPDATE
         SET rev = excluded.rev, body = excluded.body, updated_at = now()",
        &[&name, &rev, &body],
    )?;
    tx.execute("DELETE FROM pnpr_hosted_tarballs WHERE name = $1", &[&name])?;
    let (versions, digests): (Vec<&str>, Vec<&str>) = tarballs
        .iter()
        .map(|(v, h)| (v.as_str(), h.as_str()))
        .unzip();
    tx.execute(
        "INSERT INTO pnpr_hosted_tarballs (name, version, sha512)
         SELECT $1, v, h FROM unnest($2::text[], $3::text[]) AS t (v, h)",
        &[&name, &versions, &digests],
    )?;
    Ok(())
}

/// Bumps the change epoch and queues the notice; both take effect at
/// commit, with the write.
fn announce(tx: &mut Transaction<'_>, name: &str) -> Result<(), pnpr_pg::postgres::Error> {
    tx.execute("UPDATE pnpr_hosted_epoch SET n = n + 1 WHERE id = 1", &[])?;
    tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &name])?;
    Ok(())
}
