//! The floor of a cold-store install (issue 13): the two lower bounds no
//! server can beat for a given tree, and how far each `peers` scenario is
//! from their sum.
//!
//! * **link**: pnpm with every package already in its store and the
//!   lockfile present, `install --offline --frozen-lockfile`: no network at
//!   all (checked: the shapers see no connection), so what is left is
//!   reading the lockfile, the store index and linking `node_modules`.
//! * **transfer**: the bytes the scenario's install moved to the client
//!   (counted by its shaper) at the shaped link's bandwidth, plus one round
//!   trip for the request.
//!
//! `floor = link + transfer`; a scenario's gap is `median - floor`.
//! Invariant guarded: a link-only sample counts only when no shaper saw a
//! connection during it (otherwise the install was not link-only and the
//! sample is dropped, saying so).

use std::path::Path;
use std::time::Duration;

use pnpr_e2e::Project;

use crate::shaper::{Shape, Shaper};
use crate::{fail, project_from};

/// One link-only install of `fixture` against a full `store` and its
/// `lockfile`; `shapers` must see no connection.
pub(crate) fn link_only(
    client: &str,
    fixture: &Path,
    store: &Path,
    lockfile: &str,
    registry: &str,
    shapers: &[&Shaper],
) -> Option<Duration> {
    let mut p: Project = project_from(fixture);
    p.set_env("pnpm_config_store_dir", &store.to_string_lossy());
    p.write_file("pnpm-lock.yaml", lockfile);
    no_release_age_check(&p);
    for s in shapers {
        s.reset();
    }
    let out = p.pnpm_v(
        client,
        &[
            "install",
            "--offline",
            "--frozen-lockfile",
            "--registry",
            registry,
            "--config.strict-dep-builds=false",
            "--config.save=false",
        ],
    );
    if !out.success() {
        fail(&format!("link-only install failed:\n{out}"));
    }
    if !p.exists("node_modules/.pnpm") {
        fail("link-only install left no node_modules");
    }
    for s in shapers {
        let t = s.traffic();
        if t.connections > 0 {
            eprintln!("link-only sample dropped: the install used the network ({t:?})");
            return None;
        }
    }
    Some(out.elapsed)
}

/// pnpm 11 checks every locked version's publish time against
/// `minimumReleaseAge` (default one day) even `--offline`: one packument GET
/// per package (454 requests for the `express` project), which is not
/// linking. It takes the setting from `pnpm-workspace.yaml` only (the
/// `--config.minimum-release-age=0` flag leaves the check on), so it goes
/// there, next to whatever the fixture's workspace file already says.
fn no_release_age_check(p: &Project) {
    const FILE: &str = "pnpm-workspace.yaml";
    let old = if p.exists(FILE) {
        p.read_file(FILE)
    } else {
        String::new()
    };
    let mut text: String = old
        .lines()
        .filter(|l| !l.starts_with("minimumReleaseAge:"))
        .map(|l| format!("{l}\n"))
        .collect();
    text.push_str("minimumReleaseAge: 0\n");
    p.write_file(FILE, &text);
}

/// One row of the floor table.
pub(crate) struct Row {
    pub name: String,
    pub median: Duration,
    pub to_client: u64,
}

/// Time to move `bytes` over the shaped link, plus the request's round trip.
pub(crate) fn transfer(shape: &Shape, bytes: u64) -> Duration {
    shape.serialisation(usize::try_from(bytes).unwrap_or(usize::MAX)) + shape.latency * 2
}

/// Prints the floor table and returns it as JSON rows.
pub(crate) fn report(shape: &Shape, link: &[Duration], rows: &[Row]) -> serde_json::Value {
    if link.is_empty() {
        return serde_json::Value::Null;
    }
    let link_med = crate::median(link);
    let (lo, hi) = (
        link.iter().min().copied().unwrap_or_default(),
        link.iter().max().copied().unwrap_or_default(),
    );
    println!(
        "\nFloor: link only (pnpm install --offline --frozen-lockfile, full store) median {} ms \
         (min {}, max {}, {} runs); transfer = bytes to client at the shaped rate + 1 RTT\n",
        link_med.as_millis(),
        lo.as_millis(),
        hi.as_millis(),
        link.len()
    );
    println!("| target | server cache | client store | lockfile | median | transfer | floor (link + transfer) | gap | median / floor |");
    println!("| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: |");
    let mut json = Vec::new();
    for r in rows {
        let t = transfer(shape, r.to_client);
        let floor = link_med + t;
        let gap = r.median.as_millis() as i128 - floor.as_millis() as i128;
        let ratio = r.median.as_secs_f64() / floor.as_secs_f64().max(1e-9);
        println!(
            "| {} | {} ms | {} ms | {} ms | {gap} ms | {ratio:.2}x |",
            r.name,
            r.median.as_millis(),
            t.as_millis(),
            floor.as_millis()
        );
        json.push(serde_json::json!({
            "scenario": r.name, "median_ms": r.median.as_millis() as u64,
            "transfer_ms": t.as_millis() as u64, "floor_ms": floor.as_millis() as u64,
            "gap_ms": gap as i64, "ratio": ratio,
        }));
    }
    serde_json::json!({
        "link_only_ms": link.iter().map(|d| d.as_millis() as u64).collect::<Vec<_>>(),
        "link_only_median_ms": link_med.as_millis() as u64,
        "rows": json,
    })
}
