//! The `pga-federator` command line.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

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

Alerting: rules (the built-in PostgreSQL pack in /usr/share/pganalytics/rules and your \
own rule files) are evaluated for each agent at its data watermark, so data that \
arrives late by backfill is evaluated in order and incidents found there are notified \
as late alerts; notifications go to Alertmanagers and signed webhooks through a \
durable outbox. `pga-federator rules test` runs rule files' tests.";

const AFTER_HELP: &str = "\
Examples:
  pga-federator check-config --config federator.toml   validate a configuration
  pga-federator migrate                                create or upgrade the database schema
  pga-federator run                                    pull every agent until stopped
  pga-federator rules test my-rules.toml               run a rule file's tests
  pga-federator rules check                            check the configured rule files
  curl -s http://127.0.0.1:9188/metrics                the federator's own metrics
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
    /// Applies pending database migrations first, then runs the scrape scheduler,
    /// the retention job and the self-metrics listener ([metrics] listen).
    Run,
    /// Validate the configuration and show the effective values and every problem.
    ///
    /// Exits 0 when the federator would start (warnings allowed), 1 otherwise.
    /// Reads the certificate and password files; does not connect anywhere.
    CheckConfig,
    /// Create or upgrade the central database schema, then exit.
    ///
    /// `run` does the same at start-up; use this to migrate ahead of a rollout or
    /// as the schema owner role.
    Migrate,
    /// Print the block format version and limits this build reads.
    FormatInfo,
    /// Check, test, load and list alert rules.
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
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
