//! Copying an embedded deployment's users and tokens (the htpasswd file and
//! `tokens.sqlite`) into the shared PostgreSQL tables.
//!
//! Owns nothing persistent; guards: hashes and token digests are copied
//! verbatim, so every token keeps its account incarnation and every
//! password keeps working; rows already in PostgreSQL are never
//! overwritten (a re-run, or a name registered on a node meanwhile, keeps
//! the shared row and is reported), so the copy is idempotent and an
//! interrupted one is simply run again; each user is copied in one
//! transaction with its tokens, so no token lands without its account.

use std::path::Path;
use std::sync::Arc;

use pnpr_pg::Pool;

use crate::htpasswd::Htpasswd;
use crate::tokens::TokenStore;
use crate::AuthError;

/// What [`copy_embedded`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyReport {
    /// Users inserted into `pnpr_users`.
    pub users_copied: usize,
    /// Users already present in PostgreSQL (kept as they are there).
    pub users_kept: usize,
    /// Tokens inserted into `pnpr_tokens`.
    pub tokens_copied: usize,
    /// Tokens already present, or of a user whose shared row differs (an
    /// account registered on a node is another incarnation: its tokens
    /// would not authenticate anyway).
    pub tokens_skipped: usize,
}

/// Copies the users of `htpasswd` and the tokens of `tokens_sqlite` into the
/// database behind `pool`, applying the auth migrations first.
pub fn copy_embedded(
    htpasswd: &Path,
    tokens_sqlite: &Path,
    pool: Arc<Pool>,
) -> Result<CopyReport, AuthError> {
    pnpr_pg::migrate(&pool, "auth", crate::postgres::MIGRATIONS)?;
    let users = Htpasswd::open(htpasswd.to_owned(), None)?;
    let tokens = TokenStore::open(tokens_sqlite)?;
    let mut report = CopyReport::default();
    for (name, hash) in users.entries() {
        let records = tokens.list(&name);
        let rows: Vec<_> = records
            .iter()
            .map(|r| {
                let cidrs =
                    serde_json::to_string(&r.cidr_whitelist).unwrap_or_else(|_| "[]".into());
                (r.clone(), cidrs)
            })
            .collect();
        let (inserted, copied) = pool.run(move |c| {
            let mut tx = c.transaction()?;
            let inserted = tx.execute(
                "INSERT INTO pnpr_users (name, hash) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
                &[&name, &hash],
            )?;
            let same: bool = tx
                .query_one(
                    "SELECT hash = $2 FROM pnpr_users WHERE name = $1",
                    &[&name, &hash],
                )?
                .get(0);
            let mut copied = 0;
            for (r, cidrs) in rows.iter().filter(|_| same) {
                copied += tx.execute(
                    "INSERT INTO pnpr_tokens
                         (key, username, readonly, cidr_whitelist, created_ms, incarnation, name, shown)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                     ON CONFLICT (key) DO NOTHING",
                    &[
                        &r.key, &r.user, &r.readonly, cidrs, &r.created_ms, &r.incarnation,
                        &r.name, &r.shown,
                    ],
                )?;
            }
            tx.commit()?;
            Ok((inserted, copied))
        })?;
        let copied = usize::try_from(copied).unwrap_or(usize::MAX);
        if inserted > 0 {
            report.users_copied += 1;
        } else {
            report.users_kept += 1;
        }
        report.tokens_copied += copied;
        report.tokens_skipped += records.len().saturating_sub(copied);
    }
    Ok(report)
}
