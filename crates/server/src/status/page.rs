//! The status page's HTML: one self-contained document (inline CSS, no
//! script), every dynamic value escaped with `html-escape`.
//!
//! Invariant: nothing but the [`StatusView`] reaches the document, and
//! every value from it passes [`esc`] (numbers included, for uniformity).

use std::fmt::Write;

use super::StatusView;

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#111;background:#fff}\
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:22px 0 6px}\
table{border-collapse:collapse;min-width:420px}td,th{border:1px solid #bbb;padding:4px 10px;text-align:left}\
th{background:#e8eef7}.open{color:#b00;font-weight:bold}.closed{color:#070}.muted{color:#666}";

fn esc(s: &str) -> String {
    html_escape::encode_text(s).into_owned()
}

/// `2026-12-01T22:51:10Z`, or `-` for a time that does not convert.
fn when(ms: i64) -> String {
    u64::try_from(ms)
        .ok()
        .map(|ms| std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms))
        .map_or_else(
            || "-".to_string(),
            |t| humantime::format_rfc3339_seconds(t).to_string(),
        )
}

fn bytes(n: u64) -> String {
    const UNITS: &[&str] = &["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

pub(super) fn render(v: &StatusView) -> String {
    let mut out = String::with_capacity(8 * 1024);
    let _ = write!(
        out,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>pnpr status</title><style>{STYLE}</style></head><body>\
         <h1>pnpr status</h1><p class=\"muted\">version {} &middot; generated {}</p>",
        esc(v.version),
        esc(&when(v.now_ms))
    );
    requests(&mut out, v);
    uplinks(&mut out, v);
    stores(&mut out, v);
    caches(&mut out, v);
    errors(&mut out, v);
    out.push_str("</body></html>");
    out
}

fn requests(out: &mut String, v: &StatusView) {
    let _ = write!(
        out,
        "<h2>Requests</h2><p>Answered since start: <b id=\"requests-total\">{}</b></p>\
         <table><tr><th>Route class</th><th>Requests</th></tr>",
        v.recent.requests_total()
    );
    for (class, n) in &v.recent.requests {
        let class = esc(class);
        let _ = write!(
            out,
            "<tr><td>{class}</td><td id=\"requests-{class}\">{n}</td></tr>"
        );
    }
    out.push_str("</table>");
}

fn uplinks(out: &mut String, v: &StatusView) {
    out.push_str(
        "<h2>Uplinks</h2><table><tr><th>Uplink</th><th>Origin</th><th>Breaker</th>\
         <th>Last failure</th></tr>",
    );
    for u in &v.uplinks {
        let (class, state) = if u.breaker_open {
            ("open", "open")
        } else {
            ("closed", "closed")
        };
        let last = u.last_error.as_ref().map_or_else(
            || "none".to_string(),
            |e| format!("{} at {}", e.outcome, when(e.at_ms)),
        );
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td class=\"{class}\">{state}</td><td>{}</td></tr>",
            esc(&u.name),
            esc(&u.origin),
            esc(&last)
        );
    }
    if v.uplinks.is_empty() {
        out.push_str("<tr><td colspan=\"4\" class=\"muted\">no uplink configured</td></tr>");
    }
    out.push_str("</table>");
}

fn stores(out: &mut String, v: &StatusView) {
    let evictable = ["tarballs", "files", "frames"];
    let used: u64 = v
        .stores
        .iter()
        .filter(|u| evictable.contains(&u.store))
        .map(|u| u.bytes)
        .sum();
    let budget = v.budget.map_or_else(
        || "none (cache_max_size unset)".to_string(),
        |b| {
            format!(
                "{} of {} ({:.0}%)",
                bytes(used),
                bytes(b),
                used as f64 * 100.0 / b as f64
            )
        },
    );
    let _ = write!(
        out,
        "<h2>Stores</h2><p>Cache budget: <span id=\"budget\">{}</span></p>\
         <table><tr><th>Store</th><th>Bytes</th><th>Objects</th><th>Evicted</th></tr>",
        esc(&budget)
    );
    for u in &v.stores {
        let evicted = v
            .recent
            .evicted
            .get(u.store)
            .map_or_else(|| "-".to_string(), |(n, b)| format!("{n} ({})", bytes(*b)));
        let _ = write!(
            out,
            "<tr><td>{}</td><td id=\"store-{}\">{}</td><td>{}</td><td>{}</td></tr>",
            esc(u.store),
            esc(u.store),
            esc(&bytes(u.bytes)),
            u.objects,
            esc(&evicted)
        );
    }
    out.push_str("</table>");
}

fn caches(out: &mut String, v: &StatusView) {
    out.push_str(
        "<h2>Cache hit ratios</h2><table><tr><th>Cache</th><th>Hit ratio</th><th>Lookups</th></tr>",
    );
    for cache in ["tarball", "packument", "resolution"] {
        let lookups: u64 = v
            .recent
            .lookups
            .iter()
            .filter(|((c, _), _)| *c == cache)
            .map(|(_, n)| n)
            .sum();
        let ratio = v
            .recent
            .hit_ratio(cache)
            .map_or_else(|| "-".to_string(), |r| format!("{:.0}%", r * 100.0));
        let _ = write!(
            out,
            "<tr><td>{cache}</td><td id=\"hits-{cache}\">{}</td><td>{lookups}</td></tr>",
            esc(&ratio)
        );
    }
    out.push_str("</table>");
}

fn errors(out: &mut String, v: &StatusView) {
    let _ = write!(
        out,
        "<h2>Recent errors</h2><p class=\"muted\">the last {} error responses, newest first</p>\
         <table><tr><th>Time</th><th>Status</th><th>Route class</th><th>Request id</th></tr>",
        crate::recent::ERRORS_KEPT
    );
    for e in &v.recent.errors {
        let _ = write!(
            out,
            "<tr class=\"error\"><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
            esc(&when(e.at_ms)),
            e.status,
            esc(e.class),
            esc(&e.request_id)
        );
    }
    if v.recent.errors.is_empty() {
        out.push_str("<tr><td colspan=\"4\" class=\"muted\">none</td></tr>");
    }
    out.push_str("</table>");
}
