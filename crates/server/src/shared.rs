//! The shared backends of a multi-node deployment: `database:` (PostgreSQL)
//! and `blobs:` (S3-compatible storage), opened from the config.
//!
//! Owns the translation from config to the stores' own types. Invariants:
//! these endpoints are infrastructure the operator configured, reached by
//! their own clients and never through the uplink client or its allowlist;
//! nothing a request carries can name them; what this build cannot yet keep
//! shared is refused or announced at startup, never silently kept per node.

use std::sync::Arc;

use pnpr_auth::{CopyReport, PgTokens, PgUsers};
use pnpr_config::{Config, DatabaseConfig};
use pnpr_pg::{ConnectOptions, Pool};

use crate::state::BuildError;

/// Connections per node: token lookups are single indexed reads, and the
/// request path blocks on them, so a few cover a 2-core node.
const POOL_SIZE: usize = 4;

/// Connects to `database:`, applies the auth migrations (under the shared
/// advisory lock) and returns the user and token stores; `None` keeps the
/// embedded htpasswd + SQLite.
pub(crate) fn open_auth_stores(
    config: &Config,
    max_users: Option<i64>,
) -> Result<Option<(PgUsers, PgTokens)>, BuildError> {
    if config.blobs.is_some() {
        return Err(BuildError::Unsupported(
            "blobs.s3: this build keeps blobs on local disk only; remove `blobs:`",
        ));
    }
    let Some(db) = &config.database else {
        return Ok(None);
    };
    let pool = Arc::new(Pool::connect(connect_options(db), POOL_SIZE)?);
    tracing::info!(
        host = %db.host,
        port = db.port,
        dbname = %db.dbname,
        "users and tokens in PostgreSQL (hosted packages, metadata and blobs stay on this node)"
    );
    if config.auth.htpasswd.is_some() {
        tracing::warn!("auth.htpasswd.file is not read with `database:`: users live in PostgreSQL (max_users still applies)");
    }
    Ok(Some(pnpr_auth::open_postgres(pool, max_users)?))
}

/// `pnpr copy`: copies this deployment's embedded users and tokens (the
/// htpasswd file and `<storage>/tokens.sqlite`, which a node with
/// `database:` no longer reads) into `database:`. Idempotent.
pub fn copy_embedded(config: &Config) -> Result<CopyReport, BuildError> {
    let Some(db) = &config.database else {
        return Err(BuildError::Unsupported(
            "copy: the config names no `database:` to copy into",
        ));
    };
    let htpasswd = config
        .auth
        .htpasswd
        .as_ref()
        .map_or_else(|| config.storage.join("htpasswd"), |h| h.file.clone());
    let pool = Arc::new(Pool::connect(connect_options(db), 1)?);
    Ok(pnpr_auth::copy_embedded(
        &htpasswd,
        &config.storage.join("tokens.sqlite"),
        pool,
    )?)
}

fn connect_options(db: &DatabaseConfig) -> ConnectOptions {
    ConnectOptions {
        host: db.host.clone(),
        port: db.port,
        user: db.user.clone(),
        password: db.password.clone(),
        dbname: db.dbname.clone(),
        application_name: "pnpr".to_owned(),
    }
}
