//! Attack class 10 (network): IPv6 spellings of dangerous IPv4 addresses.
//!
//! The connect-time guard must classify an IPv6 address that carries an IPv4
//! address (IPv4-compatible `::a.b.c.d`, IPv4-translated `::ffff:0:a.b.c.d`,
//! NAT64 `64:ff9b::/96`) like that IPv4 address, whether the address comes
//! from a name (`network.hosts`, the injected resolver) or is written as the
//! URL host. Each attack runs against the real pnpr binary; the control shows
//! that an operator-allowed loopback upstream still works in the same server.

#[path = "fake_upstream.rs"]
mod fake_upstream;

use fake_upstream::{packument, sri, FakeUpstream, Reply};
use pnpr_e2e::{Http, Pnpr};

/// `(uplink, host as written in the uplink URL, network.hosts answer)`.
/// Names are mapped to the hostile form; the literal entry has no mapping.
const ATTACKS: &[(&str, &str, Option<&str>)] = &[
    (
        "translated",
        "meta-translated.test",
        Some("::ffff:0:169.254.169.254"),
    ),
    ("nat64", "meta-nat64.test", Some("64:ff9b::a9fe:a9fe")),
    ("compat", "loop-compat.test", Some("::127.0.0.1")),
    ("nat64loop", "loop-nat64.test", Some("64:ff9b::7f00:1")),
    ("literal", "[::ffff:0:169.254.169.254]", None),
];

fn config(port: u16) -> String {
    let mut uplinks = String::new();
    let mut hosts = String::new();
    let mut packages = String::new();
    for (name, host, answer) in
        ATTACKS
            .iter()
            .copied()
            .chain([("control", "internal.test", Some("127.0.0.1"))])
    {
        uplinks.push_str(&format!("  {name}:\n    url: http://{host}:{port}/\n"));
        if let Some(ip) = answer {
            hosts.push_str(&format!("    {host}: '{ip}'\n"));
        }
        packages.push_str(&format!(
            "  '@{name}/*':\n    access: $all\n    proxy: {name}\n"
        ));
    }
    // Loopback is allowed as an IPv4 network: that allowance must not extend
    // to the IPv6 detours above.
    format!(
        "uplinks:\n{uplinks}network:\n  hosts:\n{hosts}  allow_private: [127.0.0.0/8]\npackages:\n{packages}"
    )
}

#[tokio::test]
async fn ipv6_spellings_of_metadata_and_loopback_are_refused() {
    let up = FakeUpstream::start(|path| {
        let name = path
            .trim_start_matches('/')
            .replace("%2f", "/")
            .replace("%2F", "/");
        Reply::json(&packument(&name, "http://x/", &sri(b"x")))
    });
    let pnpr = Pnpr::start(&config(up.port), &[]);
    let http = Http::new();

    for (name, host, answer) in ATTACKS {
        let r = http.get(&format!("{}@{name}%2fpkg", pnpr.url)).await;
        assert_eq!(
            r.status,
            403,
            "{name} via {host}: {} {}",
            r.status,
            r.text()
        );
        let msg = r.json()["error"].as_str().unwrap_or_default().to_string();
        let shown = answer.unwrap_or("::ffff:0:a9fe:a9fe");
        let addr: std::net::IpAddr = shown.parse().expect("ip");
        assert!(
            msg.contains(&addr.to_string()),
            "{name}: refusal does not name {addr}: {msg}"
        );
    }
    assert_eq!(up.accepts(), 0, "a refused address reached the upstream");

    // Control: the operator-allowed IPv4 loopback name still works.
    let r = http.get(&format!("{}@control%2fpkg", pnpr.url)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["name"], "@control/pkg", "{}", r.text());
    assert!(up.accepts() >= 1);
}
