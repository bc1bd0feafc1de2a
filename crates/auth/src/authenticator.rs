//! Turns an `Authorization` header into an [`Identity`], and logs users in.
//!
//! Owns the per-process cache of verified Basic credentials, the login
//! limiter and the token lifecycle. Invariants:
//! * any header that is missing, malformed, unknown, revoked or wrong yields
//!   [`Identity::Anonymous`]; parsing never panics on arbitrary input;
//! * the per-request path ([`Authenticator::identify`],
//!   [`Authenticator::authenticate`]) never runs bcrypt: a Basic credential
//!   identifies someone only once [`Authenticator::verify_basic`] (run on a
//!   blocking thread, behind the limiter) has put it in the cache;
//! * bcrypt runs at most once per distinct (user, password) while the user's
//!   htpasswd hash is unchanged: the cache stores the hash a password was
//!   verified against, so a password change or removed user invalidates it;
//! * a token identifies its user only while the htpasswd entry it was issued
//!   to still exists unchanged; a registration under a name starts with no
//!   tokens, whatever an earlier holder of the name left behind;
//! * the cache holds only salted SHA-256 digests of credentials, never the
//!   passwords, and is bounded.

use crate::limiter::{LoginLimiter, LoginLimits};
use crate::policy::{Identity, Policy};
use crate::redact::Redacted;
use crate::store::UserStore;
use crate::tokens::{TokenRecord, TokenStore};
use crate::AuthError;
use base64::Engine as _;
use rand::RngCore as _;
use sha2::{Digest, Sha256};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;

#[cfg(test)]
mod tests;

/// The name of tokens issued by `npm login` / `npm adduser`.
pub const LOGIN_TOKEN_NAME: &str = "login";

/// Upper bound on cached Basic credentials; oldest entries are evicted.
const BASIC_CACHE_CAPACITY: usize = 1024;

/// The outcome of authenticating a request: who it is and whether the
/// credential may write (read-only tokens must not publish).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// Who is calling.
    pub identity: Identity,
    /// True for read-only tokens; always false for Basic credentials and
    /// anonymous callers (policy decides what anonymous may do).
    pub readonly: bool,
    /// The token's id (hex SHA-256) when a bearer token was used; safe to log.
    pub token_key: Option<String>,
}

impl Caller {
    fn anonymous() -> Self {
        Caller {
            identity: Identity::Anonymous,
            readonly: false,
            token_key: None,
        }
    }
}

/// A decoded `Basic` credential. The password never prints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BasicCredential {
    /// The user name as sent.
    pub user: String,
    password: Redacted<String>,
}

/// What an `Authorization` header holds, as far as Basic goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BasicHeader {
    /// No header, or another scheme (bearer tokens need no password check).
    NotBasic,
    /// `Basic` with a value that is not base64 `user:password` with both
    /// parts non-empty.
    Malformed,
    /// A well-formed credential, not yet checked.
    Credential(BasicCredential),
}

/// What `npm login` / `npm adduser` produced.
#[derive(Debug)]
pub struct LoginOutcome {
    /// The plaintext token, to be shown once.
    pub token: Redacted<String>,
    pub record: TokenRecord,
    /// True if the call created the account; per-user state kept outside
    /// this crate (grants) must then be cleared for the name.
    pub registered: bool,
}

struct CachedBasic {
    user: String,
    /// The htpasswd hash the password was verified against.
    hash: String,
}

/// A bounded FIFO map from salted credential digest to verified user.
#[derive(Default)]
struct BasicCache {
    entries: HashMap<[u8; 32], CachedBasic>,
    order: VecDeque<[u8; 32]>,
}

impl BasicCache {
    fn insert(&mut self, key: [u8; 32], value: CachedBasic) {
        if self.entries.insert(key, value).is_none() {
            self.order.push_back(key);
        }
        while self.entries.len() > BASIC_CACHE_CAPACITY {
            match self.order.pop_front() {
                Some(old) => {
                    self.entries.remove(&old);
                }
                None => break,
            }
        }
    }

    fn remove(&mut self, key: &[u8; 32]) {
        if self.entries.remove(key).is_some() {
            self.order.retain(|k| k != key);
        }
    }
}

/// Authenticates requests against the user database and the token store.
/// Share it behind an `Arc`.
pub struct Authenticator {
    users: Box<dyn UserStore>,
    tokens: TokenStore,
    /// Per-process salt so cached digests are useless outside this process.
    salt: [u8; 32],
    basic_cache: Mutex<BasicCache>,
    limiter: LoginLimiter,
    /// Users whose tokens were purged since the last [`Authenticator::sweep`].
    retired: Mutex<BTreeSet<String>>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("users", &self.users)
            .field("tokens", &self.tokens)
            .finish_non_exhaustive()
    }
}

/// Splits `"<scheme> <credentials>"`; the scheme is matched
/// case-insensitively by the caller.
fn split_scheme(header: &str) -> Option<(&str, &str)> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(|c: char| c.is_ascii_whitespace())?;
    let rest = rest.trim();
    (!rest.is_empty()).then_some((scheme, rest))
}

impl Authenticator {
    /// Combines the user database (the htpasswd file, or the shared
    /// PostgreSQL table) and the token store.
    pub fn new(users: impl UserStore + 'static, tokens: TokenStore) -> Self {
        let mut salt = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut salt);
        Authenticator {
            users: Box::new(users),
            tokens,
            salt,
            basic_cache: Mutex::new(BasicCache::default()),
            limiter: LoginLimiter::new(LoginLimits::default()),
            retired: Mutex::new(BTreeSet::new()),
        }
    }

    /// Replaces the default login-attempt budgets.
    pub fn with_login_limits(mut self, limits: LoginLimits) -> Self {
        self.limiter = LoginLimiter::new(limits);
        self
    }

    /// The login-attempt limiter every password check must pass first.
    pub fn limiter(&self) -> &LoginLimiter {
        &self.limiter
    }

    /// The user database.
    pub fn users(&self) -> &dyn UserStore {
        self.users.as_ref()
    }

    /// The token store.
    pub fn tokens(&self) -> &TokenStore {
        &self.tokens
    }

    /// Who sent this `Authorization` header. Tokens with a CIDR whitelist are
    /// refused here because the peer is unknown; use [`Self::authenticate`]
    /// with the peer address to honour them.
    ///
    /// Never runs bcrypt: a `Basic` credential counts only once
    /// [`Self::verify_basic`] has cached it.
    pub fn identify(&self, authorization: Option<&str>) -> Identity {
        self.authenticate(authorization, None).identity
    }

    /// Full authentication: identity, read-only flag and token id, checking
    /// token CIDR whitelists against `peer`.
    pub fn authenticate(&self, authorization: Option<&str>, peer: Option<IpAddr>) -> Caller {
        let Some((scheme, credentials)) = authorization.and_then(split_scheme) else {
            return Caller::anonymous();
        };
        if scheme.eq_ignore_ascii_case("bearer") {
            self.bearer(credentials, peer)
        } else if scheme.eq_ignore_ascii_case("basic") {
            self.basic(credentials)
        } else {
            Caller::anonymous()
        }
    }

    fn bearer(&self, token: &str, peer: Option<IpAddr>) -> Caller {
        let Some(record) = self.tokens.lookup(token) else {
            return Caller::anonymous();
        };
        if !self.token_is_current(&record) {
            tracing::debug!(key = %record.key, "token of a removed or replaced account");
            return Caller::anonymous();
        }
        if !record.allows_peer(peer) {
            tracing::debug!(key = %record.key, "token used from outside its CIDR whitelist");
            return Caller::anonymous();
        }
        Caller {
            identity: Identity::User(record.user),
            readonly: record.readonly,
            token_key: Some(record.key),
        }
    }

    fn basic(&self, encoded: &str) -> Caller {
        let Some(cred) = decode_basic(encoded) else {
            return Caller::anonymous();
        };
        if self.is_verified(&cred) {
            Caller {
                identity: Identity::User(cred.user),
                readonly: false,
                token_key: None,
            }
        } else {
            Caller::anonymous()
        }
    }

    /// Classifies an `Authorization` header for the Basic gate.
    pub fn basic_header(authorization: Option<&str>) -> BasicHeader {
        match authorization.and_then(split_scheme) {
            Some((scheme, encoded)) if scheme.eq_ignore_ascii_case("basic") => {
                decode_basic(encoded).map_or(BasicHeader::Malformed, BasicHeader::Credential)
            }
            // `Basic` with nothing after it.
            None if authorization.is_some_and(|h| h.trim().eq_ignore_ascii_case("basic")) => {
                BasicHeader::Malformed
            }
            _ => BasicHeader::NotBasic,
        }
    }

    /// Whether this credential was verified against the user's current
    /// htpasswd entry (a cache hit). Cheap; never runs bcrypt.
    pub fn is_verified(&self, cred: &BasicCredential) -> bool {
        let key = self.cache_key(&cred.user, cred.password.expose());
        let current = self.users.current_hash(&cred.user);
        let mut cache = self.basic_cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(hit) = cache.entries.get(&key) {
            if hit.user == cred.user && current.as_deref() == Some(hit.hash.as_str()) {
                return true;
            }
            // Stale: the password changed or the user was removed.
            cache.remove(&key);
        }
        false
    }

    /// Checks the password (bcrypt for an existing user) and caches a
    /// success. Runs bcrypt: call from `spawn_blocking`, after the limiter
    /// admitted the attempt.
    pub fn verify_basic(&self, cred: &BasicCredential) -> bool {
        if self.is_verified(cred) {
            return true;
        }
        if self.users.current_hash(&cred.user).is_none() {
            return false;
        }
        // bcrypt runs without the cache lock held.
        match self
            .users
            .verify_with_hash(&cred.user, cred.password.expose())
        {
            Some(hash) => {
                let key = self.cache_key(&cred.user, cred.password.expose());
                self.basic_cache
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(
                        key,
                        CachedBasic {
                            user: cred.user.clone(),
                            hash,
                        },
                    );
                true
            }
            None => false,
        }
    }

    /// Whether a token still belongs to a live account incarnation; if not,
    /// its user's stale tokens are purged (once the file is settled).
    fn token_is_current(&self, record: &TokenRecord) -> bool {
        let current = match self.users.checked_incarnation(&record.user) {
            Ok(current) => current,
            // Unknown is not gone: refuse the token, delete nothing.
            Err(e) => {
                tracing::warn!(user = %record.user, error = %e, "user lookup failed; token refused");
                return false;
            }
        };
        let ok = match (&current, &record.incarnation) {
            (None, _) => false,
            (Some(cur), Some(bound)) => cur == bound,
            // Issued before tokens were bound: valid while the user exists.
            (Some(_), None) => true,
        };
        if !ok {
            self.retire_tokens(&record.user, current.as_deref());
        }
        ok
    }

    /// Deletes `user`'s tokens not of `current` and remembers the user for
    /// the next [`Self::sweep`]. A rare database write on the request path,
    /// once per stale account; skipped while the htpasswd file may be
    /// half-written (the token is refused meanwhile anyway).
    fn retire_tokens(&self, user: &str, current: Option<&str>) {
        if !self.users.settled() {
            return;
        }
        match self.tokens.purge_stale(user, current) {
            Ok(0) => {}
            Ok(_) => {
                self.retired
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(user.to_owned());
            }
            Err(e) => tracing::warn!(user, error = %e, "cannot purge stale tokens"),
        }
    }

    /// Housekeeping for hand edits of the htpasswd file: purges the tokens of
    /// users removed or replaced since the last call (and of token holders
    /// no longer in the file at all, e.g. removed while the server was
    /// down), and returns every user whose old incarnation was retired so
    /// the caller can drop its own per-user state (grants). Cheap when
    /// nothing changed; call it periodically from a blocking context.
    pub fn sweep(&self) -> Vec<String> {
        let mut out: BTreeSet<String> = self.users.drain_retired().into_iter().collect();
        if self.users.edited_out_of_band() && self.users.settled() {
            for user in self.tokens.users() {
                let current = self.users.incarnation(&user);
                match self.tokens.purge_stale(&user, current.as_deref()) {
                    Ok(0) => {}
                    Ok(_) => {
                        out.insert(user);
                    }
                    Err(e) => tracing::warn!(user, error = %e, "cannot purge stale tokens"),
                }
            }
        }
        out.extend(std::mem::take(
            &mut *self.retired.lock().unwrap_or_else(|e| e.into_inner()),
        ));
        out.into_iter().collect()
    }

    fn cache_key(&self, user: &str, password: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.salt);
        // Length-prefix the user so (user, password) splits are unambiguous.
        h.update((user.len() as u64).to_le_bytes());
        h.update(user.as_bytes());
        h.update(password.as_bytes());
        h.finalize().into()
    }

    /// `npm login` / `npm adduser`: verifies an existing user's password, or
    /// registers a new user when registration is open and `policy` does not
    /// reserve the name, then issues a read-write token bound to the account.
    /// Runs bcrypt: call from `spawn_blocking`, after the limiter admitted
    /// the attempt.
    ///
    /// Errors: [`AuthError::BadCredentials`] for a wrong password,
    /// [`AuthError::ReservedName`] for a group or policy-token name, and the
    /// registration errors of [`Htpasswd::add_user`] for new users.
    pub fn login(
        &self,
        user: &str,
        password: &str,
        policy: &Policy,
    ) -> Result<LoginOutcome, AuthError> {
        if password.is_empty() {
            return Err(AuthError::EmptyPassword);
        }
        if !self.users.user_exists(user) {
            if policy.reserves_name(user) {
                return Err(AuthError::ReservedName(user.to_owned()));
            }
            match self.users.add_user(user, password) {
                Ok(()) => {
                    tracing::info!(user, "user registered");
                    // The name may have belonged to a removed user: nothing
                    // of theirs carries over to the newcomer.
                    self.tokens.purge_user(user)?;
                    let incarnation = self.users.incarnation(user);
                    let (token, record) = self.tokens.create_bound(
                        user,
                        false,
                        Vec::new(),
                        incarnation.as_deref(),
                        Some(LOGIN_TOKEN_NAME),
                    )?;
                    return Ok(LoginOutcome {
                        token: Redacted(token),
                        record,
                        registered: true,
                    });
                }
                // Registered concurrently: fall through to a normal login.
                Err(AuthError::UserExists) => {}
                Err(e) => return Err(e),
            }
        }
        match self.users.verify_incarnation(user, password)? {
            Some(incarnation) => {
                let (token, record) = self.tokens.create_bound(
                    user,
                    false,
                    Vec::new(),
                    Some(&incarnation),
                    Some(LOGIN_TOKEN_NAME),
                )?;
                Ok(LoginOutcome {
                    token: Redacted(token),
                    record,
                    registered: false,
                })
            }
            None => {
                tracing::info!(user, "login failed");
                Err(AuthError::BadCredentials)
            }
        }
    }

    /// `npm token create`: checks `user`'s password again and issues a token
    /// bound to the account. Runs bcrypt: call from `spawn_blocking`, after
    /// the limiter admitted the attempt.
    pub fn issue_token(
        &self,
        user: &str,
        password: &str,
        readonly: bool,
        cidr_whitelist: Vec<String>,
        name: Option<&str>,
    ) -> Result<(Redacted<String>, TokenRecord), AuthError> {
        match self.users.verify_incarnation(user, password)? {
            Some(incarnation) => {
                let (token, record) = self.tokens.create_bound(
                    user,
                    readonly,
                    cidr_whitelist,
                    Some(&incarnation),
                    name,
                )?;
                Ok((Redacted(token), record))
            }
            None => Err(AuthError::BadCredentials),
        }
    }
}

/// Decodes base64 `user:password` (padding optional); `None` unless both
/// parts are non-empty.
fn decode_basic(encoded: &str) -> Option<BasicCredential> {
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    let decoded = String::from_utf8(engine.decode(encoded.trim()).ok()?).ok()?;
    let (user, password) = decoded.split_once(':')?;
    if user.is_empty() || password.is_empty() {
        return None;
    }
    Some(BasicCredential {
        user: user.to_owned(),
        password: Redacted(password.to_owned()),
    })
}
