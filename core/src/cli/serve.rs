//! `ersatz serve`: builds everything a configuration describes, reports any
//! mistake before binding, then serves until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;

use super::{runtime, Failure};
use crate::config::{self, Loaded, Overrides};
use crate::server::{self, App, Keys};

#[derive(Args)]
pub struct Serve {
    #[command(flatten)]
    pub config: ConfigArgs,
}

/// How `serve`, `config check` and `config show` find their configuration.
#[derive(Args)]
pub struct ConfigArgs {
    /// Configuration file: TOML, JSON or YAML, by extension, or a .fintorc.
    #[arg(long, short = 'c')]
    pub config: Option<PathBuf>,
    /// Replay this `ersatz snapshot` document instead of the `[instance]`
    /// facts (the configuration's `snapshot` key).
    #[arg(long)]
    pub snapshot: Option<PathBuf>,
    /// Address to serve metadata on (finto's -addr; default 127.0.0.1).
    #[arg(long)]
    pub addr: Option<String>,
    /// Port to serve metadata on (finto's -port; default 16925).
    #[arg(long)]
    pub port: Option<u16>,
    /// Append an access log to this file (finto's -log).
    #[arg(long)]
    pub log: Option<PathBuf>,
    /// Address of the admin API (default 127.0.0.1:8998).
    #[arg(long)]
    pub admin_addr: Option<SocketAddr>,
}

impl ConfigArgs {
    pub fn overrides(&self) -> Overrides {
        Overrides {
            addr: self.addr.clone(),
            port: self.port,
            log: self.log.clone(),
            admin_addr: self.admin_addr,
            snapshot: self.snapshot.clone(),
        }
    }

    pub fn load(&self) -> Result<Loaded, config::ConfigError> {
        config::load(self.config.as_deref(), &self.overrides())
    }
}

impl Serve {
    pub fn run(self) -> Result<(), Failure> {
        let runtime = runtime();
        let loaded = self.config.load()?;
        let keys = Keys::load(&loaded);
        let app = runtime.block_on(App::build(&loaded, keys))?;
        let (file, overrides) = (self.config.config.clone(), self.config.overrides());
        runtime
            .block_on(server::run(loaded, app, file, overrides))
            .map_err(Failure::Failed)
    }
}
