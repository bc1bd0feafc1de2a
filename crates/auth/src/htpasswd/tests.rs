use super::*;
use base64::engine::general_purpose::STANDARD;
use sha1::Digest as _;

fn bcrypt_line(user: &str, password: &str, version: bcrypt::Version) -> String {
    let hash = bcrypt::hash_with_result(password, 4)
        .expect("hash")
        .format_for_version(version);
    format!("{user}:{hash}\n")
}

fn sha_line(user: &str, password: &str) -> String {
    let digest = sha1::Sha1::digest(password.as_bytes());
    format!("{user}:{{SHA}}{}\n", STANDARD.encode(digest))
}

#[test]
fn missing_file_means_no_users() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Htpasswd::open(dir.path().join("htpasswd"), None).expect("open");
    assert!(!db.user_exists("alice"));
    assert!(!db.verify("alice", "pw").expect("verify"));
    assert_eq!(db.user_count(), 0);
}

#[test]
fn verifies_bcrypt_variants_and_sha() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("htpasswd");
    let content = [
        "# comment line\n".to_owned(),
        bcrypt_line("a", "pa", bcrypt::Version::TwoA),
        bcrypt_line("b", "pb", bcrypt::Version::TwoB),
        bcrypt_line("y", "py", bcrypt::Version::TwoY),
        // Verdaccio appends a comment field after the hash.
        bcrypt_line("c", "pc", bcrypt::Version::TwoB).replace('\n', ":autocreated 2024-01-01\n"),
        sha_line("s", "ps"),
        "\n".to_owned(),
    ]
    .concat();
    fs::write(&path, content).expect("write");
    let db = Htpasswd::open(path, None).expect("open");
    for (user, pw) in [
        ("a", "pa"),
        ("b", "pb"),
        ("y", "py"),
        ("c", "pc"),
        ("s", "ps"),
    ] {
        assert!(
            db.verify(user, pw).expect("verify"),
            "{user} right password"
        );
        assert!(
            !db.verify(user, "wrong").expect("verify"),
            "{user} wrong password"
        );
    }
    assert!(!db.verify("nobody", "pa").expect("verify"));
}

#[test]
fn unsupported_formats_never_verify() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("htpasswd");
    fs::write(
        &path,
        "md5:$apr1$abc$defghijklmnopqrstuvwx\nplain:secret\ncrypt:rqXexS6ZhobKA\nbroken:$2y$10$tooshort\nbadsha:{SHA}%%%\n",
    )
    .expect("write");
    let db = Htpasswd::open(path, None).expect("open");
    assert!(db.user_exists("plain"));
    for user in ["md5", "plain", "crypt", "broken", "badsha"] {
        assert!(!db.verify(user, "secret").expect("verify"), "{user}");
        // A second attempt hits the warn-once path.
        assert!(!db.verify(user, "secret").expect("verify"), "{user}");
    }
}

#[test]
fn add_user_then_verify_and_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("sub/htpasswd");
    let db = Htpasswd::open(path.clone(), None).expect("open");
    db.add_user("alice", "s3cret").expect("add");
    assert!(db.user_exists("alice"));
    assert!(db.verify("alice", "s3cret").expect("verify"));
    assert!(!db.verify("alice", "nope").expect("verify"));

    let content = fs::read_to_string(&path).expect("read");
    assert!(content.starts_with("alice:$2y$10$"), "{content}");
    assert!(!content.contains("s3cret"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    let reopened = Htpasswd::open(path, None).expect("reopen");
    assert!(reopened.verify("alice", "s3cret").expect("verify"));
}

#[test]
fn add_user_is_atomic_and_preserves_existing_lines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("htpasswd");
    // No trailing newline: the appended line must not merge with it.
    fs::write(
        &path,
        "# keep me\n".to_owned() + sha_line("old", "po").trim_end(),
    )
    .expect("write");
    let db = Htpasswd::open(path.clone(), None).expect("open");
    db.add_user("new", "pn").expect("add");
    let content = fs::read_to_string(&path).expect("read");
    assert!(content.starts_with("# keep me\nold:{SHA}"), "{content}");
    assert_eq!(content.lines().count(), 3);
    assert!(db.verify("old", "po").expect("verify"));
    assert!(db.verify("new", "pn").expect("verify"));
    // No temp files are left behind.
    let leftovers: Vec<_> = fs::read_dir(dir.path())
        .expect("read_dir")
        .filter_map(Result::ok)
        .filter(|e| e.file_name() != "htpasswd")
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn refuses_existing_user() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Htpasswd::open(dir.path().join("htpasswd"), None).expect("open");
    db.add_user("alice", "one").expect("add");
    assert!(matches!(
        db.add_user("alice", "two"),
        Err(AuthError::UserExists)
    ));
    assert!(db.verify("alice", "one").expect("verify"));
}

#[test]
fn max_users_limits_registration() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Htpasswd::open(dir.path().join("htpasswd"), Some(2)).expect("open");
    assert!(db.registration_open());
    db.add_user("a", "p").expect("first");
    db.add_user("b", "p").expect("second");
    assert!(!db.registration_open());
    assert!(matches!(
        db.add_user("c", "p"),
        Err(AuthError::MaxUsersReached)
    ));
    assert!(!db.user_exists("c"));

    let zero = Htpasswd::open(dir.path().join("zero"), Some(0)).expect("open");
    assert!(matches!(
        zero.add_user("a", "p"),
        Err(AuthError::MaxUsersReached)
    ));
}

#[test]
fn minus_one_disables_registration() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("htpasswd");
    let db = Htpasswd::open(path.clone(), Some(-1)).expect("open");
    assert!(!db.registration_open());
    assert!(matches!(
        db.add_user("alice", "p"),
        Err(AuthError::RegistrationDisabled)
    ));
    assert!(!path.exists());
}

#[test]
fn validates_names_and_passwords() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Htpasswd::open(dir.path().join("htpasswd"), None).expect("open");
    let long = "a".repeat(215);
    for bad in [
        "",
        "Alice",
        "a:b",
        "a b",
        "a/b",
        "a\nb",
        "a\u{7}b",
        ".hidden",
        "é",
        "$all",
        "@all",
        long.as_str(),
    ] {
        assert!(
            matches!(db.add_user(bad, "p"), Err(AuthError::InvalidUsername(_))),
            "{bad:?} must be rejected"
        );
    }
    assert!(matches!(
        db.add_user("ok", ""),
        Err(AuthError::EmptyPassword)
    ));
    for good in ["a", "user-1", "a.b_c~d", &"a".repeat(214)] {
        assert!(validate_username(good).is_ok(), "{good}");
    }
    assert_eq!(db.user_count(), 0);
}

#[test]
fn picks_up_external_edits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("htpasswd");
    fs::write(&path, sha_line("a", "one")).expect("write");
    let db = Htpasswd::open(path.clone(), None).expect("open");
    assert!(db.verify("a", "one").expect("verify"));
    // Different length, so the stamp changes even on coarse-mtime filesystems.
    fs::write(&path, sha_line("a", "two") + &sha_line("bb", "three")).expect("rewrite");
    assert!(!db.verify("a", "one").expect("verify"));
    assert!(db.verify("a", "two").expect("verify"));
    assert!(db.user_exists("bb"));
    fs::remove_file(&path).expect("remove");
    assert!(!db.user_exists("a"));
}

#[test]
fn debug_hides_hashes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("htpasswd");
    fs::write(&path, sha_line("a", "one")).expect("write");
    let db = Htpasswd::open(path, None).expect("open");
    let shown = format!("{db:?}");
    assert!(!shown.contains("{SHA}"), "{shown}");
}

#[test]
fn policy_words_are_not_user_names() {
    for name in ["all", "anonymous", "authenticated", "$all", "@all"] {
        assert!(validate_username(name).is_err(), "{name}");
    }
    assert!(validate_username("allison").is_ok());
}

#[test]
fn incarnation_changes_with_the_entry() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("htpasswd");
    let db = Htpasswd::open(path.clone(), None).expect("open");
    assert_eq!(db.incarnation("alice"), None);
    db.add_user("alice", "pw").expect("add");
    let first = db.incarnation("alice").expect("exists");
    assert_eq!(db.incarnation("alice").as_deref(), Some(first.as_str()));
    std::fs::remove_file(&path).expect("remove");
    db.add_user("alice", "pw").expect("same password, new salt");
    let second = db.incarnation("alice").expect("exists");
    assert_ne!(first, second, "recreated account is a new incarnation");
    assert!(!second.contains("$2"), "a digest, not the hash");
}

#[test]
fn retired_users_come_from_settled_files_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("htpasswd");
    std::fs::write(&path, "alice:{SHA}a\nbob:{SHA}b\ncarol:{SHA}c\n").expect("write");
    let db = Htpasswd::open(path.clone(), None)
        .expect("open")
        .with_settle_delay(std::time::Duration::from_secs(60));
    std::fs::write(&path, "bob:{SHA}b2\ncarol:{SHA}c\n").expect("edit");
    assert!(!db.user_exists("alice"), "reads see the edit at once");
    assert!(!db.settled());
    assert!(db.drain_retired().is_empty(), "no destructive diff yet");

    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(120);
    std::fs::File::options()
        .write(true)
        .open(&path)
        .expect("open")
        .set_modified(old)
        .expect("mtime");
    assert!(db.settled());
    assert_eq!(
        db.drain_retired(),
        vec!["alice".to_owned(), "bob".to_owned()]
    );
    assert!(db.drain_retired().is_empty());

    std::fs::remove_file(&path).expect("remove");
    assert!(!db.settled(), "a missing file is never settled");
    assert!(db.drain_retired().is_empty());
}
