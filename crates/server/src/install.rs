//! `POST /v1/install`: server-side resolution plus inline delivery of every
//! file the client's store lacks, byte-compatible with pnpm 11.5.2.
//!
//! Invariants guarded here:
//! - every metadata read made for the resolver passes the `packages:`
//!   policy for this caller, and every package whose files are served is
//!   authorized again before a byte of it is framed (spec §4);
//! - the request's `registry` must be pnpr itself (or one of its
//!   `/~<uplink>/` endpoints) or a registry declared in `routes.public` that
//!   is not an uplink's; anything else is refused like an off-list fetch, so
//!   the endpoint cannot be turned into a fetcher of arbitrary URLs;
//! - on a `routes.public` registry a forwarded `authHeaders` credential makes
//!   the upstream the authority (spec §4.3): nothing fetched with it enters a
//!   shared cache (per-request memo only, tarball flights keyed by the
//!   credential's digest, no resolution-cache entry), and a package whose
//!   files the server already holds is served only after the public set, a
//!   live grant of this user or a probe says so (see `crate::grants`);
//! - file bytes come only from the unpacked-file store, which is filled only
//!   from tarballs that passed integrity verification;
//! - the response is produced as a stream (header first, then frames), so
//!   memory stays bounded by one file, not by the whole tree.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::future::BoxFuture;
use futures_util::{StreamExt, TryStreamExt};
use pnpr_auth::{Action, Identity, Policy};
use pnpr_store::TarballBody;
use pnpr_upstream::RouteKind;
use serde_json::Value;

use crate::error::ApiError;
use crate::registry::{load_packument, tarball_body, Source};
use crate::state::AppState;
use crate::users::identify;

const CONTENT_TYPE: &str = "application/x-pnpr-install-inline";
/// What a client asks a registry for when it resolves.
const FORWARDED_ACCEPT: &str =
    "application/vnd.npm.install-v1+json; q=1.0, application/json; q=0.8, */*";
/// The access probes of spec §4.4–4.5.
const PROBE_ACCEPT: &str = "application/vnd.npm.install-v1+json";
/// Largest packument read from a forwarded registry.
const MAX_FORWARDED_PACKUMENT: u64 = 256 * 1024 * 1024;
/// Tarballs fetched and unpacked at once for one install.
const FETCH_CONCURRENCY: usize = 16;

/// Where the resolver reads metadata for this request.
#[derive(Clone)]
enum Scope {
    /// The client's registry is pnpr's own `/`.
    Public,
    /// The client's registry is `/~<uplink>/`.
    Uplink(String),
    /// The client's registry is a `routes.public` registry, reached directly
    /// with the caller's forwarded credentials.
    Forwarded(Arc<Forwarded>),
}

/// A `routes.public` registry and the caller's forwarded credential map.
struct Forwarded {
    /// As the client sent it, with a trailing `/`.
    registry: String,
    auth: pnpr_install::AuthHeaders,
}

impl Forwarded {
    fn packument_url(&self, name: &str) -> String {
        format!("{}{}", self.registry, crate::registry::encode_name(name))
    }

    /// The forwarded credential for `name`'s packument URL (spec §4.3): its
    /// presence makes the upstream the authority for that package.
    fn credential(&self, name: &str) -> Option<pnpr_upstream::Secret> {
        crate::grants::credential_for(&self.auth, &self.packument_url(name))
            .map(pnpr_upstream::Secret::new)
    }
}

/// How served packages of a forwarded request were let through, for the
/// `x-pnpr-upstream-authority` response header.
#[derive(Default)]
struct AuthorityStats {
    public: u64,
    fresh: u64,
    grant: u64,
    probed_public: u64,
    probed_grant: u64,
}

/// The resolver's window onto pnpr's mirror, for one caller.
struct Metadata {
    state: Arc<AppState>,
    policy: Arc<Policy>,
    who: Identity,
    scope: Scope,
    /// Merged documents as stored (upstream tarball URLs, uplink tags).
    docs: Mutex<HashMap<String, Arc<Value>>>,
    /// The first refusal seen, answered instead of a generic failure.
    denial: Mutex<Option<ApiError>>,
    /// Private access descriptors this resolution used (spec §5.6).
    footprint: Mutex<pnpr_rescache::Footprint>,
}

impl Metadata {
    /// The access-bearing uplink a package is routed through for this
    /// caller: on `/~<u>/` that uplink; on `/` the first uplink of the
    /// package's `proxy:` list that has `access:` admitting the caller
    /// (spec §5.1 "Proxied"). `None` = the shared public mirror.
    fn private_uplink(&self, name: &str) -> Option<String> {
        match &self.scope {
            Scope::Uplink(u) => Some(u.clone()),
            Scope::Forwarded(_) => None,
            // Name ownership: a hosted name is never routed to an uplink.
            Scope::Public if self.state.hosted.is_hosted(name) => None,
            Scope::Public => self
                .policy
                .proxies(name)
                .iter()
                .find(|u| {
                    self.policy.uplink_has_access(u)
                        && self.policy.check_uplink(&self.who, u).is_ok()
                })
                .cloned(),
        }
    }

    fn source(&self, name: &str) -> Option<Source> {
        match self.private_uplink(name) {
            Some(u) => Source::uplink(&self.state, &u),
            None => Some(Source::public(&self.state, &self.policy, name)),
        }
    }

    fn deny(&self, name: &str, e: ApiError) -> pnpr_resolver::ResolveError {
        let reason = e.message.clone();
        let mut slot = self.denial.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(e);
        }
        pnpr_resolver::ResolveError::Metadata {
            name: name.to_string(),
            reason,
        }
    }

    /// Classifies one metadata read and records its descriptor. Runs on
    /// every read, the per-request memo included, so the footprint is
    /// complete whatever fast path served the document.
    fn record_route(&self, name: &str) {
        let descriptor = match self.private_uplink(name) {
            Some(u) => Some(pnpr_rescache::Descriptor::Alias {
                credential_digest: self.state.uplink_credential_digest(&u),
                uplink: u,
            }),
            None if !self.policy.admits_anonymous(name, Action::Access) => {
                Some(pnpr_rescache::Descriptor::Package {
                    name: name.to_string(),
                })
            }
            None => None,
        };
        if let Some(d) = descriptor {
            self.footprint
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(d);
        }
    }

    async fn load(&self, name: &str) -> Result<Arc<Value>, ApiError> {
        self.record_route(name);
        if let Some(doc) = self
            .docs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
        {
            return Ok(Arc::clone(doc));
        }
        if let Scope::Forwarded(fwd) = &self.scope {
            let doc = Arc::new(self.load_forwarded(fwd, name).await?);
            self.docs
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(name.to_string(), Arc::clone(&doc));
            return Ok(doc);
        }
        if matches!(self.scope, Scope::Public) {
            self.policy
                .check(&self.who, name, Action::Access)
                .map_err(|d| ApiError::denied(d, name))?;
        }
        let hosted = matches!(self.scope, Scope::Public) && self.state.hosted.is_hosted(name);
        let doc = if hosted {
            // Name ownership: a hosted name is never looked up upstream.
            self.state
                .hosted
                .get(name)
                .map_err(|e| ApiError::internal("hosted store", e))?
                .ok_or_else(|| ApiError::not_found(name))?
                .doc
        } else {
            let source = self
                .source(name)
                .ok_or_else(|| ApiError::not_found("uplink"))?;
            load_packument(&self.state, &source, name)
                .await?
                .ok_or_else(|| ApiError::not_found(name))?
        };
        let doc = Arc::new(doc);
        self.docs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), Arc::clone(&doc));
        Ok(doc)
    }
}

impl Metadata {
    /// One packument straight from a `routes.public` registry, with the
    /// caller's forwarded credential when one matches; pnpr's own policy
    /// decides when none does (spec §4.3).
    async fn load_forwarded(&self, fwd: &Forwarded, name: &str) -> Result<Value, ApiError> {
        let credential = fwd.credential(name);
        if credential.is_none() {
            self.policy
                .check(&self.who, name, Action::Access)
                .map_err(|d| ApiError::denied(d, name))?;
        }
        let req = pnpr_upstream::FetchRequest {
            url: fwd.packument_url(name),
            accept: Some(FORWARDED_ACCEPT.to_string()),
            ..Default::default()
        };
        let client = &self.state.net().client;
        let sent = match &credential {
            Some(c) => client.fetch_forwarded(req, c.clone()).await,
            None => client.fetch(req).await,
        };
        let resp = sent.map_err(|e| {
            tracing::warn!(package = name, error = %e, "forwarded metadata fetch failed");
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                format!("metadata of {name} could not be fetched from the registry"),
            )
        })?;
        match resp.status {
            200..=299 => {}
            401 | 403 if credential.is_none() => {
                return Err(ApiError::unauthorized(format!(
                    "{name} needs a credential for {}; none was forwarded in authHeaders",
                    redact_url(&fwd.registry)
                )))
            }
            // A refusal during the cold resolve aborts without touching
            // grants; only the re-check hook clears (spec §4.6).
            401 | 403 => {
                return Err(ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("the registry refused the forwarded credential for {name}"),
                ))
            }
            404 => return Err(ApiError::not_found(name)),
            s => {
                return Err(ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    format!("the registry answered {s} for {name}"),
                ))
            }
        }
        let bytes = resp.bytes(MAX_FORWARDED_PACKUMENT).await.map_err(|e| {
            tracing::warn!(package = name, error = %e, "forwarded metadata body failed");
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                format!("metadata of {name} could not be read from the registry"),
            )
        })?;
        serde_json::from_slice(&bytes).map_err(|_| {
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                format!("metadata of {name} is not valid JSON"),
            )
        })
    }
}

impl pnpr_resolver::MetadataSource for Metadata {
    fn packument<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Arc<Value>, pnpr_resolver::ResolveError>> {
        Box::pin(async move {
            let doc = self.load(name).await.map_err(|e| self.deny(name, e))?;
            // The resolver sees what a client of this registry would see.
            if matches!(self.scope, Scope::Forwarded(_)) {
                // Tarballs stay on the client's own registry.
                return Ok(doc);
            }
            let mut view = (*doc).clone();
            // Tarball routing (spec §5.5): a package served through an
            // uplink endpoint the client's registry does not point at gets
            // an explicit `/~<uplink>/` URL, which the resolver then writes
            // into the lockfile; everything else stays integrity-only.
            let base = match self.private_uplink(name) {
                Some(u) => format!("{}~{u}/", self.state.public_url),
                None => self.state.public_url.to_string(),
            };
            pnpr_packument::rewrite_tarballs(&mut view, &base);
            Ok(Arc::new(view))
        })
    }
}

/// Maps the request's `registry` onto a scope, refusing anything that is
/// not pnpr itself.
fn scope_for(
    state: &AppState,
    registry: &str,
    auth: &pnpr_install::AuthHeaders,
) -> Result<Scope, ApiError> {
    let own = state.public_url.as_str();
    let Some(rest) = registry.strip_prefix(own) else {
        if let Some(registry) = forwardable_registry(state, registry) {
            return Ok(Scope::Forwarded(Arc::new(Forwarded {
                registry,
                auth: auth.clone(),
            })));
        }
        return Err(ApiError::forbidden(format!(
            "registry {} is not served by this pnpr; point the client's registry at {own}",
            redact_url(registry)
        )));
    };
    if rest.is_empty() {
        return Ok(Scope::Public);
    }
    let uplink = rest
        .strip_prefix('~')
        .and_then(|r| r.strip_suffix('/'))
        .filter(|u| !u.is_empty() && !u.contains('/'))
        .ok_or_else(|| ApiError::forbidden("registry path is not a pnpr endpoint"))?;
    Ok(Scope::Uplink(uplink.to_string()))
}

/// `registry` (with a trailing `/`) when it lies under a registry declared
/// in `routes.public`, classifies Public, and is neither pnpr's own origin
/// nor an uplink's (those keep the server-held credential path).
fn forwardable_registry(state: &AppState, registry: &str) -> Option<String> {
    let mut registry = registry.to_string();
    if !registry.ends_with('/') {
        registry.push('/');
    }
    let url = url::Url::parse(&registry).ok()?;
    let origin = |u: &url::Url| {
        (
            u.scheme().to_string(),
            u.host_str().map(str::to_string),
            u.port_or_known_default(),
        )
    };
    if origin(&url) == origin(&state.public_url) || url.query().is_some() {
        return None;
    }
    let net = state.net();
    if net
        .uplinks
        .values()
        .any(|u| origin(&u.config.url) == origin(&url))
    {
        return None;
    }
    let declared = state.config.routes.public.iter().any(|r| {
        r.registry
            .as_ref()
            .is_some_and(|reg| origin(reg) == origin(&url) && url.path().starts_with(reg.path()))
    });
    let public = net.client.table().classify(&registry).ok() == Some(RouteKind::Public);
    (declared && public).then_some(registry)
}

/// scheme://host[:port]/path with no userinfo, query or fragment.
fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_query(None);
            u.set_fragment(None);
            u.to_string()
        }
        Err(_) => "<invalid URL>".to_string(),
    }
}

/// `POST /v1/install`.
pub async fn install(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match run(state, headers, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn run(state: Arc<AppState>, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    let started = std::time::Instant::now();
    let req = pnpr_install::parse_request(&body, state.public_url.as_str())
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let who = identify(&state, &headers);
    let policy = state.policy();
    let scope = scope_for(&state, &req.registry, &req.auth_headers)?;
    let forwarded = match &scope {
        Scope::Forwarded(f) => Some(Arc::clone(f)),
        _ => None,
    };
    if let Scope::Uplink(u) = &scope {
        policy.check_uplink(&who, u).map_err(|d| match d {
            pnpr_auth::UplinkDenial::NotExposed => ApiError::not_found(format!("uplink ~{u}")),
            pnpr_auth::UplinkDenial::Unauthenticated => {
                ApiError::unauthorized(format!("authentication required for ~{u}"))
            }
            _ => ApiError::forbidden(format!("not allowed to use ~{u}")),
        })?;
    }
    let meta = Arc::new(Metadata {
        state: Arc::clone(&state),
        policy: Arc::clone(&policy),
        who: who.clone(),
        scope: scope.clone(),
        docs: Mutex::new(HashMap::new()),
        denial: Mutex::new(None),
        footprint: Mutex::new(pnpr_rescache::Footprint::new()),
    });

    let projects = project_inputs(&req);
    let opts = resolve_options(&req);
    let key = base_key(&req, &scope);
    let gate = |d: &pnpr_rescache::Descriptor| passes_gate(&state, &policy, &who, d);
    // A forwarded-credential resolution is never shared: its gates are the
    // upstream's decisions, which the candidate cache cannot re-check.
    let cached = if forwarded.is_some() {
        None
    } else {
        state
            .resolutions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .lookup(&key, gate)
    };
    let cache_hit = cached.is_some();
    let resolved = match cached {
        Some(hit) => hit,
        None => {
            // A cached candidate for this key already passed verification of
            // the same input lockfile, and release-age checks only get easier
            // with time, so verification runs on misses only.
            let violations = verify_release_age(&req, &meta).await?;
            if !violations.is_empty() {
                return respond_violations(&violations);
            }
            let resolution = match pnpr_resolver::resolve(&projects, meta.as_ref(), &opts).await {
                Ok(r) => r,
                Err(e) => {
                    if let Some(denied) =
                        meta.denial.lock().unwrap_or_else(|p| p.into_inner()).take()
                    {
                        return Err(denied);
                    }
                    return Err(ApiError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("resolution failed: {e}"),
                    ));
                }
            };
            let lockfile = serde_json::to_value(&resolution.lockfile)
                .map_err(|e| ApiError::internal("lockfile serialisation", e))?;
            let value = Arc::new(crate::state::CachedResolution {
                lockfile,
                packages: resolution
                    .packages
                    .iter()
                    .filter_map(|p| {
                        Some(crate::state::ResolvedRef {
                            name: p.name.clone(),
                            version: p.version.clone(),
                            integrity: p.integrity.clone()?,
                        })
                    })
                    .collect(),
            });
            let footprint = meta
                .footprint
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            if forwarded.is_none() {
                state
                    .resolutions
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .store(&key, footprint, Arc::clone(&value));
            }
            value
        }
    };
    let lockfile = &resolved.lockfile;
    let resolved_in = started.elapsed();

    let packages: Vec<pnpr_install::PackageRef> = resolved
        .packages
        .iter()
        .map(|p| pnpr_install::PackageRef {
            integrity: p.integrity.clone(),
            pkg_id: format!("{}@{}", p.name, p.version),
        })
        .collect();

    if req.lockfile_only {
        let plan = pnpr_install::Plan {
            stats: pnpr_install::lockfile_only_stats(packages.len() as u64),
            index_entries: Vec::new(),
            frames: Vec::new(),
        };
        return respond(&state, lockfile, plan, cache_hit);
    }

    // Optional-only packages the client's platform will skip (pnpm keeps
    // every platform's optional binaries in the lockfile) are neither
    // fetched nor framed; an optional-only package whose tarball cannot be
    // fetched is dropped instead of failing the install, as pnpm does.
    let optional_only = optional_only_packages(lockfile);
    let mut skipped: std::collections::HashSet<String> = resolved
        .packages
        .iter()
        .map(|p| format!("{}@{}", p.name, p.version))
        .filter(|id| optional_only.contains(id))
        .filter(|id| !installable_here(lockfile, id, &req))
        .collect();

    // Authorize every package we may serve, then make sure its files are
    // unpacked in the server store.
    let have: std::collections::HashSet<&str> =
        req.store_integrities.iter().map(String::as_str).collect();
    let mut missing = Vec::new();
    let mut authority = AuthorityStats::default();
    // Packages fetched below with the caller's credential earn a grant once
    // the fetch succeeded (spec §4.5 step 2).
    let mut fresh = Vec::new();
    for p in &resolved.packages {
        if have.contains(p.integrity.as_str())
            || skipped.contains(&format!("{}@{}", p.name, p.version))
        {
            continue;
        }
        if let Some(fwd) = &forwarded {
            if let Some(credential) = fwd.credential(&p.name) {
                let unpacked = state.files.has_index(&p.integrity);
                let now = pnpr_store::now_ms();
                if state.access.is_public(&p.name, now) {
                    authority.public += 1;
                } else if !unpacked {
                    authority.fresh += 1;
                    fresh.push(format!("{}@{}", p.name, p.version));
                } else {
                    authorize_warm(&state, fwd, &who, p, &credential, &mut authority).await?;
                }
                if !unpacked {
                    missing.push(p.clone());
                }
                continue;
            }
        }
        if matches!(scope, Scope::Public | Scope::Forwarded(_)) {
            policy
                .check(&who, &p.name, Action::Access)
                .map_err(|d| ApiError::denied(d, &p.name))?;
        }
        if !state.files.has_index(&p.integrity) {
            missing.push(p.clone());
        }
    }
    let fetched = missing.len();
    let jobs: Vec<_> = missing
        .into_iter()
        .map(|p| {
            let meta = Arc::clone(&meta);
            let state = Arc::clone(&state);
            let optional = optional_only.contains(&format!("{}@{}", p.name, p.version));
            async move {
                match ensure_unpacked(&state, &meta, &p.name, &p.version, &p.integrity).await {
                    Ok(()) => Ok(None),
                    Err(e) if optional => {
                        tracing::warn!(package = %p.name, version = %p.version, error = %e.message,
                            "optional package skipped");
                        Ok(Some(format!("{}@{}", p.name, p.version)))
                    }
                    Err(e) => Err(e),
                }
            }
        })
        .collect();
    let dropped = futures_util::stream::iter(jobs)
        .buffer_unordered(FETCH_CONCURRENCY)
        .try_collect::<Vec<Option<String>>>()
        .await?;
    skipped.extend(dropped.into_iter().flatten());
    let packages: Vec<pnpr_install::PackageRef> = packages
        .into_iter()
        .filter(|p| !skipped.contains(&p.pkg_id))
        .collect();
    if let Identity::User(user) = &who {
        let now = pnpr_store::now_ms();
        for pkg in &fresh {
            state.access.record_grant(user, pkg, now);
        }
    }

    let lookup = FileIndexLookup { state: &state };
    let plan = pnpr_install::plan(&packages, &req.store_integrities, &lookup)
        .map_err(|e| ApiError::internal("store diff failed", e))?;
    tracing::info!(
        user = %match &who { Identity::User(u) => u.as_str(), _ => "-" },
        total = plan.stats.total_packages,
        in_store = plan.stats.already_in_store,
        fetched,
        files = plan.stats.files_to_download,
        bytes = plan.stats.download_bytes,
        resolve_ms = resolved_in.as_millis() as u64,
        cache_hit,
        "install resolved"
    );
    let mut resp = respond(&state, lockfile, plan, cache_hit)?;
    if forwarded.is_some() {
        let a = &authority;
        let value = format!(
            "public={} fresh={} grant={} probed-public={} probed-grant={}",
            a.public, a.fresh, a.grant, a.probed_public, a.probed_grant
        );
        if let Ok(v) = HeaderValue::from_str(&value) {
            resp.headers_mut().insert("x-pnpr-upstream-authority", v);
        }
    }
    Ok(resp)
}

/// Spec §4.5 steps 3–5 for a package whose files the server already holds
/// (public set and fresh fetch were handled by the caller).
async fn authorize_warm(
    state: &AppState,
    fwd: &Forwarded,
    who: &Identity,
    p: &crate::state::ResolvedRef,
    credential: &pnpr_upstream::Secret,
    stats: &mut AuthorityStats,
) -> Result<(), ApiError> {
    let pkg = format!("{}@{}", p.name, p.version);
    let user = match who {
        Identity::User(u) => Some(u.as_str()),
        _ => None,
    };
    if user.is_some_and(|u| state.access.has_grant(u, &pkg, pnpr_store::now_ms())) {
        stats.grant += 1;
        return Ok(());
    }
    let probe = |credential: Option<pnpr_upstream::Secret>| async move {
        let req = pnpr_upstream::FetchRequest {
            url: fwd.packument_url(&p.name),
            accept: Some(PROBE_ACCEPT.to_string()),
            ..Default::default()
        };
        let client = &state.net().client;
        let sent = match credential {
            Some(c) => client.fetch_forwarded(req, c).await,
            None => client.fetch(req).await,
        };
        match sent {
            Ok(resp) => Some(resp.status),
            Err(e) => {
                tracing::warn!(package = %p.name, error = %e, "access probe failed");
                None
            }
        }
    };
    if probe(None).await.is_some_and(|s| (200..300).contains(&s)) {
        state.access.mark_public(&p.name, pnpr_store::now_ms());
        stats.probed_public += 1;
        return Ok(());
    }
    match probe(Some(credential.clone())).await {
        Some(200..=299) => {
            if let Some(u) = user {
                state.access.record_grant(u, &pkg, pnpr_store::now_ms());
            }
            stats.probed_grant += 1;
            Ok(())
        }
        Some(401 | 403) => {
            if let Some(u) = user {
                let cleared = state.access.clear_package(u, &p.name);
                tracing::info!(package = %p.name, cleared, "upstream revoked access; grants cleared");
            }
            Err(ApiError::forbidden(format!(
                "the registry no longer grants access to {}",
                p.name
            )))
        }
        _ => Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            format!("could not verify access to {}", p.name),
        )),
    }
}

/// Resolver inputs for the request's projects. pnpm 11.5.2 sends only each
/// project's dir and dependency maps, not its name, so a `workspace:`
/// dependency is matched to the project whose directory name equals the
/// dependency's unscoped name (`packages/b` for `b` or `@s/b`).
fn project_inputs(req: &pnpr_install::InstallRequest) -> Vec<pnpr_resolver::ProjectInput> {
    let basename = |dir: &str| dir.rsplit('/').next().unwrap_or(dir).to_string();
    let mut names: HashMap<String, String> = HashMap::new();
    for p in &req.projects {
        for (alias, spec) in p
            .dependencies
            .iter()
            .chain(&p.dev_dependencies)
            .chain(&p.optional_dependencies)
        {
            if !spec.starts_with("workspace:") {
                continue;
            }
            let bare = alias.rsplit('/').next().unwrap_or(alias);
            let mut matches = req
                .projects
                .iter()
                .filter(|q| q.dir != "." && basename(&q.dir) == bare);
            if let (Some(target), None) = (matches.next(), matches.next()) {
                names
                    .entry(target.dir.clone())
                    .or_insert_with(|| alias.clone());
            }
        }
    }
    req.projects
        .iter()
        .map(|p| pnpr_resolver::ProjectInput {
            dir: p.dir.clone(),
            name: names.get(&p.dir).cloned().unwrap_or_default(),
            version: String::new(),
            dependencies: p.dependencies.clone(),
            dev_dependencies: p.dev_dependencies.clone(),
            optional_dependencies: p.optional_dependencies.clone(),
        })
        .collect()
}

/// Package ids (`name@version`) every snapshot of which is `optional: true`.
fn optional_only_packages(lockfile: &Value) -> std::collections::HashSet<String> {
    let mut all: HashMap<String, bool> = HashMap::new();
    if let Some(snaps) = lockfile.get("snapshots").and_then(Value::as_object) {
        for (key, snap) in snaps {
            let id = key.split('(').next().unwrap_or(key).to_string();
            let optional = snap.get("optional").and_then(Value::as_bool) == Some(true);
            let entry = all.entry(id).or_insert(true);
            *entry &= optional;
        }
    }
    all.into_iter()
        .filter(|(_, o)| *o)
        .map(|(id, _)| id)
        .collect()
}

/// npm's `os`/`cpu`/`libc` rules against the client's platform (from the
/// request; libc is assumed glibc on Linux, pnpm's usual detection).
fn installable_here(lockfile: &Value, id: &str, req: &pnpr_install::InstallRequest) -> bool {
    let Some(info) = lockfile.get("packages").and_then(|p| p.get(id)) else {
        return true;
    };
    let field_ok = |field: &str, current: Option<&str>| -> bool {
        let Some(list) = info.get(field).and_then(Value::as_array) else {
            return true;
        };
        let Some(current) = current else { return true };
        let entries: Vec<&str> = list.iter().filter_map(Value::as_str).collect();
        if entries.iter().any(|e| e.strip_prefix('!') == Some(current)) {
            return false;
        }
        let positives: Vec<&&str> = entries.iter().filter(|e| !e.starts_with('!')).collect();
        positives.is_empty() || positives.iter().any(|e| **e == current || **e == "any")
    };
    let os = req.os.as_deref();
    let libc = (os == Some("linux")).then_some("glibc");
    field_ok("os", os) && field_ok("cpu", req.arch.as_deref()) && field_ok("libc", libc)
}

/// The auth-free cache key of a request (spec §5.8): everything that shapes
/// the resolution, nothing that identifies the caller.
fn base_key(req: &pnpr_install::InstallRequest, scope: &Scope) -> String {
    let projects: Vec<Value> = req
        .projects
        .iter()
        .map(|p| {
            serde_json::json!({
                "dir": p.dir,
                "dependencies": p.dependencies,
                "devDependencies": p.dev_dependencies,
                "optionalDependencies": p.optional_dependencies,
            })
        })
        .collect();
    let lockfile_hash = req.lockfile.as_ref().map(pnpr_rescache::base_key);
    pnpr_rescache::base_key(&serde_json::json!({
        "registry": req.registry,
        "scope": match scope {
            Scope::Public => String::new(),
            Scope::Uplink(u) => u.clone(),
            Scope::Forwarded(f) => format!("fwd:{}", f.registry),
        },
        "namedRegistries": req.named_registries,
        "overrides": req.overrides,
        "projects": projects,
        "lockfile": lockfile_hash,
        "frozenLockfile": req.frozen_lockfile,
        "preferFrozenLockfile": req.prefer_frozen_lockfile,
        "minimumReleaseAge": req.minimum_release_age,
        "minimumReleaseAgeExclude": req.minimum_release_age_exclude,
        "os": req.os,
        "arch": req.arch,
    }))
}

/// Whether this caller passes one descriptor's gate *today*.
fn passes_gate(
    state: &AppState,
    policy: &Policy,
    who: &Identity,
    d: &pnpr_rescache::Descriptor,
) -> bool {
    match d {
        pnpr_rescache::Descriptor::Alias {
            uplink,
            credential_digest,
        } => {
            policy.check_uplink(who, uplink).is_ok()
                && state.uplink_credential_digest(uplink) == *credential_digest
        }
        pnpr_rescache::Descriptor::Package { name } => {
            policy.check(who, name, Action::Access).is_ok()
        }
    }
}

fn resolve_options(req: &pnpr_install::InstallRequest) -> pnpr_resolver::ResolveOptions {
    let defaults = pnpr_resolver::ResolveOptions::default();
    pnpr_resolver::ResolveOptions {
        registry: req.registry.clone(),
        overrides: req.overrides.clone().unwrap_or_default(),
        minimum_release_age_minutes: req.minimum_release_age,
        now_ms: pnpr_store::now_ms(),
        node_version: req
            .node_version
            .clone()
            .unwrap_or(defaults.node_version.clone()),
        os: req.os.clone().unwrap_or(defaults.os.clone()),
        cpu: req.arch.clone().unwrap_or(defaults.cpu.clone()),
        input_lockfile: req
            .lockfile
            .as_ref()
            .and_then(|l| serde_json::from_value(l.clone()).ok()),
        frozen: req.frozen_lockfile,
        prefer_frozen: req.prefer_frozen_lockfile.unwrap_or(true),
        ..defaults
    }
}

/// Fetches (verified) and unpacks one package into the file store.
async fn ensure_unpacked(
    state: &Arc<AppState>,
    meta: &Metadata,
    name: &str,
    version: &str,
    integrity: &str,
) -> Result<(), ApiError> {
    let doc = meta.load(name).await?;
    let vdoc = doc
        .get("versions")
        .and_then(|v| v.get(version))
        .ok_or_else(|| ApiError::not_found(format!("{name}@{version}")))?;
    let file = vdoc
        .get("dist")
        .and_then(|d| d.get("tarball"))
        .and_then(Value::as_str)
        .and_then(pnpr_packument::tarball_file_name)
        .map(str::to_string)
        .unwrap_or_else(|| pnpr_packument::default_file_name(name, version));
    let hosted = matches!(meta.scope, Scope::Public) && state.hosted.is_hosted(name);
    let body = if hosted {
        let stored = state
            .hosted
            .tarball(name, &file)
            .map_err(|e| ApiError::internal("hosted store", e))?
            .ok_or_else(|| ApiError::not_found(format!("{name}/-/{file}")))?;
        TarballBody::Stored(pnpr_store::Stored {
            path: stored.path,
            len: stored.len,
        })
    } else if let Scope::Forwarded(fwd) = &meta.scope {
        forwarded_tarball(state, fwd, name, vdoc).await?
    } else {
        let source = meta
            .source(name)
            .ok_or_else(|| ApiError::not_found("uplink"))?;
        tarball_body(state, &source, &file, vdoc).await?.0
    };
    let reader: Box<dyn std::io::Read + Send> = match body {
        TarballBody::Stored(stored) => Box::new(
            std::fs::File::open(&stored.path)
                .map_err(|e| ApiError::internal("cannot open cached tarball", e))?,
        ),
        TarballBody::Streaming(mut stream) => {
            let mut buf = Vec::new();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| {
                    tracing::warn!(package = name, error = %e, "tarball fetch failed");
                    ApiError::new(
                        StatusCode::BAD_GATEWAY,
                        format!("tarball of {name}@{version} could not be fetched or failed verification"),
                    )
                })?;
                buf.extend_from_slice(&chunk);
            }
            Box::new(std::io::Cursor::new(buf))
        }
    };
    let st = Arc::clone(state);
    let integrity = integrity.to_string();
    let label = format!("{name}@{version}");
    tokio::task::spawn_blocking(move || {
        st.files
            .add_tarball(&integrity, reader, &pnpr_cafs::Limits::default())
            .map(|_| ())
    })
    .await
    .map_err(|e| ApiError::internal("unpack task failed", e))?
    .map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("refusing the tarball of {label}: {e}"),
        )
    })
}

/// The verified tarball of one version from a `routes.public` registry,
/// fetched with the caller's credential when its URL is on the registry's
/// origin. The flight is keyed by registry and credential digest so a
/// concurrent caller with another (or no) credential never joins it, and
/// nothing is kept in the tarball cache.
async fn forwarded_tarball(
    state: &Arc<AppState>,
    fwd: &Forwarded,
    name: &str,
    vdoc: &Value,
) -> Result<TarballBody, ApiError> {
    use sha2::{Digest, Sha256};
    let sri = crate::registry::expected_integrity(vdoc).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            format!("{name} has no integrity in its packument"),
        )
    })?;
    let url = vdoc
        .get("dist")
        .and_then(|d| d.get("tarball"))
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::not_found(format!("{name} tarball")))?
        .to_string();
    let origin = |raw: &str| {
        url::Url::parse(raw).ok().map(|u| {
            (
                u.scheme().to_string(),
                u.host_str().map(str::to_string),
                u.port_or_known_default(),
            )
        })
    };
    let credential = fwd
        .credential(name)
        .filter(|_| origin(&url).is_some() && origin(&url) == origin(&fwd.registry));
    // 128 bits of each digest keep the namespace within the CAS's length cap.
    let registry_digest = hex::encode(Sha256::digest(fwd.registry.as_bytes()));
    let credential_digest = credential
        .as_ref()
        .map_or_else(|| "anonymous".to_string(), pnpr_upstream::Secret::digest);
    let ns = format!(
        "fwd-{}-{}",
        registry_digest.get(..32).unwrap_or(&registry_digest),
        credential_digest.get(..32).unwrap_or(&credential_digest)
    );
    let st = Arc::clone(state);
    let label = name.to_string();
    state
        .tarballs
        .get(&ns, &sri, false, move || async move {
            let req = pnpr_upstream::FetchRequest {
                url,
                accept: Some("application/octet-stream".into()),
                ..Default::default()
            };
            let client = &st.net().client;
            let resp = match credential {
                Some(c) => client.fetch_forwarded(req, c).await,
                None => client.fetch(req).await,
            }
            .map_err(|e| e.to_string())?;
            if resp.status != 200 {
                return Err(format!(
                    "the registry answered {} for the tarball of {label}",
                    resp.status
                ));
            }
            let stream = resp.into_stream().map(|r| r.map_err(|e| e.to_string()));
            Ok(Box::pin(stream) as pnpr_store::flight::ByteStream)
        })
        .await
        .map_err(ApiError::from)
}

struct FileIndexLookup<'a> {
    state: &'a AppState,
}

impl pnpr_install::IndexLookup for FileIndexLookup<'_> {
    fn lookup(&self, integrity: &str) -> Option<Arc<pnpr_install::IndexValue>> {
        let idx = self.state.files.index(integrity).ok().flatten()?;
        Some(Arc::new(index_value(&idx)))
    }
}

fn index_value(idx: &pnpr_cafs::PackageIndex) -> pnpr_install::IndexValue {
    pnpr_install::IndexValue {
        requires_build: Some(idx.requires_build),
        manifest: idx.index_manifest(),
        algo: "sha512".to_string(),
        files: idx
            .files
            .iter()
            .map(|(path, f)| {
                (
                    path.clone(),
                    pnpr_install::FileMeta {
                        digest_hex: f.digest_hex.clone(),
                        mode: f.mode,
                        size: f.size,
                        checked_at: Some(idx.checked_at_ms),
                    },
                )
            })
            .collect(),
    }
}

/// Checks the input lockfile against the client's `minimumReleaseAge`
/// (spec §1.6, §2.2): every locked registry package published less than
/// that many minutes ago is a violation. Versions without a publish time
/// are let through (pnpm's `minimumReleaseAgeIgnoreMissingTime` default).
async fn verify_release_age(
    req: &pnpr_install::InstallRequest,
    meta: &Metadata,
) -> Result<Vec<pnpr_install::Violation>, ApiError> {
    let (Some(lockfile), Some(minutes)) = (&req.lockfile, req.minimum_release_age) else {
        return Ok(Vec::new());
    };
    if minutes == 0 || req.trust_lockfile {
        return Ok(Vec::new());
    }
    let excluded = req.minimum_release_age_exclude.clone().unwrap_or_default();
    let cutoff =
        pnpr_store::now_ms() - i64::try_from(minutes).unwrap_or(i64::MAX / 60_000) * 60_000;
    let mut out = Vec::new();
    let Some(packages) = lockfile.get("packages").and_then(Value::as_object) else {
        return Ok(out);
    };
    for key in packages.keys() {
        let Some((name, version)) = split_package_key(key) else {
            continue;
        };
        if excluded.iter().any(|g| glob_match(g, name)) {
            continue;
        }
        let doc = match meta.load(name).await {
            Ok(d) => d,
            // A package the caller may not read is a denial, not a pass.
            Err(e) if e.status == StatusCode::UNAUTHORIZED || e.status == StatusCode::FORBIDDEN => {
                return Err(e)
            }
            Err(_) => continue,
        };
        let Some(published) = doc
            .get("time")
            .and_then(|t| t.get(version))
            .and_then(Value::as_str)
        else {
            continue;
        };
        let Some(ms) = parse_rfc3339_ms(published) else {
            continue;
        };
        if ms > cutoff {
            out.push(pnpr_install::Violation {
                name: name.to_string(),
                version: version.to_string(),
                code: "MINIMUM_RELEASE_AGE_VIOLATION".to_string(),
                reason: format!(
                    "was published at {published}, less than the minimumReleaseAge of {minutes} minutes ago"
                ),
            });
        }
    }
    Ok(out)
}

/// `name@version` lockfile keys (scoped names keep their leading `@`).
fn split_package_key(key: &str) -> Option<(&str, &str)> {
    let key = key.split('(').next().unwrap_or(key);
    let at = key.get(1..)?.find('@')? + 1;
    let (name, version) = (&key[..at], &key[at + 1..]);
    (!name.is_empty() && !version.is_empty()).then_some((name, version))
}

/// `*` wildcards only, the way pnpm's exclusion lists are written.
fn glob_match(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((head, tail)) => {
            name.starts_with(head)
                && name.len() >= head.len()
                && glob_match_tail(tail, &name[head.len()..])
        }
    }
}

fn glob_match_tail(pattern: &str, rest: &str) -> bool {
    if pattern.is_empty() {
        return true;
    }
    (0..=rest.len()).any(|i| rest.is_char_boundary(i) && glob_match(pattern, &rest[i..]))
}

/// Milliseconds since the epoch of an RFC 3339 UTC timestamp as registries
/// write them (`2020-01-01T00:00:00.000Z`).
fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let millis = if b.get(19) == Some(&b'.') {
        let frac: String = s[20..].chars().take_while(char::is_ascii_digit).collect();
        let padded = format!("{frac:0<3}");
        padded.get(..3)?.parse::<i64>().ok()?
    } else {
        0
    };
    // Days from civil (Howard Hinnant).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 86_400 + hh * 3600 + mm * 60 + ss) * 1000) + millis)
}

/// `200` with a violations header and an empty file section (spec §2.2).
fn respond_violations(violations: &[pnpr_install::Violation]) -> Result<Response, ApiError> {
    let header = pnpr_install::violations_json(violations)
        .map_err(|e| ApiError::internal("violations header", e))?;
    let mut body = pnpr_install::InlineBody::new(&header, pnpr_install::DEFAULT_GZIP_LEVEL)
        .map_err(|e| ApiError::internal("violations header", e))?;
    let mut bytes = body.take_output();
    bytes.extend(
        body.finish()
            .map_err(|e| ApiError::internal("violations body", e))?,
    );
    let mut resp = Response::new(Body::from(bytes));
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    Ok(resp)
}

/// One complete gzip member of `data`.
fn gzip_member(data: &[u8]) -> Result<Vec<u8>, std::io::Error> {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(
        Vec::with_capacity(data.len() / 4 + 64),
        flate2::Compression::new(pnpr_install::DEFAULT_GZIP_LEVEL),
    );
    gz.write_all(data)?;
    gz.finish()
}

/// Streams header, frames and end marker as one gzip body.
fn respond(
    state: &Arc<AppState>,
    lockfile: &Value,
    plan: pnpr_install::Plan,
    cache_hit: bool,
) -> Result<Response, ApiError> {
    let header_bytes = pnpr_install::header_json(lockfile, &plan)
        .map_err(|e| ApiError::internal("response header", e))?;
    // The body is a sequence of gzip members: one for the header and the
    // empty files sub-header, one stored member per file frame (compressed
    // once, when first served, and kept by the file store), one for the end
    // marker. Concatenated members are one valid gzip stream for the client,
    // and nothing but the header is compressed per request.
    let mut head = Vec::with_capacity(header_bytes.len() + 10);
    let len = u32::try_from(header_bytes.len())
        .map_err(|_| ApiError::internal("response header", "header larger than 4 GiB"))?;
    head.extend_from_slice(&len.to_be_bytes());
    head.extend_from_slice(&header_bytes);
    head.extend_from_slice(&[0, 0, 0, 2, b'{', b'}']);
    let head = gzip_member(&head).map_err(|e| ApiError::internal("response header", e))?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(16);
    let st = Arc::clone(state);
    tokio::task::spawn_blocking(move || {
        if tx.blocking_send(Ok(Bytes::from(head))).is_err() {
            return;
        }
        for frame in &plan.frames {
            match st.files.frame_member(&frame.digest_hex, frame.executable) {
                Ok(member) => {
                    if tx.blocking_send(Ok(Bytes::from(member))).is_err() {
                        return; // client went away
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "stored file unreadable; aborting response");
                    let _ = tx.blocking_send(Err(std::io::Error::other("stored file unreadable")));
                    return;
                }
            }
        }
        match gzip_member(&[0u8; 64]) {
            Ok(end) => {
                let _ = tx.blocking_send(Ok(Bytes::from(end)));
            }
            Err(e) => {
                let _ = tx.blocking_send(Err(e));
            }
        }
    });
    let stream = tokio_stream_from(rx);
    let mut resp = Response::new(Body::from_stream(stream));
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    // Observability for operators and tests; says nothing about other callers
    // (a private candidate is only ever a hit for a caller who passes its gates).
    h.insert(
        "x-pnpr-resolution",
        HeaderValue::from_static(if cache_hit { "cached" } else { "resolved" }),
    );
    Ok(resp)
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[cfg(test)]
mod tests;
