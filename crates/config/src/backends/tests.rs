use super::*;

#[test]
fn decodes_a_postgres_url() {
    let c = postgres_url("postgres://pn%40pr:s3cr%2Ft@db.internal:6543/registry").unwrap();
    assert_eq!(c.host, "db.internal");
    assert_eq!(c.port, 6543);
    assert_eq!(c.user, "pn@pr");
    assert_eq!(c.password.as_ref().map(Secret::expose), Some("s3cr/t"));
    assert_eq!(c.dbname, "registry");
    let d = postgres_url("postgresql://u@[::1]/db").unwrap();
    assert_eq!((d.host.as_str(), d.port, d.password), ("::1", 5432, None));
}

#[test]
fn errors_never_echo_the_url() {
    for bad in [
        "mysql://u:hunter2hunter2@h/db",
        "postgres://:hunter2hunter2@h/db",
        "postgres://u:hunter2hunter2@h/",
        "postgres://u:hunter2hunter2@h/db?sslmode=hunter2hunter2",
        "postgres://u:hunter2hunter2@h/db?sslmode=allow",
        "postgres://u:hunter2hunter2@h/db?sslrootcert=/ca.pem",
        "postgres://u:hunter2hunter2@h/db?sslmode=require&sslmode=disable",
        "postgres://u:hunter2hunter2@h/db?options=-csearch_path%3Dhunter2hunter2",
        "postgres://u:hunter2hunter2@h/db#hunter2hunter2",
        "postgres://u:hunter2hunter2@h:99999/db",
    ] {
        let e = postgres_url(bad).unwrap_err();
        assert!(!e.contains("hunter2"), "{bad}: {e}");
        let debug = format!("{:?}", postgres_url("postgres://u:hunter2hunter2@h/db"));
        assert!(!debug.contains("hunter2"), "{debug}");
    }
}

#[test]
fn tls_parameters() {
    let plain = postgres_url("postgres://u@h/db").unwrap();
    assert_eq!((plain.sslmode, plain.sslrootcert), (SslMode::Prefer, None));
    for (q, mode) in [
        ("disable", SslMode::Disable),
        ("prefer", SslMode::Prefer),
        ("require", SslMode::Require),
        ("verify-ca", SslMode::VerifyCa),
        ("verify-full", SslMode::VerifyFull),
    ] {
        let c = postgres_url(&format!("postgres://u@h/db?sslmode={q}")).unwrap();
        assert_eq!((c.sslmode, c.sslrootcert), (mode, None), "{q}");
    }
    let c = postgres_url(
        "postgres://u:p@h/db?sslmode=verify-full&sslrootcert=/etc/pnpr/ca%20bundle.pem",
    )
    .unwrap();
    assert_eq!(c.sslmode, SslMode::VerifyFull);
    assert_eq!(
        c.sslrootcert.as_deref(),
        Some(std::path::Path::new("/etc/pnpr/ca bundle.pem"))
    );
    // libpq's `system` keyword: the system roots.
    let system = postgres_url("postgres://u@h/db?sslrootcert=system&sslmode=verify-ca").unwrap();
    assert_eq!(
        (system.sslmode, system.sslrootcert),
        (SslMode::VerifyCa, None)
    );
}

#[test]
fn tls_parameter_errors_name_the_parameter() {
    let err = |q: &str| postgres_url(&format!("postgres://u:pw@h/db?{q}")).unwrap_err();
    assert_eq!(
        err("sslcert=/c.pem"),
        "unknown query parameter `sslcert` (supported: sslmode, sslrootcert)"
    );
    assert!(err("sslmode=bogus").starts_with("unknown sslmode"));
    assert!(err("sslmode=allow").contains("not supported"));
    assert!(err("sslmode=require&sslrootcert=/ca.pem").contains("verify-ca or"));
    assert_eq!(
        err("sslmode=require&sslmode=require"),
        "query parameter `sslmode` given twice"
    );
    assert_eq!(err("sslrootcert="), "sslrootcert is empty");
    // Through the config key, with `${VAR}`-style text already substituted.
    let v = Value::String("postgres://u:pw@h/db?sslmode=nope".into());
    let e = database(Some(&v)).unwrap_err().to_string();
    assert!(e.starts_with("database: unknown sslmode"), "{e}");
}

#[test]
fn parses_s3_blobs() {
    let v: Value = serde_yaml_ng::from_str(
        "s3: {bucket: b, endpoint: 'http://127.0.0.1:9000', prefix: /pnpr}",
    )
    .unwrap();
    let Some(BlobsConfig::S3(s3)) = blobs(Some(&v)).unwrap() else {
        panic!("no s3");
    };
    assert_eq!(s3.bucket, "b");
    assert_eq!(s3.prefix, "pnpr/");
    assert_eq!(s3.region, DEFAULT_REGION);
    assert_eq!(s3.endpoint.unwrap().as_str(), "http://127.0.0.1:9000/");
    let missing: Value = serde_yaml_ng::from_str("s3: {region: x}").unwrap();
    assert_eq!(
        blobs(Some(&missing)).unwrap_err().to_string(),
        "blobs.s3.bucket: is required"
    );
    let creds: Value = serde_yaml_ng::from_str("s3: {bucket: b, secret_key: k}").unwrap();
    assert!(blobs(Some(&creds)).is_err());
}
