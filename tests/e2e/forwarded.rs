//! `POST /v1/install` against a `routes.public` registry with forwarded
//! `authHeaders` (spec §4.3–4.6): the upstream is the authority for the
//! caller's private packages, a second user is let through by a probe and
//! then by a grant, a missing credential is a clear refusal that serves
//! nothing, and a public package is classified once and then served to
//! other users from the public set.

use std::io::Read;

use pnpr_e2e::{add_user, Http, Pnpr, RegistryMock};

fn config(mock: &RegistryMock) -> String {
    format!(
        "auth:\n  htpasswd:\n    file: ./htpasswd\nroutes:\n  public:\n    - registry: {u}\npackages:\n  '**':\n    access: $all\n    publish: $authenticated\n",
        u = mock.url
    )
}

struct Answer {
    status: u16,
    authority: Option<String>,
    header: serde_json::Value,
    /// Everything after the header JSON (file section).
    rest: Vec<u8>,
    text: String,
}

async fn install(
    pnpr: &Pnpr,
    registry: &str,
    deps: &[(&str, &str)],
    token: Option<&str>,
    auth_headers: serde_json::Value,
) -> Answer {
    let deps: serde_json::Map<String, serde_json::Value> = deps
        .iter()
        .map(|(k, v)| (k.to_string(), serde_json::Value::from(*v)))
        .collect();
    let body = serde_json::json!({
        "projects": [{"dir": ".", "dependencies": deps}],
        "registry": registry, "authHeaders": auth_headers, "nodeVersion": "22.23.3",
        "os": "linux", "arch": "x64", "storeIntegrities": [], "inlineFiles": true
    });
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("content-type", "application/json")];
    if let Some(a) = auth.as_deref() {
        headers.push(("authorization", a));
    }
    let r = Http::raw()
        .send(
            "POST",
            &format!("{}v1/install", pnpr.url),
            &headers,
            Some(body.to_string().into_bytes()),
        )
        .await;
    let mut raw = Vec::new();
    if flate2::read::MultiGzDecoder::new(&r.body[..])
        .read_to_end(&mut raw)
        .is_err()
    {
        raw = r.body.to_vec();
    }
    let text = String::from_utf8_lossy(&raw).to_string();
    if r.status != 200 {
        return Answer {
            status: r.status,
            authority: None,
            header: serde_json::Value::Null,
            rest: raw,
            text,
        };
    }
    let len = u32::from_be_bytes(raw[..4].try_into().expect("len")) as usize;
    let header: serde_json::Value = serde_json::from_slice(&raw[4..4 + len]).expect("header");
    Answer {
        status: 200,
        authority: r.header("x-pnpr-upstream-authority").map(str::to_string),
        header,
        rest: raw[4 + len..].to_vec(),
        text,
    }
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
        first.authority.as_deref(),
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
        again.authority.as_deref(),
        Some("public=0 fresh=0 grant=1 probed-public=0 probed-grant=0")
    );
    assert!(files_to_download(&again) > 0);
    let by_probe = install(&pnpr, &mock.url, &private, Some(&bob), cred.clone()).await;
    assert_eq!(by_probe.status, 200, "{}", by_probe.text);
    assert_eq!(
        by_probe.authority.as_deref(),
        Some("public=0 fresh=0 grant=0 probed-public=0 probed-grant=1")
    );
    let by_grant = install(&pnpr, &mock.url, &private, Some(&bob), cred.clone()).await;
    assert_eq!(
        by_grant.authority.as_deref(),
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
        anon.authority.as_deref(),
        Some("public=0 fresh=0 grant=0 probed-public=0 probed-grant=0")
    );
    let probed = install(&pnpr, &mock.url, &public, Some(&bob), cred.clone()).await;
    assert_eq!(probed.status, 200, "{}", probed.text);
    assert_eq!(
        probed.authority.as_deref(),
        Some("public=0 fresh=0 grant=0 probed-public=2 probed-grant=0")
    );
    let shared = install(&pnpr, &mock.url, &public, Some(&alice), cred).await;
    assert_eq!(shared.status, 200, "{}", shared.text);
    assert_eq!(
        shared.authority.as_deref(),
        Some("public=2 fresh=0 grant=0 probed-public=0 probed-grant=0")
    );
    assert!(files_to_download(&shared) > 0);
}
