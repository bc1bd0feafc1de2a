//! The auth-aware resolution cache over real HTTP: a security matrix of
//! anonymous, an admitted user (alice, in the `corp` uplink's team) and a
//! user who is not admitted (bob), over public-only and private trees, plus
//! credential rotation of the `corp` uplink without a restart.

use std::time::{Duration, Instant};

use pnpr_e2e::{add_user, install_body, post_install, Http, InstallAnswer, Pnpr, RegistryMock};

const PUBLIC_DEPS: &[(&str, &str)] = &[("@pnpm.e2e/pkg-with-1-dep", "^100.0.0")];

fn config(mock: &RegistryMock, corp_token: &str) -> String {
    format!(
        "auth:\n  htpasswd:\n    file: ./htpasswd\nsecret: 0123456789abcdef0123456789abcdef\ngroups:\n  team: [alice]\nuplinks:\n  mock:\n    url: {u}\n  corp:\n    url: {u}\n    access: team\n    auth:\n      type: bearer\n      token: {corp_token}\npackages:\n  '@private/*':\n    access: $authenticated\n    proxy: corp\n  '@pnpm.e2e/foo':\n    access: alice\n    proxy: mock\n  '**':\n    access: $all\n    publish: $authenticated\n    proxy: mock\n",
        u = mock.url
    )
}

type Answer = InstallAnswer;

async fn install(
    pnpr: &Pnpr,
    registry: &str,
    deps: &[(&str, &str)],
    token: Option<&str>,
) -> Answer {
    let body = install_body(registry, deps, &[], serde_json::json!({}));
    post_install(&pnpr.url, &body, token).await
}

fn integrities(a: &Answer) -> Vec<String> {
    a.header["lockfile"]["packages"]
        .as_object()
        .map(|m| {
            m.values()
                .filter_map(|p| p["resolution"]["integrity"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn private_resolutions_never_cross_callers_and_public_ones_are_shared() {
    let mock = RegistryMock::start();
    let (user, password) = RegistryMock::private_credentials();
    let upstream_token = mock.login(user, password).await;
    let pnpr = Pnpr::start(&config(&mock, &upstream_token), &[]);
    let http = Http::new();
    let alice = add_user(&http, &pnpr, "alice").await;
    let bob = add_user(&http, &pnpr, "bob").await;
    let corp = format!("{}~corp/", pnpr.url);
    let private_deps = [
        ("@private/foo", "*"),
        ("@pnpm.e2e/pkg-with-1-dep", "^100.0.0"),
    ];

    // Public-only tree: one resolution, shared by every caller.
    let first = install(&pnpr, &pnpr.url, PUBLIC_DEPS, None).await;
    assert_eq!(first.status, 200, "{}", first.text);
    assert_eq!(first.header_value("x-pnpr-resolution"), Some("resolved"));
    for token in [None, Some(alice.as_str()), Some(bob.as_str())] {
        let again = install(&pnpr, &pnpr.url, PUBLIC_DEPS, token).await;
        assert_eq!(again.status, 200, "{}", again.text);
        assert_eq!(
            again.header_value("x-pnpr-resolution"),
            Some("cached"),
            "public candidate not shared"
        );
        assert_eq!(again.header["lockfile"], first.header["lockfile"]);
    }

    // Private tree through corp: alice resolves, then hits her cache.
    let a1 = install(&pnpr, &corp, &private_deps, Some(&alice)).await;
    assert_eq!(a1.status, 200, "{}", a1.text);
    assert_eq!(a1.header_value("x-pnpr-resolution"), Some("resolved"));
    assert!(
        a1.header["lockfile"]["packages"]
            .get("@private/foo@1.0.0")
            .is_some(),
        "{}",
        a1.header
    );
    let private_integrity = a1.header["lockfile"]["packages"]["@private/foo@1.0.0"]["resolution"]
        ["integrity"]
        .as_str()
        .expect("integrity")
        .to_string();
    let a2 = install(&pnpr, &corp, &private_deps, Some(&alice)).await;
    assert_eq!(a2.status, 200, "{}", a2.text);
    assert_eq!(
        a2.header_value("x-pnpr-resolution"),
        Some("cached"),
        "alice's warm repeat missed the cache"
    );
    assert_eq!(a2.header["lockfile"], a1.header["lockfile"]);

    // bob and anonymous get nothing of it: no candidate, no lockfile, no
    // index entry, no frame — only an error.
    let b = install(&pnpr, &corp, &private_deps, Some(&bob)).await;
    assert_eq!(b.status, 403, "{}", b.text);
    let anon = install(&pnpr, &corp, &private_deps, None).await;
    assert_eq!(anon.status, 401, "{}", anon.text);
    for denied in [&b, &anon] {
        assert!(
            !denied.text.contains(&private_integrity),
            "private data leaked: {}",
            denied.text
        );
        assert!(!denied.text.contains("indexEntries"));
    }
    // Nor the packument or the tarball through the endpoint.
    let packument = format!("{corp}@private%2ffoo");
    http.get_auth(&packument, &bob).await.assert_status(403);
    http.get(&packument).await.assert_status(401);
    let tarball = format!("{corp}@private/foo/-/foo-1.0.0.tgz");
    http.get_auth(&tarball, &bob).await.assert_status(403);
    // And the shared path cannot reach it at all.
    let shared = install(&pnpr, &pnpr.url, &[("@private/foo", "*")], Some(&bob)).await;
    assert_ne!(shared.status, 200, "{}", shared.text);
    assert!(!shared.text.contains(&private_integrity));

    // Mixed tree on `/`: a policy-restricted package makes the candidate
    // private to callers the policy admits.
    let mixed = [
        ("@pnpm.e2e/foo", "100.0.0"),
        ("@pnpm.e2e/pkg-with-1-dep", "^100.0.0"),
    ];
    let m1 = install(&pnpr, &pnpr.url, &mixed, Some(&alice)).await;
    assert_eq!(m1.status, 200, "{}", m1.text);
    let m2 = install(&pnpr, &pnpr.url, &mixed, Some(&alice)).await;
    assert_eq!(m2.header_value("x-pnpr-resolution"), Some("cached"));
    let mb = install(&pnpr, &pnpr.url, &mixed, Some(&bob)).await;
    assert_eq!(mb.status, 403, "{}", mb.text);
    let manon = install(&pnpr, &pnpr.url, &mixed, None).await;
    assert_eq!(manon.status, 401, "{}", manon.text);
    assert!(!mb.text.contains("lockfile") && !manon.text.contains("lockfile"));
    // Frames went only to alice.
    assert!(m1.rest.len() > 70 && a1.rest.len() > 70);
    assert!(integrities(&m1).len() >= 3);

    // Mixed public/private tree on `/`: @private/* is routed through corp
    // for callers corp admits, and its tarball is pinned to the endpoint in
    // the lockfile (the client's registry `/` does not serve it).
    let r1 = install(&pnpr, &pnpr.url, &private_deps, Some(&alice)).await;
    assert_eq!(r1.status, 200, "{}", r1.text);
    let res = &r1.header["lockfile"]["packages"]["@private/foo@1.0.0"]["resolution"];
    assert_eq!(
        res["tarball"].as_str(),
        Some(format!("{corp}@private/foo/-/foo-1.0.0.tgz").as_str()),
        "{}",
        r1.header
    );
    let public_res =
        &r1.header["lockfile"]["packages"]["@pnpm.e2e/pkg-with-1-dep@100.1.0"]["resolution"];
    assert!(public_res.get("tarball").is_none(), "{}", r1.header);
    let r2 = install(&pnpr, &pnpr.url, &private_deps, Some(&alice)).await;
    assert_eq!(r2.header_value("x-pnpr-resolution"), Some("cached"));
    let rb = install(&pnpr, &pnpr.url, &private_deps, Some(&bob)).await;
    assert_ne!(rb.status, 200, "{}", rb.text);
    assert!(
        !rb.text.contains(&private_integrity),
        "private data leaked to bob: {}",
        rb.text
    );
    let ranon = install(&pnpr, &pnpr.url, &private_deps, None).await;
    assert_ne!(ranon.status, 200, "{}", ranon.text);
    assert!(!ranon.text.contains(&private_integrity));
}

#[tokio::test]
async fn rotating_the_uplink_credential_rekeys_private_candidates_only() {
    let mock = RegistryMock::start();
    let (user, password) = RegistryMock::private_credentials();
    let t1 = mock.login(user, password).await;
    let pnpr = Pnpr::start(&config(&mock, &t1), &[]);
    let http = Http::new();
    let alice = add_user(&http, &pnpr, "alice").await;
    let corp = format!("{}~corp/", pnpr.url);
    let private_deps = [("@private/foo", "*")];

    assert_eq!(
        install(&pnpr, &pnpr.url, PUBLIC_DEPS, None)
            .await
            .header_value("x-pnpr-resolution"),
        Some("resolved")
    );
    assert_eq!(
        install(&pnpr, &corp, &private_deps, Some(&alice))
            .await
            .header_value("x-pnpr-resolution"),
        Some("resolved")
    );
    assert_eq!(
        install(&pnpr, &corp, &private_deps, Some(&alice))
            .await
            .header_value("x-pnpr-resolution"),
        Some("cached")
    );

    // Rotate: a Basic credential for the same upstream user is a different
    // credential (new digest, new namespace), and still valid upstream.
    use base64::Engine;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let rotated = config(&mock, &basic).replace("type: bearer", "type: basic");
    pnpr.write_config(&rotated);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !pnpr.logs().contains("uplinks reloaded") {
        assert!(
            Instant::now() < deadline,
            "uplinks were not reloaded:\n{}",
            pnpr.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let after = install(&pnpr, &corp, &private_deps, Some(&alice)).await;
    assert_eq!(after.status, 200, "{}", after.text);
    assert_eq!(
        after.header_value("x-pnpr-resolution"),
        Some("resolved"),
        "old private candidate reused after rotation"
    );
    let public = install(&pnpr, &pnpr.url, PUBLIC_DEPS, None).await;
    assert_eq!(
        public.header_value("x-pnpr-resolution"),
        Some("cached"),
        "public candidate lost on rotation"
    );
    assert!(!pnpr.logs().contains(&t1), "credential in logs");
}
