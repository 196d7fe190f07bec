//! The `pga-federator` command line.

use clap::{Parser, Subcommand};

const ABOUT: &str = "pgAnalytics v3 federator: pulls metrics from agents into PostgreSQL";

const LONG_ABOUT: &str = "\
pgAnalytics v3 federator: the central puller.

pga-federator pulls sealed blocks of samples and log events from every pga-agent on a \
schedule over mutually authenticated TLS, backfills whatever it missed while an agent \
or the network was down, and writes raw samples and rollups into PostgreSQL \
(TimescaleDB when installed) for alerting and Grafana.

This is an early build: it only reports the block format it reads (format-info). \
Scraping and backfill, the PostgreSQL sink, rollups, retention, alerting and the HTTP \
API are not implemented yet.";

/// Command-line arguments of `pga-federator`.
#[derive(Debug, Parser)]
#[command(
    name = "pga-federator",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    arg_required_else_help = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// What `pga-federator` is asked to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the block format version and limits this build reads.
    FormatInfo,
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
    fn format_info_parses_and_unknown_commands_do_not() {
        let cli = Cli::try_parse_from(["pga-federator", "format-info"]).unwrap();
        assert!(matches!(cli.command, Command::FormatInfo));
        let err = Cli::try_parse_from(["pga-federator", "serve"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidSubcommand);
    }

    #[test]
    fn help_says_what_the_federator_is_and_what_is_missing() {
        // Compare with line wrapping undone: clap wraps to the terminal width.
        let help = Cli::command().render_long_help().to_string();
        let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(help.contains("central puller"), "{help}");
        assert!(help.contains("mutually authenticated TLS"), "{help}");
        assert!(help.contains("not implemented yet"), "{help}");
    }
}
