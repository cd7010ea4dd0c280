//! `ersatz config check|show`: a configuration as `serve` would take it,
//! without serving or writing anything.

use clap::Subcommand;

use super::serve::ConfigArgs;
use super::{runtime, Failure};
use crate::config;
use crate::server::{App, Keys};

#[derive(Subcommand)]
pub enum ConfigCommand {
    /// Load and check a configuration as `serve` would, without serving
    /// (and without writing anything).
    Check(ConfigArgs),
    /// Print the merged configuration, one key per line with the layer
    /// that set it (defaults, file, variable, flag); secrets redacted.
    Show(ConfigArgs),
}

impl ConfigCommand {
    pub fn run(self) -> Result<(), Failure> {
        match self {
            Self::Show(args) => {
                print!("{}", args.load()?.show());
                Ok(())
            }
            Self::Check(args) => check(&args),
        }
    }
}

fn check(args: &ConfigArgs) -> Result<(), Failure> {
    let loaded = args.load()?;
    runtime().block_on(App::build(&loaded, Keys::ephemeral(&loaded)))?;
    let mut shown = args
        .config
        .as_ref()
        .map_or("embedded defaults".into(), |c| c.display().to_string());
    let variables = config::environment_variables();
    if !variables.is_empty() {
        shown = format!("{shown} with {}", variables.join(", "));
    }
    println!("ersatz: {shown}: configuration is valid");
    Ok(())
}
