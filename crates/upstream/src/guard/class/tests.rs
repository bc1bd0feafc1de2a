use super::*;

fn class(s: &str) -> IpClass {
    classify_ip(s.parse().expect("ip"))
}

fn forbidden(list: &[&str]) {
    for a in list {
        assert!(
            matches!(class(a), IpClass::Forbidden(_)),
            "{a} should be forbidden, is {:?}",
            class(a)
        );
    }
}

fn restricted(list: &[&str]) {
    for a in list {
        assert!(
            matches!(class(a), IpClass::Restricted(_)),
            "{a} should be restricted, is {:?}",
            class(a)
        );
    }
}

fn public(list: &[&str]) {
    for a in list {
        assert_eq!(class(a), IpClass::Public, "{a}");
    }
}

/// The IPv4 addresses every embedding is tried with, and their class.
const V4_FORBIDDEN: &[&str] = &[
    "169.254.169.254",
    "169.254.0.1",
    "0.0.0.0",
    "0.1.2.3",
    "255.255.255.255",
    "224.0.0.1",
    "239.255.255.250",
    "240.0.0.1",
    "192.0.2.1",
    "198.51.100.7",
    "203.0.113.9",
    "192.88.99.1",
];
const V4_RESTRICTED: &[&str] = &[
    "127.0.0.1",
    "127.255.0.1",
    "10.0.0.1",
    "172.16.0.1",
    "172.31.255.255",
    "192.168.0.1",
    "100.64.0.1",
    "100.127.255.255",
    "192.0.0.170",
    "198.18.0.1",
    "198.19.255.255",
];
const V4_PUBLIC: &[&str] = &["8.8.8.8", "172.32.0.1", "100.128.0.1", "198.20.0.1"];

#[test]
fn ipv4_classes() {
    forbidden(V4_FORBIDDEN);
    restricted(V4_RESTRICTED);
    public(V4_PUBLIC);
}

/// `prefix` + the IPv4 address as the last 32 bits, in hex-group form (the
/// form a resolver or `Display` may use) and dotted form where valid.
fn embed_last32(prefix: &str, v4: &str) -> Vec<String> {
    let a: Ipv4Addr = v4.parse().expect("v4");
    let o = a.octets();
    let hex = format!(
        "{prefix}{:x}:{:x}",
        u16::from_be_bytes([o[0], o[1]]),
        u16::from_be_bytes([o[2], o[3]])
    );
    vec![format!("{prefix}{v4}"), hex]
}

fn assert_embedding_follows_v4(prefix: &str) {
    for (list, want) in [(V4_FORBIDDEN, 2), (V4_RESTRICTED, 1), (V4_PUBLIC, 0)] {
        for v4 in list {
            for addr in embed_last32(prefix, v4) {
                let Ok(ip) = addr.parse::<IpAddr>() else {
                    panic!("{addr} does not parse");
                };
                let c = classify_ip(ip);
                // `::0.0.0.0` is `::` and `::0.0.0.1` is `::1`; both have
                // their own (non-public) class.
                if matches!(ip, IpAddr::V6(v6) if v6.is_unspecified() || v6.is_loopback()) {
                    assert_ne!(c, IpClass::Public, "{addr}");
                    continue;
                }
                assert_eq!(c.rank(), want, "{addr} classified {c:?}");
            }
        }
    }
}

#[test]
fn ipv4_mapped_follows_the_ipv4_address() {
    assert_embedding_follows_v4("::ffff:");
}

#[test]
fn ipv4_compatible_follows_the_ipv4_address() {
    assert_embedding_follows_v4("::");
}

#[test]
fn ipv4_translated_follows_the_ipv4_address() {
    assert_embedding_follows_v4("::ffff:0:");
}

#[test]
fn well_known_nat64_follows_the_ipv4_address() {
    assert_embedding_follows_v4("64:ff9b::");
}

#[test]
fn unspecified_and_loopback_v6_keep_their_own_class() {
    forbidden(&["::", "::0.0.0.0"]);
    restricted(&["::1", "::0.0.0.1"]);
    // Other IPv4-compatible addresses in 0.0.0.0/8.
    forbidden(&["::2", "::0.0.0.2", "::ff"]);
}

#[test]
fn local_use_nat64_checks_every_layout() {
    // /96 layout.
    forbidden(&["64:ff9b:1::a9fe:a9fe", "64:ff9b:1::169.254.169.254"]);
    restricted(&["64:ff9b:1::7f00:1"]);
    // /48 layout: bytes 6-7 and 9-10 (169.254 | 169.254).
    forbidden(&["64:ff9b:1:a9fe:a9:fe00::"]);
    // /64 layout: bytes 9-12 (127.0.0.1); the zero-padding readings of the
    // other layouts (0.x.y.z) do not escalate.
    restricted(&["64:ff9b:1:0:7f:1::"]);
    // /56 layout: bytes 7 and 9-11 (224.0.0.1, multicast).
    forbidden(&["64:ff9b:1:e0:0:1::"]);
    // /64 layout 240.0.0.1, reserved.
    forbidden(&["64:ff9b:1:0:f0:1::"]);
    // All readings public: still a private translator, never public.
    restricted(&["64:ff9b:1:808:8:808:808:808"]);
    // Outside the /48.
    public(&["64:ff9b:2::808:808"]);
}

#[test]
fn six_to_four_and_teredo_embedding_non_public_are_forbidden() {
    // 6to4: 2002:AABB:CCDD::/48.
    forbidden(&[
        "2002:a9fe:a9fe::1",
        "2002:7f00:1::1",
        "2002:a00:1::1",
        "2002:c0a8:101::",
    ]);
    public(&["2002:808:808::1"]);
    // Teredo: server in bytes 4-7, client inverted in bytes 12-15.
    forbidden(&[
        // Server 127.0.0.1.
        "2001:0:7f00:1:0:0:f7f7:f7f7",
        // Client 169.254.169.254 (inverted: 5601:5601).
        "2001:0:808:808:0:0:5601:5601",
        // Client 10.0.0.1 (inverted: f5ff:fffe).
        "2001:0:808:808::f5ff:fffe",
    ]);
    // Server 8.8.8.8, client 8.8.8.8 (inverted f7f7:f7f7).
    public(&["2001:0:808:808:0:0:f7f7:f7f7"]);
}

#[test]
fn native_ipv6_classes() {
    forbidden(&[
        "fe80::1",
        "febf::1",
        "fd00:ec2::254",
        "ff02::1",
        "ff0e::1",
        "100::1",
        "2001:db8::1",
        "3fff::1",
        "2001:10::1",
        "2001:20::1",
    ]);
    restricted(&["fc00::1", "fd12::1", "fec0::1", "2001:2::1"]);
    public(&[
        "2606:4700::1111",
        "2001:4860:4860::8888",
        "3fff:1000::1",
        "2001:30::1",
        "2001:3::1",
    ]);
}

#[test]
fn unmapped_only_strips_the_mapped_form() {
    let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
    assert_eq!(unmapped(ip("::ffff:127.0.0.1")), ip("127.0.0.1"));
    for same in [
        "::127.0.0.1",
        "::ffff:0:127.0.0.1",
        "64:ff9b::7f00:1",
        "10.0.0.1",
    ] {
        assert_eq!(unmapped(ip(same)), ip(same), "{same}");
    }
}

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// No IPv6 spelling of an IPv4 address is more permissive than it.
        #[test]
        fn embeddings_are_never_more_permissive(a in any::<u32>(), pad in any::<[u8; 2]>()) {
            let v4 = Ipv4Addr::from(a);
            let o = v4.octets();
            let want = classify_v4(v4).rank();
            let forms = [
                Ipv6Addr::from(u128::from(a) | 0xffff << 32), // mapped
                Ipv6Addr::from(u128::from(a) | 0xffff << 48), // translated
                Ipv6Addr::from(u128::from(a) | 0x64_ff9b << 96), // NAT64
            ];
            for f in forms {
                prop_assert!(classify_ip(IpAddr::V6(f)).rank() >= want, "{f} vs {v4}");
            }
            // Local-use NAT64 (/96 layout): at least private, and at least
            // the IPv4 class except for 0.0.0.0/8, which is read as padding
            // (see `local_nat64`).
            let local = Ipv6Addr::from(u128::from(a) | 0x64_ff9b_0001 << 80);
            let c = classify_ip(IpAddr::V6(local));
            let floor = if o[0] == 0 { 1 } else { want.max(1) };
            prop_assert!(c.rank() >= floor, "{local}: {c:?}");
            if a > 1 {
                let compat = Ipv6Addr::from(u128::from(a));
                prop_assert!(classify_ip(IpAddr::V6(compat)).rank() >= want, "{compat}");
            }
            // 6to4 and Teredo: anything non-public inside is forbidden.
            let six_to_four = Ipv6Addr::new(
                0x2002,
                u16::from_be_bytes([o[0], o[1]]),
                u16::from_be_bytes([o[2], o[3]]),
                u16::from_be_bytes(pad), 0, 0, 0, 1,
            );
            let teredo = Ipv6Addr::new(
                0x2001, 0, 0x0808, 0x0808, 0, u16::from_be_bytes(pad),
                !u16::from_be_bytes([o[0], o[1]]),
                !u16::from_be_bytes([o[2], o[3]]),
            );
            for f in [six_to_four, teredo] {
                let c = classify_ip(IpAddr::V6(f));
                if want > 0 {
                    prop_assert!(matches!(c, IpClass::Forbidden(_)), "{f}: {c:?}");
                } else {
                    prop_assert_eq!(c, IpClass::Public, "{}", f);
                }
            }
        }

        #[test]
        fn every_ipv6_address_classifies(bits in any::<u128>()) {
            let _ = classify_ip(IpAddr::V6(Ipv6Addr::from(bits)));
        }
    }
}
