//! IP address classification for the connect-time guard.
//!
//! Invariant: every address pnpr might connect to gets exactly one class, and an
//! IPv6 address that carries an IPv4 address (mapped, IPv4-compatible,
//! IPv4-translated, NAT64, 6to4, Teredo) is never more permissive than the IPv4
//! address it carries. Otherwise `::127.0.0.1` or `64:ff9b::a9fe:a9fe` would be
//! an easy detour around a rule written for `127.0.0.1` or `169.254.169.254`.
//!
//! Decisions, and why:
//!
//! * `::ffff:a.b.c.d` (IPv4-mapped) is the same socket destination as
//!   `a.b.c.d` on a dual-stack host, so it is classified, *and allowed*, as the
//!   IPv4 address ([`unmapped`] is what allowances are matched against).
//! * `::a.b.c.d` (IPv4-compatible, deprecated), `::ffff:0:a.b.c.d`
//!   (IPv4-translated, SIIT) and the NAT64 prefixes reach the IPv4 host through
//!   some translator or tunnel. They are classified as the IPv4 address, but an
//!   allowance for the IPv4 address does not extend to them: nobody configures
//!   a registry that way, and an operator who really does can allow the IPv6
//!   form itself.
//! * `64:ff9b::/96` (well-known NAT64) carries the IPv4 address in its last 32
//!   bits. `64:ff9b:1::/48` (local-use NAT64, RFC 8215) may use any RFC 6052
//!   prefix length from /48 to /96, which moves the IPv4 bits; we cannot know
//!   the translator's choice, so every possible embedding is classified, the
//!   most restrictive wins, and the prefix as a whole counts as a private
//!   network at best.
//! * 6to4 (`2002::/16`) and Teredo (`2001::/32`) are deprecated tunnels whose
//!   traffic is sent, encapsulated, to the embedded IPv4 address(es). An
//!   embedded address that is not public makes the whole address forbidden
//!   (no allowance applies: no real registry lives behind such a tunnel);
//!   with public embedded addresses they are public.
//! * Documentation, discard-only and other never-routed ranges are forbidden:
//!   no upstream can live there, so a name resolving there is an attack or a
//!   mistake. Benchmarking and IETF special-purpose ranges are treated like
//!   private networks (labs use them), so an allowance can open them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IpClass {
    /// Never connectable, whatever the configuration says.
    Forbidden(&'static str),
    /// Loopback or private: connectable only when allowed.
    Restricted(&'static str),
    Public,
}

impl IpClass {
    /// Higher is more restrictive.
    fn rank(self) -> u8 {
        match self {
            IpClass::Public => 0,
            IpClass::Restricted(_) => 1,
            IpClass::Forbidden(_) => 2,
        }
    }

    fn stricter(self, other: IpClass) -> IpClass {
        if other.rank() > self.rank() {
            other
        } else {
            self
        }
    }
}

pub(crate) fn classify_ip(ip: IpAddr) -> IpClass {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

/// The IPv4 address an IPv4-mapped IPv6 address stands for, else `ip` itself:
/// the form allowances and configured literals are compared in.
pub(crate) fn unmapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

fn v4(o: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(o[0], o[1], o[2], o[3])
}

pub(crate) fn classify_v4(ip: Ipv4Addr) -> IpClass {
    let o = ip.octets();
    let in_net = |net: [u8; 4], bits: u32| {
        let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
        u32::from(ip) & mask == u32::from(Ipv4Addr::from(net)) & mask
    };
    if o[0] == 0 {
        IpClass::Forbidden("unspecified (0.0.0.0/8)")
    } else if in_net([169, 254, 0, 0], 16) {
        IpClass::Forbidden("link-local / cloud metadata (169.254.0.0/16)")
    } else if ip.is_broadcast() {
        IpClass::Forbidden("broadcast")
    } else if ip.is_multicast() {
        IpClass::Forbidden("multicast")
    } else if o[0] >= 240 {
        IpClass::Forbidden("reserved (240.0.0.0/4)")
    } else if in_net([192, 0, 2, 0], 24)
        || in_net([198, 51, 100, 0], 24)
        || in_net([203, 0, 113, 0], 24)
    {
        IpClass::Forbidden("documentation (TEST-NET)")
    } else if in_net([192, 88, 99, 0], 24) {
        IpClass::Forbidden("deprecated 6to4 relay anycast (192.88.99.0/24)")
    } else if ip.is_loopback() {
        IpClass::Restricted("loopback")
    } else if ip.is_private() {
        IpClass::Restricted("private")
    } else if in_net([100, 64, 0, 0], 10) {
        IpClass::Restricted("private (shared address space 100.64.0.0/10)")
    } else if in_net([192, 0, 0, 0], 24) {
        IpClass::Restricted("special-purpose (192.0.0.0/24)")
    } else if in_net([198, 18, 0, 0], 15) {
        IpClass::Restricted("benchmarking (198.18.0.0/15)")
    } else {
        IpClass::Public
    }
}

fn classify_v6(ip: Ipv6Addr) -> IpClass {
    let o = ip.octets();
    let s = ip.segments();
    if ip.is_unspecified() {
        return IpClass::Forbidden("unspecified (::)");
    }
    if ip.is_loopback() {
        return IpClass::Restricted("loopback");
    }
    if let Some(v4) = ip.to_ipv4_mapped() {
        return classify_v4(v4);
    }
    // IPv4-compatible `::a.b.c.d` (after `::` and `::1` above) and
    // IPv4-translated `::ffff:0:a.b.c.d`.
    if s[..6] == [0; 6] || s[..6] == [0, 0, 0, 0, 0xffff, 0] {
        return classify_v4(v4(&o[12..]));
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return classify_v4(v4(&o[12..]));
    }
    if s[..3] == [0x64, 0xff9b, 1] {
        return local_nat64(&o);
    }
    if s[0] == 0x2002 {
        return tunnel("6to4 address embedding a non-public IPv4", &[v4(&o[2..6])]);
    }
    if s[..2] == [0x2001, 0] {
        // Teredo: server address in clear, client address inverted.
        let client: Vec<u8> = o[12..].iter().map(|b| !b).collect();
        return tunnel(
            "Teredo address embedding a non-public IPv4",
            &[v4(&o[4..8]), v4(&client)],
        );
    }
    classify_v6_native(ip)
}

/// `64:ff9b:1::/48`: every RFC 6052 layout with a prefix of /48 or longer
/// (the u-octet, byte 8, is skipped), the most restrictive result winning over
/// a floor of "private". A reading inside 0.0.0.0/8 does not escalate: the
/// layouts a translator does not use read its zero padding, and a NAT64 never
/// forwards to "this network" anyway. The suffix bits are deliberately not
/// used to rule layouts out: translators need not check them, so an attacker
/// could set them to hide the layout that is really used.
fn local_nat64(o: &[u8; 16]) -> IpClass {
    let layouts = [
        [o[6], o[7], o[9], o[10]],    // /48
        [o[7], o[9], o[10], o[11]],   // /56
        [o[9], o[10], o[11], o[12]],  // /64
        [o[12], o[13], o[14], o[15]], // /96
    ];
    layouts.iter().filter(|l| l[0] != 0).fold(
        IpClass::Restricted("local-use NAT64 (64:ff9b:1::/48)"),
        |acc, l| acc.stricter(classify_v4(v4(l))),
    )
}

fn tunnel(why: &'static str, embedded: &[Ipv4Addr]) -> IpClass {
    if embedded.iter().all(|a| classify_v4(*a) == IpClass::Public) {
        IpClass::Public
    } else {
        IpClass::Forbidden(why)
    }
}

/// IPv6 ranges that carry no IPv4 address.
fn classify_v6_native(ip: Ipv6Addr) -> IpClass {
    let s = ip.segments();
    if ip == Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x254) {
        IpClass::Forbidden("cloud metadata")
    } else if (s[0] & 0xffc0) == 0xfe80 {
        IpClass::Forbidden("link-local")
    } else if ip.is_multicast() {
        IpClass::Forbidden("multicast")
    } else if s[..4] == [0x100, 0, 0, 0] {
        IpClass::Forbidden("discard-only (100::/64)")
    } else if s[..2] == [0x2001, 0xdb8] || (s[0] == 0x3fff && s[1] < 0x1000) {
        IpClass::Forbidden("documentation (2001:db8::/32, 3fff::/20)")
    } else if s[0] == 0x2001 && matches!(s[1] & 0xfff0, 0x10 | 0x20) {
        IpClass::Forbidden("non-routable ORCHID identifier")
    } else if s[..3] == [0x2001, 2, 0] {
        IpClass::Restricted("benchmarking (2001:2::/48)")
    } else if (s[0] & 0xfe00) == 0xfc00 {
        IpClass::Restricted("private (unique local)")
    } else if (s[0] & 0xffc0) == 0xfec0 {
        IpClass::Restricted("private (site-local)")
    } else {
        IpClass::Public
    }
}

#[cfg(test)]
mod tests;
