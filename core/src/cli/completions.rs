//! `ersatz completions SHELL`: a completion script for the shell.

use std::io::Write;

use clap::{Args, CommandFactory};

use super::{Cli, Failure};

#[derive(Args)]
pub struct Completions {
    shell: clap_complete::Shell,
}

impl Completions {
    pub fn run(self) -> Result<(), Failure> {
        let mut out = std::io::stdout().lock();
        clap_complete::generate(self.shell, &mut Cli::command(), "ersatz", &mut out);
        out.flush()
            .map_err(|e| Failure::Failed(format!("cannot write the script: {e}")))
    }
}
