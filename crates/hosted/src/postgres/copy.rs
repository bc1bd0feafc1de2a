//! `pnpr copy`, hosted part: the packages of an embedded deployment's
//! `<storage>/hosted.sqlite` into the shared `pnpr_hosted_*` tables.
//!
//! Invariants: a package already in PostgreSQL is never overwritten (a
//! node on the shared database may have published it meanwhile; the
//! shared row wins and the package is reported as kept); each package is
//! one transaction with its tarball references and its change notice, so
//! an interrupted copy is simply run again; the SQLite file is only read,
//! and a deployment without one copies nothing (no file is created).

use std::path::Path;
use std::sync::Arc;

use pnpr_pg::Pool;

use super::{announce, pg, read_locked, write_row, PgHosted};
use crate::backend::sqlite::SqliteHosted;
use crate::backend::HostedBackend;
use crate::Result;

/// What a copy did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CopyReport {
    /// Packages written to PostgreSQL.
    pub copied: usize,
    /// Packages PostgreSQL already had (left as they are).
    pub kept: usize,
}

/// Copies every hosted package under `storage` into the database behind
/// `pool` (migrating it first). Tarballs are blobs and are not touched.
pub fn copy_embedded(storage: &Path, pool: Arc<Pool>) -> Result<CopyReport> {
    let target = PgHosted::open(pool)?;
    let mut report = CopyReport::default();
    if !storage.join("hosted.sqlite").is_file() {
        return Ok(report);
    }
    let source = SqliteHosted::open(storage)?;
    let mut names: Vec<String> = source.names()?.into_iter().collect();
    names.sort();
    for name in names {
        let Some((row, refs)) = source.row_with_refs(&name)? else {
            continue;
        };
        let copied = target.with_writer(|client| {
            let mut tx = client.transaction().map_err(pg)?;
            let (existing, _) = read_locked(&mut tx, &name).map_err(pg)?;
            if existing.is_some() {
                return Ok(false);
            }
            write_row(&mut tx, &name, &row.rev, &row.body, &refs).map_err(pg)?;
            announce(&mut tx, &name).map_err(pg)?;
            tx.commit().map_err(pg)?;
            Ok(true)
        })?;
        if copied {
            report.copied += 1;
        } else {
            report.kept += 1;
        }
    }
    Ok(report)
}
