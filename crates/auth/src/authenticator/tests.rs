use super::*;
use crate::htpasswd::Htpasswd;
use base64::engine::general_purpose::STANDARD;

fn auth_with(max_users: Option<i64>) -> (tempfile::TempDir, Authenticator) {
    let dir = tempfile::tempdir().expect("tempdir");
    let users = Htpasswd::open(dir.path().join("htpasswd"), max_users)
        .expect("htpasswd")
        .with_settle_delay(std::time::Duration::ZERO);
    let tokens = TokenStore::open(&dir.path().join("tokens.db")).expect("tokens");
    (dir, Authenticator::new(users, tokens))
}

fn no_policy() -> Policy {
    Policy::compile(crate::PolicyInput::default()).expect("policy")
}

fn team_policy() -> Policy {
    Policy::compile(crate::PolicyInput {
        groups: vec![("team".to_owned(), vec!["alice".to_owned()])],
        ..Default::default()
    })
    .expect("policy")
}

fn login(
    auth: &Authenticator,
    user: &str,
    password: &str,
) -> Result<(String, TokenRecord), AuthError> {
    auth.login(user, password, &no_policy())
        .map(|o| (o.token.0, o.record))
}

/// Verifies (as the server's gate does) and then identifies.
fn verified(auth: &Authenticator, header: &str) -> Identity {
    if let BasicHeader::Credential(c) = Authenticator::basic_header(Some(header)) {
        auth.verify_basic(&c);
    }
    auth.identify(Some(header))
}

/// Rewrites the htpasswd file as an operator would by hand.
fn write_htpasswd(dir: &tempfile::TempDir, content: &str) {
    let path = dir.path().join("htpasswd");
    std::fs::write(&path, content).expect("write htpasswd");
    // Make sure the (mtime, len) stamp moves even within one clock tick.
    let f = std::fs::File::options()
        .write(true)
        .open(&path)
        .expect("open");
    f.set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(5))
        .expect("set mtime");
}

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{user}:{password}")))
}

fn alice() -> Identity {
    Identity::User("alice".to_owned())
}

#[test]
fn bearer_tokens() {
    let (_dir, auth) = auth_with(None);
    auth.users().add_user("alice", "pw").expect("add");
    let (token, rec) = auth.tokens().create("alice", true, vec![]).expect("create");
    for header in [
        format!("Bearer {token}"),
        format!("bearer {token}"),
        format!("BEARER   {token}  "),
    ] {
        assert_eq!(auth.identify(Some(&header)), alice(), "{header}");
    }
    let caller = auth.authenticate(Some(&format!("Bearer {token}")), None);
    assert!(caller.readonly);
    assert_eq!(caller.token_key.as_deref(), Some(rec.key.as_str()));

    assert_eq!(
        auth.identify(Some("Bearer pnpr_unknown")),
        Identity::Anonymous
    );
    assert!(auth.tokens().revoke("alice", &token).expect("revoke"));
    assert_eq!(
        auth.identify(Some(&format!("Bearer {token}"))),
        Identity::Anonymous,
        "revoked tokens are anonymous"
    );
}

#[test]
fn bearer_cidr_whitelist_needs_peer() {
    let (_dir, auth) = auth_with(None);
    auth.users().add_user("alice", "pw").expect("add");
    let (token, _) = auth
        .tokens()
        .create("alice", false, vec!["127.0.0.0/8".into()])
        .expect("create");
    let header = format!("Bearer {token}");
    assert_eq!(auth.identify(Some(&header)), Identity::Anonymous);
    let local = "127.0.0.1".parse().ok();
    let remote = "192.0.2.1".parse().ok();
    assert_eq!(auth.authenticate(Some(&header), local).identity, alice());
    assert_eq!(
        auth.authenticate(Some(&header), remote).identity,
        Identity::Anonymous
    );
}

#[test]
fn basic_credentials_are_verified_once() {
    let (_dir, auth) = auth_with(None);
    auth.users().add_user("alice", "pw").expect("add");
    let header = basic("alice", "pw");
    let before = auth.users().hash_checks();
    assert_eq!(
        auth.identify(Some(&header)),
        Identity::Anonymous,
        "identify never runs bcrypt: unverified Basic is anonymous"
    );
    assert_eq!(auth.users().hash_checks(), before);
    assert_eq!(verified(&auth, &header), alice());
    assert_eq!(auth.users().hash_checks(), before + 1);
    for _ in 0..5 {
        assert_eq!(auth.identify(Some(&header)), alice());
    }
    assert_eq!(
        auth.users().hash_checks(),
        before + 1,
        "cache hit skips bcrypt"
    );
    // Lowercase scheme, too.
    assert_eq!(
        auth.identify(Some(&header.replacen("Basic", "basic", 1))),
        alice()
    );

    let caller = auth.authenticate(Some(&header), None);
    assert!(!caller.readonly);
    assert_eq!(caller.token_key, None);

    // Wrong passwords are not cached as successes and stay anonymous.
    assert_eq!(
        verified(&auth, &basic("alice", "nope")),
        Identity::Anonymous
    );
    assert_eq!(verified(&auth, &basic("bob", "pw")), Identity::Anonymous);
    let checks = auth.users().hash_checks();
    assert_eq!(
        auth.identify(Some(&basic("alice", "nope"))),
        Identity::Anonymous
    );
    assert_eq!(auth.users().hash_checks(), checks);
}

#[test]
fn basic_cache_invalidated_by_password_change() {
    let (dir, auth) = auth_with(None);
    auth.users().add_user("alice", "old").expect("add");
    assert_eq!(verified(&auth, &basic("alice", "old")), alice());
    // Replace the file out of band (the operator rotated the password).
    std::fs::remove_file(dir.path().join("htpasswd")).expect("remove");
    auth.users().add_user("alice", "newer").expect("re-add");
    assert_eq!(
        auth.identify(Some(&basic("alice", "old"))),
        Identity::Anonymous
    );
    assert_eq!(verified(&auth, &basic("alice", "newer")), alice());
    std::fs::remove_file(dir.path().join("htpasswd")).expect("remove");
    assert_eq!(
        auth.identify(Some(&basic("alice", "newer"))),
        Identity::Anonymous
    );
}

#[test]
fn basic_cache_is_bounded() {
    let mut cache = BasicCache::default();
    for i in 0..(BASIC_CACHE_CAPACITY + 10) {
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&(i as u64).to_le_bytes());
        cache.insert(
            key,
            CachedBasic {
                user: format!("u{i}"),
                hash: String::new(),
            },
        );
    }
    assert_eq!(cache.entries.len(), BASIC_CACHE_CAPACITY);
    assert_eq!(cache.order.len(), BASIC_CACHE_CAPACITY);
    // The oldest entries went first.
    assert!(!cache.entries.values().any(|v| v.user == "u0"));
    assert!(cache.entries.values().any(|v| v.user == "u1033"));
}

#[test]
fn garbage_headers_are_anonymous() {
    let (_dir, auth) = auth_with(None);
    auth.users().add_user("alice", "pw").expect("add");
    let non_utf8 = format!("Basic {}", STANDARD.encode([0xff, 0xfe, b':', 0x80]));
    let no_colon = format!("Basic {}", STANDARD.encode("alicepw"));
    let empty_user = format!("Basic {}", STANDARD.encode(":pw"));
    let empty_pw = format!("Basic {}", STANDARD.encode("alice:"));
    let headers = [
        "",
        " ",
        "Bearer",
        "Bearer ",
        "Basic",
        "Basic !!!not-base64!!!",
        "Basic ====",
        "Basic \u{0}\u{1}",
        "Token abc",
        "Digest username=\"alice\"",
        "\u{fffd}\u{fffd}",
        "Bearer \u{1F600}",
        non_utf8.as_str(),
        no_colon.as_str(),
        empty_user.as_str(),
        empty_pw.as_str(),
    ];
    for header in headers {
        assert_eq!(verified(&auth, header), Identity::Anonymous, "{header:?}");
    }
    assert_eq!(auth.identify(None), Identity::Anonymous);

    let long = "A".repeat(100_000);
    assert_eq!(
        auth.identify(Some(&format!("Basic {long}"))),
        Identity::Anonymous
    );
    assert_eq!(
        auth.identify(Some(&format!("Bearer {long}"))),
        Identity::Anonymous
    );
}

#[test]
fn unpadded_basic_is_accepted() {
    let (_dir, auth) = auth_with(None);
    auth.users().add_user("alice", "pw").expect("add");
    let header = basic("alice", "pw");
    let unpadded = header.trim_end_matches('=');
    assert_ne!(header, unpadded, "fixture must need padding");
    assert_eq!(verified(&auth, unpadded), alice());
}

#[test]
fn login_registers_then_verifies() {
    let (_dir, auth) = auth_with(None);
    let (token, rec) = login(&auth, "alice", "pw").expect("register");
    assert!(auth.users().user_exists("alice"));
    assert_eq!(rec.user, "alice");
    assert!(!rec.readonly);
    assert_eq!(auth.identify(Some(&format!("Bearer {token}"))), alice());

    let (token2, _) = login(&auth, "alice", "pw").expect("login");
    assert_ne!(token, token2);
    assert_eq!(auth.tokens().list("alice").len(), 2);

    assert!(matches!(
        login(&auth, "alice", "bad"),
        Err(AuthError::BadCredentials)
    ));
    assert!(matches!(
        login(&auth, "alice", ""),
        Err(AuthError::EmptyPassword)
    ));
    assert_eq!(auth.tokens().list("alice").len(), 2);
}

#[test]
fn login_respects_registration_limits() {
    let (_dir, auth) = auth_with(Some(-1));
    assert!(matches!(
        login(&auth, "alice", "pw"),
        Err(AuthError::RegistrationDisabled)
    ));
    assert!(auth.tokens().list("alice").is_empty());

    let (_dir, auth) = auth_with(Some(1));
    login(&auth, "alice", "pw").expect("first user");
    assert!(matches!(
        login(&auth, "bob", "pw"),
        Err(AuthError::MaxUsersReached)
    ));
    login(&auth, "alice", "pw").expect("existing user still logs in");
    assert!(matches!(
        login(&auth, "Bad Name", "pw"),
        Err(AuthError::InvalidUsername(_))
    ));
}

#[test]
fn debug_output_has_no_secrets() {
    let (_dir, auth) = auth_with(None);
    let (token, _) = login(&auth, "alice", "hunter2").expect("login");
    let shown = format!("{auth:?}");
    assert!(!shown.contains(&token));
    assert!(!shown.contains("hunter2"));
    assert!(!shown.contains("$2y$"));
    let err = login(&auth, "alice", "wrong-secret").expect_err("bad password");
    assert!(!format!("{err} {err:?}").contains("wrong-secret"));
    assert_eq!(
        format!("{:?}", crate::Redacted("tok".to_owned())),
        "<redacted>"
    );
}

#[test]
fn shared_types_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Authenticator>();
    assert_send_sync::<crate::Policy>();
    assert_send_sync::<Htpasswd>();
    assert_send_sync::<TokenStore>();
}

#[test]
fn basic_header_classification() {
    assert_eq!(Authenticator::basic_header(None), BasicHeader::NotBasic);
    assert_eq!(
        Authenticator::basic_header(Some("Bearer x")),
        BasicHeader::NotBasic
    );
    for bad in [
        "Basic",
        "basic  ",
        "Basic !!!",
        "Basic Og==",
        "Basic YWxpY2U=",
    ] {
        assert_eq!(
            Authenticator::basic_header(Some(bad)),
            BasicHeader::Malformed,
            "{bad}"
        );
    }
    match Authenticator::basic_header(Some(&basic("alice", "s3cret:with:colons"))) {
        BasicHeader::Credential(c) => {
            assert_eq!(c.user, "alice");
            assert!(
                !format!("{c:?}").contains("s3cret"),
                "password never prints"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn removed_user_token_identifies_nobody_and_is_purged() {
    let (dir, auth) = auth_with(None);
    let (alice_token, _) = login(&auth, "alice", "pw").expect("register alice");
    let (bob_token, _) = login(&auth, "bob", "pw").expect("register bob");
    let content = std::fs::read_to_string(dir.path().join("htpasswd")).expect("read");
    let without_alice: String = content
        .lines()
        .filter(|l| !l.starts_with("alice:"))
        .map(|l| format!("{l}\n"))
        .collect();
    write_htpasswd(&dir, &without_alice);

    assert_eq!(
        auth.identify(Some(&format!("Bearer {alice_token}"))),
        Identity::Anonymous
    );
    assert!(auth.tokens().list("alice").is_empty(), "rows purged");
    assert_eq!(
        auth.identify(Some(&format!("Bearer {bob_token}"))),
        Identity::User("bob".into()),
        "control: other users keep their tokens"
    );
    assert_eq!(auth.sweep(), vec!["alice".to_owned()]);
    assert!(auth.sweep().is_empty(), "reported once");
}

#[test]
fn unsettled_file_denies_without_purging() {
    let dir = tempfile::tempdir().expect("tempdir");
    let users = Htpasswd::open(dir.path().join("htpasswd"), None)
        .expect("htpasswd")
        .with_settle_delay(std::time::Duration::from_secs(3600));
    let tokens = TokenStore::open(&dir.path().join("tokens.db")).expect("tokens");
    let auth = Authenticator::new(users, tokens);
    let (token, _) = login(&auth, "alice", "pw").expect("register");
    std::fs::write(dir.path().join("htpasswd"), "bob:{SHA}x\n").expect("half-written edit");
    assert_eq!(
        auth.identify(Some(&format!("Bearer {token}"))),
        Identity::Anonymous
    );
    assert_eq!(auth.tokens().list("alice").len(), 1, "kept until settled");
    assert!(auth.sweep().is_empty());
}

#[test]
fn reregistered_name_starts_without_old_tokens() {
    let (dir, auth) = auth_with(None);
    let (old_token, _) = login(&auth, "alice", "old-pw").expect("register");
    // An unbound token from an older pnpr, too.
    let (legacy, _) = auth
        .tokens()
        .create("alice", false, vec![])
        .expect("legacy");
    assert_eq!(auth.identify(Some(&format!("Bearer {legacy}"))), alice());
    std::fs::remove_file(dir.path().join("htpasswd")).expect("remove user database");

    let outcome = auth
        .login("alice", "new-pw", &no_policy())
        .expect("register again");
    assert!(outcome.registered);
    for stale in [&old_token, &legacy] {
        assert_eq!(
            auth.identify(Some(&format!("Bearer {stale}"))),
            Identity::Anonymous
        );
    }
    assert_eq!(auth.tokens().list("alice").len(), 1, "only the new token");
    assert_eq!(
        auth.identify(Some(&format!("Bearer {}", outcome.token.expose()))),
        alice(),
        "control: the newcomer's own token works"
    );
    let again = auth
        .login("alice", "new-pw", &no_policy())
        .expect("plain login");
    assert!(!again.registered);
}

#[test]
fn hand_replaced_entry_ends_old_tokens() {
    let (dir, auth) = auth_with(None);
    let (old_token, _) = login(&auth, "alice", "old-pw").expect("register");
    // Removed and recreated by hand between two requests: same name, new hash.
    let other = tempfile::tempdir().expect("tempdir");
    let fresh = Htpasswd::open(other.path().join("htpasswd"), None).expect("htpasswd");
    fresh.add_user("alice", "new-pw").expect("add");
    let line = std::fs::read_to_string(other.path().join("htpasswd")).expect("read");
    write_htpasswd(&dir, &line);

    assert_eq!(
        auth.identify(Some(&format!("Bearer {old_token}"))),
        Identity::Anonymous
    );
    assert!(auth.tokens().list("alice").is_empty());
    assert_eq!(auth.sweep(), vec!["alice".to_owned()]);
    let (new_token, _) = login(&auth, "alice", "new-pw").expect("login");
    assert_eq!(auth.identify(Some(&format!("Bearer {new_token}"))), alice());
}

#[test]
fn sweep_reports_removed_users_without_tokens() {
    let (dir, auth) = auth_with(None);
    auth.users().add_user("alice", "pw").expect("add");
    auth.users().add_user("bob", "pw").expect("add");
    assert!(auth.sweep().is_empty());
    let content = std::fs::read_to_string(dir.path().join("htpasswd")).expect("read");
    let only_bob: String = content
        .lines()
        .filter(|l| l.starts_with("bob:"))
        .map(|l| format!("{l}\n"))
        .collect();
    write_htpasswd(&dir, &only_bob);
    assert_eq!(auth.sweep(), vec!["alice".to_owned()]);
}

#[test]
fn sweep_purges_tokens_of_users_gone_while_down() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let users = Htpasswd::open(dir.path().join("htpasswd"), None).expect("htpasswd");
        let auth = Authenticator::new(
            users,
            TokenStore::open(&dir.path().join("t.db")).expect("t"),
        );
        login(&auth, "alice", "pw").expect("register");
    }
    write_htpasswd(&dir, "");
    let users = Htpasswd::open(dir.path().join("htpasswd"), None)
        .expect("htpasswd")
        .with_settle_delay(std::time::Duration::ZERO);
    let auth = Authenticator::new(
        users,
        TokenStore::open(&dir.path().join("t.db")).expect("t"),
    );
    assert_eq!(auth.tokens().list("alice").len(), 1);
    assert_eq!(auth.sweep(), vec!["alice".to_owned()]);
    assert!(auth.tokens().list("alice").is_empty());
}

#[test]
fn registration_refuses_group_names_and_policy_tokens() {
    let (_dir, auth) = auth_with(None);
    let policy = team_policy();
    for name in ["team", "all", "anonymous", "authenticated"] {
        let err = auth
            .login(name, "pw", &policy)
            .expect_err("reserved name must not register");
        assert!(
            matches!(
                err,
                AuthError::ReservedName(_) | AuthError::InvalidUsername(_)
            ),
            "{name}: {err:?}"
        );
        assert!(!auth.users().user_exists(name), "{name}");
    }
    for name in ["$all", "@all", "$authenticated", "$anonymous"] {
        assert!(auth.login(name, "pw", &policy).is_err(), "{name}");
    }
    // Control: ordinary names register.
    let ok = auth.login("carol", "pw", &policy).expect("carol");
    assert!(ok.registered);
}

#[test]
fn issue_token_checks_password_and_binds() {
    let (dir, auth) = auth_with(None);
    auth.users().add_user("alice", "pw").expect("add");
    assert!(matches!(
        auth.issue_token("alice", "wrong", false, vec![], None),
        Err(AuthError::BadCredentials)
    ));
    let (token, record) = auth
        .issue_token("alice", "pw", true, vec![], None)
        .expect("issue");
    assert!(record.readonly);
    assert!(record.incarnation.is_some());
    let header = format!("Bearer {}", token.expose());
    assert_eq!(auth.identify(Some(&header)), alice());
    write_htpasswd(&dir, "");
    assert_eq!(auth.identify(Some(&header)), Identity::Anonymous);
}

#[test]
fn default_login_limits_apply() {
    let (_dir, auth) = auth_with(None);
    assert_eq!(auth.limiter().limits(), crate::LoginLimits::default());
    let auth = auth.with_login_limits(crate::LoginLimits {
        per_user: 1,
        per_address: 1,
        window: std::time::Duration::from_secs(60),
    });
    let _first = auth.limiter().begin(Some("alice"), None).expect("first");
    assert!(auth.limiter().begin(Some("alice"), None).is_err());
}
