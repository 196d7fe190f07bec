//! Command line of `pga-bench`.

use std::path::PathBuf;

use clap::builder::TypedValueParser;
use clap::{Args, Parser, Subcommand};

use crate::codec_cmd::CodecOptions;

/// pgAnalytics v3 lab: measurements of the storage format.
#[derive(Debug, Parser)]
#[command(name = "pga-bench", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    Codec(CodecArgs),
    Store(StoreArgs),
    Endpoint(EndpointArgs),
    Logparse(LogparseArgs),
    Logtail(LogtailArgs),
    Overhead(OverheadArgs),
    Backfill(crate::pull_cmd::BackfillArgs),
    Fleet(crate::pull_cmd::FleetArgs),
    Ingest(crate::ingest_cmd::IngestArgs),
    Lockwait(crate::lockwait_cmd::LockwaitArgs),
    Api(crate::api_cmd::ApiArgs),
    Dashboards(crate::dashboards_cmd::DashboardsArgs),
    Alerts(crate::alerts_cmd::AlertsArgs),
    RemoteWrite(crate::remote_write_cmd::RemoteWriteArgs),
}

/// Measure what monitoring a PostgreSQL host costs: pga-agent side by side with
/// prometheus-postgres-exporter + prometheus-node-exporter.
///
/// Starts a throwaway cluster (pg_stat_statements preloaded), loads it with pgbench
/// (-s --scale, 4 clients at --rate tps) for the whole run, and runs at the same time:
///   pga-agent                     default intervals (10 s / 60 s / 300 s), PostgreSQL
///                                 and system collectors, as role pga_agent
///   prometheus-postgres-exporter  every database, the package's example queries
///                                 (tables, statio, statements, sizes), as role
///                                 pga_exporter; scraped every --scrape-secs
///   prometheus-node-exporter      scraped every --scrape-secs
/// Both roles are plain pg_monitor members. The exporters are the Debian packages,
/// installed with apt-get when missing (as root). pga-agent is taken from next to this
/// binary (build it with `cargo build --release -p pga-agent`) or from --agent.
///
/// Reports per process CPU seconds (user + system, /proc/PID/stat) and peak RSS
/// (VmHWM), server time and calls of each role's queries (pg_stat_statements, reset
/// at the start), and the agent's store bytes per sample. Goal: the agent at most half
/// the CPU and half the RSS of the two exporters together. The machine may be shared:
/// run it on a quiet host for figures to compare.
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct OverheadArgs {
    /// Length of the measurement in minutes.
    #[arg(long, default_value_t = 10.0)]
    pub minutes: f64,
    /// Seconds between scrapes of the exporters (the agent's fast interval is 10).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub scrape_secs: u64,
    /// pgbench transactions per second (rate-limited, 4 clients).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub rate: u32,
    /// pgbench scale factor (-s).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub scale: u32,
    /// The pga-agent binary to measure.
    #[arg(long)]
    pub agent: Option<PathBuf>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Measure the agent's PostgreSQL log parsers: MB/s and entries/s on one core.
///
/// Generates a log of about --size-mb MiB in memory for each format (stderr with
/// log_line_prefix '%m [%p] %q%u@%d/%a ', csvlog, jsonlog) holding the same mix: 60 %
/// LOG duration lines, ERRORs with their STATEMENT (some multi-line), checkpoints from a
/// background process, connections and disconnections, warnings. Then feeds it to the
/// parser in 64 KiB chunks and times it. Every generated entry must come back and no
/// line may be skipped, or the command fails.
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct LogparseArgs {
    /// Size of each generated log in MiB.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..=16_384))]
    pub size_mb: u64,
    /// Print one JSON array instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Measure the agent's log collector end to end: MB/s and events/s on one core.
///
/// For each format, writes the log of `pga-bench logparse` (about --size-mb MiB) to a
/// file, then runs the collector over it in passes of --read-bytes-per-pass bytes, as
/// the agent does: read, parse, classify, redact, count, and store each pass's events,
/// counters and file cursor in one transaction of a real ring store, until a pass
/// finds nothing new. Every generated entry must be stored once, or the command fails.
/// Also shows the slowest pass (read to commit).
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct LogtailArgs {
    /// Size of each generated log in MiB.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=16_384))]
    pub size_mb: u64,
    /// The collector's per-pass read budget (logs.read_bytes_per_pass).
    #[arg(long, default_value_t = 16 << 20)]
    pub read_bytes_per_pass: u64,
    /// Print one JSON array instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Measure the agent's endpoint: how fast `/v1/blocks` serves a backlog, and how long
/// `/metrics` takes to render.
///
/// Builds a store the way the agent does (10-minute blocks, one durable transaction per
/// collection): --series series, --collections-per-block collections in each of
/// --blocks sealed blocks ending in the previous window, then one collection now (the
/// head), so that every series is fresh for `/metrics`. Then, in process through the
/// endpoint's router (no sockets, no TLS; every store read on tokio's blocking pool, as
/// served):
///   blocks   pulls everything from sequence 0 the way a federator catches up (GET
///            /v1/blocks?after=CURSOR&max_bytes=N until Pga-More is false), over and
///            over for at least 3 rounds and 2 s: responses/s, sealed blocks/s and MB/s
///            of body (the head frame included)
///   metrics  GET /metrics --renders times in each format (text 0.0.4, OpenMetrics),
///            after two warm-up renders: p50 and p99 of request to last body byte
///
/// Data: families of 50 series with two labels; a third constant settings, a third
/// counters with uneven increments, a third decimal gauges.
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct EndpointArgs {
    /// Series in the store (and samples in /metrics).
    #[arg(long, default_value_t = 10_000)]
    pub series: usize,
    /// Sealed blocks in the store.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub blocks: u64,
    /// Collections in each 10-minute block (60 = every 10 s, the agent's fast group).
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..=600))]
    pub collections_per_block: u32,
    /// The byte budget of one /v1/blocks response (the agent's default is 8 MiB).
    #[arg(long, default_value_t = 8 << 20, value_parser = clap::value_parser!(u64).range(1..=1 << 32).map(|n| n as usize))]
    pub max_bytes: usize,
    /// Timed renders of /metrics per format.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=100_000).map(|n| n as usize))]
    pub renders: usize,
    /// Directory for the store [default: a temporary directory, removed afterwards].
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Measure the agent's ring store: the cost of writing one collection, and of a
/// `pga-agent query` over a long range of one series in a store holding many.
///
/// Builds a store the way the agent does (one durable transaction per collection,
/// 10-minute blocks, the default budget) with --series series collected every
/// --interval-secs for --hours, then queries one counter series over the whole range:
/// the stored samples (as `pga-agent query SELECTOR --since 24h` prints them) and a
/// 5-minute `rate`. With --agent-bin, the real binary is also timed end to end.
///
/// Data: a third of the series constant, a third counters with uneven increments, a
/// third decimal gauges, like a PostgreSQL host's mix.
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct StoreArgs {
    /// Series in the store.
    #[arg(long, default_value_t = 2000)]
    pub series: usize,
    /// Hours of data.
    #[arg(long, default_value_t = 24)]
    pub hours: u32,
    /// Collection interval in seconds.
    #[arg(long, default_value_t = 10)]
    pub interval_secs: u32,
    /// Directory for the store [default: a temporary directory, removed afterwards].
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// The `pga-agent` binary to time end to end (e.g. target/release/pga-agent).
    #[arg(long, value_name = "FILE")]
    pub agent_bin: Option<PathBuf>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Measure the block format on a scrape corpus: bytes per sample, speed, data shapes.
///
/// The corpus is replayed exactly as the agent collects: every scrape becomes one
/// collection at the scrape's timestamp, collections fall into block windows aligned to
/// multiples of --block-secs, and each window is encoded as one block frame. The series
/// dictionary is encoded too (at most 4096 series per frame).
///
/// Reported:
///   sizes     bytes of block frames and of the dictionary; bytes per sample with and
///             without the dictionary
///   speed     one thread, best of several runs (at least 3 and at least 1 s in all):
///             encode = push every collection and encode every block,
///             decode = `decode_block` of every frame into columns
///   shapes    every series is `constant` (all its values bit-identical), else `counter`
///             or `gauge` by its TYPE; blocks holding only one shape's series are encoded
///             over the same windows to show what each shape costs
///   baselines (with --baselines) the same samples as postcard rows + zstd 19, as tsz
///             Gorilla chunks (one per series per window), and the corpus text at zstd 22
///
/// Every frame is decoded and compared with the input, floats bit for bit; any difference
/// is an error and the command exits non-zero.
#[derive(Debug, Args)]
#[command(verbatim_doc_comment, after_long_help = CODEC_EXAMPLES)]
pub struct CodecArgs {
    /// Scrape corpus: plain text or zstd-compressed (detected by its magic bytes).
    ///
    /// Format: `# SCRAPE <job> <unix_ms>` headers, each followed by a Prometheus text
    /// exposition body (0.0.4, with `# HELP`/`# TYPE`); `# SCRAPE-FAILED <job> <unix_ms>
    /// <reason>` lines mark failed scrapes, which are counted and skipped. A series is the
    /// job (as label `job`) plus the metric name and labels. A malformed line stops the
    /// command with its line number.
    #[arg(long, value_name = "FILE")]
    pub corpus: PathBuf,

    /// Length of a block window in seconds (the agent's default is 600).
    #[arg(long, default_value_t = 600, value_name = "SECS",
          value_parser = clap::value_parser!(u32).range(1..=86_400))]
    pub block_secs: u32,

    /// Print one JSON object instead of tables (for scripts and CI).
    #[arg(long)]
    pub json: bool,

    /// Also measure postcard+zstd rows, tsz Gorilla chunks and zstd -22 over the text.
    ///
    /// Off by default: zstd level 22 over a large corpus takes tens of seconds.
    #[arg(long)]
    pub baselines: bool,

    /// zstd level of block and dictionary frames [default: pga-format's default level].
    ///
    /// 1 (fast) to 22 (smallest); negative levels trade size for even more speed.
    #[arg(long, value_name = "N", allow_negative_numbers = true,
          value_parser = clap::value_parser!(i32).range(ZSTD_MIN_LEVEL..=ZSTD_MAX_LEVEL))]
    pub zstd_level: Option<i32>,
}

/// zstd's lowest level (`ZSTD_minCLevel()`, -ZSTD_TARGETLENGTH_MAX).
const ZSTD_MIN_LEVEL: i64 = -(1 << 17);
/// zstd's highest level (`ZSTD_maxCLevel()`).
const ZSTD_MAX_LEVEL: i64 = 22;

const CODEC_EXAMPLES: &str = "\
Examples:
  pga-bench codec --corpus ../shared/corpus/scrapes.txt.zst
  pga-bench codec --corpus scrapes.txt --block-secs 300 --zstd-level 9
  pga-bench codec --corpus scrapes.txt.zst --baselines --json | jq .bytes_per_sample";

impl CodecArgs {
    /// The measurement options these arguments ask for.
    pub fn options(&self) -> CodecOptions {
        let defaults = CodecOptions::default();
        CodecOptions {
            block_secs: self.block_secs,
            zstd_level: self.zstd_level.unwrap_or(defaults.zstd_level),
            baselines: self.baselines,
            ..defaults
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults_and_flags() {
        let cli = Cli::try_parse_from(["pga-bench", "codec", "--corpus", "x"]).unwrap();
        let Command::Codec(args) = cli.command else {
            panic!("parsed as another command");
        };
        let opts = args.options();
        assert_eq!(opts.block_secs, 600);
        assert_eq!(opts.zstd_level, pga_format::DEFAULT_ZSTD_LEVEL);
        assert!(!opts.baselines && !args.json);

        let cli = Cli::try_parse_from([
            "pga-bench",
            "codec",
            "--corpus",
            "x",
            "--block-secs",
            "60",
            "--zstd-level",
            "-1",
            "--json",
            "--baselines",
        ])
        .unwrap();
        let Command::Codec(args) = cli.command else {
            panic!("parsed as another command");
        };
        assert_eq!(
            (args.options().block_secs, args.options().zstd_level),
            (60, -1)
        );
        assert!(args.json && args.baselines);
    }

    #[test]
    fn endpoint_defaults_and_bounds() {
        let cli = Cli::try_parse_from(["pga-bench", "endpoint"]).unwrap();
        let Command::Endpoint(args) = cli.command else {
            panic!("parsed as another command");
        };
        assert_eq!((args.series, args.blocks), (10_000, 200));
        assert_eq!((args.collections_per_block, args.max_bytes), (60, 8 << 20));
        assert!(!args.json);
        for bad in [
            ["--blocks", "0"],
            ["--max-bytes", "0"],
            ["--collections-per-block", "0"],
        ] {
            let mut argv = vec!["pga-bench", "endpoint"];
            argv.extend(bad);
            assert!(Cli::try_parse_from(argv).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn zero_block_length_is_rejected() {
        assert!(
            Cli::try_parse_from(["pga-bench", "codec", "--corpus", "x", "--block-secs", "0"])
                .is_err()
        );
    }
}
