//! The subcommands of `pga-agent`, at the edge: they load what they need, turn errors
//! into messages and choose the exit code.

pub mod certs;
pub mod logs;
pub mod query;
pub mod run;
pub mod status;

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

use crate::cli::{Cli, Command};
use crate::config::{self, Loaded};
use crate::endpoint::{self, EndpointSettings};
use crate::store::{STORE_FILE, StoreError, StoreReader, catch_quietly};

/// Exit code for a configuration with errors.
const EXIT_CONFIG: u8 = 2;

fn env(key: &str) -> Option<String> {
    std::env::var(key).ok()
}

/// Loads the configuration the way every subcommand does: `--config`, else
/// `/etc/pganalytics/agent.toml` when it exists, else defaults; `--data-dir` wins.
pub fn load_config(cli: &Cli) -> anyhow::Result<Loaded> {
    config::load(cli.config.as_deref(), cli.data_dir.as_deref(), &env)
        .context("loading the configuration")
}

/// Opens the store of `data_dir` read-only for `query`, `series`, `status` and
/// `logs`; a damaged file is reported as [`read_store`] does.
pub fn open_store(data_dir: &Path) -> anyhow::Result<StoreReader> {
    read_store(&data_dir.join(STORE_FILE), || StoreReader::open(data_dir))
}

/// Runs `f`, a read of the store file `path`. Damage it meets, reported by redb, by
/// a checksum, or as a panic inside redb, becomes one error that names the file and
/// what to do; nothing panics through to the user.
pub fn read_store<T>(path: &Path, f: impl FnOnce() -> Result<T, StoreError>) -> anyhow::Result<T> {
    let damaged = |detail: String| {
        anyhow::anyhow!(
            "the store {} is damaged: {detail}\n  fix: restart the agent (`systemctl restart \
             pga-agent`, or stop it and start `pga-agent run`): on start it checks the store, \
             moves a damaged one aside to {}.damaged-<time> (never deleting it) and starts a \
             fresh store; the federator keeps what it already pulled. Copy the file first if \
             you want it examined.",
            path.display(),
            path.display()
        )
    };
    match catch_quietly(f) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) if e.is_damage() => Err(damaged(match e {
            StoreError::Unreadable { detail, .. } => detail,
            StoreError::Db(redb::Error::Io(io))
                if io.kind() == std::io::ErrorKind::UnexpectedEof =>
            {
                "the file ends before its data does (truncated?)".to_owned()
            }
            e => e.to_string(),
        })),
        Ok(Err(e)) => Err(anyhow::Error::new(e).context("reading the ring store")),
        Err(panic) => Err(damaged(format!("reading it failed inside redb: {panic}"))),
    }
}

/// Runs the parsed command line.
pub fn main(cli: Cli) -> anyhow::Result<ExitCode> {
    // Making certificates needs no configuration (and must work before one exists).
    if let Command::Certs(args) = &cli.command {
        return certs::certs(args);
    }
    // Offline log analysis needs no configuration either.
    if let Command::Logs(args) = &cli.command
        && !args.parse.is_empty()
    {
        return logs::logs(args);
    }
    let loaded = load_config(&cli)?;
    let data_dir = loaded.config.agent.data_dir.clone();
    match &cli.command {
        Command::Run => {
            let problems = all_problems(&loaded);
            for p in &problems {
                if p.is_error() {
                    tracing::error!(key = %p.key, fix = %p.fix, "{}", p.message);
                } else {
                    tracing::warn!(key = %p.key, fix = %p.fix, "{}", p.message);
                }
            }
            if config::has_errors(&problems) {
                eprintln!(
                    "error: the configuration has problems; `pga-agent check-config` lists them with their fixes"
                );
                return Ok(ExitCode::from(EXIT_CONFIG));
            }
            run::run(&loaded)?;
        }
        Command::CheckConfig => {
            let problems = all_problems(&loaded);
            print!("{}", config::render_check(&loaded, &problems));
            if config::has_errors(&problems) {
                return Ok(ExitCode::from(EXIT_CONFIG));
            }
        }
        Command::Query(args) => return query::query(&data_dir, args),
        Command::Series(args) => return query::series(&data_dir, args),
        Command::Status(args) => return status::status(&data_dir, &loaded.config, args),
        Command::FormatInfo => print!("{}", pga_format::describe()),
        // Handled above, before the configuration is loaded.
        Command::Certs(args) => return certs::certs(args),
        Command::Logs(args) => return logs::recent(&data_dir, args),
    }
    Ok(ExitCode::SUCCESS)
}

/// The configuration's problems and, when the `[endpoint]` table itself is sound,
/// those of its TLS files (parsed the way start-up parses them).
fn all_problems(loaded: &Loaded) -> Vec<config::Problem> {
    let mut problems = loaded.validate();
    let endpoint_ok = !problems
        .iter()
        .any(|p| p.is_error() && p.key.starts_with("endpoint."));
    if endpoint_ok && let Some(settings) = EndpointSettings::from_config(&loaded.config.endpoint) {
        let found = endpoint::check(&settings);
        // Loading a file says more than the first look at it (an unreadable key is
        // an error there, a warning here): one report per file.
        problems.retain(|p| p.is_error() || !found.iter().any(|f| f.is_error() && f.key == p.key));
        problems.extend(found);
    }
    problems
}
