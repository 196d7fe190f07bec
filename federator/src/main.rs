use std::io::Write;

use anyhow::Context;
use clap::Parser;
use pga_federator::cli::{Cli, Command};

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::FormatInfo => {
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(pga_format::describe().as_bytes())
                .and_then(|()| stdout.flush())
                .context("writing to standard output")?;
        }
    }
    Ok(())
}
