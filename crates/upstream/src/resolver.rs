//! The DNS seam: [`NameResolver`] and its two implementations.
//!
//! Invariant: every name pnpr connects to is answered through a `NameResolver`,
//! and every answer then passes the connect-time guard ([`crate::guard`]); a
//! resolver never decides what is safe to connect to. Injecting a resolver is how
//! tests (and `network.hosts`) pin names without touching the system.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;

use hickory_resolver::config::ResolverConfig;
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::TokioResolver;

/// Future returned by [`NameResolver::lookup`].
pub type LookupFuture<'a> = Pin<Box<dyn Future<Output = io::Result<Vec<IpAddr>>> + Send + 'a>>;

/// Turns a host name into addresses.
pub trait NameResolver: Send + Sync + 'static {
    fn lookup(&self, host: &str) -> LookupFuture<'_>;
}

/// The system resolver: `/etc/resolv.conf` and `/etc/hosts` via hickory.
pub struct SystemResolver {
    inner: TokioResolver,
}

impl SystemResolver {
    /// Reads the system configuration; if that fails (no or broken
    /// `resolv.conf`), falls back to hickory's default upstream servers so pnpr
    /// still starts. The hosts file is honoured either way.
    pub fn new() -> Self {
        let builder = TokioResolver::builder_tokio().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot read system DNS configuration; using defaults");
            TokioResolver::builder_with_config(
                ResolverConfig::default(),
                TokioConnectionProvider::default(),
            )
        });
        Self {
            inner: builder.build(),
        }
    }
}

impl Default for SystemResolver {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for SystemResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SystemResolver").finish_non_exhaustive()
    }
}

impl NameResolver for SystemResolver {
    fn lookup(&self, host: &str) -> LookupFuture<'_> {
        let host = host.to_owned();
        Box::pin(async move {
            match self.inner.lookup_ip(host.as_str()).await {
                Ok(found) => Ok(found.iter().collect()),
                Err(e) if e.is_no_records_found() || e.is_nx_domain() => Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("no address found for {host}"),
                )),
                Err(e) => Err(io::Error::other(format!("resolving {host}: {e}"))),
            }
        })
    }
}

/// Fixed answers for some names (config `network.hosts`), delegating the rest.
pub struct StaticHosts {
    map: HashMap<String, Vec<IpAddr>>,
    fallback: Arc<dyn NameResolver>,
}

impl StaticHosts {
    /// Each `(host, ip)` pair adds an address for `host`; names are matched
    /// case-insensitively and without a trailing dot.
    pub fn new(
        entries: impl IntoIterator<Item = (String, IpAddr)>,
        fallback: Arc<dyn NameResolver>,
    ) -> Self {
        let mut map: HashMap<String, Vec<IpAddr>> = HashMap::new();
        for (host, ip) in entries {
            let ips = map.entry(normalize(&host)).or_default();
            if !ips.contains(&ip) {
                ips.push(ip);
            }
        }
        Self { map, fallback }
    }
}

impl std::fmt::Debug for StaticHosts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticHosts")
            .field("map", &self.map)
            .finish_non_exhaustive()
    }
}

impl NameResolver for StaticHosts {
    fn lookup(&self, host: &str) -> LookupFuture<'_> {
        match self.map.get(&normalize(host)) {
            Some(ips) => {
                let ips = ips.clone();
                Box::pin(async move { Ok(ips) })
            }
            None => self.fallback.lookup(host),
        }
    }
}

fn normalize(host: &str) -> String {
    host.trim_end_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
mod tests;
