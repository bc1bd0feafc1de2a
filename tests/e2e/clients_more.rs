//! The other everyday clients (issue 16): yarn 1.22.22, yarn 4 (PnP), bun
//! and deno each install a public package through pnpr, use the `@private`
//! scope on the `/~corp/` endpoint configured the client's own way, publish
//! where the client can publish to a registry, and run its audit command
//! against an audit-capable upstream, which reports its advisory. Private
//! and hosted names never reach that upstream (asserted on its side; the
//! public names arriving are the control).
//!
//! What a client cannot do (so it is not run here):
//! - yarn 1.22.22 `yarn audit` posts to a registry compiled into yarn, never
//!   the configured one, so it cannot be pointed at pnpr; `yarn login` saves
//!   only a user name (no token), so its scope comes from `npm login
//!   --scope`, whose `.npmrc` it reads;
//! - deno publishes only to JSR (`deno publish`), never to an npm registry,
//!   and has no login command: its scope is configured in `.npmrc`;
//! - bun has no login command: its scope is configured in `bunfig.toml`.
//!
//! yarn 4.18 and deno 2.9 quarantine versions published less than a day
//! ago by default (`npmMinimalAgeGate`, `minimumDependencyAge`, read from
//! the packument's `time`); the consumers here turn that off, since they
//! install a package published a moment earlier.

#[path = "audit_upstream.rs"]
mod audit_upstream;

use audit_upstream::{AuditUpstream, TITLE, VULNERABLE};
use pnpr_e2e::{add_user, Http, Pnpr, Project, RegistryMock};
use serde_json::{json, Value};

const PUBLIC_DEP: &str = "@pnpm.e2e/pkg-with-1-dep";
const PRIVATE_DEP: &str = "@private/foo";
const CONSUMER: &str = "consumer-app-secret";

struct Setup {
    _mock: RegistryMock,
    auditor: AuditUpstream,
    pnpr: Pnpr,
    alice: String,
}

/// registry-mock as the shared mirror and as `corp` (access-bearing, with
/// the private user's token; `@private/*` lives there), and the recording
/// audit upstream as `audit.uplink`.
async fn setup() -> Setup {
    let mock = RegistryMock::start();
    let auditor = AuditUpstream::start();
    let (user, password) = RegistryMock::private_credentials();
    let corp_token = mock.login(user, password).await;
    let config = format!(
        "auth:\n  htpasswd:\n    file: ./htpasswd\n\
         uplinks:\n  mock:\n    url: {m}\n  corp:\n    url: {m}\n    access: $authenticated\n    auth:\n      type: bearer\n      token_env: CORP_TOKEN\n  auditor:\n    url: {a}\n\
         audit:\n  uplink: auditor\n\
         packages:\n  '@private/*':\n    access: $authenticated\n    proxy: corp\n  '*-lib':\n    access: $all\n    publish: $authenticated\n  '**':\n    access: $all\n    publish: $authenticated\n    proxy: mock\n",
        m = mock.url,
        a = auditor.url
    );
    let pnpr = Pnpr::start(&config, &[("CORP_TOKEN", &corp_token)]);
    let alice = add_user(&Http::new(), &pnpr, "alice").await;
    Setup {
        _mock: mock,
        auditor,
        pnpr,
        alice,
    }
}

impl Setup {
    fn endpoint(&self) -> String {
        format!("{}~corp/", self.pnpr.url)
    }

    /// `//host:port/`, the nerf-dart prefix of pnpr's `/`.
    fn nerf(&self) -> &str {
        self.pnpr.url.trim_start_matches("http:")
    }

    /// A package `name@1.0.0` to publish, with `.npmrc` naming pnpr and
    /// alice's token.
    fn library(&self, name: &str) -> Project {
        let rc = format!(
            "registry={}\n{}:_authToken={}\n",
            self.pnpr.url,
            self.nerf(),
            self.alice
        );
        let p = Project::new(
            &json!({"name": name, "version": "1.0.0", "main": "index.js"}),
            Some(&rc),
        );
        p.write_file("index.js", "module.exports = 42;\n");
        p
    }

    /// A consumer of a public, a private (`/~corp/`) and a hosted package.
    fn consumer(&self, hosted: &str, npmrc: Option<&str>) -> Project {
        Project::new(
            &json!({"name": CONSUMER, "version": "1.0.0", "private": true,
                    "dependencies": {PUBLIC_DEP: "100.0.0", PRIVATE_DEP: "1.0.0", hosted: "1.0.0"}}),
            npmrc,
        )
    }

    /// The hosted document's dist-tags.
    async fn dist_tags(&self, name: &str) -> Value {
        let r = Http::new()
            .get(&format!("{}-/package/{name}/dist-tags", self.pnpr.url))
            .await;
        r.assert_status(200);
        r.json()
    }

    /// The audit upstream heard the public names (control) and never a
    /// private or hosted one, nor the project's own name.
    #[track_caller]
    fn assert_audit_bodies(&self, hosted: &str) {
        let sent = self.auditor.all_bodies();
        assert!(
            sent.contains(VULNERABLE) && sent.contains(PUBLIC_DEP),
            "public names never reached the audit upstream: {sent}"
        );
        for private in [PRIVATE_DEP, hosted, CONSUMER, "~corp"] {
            assert!(
                !sent.contains(private),
                "{private} reached the audit upstream: {sent}"
            );
        }
    }
}

/// Every installed package is reachable from the project (Node's resolver).
#[track_caller]
fn assert_installed(p: &Project, hosted: &str) {
    for name in [PUBLIC_DEP, hosted] {
        p.node_require(name).assert_success();
    }
    p.node_require("@private/foo/package.json").assert_success();
}

#[tokio::test]
async fn yarn1_installs_uses_an_endpoint_scope_and_publishes() {
    let s = setup().await;
    let lib = s.library("yarn1-lib");
    lib.yarn1(&["publish", "--non-interactive", "--new-version", "1.0.0"])
        .assert_success();
    // `yarn tag add` needs npm's `{"ok": …}` answer to report success.
    lib.yarn1(&["tag", "add", "yarn1-lib@1.0.0", "beta"])
        .assert_success();
    assert_eq!(s.dist_tags("yarn1-lib").await["beta"], "1.0.0");

    let p = s.consumer("yarn1-lib", Some(&format!("registry={}\n", s.pnpr.url)));
    // yarn 1 has no token login of its own; it reads what `npm login
    // --scope` writes (`//host/~corp/:_authToken`).
    p.npm_answering(
        &["login", "--scope=@private", "--registry", &s.endpoint()],
        &[("Username:", "alice"), ("Password:", "alice-pw")],
    )
    .assert_success();
    p.yarn1(&["install", "--non-interactive"]).assert_success();
    assert_installed(&p, "yarn1-lib");
    let lock = p.read_file("yarn.lock");
    assert!(
        lock.contains(&format!("{}@private/foo/-/", s.endpoint())),
        "{lock}"
    );
}

#[tokio::test]
async fn yarn4_logs_in_on_an_endpoint_installs_publishes_and_audits() {
    let s = setup().await;
    let yarnrc = |token: Option<&str>| {
        let mut rc = format!(
            "npmRegistryServer: \"{}\"\nunsafeHttpWhitelist: [\"127.0.0.1\"]\nenableGlobalCache: false\nnpmMinimalAgeGate: 0\n",
            s.pnpr.url
        );
        if let Some(t) = token {
            rc.push_str(&format!("npmAuthToken: \"{t}\"\n"));
        }
        rc
    };
    let lib = s.library("yarn4-lib");
    lib.write_file(".yarnrc.yml", &yarnrc(Some(&s.alice)));
    lib.write_file("yarn.lock", "");
    lib.yarn4(&["install"]).assert_success();
    lib.yarn4(&["npm", "publish"]).assert_success();
    lib.yarn4(&["npm", "tag", "add", "yarn4-lib@1.0.0", "beta"])
        .assert_success();
    assert_eq!(s.dist_tags("yarn4-lib").await["beta"], "1.0.0");

    let p = s.consumer("yarn4-lib", None);
    p.write_file(
        ".yarnrc.yml",
        &format!(
            "{}npmScopes:\n  private:\n    npmRegistryServer: \"{}\"\n",
            yarnrc(None),
            s.endpoint()
        ),
    );
    p.write_file("yarn.lock", "");
    // `yarn npm login --scope` on the endpoint saves a pnpr token for it.
    p.yarn4_answering(
        &["npm", "login", "--scope", "private"],
        &[("Username:", "alice"), ("Password:", "alice-pw")],
    )
    .assert_success();
    let who = p.yarn4(&["npm", "whoami", "--scope", "private"]);
    who.assert_success();
    assert!(who.stdout.contains("alice"), "{who}");
    p.yarn4(&["install"]).assert_success();
    // Plug'n'Play: resolve through yarn's own loader.
    for name in [PUBLIC_DEP, "yarn4-lib", "@private/foo/package.json"] {
        let script = format!("require.resolve({})", Value::from(name));
        p.yarn4(&["node", "-e", &script]).assert_success();
    }
    let lock = p.read_file("yarn.lock");
    assert!(lock.contains("@private/foo@npm:1.0.0"), "{lock}");

    let audit = p.yarn4(&["npm", "audit", "--recursive"]);
    assert!(audit.combined().contains(TITLE), "{audit}");
    assert!(audit.combined().contains(VULNERABLE), "{audit}");
    s.assert_audit_bodies("yarn4-lib");
}

#[tokio::test]
async fn bun_installs_with_a_bunfig_scope_publishes_and_audits() {
    let s = setup().await;
    let lib = s.library("bun-lib");
    lib.bun(&["publish"]).assert_success();
    assert_eq!(s.dist_tags("bun-lib").await["latest"], "1.0.0");

    let p = s.consumer("bun-lib", None);
    p.write_file(
        "bunfig.toml",
        &format!(
            "[install]\nregistry = \"{}\"\n\n[install.scopes]\nprivate = {{ url = \"{}\", token = \"{}\" }}\n",
            s.pnpr.url,
            s.endpoint(),
            s.alice
        ),
    );
    p.bun(&["install"]).assert_success();
    assert_installed(&p, "bun-lib");

    let audit = p.bun(&["audit"]);
    assert!(audit.combined().contains(TITLE), "{audit}");
    assert!(audit.combined().contains(VULNERABLE), "{audit}");
    s.assert_audit_bodies("bun-lib");
}

#[tokio::test]
async fn deno_installs_with_an_npmrc_scope_and_audits() {
    let s = setup().await;
    // deno cannot publish to an npm registry; npm publishes the hosted one.
    s.library("deno-lib").npm(&["publish"]).assert_success();

    let rc = format!(
        "registry={url}\n@private:registry={ep}\n{nerf}~corp/:_authToken={t}\n",
        url = s.pnpr.url,
        ep = s.endpoint(),
        nerf = s.nerf(),
        t = s.alice
    );
    let p = s.consumer("deno-lib", Some(&rc));
    // deno 2.9 holds back versions younger than a day (its default
    // `minimumDependencyAge`); the hosted one was just published.
    p.deno(&["install", "--minimum-dependency-age=0"])
        .assert_success();
    assert_installed(&p, "deno-lib");

    let audit = p.deno(&["audit"]);
    assert!(audit.combined().contains(TITLE), "{audit}");
    assert!(audit.combined().contains(VULNERABLE), "{audit}");
    s.assert_audit_bodies("deno-lib");
}
