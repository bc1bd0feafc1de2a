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
        "postgres://u:hunter2hunter2@h/db?sslmode=require",
        "postgres://u:hunter2hunter2@h:99999/db",
    ] {
        let e = postgres_url(bad).unwrap_err();
        assert!(!e.contains("hunter2"), "{bad}: {e}");
        let debug = format!("{:?}", postgres_url("postgres://u:hunter2hunter2@h/db"));
        assert!(!debug.contains("hunter2"), "{debug}");
    }
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
