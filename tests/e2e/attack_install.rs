//! Attacks on `/v1/install` (issue: security classes 1, 2, 5 and 8), each
//! performed against the real server with a control showing the legitimate
//! path still works:
//! - binding a readable name to the integrity of someone else's private
//!   package in a frozen lockfile, on `/` (mirror and hosted names) and on
//!   `/~<uplink>/`;
//! - the forwarded path: leaving out `authHeaders` after another caller
//!   fetched a private package; registry URLs with a fragment or query;
//! - a cached candidate served across request fields that change the answer;
//! - oversized and numerous bodies (413/400, and RSS under 50 clients).

use std::time::{Duration, Instant};

use pnpr_e2e::{add_user, install_body, post_install, publish, Http, InstallAnswer, Pnpr};
use pnpr_e2e::{RegistryMock, Response};

const PUBLIC: (&str, &str) = ("@pnpm.e2e/pkg-with-1-dep", "^100.0.0");
const SECRET: &[u8] = b"SECRET-CONTENT-7f3a9c";

fn config(mock: &RegistryMock, corp_token: &str) -> String {
    format!(
        "auth:\n  htpasswd:\n    file: ./htpasswd\nsecret: 0123456789abcdef0123456789abcdef\nuplinks:\n  mock:\n    url: {u}\n  corp:\n    url: {u}\n    access: $authenticated\n    auth:\n      type: bearer\n      token: {corp_token}\npackages:\n  '@secret/*':\n    access: alice\n    publish: alice\n  '@private/*':\n    access: $authenticated\n    proxy: corp\n  '**':\n    access: $all\n    publish: $authenticated\n    proxy: mock\n",
        u = mock.url
    )
}

/// Without `minimumReleaseAge` (packages published by the test are new).
fn no_age(mut body: serde_json::Value) -> serde_json::Value {
    body.as_object_mut().map(|o| o.remove("minimumReleaseAge"));
    body
}

/// A frozen-lockfile request for `deps` with `lockfile`.
fn frozen(
    registry: &str,
    deps: &[(&str, &str)],
    lockfile: &serde_json::Value,
) -> serde_json::Value {
    let mut body = no_age(install_body(registry, deps, &[], serde_json::json!({})));
    body["lockfile"] = lockfile.clone();
    body["frozenLockfile"] = true.into();
    body
}

/// The lockfile of an answer with every integrity of `name`'s entries
/// replaced by `integrity`.
fn swap_integrity(answer: &InstallAnswer, name: &str, integrity: &str) -> serde_json::Value {
    let mut lockfile = answer.header["lockfile"].clone();
    let packages = lockfile["packages"].as_object_mut().expect("packages");
    let mut swapped = 0;
    for (key, entry) in packages.iter_mut() {
        if key.starts_with(&format!("{name}@")) {
            entry["resolution"]["integrity"] = integrity.into();
            swapped += 1;
        }
    }
    assert!(swapped > 0, "{name} not in {lockfile}");
    lockfile
}

fn assert_refused(a: &InstallAnswer, what: &str) {
    assert!(
        matches!(a.status, 401 | 403 | 404),
        "{what}: expected a refusal, got {} {}",
        a.status,
        a.text
    );
    assert!(a.header.is_null(), "{what}: a header was sent");
    let leaked = a.text.as_bytes().windows(SECRET.len()).any(|w| w == SECRET);
    assert!(!leaked, "{what}: private file content in the response");
}

fn files(a: &InstallAnswer) -> u64 {
    a.header["stats"]["filesToDownload"].as_u64().unwrap_or(0)
}

/// Alice publishes and installs `@secret/pkg` so its files sit unpacked in
/// the server's file store; returns its integrity.
async fn plant_secret(http: &Http, pnpr: &Pnpr, alice: &str) -> String {
    let integrity = publish(
        http,
        &pnpr.url,
        alice,
        "@secret/pkg",
        "1.0.0",
        &[("secret.txt", SECRET)],
    )
    .await;
    let body = no_age(install_body(
        &pnpr.url,
        &[("@secret/pkg", "1.0.0")],
        &[],
        serde_json::json!({}),
    ));
    let own = post_install(&pnpr.url, &body, Some(alice)).await;
    assert_eq!(
        own.status, 200,
        "control: the owner installs her package: {}",
        own.text
    );
    assert!(files(&own) > 0);
    integrity
}

#[tokio::test]
async fn a_frozen_lockfile_cannot_bind_readable_names_to_private_bytes() {
    let mock = RegistryMock::start();
    let (user, password) = RegistryMock::private_credentials();
    let corp_token = mock.login(user, password).await;
    let pnpr = Pnpr::start(&config(&mock, &corp_token), &[]);
    let http = Http::new();
    let alice = add_user(&http, &pnpr, "alice").await;
    let bob = add_user(&http, &pnpr, "bob").await;
    let secret = plant_secret(&http, &pnpr, &alice).await;

    // A public tree, resolved normally: the lockfile the attacker edits.
    let body = install_body(&pnpr.url, &[PUBLIC], &[], serde_json::json!({}));
    let public = post_install(&pnpr.url, &body, None).await;
    assert_eq!(public.status, 200, "{}", public.text);

    // Attack, mirror name: anonymous and bob bind the public package to the
    // private integrity.
    let forged = swap_integrity(&public, PUBLIC.0, &secret);
    for who in [None, Some(bob.as_str())] {
        let a = post_install(&pnpr.url, &frozen(&pnpr.url, &[PUBLIC], &forged), who).await;
        assert_refused(&a, "mirror name bound to a private integrity");
        // Twice: a second (possibly cached) attempt is refused as well.
        let a = post_install(&pnpr.url, &frozen(&pnpr.url, &[PUBLIC], &forged), who).await;
        assert_refused(&a, "repeated attempt");
    }

    // Attack, hosted name: a public hosted package bound to the secret.
    publish(&http, &pnpr.url, &bob, "bobs-pkg", "1.0.0", &[]).await;
    let deps = [("bobs-pkg", "1.0.0")];
    let body = no_age(install_body(&pnpr.url, &deps, &[], serde_json::json!({})));
    let own = post_install(&pnpr.url, &body, Some(&bob)).await;
    assert_eq!(own.status, 200, "{}", own.text);
    let forged = swap_integrity(&own, "bobs-pkg", &secret);
    let a = post_install(&pnpr.url, &frozen(&pnpr.url, &deps, &forged), Some(&bob)).await;
    assert_refused(&a, "hosted name bound to a private integrity");

    // Controls: the untouched lockfile installs (cold and warm), and the
    // owner's own frozen install of her package works.
    let lockfile = public.header["lockfile"].clone();
    for _ in 0..2 {
        let ok = post_install(&pnpr.url, &frozen(&pnpr.url, &[PUBLIC], &lockfile), None).await;
        assert_eq!(ok.status, 200, "control: {}", ok.text);
        assert!(files(&ok) > 0);
    }
    let body = no_age(install_body(
        &pnpr.url,
        &[("@secret/pkg", "1.0.0")],
        &[],
        serde_json::json!({}),
    ));
    let mine = post_install(&pnpr.url, &body, Some(&alice)).await;
    let mine_frozen = frozen(
        &pnpr.url,
        &[("@secret/pkg", "1.0.0")],
        &mine.header["lockfile"],
    );
    let ok = post_install(&pnpr.url, &mine_frozen, Some(&alice)).await;
    assert_eq!(ok.status, 200, "control: {}", ok.text);
    assert!(ok.rest.windows(SECRET.len()).any(|w| w == SECRET) || files(&ok) > 0);
}

#[tokio::test]
async fn an_uplink_endpoint_serves_only_what_its_metadata_binds() {
    let mock = RegistryMock::start();
    let (user, password) = RegistryMock::private_credentials();
    let corp_token = mock.login(user, password).await;
    let pnpr = Pnpr::start(&config(&mock, &corp_token), &[]);
    let http = Http::new();
    let alice = add_user(&http, &pnpr, "alice").await;
    let bob = add_user(&http, &pnpr, "bob").await;
    let secret = plant_secret(&http, &pnpr, &alice).await;
    let corp = format!("{}~corp/", pnpr.url);
    let deps = [("@private/foo", "*")];

    // Control: bob may use ~corp and installs its package.
    let body = install_body(&corp, &deps, &[], serde_json::json!({}));
    let own = post_install(&pnpr.url, &body, Some(&bob)).await;
    assert_eq!(own.status, 200, "{}", own.text);
    assert!(files(&own) > 0);

    // Attack: on ~corp, bind its package to alice's hosted secret.
    let forged = swap_integrity(&own, "@private/foo", &secret);
    let a = post_install(&pnpr.url, &frozen(&corp, &deps, &forged), Some(&bob)).await;
    assert_refused(&a, "uplink package bound to a hosted private integrity");

    // Control: the real lockfile, frozen, on ~corp.
    let ok = post_install(
        &pnpr.url,
        &frozen(&corp, &deps, &own.header["lockfile"]),
        Some(&bob),
    )
    .await;
    assert_eq!(ok.status, 200, "control: {}", ok.text);
}

fn forwarded_config(mock: &RegistryMock) -> String {
    format!(
        "auth:\n  htpasswd:\n    file: ./htpasswd\nroutes:\n  public:\n    - registry: {u}\npackages:\n  '**':\n    access: $all\n    publish: $authenticated\n",
        u = mock.url
    )
}

#[tokio::test]
async fn the_forwarded_path_serves_nothing_without_the_upstreams_consent() {
    let mock = RegistryMock::start();
    let upstream_token = mock.login("foo", "bar").await;
    let pnpr = Pnpr::start(&forwarded_config(&mock), &[]);
    let http = Http::new();
    let alice = add_user(&http, &pnpr, "alice").await;
    let cred = serde_json::json!({
        format!("//127.0.0.1:{}/", mock.port): format!("Bearer {upstream_token}")
    });
    let deps = [("@private/foo", "*")];

    // Alice fetches her private package with her upstream credential.
    let body = no_age(install_body(&mock.url, &deps, &[], cred.clone()));
    let own = post_install(&pnpr.url, &body, Some(&alice)).await;
    assert_eq!(own.status, 200, "{}", own.text);
    assert!(files(&own) > 0);
    let lockfile = own.header["lockfile"].clone();

    // Attack: the same frozen lockfile without authHeaders, anonymous and
    // as alice herself (pnpr's own policy admits everyone to '**').
    for who in [None, Some(alice.as_str())] {
        let mut body = no_age(frozen(&mock.url, &deps, &lockfile));
        body["authHeaders"] = serde_json::json!({});
        let a = post_install(&pnpr.url, &body, who).await;
        assert!(matches!(a.status, 401 | 403), "{} {}", a.status, a.text);
        assert!(a.header.is_null());
    }

    // Attack: a fragment or query in the registry would aim the anonymous
    // probe at the registry root; refused before any fetch.
    for bad in [
        format!("{}#x/", mock.url),
        format!("{}?x=1", mock.url),
        format!("{}#", mock.url),
    ] {
        let body = no_age(install_body(&bad, &deps, &[], cred.clone()));
        let a = post_install(&pnpr.url, &body, Some(&alice)).await;
        assert_eq!(a.status, 400, "{bad}: {}", a.text);
    }

    // Control: with her credential the frozen install works.
    let body = no_age(frozen(&mock.url, &deps, &lockfile));
    let mut body = body;
    body["authHeaders"] = cred;
    let ok = post_install(&pnpr.url, &body, Some(&alice)).await;
    assert_eq!(ok.status, 200, "control: {}", ok.text);
}

#[tokio::test]
async fn a_cached_resolution_is_keyed_by_every_field_that_changes_it() {
    let pnpr = Pnpr::start(
        "auth:\n  htpasswd:\n    file: ./htpasswd\npackages:\n  '**':\n    access: $all\n    publish: $authenticated\n",
        &[],
    );
    let http = Http::new();
    let alice = add_user(&http, &pnpr, "alice").await;
    let integrity = publish(&http, &pnpr.url, &alice, "fresh-pkg", "1.0.0", &[]).await;
    let lockfile = serde_json::json!({
        "lockfileVersion": "9.0",
        "settings": {"autoInstallPeers": true, "excludeLinksFromLockfile": false},
        "importers": {".": {"dependencies": {"fresh-pkg": {"specifier": "1.0.0", "version": "1.0.0"}}}},
        "packages": {"fresh-pkg@1.0.0": {"resolution": {"integrity": integrity}}},
        "snapshots": {"fresh-pkg@1.0.0": {}}
    });
    let body = |trust: bool| {
        serde_json::json!({
            "projects": [{"dir": ".", "dependencies": {"fresh-pkg": "1.0.0"}}],
            "registry": pnpr.url, "authHeaders": {}, "minimumReleaseAge": 1440,
            "trustLockfile": trust, "lockfile": lockfile, "frozenLockfile": true,
            "storeIntegrities": []
        })
    };
    // Warm a candidate with trustLockfile (verification skipped).
    let trusted = post_install(&pnpr.url, &body(true), None).await;
    assert_eq!(trusted.status, 200, "{}", trusted.text);
    assert!(trusted.header["lockfile"].is_object(), "{}", trusted.header);
    // Attack: the same request without trustLockfile must not reuse it.
    let checked = post_install(&pnpr.url, &body(false), None).await;
    assert_eq!(checked.status, 200, "{}", checked.text);
    assert_eq!(
        checked.header["violations"][0]["code"], "MINIMUM_RELEASE_AGE_VIOLATION",
        "{}",
        checked.header
    );
    // Control: the trusted request is still served (and now from cache).
    let again = post_install(&pnpr.url, &body(true), None).await;
    assert_eq!(again.header_value("x-pnpr-resolution"), Some("cached"));

    // minimumReleaseAgeExclude changes the answer too: a fresh resolution
    // cannot pick the new version unless its name is excluded.
    let fresh = |exclude: serde_json::Value| {
        serde_json::json!({
            "projects": [{"dir": ".", "dependencies": {"fresh-pkg": "^1.0.0"}}],
            "registry": pnpr.url, "authHeaders": {}, "minimumReleaseAge": 1440,
            "minimumReleaseAgeExclude": exclude, "storeIntegrities": []
        })
    };
    let young = post_install(&pnpr.url, &fresh(serde_json::json!([])), None).await;
    assert_ne!(young.status, 200, "{}", young.text);
    let excluded = post_install(&pnpr.url, &fresh(serde_json::json!(["fresh-*"])), None).await;
    assert_eq!(excluded.status, 200, "{}", excluded.text);
    assert!(
        excluded.header["lockfile"]["packages"]["fresh-pkg@1.0.0"].is_object(),
        "{}",
        excluded.header
    );
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

async fn post_raw(url: &str, body: Vec<u8>) -> Response {
    Http::raw()
        .send(
            "POST",
            url,
            &[("content-type", "application/json")],
            Some(body),
        )
        .await
}

/// The status of one large POST (0 on a transport error), with a client
/// timeout long enough for a queue of 50 on two cores.
async fn post_status(client: &reqwest::Client, url: &str, body: Vec<u8>) -> u16 {
    let t = Instant::now();
    match client
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
    {
        Ok(r) => r.status().as_u16(),
        Err(e) => {
            eprintln!("client error after {:?}: {e:?}", t.elapsed());
            0
        }
    }
}

/// A valid request of about `size` bytes: a small tree plus a large
/// lockfile that is not a usable pnpm lockfile; `i` makes its key distinct.
fn max_body(registry: &str, i: usize, size: usize) -> Vec<u8> {
    let filler = "x".repeat(96);
    let n = size / (filler.len() + 3);
    let junk: Vec<&str> = std::iter::repeat_n(filler.as_str(), n).collect();
    let body = serde_json::json!({
        "projects": [{"dir": ".", "dependencies": {PUBLIC.0: PUBLIC.1}}],
        "registry": registry, "authHeaders": {}, "overrides": {format!("client-{i}"): "1.0.0"},
        "lockfile": {"junk": junk}, "storeIntegrities": []
    });
    body.to_string().into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_bodies_are_bounded_in_size_count_and_memory() {
    let mock = RegistryMock::start();
    let cfg = format!(
        "uplinks:\n  mock:\n    url: {u}\npackages:\n  '**':\n    access: $all\n    proxy: mock\nlimits:\n  store_integrities: 1000\n",
        u = mock.url
    );
    let pnpr = Pnpr::start(&cfg, &[]);
    let url = format!("{}v1/install", pnpr.url);
    let pid = pnpr.pid().expect("pid");

    // Over the byte limit: 413, quickly.
    let t = Instant::now();
    let r = post_raw(&url, vec![b' '; 9 * 1024 * 1024]).await;
    assert_eq!(r.status, 413, "{}", r.text());
    assert!(r.text().contains("limits.install_body"), "{}", r.text());
    assert!(t.elapsed() < Duration::from_secs(10));
    // Too many storeIntegrities: 400 naming the limit.
    let many: Vec<String> = (0..1001).map(|i| format!("sha512-{i}")).collect();
    let body = install_body(&pnpr.url, &[PUBLIC], &many, serde_json::json!({}));
    let r = post_raw(&url, body.to_string().into_bytes()).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("storeIntegrities"), "{}", r.text());

    // 50 anonymous clients with maximum-size bodies (the default 8 MiB
    // limit) and distinct keys.
    let baseline = rss_kib(pid);
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(baseline));
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (std::sync::Arc::clone(&peak), std::sync::Arc::clone(&done));
        tokio::spawn(async move {
            for _ in 0..6000 {
                if done.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                peak.fetch_max(rss_kib(pid), std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let started = Instant::now();
    // No TCP user timeout: a queued client's upload legitimately stalls
    // (zero window) until the server admits it.
    let client = reqwest::Client::builder()
        .no_proxy()
        .tcp_user_timeout(None)
        .timeout(Duration::from_secs(300))
        .build()
        .expect("client");
    let bodies: Vec<Vec<u8>> = (0..50)
        .map(|i| max_body(&pnpr.url, i, 8 * 1024 * 1024 - 4096))
        .collect();
    let mut clients = Vec::new();
    for body in bodies {
        let (url, client) = (url.clone(), client.clone());
        clients.push(tokio::spawn(async move {
            post_status(&client, &url, body).await
        }));
    }
    let mut statuses = Vec::new();
    for c in clients {
        statuses.push(c.await.expect("client"));
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    sampler.await.expect("sampler");
    let peak_mib = peak.load(std::sync::atomic::Ordering::Relaxed) / 1024;
    eprintln!(
        "50 clients x 8 MiB: baseline {} MiB, peak RSS {peak_mib} MiB, {:?}, statuses {statuses:?}",
        baseline / 1024,
        started.elapsed()
    );
    assert!(
        statuses.iter().all(|s| matches!(s, 200 | 503)),
        "{statuses:?}\n{}",
        pnpr.logs()
    );
    assert!(
        statuses.iter().filter(|s| **s == 200).count() >= 10,
        "{statuses:?}"
    );
    assert!(peak_mib < 300, "peak RSS {peak_mib} MiB");
    // Still serving afterwards.
    let r = Http::new().get(&format!("{}-/ping", pnpr.url)).await;
    r.assert_status(200);
}

/// The stored cut of a private package (RFC 0010 §4c) is only ever sent to
/// a caller the package's own policy admits. Alice installs a public
/// package together with her private one, which shares a file with it, so
/// the private one's group is cut and kept holding her secret file.
/// Attack: bob and an anonymous caller ask for the same tree, and bob for
/// the public package alone; no answer carries the secret. Control: bob's
/// public install works, and alice's next cold install is sent the stored
/// cut (it is marked used) with her file in it.
#[tokio::test]
async fn a_stored_cut_of_a_private_package_goes_only_to_callers_it_admits() {
    let mock = RegistryMock::start();
    let (user, password) = RegistryMock::private_credentials();
    let corp_token = mock.login(user, password).await;
    let pnpr = Pnpr::start(&config(&mock, &corp_token), &[]);
    let http = Http::new();
    let alice = add_user(&http, &pnpr, "alice").await;
    let bob = add_user(&http, &pnpr, "bob").await;
    let shared = pnpr_e2e::publish::compressible_text(4 << 10, "shared");
    let big = pnpr_e2e::publish::compressible_text(600 << 10, "big");
    publish(
        &http,
        &pnpr.url,
        &bob,
        "cut-public-big",
        "1.0.0",
        &[("big.js", &big), ("shared.txt", &shared)],
    )
    .await;
    publish(
        &http,
        &pnpr.url,
        &alice,
        "@secret/cut-small",
        "1.0.0",
        &[("secret.txt", SECRET), ("shared.txt", &shared)],
    )
    .await;
    let both = [("cut-public-big", "1.0.0"), ("@secret/cut-small", "1.0.0")];
    let body = no_age(install_body(&pnpr.url, &both, &[], serde_json::json!({})));
    let first = post_install(&pnpr.url, &body, Some(&alice)).await;
    assert_eq!(first.status, 200, "{}", first.text);
    let cuts_dir = pnpr
        .data_dir()
        .join(".pnpr-cache")
        .join("files")
        .join("frames")
        .join("cuts");
    let cut = std::fs::read_dir(&cuts_dir)
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|fan| {
            std::fs::read_dir(fan.path())
                .into_iter()
                .flatten()
                .flatten()
        })
        .map(|e| e.path())
        .next()
        .expect("the private package's partial group is kept as a cut");
    let used = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let kept_at = used(&cut);

    for who in [None, Some(bob.as_str())] {
        let a = post_install(&pnpr.url, &body, who).await;
        assert_refused(&a, "a tree naming the private package");
    }
    let public = [("cut-public-big", "1.0.0")];
    let body_public = no_age(install_body(&pnpr.url, &public, &[], serde_json::json!({})));
    let ok = post_install(&pnpr.url, &body_public, Some(&bob)).await;
    assert_eq!(ok.status, 200, "control: {}", ok.text);
    assert!(files(&ok) > 0);
    assert!(!ok
        .text
        .as_bytes()
        .windows(SECRET.len())
        .any(|w| w == SECRET));
    assert_eq!(used(&cut), kept_at, "the cut was not read for them");

    tokio::time::sleep(Duration::from_millis(50)).await;
    let again = post_install(&pnpr.url, &body, Some(&alice)).await;
    assert_eq!(again.status, 200, "control: {}", again.text);
    assert!(again.rest.windows(SECRET.len()).any(|w| w == SECRET));
    assert!(used(&cut) > kept_at, "the owner was sent the stored cut");
}
