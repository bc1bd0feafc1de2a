//! The secure default for a network-exposed server.
//!
//! Invariant guarded: a server reachable from other hosts never runs with open
//! self-registration by accident. Open registration is the embedded default only on
//! loopback; anywhere else the operator must have chosen `auth.htpasswd.max_users`.

use std::net::{IpAddr, SocketAddr};

use crate::{Config, ConfigError};

#[cfg(test)]
mod tests;

impl Config {
    /// The secure default for a network-exposed server: open self-registration is the
    /// default only while `listen` is a loopback address. On any other address
    /// (including `0.0.0.0`/`::`) the config must say how registration works
    /// (`auth.htpasswd.max_users`), or startup stops with this error.
    pub fn check_exposure(&self, listen: SocketAddr) -> Result<(), ConfigError> {
        let explicit = self.auth.htpasswd.as_ref().is_some_and(|h| h.max_users_set);
        if explicit || is_loopback(listen.ip()) {
            return Ok(());
        }
        Err(ConfigError::invalid(
            "auth.htpasswd.max_users",
            format!(
                "must be set explicitly when listening on {listen}, which is not a loopback \
                 address (open registration is only the default on loopback): set it to -1 to \
                 disable self-registration, to a number to cap the user count, or to infinity \
                 to keep registration open"
            ),
        ))
    }
}

/// Loopback, including IPv4 loopback written as an IPv4-mapped IPv6 address.
fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}
