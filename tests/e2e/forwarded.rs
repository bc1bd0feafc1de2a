//! `POST /v1/install` against a `routes.public` registry with forwarded
//! `authHeaders` (spec §4.3–4.6): the upstream is the authority for the
//! caller's private packages, a second user is let through by a probe and
//! then by a grant, a missing credential is a clear refusal that serves
//! nothing, and a public package is classified once and then served to
//! other users from the public set.

use pnpr_e2e::{add_user, install_body, post_install, Http, InstallAnswer, Pnpr, RegistryMock};

fn config(mock: &RegistryMock) -> String {
    format!(
        "auth:\n  htpasswd:\n    file: ./htpasswd\nroutes:\n  public:\n    - registry: {u}\npackages:\n  '**':\n    access: $all\n    publish: $authenticated\n",
        u = mock.url
    )
}

type Answer = InstallAnswer;

async fn install(
    pnpr: &Pnpr,
    registry: &str,
    deps: &[(&str, &str)],
    token: Option<&str>,
    auth_headers: serde_json::Value,
) -> Answer {
    let mut body = install_body(registry, deps, &[], auth_headers);
    // These requests carry no minimumReleaseAge (as when the client sets none).
    if let Some(o) = body.as_object_mut() {
        o.remove("minimumReleaseAge");
    }
    post_install(&pnpr.url, &body, token).await
}

fn files_to_download(a: &Answer) -> u64 {
    a.header["stats"]["filesToDownload"].as_u64().unwrap_or(0)
}

#[tokio::test]
async fn forwarded_credentials_make_the_upstream_the_authority() {
    let mock = RegistryMock::start();
    let upstream_token = mock.login("foo", "bar").await;
    let pnpr = Pnpr::start(&config(&mock), &[]);
    let http = Http::new();
    let alice = add_user(&http, &pnpr, "alice").await;
    let bob = add_user(&http, &pnpr, "bob").await;
    let cred = serde_json::json!({
        format!("//127.0.0.1:{}/", mock.port): format!("Bearer {upstream_token}")
    });
    let private = [("@private/foo", "*")];

    // With the forwarded credential: resolved and fetched as the caller.
    let first = install(&pnpr, &mock.url, &private, Some(&alice), cred.clone()).await;
    assert_eq!(first.status, 200, "{}", first.text);
    assert!(files_to_download(&first) > 0, "{}", first.header);
    assert!(first.rest.len() > 8 + 64, "file frames expected");
    let packages = first.header["lockfile"]["packages"]
        .as_object()
        .expect("packages");
    assert!(
        packages.keys().any(|k| k.starts_with("@private/foo@")),
        "{packages:?}"
    );
    assert_eq!(
        first.header_value("x-pnpr-upstream-authority"),
        Some("public=0 fresh=1 grant=0 probed-public=0 probed-grant=0")
    );

    // Without it: a clear refusal and no files.
    let bare = install(
        &pnpr,
        &mock.url,
        &private,
        Some(&alice),
        serde_json::json!({}),
    )
    .await;
    assert_eq!(bare.status, 401, "{}", bare.text);
    assert!(bare.text.contains("authHeaders"), "{}", bare.text);
    assert!(!bare.text.contains(&upstream_token));
    assert!(bare.header.is_null());

    // The files are warm now: alice holds a grant from her fresh fetch, bob
    // is let through by the authenticated probe (the anonymous one fails)
    // and then holds his own grant.
    let again = install(&pnpr, &mock.url, &private, Some(&alice), cred.clone()).await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(
        again.header_value("x-pnpr-upstream-authority"),
        Some("public=0 fresh=0 grant=1 probed-public=0 probed-grant=0")
    );
    assert!(files_to_download(&again) > 0);
    let by_probe = install(&pnpr, &mock.url, &private, Some(&bob), cred.clone()).await;
    assert_eq!(by_probe.status, 200, "{}", by_probe.text);
    assert_eq!(
        by_probe.header_value("x-pnpr-upstream-authority"),
        Some("public=0 fresh=0 grant=0 probed-public=0 probed-grant=1")
    );
    let by_grant = install(&pnpr, &mock.url, &private, Some(&bob), cred.clone()).await;
    assert_eq!(
        by_grant.header_value("x-pnpr-upstream-authority"),
        Some("public=0 fresh=0 grant=1 probed-public=0 probed-grant=0")
    );

    // A credential the upstream does not accept, on warm files: denied,
    // nothing served.
    let wrong = serde_json::json!({ format!("//127.0.0.1:{}/", mock.port): "Bearer nope" });
    let denied = install(&pnpr, &mock.url, &private, None, wrong).await;
    assert!(
        denied.status == 403 || denied.status == 500,
        "{} {}",
        denied.status,
        denied.text
    );
    assert!(denied.header.is_null());

    // A public package: anonymous with no credential is served on pnpr's
    // own policy; the next user with a credential classifies it public by
    // the anonymous probe; every later user is served from the public set.
    let public = [("@pnpm.e2e/pkg-with-1-dep", "^100.0.0")];
    let anon = install(&pnpr, &mock.url, &public, None, serde_json::json!({})).await;
    assert_eq!(anon.status, 200, "{}", anon.text);
    assert!(files_to_download(&anon) > 0);
    assert_eq!(
        anon.header_value("x-pnpr-upstream-authority"),
        Some("public=0 fresh=0 grant=0 probed-public=0 probed-grant=0")
    );
    let probed = install(&pnpr, &mock.url, &public, Some(&bob), cred.clone()).await;
    assert_eq!(probed.status, 200, "{}", probed.text);
    assert_eq!(
        probed.header_value("x-pnpr-upstream-authority"),
        Some("public=0 fresh=0 grant=0 probed-public=2 probed-grant=0")
    );
    let shared = install(&pnpr, &mock.url, &public, Some(&alice), cred).await;
    assert_eq!(shared.status, 200, "{}", shared.text);
    assert_eq!(
        shared.header_value("x-pnpr-upstream-authority"),
        Some("public=2 fresh=0 grant=0 probed-public=0 probed-grant=0")
    );
    assert!(files_to_download(&shared) > 0);
}
