//! Versioned schema migrations, applied at startup under an advisory lock.
//!
//! Owns the `pnpr_migrations` table. Invariants: every (component, version)
//! is applied at most once, in one transaction with the row recording it, so
//! a crash mid-migration leaves the previous version; all of it runs while
//! holding [`LOCK_KEY`] (a session-level advisory lock), so two nodes
//! starting against an empty database never race on `CREATE TABLE`; a
//! database already past this binary's versions is left alone (a newer node
//! migrated it) and only noted.

use postgres::Client;

use crate::{PgError, Pool};

/// The advisory lock every pnpr migration takes (ASCII "pnprmigr").
pub const LOCK_KEY: i64 = 0x706e_7072_6d69_6772;

/// One schema change of one component.
#[derive(Clone, Copy, Debug)]
pub struct Migration {
    /// 1, 2, 3, ... in order; never renumber or edit a released one.
    pub version: i32,
    /// What it does, for the log.
    pub name: &'static str,
    /// One or more statements, run in one transaction.
    pub sql: &'static str,
}

/// Applies `component`'s missing migrations in version order. Returns how
/// many this call applied (0 when another node already did).
pub fn migrate(
    pool: &Pool,
    component: &'static str,
    migrations: &'static [Migration],
) -> Result<usize, PgError> {
    pool.run(move |client| {
        client.execute("SELECT pg_advisory_lock($1)", &[&LOCK_KEY])?;
        let result = apply_all(client, component, migrations);
        // Released even on failure; a lost connection releases it too.
        let unlock = client.execute("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY]);
        let applied = result?;
        unlock?;
        Ok(applied)
    })
}

fn apply_all(
    client: &mut Client,
    component: &'static str,
    migrations: &'static [Migration],
) -> Result<usize, PgError> {
    client.batch_execute(
        "CREATE TABLE IF NOT EXISTS pnpr_migrations (
             component TEXT NOT NULL,
             version INTEGER NOT NULL,
             name TEXT NOT NULL,
             applied_at TIMESTAMPTZ NOT NULL DEFAULT now(),
             PRIMARY KEY (component, version)
         )",
    )?;
    let current: i32 = client
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM pnpr_migrations WHERE component = $1",
            &[&component],
        )?
        .get(0);
    let known = migrations.iter().map(|m| m.version).max().unwrap_or(0);
    if current > known {
        tracing::warn!(
            component,
            database = current,
            binary = known,
            "the database schema is newer than this binary; a newer node migrated it"
        );
    }
    let mut applied = 0;
    for m in migrations.iter().filter(|m| m.version > current) {
        let fail = |e: postgres::Error| PgError::Migration {
            component,
            version: m.version,
            reason: crate::error::describe(&e),
        };
        let mut tx = client.transaction().map_err(fail)?;
        tx.batch_execute(m.sql).map_err(fail)?;
        tx.execute(
            "INSERT INTO pnpr_migrations (component, version, name) VALUES ($1, $2, $3)",
            &[&component, &m.version, &m.name],
        )
        .map_err(fail)?;
        tx.commit().map_err(fail)?;
        tracing::info!(
            component,
            version = m.version,
            name = m.name,
            "migration applied"
        );
        applied += 1;
    }
    Ok(applied)
}
