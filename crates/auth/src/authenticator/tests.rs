use super::*;
use base64::engine::general_purpose::STANDARD;

fn auth_with(max_users: Option<i64>) -> (tempfile::TempDir, Authenticator) {
    let dir = tempfile::tempdir().expect("tempdir");
    let users = Htpasswd::open(dir.path().join("htpasswd"), max_users).expect("htpasswd");
    let tokens = TokenStore::open(&dir.path().join("tokens.db")).expect("tokens");
    (dir, Authenticator::new(users, tokens))
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
    assert_eq!(auth.identify(Some(&header)), alice());
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
        auth.identify(Some(&basic("alice", "nope"))),
        Identity::Anonymous
    );
    assert_eq!(
        auth.identify(Some(&basic("bob", "pw"))),
        Identity::Anonymous
    );
}

#[test]
fn basic_cache_invalidated_by_password_change() {
    let (dir, auth) = auth_with(None);
    auth.users().add_user("alice", "old").expect("add");
    assert_eq!(auth.identify(Some(&basic("alice", "old"))), alice());
    // Replace the file out of band (the operator rotated the password).
    std::fs::remove_file(dir.path().join("htpasswd")).expect("remove");
    auth.users().add_user("alice", "newer").expect("re-add");
    assert_eq!(
        auth.identify(Some(&basic("alice", "old"))),
        Identity::Anonymous
    );
    assert_eq!(auth.identify(Some(&basic("alice", "newer"))), alice());
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
        assert_eq!(
            auth.identify(Some(header)),
            Identity::Anonymous,
            "{header:?}"
        );
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
    assert_eq!(auth.identify(Some(unpadded)), alice());
}

#[test]
fn login_registers_then_verifies() {
    let (_dir, auth) = auth_with(None);
    let (token, rec) = auth.login("alice", "pw").expect("register");
    assert!(auth.users().user_exists("alice"));
    assert_eq!(rec.user, "alice");
    assert!(!rec.readonly);
    assert_eq!(auth.identify(Some(&format!("Bearer {token}"))), alice());

    let (token2, _) = auth.login("alice", "pw").expect("login");
    assert_ne!(token, token2);
    assert_eq!(auth.tokens().list("alice").len(), 2);

    assert!(matches!(
        auth.login("alice", "bad"),
        Err(AuthError::BadCredentials)
    ));
    assert!(matches!(
        auth.login("alice", ""),
        Err(AuthError::EmptyPassword)
    ));
    assert_eq!(auth.tokens().list("alice").len(), 2);
}

#[test]
fn login_respects_registration_limits() {
    let (_dir, auth) = auth_with(Some(-1));
    assert!(matches!(
        auth.login("alice", "pw"),
        Err(AuthError::RegistrationDisabled)
    ));
    assert!(auth.tokens().list("alice").is_empty());

    let (_dir, auth) = auth_with(Some(1));
    auth.login("alice", "pw").expect("first user");
    assert!(matches!(
        auth.login("bob", "pw"),
        Err(AuthError::MaxUsersReached)
    ));
    auth.login("alice", "pw")
        .expect("existing user still logs in");
    assert!(matches!(
        auth.login("Bad Name", "pw"),
        Err(AuthError::InvalidUsername(_))
    ));
}

#[test]
fn debug_output_has_no_secrets() {
    let (_dir, auth) = auth_with(None);
    let (token, _) = auth.login("alice", "hunter2").expect("login");
    let shown = format!("{auth:?}");
    assert!(!shown.contains(&token));
    assert!(!shown.contains("hunter2"));
    assert!(!shown.contains("$2y$"));
    let err = auth
        .login("alice", "wrong-secret")
        .expect_err("bad password");
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
