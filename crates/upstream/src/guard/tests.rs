use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

fn guard(allow: &[&str], literals: &[&str], localhost: bool) -> Guard {
    Guard::new(
        GuardPolicy {
            allow_private: allow.iter().map(|n| n.parse().expect("net")).collect(),
        },
        literals.iter().map(|s| ip(s)).collect(),
        localhost,
    )
}

#[test]
fn classes() {
    for f in [
        "169.254.169.254",
        "169.254.0.1",
        "0.0.0.0",
        "0.1.2.3",
        "224.0.0.1",
        "255.255.255.255",
        "240.0.0.1",
        "fe80::1",
        "fd00:ec2::254",
        "::",
        "ff02::1",
        "::ffff:169.254.169.254",
        "::ffff:0.0.0.0",
        "64:ff9b::a9fe:a9fe",
        "::169.254.169.254",
        "::ffff:0:169.254.169.254",
        "64:ff9b:1::a9fe:a9fe",
        "2002:a9fe:a9fe::1",
        "2001:db8::1",
    ] {
        assert!(
            matches!(classify_ip(ip(f)), IpClass::Forbidden(_)),
            "{f} should be forbidden"
        );
    }
    for r in [
        "127.0.0.1",
        "127.255.0.1",
        "10.0.0.1",
        "172.16.0.1",
        "172.31.255.255",
        "192.168.0.1",
        "100.64.0.1",
        "100.127.255.255",
        "::1",
        "fc00::1",
        "fd12::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "::127.0.0.1",
        "::ffff:0:127.0.0.1",
        "64:ff9b::7f00:1",
    ] {
        assert!(
            matches!(classify_ip(ip(r)), IpClass::Restricted(_)),
            "{r} should be restricted"
        );
    }
    for p in [
        "8.8.8.8",
        "172.32.0.1",
        "100.128.0.1",
        "2606:4700::1",
        "::ffff:1.2.3.4",
    ] {
        assert_eq!(classify_ip(ip(p)), IpClass::Public, "{p}");
    }
}

#[test]
fn forbidden_is_never_allowed() {
    let g = guard(
        &["0.0.0.0/0", "::/0"],
        &["169.254.169.254", "fd00:ec2::254"],
        true,
    );
    assert!(g.check("x", ip("169.254.169.254")).is_err());
    assert!(g.check("x", ip("fd00:ec2::254")).is_err());
    assert!(g.check("localhost", ip("0.0.0.0")).is_err());
}

#[test]
fn restricted_needs_an_allowance() {
    let none = guard(&[], &[], false);
    assert!(none.check("h", ip("127.0.0.1")).is_err());
    assert!(none.check("localhost", ip("127.0.0.1")).is_err());
    assert!(none.check("h", ip("10.1.1.1")).is_err());

    let by_net = guard(&["10.0.0.0/8"], &[], false);
    assert!(by_net.check("h", ip("10.1.1.1")).is_ok());
    assert!(by_net.check("h", ip("::ffff:10.1.1.1")).is_ok());
    assert!(by_net.check("h", ip("192.168.1.1")).is_err());

    let by_literal = guard(&[], &["127.0.0.1"], false);
    assert!(by_literal.check("127.0.0.1", ip("127.0.0.1")).is_ok());
    assert!(by_literal.check("127.0.0.2", ip("127.0.0.2")).is_err());
    // A name that resolves to a configured literal is not vouched for.
    assert!(by_literal.check("h", ip("127.0.0.1")).is_err());

    let by_localhost = guard(&[], &[], true);
    assert!(by_localhost.check("localhost", ip("127.0.0.1")).is_ok());
    assert!(by_localhost.check("LOCALHOST.", ip("::1")).is_ok());
    assert!(by_localhost.check("other", ip("127.0.0.1")).is_err());
    assert!(by_localhost.check("localhost", ip("10.0.0.1")).is_err());
}

#[test]
fn filter_keeps_allowed_and_reports_refusal() {
    let g = guard(&[], &[], false);
    let kept = g
        .filter("h", vec![ip("10.0.0.1"), ip("93.184.0.1")])
        .expect("one allowed");
    assert_eq!(kept, vec![ip("93.184.0.1")]);
    let err = g
        .filter("h", vec![ip("169.254.169.254"), ip("10.0.0.1")])
        .expect_err("all refused");
    assert_eq!(err.addr, ip("169.254.169.254"));
    let e: UpstreamError = err.into();
    let text = e.to_string();
    assert!(
        text.contains("169.254.169.254") && text.contains('h'),
        "{text}"
    );
}

#[test]
fn an_ipv4_allowance_covers_the_mapped_form_only() {
    let g = guard(&["127.0.0.0/8", "169.254.0.0/16"], &[], true);
    assert!(g.check("h", ip("127.0.0.1")).is_ok());
    assert!(g.check("h", ip("::ffff:127.0.0.1")).is_ok());
    for detour in [
        "::127.0.0.1",
        "::ffff:0:127.0.0.1",
        "64:ff9b::7f00:1",
        "64:ff9b:1::7f00:1",
        "2002:7f00:1::1",
    ] {
        assert!(g.check("h", ip(detour)).is_err(), "{detour}");
        // Not loopback for a configured `localhost` either.
        assert!(g.check("localhost", ip(detour)).is_err(), "{detour}");
    }
    // Metadata stays refused in every form, allowance or not.
    for meta in [
        "169.254.169.254",
        "::ffff:169.254.169.254",
        "::ffff:0:169.254.169.254",
        "::169.254.169.254",
        "64:ff9b::a9fe:a9fe",
    ] {
        assert!(g.check("h", ip(meta)).is_err(), "{meta}");
    }
    // The IPv6 form itself can be allowed explicitly.
    let v6 = guard(&["64:ff9b::/96"], &[], false);
    assert!(v6.check("h", ip("64:ff9b::7f00:1")).is_ok());
    assert!(v6.check("h", ip("64:ff9b::a9fe:a9fe")).is_err());
}

#[test]
fn dns_answers_with_embedded_forms_are_filtered() {
    let g = guard(&["127.0.0.0/8"], &[], false);
    let kept = g
        .filter(
            "h",
            vec![ip("::127.0.0.1"), ip("64:ff9b::a9fe:a9fe"), ip("127.0.0.1")],
        )
        .expect("one allowed");
    assert_eq!(kept, vec![ip("127.0.0.1")]);
    let err = g
        .filter("h", vec![ip("::ffff:0:169.254.169.254")])
        .expect_err("refused");
    assert_eq!(err.addr, ip("::ffff:0:169.254.169.254"));
}
