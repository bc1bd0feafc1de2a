//! Which registry a request addresses: pnpr's `/`, one of its `/~<uplink>/`
//! endpoints, or a `routes.public` registry reached with forwarded
//! credentials; and, by the same mapping, which endpoint a client scope's
//! registry (v0 `registries`) is — only pnpr's own ones qualify there.
//!
//! Invariant: anything else is refused before a single fetch, and a registry
//! URL carrying userinfo, a query or a fragment is refused outright — those
//! parts would change which URL an anonymous probe or a packument fetch
//! actually hits (`…/#x/` turns every packument URL into the registry root).

use std::sync::Arc;

use pnpr_upstream::RouteKind;

use super::Forwarded;
use crate::error::ApiError;
use crate::public_base::PublicBase;
use crate::state::AppState;
use crate::urls::{redact as redact_url, UrlOrigin};

/// Where the request's metadata comes from.
#[derive(Clone)]
pub(crate) enum Scope {
    /// The client's registry is pnpr's own `/`.
    Public,
    /// The client's registry is `/~<uplink>/`.
    Uplink(String),
    /// The client's registry is a `routes.public` registry, reached directly
    /// with the caller's forwarded credentials.
    Forwarded(Arc<Forwarded>),
}

impl Scope {
    /// Maps a request's `registry` onto a scope, refusing anything that is
    /// not pnpr itself or a declared forwardable registry. pnpr itself is
    /// the request's public base or the configured (or bound) URL; the one
    /// the registry names is returned as the session's base, so the URLs
    /// written for this install live under the registry the client's
    /// credentials are keyed by.
    pub(crate) fn of(
        state: &AppState,
        request_base: &PublicBase,
        registry: &str,
        auth: &pnpr_protocol::AuthHeaders,
    ) -> Result<(Scope, PublicBase), ApiError> {
        let url = plain_registry_url(registry)?;
        if let Some(own) = Self::own(state, request_base, &url)? {
            return Ok(own);
        }
        if let Some(registry) = forwardable_registry(state, request_base, &url) {
            let fwd = Forwarded::new(registry, auth.clone());
            return Ok((Scope::Forwarded(Arc::new(fwd)), request_base.clone()));
        }
        Err(ApiError::forbidden(format!(
            "registry {} is not served by this pnpr; point the client's registry at {}",
            redact_url(registry),
            request_base.as_str()
        )))
    }

    /// Maps the registry of one client scope (`@corp:registry=…`, sent as
    /// v0 `registries`) the way [`Scope::of`] maps the registry: only
    /// pnpr's own `/` and `/~<uplink>/` endpoints qualify. Anything else is
    /// a `400` naming the field and the scope — pnpr never fetches a URL a
    /// client chose, forwardable registries included (their bytes are not
    /// pnpr's own routes).
    pub(crate) fn of_scope(
        state: &AppState,
        request_base: &PublicBase,
        scope: &str,
        registry: &str,
    ) -> Result<(Scope, PublicBase), ApiError> {
        let refuse = |why: &str| {
            ApiError::bad_request(format!(
                "request field `registries`: scope {scope} is mapped to {}, {why}; map it to \
                 this pnpr server (`{base}` or `{base}~<uplink>/`)",
                redact_url(registry),
                base = request_base.as_str(),
            ))
        };
        let url = plain_registry_url(registry).map_err(|e| refuse(&e.message))?;
        match Self::own(state, request_base, &url) {
            Ok(Some(own)) => Ok(own),
            Ok(None) => Err(refuse("which is not served by this pnpr")),
            Err(e) => Err(refuse(&e.message)),
        }
    }

    /// `url` as one of pnpr's own endpoints: `/` or `/~<uplink>/` under the
    /// request's public base or the configured (or bound) URL, with that
    /// base. `None` when the URL lies under neither.
    fn own(
        state: &AppState,
        request_base: &PublicBase,
        url: &url::Url,
    ) -> Result<Option<(Scope, PublicBase)>, ApiError> {
        let own = [request_base.clone(), PublicBase::fallback(state)]
            .into_iter()
            .find(|b| url.as_str().starts_with(b.as_str()));
        let Some(own) = own else {
            return Ok(None);
        };
        let rest = &url.as_str()[own.as_str().len()..];
        if rest.is_empty() {
            return Ok(Some((Scope::Public, own)));
        }
        let uplink = rest
            .strip_prefix('~')
            .and_then(|r| r.strip_suffix('/'))
            .filter(|u| !u.is_empty() && !u.contains('/'))
            .ok_or_else(|| ApiError::forbidden("registry path is not a pnpr endpoint"))?;
        Ok(Some((Scope::Uplink(uplink.to_string()), own)))
    }

    /// A stable label for cache keys.
    pub(crate) fn label(&self) -> String {
        match self {
            Scope::Public => String::new(),
            Scope::Uplink(u) => u.clone(),
            Scope::Forwarded(f) => format!("fwd:{}", f.registry()),
        }
    }
}

/// The registry as a URL with a trailing `/`, refusing userinfo, queries,
/// fragments and non-HTTP schemes.
fn plain_registry_url(registry: &str) -> Result<url::Url, ApiError> {
    let mut raw = registry.to_string();
    if !raw.ends_with('/') {
        raw.push('/');
    }
    let url =
        url::Url::parse(&raw).map_err(|_| ApiError::bad_request("registry is not a valid URL"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(ApiError::bad_request("registry must be an http(s) URL"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ApiError::bad_request(
            "registry must not carry credentials; send them in authHeaders",
        ));
    }
    if url.query().is_some() || url.fragment().is_some() || registry.contains(['?', '#']) {
        return Err(ApiError::bad_request(
            "registry must not carry a query or a fragment",
        ));
    }
    Ok(url)
}

/// `url` (with a trailing `/`) when it lies under a registry declared in
/// `routes.public`, classifies Public, and is neither pnpr's own origin (as
/// configured or bound, or as this request reached it) nor an uplink's
/// (those keep the server-held credential path).
fn forwardable_registry(state: &AppState, base: &PublicBase, url: &url::Url) -> Option<String> {
    let origin = UrlOrigin::of;
    if origin(url) == origin(&state.public_url) || origin(url) == origin(base.url()) {
        return None;
    }
    let net = state.net();
    if net
        .uplinks
        .values()
        .any(|u| origin(&u.config.url) == origin(url))
    {
        return None;
    }
    let declared = state.live().config.routes.public.iter().any(|r| {
        r.registry
            .as_ref()
            .is_some_and(|reg| origin(reg) == origin(url) && url.path().starts_with(reg.path()))
    });
    let public = net.client.table().classify(url.as_str()).ok() == Some(RouteKind::Public);
    (declared && public).then(|| url.to_string())
}
