//! `pnpr-auth`: who is calling, and what may they do.
//!
//! Owns caller identity (`Authorization` header → [`Identity`]), the user
//! database (an Apache-style htpasswd file), API tokens (SQLite, stored only as
//! SHA-256 digests) and the Verdaccio-style `packages:` access policy.
//!
//! Invariants guarded here:
//! * the request path never runs bcrypt more than once per distinct credential
//!   and never touches the database: bearer tokens are a hash plus a map lookup;
//! * no secret (password, token, `Authorization` value) reaches an error
//!   message, a `Debug` rendering or a log line; only SHA-256 digests are logged;
//! * [`Policy`] is a pure function of (identity, package, action), so the
//!   server and the resolver can share one compiled policy in-process.
//!
//! This crate deliberately does not depend on `pnpr-config`: callers translate
//! their configuration into [`PolicyInput`], [`Htpasswd::open`] and
//! [`TokenStore::open`] arguments.
//!
//! bcrypt is CPU-heavy (tens of milliseconds at cost 10). Callers on an async
//! runtime should run [`Authenticator::login`], [`Authenticator::identify`] for
//! `Basic` credentials, [`Htpasswd::verify`] and [`Htpasswd::add_user`] inside
//! `tokio::task::spawn_blocking`.

mod authenticator;
mod error;
mod htpasswd;
mod policy;
mod redact;
mod tokens;

pub use authenticator::{Authenticator, Caller};
pub use error::AuthError;
pub use htpasswd::{validate_username, Htpasswd};
pub use policy::{Action, Denial, Identity, PackageRuleInput, Policy, PolicyInput, UplinkDenial};
pub use redact::{credential_digest, Redacted};
pub use tokens::{TokenRecord, TokenStore, TOKEN_PREFIX};
