//! The catalog: the one authorization layer. For one caller and one request
//! scope it decides where a package comes from ([`Origin`]: hosted, the
//! shared mirror, an access-bearing uplink, a forwarded registry) and
//! whether the caller may read it, and it is the only way handlers read
//! package metadata on a caller's behalf.
//!
//! Invariants guarded here:
//! - every metadata read passes the `packages:` policy for this caller (or,
//!   on `/~<uplink>/`, the uplink's `access`, checked once when the
//!   [`Session`] opens) before anything is loaded;
//! - a package's bytes (index rows, file frames) may be served only for a
//!   `(name, version, integrity)` that [`Session::authorize`] confirmed: the
//!   name is valid, the caller may read it in this scope, and the integrity
//!   is the one the metadata *the caller may read* gives that version — never
//!   the integrity a client's lockfile or a cached candidate claims alone;
//! - a hosted name is never routed to an uplink (name ownership);
//! - forwarded registries are reached only with the caller's own forwarded
//!   credential (the upstream is the authority) or anonymously under pnpr's
//!   policy; nothing fetched that way enters a shared metadata cache.

mod forwarded;
mod scope;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::http::StatusCode;
use futures_util::future::BoxFuture;
use pnpr_auth::{Action, Identity, Policy, UplinkDenial};
use pnpr_rescache::{Descriptor, Footprint};
use serde_json::Value;

pub use crate::accelerator::PackageClaim;
use crate::error::ApiError;
use crate::mirror::{load_packument, Namespace};
use crate::public_base::PublicBase;
use crate::state::AppState;

pub(crate) use forwarded::Forwarded;
pub(crate) use scope::Scope;

/// One client scope's registry, mapped onto one of pnpr's own endpoints:
/// the scope it is read in and the base its URLs start with.
pub(crate) type ScopeRoute = (Scope, PublicBase);

/// Where a package's metadata and bytes come from for one caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Origin {
    /// Published here; answered from the hosted store only.
    Hosted,
    /// The shared public mirror (uplinks without `access:`).
    Mirror,
    /// An access-bearing uplink, through its private namespace.
    Uplink(String),
    /// A `routes.public` registry reached with the caller's credentials.
    Forwarded,
}

/// The catalog's window for one request: caller, policy snapshot, scope,
/// and the documents read so far (per-request memo).
pub(crate) struct Session {
    state: Arc<AppState>,
    policy: Arc<Policy>,
    who: Identity,
    scope: Scope,
    /// The public base URL every URL this session builds starts with (the
    /// request's, or the own registry prefix an install named).
    base: PublicBase,
    docs: Mutex<HashMap<String, Arc<Value>>>,
    /// Private access descriptors this request's reads used (spec §5.6).
    footprint: Mutex<Footprint>,
    /// Whether `/` routes a package to an access-bearing uplink that admits
    /// the caller (installs: pnpm 11.5.2 sends one registry), or keeps `/`
    /// to the shared mirror (registry reads: clients use `/~<uplink>/`).
    private_routing: bool,
    /// The client's per-scope registries (v0 `registries`), each already
    /// mapped by [`Scope::of_scope`] onto one of pnpr's own endpoints: a
    /// package of such a scope is read in that scope, at that base, exactly
    /// as a request naming it as the registry would read it.
    routes: HashMap<String, ScopeRoute>,
}

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Session {
    /// Opens an install session; on `/~<uplink>/` the caller must pass the
    /// uplink's `access` first (404 unknown/unexposed, 401 anonymous, 403
    /// otherwise).
    pub(crate) fn open(
        state: &Arc<AppState>,
        who: Identity,
        scope: Scope,
        base: PublicBase,
    ) -> Result<Session, ApiError> {
        Self::build(state, who, scope, base, true)
    }

    /// Opens a registry-read session: like [`Session::open`], but `/` only
    /// ever serves hosted packages and the shared mirror.
    pub(crate) fn for_registry(
        state: &Arc<AppState>,
        who: Identity,
        scope: Scope,
        base: PublicBase,
    ) -> Result<Session, ApiError> {
        Self::build(state, who, scope, base, false)
    }

    fn build(
        state: &Arc<AppState>,
        who: Identity,
        scope: Scope,
        base: PublicBase,
        private_routing: bool,
    ) -> Result<Session, ApiError> {
        let policy = state.policy();
        if let Scope::Uplink(u) = &scope {
            check_uplink(&policy, &who, u)?;
        }
        Ok(Session {
            state: Arc::clone(state),
            policy,
            who,
            scope,
            base,
            docs: Mutex::new(HashMap::new()),
            footprint: Mutex::new(Footprint::new()),
            private_routing,
            routes: HashMap::new(),
        })
    }

    /// Adds the client's per-scope registries (`@scope` → its own endpoint).
    /// No gate runs here: an uplink endpoint's `access` is checked when a
    /// package of its scope is first read ([`Session::check_read`]), so a
    /// mapping the tree never uses does not fail the install, as with pnpm
    /// resolving directly.
    pub(crate) fn with_scope_routes(
        mut self,
        routes: impl IntoIterator<Item = (String, ScopeRoute)>,
    ) -> Session {
        self.routes.extend(routes);
        self
    }

    /// The scope and base `name` is read in: its scope's route, if the
    /// client mapped one, else the session's; and whether it was routed.
    fn route(&self, name: &str) -> (&Scope, &PublicBase, bool) {
        let routed = name
            .strip_prefix('@')
            .and_then(|_| name.split_once('/'))
            .and_then(|(scope, _)| self.routes.get(scope));
        match routed {
            Some((scope, base)) => (scope, base, true),
            None => (&self.scope, &self.base, false),
        }
    }

    /// The public base URLs for `name` start with (its route's).
    pub(crate) fn base_for(&self, name: &str) -> &PublicBase {
        self.route(name).1
    }

    pub(crate) fn who(&self) -> &Identity {
        &self.who
    }

    pub(crate) fn scope(&self) -> &Scope {
        &self.scope
    }

    /// The public base URL this session's URLs start with.
    pub(crate) fn base(&self) -> &PublicBase {
        &self.base
    }

    /// The private descriptors recorded so far.
    pub(crate) fn footprint(&self) -> Footprint {
        locked(&self.footprint).clone()
    }

    /// Where `name` comes from for this caller in this scope.
    pub(crate) fn origin(&self, name: &str) -> Origin {
        match self.route(name).0 {
            Scope::Uplink(u) => Origin::Uplink(u.clone()),
            Scope::Forwarded(_) => Origin::Forwarded,
            // Name ownership: a hosted name is never routed to an uplink.
            Scope::Public if self.state.hosted.is_hosted(name) => Origin::Hosted,
            Scope::Public if !self.private_routing => Origin::Mirror,
            Scope::Public => match self.admitted_private_uplink(name) {
                Some(u) => Origin::Uplink(u),
                None => Origin::Mirror,
            },
        }
    }

    /// On `/`: the first uplink of the package's `proxy:` list that has
    /// `access:` admitting the caller (spec §5.1 "Proxied").
    fn admitted_private_uplink(&self, name: &str) -> Option<String> {
        self.policy
            .proxies(name)
            .iter()
            .find(|u| {
                self.policy.uplink_has_access(u) && self.policy.check_uplink(&self.who, u).is_ok()
            })
            .cloned()
    }

    /// The mirror namespace behind an uplink or mirror origin.
    pub(crate) fn namespace(&self, name: &str) -> Result<Namespace, ApiError> {
        match self.origin(name) {
            Origin::Uplink(u) => Namespace::uplink(&self.state, self.base_for(name).as_str(), &u)
                .ok_or_else(|| ApiError::not_found(format!("uplink ~{u}"))),
            _ => Ok(Namespace::public(
                self.base_for(name).as_str(),
                &self.policy,
                name,
            )),
        }
    }

    /// The base URL tarballs of `name` are served from for this caller.
    pub(crate) fn tarball_base(&self, name: &str) -> String {
        match self.origin(name) {
            Origin::Uplink(u) => format!("{}~{u}/", self.base_for(name).as_str()),
            _ => self.base_for(name).as_str().to_string(),
        }
    }

    /// Refuses `name` unless this caller may read it in this scope. On a
    /// `/~<uplink>/` scope the uplink gate already ran at [`Session::open`];
    /// on a scope route to one it runs here, per read (same answers).
    pub(crate) fn check_read(&self, name: &str) -> Result<(), ApiError> {
        pnpr_packument::validate_name(name)?;
        match self.route(name) {
            (Scope::Uplink(u), _, true) => check_uplink(&self.policy, &self.who, u),
            (scope, ..) => self.check_read_in(scope, name),
        }
    }

    fn check_read_in(&self, scope: &Scope, name: &str) -> Result<(), ApiError> {
        match scope {
            Scope::Uplink(_) => Ok(()),
            // With a forwarded credential the upstream decides, per fetch.
            Scope::Forwarded(fwd) if fwd.credential(name).is_some() => Ok(()),
            Scope::Public | Scope::Forwarded(_) => self
                .policy
                .check(&self.who, name, Action::Access)
                .map_err(|d| ApiError::denied(d, name)),
        }
    }

    /// Records the private descriptor a read of `name` depends on. Runs on
    /// every read, memo hits included, so the footprint is complete.
    fn record_route(&self, name: &str) {
        let descriptor = match self.origin(name) {
            Origin::Uplink(u) => Some(Descriptor::Alias {
                credential_digest: self.state.uplink_credential_digest(&u),
                uplink: u,
            }),
            _ if !self.policy.admits_anonymous(name, Action::Access) => Some(Descriptor::Package {
                name: name.to_string(),
            }),
            _ => None,
        };
        if let Some(d) = descriptor {
            locked(&self.footprint).insert(d);
        }
    }

    /// Whether this caller passes one descriptor's gate *today*.
    pub(crate) fn passes_gate(&self, d: &Descriptor) -> bool {
        match d {
            Descriptor::Alias {
                uplink,
                credential_digest,
            } => {
                self.policy.check_uplink(&self.who, uplink).is_ok()
                    && self.state.uplink_credential_digest(uplink) == *credential_digest
            }
            Descriptor::Package { name } => {
                self.policy.check(&self.who, name, Action::Access).is_ok()
            }
        }
    }

    /// The packument of `name` as stored (upstream tarball URLs), after the
    /// access check; memoised for the request.
    pub(crate) async fn packument(&self, name: &str) -> Result<Arc<Value>, ApiError> {
        self.check_read(name)?;
        self.record_route(name);
        if let Some(doc) = locked(&self.docs).get(name) {
            return Ok(Arc::clone(doc));
        }
        let doc = Arc::new(self.fetch(name).await?);
        locked(&self.docs).insert(name.to_string(), Arc::clone(&doc));
        Ok(doc)
    }

    /// Fetches `name` into this session's memo ahead of a read the resolver
    /// may make ([`pnpr_resolver::MetadataSource::prefetch`]): checked like
    /// a read but not recorded in the footprint (the read, if it comes,
    /// checks and records itself). Never sends a caller's forwarded
    /// credential for a name the resolution has not asked for.
    pub(crate) async fn prefetch(&self, name: &str) -> Option<Arc<Value>> {
        if self.origin(name) == Origin::Forwarded || self.check_read(name).is_err() {
            return None;
        }
        if let Some(doc) = locked(&self.docs).get(name) {
            return Some(Arc::clone(doc));
        }
        let doc = Arc::new(self.fetch(name).await.ok()?);
        locked(&self.docs)
            .entry(name.to_string())
            .or_insert_with(|| Arc::clone(&doc));
        Some(doc)
    }

    async fn fetch(&self, name: &str) -> Result<Value, ApiError> {
        match self.origin(name) {
            Origin::Forwarded => match &self.scope {
                Scope::Forwarded(fwd) => fwd.packument(&self.state, name).await,
                _ => Err(ApiError::internal(
                    "catalog",
                    "forwarded origin outside scope",
                )),
            },
            Origin::Hosted => self.hosted_doc(name),
            origin @ (Origin::Mirror | Origin::Uplink(_)) => {
                let source = self.namespace(name)?;
                let loaded = load_packument(&self.state, &source, name)
                    .await
                    .and_then(|doc| doc.ok_or_else(|| ApiError::not_found(name)));
                match loaded {
                    // Published on another node an instant ago (its change
                    // notice not here yet): hosted, never the mirror's.
                    Err(e)
                        if e.status == StatusCode::NOT_FOUND
                            && origin == Origin::Mirror
                            && crate::hosted::hosted_after_all(&self.state, name).await =>
                    {
                        self.hosted_doc(name)
                    }
                    other => other,
                }
            }
        }
    }

    fn hosted_doc(&self, name: &str) -> Result<Value, ApiError> {
        Ok(self
            .state
            .hosted
            .get(name)
            .map_err(|e| ApiError::internal("hosted store", e))?
            .ok_or_else(|| ApiError::not_found(name))?
            .doc)
    }

    /// The namespace a binding of `name` is remembered under, if any:
    /// hosted documents change under writes and forwarded ones are
    /// per-caller, so only mirror and uplink facts are kept.
    fn binding_ns(&self, name: &str) -> Option<String> {
        match self.origin(name) {
            Origin::Mirror => Some(crate::state::PUBLIC_NS.to_string()),
            Origin::Uplink(u) => self.state.uplink(&u).map(|i| i.private_ns),
            Origin::Hosted | Origin::Forwarded => None,
        }
    }

    /// Confirms that this caller may be served the bytes of `claim` in this
    /// scope: a valid name and exact version, read access, and an integrity
    /// equal to the one the readable metadata records for that version.
    pub(crate) async fn authorize(&self, claim: &PackageClaim) -> Result<(), ApiError> {
        validate_version(&claim.name, &claim.version)?;
        self.check_read(&claim.name)?;
        let id = format!("{}@{}", claim.name, claim.version);
        let ns = self.binding_ns(&claim.name);
        if let Some(ns) = &ns {
            let known = self.state.accelerator.binding(ns, &id);
            if known.as_deref() == Some(claim.integrity.as_str()) {
                self.record_route(&claim.name);
                return Ok(());
            }
        }
        let doc = self.packument(&claim.name).await?;
        let vdoc = doc
            .get("versions")
            .and_then(|v| v.get(&claim.version))
            .ok_or_else(|| ApiError::not_found(&id))?;
        if !integrity_matches(vdoc, &claim.integrity) {
            tracing::warn!(package = %id, "integrity claim does not match readable metadata");
            return Err(ApiError::forbidden(format!(
                "{id}: the integrity in the request does not match the registry's metadata"
            )));
        }
        if let Some(ns) = ns {
            // Remembered so a warm install does not re-parse every
            // packument; access is still checked per request above.
            self.state.accelerator.bind(ns, id, claim.integrity.clone());
        }
        Ok(())
    }
}

/// Whether `name` may be named to the audit uplink on `who`'s behalf: a
/// valid name the caller may read whose data comes from the shared mirror
/// (its `packages:` rule proxies to at least one uplink without `access:`)
/// and that is not hosted here. Names seen only through an access-bearing
/// uplink or the hosted store, and names no uplink serves, never leave.
pub(crate) fn auditable(state: &AppState, policy: &Policy, who: &Identity, name: &str) -> bool {
    pnpr_packument::validate_name(name).is_ok()
        && !state.hosted.is_hosted(name)
        && policy.check(who, name, Action::Access).is_ok()
        && policy
            .proxies(name)
            .iter()
            .any(|u| !policy.uplink_has_access(u))
}

/// Whether `/~<uplink>/` is an endpoint at all (an uplink with `access:`),
/// whoever asks; its account routes are served there (`endpoint`).
pub(crate) fn endpoint_exposed(state: &AppState, uplink: &str) -> bool {
    state.policy().uplink_has_access(uplink)
}

fn check_uplink(policy: &Policy, who: &Identity, u: &str) -> Result<(), ApiError> {
    policy.check_uplink(who, u).map_err(|d| match d {
        UplinkDenial::NotExposed => ApiError::not_found(format!("uplink ~{u}")),
        UplinkDenial::Unauthenticated => {
            ApiError::unauthorized(format!("authentication required for ~{u}"))
        }
        _ => ApiError::forbidden(format!("not allowed to use ~{u}")),
    })
}

/// An exact version as registries key them: bounded, no whitespace, no path
/// or URL syntax (it becomes part of cache keys and file names).
fn validate_version(name: &str, version: &str) -> Result<(), ApiError> {
    let ok = !version.is_empty()
        && version.len() <= 256
        && version
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'+' | b'_'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "invalid version {version:?} for {name}"
        )))
    }
}

/// Whether `claimed` names the same bytes as the version's `dist`.
fn integrity_matches(vdoc: &Value, claimed: &str) -> bool {
    let Some(expected) = crate::mirror::expected_integrity(vdoc) else {
        return false;
    };
    let Ok(claimed) = claimed.parse::<ssri::Integrity>() else {
        return false;
    };
    claimed.matches(&expected).is_some()
}

impl pnpr_resolver::MetadataSource for Session {
    fn packument<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Arc<Value>, pnpr_resolver::ResolveError>> {
        Box::pin(async move {
            let doc = Session::packument(self, name).await.map_err(|e| {
                pnpr_resolver::ResolveError::Metadata {
                    name: name.to_string(),
                    source: Box::new(e),
                }
            })?;
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
            pnpr_packument::rewrite_tarballs(&mut view, &self.tarball_base(name));
            Ok(Arc::new(view))
        })
    }

    fn prefetch<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Option<Arc<Value>>> {
        Box::pin(Session::prefetch(self, name))
    }
}

/// The typed error behind a resolver failure: a catalog refusal is answered
/// as itself (401/403/404), anything else as a resolution failure.
pub(crate) fn resolve_error(e: pnpr_resolver::ResolveError) -> ApiError {
    if let pnpr_resolver::ResolveError::Metadata { source, .. } = e {
        return match source.downcast::<ApiError>() {
            Ok(api) => *api,
            Err(other) => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("resolution failed: {other}"),
            ),
        };
    }
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("resolution failed: {e}"),
    )
}

#[cfg(test)]
mod tests;
