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
use pnpr_config::{BlobsConfig, Config, DatabaseConfig, SslMode};
use pnpr_hosted::HostedStore;
use pnpr_pg::{ConnectOptions, Pool, TlsOptions};

use crate::state::{AppState, BuildError};

/// Connections per node: token lookups are single indexed reads, and the
/// request path blocks on them, so a few cover a 2-core node.
const POOL_SIZE: usize = 4;

/// Connections for hosted reads: one per packument or install read of a
/// hosted name (writes and the change notices have a session each).
const HOSTED_POOL_SIZE: usize = 2;

/// Connections for grant and public-set lookups: one indexed read per
/// forwarded package of an install, made in turn.
const GRANTS_POOL_SIZE: usize = 2;

/// Connections for packument rows: every metadata read of a request is one
/// indexed round trip (the mirror's hot path), made from blocking threads.
const MIRROR_POOL_SIZE: usize = 4;

/// Connects to `database:`, applies the auth migrations (under the shared
/// advisory lock) and returns the user and token stores; `None` keeps the
/// embedded htpasswd + SQLite.
pub(crate) fn open_auth_stores(
    config: &Config,
    max_users: Option<i64>,
) -> Result<Option<(PgUsers, PgTokens)>, BuildError> {
    let Some(db) = &config.database else {
        return Ok(None);
    };
    let pool = Arc::new(Pool::connect(connect_options(db), POOL_SIZE)?);
    tracing::info!(
        host = %db.host,
        port = db.port,
        dbname = %db.dbname,
        "users and tokens in PostgreSQL"
    );
    if config.auth.htpasswd.is_some() {
        tracing::warn!("auth.htpasswd.file is not read with `database:`: users live in PostgreSQL (max_users still applies)");
    }
    Ok(Some(pnpr_auth::open_postgres(pool, max_users)?))
}

/// Opens `blobs: {s3: ...}` with the keys the binary read from `AWS_*`;
/// `None` keeps tarballs on this node's disk only. Without keys startup
/// stops (no anonymous or instance-metadata fallback: every node must
/// reach the same bucket the same way).
pub(crate) fn open_blob_backend(
    config: &Config,
    credentials: Option<pnpr_s3::Credentials>,
) -> Result<Option<Arc<dyn pnpr_store::BlobBackend>>, BuildError> {
    let Some(BlobsConfig::S3(s3)) = &config.blobs else {
        return Ok(None);
    };
    let Some(credentials) = credentials else {
        return Err(BuildError::Unsupported(
            "blobs.s3: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN for temporary keys)",
        ));
    };
    let options = pnpr_s3::Options::new(
        s3.bucket.clone(),
        s3.endpoint.clone(),
        s3.region.clone(),
        s3.prefix.clone(),
    );
    let backend = pnpr_s3::S3Backend::new(options, credentials)
        .map_err(|e| BuildError::Store(pnpr_store::StoreError::Bucket(e.to_string())))?;
    tracing::info!(
        "tarballs (proxied and hosted) in {}; local disk is this node's cache of it",
        backend.describe()
    );
    Ok(Some(Arc::new(backend)))
}

/// The hosted store: rows in `database:` when configured (migrated under
/// the shared advisory lock, with a `LISTEN` session for other nodes'
/// changes), else `<storage>/hosted.sqlite`. Tarballs are not rows: they
/// stay with the blob store (`blobs:`, or `storage` on this node).
pub(crate) fn open_hosted(config: &Config) -> Result<HostedStore, BuildError> {
    let Some(db) = &config.database else {
        return Ok(HostedStore::open(&config.storage)?);
    };
    let pool = Arc::new(Pool::connect(connect_options(db), HOSTED_POOL_SIZE)?);
    let backend = pnpr_hosted::postgres::PgHosted::open(pool)?;
    tracing::info!("hosted packages in PostgreSQL, with change notices from every node");
    Ok(HostedStore::with_backend(
        &config.storage,
        Box::new(backend),
    )?)
}

/// The install grants and the public set (spec §4.4–4.6): in `database:`
/// when configured (migrated under the shared advisory lock), so every node
/// honours and clears the same grants; else SQLite files under `cache`.
pub(crate) fn open_access(
    config: &Config,
) -> Result<Box<dyn crate::grants::AccessBackend>, BuildError> {
    let Some(db) = &config.database else {
        return Ok(Box::new(crate::grants::sqlite::SqliteAccess::open(
            &config.cache,
        )));
    };
    let pool = Arc::new(Pool::connect(connect_options(db), GRANTS_POOL_SIZE)?);
    let backend = crate::grants::postgres::PgAccess::open(pool)?;
    tracing::info!("install grants and the public set in PostgreSQL");
    Ok(Box::new(backend))
}

/// The mirror's packument rows: in `database:` when configured (migrated
/// under the shared advisory lock; large bodies are chunk rows, copied to
/// `<cache>/packuments-pg` when read), so every node serves and revalidates
/// the same rows; else `<cache>/metadata.sqlite`.
pub(crate) fn open_mirror_rows(
    config: &Config,
) -> Result<Box<dyn pnpr_store::MetaBackend>, BuildError> {
    let Some(db) = &config.database else {
        let path = config.cache.join("metadata.sqlite");
        return Ok(Box::new(pnpr_store::MetaDb::open(&path)?));
    };
    let pool = Arc::new(Pool::connect(connect_options(db), MIRROR_POOL_SIZE)?);
    let dir = config.cache.join("packuments-pg");
    let backend = pnpr_store::postgres::PgMeta::open(pool, &dir)?;
    tracing::info!("metadata mirror rows in PostgreSQL, shared by every node");
    Ok(Box::new(backend))
}

/// Derived caches drop what a hosted change elsewhere may have made
/// stale: cached resolutions (any of which may have picked a version of
/// the changed package; they do not record which). Hosted documents
/// themselves are read from the backend on every request, and their
/// compressed renderings are keyed by their content, so neither can be
/// stale. Only a shared backend reports changes.
pub(crate) fn follow_hosted_changes(state: &Arc<AppState>) {
    let weak = Arc::downgrade(state);
    state.hosted.on_change(Box::new(move |package| {
        if let Some(state) = weak.upgrade() {
            state.accelerator.resolutions().clear();
            tracing::debug!(
                package = package.unwrap_or("*"),
                "hosted change: cached resolutions dropped"
            );
        }
    }));
}

/// `pnpr copy` with `blobs:`: uploads this node's proxied and hosted
/// tarballs whose keys the bucket lacks (each re-hashed first; see
/// [`pnpr_store::backend::copy`]). Idempotent. Blocks: run it outside any
/// async runtime.
pub fn copy_blobs(
    config: &Config,
    credentials: Option<pnpr_s3::Credentials>,
) -> Result<pnpr_store::backend::copy::CopyCounts, BuildError> {
    use pnpr_store::backend::copy;
    let Some(backend) = open_blob_backend(config, credentials)? else {
        return Err(BuildError::Unsupported(
            "copy: the config names no `blobs:` to copy into",
        ));
    };
    let mut blobs = copy::cas_objects(&config.cache.join("tarballs"));
    blobs.extend(copy::hosted_objects(
        &config.storage.join("hosted-tarballs"),
    ));
    Ok(copy::upload_missing(backend.as_ref(), &blobs)?)
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

/// `pnpr copy`, hosted part: the packages of `<storage>/hosted.sqlite`
/// (which a node with `database:` no longer reads) into `database:`.
/// Idempotent; packages already there are kept.
pub fn copy_hosted(config: &Config) -> Result<pnpr_hosted::postgres::CopyReport, BuildError> {
    let Some(db) = &config.database else {
        return Err(BuildError::Unsupported(
            "copy: the config names no `database:` to copy into",
        ));
    };
    let pool = Arc::new(Pool::connect(connect_options(db), 1)?);
    Ok(pnpr_hosted::postgres::copy_embedded(&config.storage, pool)?)
}

fn connect_options(db: &DatabaseConfig) -> ConnectOptions {
    ConnectOptions {
        host: db.host.clone(),
        port: db.port,
        user: db.user.clone(),
        password: db.password.clone(),
        dbname: db.dbname.clone(),
        application_name: "pnpr".to_owned(),
        // Every session (pool and the hosted watcher's LISTEN) uses it.
        tls: TlsOptions {
            mode: match db.sslmode {
                SslMode::Disable => pnpr_pg::SslMode::Disable,
                SslMode::Prefer => pnpr_pg::SslMode::Prefer,
                SslMode::Require => pnpr_pg::SslMode::Require,
                SslMode::VerifyCa => pnpr_pg::SslMode::VerifyCa,
                SslMode::VerifyFull => pnpr_pg::SslMode::VerifyFull,
            },
            root_cert: db.sslrootcert.clone(),
        },
    }
}
