use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use pga_federator::cli::{Cli, Command};
use pga_federator::config::{self, has_errors, render_check};

fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        Command::FormatInfo => print(&pga_format::describe())?,
        Command::Rules { command } => {
            let (text, code) =
                pga_federator::alerting::commands::run(&command, cli.config.as_deref())?;
            print(&text)?;
            return Ok(code);
        }
        Command::CheckConfig => {
            let loaded = config::load(cli.config.as_deref())?;
            let problems = loaded.config.validate();
            print(&render_check(&loaded, &problems))?;
            if has_errors(&problems) {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Migrate | Command::Run => {
            init_tracing();
            let loaded = config::load(cli.config.as_deref())?;
            let problems = loaded.config.validate();
            for p in &problems {
                if p.is_error() {
                    tracing::error!(key = %p.key, fix = %p.fix, "{}", p.message);
                } else {
                    tracing::warn!(key = %p.key, fix = %p.fix, "{}", p.message);
                }
            }
            anyhow::ensure!(
                !has_errors(&problems),
                "{}: the configuration has errors; `pga-federator check-config` lists them",
                loaded.path.display()
            );
            let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            if matches!(cli.command, Command::Migrate) {
                let report = rt.block_on(pga_federator::run::migrate(&loaded.config))?;
                print(&format!("migrated: {report}\n"))?;
            } else {
                tracing::info!(config = %loaded.path.display(), version = env!("CARGO_PKG_VERSION"), "pga-federator starting");
                rt.block_on(pga_federator::run::run(loaded.config))?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .context("writing to standard output")
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
