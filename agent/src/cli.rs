//! The `pga-agent` command line.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

const ABOUT: &str = "pgAnalytics v3 agent: collects PostgreSQL, OS and log metrics on one host";

const LONG_ABOUT: &str = "\
pgAnalytics v3 agent: the per-host collector.

pga-agent runs on every PostgreSQL host. It collects PostgreSQL statistics, server \
log events and operating-system metrics into a compressed local ring store that keeps \
days of data within a byte budget, serves them over mutual TLS to the federator and \
Prometheus, and answers questions about that store offline: `query`, `series`, `logs` \
and `status` work while the agent runs and after it stopped, with no network.

Configuration comes from --config FILE, else /etc/pganalytics/agent.toml when it \
exists, else built-in defaults that store under ./pga-data, so a first try needs no \
file. `pga-agent check-config` shows the effective configuration and every problem.";

const AFTER_HELP: &str = "\
Examples:
  pga-agent run                                   collect into ./pga-data (no config needed)
  pga-agent check-config --config agent.toml      validate a configuration
  pga-agent certs dev --out ./tls                 a development CA and mTLS certificates
  pga-agent status                                store health and last collection per collector
  pga-agent series 'node_cpu_seconds_total'       list series matching a selector
  pga-agent query 'node_load1' --since 2h --format chart
  pga-agent query 'node_cpu_seconds_total{mode=\"user\"}' --since 1h --step 1m --fn rate
  pga-agent logs --since 1h --severity error       recent errors, fatals and panics from the store
  pga-agent logs --kind slow_statement --limit 20 --json
  pga-agent logs --parse /var/log/postgresql/postgresql-16-main.log --prefix '%m [%p] %q%u@%d '";

/// Command-line arguments of `pga-agent`.
#[derive(Debug, Parser)]
#[command(
    name = "pga-agent",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_help = AFTER_HELP,
    arg_required_else_help = true
)]
pub struct Cli {
    /// Configuration file [default: /etc/pganalytics/agent.toml if it exists, else built-in defaults]
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Data directory holding the ring store; overrides `agent.data_dir` of the configuration
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

/// What `pga-agent` is asked to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Collect into the ring store until stopped (SIGINT or SIGTERM).
    ///
    /// Logs go to standard error; set RUST_LOG (e.g. RUST_LOG=debug) for more detail.
    Run,
    /// Query the ring store: one selector, a time range, an optional aggregation.
    Query(QueryArgs),
    /// List the series in the ring store, optionally filtered by a selector.
    Series(SeriesArgs),
    /// Show the ring store's health: size, blocks, time span, last collection per collector.
    ///
    /// Reads and checks the whole store first (every block's checksum, every record),
    /// so what it shows is what the store holds; a damaged store is an error naming
    /// the file and the fix. Shows whether the running agent's writes succeed (a full
    /// disk, the last error). Exit status 0 when all is well, 1 when the store is
    /// damaged or the agent reports failing writes.
    Status(StatusArgs),
    /// Validate the configuration and show the effective values and every problem.
    CheckConfig,
    /// Print the block format version and limits this build writes and reads.
    FormatInfo,
    /// Make certificates for the endpoint's mutual TLS.
    Certs(CertsArgs),
    /// Show recent PostgreSQL log events from the store, or analyse log files offline.
    ///
    /// Without --parse, reads the events the log collector stored (works while the
    /// agent runs): filter by --kind, --severity (at least), --instance, --since;
    /// counts per kind and severity, then the newest --limit events. With --parse,
    /// reads the files (no server, no store), classifies every entry (errors, slow
    /// statements, checkpoints, autovacuum, lock waits, …) and redacts literals and
    /// passwords.
    Logs(LogsArgs),
}

/// Arguments of `pga-agent logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Log files to analyse offline, in order
    #[arg(long = "parse", value_name = "FILE", num_args = 1..)]
    pub parse: Vec<PathBuf>,

    /// log_destination that wrote the files: stderr, csvlog or jsonlog
    /// [default: by extension: .csv → csvlog, .json → jsonlog, else stderr]
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<String>,

    /// log_line_prefix of stderr logs
    #[arg(long, value_name = "PREFIX", default_value = "%m [%p] ")]
    pub prefix: String,

    /// One JSON object {counts_by_kind, counts_by_severity, events} instead of tables
    #[arg(long)]
    pub json: bool,

    /// Show literals as logged (a password in CREATE/ALTER ROLE … PASSWORD is still never shown)
    #[arg(long)]
    pub no_redact: bool,

    /// Store mode: only events of these kinds (error, slow_statement, checkpoint,
    /// autovacuum, autoanalyze, lock_wait, deadlock, temp_file, connection,
    /// disconnection, auth_failure, other); repeat or separate with commas
    #[arg(long, value_name = "KIND", value_delimiter = ',')]
    pub kind: Vec<String>,

    /// Store mode: only events of this severity or worse (log, warning, error, fatal, …)
    #[arg(long, value_name = "SEVERITY")]
    pub severity: Option<String>,

    /// Store mode: only events of this instance
    #[arg(long, value_name = "NAME")]
    pub instance: Option<String>,

    /// Store mode: events since this time (30m, 2h, 1d, an RFC 3339 time, or epoch seconds)
    #[arg(long, value_name = "TIME", default_value = "1h")]
    pub since: String,

    /// Store mode: at most this many events, the newest
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub limit: usize,
}

/// Arguments of `pga-agent certs`.
#[derive(Debug, Args)]
pub struct CertsArgs {
    #[command(subcommand)]
    pub command: CertsCommand,
}

/// What `pga-agent certs` makes.
#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// Make a development CA and certificates for the agent, the federator and
    /// Prometheus, for the demo and tests (not for production: use your PKI).
    ///
    /// Writes ca.crt/ca.key, agent.crt/agent.key (server; SANs localhost, 127.0.0.1,
    /// ::1, the host name and every --agent-san), federator.crt/federator.key and
    /// prometheus.crt/prometheus.key (clients `pga-federator` and `prometheus`);
    /// keys mode 0600. Prints the [endpoint] table to put in agent.toml.
    Dev(DevCertsArgs),
}

/// Arguments of `pga-agent certs dev`.
#[derive(Debug, Args)]
pub struct DevCertsArgs {
    /// Directory to write the certificates and keys into (created when missing)
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,

    /// Common name of the agent's certificate [default: the host name]
    #[arg(long, value_name = "NAME")]
    pub agent_name: Option<String>,

    /// Another DNS name or IP address the federator dials the agent by (repeatable)
    #[arg(long = "agent-san", value_name = "DNS_OR_IP")]
    pub agent_sans: Vec<String>,

    /// Validity of every certificate, in days
    #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub days: u32,

    /// Overwrite existing files in DIR
    #[arg(long)]
    pub force: bool,
}

/// Arguments of `pga-agent query`.
#[derive(Debug, Args)]
pub struct QueryArgs {
    /// Series selector: `metric`, `metric{label="v"}`, `{label=~"re", other!="x"}`
    pub selector: String,

    /// Start of the range: relative (`90s`, `15m`, `2h`, `1d`) or RFC 3339 (`2026-11-24T08:00:00Z`)
    #[arg(long, default_value = "1h")]
    pub since: String,

    /// End of the range: `now`, relative or RFC 3339
    #[arg(long, default_value = "now")]
    pub until: String,

    /// Width of each output step (`30s`, `5m`); with --fn, defaults to about 1/60 of the range
    #[arg(long)]
    pub step: Option<String>,

    /// Aggregation per step: avg, min, max, last, rate or increase (counter resets handled).
    /// Without it, the stored samples are shown as they are.
    #[arg(long = "fn", value_name = "FN")]
    pub function: Option<String>,

    /// Output: table, csv, json (one object per series) or chart (a line chart in the terminal)
    #[arg(long, default_value = "table")]
    pub format: String,

    /// Chart width in columns
    #[arg(long, default_value_t = 80)]
    pub width: usize,

    /// Chart height in rows
    #[arg(long, default_value_t = 16)]
    pub height: usize,
}

/// Arguments of `pga-agent series`.
#[derive(Debug, Args)]
pub struct SeriesArgs {
    /// Optional selector to filter by: `metric`, `{label="v"}`, …
    pub selector: Option<String>,

    /// Output: table, csv or json
    #[arg(long, default_value = "table")]
    pub format: String,
}

/// Arguments of `pga-agent status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Output: table or json
    #[arg(long, default_value = "table")]
    pub format: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_work_on_every_subcommand() {
        for sub in ["run", "status", "check-config", "series"] {
            let cli =
                Cli::try_parse_from(["pga-agent", sub, "--config", "a.toml", "--data-dir", "d"])
                    .unwrap();
            assert_eq!(cli.config.as_deref(), Some(std::path::Path::new("a.toml")));
            assert_eq!(cli.data_dir.as_deref(), Some(std::path::Path::new("d")));
        }
        let cli = Cli::try_parse_from([
            "pga-agent",
            "--data-dir",
            "d",
            "query",
            "pg_up",
            "--since",
            "2h",
        ])
        .unwrap();
        assert!(matches!(cli.command, Command::Query(ref q) if q.since == "2h"));
    }

    #[test]
    fn certs_dev_arguments() {
        let cli = Cli::try_parse_from([
            "pga-agent",
            "certs",
            "dev",
            "--out",
            "tls",
            "--agent-san",
            "db1.example",
            "--agent-san",
            "10.0.0.5",
            "--days",
            "30",
        ])
        .unwrap();
        let Command::Certs(CertsArgs {
            command: CertsCommand::Dev(d),
        }) = cli.command
        else {
            panic!("expected certs dev");
        };
        assert_eq!(d.out, std::path::Path::new("tls"));
        assert_eq!(d.agent_sans, ["db1.example", "10.0.0.5"]);
        assert_eq!((d.days, d.force, d.agent_name), (30, false, None));
        assert!(Cli::try_parse_from(["pga-agent", "certs", "dev"]).is_err());
        assert!(
            Cli::try_parse_from(["pga-agent", "certs", "dev", "--out", "x", "--days", "0"])
                .is_err()
        );
    }

    #[test]
    fn logs_arguments() {
        let cli = Cli::try_parse_from(["pga-agent", "logs", "--parse", "a.log", "b.csv", "--json"])
            .unwrap();
        let Command::Logs(l) = cli.command else {
            panic!("expected logs");
        };
        assert_eq!(
            l.parse,
            [std::path::Path::new("a.log"), std::path::Path::new("b.csv")]
        );
        assert_eq!(l.prefix, "%m [%p] ");
        assert!(l.json && !l.no_redact && l.log_format.is_none());
        let cli = Cli::try_parse_from(["pga-agent", "logs"]).unwrap();
        assert!(matches!(cli.command, Command::Logs(ref l) if l.parse.is_empty()));
    }
}
