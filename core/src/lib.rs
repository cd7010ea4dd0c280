//! ersatz: an emulator of the EC2 instance metadata service (IMDS).
//!
//! A request travels, one module per step:
//! [`listener`] → [`guard`] → [`session`] → [`normalise`] → [`router`] →
//! [`provider`] → [`encoder`] → [`access_log`]; [`imds`] strings them
//! together. [`admin`] is the second listener's API; [`server`] builds both
//! from a [`config`].

pub mod access_log;
pub mod admin;
pub mod awsjson;
pub mod cli;
pub mod client;
pub mod config;
pub mod credentials;
pub mod embedded;
pub mod encoder;
pub mod guard;
pub mod hex;
pub mod imds;
pub mod instance;
pub mod listener;
pub mod metrics;
pub mod normalise;
pub mod plugin;
pub mod provider;
pub mod router;
pub mod secret;
pub mod server;
pub mod session;
pub mod snapshot;
pub mod state;
pub mod timefmt;

pub use embedded::{Builder, Error, Handle, Server};
