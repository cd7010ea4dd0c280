//! ersatz: an emulator of the EC2 instance metadata service (IMDS), for
//! workstations, tests and daemons off EC2. This crate is the `ersatz`
//! binary and a library that runs the same server inside a test suite:
//! start with [`Server::builder`].
//!
//! # The request path
//!
//! One direction, no back and forth; each step is its own module:
//!
//! ```text
//! listener     hyper HTTP/1, per-client connection share, panics → 500
//!  → guard     Host allow-list, absolute-form URIs, X-Forwarded-For on PUT
//!  → session   IMDSv2 token PUT and check, the IMDSv1 policy
//!  → normalise version prefix (latest | 1.0 | dated) → one tree; // and / folded
//!  → router    longest-prefix match over mounts → a provider
//!  → provider  static tree, iam, identity, events, or a WebAssembly plugin
//!  → encoder   IMDS bodies, listings, statuses, `Server: EC2ws`
//!  → access log, tracing span and metrics
//! ```
//!
//! The admin API (roles, bootstrap, events, reload, metrics) is a second
//! listener. Both are built from a configuration that is checked whole
//! before anything binds, and rebuilt on reload.
//!
//! # Layers
//!
//! Modules import only their own layer and those below it (checked by a
//! test): the CLI and this library's [`embedded`] front door; the server
//! that wires the parts; the listeners; the request steps; the answers
//! (providers, plugins, credentials); facts and rules (configuration,
//! instance, state); leaves (secrets, time formats, metrics).

#![warn(missing_docs)]

mod access_log;
mod awsjson;
mod changes;
mod client;
mod credentials;
mod fault;
mod flavour;
mod gate;
mod hex;
mod imds;
mod journal;
mod metrics;
mod secret;
mod server;
mod state;
mod timefmt;

// Reachable for our own binary, tests and benchmarks; not the library's API.
#[doc(hidden)]
pub mod admin;
#[doc(hidden)]
pub mod cli;
#[doc(hidden)]
pub mod config;
#[doc(hidden)]
pub mod encoder;
#[doc(hidden)]
pub mod guard;
#[doc(hidden)]
pub mod instance;
#[doc(hidden)]
pub mod listener;
#[doc(hidden)]
pub mod normalise;
#[cfg(feature = "plugins")]
#[doc(hidden)]
pub mod plugin;
#[cfg(not(feature = "plugins"))]
#[path = "plugin/absent.rs"]
mod plugin;
#[doc(hidden)]
pub mod provider;
#[doc(hidden)]
pub mod router;
#[doc(hidden)]
pub mod session;
#[doc(hidden)]
pub mod snapshot;

pub mod embedded;

/// The HTTPS client ersatz gives the AWS SDK, for our tests' SDK clients
/// (the SDK is built without a default one).
#[doc(hidden)]
pub use credentials::https::client as sdk_http_client;

pub use config::ConfigError;
pub use embedded::{Builder, Error, Handle, Server};
