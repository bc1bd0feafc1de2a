//! Connect-time IP guard (closes protocol §5.2's "DNS rebinding" residual).
//!
//! Invariant: pnpr never opens a connection to an address that is always
//! dangerous (link-local and cloud metadata, unspecified, multicast, broadcast,
//! reserved, and the IPv4-mapped / NAT64 forms of those), and opens one to a
//! private or loopback address only when the operator allowed it: through
//! [`GuardPolicy::allow_private`], by writing that exact IP as a host in the
//! configuration, or by configuring `localhost` itself (loopback for that name).
//!
//! The check runs inside the resolver reqwest uses ([`GuardedResolver`]), so the
//! addresses that are checked are exactly the ones connected to; IP-literal URLs
//! bypass reqwest's resolver and are checked by the client before sending.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;

use crate::route::is_localhost;
use crate::{NameResolver, UpstreamError};

/// Operator-controlled exceptions to the private-address ban.
#[derive(Clone, Debug, Default)]
pub struct GuardPolicy {
    /// Private or loopback networks pnpr may connect to (never widens the
    /// always-refused classes).
    pub allow_private: Vec<IpNet>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IpClass {
    /// Never connectable, whatever the configuration says.
    Forbidden(&'static str),
    /// Loopback or private: connectable only when allowed.
    Restricted(&'static str),
    Public,
}

/// The embedded IPv4 address of mapped (`::ffff:a.b.c.d`) and NAT64
/// (`64:ff9b::a.b.c.d`) forms, which reach the same host as the IPv4 address.
fn embedded_v4(ip: &Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    let s = ip.segments();
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        let o = ip.octets();
        return Some(Ipv4Addr::new(o[12], o[13], o[14], o[15]));
    }
    None
}

pub(crate) fn classify_ip(ip: IpAddr) -> IpClass {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => match embedded_v4(&v6) {
            Some(v4) => classify_v4(v4),
            None => classify_v6(v6),
        },
    }
}

fn classify_v4(ip: Ipv4Addr) -> IpClass {
    let o = ip.octets();
    if o[0] == 0 {
        IpClass::Forbidden("unspecified (0.0.0.0/8)")
    } else if o[0] == 169 && o[1] == 254 {
        IpClass::Forbidden("link-local / cloud metadata")
    } else if ip.is_broadcast() {
        IpClass::Forbidden("broadcast")
    } else if ip.is_multicast() {
        IpClass::Forbidden("multicast")
    } else if o[0] >= 240 {
        IpClass::Forbidden("reserved (240.0.0.0/4)")
    } else if ip.is_loopback() {
        IpClass::Restricted("loopback")
    } else if ip.is_private() {
        IpClass::Restricted("private")
    } else if o[0] == 100 && (o[1] & 0xc0) == 64 {
        IpClass::Restricted("private (shared address space 100.64.0.0/10)")
    } else {
        IpClass::Public
    }
}

fn classify_v6(ip: Ipv6Addr) -> IpClass {
    let s = ip.segments();
    if ip.is_unspecified() {
        IpClass::Forbidden("unspecified (::)")
    } else if ip == Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x254) {
        IpClass::Forbidden("cloud metadata")
    } else if (s[0] & 0xffc0) == 0xfe80 {
        IpClass::Forbidden("link-local")
    } else if ip.is_multicast() {
        IpClass::Forbidden("multicast")
    } else if ip.is_loopback() {
        IpClass::Restricted("loopback")
    } else if (s[0] & 0xfe00) == 0xfc00 {
        IpClass::Restricted("private (unique local)")
    } else if (s[0] & 0xffc0) == 0xfec0 {
        IpClass::Restricted("private (site-local)")
    } else {
        IpClass::Public
    }
}

/// Why an address was refused; travels through reqwest's error chain so the
/// client can report [`UpstreamError::BlockedAddress`].
#[derive(Debug)]
pub(crate) struct GuardRefusal {
    pub(crate) host: String,
    pub(crate) addr: IpAddr,
    pub(crate) reason: &'static str,
}

impl std::fmt::Display for GuardRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "address {} of {} refused: {}",
            self.addr, self.host, self.reason
        )
    }
}

impl std::error::Error for GuardRefusal {}

impl From<GuardRefusal> for UpstreamError {
    fn from(r: GuardRefusal) -> Self {
        UpstreamError::BlockedAddress {
            host: r.host,
            addr: r.addr,
            reason: r.reason,
        }
    }
}

/// The compiled guard: policy plus what the route table says was configured.
#[derive(Debug)]
pub(crate) struct Guard {
    allow_private: Vec<IpNet>,
    literal_ips: HashSet<IpAddr>,
    localhost_configured: bool,
}

impl Guard {
    pub(crate) fn new(
        policy: GuardPolicy,
        literal_ips: HashSet<IpAddr>,
        localhost_configured: bool,
    ) -> Self {
        Self {
            allow_private: policy.allow_private,
            literal_ips,
            localhost_configured,
        }
    }

    /// Decide one address for `host` (a name, or the literal itself).
    pub(crate) fn check(&self, host: &str, ip: IpAddr) -> Result<(), &'static str> {
        let reason = match classify_ip(ip) {
            IpClass::Public => return Ok(()),
            IpClass::Forbidden(why) => return Err(why),
            IpClass::Restricted(why) => why,
        };
        let canonical = canonical(ip);
        // A configured literal IP vouches for itself only: a *name* that
        // resolves to it later (rebinding) is not trusted by that.
        let host_is_literal = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok();
        let allowed = self
            .allow_private
            .iter()
            .any(|net| net.contains(&ip) || net.contains(&canonical))
            || (host_is_literal
                && (self.literal_ips.contains(&ip) || self.literal_ips.contains(&canonical)))
            || (self.localhost_configured && is_localhost(host) && canonical.is_loopback());
        if allowed {
            Ok(())
        } else {
            Err(reason)
        }
    }

    /// Keep the allowed addresses; refuse the whole name if none is left.
    pub(crate) fn filter(&self, host: &str, ips: Vec<IpAddr>) -> Result<Vec<IpAddr>, GuardRefusal> {
        let mut first_refusal = None;
        let mut allowed = Vec::with_capacity(ips.len());
        for ip in ips {
            match self.check(host, ip) {
                Ok(()) => allowed.push(ip),
                Err(reason) => {
                    tracing::debug!(host, addr = %ip, reason, "connect-time guard refused address");
                    first_refusal.get_or_insert((ip, reason));
                }
            }
        }
        if allowed.is_empty() {
            let (addr, reason) =
                first_refusal.unwrap_or((IpAddr::V4(Ipv4Addr::UNSPECIFIED), "no address returned"));
            return Err(GuardRefusal {
                host: host.to_owned(),
                addr,
                reason,
            });
        }
        Ok(allowed)
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => embedded_v4(&v6).map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// reqwest's resolver: asks the [`NameResolver`], then filters through [`Guard`].
pub(crate) struct GuardedResolver {
    pub(crate) inner: Arc<dyn NameResolver>,
    pub(crate) guard: Arc<Guard>,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let inner = Arc::clone(&self.inner);
        let guard = Arc::clone(&self.guard);
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let ips = inner.lookup(&host).await?;
            let allowed = guard.filter(&host, ips)?;
            // Port 0 is replaced by the URL's port by the connector.
            let addrs: reqwest::dns::Addrs =
                Box::new(allowed.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests;
