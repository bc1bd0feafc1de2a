//! The admin status page (`/-/pnpr/status`, issue 14) in a real headless
//! Chromium from Debian's packages (`tests/setup.sh` installs it): for an
//! admin it renders (a screenshot of the requested size that is not blank)
//! and shows live numbers that move with a real pnpm 11.5.2 install and a
//! failed request; anyone else is refused (401 anonymous, 403 otherwise).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use pnpr_e2e::{Http, Pnpr, Project, RegistryMock};

const CHROMIUM: &str = "/usr/bin/chromium";
const WIDTH: u32 = 1024;
const HEIGHT: u32 = 900;

fn chromium() -> PathBuf {
    let path = PathBuf::from(CHROMIUM);
    assert!(
        path.exists(),
        "{CHROMIUM} is missing: run tests/setup.sh (it installs Debian's chromium package)"
    );
    path
}

/// Runs headless Chromium on `url` with `args` (a fresh profile each time).
fn run_chromium(args: &[&str], url: &str) -> pnpr_e2e::Output {
    let profile = tempfile::tempdir().expect("profile dir");
    let mut cmd = Command::new(chromium());
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--no-first-run",
        "--disable-extensions",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()))
    .args(args)
    .arg(url)
    .env("HOME", profile.path());
    pnpr_e2e::proc::run(&mut cmd, Duration::from_secs(90))
}

/// The page as Chromium built it (`--dump-dom`).
fn dom(url: &str) -> String {
    let out = run_chromium(&["--dump-dom"], url);
    out.assert_success();
    out.stdout
}

/// The text of the element with `id` in a dumped DOM.
fn by_id(dom: &str, id: &str) -> Option<String> {
    let marker = format!("id=\"{id}\">");
    let start = dom.find(&marker)? + marker.len();
    let end = dom[start..].find('<')? + start;
    Some(dom[start..end].to_string())
}

fn number(dom: &str, id: &str) -> u64 {
    by_id(dom, id)
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or_else(|| panic!("no number #{id} in:\n{dom}"))
}

/// Width, height, and how many pixels differ from the top-left one.
fn picture(path: &Path) -> (u32, u32, usize) {
    let file = std::fs::File::open(path).expect("screenshot written");
    let mut reader = png::Decoder::new(file).read_info().expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).expect("PNG frame");
    let px = info.color_type.samples();
    let pixels = &buf[..info.buffer_size()];
    let background = &pixels[..px];
    let inked = pixels.chunks_exact(px).filter(|p| *p != background).count();
    (info.width, info.height, inked)
}

#[tokio::test]
async fn status_page_renders_live_numbers_for_admins_only() {
    let mock = RegistryMock::start();
    let cfg = format!(
        "auth:\n  htpasswd:\n    file: ./htpasswd\ngroups:\n  ops: [alice]\nstatus:\n  access: [ops]\ncache_max_size: 50mb\nuplinks:\n  mock:\n    url: {}\npackages:\n  '**':\n    access: $all\n    publish: $authenticated\n    proxy: mock\n",
        mock.url
    );
    let pnpr = Pnpr::start(&cfg, &[]);
    let http = Http::new();
    let _alice = pnpr_e2e::add_user(&http, &pnpr, "alice").await;
    let bob = pnpr_e2e::add_user(&http, &pnpr, "bob").await;
    let page = format!("{}-/pnpr/status", pnpr.url);
    let as_user = |user: &str| page.replacen("http://", &format!("http://{user}:{user}-pw@"), 1);

    refused_for_others(&http, &page, &bob, &as_user("bob")).await;

    let before = dom(&as_user("alice"));
    assert!(before.contains("<h1>pnpr status</h1>"), "{before}");
    let requests_before = number(&before, "requests-total");

    // A real install and a failed request move the numbers.
    let project = Project::with_dependencies(&[("@pnpm.e2e/pkg-with-1-dep", "100.0.0")]);
    project.pnpm11_install_through(&pnpr.url).assert_success();
    let missing = format!("{}@pnpm.e2e%2fno-such-package", pnpr.url);
    http.send(
        "GET",
        &missing,
        &[("x-request-id", "status-page-404")],
        None,
    )
    .await
    .assert_status(404);

    let after = dom(&as_user("alice"));
    let requests_after = number(&after, "requests-total");
    assert!(
        requests_after >= requests_before + 3,
        "{requests_before} -> {requests_after}"
    );
    assert!(number(&after, "requests-install") >= 1, "{after}");
    assert!(after.contains("status-page-404"), "recent errors: {after}");
    assert!(
        by_id(&after, "hits-tarball").is_some_and(|r| r.ends_with('%')),
        "{after}"
    );
    assert!(after.contains("<td>mock</td>"), "{after}");
    assert!(after.contains("closed"), "breaker state: {after}");
    let budget = by_id(&after, "budget").expect("budget line");
    assert!(budget.contains("of 50.0 MiB"), "{budget}");
    // A `/v1/install` keeps each package's member, not its tarball (RFC
    // 0008 §4): the members are what the store line counts.
    assert!(
        by_id(&after, "store-frames").is_some_and(|b| b != "0 B"),
        "{after}"
    );
    assert_eq!(
        by_id(&after, "store-tarballs").as_deref(),
        Some("0 B"),
        "{after}"
    );

    renders(&as_user("alice"));
}

/// Anonymous 401 (with a Basic challenge a browser answers), a user
/// outside `status.access` 403, in Chromium too.
async fn refused_for_others(http: &Http, page: &str, token: &str, as_other: &str) {
    let anon = http.get(page).await;
    anon.assert_status(401);
    assert!(anon
        .header("www-authenticate")
        .is_some_and(|h| h.starts_with("Basic")));
    http.get_auth(page, token).await.assert_status(403);
    let refused = dom(as_other);
    assert!(!refused.contains("pnpr status"), "{refused}");
    assert!(refused.contains("not allowed"), "{refused}");
}

/// The render check: a screenshot of the requested size with ink on it.
fn renders(url: &str) {
    let shots = tempfile::tempdir().expect("tempdir");
    let shot = shots.path().join("status.png");
    run_chromium(
        &[
            &format!("--screenshot={}", shot.display()),
            &format!("--window-size={WIDTH},{HEIGHT}"),
        ],
        url,
    )
    .assert_success();
    let (w, h, inked) = picture(&shot);
    assert_eq!((w, h), (WIDTH, HEIGHT));
    let share = inked as f64 / f64::from(w * h);
    assert!(
        share > 0.01,
        "a blank page: {inked} pixels differ from the background"
    );
}
