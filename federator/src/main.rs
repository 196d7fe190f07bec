//! `pga-federator`: see [`pga_federator::cmd`].

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    pga_federator::cmd::main(pga_federator::cmd::Cli::parse())
}
