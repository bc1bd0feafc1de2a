use super::*;

#[test]
fn write_paths_for_every_npm_spelling() {
    let cases = [
        ("/demo", "demo", WriteTarget::Doc { rev: None }),
        (
            "/@acme%2fdemo",
            "@acme/demo",
            WriteTarget::Doc { rev: None },
        ),
        (
            "/@acme%2Fdemo/",
            "@acme/demo",
            WriteTarget::Doc { rev: None },
        ),
        (
            "/demo/-rev/3-abc",
            "demo",
            WriteTarget::Doc {
                rev: Some("3-abc".into()),
            },
        ),
        (
            "/@acme/demo/-/demo-1.0.0.tgz/-rev/4-def",
            "@acme/demo",
            WriteTarget::Tarball {
                file: "demo-1.0.0.tgz".into(),
                rev: Some("4-def".into()),
            },
        ),
        (
            "/demo/-/demo-1.0.0.tgz",
            "demo",
            WriteTarget::Tarball {
                file: "demo-1.0.0.tgz".into(),
                rev: None,
            },
        ),
    ];
    for (path, name, target) in cases {
        let (n, t) = parse_write_path(path).unwrap_or_else(|e| panic!("{path}: {}", e.message));
        assert_eq!(n, name, "{path}");
        assert_eq!(t, target, "{path}");
    }
}

#[test]
fn hostile_write_paths_are_refused() {
    for path in [
        "/",
        "/..",
        "/demo/extra",
        "/demo/-/..%2f..%2fetc",
        "/demo/-/.hidden.tgz",
        "/@acme",
        "/demo/-rev",
    ] {
        assert!(parse_write_path(path).is_err(), "{path} was accepted");
    }
}

#[test]
fn hosted_errors_map_to_npm_statuses() {
    let cases: [(HostedError, StatusCode); 5] = [
        (HostedError::BadRequest("x".into()), StatusCode::BAD_REQUEST),
        (HostedError::NotFound("x".into()), StatusCode::NOT_FOUND),
        (HostedError::Conflict("x".into()), StatusCode::CONFLICT),
        (
            HostedError::Denied {
                permission: Permission::Unpublish,
                package: "demo".into(),
                unauthenticated: true,
            },
            StatusCode::UNAUTHORIZED,
        ),
        (
            HostedError::Denied {
                permission: Permission::Publish,
                package: "demo".into(),
                unauthenticated: false,
            },
            StatusCode::FORBIDDEN,
        ),
    ];
    for (err, status) in cases {
        assert_eq!(ApiError::from(err).status, status);
    }
}
