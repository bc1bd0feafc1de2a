//! `pnpr-upstream` owns the only code path in pnpr that builds outgoing HTTP
//! requests.
//!
//! Everything that could turn pnpr into a confused deputy lives here, in one place,
//! so that no other crate can reach the network by a side door:
//!
//! * [`rawurl`]: raw-string URL checks (scheme, inline credentials, dot segments)
//!   that must run before `url::Url` normalises the evidence away, and the
//!   redaction used in every error and log line;
//! * [`route`]: the route classifier and default-deny fetch allowlist (the SSRF
//!   boundary of protocol §5.1–5.2);
//! * [`guard`]: the connect-time IP guard that closes DNS rebinding and literal
//!   private addresses (protocol §5.2 "known residuals");
//! * [`resolver`]: the DNS seam ([`NameResolver`]) so tests and `network.hosts`
//!   can answer names without the system resolver;
//! * [`breaker`]: the per-uplink circuit breaker;
//! * [`client`]: [`UpstreamClient::fetch`], which attaches uplink credentials only
//!   on an exact origin match (protocol §5.3) and follows redirects by hand so
//!   every hop is re-checked.
//!
//! This crate deliberately does not depend on `pnpr-config`: it defines its own
//! inputs ([`RouteTableInput`], [`GuardPolicy`]) so the boundary can be tested on
//! its own.

pub mod breaker;
pub mod client;
pub mod error;
pub mod guard;
pub mod rawurl;
pub mod resolver;
pub mod route;

pub use client::{FetchRequest, FetchResponse, UpstreamClient};
pub use error::UpstreamError;
pub use guard::GuardPolicy;
pub use pnpr_secret::Secret;
pub use resolver::{NameResolver, StaticHosts, SystemResolver};
pub use route::{PublicRoute, RouteKind, RouteTable, RouteTableInput, UplinkRoute};
