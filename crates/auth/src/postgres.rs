//! Users and tokens in the PostgreSQL database several nodes share.
//!
//! Owns the `pnpr_users` and `pnpr_tokens` tables and their migrations.
//! Invariants:
//! * nothing is cached per node: every lookup reads the shared tables, so a
//!   revocation, a registration or a password change on one node holds on
//!   every node from its next request (no notification can be lost because
//!   none is needed; the cost is one indexed round trip per bearer request);
//! * registration is serialised by a table lock, so `max_users` holds across
//!   nodes and two nodes registering one name cannot both succeed;
//! * a user's tokens are deleted in the transaction that registers the name
//!   afresh, so nothing of an earlier holder carries over.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use pnpr_pg::postgres::types::Type;
use pnpr_pg::postgres::Row;
use pnpr_pg::{Migration, PgError, Pool};

use crate::htpasswd::{check_hash, hash_password, incarnation_of, validate_username, HashCheck};
use crate::store::{TokenBackend, UserStore};
use crate::tokens::{sqlite::parse_cidrs, TokenRecord};
use crate::AuthError;

/// The `auth` component's schema, in order. Never edit a released entry.
pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "users and tokens",
    sql: "CREATE TABLE pnpr_users (
              name TEXT PRIMARY KEY,
              hash TEXT NOT NULL,
              created_at TIMESTAMPTZ NOT NULL DEFAULT now()
          );
          CREATE TABLE pnpr_tokens (
              key TEXT PRIMARY KEY,
              username TEXT NOT NULL,
              readonly BOOLEAN NOT NULL,
              cidr_whitelist TEXT NOT NULL,
              created_ms BIGINT NOT NULL,
              incarnation TEXT,
              name TEXT,
              shown TEXT
          );
          CREATE INDEX pnpr_tokens_username ON pnpr_tokens (username);",
}];

/// Applies the migrations (under the shared advisory lock) and returns the
/// user and token stores over `pool`.
pub fn open_postgres(
    pool: Arc<Pool>,
    max_users: Option<i64>,
) -> Result<(PgUsers, PgTokens), AuthError> {
    pnpr_pg::migrate(&pool, "auth", MIGRATIONS)?;
    Ok((
        PgUsers {
            pool: Arc::clone(&pool),
            max_users,
            hash_checks: AtomicU64::new(0),
        },
        PgTokens { pool },
    ))
}

/// Users in `pnpr_users`.
#[derive(Debug)]
pub struct PgUsers {
    pool: Arc<Pool>,
    max_users: Option<i64>,
    hash_checks: AtomicU64,
}

impl PgUsers {
    fn hash_of(&self, user: &str) -> Result<Option<String>, PgError> {
        let user = user.to_owned();
        self.pool.run(move |c| {
            Ok(
                c.query_opt("SELECT hash FROM pnpr_users WHERE name = $1", &[&user])?
                    .map(|r| r.get(0)),
            )
        })
    }

    fn check(&self, user: &str, password: &str) -> Result<Option<String>, AuthError> {
        let Some(hash) = self.hash_of(user)? else {
            return Ok(None);
        };
        self.hash_checks.fetch_add(1, Ordering::Relaxed);
        Ok(match check_hash(password, &hash) {
            HashCheck::Match => Some(hash),
            HashCheck::Mismatch => None,
            HashCheck::Unsupported => {
                tracing::warn!(
                    user,
                    "user entry uses an unsupported hash format; login refused"
                );
                None
            }
        })
    }
}

impl UserStore for PgUsers {
    fn current_hash(&self, user: &str) -> Option<String> {
        self.hash_of(user).unwrap_or_else(|e| {
            // Fail closed: an unreachable database knows nobody.
            tracing::warn!(user, error = %e, "user lookup failed");
            None
        })
    }

    fn checked_incarnation(&self, user: &str) -> Result<Option<String>, AuthError> {
        Ok(self.hash_of(user)?.map(|h| incarnation_of(&h)))
    }

    fn verify_with_hash(&self, user: &str, password: &str) -> Option<String> {
        self.check(user, password).unwrap_or_else(|e| {
            tracing::warn!(user, error = %e, "password check failed");
            None
        })
    }

    fn verify_incarnation(&self, user: &str, password: &str) -> Result<Option<String>, AuthError> {
        Ok(self.check(user, password)?.map(|h| incarnation_of(&h)))
    }

    fn add_user(&self, user: &str, password: &str) -> Result<(), AuthError> {
        if matches!(self.max_users, Some(max) if max < 0) {
            return Err(AuthError::RegistrationDisabled);
        }
        validate_username(user)?;
        if password.is_empty() {
            return Err(AuthError::EmptyPassword);
        }
        let hash = hash_password(password)?;
        let (user, max) = (user.to_owned(), self.max_users);
        let outcome = self.pool.run(move |c| {
            let mut tx = c.transaction()?;
            // One registration at a time across nodes (reads stay open).
            tx.batch_execute("LOCK TABLE pnpr_users IN SHARE ROW EXCLUSIVE MODE")?;
            if tx
                .query_opt("SELECT 1 FROM pnpr_users WHERE name = $1", &[&user])?
                .is_some()
            {
                return Ok(Err(AuthError::UserExists));
            }
            if let Some(max) = max {
                let n: i64 = tx.query_one("SELECT count(*) FROM pnpr_users", &[])?.get(0);
                if n >= max {
                    return Ok(Err(AuthError::MaxUsersReached));
                }
            }
            tx.execute("DELETE FROM pnpr_tokens WHERE username = $1", &[&user])?;
            tx.execute(
                "INSERT INTO pnpr_users (name, hash) VALUES ($1, $2)",
                &[&user, &hash],
            )?;
            tx.commit()?;
            Ok(Ok(()))
        })?;
        outcome
    }

    fn hash_checks(&self) -> u64 {
        self.hash_checks.load(Ordering::Relaxed)
    }
}

/// Tokens in `pnpr_tokens`.
#[derive(Debug)]
pub struct PgTokens {
    pool: Arc<Pool>,
}

const TOKEN_COLUMNS: &str =
    "key, username, readonly, cidr_whitelist, created_ms, incarnation, name, shown";

fn record(row: &Row) -> TokenRecord {
    let key: String = row.get(0);
    let cidrs: String = row.get(3);
    TokenRecord {
        cidr_whitelist: parse_cidrs(&key, &cidrs),
        key,
        user: row.get(1),
        readonly: row.get(2),
        created_ms: row.get(4),
        incarnation: row.get(5),
        name: row.get(6),
        shown: row.get(7),
    }
}

impl TokenBackend for PgTokens {
    fn insert(&self, r: &TokenRecord) -> Result<(), AuthError> {
        let r = r.clone();
        let cidrs = serde_json::to_string(&r.cidr_whitelist).unwrap_or_else(|_| "[]".into());
        self.pool.run(move |c| {
            c.execute(
                "INSERT INTO pnpr_tokens
                     (key, username, readonly, cidr_whitelist, created_ms, incarnation, name, shown)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                &[
                    &r.key,
                    &r.user,
                    &r.readonly,
                    &cidrs,
                    &r.created_ms,
                    &r.incarnation,
                    &r.name,
                    &r.shown,
                ],
            )?;
            Ok(())
        })?;
        Ok(())
    }

    fn get(&self, digest: &[u8; 32]) -> Result<Option<TokenRecord>, AuthError> {
        let key = hex::encode(digest);
        let sql = format!("SELECT {TOKEN_COLUMNS} FROM pnpr_tokens WHERE key = $1");
        Ok(self.pool.run(move |c| {
            // Typed: one round trip, no separate prepare (every bearer
            // request runs this).
            Ok(c.query_typed_opt(sql.as_str(), &[(&key, Type::TEXT)])?
                .map(|r| record(&r)))
        })?)
    }

    fn list(&self, user: &str) -> Result<Vec<TokenRecord>, AuthError> {
        let user = user.to_owned();
        let sql = format!("SELECT {TOKEN_COLUMNS} FROM pnpr_tokens WHERE username = $1");
        let rows = self.pool.run(move |c| {
            Ok(c.query(sql.as_str(), &[&user])?
                .iter()
                .map(record)
                .collect())
        })?;
        Ok(rows)
    }

    fn users(&self) -> Result<Vec<String>, AuthError> {
        Ok(self.pool.run(|c| {
            Ok(c.query("SELECT DISTINCT username FROM pnpr_tokens", &[])?
                .iter()
                .map(|r| r.get(0))
                .collect())
        })?)
    }

    fn delete(&self, user: &str, digests: &[[u8; 32]]) -> Result<usize, AuthError> {
        let user = user.to_owned();
        let keys: Vec<String> = digests.iter().map(hex::encode).collect();
        let n = self.pool.run(move |c| {
            Ok(c.execute(
                "DELETE FROM pnpr_tokens WHERE username = $1 AND key = ANY($2)",
                &[&user, &keys],
            )?)
        })?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    fn delete_user(&self, user: &str) -> Result<usize, AuthError> {
        let user = user.to_owned();
        let n = self.pool.run(move |c| {
            Ok(c.execute("DELETE FROM pnpr_tokens WHERE username = $1", &[&user])?)
        })?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }
}
