//! Attack classes 3 and 7 (hosted packages) against the real pnpr binary.
//!
//! Class 7, no ownership: a second user with `publish` rights tries to
//! publish a new version of someone else's package, move and remove its
//! dist-tags, deprecate it, unpublish a version or the whole package, and
//! make himself an owner, with the npm 11 CLI and with raw requests. Every
//! attempt must be refused and leave the package exactly as it was. Controls:
//! the owner does all of it, `npm owner add` hands rights to a new owner, an
//! admin group may change any package, and `ownership.mode: publish-rights`
//! restores Verdaccio's behaviour.
//!
//! Class 3, dependency confusion on private uplinks: a user publishes a name
//! whose `packages:` rule proxies to an access-bearing uplink. Refused when
//! the uplink serves the name, when the publisher is not admitted by the
//! uplink's `access`, and (fail closed, 503) when an uplink cannot be asked.
//! Control: an admitted user claims a name the uplink does not serve.

use base64::Engine;
use pnpr_e2e::{add_user, free_port, Http, Output, Pnpr, Project, RegistryMock};
use serde_json::{json, Value};
use sha2::{Digest, Sha512};

const NAME: &str = "pnpr-owned";

fn config(extra: &str) -> String {
    format!(
        "auth:\n  htpasswd:\n    file: ./htpasswd\ngroups:\n  release: [carol]\npackages:\n  '**':\n    access: $all\n    publish: $authenticated\n{extra}"
    )
}

fn npmrc(pnpr: &Pnpr, token: &str) -> String {
    let host = pnpr.url.trim_start_matches("http:");
    format!("registry={}\n{host}:_authToken={token}\n", pnpr.url)
}

/// A publishable `NAME@version` directory acting as the owner of `token`.
fn package(pnpr: &Pnpr, token: &str, version: &str) -> Project {
    let project = Project::new(
        &json!({ "name": NAME, "version": version, "main": "index.js" }),
        Some(&npmrc(pnpr, token)),
    );
    project.write_file(
        "index.js",
        &format!("module.exports = {};\n", json!(version)),
    );
    project
}

fn sri(bytes: &[u8]) -> String {
    format!(
        "sha512-{}",
        base64::engine::general_purpose::STANDARD.encode(Sha512::digest(bytes))
    )
}

/// What `npm publish` sends, for raw-HTTP attacks.
fn publish_body(name: &str, version: &str, tarball: &[u8]) -> Value {
    let bare = name.rsplit('/').next().unwrap_or(name);
    let file = format!("{bare}-{version}.tgz");
    json!({
        "_id": name,
        "name": name,
        "dist-tags": { "latest": version },
        "versions": { version: {
            "name": name, "version": version,
            "dist": { "integrity": sri(tarball), "tarball": format!("http://127.0.0.1:1/{name}/-/{file}") }
        } },
        "_attachments": { file: {
            "content_type": "application/octet-stream",
            "data": base64::engine::general_purpose::STANDARD.encode(tarball),
            "length": tarball.len()
        } }
    })
}

fn enc(name: &str) -> String {
    name.replace('/', "%2f")
}

async fn doc(http: &Http, pnpr: &Pnpr) -> Value {
    let r = http.get(&format!("{}{NAME}", pnpr.url)).await;
    r.assert_status(200);
    r.json()
}

#[track_caller]
fn refused(out: &Output, what: &str) {
    assert!(!out.success(), "{what} should have been refused:\n{out}");
    assert!(
        out.combined().contains("403"),
        "{what}: expected a 403:\n{out}"
    );
}

/// Alice publishes 1.0.0 and 1.1.0 and tags 1.0.0 `stable`; returns her
/// token and package directory.
async fn alice_owns_the_package(http: &Http, pnpr: &Pnpr) -> (String, Project) {
    let alice = add_user(http, pnpr, "alice").await;
    let pkg = package(pnpr, &alice, "1.0.0");
    pkg.npm(&["publish"]).assert_success();
    let pkg11 = package(pnpr, &alice, "1.1.0");
    pkg11.npm(&["publish"]).assert_success();
    pkg.npm(&["dist-tag", "add", &format!("{NAME}@1.0.0"), "stable"])
        .assert_success();
    (alice, pkg)
}

/// Every write a non-owner with publish rights can try, through npm and
/// raw requests; each must be refused.
async fn attack_as(http: &Http, pnpr: &Pnpr, token: &str) {
    let mine = package(pnpr, token, "2.0.0");
    refused(&mine.npm(&["publish"]), "publishing a new version");
    refused(
        &mine.npm(&["dist-tag", "add", &format!("{NAME}@1.0.0"), "latest"]),
        "moving latest",
    );
    refused(
        &mine.npm(&["dist-tag", "rm", NAME, "stable"]),
        "removing a dist-tag",
    );
    refused(
        &mine.npm(&["deprecate", &format!("{NAME}@1.0.0"), "pwned"]),
        "deprecating",
    );
    refused(
        &mine.npm(&["unpublish", &format!("{NAME}@1.1.0")]),
        "unpublishing a version",
    );
    refused(
        &mine.npm(&["unpublish", NAME, "--force"]),
        "unpublishing the package",
    );
    let out = mine.npm(&["owner", "add", "bob", NAME]);
    assert!(!out.success(), "owner add should fail:\n{out}");

    // The same writes as raw requests, so no client-side check can hide a
    // server that accepts them.
    let current = doc(http, pnpr).await;
    let rev = current["_rev"].as_str().expect("rev").to_string();
    let base = format!("{}{NAME}", pnpr.url);
    let auth = format!("Bearer {token}");
    let owners = json!({ "_id": NAME, "_rev": rev,
        "maintainers": [{ "name": "alice" }, { "name": "bob" }] });
    let r = http
        .put_json(&format!("{base}/-rev/{rev}"), &owners, Some(token))
        .await;
    r.assert_status(403);
    assert!(
        r.json()["error"]
            .as_str()
            .is_some_and(|e| e.contains("not a maintainer of pnpr-owned")),
        "{}",
        r.text()
    );
    let mut deprecate = current.clone();
    deprecate["versions"]["1.0.0"]["deprecated"] = json!("pwned");
    http.put_json(&format!("{base}/-rev/{rev}"), &deprecate, Some(token))
        .await
        .assert_status(403);
    http.put_json(&base, &publish_body(NAME, "3.0.0", b"evil"), Some(token))
        .await
        .assert_status(403);
    let tag = format!("{}-/package/{NAME}/dist-tags/latest", pnpr.url);
    let h = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];
    let r = http
        .send("PUT", &tag, &h, Some(b"\"1.0.0\"".to_vec()))
        .await;
    r.assert_status(403);
    http.send("DELETE", &format!("{base}/-rev/{rev}"), &h, None)
        .await
        .assert_status(403);
    http.send(
        "DELETE",
        &format!("{base}/-/{NAME}-1.1.0.tgz/-rev/{rev}"),
        &h,
        None,
    )
    .await
    .assert_status(403);
}

#[tokio::test]
async fn a_second_publisher_cannot_change_someone_elses_package() {
    let pnpr = Pnpr::start(&config(""), &[]);
    let http = Http::new();
    let (_alice, _pkg) = alice_owns_the_package(&http, &pnpr).await;
    let before = doc(&http, &pnpr).await;
    let bob = add_user(&http, &pnpr, "bob").await;

    attack_as(&http, &pnpr, &bob).await;

    let after = doc(&http, &pnpr).await;
    assert_eq!(after, before, "a refused write changed the package");
    assert_eq!(
        after["maintainers"],
        json!([{ "name": "alice", "email": "" }])
    );
    assert_eq!(
        after["dist-tags"],
        json!({ "latest": "1.1.0", "stable": "1.0.0" })
    );
    let t = http
        .get(&format!("{}{NAME}/-/{NAME}-1.1.0.tgz", pnpr.url))
        .await;
    t.assert_status(200);
}

#[tokio::test]
async fn the_owner_manages_the_package_and_hands_it_over() {
    let pnpr = Pnpr::start(&config(""), &[]);
    let http = Http::new();
    let (alice, pkg) = alice_owns_the_package(&http, &pnpr).await;
    let bob = add_user(&http, &pnpr, "bob").await;

    package(&pnpr, &alice, "1.2.0")
        .npm(&["publish"])
        .assert_success();
    pkg.npm(&["dist-tag", "add", &format!("{NAME}@1.1.0"), "stable"])
        .assert_success();
    pkg.npm(&["deprecate", &format!("{NAME}@1.0.0"), "use 1.2.0"])
        .assert_success();
    let d = doc(&http, &pnpr).await;
    assert_eq!(d["versions"]["1.0.0"]["deprecated"], "use 1.2.0");
    assert_eq!(d["dist-tags"]["stable"], "1.1.0");

    // An owner must be an existing user, for npm and for raw requests.
    let out = pkg.npm(&["owner", "add", "ghost", NAME]);
    assert!(!out.success(), "adding a missing user:\n{out}");
    let rev = d["_rev"].as_str().expect("rev");
    let ghost = json!({ "_id": NAME, "_rev": rev,
        "maintainers": [{ "name": "alice" }, { "name": "ghost" }] });
    http.put_json(
        &format!("{}{NAME}/-rev/{rev}", pnpr.url),
        &ghost,
        Some(&alice),
    )
    .await
    .assert_status(400);

    // `npm owner add` hands rights to bob; he publishes and removes alice.
    pkg.npm(&["owner", "add", "bob", NAME]).assert_success();
    let ls = pkg.npm(&["owner", "ls", NAME]);
    assert!(
        ls.stdout.contains("alice") && ls.stdout.contains("bob"),
        "{ls}"
    );
    let as_bob = package(&pnpr, &bob, "2.0.0");
    as_bob.npm(&["publish"]).assert_success();
    as_bob.npm(&["owner", "rm", "alice", NAME]).assert_success();
    // Alice is no longer an owner: her next write is refused.
    refused(
        &package(&pnpr, &alice, "2.1.0").npm(&["publish"]),
        "a removed owner publishing",
    );
    as_bob
        .npm(&["unpublish", &format!("{NAME}@1.2.0")])
        .assert_success();
    let d = doc(&http, &pnpr).await;
    assert!(d["versions"].get("1.2.0").is_none(), "{d}");
    as_bob.npm(&["unpublish", NAME, "--force"]).assert_success();
    http.get(&format!("{}{NAME}", pnpr.url))
        .await
        .assert_status(404);
}

#[tokio::test]
async fn an_admin_group_may_change_any_package() {
    let pnpr = Pnpr::start(&config("ownership:\n  admins: [release]\n"), &[]);
    let http = Http::new();
    let (_alice, _pkg) = alice_owns_the_package(&http, &pnpr).await;
    let bob = add_user(&http, &pnpr, "bob").await;
    let carol = add_user(&http, &pnpr, "carol").await;

    // Not an admin: still refused.
    refused(
        &package(&pnpr, &bob, "2.0.0").npm(&["publish"]),
        "a non-admin publishing",
    );
    let admin = package(&pnpr, &carol, "2.0.0");
    admin.npm(&["publish"]).assert_success();
    admin
        .npm(&["dist-tag", "add", &format!("{NAME}@1.0.0"), "legacy"])
        .assert_success();
    admin
        .npm(&["deprecate", &format!("{NAME}@1.0.0"), "old"])
        .assert_success();
    admin.npm(&["owner", "add", "bob", NAME]).assert_success();
    let d = doc(&http, &pnpr).await;
    assert_eq!(d["dist-tags"]["legacy"], "1.0.0");
    let owners: Vec<&str> = d["maintainers"]
        .as_array()
        .expect("maintainers")
        .iter()
        .filter_map(|m| m["name"].as_str())
        .collect();
    assert_eq!(owners, ["alice", "bob"]);
    admin.npm(&["unpublish", NAME, "--force"]).assert_success();
    http.get(&format!("{}{NAME}", pnpr.url))
        .await
        .assert_status(404);
}

#[tokio::test]
async fn publish_rights_mode_restores_verdaccio_behaviour() {
    let pnpr = Pnpr::start(&config("ownership:\n  mode: publish-rights\n"), &[]);
    let http = Http::new();
    let (_alice, _pkg) = alice_owns_the_package(&http, &pnpr).await;
    let bob = add_user(&http, &pnpr, "bob").await;
    let theirs = package(&pnpr, &bob, "2.0.0");
    theirs.npm(&["publish"]).assert_success();
    theirs
        .npm(&["dist-tag", "add", &format!("{NAME}@1.0.0"), "latest"])
        .assert_success();
    theirs.npm(&["owner", "add", "bob", NAME]).assert_success();
    assert_eq!(doc(&http, &pnpr).await["dist-tags"]["latest"], "1.0.0");
    theirs.npm(&["unpublish", NAME, "--force"]).assert_success();
}

/// `@private/*` proxies to `corp`, an access-bearing uplink (team only)
/// holding a credential for registry-mock's `@private/*`; everything else
/// proxies to the anonymous mirror `mock`; `@dead/*` to an uplink nobody
/// listens on.
fn corp_config(mock: &RegistryMock, dead_port: u16) -> String {
    format!(
        "auth:\n  htpasswd:\n    file: ./htpasswd\ngroups:\n  team: [alice]\nuplinks:\n  mock:\n    url: {u}\n  corp:\n    url: {u}\n    access: team\n    auth:\n      type: bearer\n      token_env: CORP_TOKEN\n  dead:\n    url: http://127.0.0.1:{dead_port}/\n    max_fails: 100\npackages:\n  '@private/*':\n    access: $authenticated\n    publish: $authenticated\n    proxy: corp\n  '@dead/*':\n    access: $all\n    publish: $authenticated\n    proxy: dead\n  '**':\n    access: $all\n    publish: $authenticated\n    proxy: mock\n",
        u = mock.url
    )
}

async fn publish_raw(http: &Http, pnpr: &Pnpr, name: &str, token: &str) -> u16 {
    http.put_json(
        &format!("{}{}", pnpr.url, enc(name)),
        &publish_body(name, "1.0.0", name.as_bytes()),
        Some(token),
    )
    .await
    .status
}

#[tokio::test]
async fn names_an_access_bearing_uplink_serves_cannot_be_claimed() {
    let mock = RegistryMock::start();
    let upstream_token = mock.private_token().await;
    let pnpr = Pnpr::start(
        &corp_config(&mock, free_port()),
        &[("CORP_TOKEN", &upstream_token)],
    );
    let http = Http::new();
    let alice = add_user(&http, &pnpr, "alice").await;
    let mallory = add_user(&http, &pnpr, "mallory").await;

    // Attack: an outsider claims the private package's name (the shared
    // mirror never sees it, so only the corp uplink can tell).
    assert_eq!(
        publish_raw(&http, &pnpr, "@private/foo", &mallory).await,
        403
    );
    // ...or a fresh name in corp's namespace, to pre-empt it.
    assert_eq!(
        publish_raw(&http, &pnpr, "@private/not-yet", &mallory).await,
        403
    );
    // With npm, too.
    let npm = Project::new(
        &json!({ "name": "@private/foo", "version": "9.9.9" }),
        Some(&npmrc(&pnpr, &mallory)),
    );
    refused(
        &npm.npm(&["publish", "--access", "public"]),
        "claiming @private/foo",
    );
    // Even an admitted user cannot shadow a name corp serves.
    let r = http
        .put_json(
            &format!("{}@private%2ffoo", pnpr.url),
            &publish_body("@private/foo", "9.9.9", b"shadow"),
            Some(&alice),
        )
        .await;
    r.assert_status(403);
    assert!(
        r.text().contains("already served by an uplink (corp)"),
        "{}",
        r.text()
    );
    // Nothing was claimed: the name still comes from corp only.
    http.get_auth(&format!("{}@private%2ffoo", pnpr.url), &alice)
        .await
        .assert_status(404);
    http.get_auth(&format!("{}~corp/@private%2ffoo", pnpr.url), &alice)
        .await
        .assert_status(200);

    // A mirror that hides a name behind authentication cannot vouch that
    // it is free: fail closed.
    assert_eq!(
        publish_raw(&http, &pnpr, "@pnpm.e2e/needs-auth", &alice).await,
        503
    );
    // An uplink that cannot be asked: fail closed.
    assert_eq!(publish_raw(&http, &pnpr, "@dead/pkg", &alice).await, 503);

    // Control: an admitted user claims a name corp does not serve, and it
    // is then hosted (and owned by her).
    assert_eq!(
        publish_raw(&http, &pnpr, "@private/alice-new", &alice).await,
        201
    );
    let r = http
        .get_auth(&format!("{}@private%2falice-new", pnpr.url), &alice)
        .await;
    r.assert_status(200);
    assert_eq!(r.json()["maintainers"][0]["name"], "alice");
    // Control: names the mirror does not know are free for anyone.
    assert_eq!(
        publish_raw(&http, &pnpr, "pnpr-fresh-name", &mallory).await,
        201
    );
}

#[tokio::test]
async fn a_rejected_uplink_credential_fails_closed() {
    let mock = RegistryMock::start();
    let pnpr = Pnpr::start(
        &corp_config(&mock, free_port()),
        &[("CORP_TOKEN", "not-a-valid-token")],
    );
    let http = Http::new();
    let alice = add_user(&http, &pnpr, "alice").await;
    // corp refuses pnpr's credential, so it cannot say whether it serves
    // the name: the claim is unverifiable.
    assert_eq!(
        publish_raw(&http, &pnpr, "@private/unknown", &alice).await,
        503
    );
    http.get_auth(&format!("{}@private%2funknown", pnpr.url), &alice)
        .await
        .assert_status(404);
}
