//! User and token endpoints: `npm adduser`/`login`, `whoami`, `logout`,
//! `npm token list/create/revoke`.
//!
//! Invariants: bcrypt runs only here (login, token creation) and in the
//! identity gate, on the blocking pool behind the process-wide hashing
//! budget, after the login limiter admitted the attempt (per user name and
//! per client address); never on the per-request identification path
//! (bearer tokens are an O(1) digest lookup). Registration refuses group
//! names and policy tokens, and a registered name starts with no tokens and
//! no grants of an earlier holder. Plaintext tokens appear exactly once, in
//! the response that creates them; listings show only their SHA-256 id.

use std::sync::Arc;

use axum::extract::{Extension, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use pnpr_auth::{AuthError, Identity, TokenRecord};
use serde_json::{json, Value};

use crate::error::{ApiError, Refusal};
use crate::identity::{hashing, ClientAddr};
use crate::state::AppState;

/// The caller behind a request's `Authorization` header.
pub fn identify(state: &AppState, headers: &HeaderMap) -> Identity {
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    state.auth.identify(auth)
}

fn require_user(state: &AppState, headers: &HeaderMap) -> Result<String, ApiError> {
    match identify(state, headers) {
        Identity::User(u) => Ok(u),
        _ => Err(ApiError::unauthorized("authentication required")),
    }
}

fn body_str<'a>(body: &'a Value, key: &str) -> Option<&'a str> {
    body.get(key).and_then(Value::as_str)
}

/// `PUT /-/user/org.couchdb.user:<name>`: log in, or register when allowed.
pub async fn login(
    State(state): State<Arc<AppState>>,
    Extension(ClientAddr(peer)): Extension<ClientAddr>,
    Path(id): Path<String>,
    body: Option<Json<Value>>,
) -> Result<Response, Refusal> {
    let Some(Json(body)) = body else {
        return Err(ApiError::bad_request("expected a JSON body with name and password").into());
    };
    let from_path = id
        .strip_prefix("org.couchdb.user:")
        .unwrap_or(&id)
        .to_string();
    let name = body_str(&body, "name").unwrap_or(&from_path).to_string();
    if name != from_path {
        return Err(ApiError::bad_request("user name in the path and body differ").into());
    }
    let password = body_str(&body, "password")
        .ok_or_else(|| ApiError::bad_request("password is required"))?
        .to_string();
    let attempt = state.auth.limiter().begin(Some(&name), peer)?;
    let policy = state.policy();
    let user = name.clone();
    let result = hashing(&state, move |auth| auth.login(&user, &password, &policy)).await?;
    let outcome = match result {
        Ok(outcome) => outcome,
        // A wrong password stays counted; anything else was no guess.
        Err(AuthError::BadCredentials) => return Err(AuthError::BadCredentials.into()),
        Err(e) => {
            state.auth.limiter().succeeded(attempt);
            return Err(e.into());
        }
    };
    state.auth.limiter().succeeded(attempt);
    if outcome.registered {
        // The name may have been held before: its grants are not the
        // newcomer's (its tokens were already purged by the authenticator).
        state.accelerator.access.clear_user(&name);
    }
    tracing::info!(user = %name, created = outcome.registered, "login");
    let ok = if outcome.registered {
        format!("user '{name}' created")
    } else {
        format!("you are authenticated as '{name}'")
    };
    Ok((
        StatusCode::CREATED,
        Json(json!({ "ok": ok, "token": outcome.token.expose() })),
    )
        .into_response())
}

/// `GET /-/user/org.couchdb.user:<name>`.
pub async fn get_user(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    // Identified callers may look up any user name (`npm owner add` does);
    // nothing but the name is ever returned.
    require_user(&state, &headers)?;
    let asked = id.strip_prefix("org.couchdb.user:").unwrap_or(&id);
    if !state.auth.users().user_exists(asked) {
        return Err(ApiError::not_found(format!("user {asked}")));
    }
    Ok(Json(json!({ "name": asked })))
}

/// npm tries the web login flow first and falls back to the classic
/// `PUT /-/user` flow on a 404, which is what we support.
pub async fn web_login_unsupported() -> ApiError {
    ApiError::not_found("web login is not supported; use the classic login flow")
}

/// `GET /-/whoami`.
pub async fn whoami(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let user = require_user(&state, &headers)?;
    Ok(Json(json!({ "username": user })))
}

/// `DELETE /-/user/token/<token>` (`npm logout`).
pub async fn logout(
    State(state): State<Arc<AppState>>,
    Path(token): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let user = require_user(&state, &headers)?;
    if !state.auth.tokens().revoke(&user, &token)? {
        return Err(ApiError::not_found("token"));
    }
    Ok(Json(json!({ "ok": "logged out" })))
}

/// A token as the npm registry lists it: `token` is the start of the
/// plaintext (npm prints it followed by `…`, and `npm token rm <token>`
/// matches a full token against it), `key` the id, `cidr_whitelist` `null`
/// when unrestricted (npm prints an empty whitelist line for `[]`).
fn token_json(r: &TokenRecord) -> Value {
    let created = pnpr_hosted::doc::iso8601(r.created_ms);
    let cidr = if r.cidr_whitelist.is_empty() {
        Value::Null
    } else {
        json!(r.cidr_whitelist)
    };
    json!({
        "token": r.shown.as_deref().unwrap_or(pnpr_auth::TOKEN_PREFIX),
        "key": r.key,
        "name": r.name.as_deref().unwrap_or("unnamed"),
        "cidr_whitelist": cidr,
        "readonly": r.readonly,
        "automation": false,
        "created": created,
        "updated": created,
    })
}

/// `GET /-/npm/v1/tokens`.
pub async fn list_tokens(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let user = require_user(&state, &headers)?;
    let objects: Vec<Value> = state
        .auth
        .tokens()
        .list(&user)
        .iter()
        .map(token_json)
        .collect();
    Ok(Json(
        json!({ "total": objects.len(), "objects": objects, "urls": {} }),
    ))
}

/// `POST /-/npm/v1/tokens` (`npm token create`): needs the password again,
/// which counts against the login limiter like any other password check.
pub async fn create_token(
    State(state): State<Arc<AppState>>,
    Extension(ClientAddr(peer)): Extension<ClientAddr>,
    headers: HeaderMap,
    body: Option<Json<Value>>,
) -> Result<Json<Value>, Refusal> {
    let user = require_user(&state, &headers)?;
    let Some(Json(body)) = body else {
        return Err(ApiError::bad_request("expected a JSON body").into());
    };
    let password = body_str(&body, "password")
        .ok_or_else(|| ApiError::bad_request("password is required"))?
        .to_string();
    let readonly = body
        .get("readonly")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let cidr: Vec<String> = body
        .get("cidr_whitelist")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let name = body_str(&body, "name")
        .filter(|n| !n.is_empty())
        .map(str::to_string);
    let attempt = state.auth.limiter().begin(Some(&user), peer)?;
    let u = user.clone();
    let result = hashing(&state, move |auth| {
        auth.issue_token(&u, &password, readonly, cidr, name.as_deref())
    })
    .await?;
    let (token, record) = match result {
        Ok(issued) => issued,
        Err(AuthError::BadCredentials) => return Err(AuthError::BadCredentials.into()),
        Err(e) => {
            state.auth.limiter().succeeded(attempt);
            return Err(e.into());
        }
    };
    state.auth.limiter().succeeded(attempt);
    let mut v = token_json(&record);
    v["token"] = Value::String(token.expose().clone());
    Ok(Json(v))
}

/// `DELETE /-/npm/v1/tokens/token/<key>` (`npm token revoke`).
pub async fn revoke_token(
    State(state): State<Arc<AppState>>,
    Path(key): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let user = require_user(&state, &headers)?;
    if !state.auth.tokens().revoke(&user, &key)? {
        return Err(ApiError::not_found("token"));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
