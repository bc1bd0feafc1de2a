//! The grant table and the public set in the PostgreSQL database several
//! nodes share: the backend with `database:`.
//!
//! Owns the `pnpr_install_grants` and `pnpr_public_packages` tables and
//! their migrations (component `grants`). Invariants:
//! - nothing is cached per node: every lookup reads the shared tables, so a
//!   grant recorded on one node is honoured on every node, and one cleared
//!   on any node is gone everywhere from the next request;
//! - prefix clearing compares `left(pkg, n)` with the prefix as text, never
//!   `LIKE` (whose `_` and `%` are wildcards);
//! - every write is a keyed upsert or delete, so one repeated by the pool's
//!   retry after a broken connection changes nothing more;
//! - each table is kept near [`MAX_ROWS`] (oldest rows first) by a trim
//!   every [`TRIM_EVERY`] writes of this node: counting a shared table on
//!   every insert would cost a scan per grant, so the cap is soft by at most
//!   that many writes per node.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use pnpr_pg::{Migration, PgError, Pool};

use super::{AccessBackend, Outcome, MAX_ROWS};

/// The `grants` component's schema, in order. Never edit a released entry.
pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "install grants and the public set",
    sql: "CREATE TABLE pnpr_install_grants (
              username TEXT NOT NULL,
              pkg TEXT NOT NULL,
              granted_at_ms BIGINT NOT NULL,
              PRIMARY KEY (username, pkg)
          );
          CREATE INDEX pnpr_install_grants_age ON pnpr_install_grants (granted_at_ms);
          CREATE TABLE pnpr_public_packages (
              name TEXT PRIMARY KEY,
              classified_at_ms BIGINT NOT NULL
          );
          CREATE INDEX pnpr_public_packages_age ON pnpr_public_packages (classified_at_ms);",
}];

/// Writes of this node between two trims of a table.
pub const TRIM_EVERY: u64 = 1_000;

/// The two tables of spec §4.4 and §4.5 in PostgreSQL.
#[derive(Debug)]
pub struct PgAccess {
    pool: Arc<Pool>,
    max_rows: i64,
    trim_every: u64,
    grant_writes: AtomicU64,
    public_writes: AtomicU64,
}

impl PgAccess {
    /// Applies the migrations (under the shared advisory lock) and returns
    /// the backend over `pool`.
    pub fn open(pool: Arc<Pool>) -> Result<Self, PgError> {
        Self::with_limits(pool, MAX_ROWS, TRIM_EVERY)
    }

    /// [`PgAccess::open`] with another cap and trim interval (tests reach
    /// the cap without writing [`MAX_ROWS`] rows).
    pub fn with_limits(pool: Arc<Pool>, max_rows: i64, trim_every: u64) -> Result<Self, PgError> {
        pnpr_pg::migrate(&pool, "grants", MIGRATIONS)?;
        Ok(PgAccess {
            pool,
            max_rows,
            trim_every: trim_every.max(1),
            grant_writes: AtomicU64::new(0),
            public_writes: AtomicU64::new(0),
        })
    }

    /// Every `trim_every`-th write (the first included), deletes the oldest
    /// rows of `table` beyond the cap.
    fn maybe_trim(&self, writes: &AtomicU64, table: Table) -> Result<(), PgError> {
        if !writes
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(self.trim_every)
        {
            return Ok(());
        }
        let (max, sql) = (self.max_rows, table.trim_sql());
        let trimmed = self.pool.run(move |c| Ok(c.execute(sql, &[&max])?))?;
        if trimmed > 0 {
            tracing::debug!(
                table = table.name(),
                trimmed,
                "access table trimmed to its cap"
            );
        }
        Ok(())
    }
}

/// Which table a trim is for.
#[derive(Clone, Copy)]
enum Table {
    Grants,
    Public,
}

impl Table {
    fn name(self) -> &'static str {
        match self {
            Table::Grants => "pnpr_install_grants",
            Table::Public => "pnpr_public_packages",
        }
    }

    fn trim_sql(self) -> &'static str {
        match self {
            Table::Grants => {
                "DELETE FROM pnpr_install_grants WHERE (username, pkg) IN (
                     SELECT username, pkg FROM pnpr_install_grants
                     ORDER BY granted_at_ms ASC
                     LIMIT greatest(0, (SELECT count(*) FROM pnpr_install_grants) - $1))"
            }
            Table::Public => {
                "DELETE FROM pnpr_public_packages WHERE name IN (
                     SELECT name FROM pnpr_public_packages
                     ORDER BY classified_at_ms ASC
                     LIMIT greatest(0, (SELECT count(*) FROM pnpr_public_packages) - $1))"
            }
        }
    }
}

fn text(e: PgError) -> String {
    e.to_string()
}

fn count(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

impl AccessBackend for PgAccess {
    fn public_at(&self, name: &str) -> Outcome<Option<i64>> {
        let name = name.to_owned();
        self.pool
            .run(move |c| {
                Ok(c.query_opt(
                    "SELECT classified_at_ms FROM pnpr_public_packages WHERE name = $1",
                    &[&name],
                )?
                .map(|r| r.get(0)))
            })
            .map_err(text)
    }

    fn mark_public(&self, name: &str, now_ms: i64) -> Outcome<()> {
        let name = name.to_owned();
        self.pool
            .run(move |c| {
                c.execute(
                    "INSERT INTO pnpr_public_packages (name, classified_at_ms) VALUES ($1, $2)
                     ON CONFLICT (name) DO UPDATE SET classified_at_ms = EXCLUDED.classified_at_ms",
                    &[&name, &now_ms],
                )?;
                Ok(())
            })
            .and_then(|()| self.maybe_trim(&self.public_writes, Table::Public))
            .map_err(text)
    }

    fn grant_at(&self, user: &str, pkg: &str) -> Outcome<Option<i64>> {
        let (user, pkg) = (user.to_owned(), pkg.to_owned());
        self.pool
            .run(move |c| {
                Ok(c.query_opt(
                    "SELECT granted_at_ms FROM pnpr_install_grants
                     WHERE username = $1 AND pkg = $2",
                    &[&user, &pkg],
                )?
                .map(|r| r.get(0)))
            })
            .map_err(text)
    }

    fn record_grant(&self, user: &str, pkg: &str, now_ms: i64) -> Outcome<()> {
        let (user, pkg) = (user.to_owned(), pkg.to_owned());
        self.pool
            .run(move |c| {
                c.execute(
                    "INSERT INTO pnpr_install_grants (username, pkg, granted_at_ms)
                     VALUES ($1, $2, $3)
                     ON CONFLICT (username, pkg) DO UPDATE SET granted_at_ms = EXCLUDED.granted_at_ms",
                    &[&user, &pkg, &now_ms],
                )?;
                Ok(())
            })
            .and_then(|()| self.maybe_trim(&self.grant_writes, Table::Grants))
            .map_err(text)
    }

    fn clear_prefix(&self, user: &str, prefix: &str) -> Outcome<usize> {
        let (user, prefix) = (user.to_owned(), prefix.to_owned());
        self.pool
            .run(move |c| {
                Ok(c.execute(
                    "DELETE FROM pnpr_install_grants
                     WHERE username = $1 AND left(pkg, char_length($2::text)) = $2::text",
                    &[&user, &prefix],
                )?)
            })
            .map(count)
            .map_err(text)
    }

    fn clear_user(&self, user: &str) -> Outcome<usize> {
        let user = user.to_owned();
        self.pool
            .run(move |c| {
                Ok(c.execute(
                    "DELETE FROM pnpr_install_grants WHERE username = $1",
                    &[&user],
                )?)
            })
            .map(count)
            .map_err(text)
    }
}
