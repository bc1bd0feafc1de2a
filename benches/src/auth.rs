//! Warm `/v1/install` latency, anonymous vs authenticated (issue: auth-aware
//! resolution cache). Talks raw HTTP to a release pnpr in front of
//! registry-mock; every request is a full install request of the same
//! project, with a client store that already has every package (so the
//! figure is resolution + diff, not file transfer) and with an empty store.

use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use pnpr_e2e::{Http, Pnpr, RegistryMock};

use crate::median;

fn config(mock: &RegistryMock, token: &str) -> String {
    format!(
        "auth:\n  htpasswd:\n    file: ./htpasswd\nsecret: 0123456789abcdef0123456789abcdef\ngroups:\n  team: [alice]\nuplinks:\n  mock:\n    url: {u}\n    maxage: 1h\n  corp:\n    url: {u}\n    maxage: 1h\n    access: team\n    auth:\n      type: bearer\n      token: {token}\npackages:\n  '**':\n    access: $all\n    publish: $authenticated\n    proxy: mock\nlog:\n  level: warn\n",
        u = mock.url
    )
}

async fn post(
    url: &str,
    registry: &str,
    deps: &serde_json::Value,
    have: &[String],
    token: Option<&str>,
) -> (Duration, serde_json::Value, String) {
    let body = serde_json::json!({
        "projects": [{"dir": ".", "dependencies": deps}],
        "registry": registry, "authHeaders": {}, "nodeVersion": "22.23.3", "os": "linux", "arch": "x64",
        "minimumReleaseAge": 1440, "storeIntegrities": have, "inlineFiles": true
    });
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("content-type", "application/json")];
    if let Some(a) = auth.as_deref() {
        headers.push(("authorization", a));
    }
    let started = Instant::now();
    let r = Http::raw()
        .send(
            "POST",
            &format!("{url}v1/install"),
            &headers,
            Some(body.to_string().into_bytes()),
        )
        .await;
    let elapsed = started.elapsed();
    if r.status != 200 {
        eprintln!("install failed: {} {}", r.status, r.text());
        std::process::exit(1);
    }
    let mut raw = Vec::new();
    flate2::read::MultiGzDecoder::new(&r.body[..])
        .read_to_end(&mut raw)
        .expect("gzip");
    let len = u32::from_be_bytes(raw[..4].try_into().expect("len")) as usize;
    let header: serde_json::Value = serde_json::from_slice(&raw[4..4 + len]).expect("header");
    let resolution = r.header("x-pnpr-resolution").unwrap_or("?").to_string();
    (elapsed, header, resolution)
}

fn all_integrities(header: &serde_json::Value) -> Vec<String> {
    header["lockfile"]["packages"]
        .as_object()
        .map(|m| {
            m.values()
                .filter_map(|p| p["resolution"]["integrity"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The registry-mock, pnpr over it, and alice's pnpr token.
async fn start_with_alice(bin: &Path) -> (RegistryMock, Pnpr, String) {
    let mock = RegistryMock::start();
    let token = mock.login("foo", "bar").await;
    let pnpr = Pnpr::try_start_with(bin, &config(&mock, &token), &[]).unwrap_or_else(|f| {
        eprintln!("pnpr did not start: {}\n{}", f.reason, f.logs);
        std::process::exit(1);
    });
    let r = Http::new()
        .put_json(
            &format!("{}-/user/org.couchdb.user:alice", pnpr.url),
            &serde_json::json!({"name": "alice", "password": "alice-pw"}),
            None,
        )
        .await;
    let alice = r.json()["token"].as_str().expect("token").to_string();
    (mock, pnpr, alice)
}

/// One measured request shape: name, registry, dependencies, warm store, token.
type Case<'a> = (
    String,
    &'a str,
    &'a serde_json::Value,
    bool,
    Option<&'a str>,
);

pub(crate) fn run(bin: &Path, project: &Path, runs: usize) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let (_mock, pnpr, alice) = start_with_alice(bin).await;
        let pkg: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(project.join("package.json")).expect("package.json"),
        )
        .expect("json");
        let public = pkg["dependencies"].clone();
        let mut mixed = public.clone();
        mixed["@private/foo"] = serde_json::Value::from("*");
        let corp = format!("{}~corp/", pnpr.url);

        // Warm the server (metadata, tarballs, files, candidates).
        let (_, h_pub, _) = post(&pnpr.url, &pnpr.url, &public, &[], None).await;
        let (_, h_mix, _) = post(&pnpr.url, &corp, &mixed, &[], Some(&alice)).await;
        let have_pub = all_integrities(&h_pub);
        let have_mix = all_integrities(&h_mix);

        // (who, tree, registry, dependencies, token) × warm/empty store:
        // warm cases first, so samples[0] and [1] are the two warm public rows.
        let trees: [(&str, &str, &str, &serde_json::Value, Option<&str>); 3] = [
            ("anonymous", "public tree", &pnpr.url, &public, None),
            (
                "authenticated",
                "public tree",
                &pnpr.url,
                &public,
                Some(&alice),
            ),
            (
                "authenticated",
                "mixed tree via ~corp",
                &corp,
                &mixed,
                Some(&alice),
            ),
        ];
        let cases: Vec<Case> = [true, false]
            .into_iter()
            .flat_map(|warm| {
                trees
                    .iter()
                    .map(move |&(who, tree, registry, deps, token)| {
                        let store = if warm { "warm store" } else { "empty store" };
                        (
                            format!("{who}, {tree}, {store}"),
                            registry,
                            deps,
                            warm,
                            token,
                        )
                    })
            })
            .collect();
        let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); cases.len()];
        let mut hits = vec![0usize; cases.len()];
        for _ in 0..runs {
            for (i, (_, registry, deps, warm, token)) in cases.iter().enumerate() {
                let have: &[String] = match (warm, *registry == corp.as_str()) {
                    (false, _) => &[],
                    (true, true) => &have_mix,
                    (true, false) => &have_pub,
                };
                let (t, _, res) = post(&pnpr.url, registry, deps, have, *token).await;
                if res == "cached" {
                    hits[i] += 1;
                }
                samples[i].push(t);
            }
        }
        let names: Vec<&str> = cases.iter().map(|c| c.0.as_str()).collect();
        print_table(&names, &samples, &hits);
        let ratio = median(&samples[1]).as_secs_f64() / median(&samples[0]).as_secs_f64();
        println!("\nauthenticated / anonymous (public tree, warm store): {ratio:.2}x");
    });
}

/// The markdown table (median/min/max/cache hits per case) and its JSON.
fn print_table(names: &[&str], samples: &[Vec<Duration>], hits: &[usize]) {
    println!("| /v1/install (warm server) | median | min | max | cache hits |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    let mut json = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let s = &samples[i];
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let min = s.iter().min().copied().unwrap_or_default();
        let max = s.iter().max().copied().unwrap_or_default();
        let med = median(s);
        println!(
            "| {name} | {:.1} ms | {:.1} ms | {:.1} ms | {}/{} |",
            ms(med),
            ms(min),
            ms(max),
            hits[i],
            s.len()
        );
        json.push(serde_json::json!({"case": name, "median_ms": ms(med),
            "min_ms": ms(min), "max_ms": ms(max), "cache_hits": hits[i], "runs": s.len()}));
    }
    println!("\n{}", serde_json::Value::Array(json));
}
