//! A `routes.public` registry reached with the caller's forwarded
//! credentials (spec §4.3): the upstream is the authority for every package
//! a forwarded credential matches.
//!
//! Invariant: documents fetched here live only in the request's memo (never
//! a shared metadata cache), and a credential is sent only to the
//! registry's own packument URLs of names that passed validation.

use axum::http::StatusCode;
use serde_json::Value;

use crate::error::ApiError;
use crate::state::AppState;
use crate::urls::redact as redact_url;

/// What a client asks a registry for when it resolves.
const FORWARDED_ACCEPT: &str =
    "application/vnd.npm.install-v1+json; q=1.0, application/json; q=0.8, */*";
/// Largest packument read from a forwarded registry.
const MAX_FORWARDED_PACKUMENT: u64 = 256 * 1024 * 1024;

/// A forwardable registry and the caller's forwarded credential map.
pub(crate) struct Forwarded {
    /// Validated, with a trailing `/`, no userinfo, query or fragment.
    registry: String,
    auth: pnpr_protocol::AuthHeaders,
}

impl Forwarded {
    pub(super) fn new(registry: String, auth: pnpr_protocol::AuthHeaders) -> Self {
        Self { registry, auth }
    }

    pub(crate) fn registry(&self) -> &str {
        &self.registry
    }

    pub(crate) fn packument_url(&self, name: &str) -> String {
        format!("{}{}", self.registry, crate::mirror::encode_name(name))
    }

    /// The forwarded credential for `name`'s packument URL (spec §4.3): its
    /// presence makes the upstream the authority for that package.
    pub(crate) fn credential(&self, name: &str) -> Option<pnpr_upstream::Secret> {
        crate::grants::credential_for(&self.auth, &self.packument_url(name))
            .map(pnpr_upstream::Secret::new)
    }

    /// One packument straight from the registry, with the caller's
    /// credential when one matches (the caller already passed pnpr's policy
    /// when none does).
    pub(crate) async fn packument(&self, state: &AppState, name: &str) -> Result<Value, ApiError> {
        let credential = self.credential(name);
        let req = pnpr_upstream::FetchRequest {
            url: self.packument_url(name),
            accept: Some(FORWARDED_ACCEPT.to_string()),
            ..Default::default()
        };
        let client = &state.net().client;
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
        self.check_status(name, resp.status, credential.is_some())?;
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

    fn check_status(&self, name: &str, status: u16, credentialed: bool) -> Result<(), ApiError> {
        match status {
            200..=299 => Ok(()),
            401 | 403 if !credentialed => Err(ApiError::unauthorized(format!(
                "{name} needs a credential for {}; none was forwarded in authHeaders",
                redact_url(&self.registry)
            ))),
            // A refusal during the cold resolve aborts without touching
            // grants; only the re-check hook clears (spec §4.6).
            401 | 403 => Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the registry refused the forwarded credential for {name}"),
            )),
            404 => Err(ApiError::not_found(name)),
            s => Err(ApiError::new(
                StatusCode::BAD_GATEWAY,
                format!("the registry answered {s} for {name}"),
            )),
        }
    }
}
