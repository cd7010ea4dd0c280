//! `ersatz man`: the manual pages, generated from the same definitions as
//! `--help`, so the two cannot disagree.

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, CommandFactory};

use super::{Cli, Failure};

#[derive(Args)]
pub struct Man {
    /// Write ersatz.1 and a page per command (ersatz-serve.1, …) into this
    /// directory, e.g. /usr/local/share/man/man1, instead of printing
    /// ersatz.1.
    #[arg(long)]
    dir: Option<PathBuf>,
}

impl Man {
    pub fn run(self) -> Result<(), Failure> {
        let command = Cli::command();
        if let Some(dir) = &self.dir {
            return clap_mangen::generate_to(command, dir).map_err(|e| {
                Failure::Failed(format!("cannot write pages into {}: {e}", dir.display()))
            });
        }
        let mut page = Vec::new();
        clap_mangen::Man::new(command)
            .render(&mut page)
            .map_err(|e| Failure::Failed(format!("cannot render the manual page: {e}")))?;
        std::io::stdout()
            .lock()
            .write_all(&page)
            .map_err(|e| Failure::Failed(format!("cannot write the manual page: {e}")))
    }
}
