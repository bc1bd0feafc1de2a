//! `login-storm` mode: `/-/ping` latency while 8 clients send bad `Basic`
//! passwords to a release pnpr (issue 9, class 6; goal: p50 < 10 ms).
//!
//! Three scenarios on one server each: no attack (baseline); the default
//! login limits (10 per user, 50 per address per 5 minutes: after the
//! budget every guess is a 429 that runs no hash); and limits so high that
//! every guess runs bcrypt (what is measured is then only that hashing stays
//! off the request workers). Every loop is bounded: each attacker sends
//! exactly `requests` requests, the prober stops when they are done.
//!
//! Invariant guarded: a figure is only printed if every attacker response
//! was a refusal (401/429/503) and every ping answered 200.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use pnpr_e2e::{Http, Pnpr};

use crate::{fail, release_binary};

/// Concurrent attacking clients.
const ATTACKERS: usize = 8;
/// Pause between two pings of the prober.
const PING_EVERY: Duration = Duration::from_millis(10);

fn config(per_user: u32, per_address: u32) -> String {
    format!(
        "auth:\n  htpasswd:\n    file: ./htpasswd\n  rate_limit:\n    per_user: {per_user}\n    per_address: {per_address}\n    window: 5m\nlog:\n  level: warn\n"
    )
}

struct Row {
    scenario: &'static str,
    attacks: usize,
    unauthorized: usize,
    throttled: usize,
    busy: usize,
    pings: Vec<Duration>,
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// Budgets so high that no guess is ever refused by the limiter.
const UNLIMITED: (u32, u32) = (1_000_000, 1_000_000);

/// One server, `ATTACKERS` clients sending `requests` bad passwords each (0:
/// the no-attack baseline), and a prober pinging meanwhile.
async fn scenario(name: &'static str, limits: (u32, u32), requests: usize) -> Row {
    let (per_user, per_address) = limits;
    let pnpr = Pnpr::try_start_with(&release_binary(), &config(per_user, per_address), &[])
        .unwrap_or_else(|f| fail(&format!("pnpr did not start: {}\n{}", f.reason, f.logs)));
    let setup = Http::new();
    let r = setup
        .put_json(
            &format!("{}-/user/org.couchdb.user:alice", pnpr.url),
            &serde_json::json!({"name": "alice", "password": "alice-pw"}),
            None,
        )
        .await;
    if r.status != 201 {
        fail(&format!("registration failed: {} {}", r.status, r.text()));
    }

    let done = Arc::new(AtomicBool::new(false));
    let attackers = spawn_attackers(&pnpr.url, requests);
    let prober = spawn_prober(&pnpr.url, Arc::clone(&done), attackers.is_empty());
    let mut row = Row {
        scenario: name,
        attacks: 0,
        unauthorized: 0,
        throttled: 0,
        busy: 0,
        pings: Vec::new(),
    };
    for a in attackers {
        for status in a.await.unwrap_or_else(|e| fail(&format!("attacker: {e}"))) {
            row.attacks += 1;
            match status {
                401 => row.unauthorized += 1,
                429 => row.throttled += 1,
                503 => row.busy += 1,
                other => fail(&format!("a bad password was answered {other}")),
            }
        }
    }
    done.store(true, Ordering::Relaxed);
    row.pings = prober
        .await
        .unwrap_or_else(|e| fail(&format!("prober: {e}")));
    row.pings.sort();
    row
}

/// `ATTACKERS` clients, each sending `requests` distinct bad passwords for
/// alice (none when `requests` is 0); each yields the statuses it saw.
fn spawn_attackers(base: &str, requests: usize) -> Vec<tokio::task::JoinHandle<Vec<u16>>> {
    if requests == 0 {
        return Vec::new();
    }
    (0..ATTACKERS)
        .map(|c| {
            let url = format!("{base}-/whoami");
            let http = Http::new();
            tokio::spawn(async move {
                let mut statuses = Vec::with_capacity(requests);
                for i in 0..requests {
                    let cred = base64::engine::general_purpose::STANDARD
                        .encode(format!("alice:bad-{c}-{i}"));
                    let auth = format!("Basic {cred}");
                    let r = http
                        .send("GET", &url, &[("authorization", &auth)], None)
                        .await;
                    statuses.push(r.status);
                }
                statuses
            })
        })
        .collect()
}

/// Pings every `PING_EVERY`: a fixed 300 times for the baseline, otherwise
/// until `done` (set once the attackers finish, so bounded by them).
fn spawn_prober(
    base: &str,
    done: Arc<AtomicBool>,
    baseline: bool,
) -> tokio::task::JoinHandle<Vec<Duration>> {
    let url = format!("{base}-/ping");
    tokio::spawn(async move {
        let http = Http::new();
        let mut samples = Vec::new();
        while if baseline {
            samples.len() < 300
        } else {
            !done.load(Ordering::Relaxed)
        } {
            let started = Instant::now();
            let r = http.get(&url).await;
            if r.status != 200 {
                fail(&format!("ping answered {}", r.status));
            }
            samples.push(started.elapsed());
            tokio::time::sleep(PING_EVERY).await;
        }
        samples
    })
}

/// Runs the three scenarios and prints a markdown table plus JSON.
pub(crate) fn run(requests: usize) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail(&format!("tokio runtime: {e}")));
    let rows = rt.block_on(async {
        vec![
            scenario("no attack", UNLIMITED, 0).await,
            scenario(
                "8 clients, default limits (10/user, 50/address per 5m)",
                (10, 50),
                requests,
            )
            .await,
            scenario(
                "8 clients, limits off (every guess hashes)",
                UNLIMITED,
                requests,
            )
            .await,
        ]
    });
    println!("| scenario | bad-password requests | 401 | 429 | 503 | ping p50 | ping p95 | ping max | pings |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    let mut json = Vec::new();
    for r in &rows {
        let (p50, p95) = (pct(&r.pings, 0.5), pct(&r.pings, 0.95));
        let max = r.pings.last().copied().unwrap_or_default();
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.scenario,
            r.attacks,
            r.unauthorized,
            r.throttled,
            r.busy,
            ms(p50),
            ms(p95),
            ms(max),
            r.pings.len()
        );
        json.push(serde_json::json!({
            "scenario": r.scenario, "attacks": r.attacks, "unauthorized": r.unauthorized,
            "throttled": r.throttled, "busy": r.busy,
            "ping_p50_ms": p50.as_secs_f64() * 1000.0, "ping_p95_ms": p95.as_secs_f64() * 1000.0,
            "ping_max_ms": max.as_secs_f64() * 1000.0, "pings": r.pings.len(),
        }));
    }
    println!("\n{}", serde_json::Value::Array(json));
}
