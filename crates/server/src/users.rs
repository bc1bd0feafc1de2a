//! User and token endpoints: `npm adduser`/`login`, `whoami`, `logout`,
//! `npm token list/create/revoke`.
//!
//! Invariants: bcrypt runs only here (login, token creation), on the blocking
//! pool, never on the per-request identification path (bearer tokens are an
//! O(1) digest lookup). Plaintext tokens appear exactly once, in the response
//! that creates them; listings show only their SHA-256 id.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use pnpr_auth::{Identity, TokenRecord};
use serde_json::{json, Value};

use crate::error::ApiError;
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
    Path(id): Path<String>,
    body: Option<Json<Value>>,
) -> Result<Response, ApiError> {
    let Some(Json(body)) = body else {
        return Err(ApiError::bad_request(
            "expected a JSON body with name and password",
        ));
    };
    let from_path = id
        .strip_prefix("org.couchdb.user:")
        .unwrap_or(&id)
        .to_string();
    let name = body_str(&body, "name").unwrap_or(&from_path).to_string();
    if name != from_path {
        return Err(ApiError::bad_request(
            "user name in the path and body differ",
        ));
    }
    let password = body_str(&body, "password")
        .ok_or_else(|| ApiError::bad_request("password is required"))?
        .to_string();
    let existed = state.auth.users().user_exists(&name);
    let st = Arc::clone(&state);
    let user = name.clone();
    let (token, _record) = tokio::task::spawn_blocking(move || st.auth.login(&user, &password))
        .await
        .map_err(|e| ApiError::internal("login task failed", e))??;
    tracing::info!(user = %name, created = !existed, "login");
    let ok = if existed {
        format!("you are authenticated as '{name}'")
    } else {
        format!("user '{name}' created")
    };
    Ok((
        StatusCode::CREATED,
        Json(json!({ "ok": ok, "token": token })),
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

fn token_json(r: &TokenRecord) -> Value {
    let created = pnpr_hosted::doc::iso8601(r.created_ms);
    json!({
        "token": format!("{}…", &r.key[..r.key.len().min(6)]),
        "key": r.key,
        "cidr_whitelist": r.cidr_whitelist,
        "readonly": r.readonly,
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

/// `POST /-/npm/v1/tokens` (`npm token create`): needs the password again.
pub async fn create_token(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Option<Json<Value>>,
) -> Result<Json<Value>, ApiError> {
    let user = require_user(&state, &headers)?;
    let Some(Json(body)) = body else {
        return Err(ApiError::bad_request("expected a JSON body"));
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
    let st = Arc::clone(&state);
    let u = user.clone();
    let ok = tokio::task::spawn_blocking(move || st.auth.users().verify(&u, &password))
        .await
        .map_err(|e| ApiError::internal("password check failed", e))??;
    if !ok {
        return Err(ApiError::unauthorized("bad username or password"));
    }
    let (token, record) = state.auth.tokens().create(&user, readonly, cidr)?;
    let mut v = token_json(&record);
    v["token"] = Value::String(token);
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
