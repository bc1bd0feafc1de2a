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
use pnpr_store::{Cas, MetaDb, TarballFetches};
use pnpr_upstream::{
    GuardPolicy, NameResolver, PublicRoute, RouteTable, RouteTableInput, Secret, StaticHosts,
    UplinkRoute, UpstreamClient,
};
use url::Url;

use crate::descriptor;

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
}

/// Per-uplink facts the handlers need.
#[derive(Debug, Clone)]
pub struct UplinkInfo {
    pub config: UplinkConfig,
    /// Namespace for data fetched through `/~<name>/`: the HMAC descriptor id
    /// of (uplink, credential digest).
    pub private_ns: String,
}

/// Everything the handlers share.
pub struct AppState {
    pub config: Config,
    pub public_url: Url,
    policy: RwLock<Arc<Policy>>,
    pub auth: Authenticator,
    pub upstream: UpstreamClient,
    pub db: MetaDb,
    /// Locally published packages (durable, under `storage`).
    pub hosted: pnpr_hosted::HostedStore,
    pub tarballs: Arc<TarballFetches>,
    /// Unpacked package files for `/v1/install` (under `cache`).
    pub files: pnpr_cafs::FileStore,
    pub uplinks: HashMap<String, UplinkInfo>,
    pub secret: Vec<u8>,
}

/// Namespace of the shared public mirror.
pub const PUBLIC_NS: &str = "public";

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
        std::fs::create_dir_all(&config.cache).map_err(pnpr_store::StoreError::Io)?;
        let htpasswd_path = config
            .auth
            .htpasswd
            .as_ref()
            .map(|h| (h.file.clone(), h.max_users))
            .unwrap_or_else(|| (config.storage.join("htpasswd"), None));
        let users = Htpasswd::open(htpasswd_path.0, htpasswd_path.1)?;
        let tokens = TokenStore::open(&config.storage.join("tokens.sqlite"))?;
        let auth = Authenticator::new(users, tokens);

        let db = MetaDb::open(&config.cache.join("metadata.sqlite"))?;
        let hosted = pnpr_hosted::HostedStore::open(&config.storage)?;
        let cas = Arc::new(Cas::open(&config.cache.join("tarballs"))?);
        let tarballs = Arc::new(TarballFetches::new(cas, 1 << 30));
        let files = pnpr_cafs::FileStore::open(&config.cache.join("files"))?;

        let mut uplinks = HashMap::new();
        let mut routes = Vec::new();
        for u in &config.uplinks {
            let authorization = u.auth.as_ref().map(|a| a.header_value());
            let digest = descriptor::credential_digest(
                authorization.as_ref().map(|s| s.expose()).unwrap_or(""),
            );
            let private_ns = format!("u-{}", descriptor::alias_id(&secret, &u.name, &digest));
            uplinks.insert(
                u.name.clone(),
                UplinkInfo {
                    config: u.clone(),
                    private_ns,
                },
            );
            routes.push(UplinkRoute {
                name: u.name.clone(),
                url: u.url.clone(),
                authorization: authorization.map(|s| Secret::new(s.expose().to_string())),
                headers: u
                    .headers
                    .iter()
                    .map(|(k, v)| (k.clone(), Secret::new(v.expose().to_string())))
                    .collect(),
                timeout: u.timeout,
                max_fails: u.max_fails,
                fail_timeout: u.fail_timeout,
            });
        }
        let table = RouteTable::new(RouteTableInput {
            own: public_url.clone(),
            uplinks: routes,
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
            opts.resolver
        } else {
            Arc::new(StaticHosts::new(
                config.network.hosts.iter().cloned(),
                opts.resolver,
            ))
        };
        let upstream = UpstreamClient::new(
            table,
            resolver,
            GuardPolicy {
                allow_private: config.network.allow_private.clone(),
            },
        )?;
        Ok(Arc::new(Self {
            config,
            public_url,
            policy: RwLock::new(Arc::new(policy)),
            auth,
            upstream,
            db,
            hosted,
            tarballs,
            files,
            uplinks,
            secret,
        }))
    }

    /// The policy as of now; cheap, and stable for the caller's whole request.
    pub fn policy(&self) -> Arc<Policy> {
        Arc::clone(&self.policy.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Replaces the policy (live reload).
    pub fn set_policy(&self, policy: Policy) {
        *self.policy.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(policy);
    }

    pub fn uplink(&self, name: &str) -> Option<&UplinkInfo> {
        self.uplinks.get(name)
    }

    pub fn storage_dir(&self) -> PathBuf {
        self.config.storage.clone()
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
