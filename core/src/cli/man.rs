//! `ersatz man`: the manual page, generated from the same definitions as
//! `--help`, so the two cannot disagree.

use std::io::Write;

use clap::{Args, CommandFactory};

use super::{Cli, Failure};

#[derive(Args)]
pub struct Man {}

impl Man {
    pub fn run(self) -> Result<(), Failure> {
        let mut page = Vec::new();
        clap_mangen::Man::new(Cli::command())
            .render(&mut page)
            .map_err(|e| Failure::Failed(format!("cannot render the manual page: {e}")))?;
        std::io::stdout()
            .lock()
            .write_all(&page)
            .map_err(|e| Failure::Failed(format!("cannot write the manual page: {e}")))
    }
}
