//! `pnpr-auth`: who is calling, and what may they do.
//!
//! Owns caller identity (`Authorization` header → [`Identity`]), the user
//! database (an Apache-style htpasswd file, or PostgreSQL shared by several
//! nodes), API tokens (SQLite or PostgreSQL, stored only as SHA-256 digests)
//! and the Verdaccio-style `packages:` access policy. Both stores sit behind
//! the [`UserStore`] and [`TokenBackend`] traits; the authenticator never
//! knows which backend it runs on.
//!
//! Invariants guarded here:
//! * the request path never runs bcrypt (a Basic credential is checked once,
//!   on a blocking thread, behind the [`LoginLimiter`], then served from a
//!   cache) and, on the embedded backend, never touches the database: bearer
//!   tokens are a hash plus a map lookup (on PostgreSQL, one indexed read,
//!   so a revocation holds on every node at once);
//! * online guessing is bounded per user name and per client address, and a
//!   refused guess costs no hash;
//! * a token lives no longer than the htpasswd entry it was issued to;
//! * no secret (password, token, `Authorization` value) reaches an error
//!   message, a `Debug` rendering or a log line; only SHA-256 digests are logged;
//! * [`Policy`] is a pure function of (identity, package, action), so the
//!   server and the resolver can share one compiled policy in-process.
//!
//! This crate deliberately does not depend on `pnpr-config`: callers translate
//! their configuration into [`PolicyInput`], [`Htpasswd::open`] and
//! [`TokenStore::open`] arguments.
//!
//! bcrypt is CPU-heavy (tens of milliseconds at cost 10). It runs only in
//! [`Authenticator::verify_basic`], [`Authenticator::login`],
//! [`Authenticator::issue_token`], [`Htpasswd::verify`] and
//! [`Htpasswd::add_user`]; callers on an async runtime run those inside
//! `tokio::task::spawn_blocking`, and only after [`LoginLimiter::begin`]
//! admitted the attempt. [`Authenticator::identify`] and
//! [`Authenticator::authenticate`] never hash.

mod authenticator;
mod copy;
mod error;
mod htpasswd;
mod limiter;
mod policy;
mod postgres;
mod redact;
mod store;
mod tokens;

pub use authenticator::{Authenticator, BasicCredential, BasicHeader, Caller, LoginOutcome};
pub use copy::{copy_embedded, CopyReport};
pub use error::AuthError;
pub use htpasswd::{validate_username, Htpasswd, SETTLE_DELAY};
pub use limiter::{Attempt, LoginLimiter, LoginLimits, Throttled, MAX_TRACKED};
pub use policy::{Action, Denial, Identity, PackageRuleInput, Policy, PolicyInput, UplinkDenial};
pub use postgres::{open_postgres, PgTokens, PgUsers, MIGRATIONS};
pub use redact::{credential_digest, Redacted};
pub use store::{TokenBackend, UserStore};
pub use tokens::{TokenRecord, TokenStore, TOKEN_PREFIX};
