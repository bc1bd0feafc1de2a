//! End-to-end test harness for pnpr: starts the real peers (the registry-mock
//! fixture registry on Verdaccio, the pnpr binary) on 127.0.0.1 and drives real
//! clients (npm 11, pnpm 11.5.2, pnpm 12) against them from throwaway projects.
//!
//! Invariant guarded: every process a test starts is owned by a guard that
//! kills and reaps it on drop, every wait is bounded, and nothing a test runs
//! inherits the developer's environment (proxy variables, npm/pnpm user
//! config) or listens anywhere but loopback.
//!
//! The harness panics with a descriptive message instead of returning errors:
//! a harness failure is a test failure, and the message is the report.

pub mod deps;
pub mod fixtures;
pub mod http;
pub mod install;
pub mod net;
pub mod parity;
pub mod pnpr;
pub mod postgres;
pub mod proc;
pub mod project;
pub mod publish;
pub mod registry_mock;
pub mod s3;
pub mod verdaccio;

pub use deps::Deps;
pub use http::{Http, Response};
pub use install::{install_body, post_install, InstallAnswer};
pub use net::free_port;
pub use pnpr::{add_user, Pnpr, StartFailure};
pub use proc::Output;
pub use project::Project;
pub use publish::publish;
pub use registry_mock::RegistryMock;
