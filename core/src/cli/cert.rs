//! `ersatz cert`: the certificate that verifies identity signatures.

use std::path::PathBuf;

use clap::Args;

use super::Failure;
use crate::config::{self, Overrides};
use crate::provider::identity::IdentityKey;
use crate::server;

#[derive(Args)]
pub struct Cert {
    /// Configuration file (for `[identity]` and `server.state_dir`).
    #[arg(long, short = 'c')]
    config: Option<PathBuf>,
}

impl Cert {
    pub fn run(self) -> Result<(), Failure> {
        let loaded = config::load(self.config.as_deref(), &Overrides::default())?;
        // No in-memory fallback: a certificate no server uses is worse
        // than an error.
        let key = IdentityKey::load(&server::identity_keys(&loaded))?;
        print!("{}", String::from_utf8_lossy(&key.certificate_pem()));
        Ok(())
    }
}
