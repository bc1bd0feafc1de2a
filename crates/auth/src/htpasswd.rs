//! The htpasswd user database.
//!
//! Owns the in-memory copy of an Apache-style `user:hash[:comment]` file and
//! all writes to it. Invariants:
//! * the file is only ever replaced atomically (temp file in the same
//!   directory, fsync, rename), so a crash never leaves a half-written file;
//! * the cached copy is re-read whenever the file's (mtime, length) changes,
//!   so out-of-band edits (`htpasswd -B`) take effect without a restart;
//! * writers are serialised and re-read the file before appending, so two
//!   concurrent registrations cannot lose each other's line;
//! * hashes never leave this module except to the authenticator's cache
//!   check, and are never logged; what identifies one *incarnation* of an
//!   account (its entry as written) outside is a digest of its hash
//!   ([`Htpasswd::incarnation`]), so a removed-and-recreated user is a
//!   different incarnation even under the same name;
//! * destructive follow-ups of an edit (purging a removed user's tokens and
//!   grants) are only derived from a *settled* file, one not modified for
//!   [`SETTLE_DELAY`]: an editor or `htpasswd` rewriting the file in place
//!   may be read half-written, and that must deny for a moment, never delete.
//!
//! Supported hash formats: bcrypt (`$2a$`, `$2b$`, `$2y$`) and `{SHA}`
//! (base64 SHA-1, legacy). Anything else (crypt, MD5-APR1, plain) never
//! verifies; a warning is logged once per user.

use crate::AuthError;
use base64::Engine as _;
use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, SystemTime};

#[cfg(test)]
mod tests;

/// bcrypt cost for new users: Verdaccio's and Apache's default.
const BCRYPT_COST: u32 = 10;

/// npm's limit on package and user name length.
const MAX_USERNAME_LEN: usize = 214;

/// How long the file must stay unmodified before removals read from it are
/// acted upon (see the module docs).
pub const SETTLE_DELAY: Duration = Duration::from_secs(2);

/// Bare words the `packages:` policy reads as special tokens (`all` is
/// everyone); registering them as user names would be confusing at best.
const RESERVED_NAMES: &[&str] = &["all", "anonymous", "authenticated"];

/// Identifies one version of the file on disk, cheaply (one `stat`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
}

#[derive(Default)]
struct Snapshot {
    /// `None` while the file does not exist.
    stamp: Option<Stamp>,
    /// User → password hash, in file order semantics (first line wins).
    users: HashMap<String, String>,
}

/// The htpasswd-backed user database. Share it behind an `Arc`.
///
/// `verify` and `add_user` run bcrypt (tens of milliseconds); call them from
/// `spawn_blocking` on an async runtime.
pub struct Htpasswd {
    path: PathBuf,
    max_users: Option<i64>,
    snapshot: RwLock<Snapshot>,
    /// Serialises writers (read-modify-rename must not interleave).
    write_lock: Mutex<()>,
    /// Users whose unsupported hash format was already warned about.
    warned: Mutex<HashSet<String>>,
    /// How many password hashes were checked; lets tests prove caching.
    hash_checks: AtomicU64,
    /// The last settled state, the base for [`Htpasswd::drain_retired`].
    baseline: Mutex<Snapshot>,
    settle_delay: Duration,
}

impl std::fmt::Debug for Htpasswd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Htpasswd")
            .field("path", &self.path)
            .field("max_users", &self.max_users)
            .finish_non_exhaustive()
    }
}

/// Checks a new user name against npm's rules: non-empty, at most 214
/// characters, lowercase, URL-safe characters only, not starting with `.`.
/// This also excludes `:` (the htpasswd separator), spaces, `/`, control
/// characters and the `$`/`@` prefixes of policy tokens.
pub fn validate_username(name: &str) -> Result<(), AuthError> {
    if name.is_empty() {
        return Err(AuthError::InvalidUsername("name is empty"));
    }
    if name.len() > MAX_USERNAME_LEN {
        return Err(AuthError::InvalidUsername(
            "name is longer than 214 characters",
        ));
    }
    if name.starts_with('.') {
        return Err(AuthError::InvalidUsername("name may not start with '.'"));
    }
    if RESERVED_NAMES.contains(&name) {
        return Err(AuthError::InvalidUsername(
            "name is reserved (a token of the access policy)",
        ));
    }
    if name.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(AuthError::InvalidUsername("name must be lowercase"));
    }
    let url_safe =
        |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.!~*'()".contains(c);
    if !name.chars().all(url_safe) {
        return Err(AuthError::InvalidUsername(
            "name may only contain lowercase letters, digits and -_.!~*'()",
        ));
    }
    Ok(())
}

fn io_err<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> AuthError + 'a {
    move |source| AuthError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

fn stat(path: &Path) -> Result<Option<Stamp>, AuthError> {
    match fs::metadata(path) {
        Ok(meta) => Ok(Some(Stamp {
            modified: meta.modified().ok(),
            len: meta.len(),
        })),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err("cannot stat", path)(e)),
    }
}

fn parse(content: &str) -> HashMap<String, String> {
    let mut users = HashMap::new();
    for line in content.lines() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let mut fields = line.splitn(3, ':');
        let (Some(user), Some(hash)) = (fields.next(), fields.next()) else {
            continue;
        };
        if user.is_empty() {
            continue;
        }
        users
            .entry(user.to_owned())
            .or_insert_with(|| hash.to_owned());
    }
    users
}

/// Outcome of checking a password against a stored hash.
pub(crate) enum HashCheck {
    Match,
    Mismatch,
    Unsupported,
}

pub(crate) fn check_hash(password: &str, hash: &str) -> HashCheck {
    if hash.starts_with("$2a$") || hash.starts_with("$2b$") || hash.starts_with("$2y$") {
        match bcrypt::verify(password, hash) {
            Ok(true) => HashCheck::Match,
            Ok(false) => HashCheck::Mismatch,
            // A malformed bcrypt string; the library error would echo it.
            Err(_) => HashCheck::Unsupported,
        }
    } else if let Some(encoded) = hash.strip_prefix("{SHA}") {
        use sha1::Digest as _;
        let Ok(expected) = base64::engine::general_purpose::STANDARD.decode(encoded) else {
            return HashCheck::Unsupported;
        };
        let actual = sha1::Sha1::digest(password.as_bytes());
        if constant_time_eq(&expected, &actual) {
            HashCheck::Match
        } else {
            HashCheck::Mismatch
        }
    } else {
        HashCheck::Unsupported
    }
}

/// The incarnation digest of a stored hash. Domain-separated SHA-256: the
/// digest reveals nothing usable about the hash (which is itself salted).
pub(crate) fn incarnation_of(hash: &str) -> String {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    h.update(b"pnpr-htpasswd-incarnation\0");
    h.update(hash.as_bytes());
    hex::encode(h.finalize())
}

/// A new entry's hash: bcrypt at [`BCRYPT_COST`], `$2y$` like Apache's.
pub(crate) fn hash_password(password: &str) -> Result<String, AuthError> {
    Ok(bcrypt::hash_with_result(password, BCRYPT_COST)
        .map_err(|_| AuthError::Hash)?
        .format_for_version(bcrypt::Version::TwoY))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Htpasswd {
    /// Opens the database. A missing file means "no users yet"; it is
    /// created on the first registration.
    ///
    /// `max_users`: `None` = unlimited, `-1` (any negative) = registration
    /// disabled, `n` = at most `n` users in the file.
    pub fn open(path: PathBuf, max_users: Option<i64>) -> Result<Self, AuthError> {
        let db = Htpasswd {
            path,
            max_users,
            snapshot: RwLock::new(Snapshot::default()),
            write_lock: Mutex::new(()),
            warned: Mutex::new(HashSet::new()),
            hash_checks: AtomicU64::new(0),
            baseline: Mutex::new(Snapshot::default()),
            settle_delay: SETTLE_DELAY,
        };
        db.refresh()?;
        {
            let snap = db.snapshot.read().unwrap_or_else(|e| e.into_inner());
            *db.baseline.lock().unwrap_or_else(|e| e.into_inner()) = Snapshot {
                stamp: snap.stamp,
                users: snap.users.clone(),
            };
        }
        Ok(db)
    }

    /// Overrides [`SETTLE_DELAY`] (tests, and operators' tooling that
    /// guarantees atomic replacement).
    pub fn with_settle_delay(mut self, delay: Duration) -> Self {
        self.settle_delay = delay;
        self
    }

    /// The file this database reads and writes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Re-reads the file if its stamp changed since the last read.
    fn refresh(&self) -> Result<(), AuthError> {
        let current = stat(&self.path)?;
        {
            let snap = self.snapshot.read().unwrap_or_else(|e| e.into_inner());
            if snap.stamp == current {
                return Ok(());
            }
        }
        self.reload()
    }

    /// Unconditionally re-reads the file. Stamps are taken before reading so
    /// a concurrent edit is picked up by the next refresh at worst.
    fn reload(&self) -> Result<(), AuthError> {
        let stamp = stat(&self.path)?;
        let users = match fs::read(&self.path) {
            Ok(bytes) => parse(&String::from_utf8_lossy(&bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => HashMap::new(),
            Err(e) => return Err(io_err("cannot read", &self.path)(e)),
        };
        let mut snap = self.snapshot.write().unwrap_or_else(|e| e.into_inner());
        *snap = Snapshot { stamp, users };
        Ok(())
    }

    /// Refreshes, logging (not propagating) an I/O failure: the last good
    /// snapshot keeps serving, which beats locking everyone out.
    fn refresh_or_warn(&self) {
        if let Err(e) = self.refresh() {
            tracing::warn!(error = %e, "htpasswd refresh failed; using the previous copy");
        }
    }

    /// The stored hash for `user`, if any (after a cheap refresh).
    pub(crate) fn current_hash(&self, user: &str) -> Option<String> {
        self.refresh_or_warn();
        let snap = self.snapshot.read().unwrap_or_else(|e| e.into_inner());
        snap.users.get(user).cloned()
    }

    /// Checks `password` for `user`. Unknown users and unsupported hash
    /// formats yield `Ok(false)`. Runs bcrypt: use `spawn_blocking`.
    pub fn verify(&self, user: &str, password: &str) -> Result<bool, AuthError> {
        self.refresh()?;
        Ok(self.verify_with_hash(user, password).is_some())
    }

    /// Verifies against the current snapshot and returns the hash that
    /// matched, so callers can cache the success against that exact hash.
    pub(crate) fn verify_with_hash(&self, user: &str, password: &str) -> Option<String> {
        let hash = {
            let snap = self.snapshot.read().unwrap_or_else(|e| e.into_inner());
            snap.users.get(user).cloned()?
        };
        // bcrypt runs outside the lock so readers are never blocked by it.
        self.hash_checks.fetch_add(1, Ordering::Relaxed);
        match check_hash(password, &hash) {
            HashCheck::Match => Some(hash),
            HashCheck::Mismatch => None,
            HashCheck::Unsupported => {
                let first = self
                    .warned
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(user.to_owned());
                if first {
                    tracing::warn!(
                        user,
                        "htpasswd entry uses an unsupported hash format (only bcrypt and {{SHA}} are supported); login refused"
                    );
                }
                None
            }
        }
    }

    /// Digest of `user`'s current entry (after a cheap refresh): equal
    /// digests mean the same account incarnation. `None` if there is no
    /// such user.
    pub fn incarnation(&self, user: &str) -> Option<String> {
        self.current_hash(user).map(|h| incarnation_of(&h))
    }

    /// Whether the copy in memory comes from a file that has not been
    /// modified for the settle delay (a missing file is never settled: a
    /// vanished user database is an accident far more often than an intent).
    pub fn settled(&self) -> bool {
        self.refresh_or_warn();
        self.settled_at(SystemTime::now())
    }

    fn settled_at(&self, now: SystemTime) -> bool {
        let snap = self.snapshot.read().unwrap_or_else(|e| e.into_inner());
        match snap.stamp.and_then(|s| s.modified) {
            Some(modified) => now
                .duration_since(modified)
                .is_ok_and(|age| age >= self.settle_delay),
            None => false,
        }
    }

    /// Users removed, or whose entry was replaced, since the previous call
    /// (or since `open`), judged between settled versions of the file only.
    /// Per-user state kept elsewhere (tokens, grants) belongs to the old
    /// incarnation and must go.
    pub fn drain_retired(&self) -> Vec<String> {
        if !self.settled() {
            return Vec::new();
        }
        let snap = self.snapshot.read().unwrap_or_else(|e| e.into_inner());
        let mut base = self.baseline.lock().unwrap_or_else(|e| e.into_inner());
        if base.stamp == snap.stamp {
            return Vec::new();
        }
        let mut retired: Vec<String> = base
            .users
            .iter()
            .filter(|(user, hash)| snap.users.get(*user) != Some(*hash))
            .map(|(user, _)| user.clone())
            .collect();
        retired.sort();
        *base = Snapshot {
            stamp: snap.stamp,
            users: snap.users.clone(),
        };
        retired
    }

    /// Verifies after a refresh and returns the matching hash's
    /// incarnation. Runs bcrypt: use `spawn_blocking`.
    pub(crate) fn verify_incarnation(
        &self,
        user: &str,
        password: &str,
    ) -> Result<Option<String>, AuthError> {
        self.refresh()?;
        Ok(self
            .verify_with_hash(user, password)
            .map(|h| incarnation_of(&h)))
    }

    /// Every (user, hash) of the file, for the copy into PostgreSQL only
    /// (hashes stay inside this crate).
    pub(crate) fn entries(&self) -> Vec<(String, String)> {
        self.refresh_or_warn();
        let snap = self.snapshot.read().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<(String, String)> = snap
            .users
            .iter()
            .map(|(u, h)| (u.clone(), h.clone()))
            .collect();
        out.sort();
        out
    }

    /// Number of password hash checks performed so far (bcrypt or SHA-1).
    pub fn hash_checks(&self) -> u64 {
        self.hash_checks.load(Ordering::Relaxed)
    }

    /// Whether `user` has an entry (after a cheap refresh).
    pub fn user_exists(&self, user: &str) -> bool {
        self.refresh_or_warn();
        let snap = self.snapshot.read().unwrap_or_else(|e| e.into_inner());
        snap.users.contains_key(user)
    }

    /// Number of users in the file (after a cheap refresh).
    pub fn user_count(&self) -> usize {
        self.refresh_or_warn();
        let snap = self.snapshot.read().unwrap_or_else(|e| e.into_inner());
        snap.users.len()
    }

    /// Whether `add_user` could currently succeed for a new name, ignoring
    /// name validity.
    pub fn registration_open(&self) -> bool {
        match self.max_users {
            None => true,
            Some(max) if max < 0 => false,
            Some(max) => i64::try_from(self.user_count()).is_ok_and(|n| n < max),
        }
    }

    /// Registers a user with a bcrypt (cost 10) hash, replacing the file
    /// atomically. Runs bcrypt: use `spawn_blocking`.
    pub fn add_user(&self, user: &str, password: &str) -> Result<(), AuthError> {
        if matches!(self.max_users, Some(max) if max < 0) {
            return Err(AuthError::RegistrationDisabled);
        }
        validate_username(user)?;
        if password.is_empty() {
            return Err(AuthError::EmptyPassword);
        }
        // Hash before taking the write lock: bcrypt is the slow part.
        let hash = hash_password(password)?;

        let _guard = self.write_lock.lock().unwrap_or_else(|e| e.into_inner());
        // Base the rewrite on what is on disk now, not on the cache.
        let existing = match fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io_err("cannot read", &self.path)(e)),
        };
        let users = parse(&String::from_utf8_lossy(&existing));
        if users.contains_key(user) {
            return Err(AuthError::UserExists);
        }
        if let Some(max) = self.max_users {
            if !i64::try_from(users.len()).is_ok_and(|n| n < max) {
                return Err(AuthError::MaxUsersReached);
            }
        }

        let mut content = existing;
        if !content.is_empty() && !content.ends_with(b"\n") {
            content.push(b'\n');
        }
        content.extend_from_slice(format!("{user}:{hash}\n").as_bytes());
        self.replace_file(&content)?;
        self.reload()
    }

    /// Writes `content` to a sibling temp file and renames it over the file.
    fn replace_file(&self, content: &[u8]) -> Result<(), AuthError> {
        let dir = match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        fs::create_dir_all(&dir).map_err(io_err("cannot create directory", &dir))?;
        let file_name = self
            .path
            .file_name()
            .map_or_else(|| "htpasswd".into(), |n| n.to_string_lossy().into_owned());
        let tmp = dir.join(format!(
            ".{file_name}.tmp-{}-{:016x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        let result = (|| {
            let mut options = fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt as _;
                // Hashes are secrets; new files are owner-only.
                options.mode(0o600);
            }
            let mut file = options.open(&tmp).map_err(io_err("cannot create", &tmp))?;
            if let Ok(meta) = fs::metadata(&self.path) {
                // Keep the operator's chosen permissions on rewrite.
                fs::set_permissions(&tmp, meta.permissions())
                    .map_err(io_err("cannot set permissions on", &tmp))?;
            }
            file.write_all(content)
                .map_err(io_err("cannot write", &tmp))?;
            file.sync_all().map_err(io_err("cannot sync", &tmp))?;
            fs::rename(&tmp, &self.path).map_err(io_err("cannot replace", &self.path))
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result?;
        // Make the rename itself durable; best effort (not all platforms
        // allow opening a directory).
        if let Ok(d) = fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

impl crate::store::UserStore for Htpasswd {
    fn current_hash(&self, user: &str) -> Option<String> {
        Htpasswd::current_hash(self, user)
    }
    fn verify_with_hash(&self, user: &str, password: &str) -> Option<String> {
        Htpasswd::verify_with_hash(self, user, password)
    }
    fn verify_incarnation(&self, user: &str, password: &str) -> Result<Option<String>, AuthError> {
        Htpasswd::verify_incarnation(self, user, password)
    }
    fn incarnation(&self, user: &str) -> Option<String> {
        Htpasswd::incarnation(self, user)
    }
    fn user_exists(&self, user: &str) -> bool {
        Htpasswd::user_exists(self, user)
    }
    fn add_user(&self, user: &str, password: &str) -> Result<(), AuthError> {
        Htpasswd::add_user(self, user, password)
    }
    fn settled(&self) -> bool {
        Htpasswd::settled(self)
    }
    fn drain_retired(&self) -> Vec<String> {
        Htpasswd::drain_retired(self)
    }
    fn edited_out_of_band(&self) -> bool {
        true
    }
    fn hash_checks(&self) -> u64 {
        Htpasswd::hash_checks(self)
    }
}
