//! The `pga-federator` command line: [`Cli`] and one module per subcommand.
//! `main.rs` parses the arguments and calls [`main`]; errors become one message
//! with its fix here ([`error_text`]), the only place besides [`crate::app`] that
//! uses `anyhow`.

mod audit;
mod check_config;
pub mod cluster;
pub mod keygen;
mod migrate;
pub mod pack;
pub mod rules;
mod run;
pub mod users;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use sqlx::PgPool;

use crate::config::{self, FederatorConfig, has_errors};
use crate::db::audit::{Actor, Origin};

const ABOUT: &str = "pgAnalytics v3 federator: pulls metrics from agents into PostgreSQL";

const LONG_ABOUT: &str = "\
pgAnalytics v3 federator: the central puller.

pga-federator pulls sealed blocks of samples and log events from every pga-agent on a \
schedule over mutually authenticated TLS, backfills whatever it missed while an agent \
or the network was down, and writes raw samples and rollups into PostgreSQL \
(TimescaleDB when installed) for alerting and Grafana. Each agent's position (its \
cursor) is kept in the database and advanced in the same transaction as the data it \
covers, so a restart of anything loses and doubles nothing; data an agent evicted \
before it was pulled is recorded as a gap.

Configuration comes from --config FILE, else /etc/pganalytics/federator.toml. \
`pga-federator check-config` shows the effective configuration and every problem, \
each with its key and the fix.

With [api] listen set, the federator also serves its HTTP API under /api/v1 \
(HTTPS; OpenAPI at /api/v1/openapi.json): accounts with the roles admin, user and \
viewer, JWT and API tokens, the agent fleet (agents added there are pulled without a \
restart), the inventory, series and queries, and a hash-chained audit log. There is \
no default password: `pga-federator users add NAME --role admin` makes the first \
admin.

Alerting: rules (the built-in PostgreSQL pack in /usr/share/pganalytics/rules and your \
own rule files) are evaluated for each agent at its data watermark, so data that \
arrives late by backfill is evaluated in order and incidents found there are notified \
as late alerts; notifications go to Alertmanagers and signed webhooks through a \
durable outbox. `pga-federator rules test` runs rule files' tests.";

const AFTER_HELP: &str = "\
Examples:
  pga-federator check-config --config federator.toml   validate a configuration
  pga-federator migrate                                create or upgrade the database schema
  pga-federator pack                                   pack raw samples stored as rows (online)
  pga-federator run                                    pull every agent until stopped
  pga-federator rules test my-rules.toml               run a rule file's tests
  pga-federator rules check                            check the configured rule files
  curl -s http://127.0.0.1:9188/metrics                the federator's own metrics
  pga-federator keygen --out /etc/pganalytics/api-jwt.key   the API's token-signing key
  pga-federator users add alice --role admin           the first admin (password printed once)
  pga-federator audit verify                           check the audit log's hash chain
  pga-federator cluster status                         the replicas and who pulls which agent
  pga-agent certs dev --out ./tls                      a development CA and mTLS certificates

Environment: RUST_LOG (e.g. RUST_LOG=debug) sets the log detail; logs go to standard error.";

/// Command-line arguments of `pga-federator`.
#[derive(Debug, Parser)]
#[command(
    name = "pga-federator",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_help = AFTER_HELP,
    arg_required_else_help = true
)]
pub struct Cli {
    /// Configuration file [default: /etc/pganalytics/federator.toml]
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

/// What `pga-federator` is asked to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Pull every configured agent on its schedule until stopped (SIGINT or SIGTERM).
    ///
    /// Checks the schema first (pending migrations applied when the role may;
    /// TimescaleDB's state and policies read, never changed), then runs the scrape
    /// scheduler, the retention job and the self-metrics listener ([metrics] listen).
    Run,
    /// Validate the configuration and show the effective values and every problem.
    ///
    /// Exits 0 when the federator would start (warnings allowed), 1 otherwise.
    /// Reads the certificate and password files; does not connect anywhere.
    CheckConfig,
    /// Create or upgrade the central database schema, then exit.
    ///
    /// Run it as the schema owner role: it applies the migrations, converts the
    /// time-series tables to TimescaleDB hypertables where the extension is created
    /// in the database, and sets their compression and retention policies.
    Migrate,
    /// Pack raw samples stored as rows into the packed layout (plain PostgreSQL):
    /// the migration of a database filled before packing. Online and resumable.
    ///
    /// On plain PostgreSQL the federator stores sealed raw samples packed: one row
    /// per series per window (samples_packed, sample_times) instead of one row per
    /// sample, about ten times smaller. Samples still stored as rows (a database
    /// filled by an earlier version, batches the ingest wrote as rows) are moved
    /// here, agent by agent, oldest hour first, one transaction per batch (one
    /// agent, one clock hour, at most --max-rows-per-batch rows). Nothing is lost or
    /// doubled: a batch is all or nothing, and it locks only its agent's row, which
    /// the agent's ingest waits for (an agent being ingested is skipped and tried
    /// again). Dashboards, the API and alerting read both forms all along.
    ///
    /// Run it while `pga-federator run` runs; interrupt it any time (the batch in
    /// flight rolls back) and run it again: it goes on with what is still a row.
    /// `run` also packs for up to 15 minutes after each retention run, so a database
    /// gets packed without this command too, more slowly. Progress goes to standard
    /// error, one line per batch; the summary to standard output.
    ///
    /// Exits 0 when no row older than the cutoff is left, 2 when the run stopped
    /// before (--max-batches, agents busy at every try: run again), 1 on an error.
    /// Under TimescaleDB hypertables, or with database.packed_samples = false,
    /// there is nothing to pack and it says so.
    Pack {
        /// Pack only rows older than this many seconds (at least 3600: an agent's
        /// open head stays a row until its block is sealed).
        #[arg(long, value_name = "SECS", default_value_t = 7200)]
        older_than_secs: u64,
        /// Stop after this many batches (default: until done).
        #[arg(long, value_name = "N")]
        max_batches: Option<u64>,
        /// The most rows one batch moves (one transaction, which the agent's ingest
        /// waits for; about a second per 500,000 rows).
        #[arg(long, value_name = "ROWS", default_value_t = 500_000)]
        max_rows_per_batch: u64,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the block format version and limits this build reads.
    FormatInfo,
    /// Check, test, load and list alert rules.
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
    /// Manage the API's user accounts from this host.
    #[command(subcommand)]
    Users(UsersCommand),
    /// Work with the audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// See the federator replicas sharing the central database.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Write a new random key for signing the API's tokens (api.jwt_key_file).
    ///
    /// 64 random bytes as hex, in a new file readable only by its owner. An
    /// existing file is kept unless --force: replacing the key signs everyone out.
    Keygen {
        /// Where to write the key.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Replace an existing file.
        #[arg(long)]
        force: bool,
    },
}

/// `pga-federator users …`.
#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Create a user. There is no default password: this makes the first admin.
    ///
    /// The password is read from standard input with --password-stdin (one line);
    /// otherwise a random one is generated and printed once. The creation is
    /// written to the audit log.
    Add {
        /// User name: letters, digits, '_', '.', '@', '-'.
        name: String,
        /// admin, user or viewer.
        #[arg(long, default_value = "viewer")]
        role: String,
        #[arg(long)]
        email: Option<String>,
        #[arg(long)]
        full_name: Option<String>,
        /// Read the password from standard input instead of generating one.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users.
    List,
    /// Set a user's password (a lost admin password is recovered this way); their
    /// sessions are signed out.
    SetPassword {
        name: String,
        /// Read the password from standard input instead of generating one.
        #[arg(long)]
        password_stdin: bool,
    },
}

/// `pga-federator audit …`.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Recompute the audit log's hash chain; name the first entry that was altered,
    /// deleted or inserted out of order. Exits 1 when the chain is broken.
    Verify,
}

/// `pga-federator cluster …`.
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Show every replica (its lease, live or not, agents owned, leader) and every
    /// lease (agent or leader: owner, epoch, takeovers).
    ///
    /// Every `pga-federator run` on one central database is a replica: it renews a
    /// lease on the database's clock every cluster.renew_interval_ms, and the agents
    /// are shared among the live replicas by rendezvous hashing. A replica that stops
    /// renewing (killed, frozen, cut off) loses its agents cluster.lease_ttl_ms after
    /// its last renewal; the others take them over with a new epoch, and any write
    /// the old one still attempts is refused by the epoch check (fencing). A lease
    /// marked "valid no" has no live holder: it is taken at the next renewal of the
    /// replica it is assigned to. The same is in the views cluster_replicas and
    /// cluster_assignments (readable by pga_reader).
    Status {
        /// Print JSON instead of tables.
        #[arg(long)]
        json: bool,
    },
}

/// Runs the command line: the exit code; an error is printed as one message.
pub fn main(cli: Cli) -> ExitCode {
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            // One message, with its fix where one is known; never a Debug dump or a
            // backtrace, whatever RUST_BACKTRACE says.
            eprintln!("error: {}", error_text(&e));
            ExitCode::FAILURE
        }
    }
}

fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let path = cli.config.as_deref();
    match cli.command {
        Command::FormatInfo => {
            print(&pga_format::describe())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Rules { command } => rules::main(&command, path),
        Command::CheckConfig => check_config::main(path),
        Command::Keygen { out, force } => keygen::main(&out, force),
        Command::Users(cmd) => users::main(cmd, path),
        Command::Audit(AuditCommand::Verify) => audit::main(path),
        Command::Cluster(ClusterCommand::Status { json }) => cluster::main(json, path),
        Command::Migrate => migrate::main(path),
        Command::Pack {
            older_than_secs,
            max_batches,
            max_rows_per_batch,
            json,
        } => pack::main(
            pack::Args {
                older_than_secs,
                max_batches,
                max_rows_per_batch,
                json,
            },
            path,
        ),
        Command::Run => run::main(path),
    }
}

/// Writes `text` to standard output.
fn print(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .context("writing to standard output")
}

/// A Tokio runtime for a command that talks to the database.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Runtime::new().context("starting the async runtime")
}

/// Logs to standard error, at the level of `RUST_LOG` (default `info`).
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// Loads the configuration for `run` and `migrate`: every problem is logged, and an
/// error stops the start.
fn load_for_service(path: Option<&std::path::Path>) -> anyhow::Result<config::Loaded> {
    let loaded = config::load(path)?;
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
    Ok(loaded)
}

/// The actor of commands run on the host, as the audit log names it.
fn cli_actor() -> Actor {
    let who = std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| "unknown".to_owned());
    Actor {
        username: Some(format!("cli:{who}")),
        ..Actor::default()
    }
}

/// Where commands run on the host come from, as the audit log records it.
fn cli_origin() -> Origin {
    Origin {
        source: None,
        user_agent: Some(format!(
            "pga-federator/{} (command line)",
            env!("CARGO_PKG_VERSION")
        )),
        request_id: None,
    }
}

/// A small pool for the administration commands; fails unless the schema is
/// migrated.
async fn admin_pool(cfg: &FederatorConfig) -> anyhow::Result<PgPool> {
    let pool = crate::db::connect(&cfg.database.url, &crate::app::pool_options(cfg, 2)?)
        .await
        .context("connecting to the database (database.url)")?;
    let ready: bool = sqlx::query_scalar(
        "SELECT to_regclass('audit_log') IS NOT NULL AND EXISTS \
         (SELECT FROM information_schema.columns WHERE table_name = 'audit_log' AND column_name = 'hash')",
    )
    .fetch_one(&pool)
    .await
    .context("reading the schema")?;
    anyhow::ensure!(
        ready,
        "the database schema is not up to date: run `pga-federator migrate` first"
    );
    Ok(pool)
}

/// An error as the one message `pga-federator` prints: each cause once (a cause
/// whose text the one before it already holds is left out), then the fix where one
/// is known.
pub fn error_text(err: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if parts.last().is_some_and(|p| p.contains(text.as_str())) {
            continue;
        }
        parts.push(text);
    }
    let mut out = parts.join(": ");
    if let Some(crate::config::ConfigError::NotFound { path }) = err.downcast_ref() {
        let fix = if path == std::path::Path::new(crate::config::DEFAULT_CONFIG_PATH) {
            "install the pganalytics-federator package, which ships this file, or copy the \
             annotated example (packaging/federator.toml in the source) there and name your \
             agents in it; or give another file with --config FILE"
        } else {
            "check the path given to --config, or leave --config out to read \
             /etc/pganalytics/federator.toml"
        };
        out.push_str("\n  fix: ");
        out.push_str(fix);
    }
    out
}

/// `pga-federator rules …`.
#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Check rule files: syntax, queries, thresholds, templates, tests; every problem
    /// with its file, line, column and fix. Exits 1 on any problem.
    ///
    /// Without FILE: the configuration's alerting.rule_files (when a configuration
    /// is found), else the built-in pack in /usr/share/pganalytics/rules.
    Check {
        /// Rule files or directories of them (*.toml).
        #[arg(value_name = "FILE")]
        files: Vec<std::path::PathBuf>,
    },
    /// Run the [[tests]] of rule files, in the manner of `promtool test rules`:
    /// input series in a compact notation, evaluation times, and the alerts expected.
    ///
    /// Without FILE: as for `check`, so `pga-federator rules test` runs every test of
    /// the built-in pack. Exits 1 when a test fails.
    Test {
        /// Rule files or directories of them (*.toml).
        #[arg(value_name = "FILE")]
        files: Vec<std::path::PathBuf>,
    },
    /// Load the configured rule files into the database now (as `run` does at
    /// start): new rules added, changed ones updated, removed ones deleted.
    Load,
    /// List the rules stored in the database.
    List,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use clap::error::ErrorKind;

    #[test]
    fn command_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn no_arguments_shows_help() {
        let err = Cli::try_parse_from(["pga-federator"]).unwrap_err();
        assert_eq!(
            err.kind(),
            ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
        );
    }

    #[test]
    fn commands_parse_and_unknown_ones_do_not() {
        let cli = Cli::try_parse_from(["pga-federator", "format-info"]).unwrap();
        assert!(matches!(cli.command, Command::FormatInfo));
        let cli =
            Cli::try_parse_from(["pga-federator", "check-config", "--config", "f.toml"]).unwrap();
        assert!(matches!(cli.command, Command::CheckConfig));
        assert_eq!(cli.config, Some(PathBuf::from("f.toml")));
        let cli = Cli::try_parse_from(["pga-federator", "--config", "x", "run"]).unwrap();
        assert!(matches!(cli.command, Command::Run));
        let cli = Cli::try_parse_from(["pga-federator", "rules", "test", "a.toml", "b"]).unwrap();
        assert!(
            matches!(&cli.command, Command::Rules { command: RulesCommand::Test { files } } if files.len() == 2)
        );
        let err = Cli::try_parse_from(["pga-federator", "serve"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidSubcommand);
    }

    #[test]
    fn errors_say_each_cause_once_and_the_fix() {
        let missing = crate::config::ConfigError::NotFound {
            path: crate::config::DEFAULT_CONFIG_PATH.into(),
        };
        let text = error_text(&anyhow::Error::new(missing));
        assert!(text.contains("does not exist"), "{text}");
        assert!(
            text.contains("fix: install the pganalytics-federator package"),
            "{text}"
        );
        let inner = anyhow::anyhow!("password authentication failed for user \"fed\"");
        let outer = inner
            .context("connecting to the database: password authentication failed for user \"fed\"");
        let text = error_text(&outer);
        assert_eq!(
            text.matches("password authentication failed").count(),
            1,
            "{text}"
        );
    }

    #[test]
    fn help_teaches() {
        // Compare with line wrapping undone: clap wraps to the terminal width.
        let help = Cli::command().render_long_help().to_string();
        let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(help.contains("central puller"), "{help}");
        assert!(help.contains("mutually authenticated TLS"), "{help}");
        assert!(help.contains("/etc/pganalytics/federator.toml"), "{help}");
        assert!(
            help.contains("pga-federator check-config --config"),
            "{help}"
        );
        assert!(!help.contains("early build"), "{help}");
    }
}
