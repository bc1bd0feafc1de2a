//! Connect-time IP guard (closes protocol §5.2's "DNS rebinding" residual).
//!
//! Invariant: pnpr never opens a connection to an address that is always
//! dangerous (link-local and cloud metadata, unspecified, multicast, broadcast,
//! reserved, documentation, and every IPv6 form that embeds such an IPv4
//! address: see [`class`]), and opens one to a private or loopback address only
//! when the operator allowed it: through
//! [`GuardPolicy::allow_private`], by writing that exact IP as a host in the
//! configuration, or by configuring `localhost` itself (loopback for that name).
//!
//! The check runs inside the resolver reqwest uses ([`GuardedResolver`]), so the
//! addresses that are checked are exactly the ones connected to; IP-literal URLs
//! bypass reqwest's resolver and are checked by the client before sending.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;

mod class;
use class::unmapped;
pub(crate) use class::{classify_ip, IpClass};

use crate::route::is_localhost;
use crate::{NameResolver, UpstreamError};

/// Operator-controlled exceptions to the private-address ban.
#[derive(Clone, Debug, Default)]
pub struct GuardPolicy {
    /// Private or loopback networks pnpr may connect to (never widens the
    /// always-refused classes).
    pub allow_private: Vec<IpNet>,
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
        // `::ffff:a.b.c.d` is `a.b.c.d` on the wire, so allowances written in
        // either form cover both; other embeddings (NAT64, `::a.b.c.d`, ...)
        // are matched only in their own form (see `class`).
        let canonical = unmapped(ip);
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
