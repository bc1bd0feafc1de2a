//! Shared server state built once from a validated [`Config`].
//!
//! Holds the swappable access policy (`RwLock<Arc<Policy>>`: readers clone
//! the `Arc` and never hold the lock across an await) and the per-uplink
//! namespace ids derived from the HMAC secret.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use pnpr_auth::{Authenticator, Htpasswd, PackageRuleInput, Policy, PolicyInput, TokenStore};
use pnpr_config::{Config, UplinkConfig};
use pnpr_store::{Cas, MetaBackend, TarballFetches};
use pnpr_upstream::{
    GuardPolicy, NameResolver, PublicRoute, RouteTable, RouteTableInput, StaticHosts, UplinkRoute,
    UpstreamClient,
};
use url::Url;

/// Why the server could not be built from its config.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    #[error("policy: {0}")]
    Policy(#[from] pnpr_auth::AuthError),
    #[error("storage: {0}")]
    Store(#[from] pnpr_store::StoreError),
    #[error("upstream: {0}")]
    Upstream(#[from] pnpr_upstream::UpstreamError),
    #[error("file store: {0}")]
    Files(#[from] pnpr_cafs::CafsError),
    #[error("hosted store: {0}")]
    Hosted(#[from] pnpr_hosted::HostedError),
    #[error("public_url: {0}")]
    PublicUrl(String),
    #[error("disk budget: {0}")]
    Budget(#[from] pnpr_budget::BudgetError),
    #[error("database: {0}")]
    Database(#[from] pnpr_pg::PgError),
    #[error("{0}")]
    Unsupported(&'static str),
}

/// Runtime inputs that do not come from the config file.
pub struct ServerOptions {
    /// The address actually bound (used for the default public URL).
    pub bound: SocketAddr,
    /// Name resolution for outgoing fetches (the system resolver in
    /// production; tests may inject one).
    pub resolver: Arc<dyn NameResolver>,
    /// HMAC key when the config has no `secret:` (random per process).
    pub fallback_secret: Vec<u8>,
    /// Keys of the `blobs: {s3: ...}` bucket, read by the binary from
    /// `AWS_*` (`None`: not set; a configured bucket then refuses to start).
    pub blob_credentials: Option<pnpr_s3::Credentials>,
}

/// Per-uplink facts the handlers need.
#[derive(Debug, Clone)]
pub struct UplinkInfo {
    pub config: UplinkConfig,
    /// Namespace for data fetched through `/~<name>/`: the HMAC descriptor id
    /// of (uplink, credential digest).
    pub private_ns: String,
    /// SHA-256 of the uplink's `Authorization` value (its credential epoch).
    pub credential_digest: String,
}

/// Everything the handlers share.
pub struct AppState {
    /// The config as loaded at startup: paths, listen address and budgets
    /// (which need a restart). Reloadable parts are read from [`Live`].
    pub config: Config,
    pub public_url: Url,
    pub auth: Authenticator,
    /// Policy, uplinks and the reloadable config, swapped as one value.
    live: RwLock<Arc<Live>>,
    base_resolver: Arc<dyn NameResolver>,
    /// The uplinks' mirror: metadata rows, tarballs, rendered bodies.
    pub mirror: MirrorStores,
    /// Locally published packages (durable, under `storage`).
    pub hosted: pnpr_hosted::HostedStore,
    /// HMAC key of every private namespace and descriptor.
    secret: Vec<u8>,
    /// Unpacked files, forwarded-path grants, resolution cache, integrity
    /// bindings and install admission.
    pub(crate) accelerator: crate::accelerator::Accelerator,
    /// Concurrent `/-/v1/search` scans.
    pub(crate) searches: Arc<tokio::sync::Semaphore>,
    /// `cache_max_size`: access times, pins of in-flight installs, eviction.
    pub(crate) disk: Arc<pnpr_budget::Budget>,
    /// The lock on `<cache>/pnpr.lock` (`None`: another process holds it,
    /// and this one does not evict).
    cache_lock: Option<std::fs::File>,
    /// Client requests in flight, for the idle-time member recompression.
    pub(crate) activity: Arc<crate::activity::Activity>,
}

/// The mirror's stores and its work in flight (under `cache`).
pub struct MirrorStores {
    /// Packument rows per (namespace, name, uplink): SQLite, or PostgreSQL
    /// with `database:`.
    pub db: Box<dyn MetaBackend>,
    /// The tarball CAS and its single-flight verified fetches.
    pub tarballs: Arc<TarballFetches>,
    /// Rendered packument bodies, valid while their metadata is fresh.
    pub(crate) rendered: crate::rendered::RenderedCache,
    /// Packument fetches in flight, shared by concurrent misses.
    pub(crate) packument_flights: crate::flights::PackumentFlights,
    /// Packument bodies being rendered, shared by concurrent misses.
    pub(crate) render_flights: crate::flights::RenderFlights,
    /// Where documents too large to hold are rendered to (files removed
    /// with their last reader; emptied at startup).
    pub(crate) render_dir: PathBuf,
}

/// One consistent view of everything a reload can change. A request takes
/// one snapshot and sees one config, one policy and one uplink set.
pub struct Live {
    pub config: Arc<Config>,
    pub policy: Arc<Policy>,
    pub network: Arc<Network>,
}

/// What a reload changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reloaded {
    /// Uplinks, routes or network settings changed: a new client was built.
    pub network: bool,
}

/// Namespace of the shared public mirror.
pub const PUBLIC_NS: &str = "public";

/// Users and tokens (PostgreSQL with `database:`, else htpasswd,
/// `<storage>/htpasswd` by default, and SQLite) and the login limiter.
fn open_auth(config: &Config) -> Result<Authenticator, BuildError> {
    let (file, max_users) = config
        .auth
        .htpasswd
        .as_ref()
        .map(|h| (h.file.clone(), h.max_users))
        .unwrap_or_else(|| (config.storage.join("htpasswd"), None));
    let auth = match crate::shared::open_auth_stores(config, max_users)? {
        Some((users, tokens)) => {
            Authenticator::new(users, TokenStore::with_backend(Box::new(tokens)))
        }
        None => Authenticator::new(
            Htpasswd::open(file, max_users)?,
            TokenStore::open(&config.storage.join("tokens.sqlite"))?,
        ),
    };
    Ok(auth.with_login_limits(pnpr_auth::LoginLimits {
        per_user: config.auth.rate_limit.per_user,
        per_address: config.auth.rate_limit.per_address,
        window: config.auth.rate_limit.window,
    }))
}

/// The accelerator's stores and caches. Cached resolutions live as long as
/// the freshest metadata they were built from would.
fn open_accelerator(
    config: &Config,
    secret: &[u8],
) -> Result<crate::accelerator::Accelerator, BuildError> {
    let files = pnpr_cafs::FileStore::open(&config.cache.join("files"))?;
    let ttl = config
        .uplinks
        .iter()
        .map(|u| u.maxage)
        .min()
        .unwrap_or(std::time::Duration::from_secs(300));
    let access = crate::grants::AccessStore::new(
        crate::shared::open_access(config)?,
        config.install_accelerator.grant_ttl,
    );
    Ok(crate::accelerator::Accelerator::new(
        crate::accelerator::Stores { files, access },
        secret.to_vec(),
        ttl,
        &config.limits,
    ))
}

impl AppState {
    pub fn build(config: Config, opts: ServerOptions) -> Result<Arc<Self>, BuildError> {
        let public_url = match &config.public_url {
            Some(u) => u.clone(),
            None => Url::parse(&format!("http://{}/", opts.bound))
                .map_err(|e| BuildError::PublicUrl(e.to_string()))?,
        };
        let secret = config
            .secret
            .as_ref()
            .map(|s| s.expose().as_bytes().to_vec())
            .unwrap_or(opts.fallback_secret);

        let policy = compile_policy(&config)?;
        std::fs::create_dir_all(&config.storage).map_err(pnpr_store::StoreError::Io)?;
        let cache_lock =
            crate::disk::lock_cache(&config.cache).map_err(pnpr_store::StoreError::Io)?;
        if cache_lock.is_none() {
            tracing::warn!("another process holds this cache (pnpr.lock): this server will not evict for cache_max_size");
        }
        let disk = crate::disk::open(&config.cache, config.operations.cache_max_size)?;
        let auth = open_auth(&config)?;
        let db = crate::shared::open_mirror_rows(&config)?;
        let blobs = crate::shared::open_blob_backend(&config, opts.blob_credentials)?;
        let hosted = crate::shared::open_hosted(&config)?;
        let hosted = match &blobs {
            Some(b) => hosted.with_blob_backend(Arc::clone(b)),
            None => hosted,
        };
        let cas = Arc::new(Cas::open(&config.cache.join("tarballs"))?);
        let budget = Arc::clone(&disk);
        let tarballs = TarballFetches::new(cas, 1 << 30).with_on_stored(move || budget.wake());
        let tarballs = Arc::new(match &blobs {
            Some(b) => tarballs.with_backend(Arc::clone(b)),
            None => tarballs,
        });
        let network = build_network(&config, &public_url, &secret, Arc::clone(&opts.resolver))?;
        let accelerator = open_accelerator(&config, &secret)?;
        let rendered = crate::rendered::RenderedCache::new(
            crate::rendered::RenderedCache::DEFAULT_BUDGET,
            2048,
        );
        let live = RwLock::new(Arc::new(Live {
            config: Arc::new(config.clone()),
            policy: Arc::new(policy),
            network: Arc::new(network),
        }));
        let render_dir = config.cache.join("rendered");
        std::fs::create_dir_all(&render_dir).map_err(pnpr_store::StoreError::Io)?;
        pnpr_store::blob::sweep_temp_dir(&render_dir, std::time::Duration::ZERO);
        let mirror = MirrorStores {
            db,
            tarballs,
            rendered,
            packument_flights: Default::default(),
            render_flights: Default::default(),
            render_dir,
        };
        let state = Arc::new(Self {
            mirror,
            accelerator,
            searches: Arc::new(tokio::sync::Semaphore::new(2)),
            disk,
            cache_lock,
            activity: Arc::new(crate::activity::Activity::new()),
            config,
            public_url,
            auth,
            live,
            base_resolver: opts.resolver,
            hosted,
            secret,
        });
        crate::shared::follow_hosted_changes(&state);
        Ok(state)
    }

    /// Resource budgets (fixed at startup).
    pub fn limits(&self) -> &pnpr_config::Limits {
        &self.config.limits
    }

    /// The reloadable state as of now; cheap, and consistent in itself.
    pub fn live(&self) -> Arc<Live> {
        Arc::clone(&self.live.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// The policy as of now; cheap, and stable for the caller's whole request.
    pub fn policy(&self) -> Arc<Policy> {
        Arc::clone(&self.live().policy)
    }

    /// The uplinks and upstream client as of now.
    pub fn net(&self) -> Arc<Network> {
        Arc::clone(&self.live().network)
    }

    pub fn uplink(&self, name: &str) -> Option<UplinkInfo> {
        self.net().uplinks.get(name).cloned()
    }

    /// The current credential epoch of an uplink ("" for unknown ones).
    pub fn uplink_credential_digest(&self, name: &str) -> String {
        self.net()
            .uplinks
            .get(name)
            .map(|u| u.credential_digest.clone())
            .unwrap_or_default()
    }

    /// Swaps in a reloaded config: its policy always, and a new uplink set
    /// and client when any uplink, route or network setting differs from the
    /// current one (compared as typed values, so a new config field takes
    /// part without anyone listing it). Nothing is swapped on error.
    pub fn reload(&self, fresh: Config) -> Result<Reloaded, BuildError> {
        let policy = Arc::new(compile_policy(&fresh)?);
        let current = self.live();
        let same_network = current.config.uplinks == fresh.uplinks
            && current.config.routes == fresh.routes
            && current.config.network == fresh.network;
        let network = if same_network {
            Arc::clone(&current.network)
        } else {
            Arc::new(build_network(
                &fresh,
                &self.public_url,
                &self.secret,
                Arc::clone(&self.base_resolver),
            )?)
        };
        let live = Arc::new(Live {
            config: Arc::new(fresh),
            policy,
            network,
        });
        *self.live.write().unwrap_or_else(|p| p.into_inner()) = live;
        Ok(Reloaded {
            network: !same_network,
        })
    }

    /// Whether this process holds the cache lock (and so may evict).
    pub(crate) fn owns_cache(&self) -> bool {
        self.cache_lock.is_some()
    }

    pub fn storage_dir(&self) -> PathBuf {
        self.config.storage.clone()
    }
}

/// Uplinks plus the one client allowed to reach them.
pub struct Network {
    pub uplinks: HashMap<String, UplinkInfo>,
    pub client: UpstreamClient,
}

fn build_network(
    config: &Config,
    public_url: &Url,
    secret: &[u8],
    base_resolver: Arc<dyn NameResolver>,
) -> Result<Network, BuildError> {
    let uplinks = config
        .uplinks
        .iter()
        .map(|u| (u.name.clone(), uplink_info(u, secret)))
        .collect();
    let table = RouteTable::new(RouteTableInput {
        own: public_url.clone(),
        uplinks: config.uplinks.iter().map(uplink_route).collect(),
        public: config
            .routes
            .public
            .iter()
            .map(|r| PublicRoute {
                registry: r.registry.clone(),
                package: r.package.clone(),
            })
            .collect(),
    })?;
    let resolver: Arc<dyn NameResolver> = if config.network.hosts.is_empty() {
        base_resolver
    } else {
        Arc::new(StaticHosts::new(
            config.network.hosts.iter().cloned(),
            base_resolver,
        ))
    };
    let client = UpstreamClient::new(
        table,
        resolver,
        GuardPolicy {
            allow_private: config.network.allow_private.clone(),
        },
    )?
    .with_own_url(public_url);
    Ok(Network { uplinks, client })
}

/// An uplink's credential epoch and private namespace (HMAC descriptor id
/// of the uplink and the digest of its `Authorization` value).
fn uplink_info(u: &UplinkConfig, secret: &[u8]) -> UplinkInfo {
    let authorization = u.auth.as_ref().map(|a| a.header_value());
    let digest = pnpr_auth::credential_digest(
        authorization
            .as_ref()
            .map(|s| s.expose())
            .unwrap_or("")
            .as_bytes(),
    );
    let private_ns = format!(
        "u-{}",
        pnpr_rescache::descriptor_id(
            secret,
            &pnpr_rescache::Descriptor::Alias {
                uplink: u.name.clone(),
                credential_digest: digest.clone(),
            },
        )
    );
    UplinkInfo {
        config: u.clone(),
        private_ns,
        credential_digest: digest,
    }
}

/// What the route classifier needs of an uplink (its server-held
/// credential included).
fn uplink_route(u: &UplinkConfig) -> UplinkRoute {
    UplinkRoute {
        name: u.name.clone(),
        url: u.url.clone(),
        authorization: u.auth.as_ref().map(|a| a.header_value()),
        headers: u
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        timeout: u.timeout,
        deadline: u.deadline,
        max_fails: u.max_fails,
        fail_timeout: u.fail_timeout,
    }
}

/// The access-relevant part of a config, compiled.
pub fn compile_policy(config: &Config) -> Result<Policy, pnpr_auth::AuthError> {
    Policy::compile(PolicyInput {
        packages: config
            .packages
            .iter()
            .map(|p| PackageRuleInput {
                pattern: p.pattern.clone(),
                access: p.access.clone(),
                publish: p.publish.clone(),
                unpublish: p.unpublish.clone(),
                proxy: p.proxy.clone(),
            })
            .collect(),
        groups: config.groups.clone(),
        uplink_access: config
            .uplinks
            .iter()
            .map(|u| (u.name.clone(), u.access.clone()))
            .collect(),
    })
}

impl AppState {
    /// `http://<bound>/`: what the startup line prints (the listen address,
    /// which may differ from a proxied `public_url`).
    pub fn public_url_for_banner(&self, bound: SocketAddr) -> String {
        format!("http://{bound}/")
    }
}
