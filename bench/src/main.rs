//! `pga-bench`: see `pga-bench --help`.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use pga_bench::cli::{Cli, CodecArgs, Command};
use pga_bench::{codec_cmd, corpus, report};

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Codec(args) => codec(&args),
        Command::Store(args) => pga_bench::store_cmd::run(&args),
        Command::Endpoint(args) => pga_bench::endpoint_cmd::run(&args),
        Command::Logparse(args) => pga_bench::logparse_cmd::run(&args),
        Command::Overhead(args) => pga_bench::overhead_cmd::run(&args),
        Command::Logtail(args) => pga_bench::logtail_cmd::run(&args),
        Command::Backfill(args) => pga_bench::pull_cmd::backfill(&args),
        Command::Fleet(args) => pga_bench::pull_cmd::fleet(&args),
        Command::Ingest(args) => pga_bench::ingest_cmd::run(&args),
        Command::Lockwait(args) => pga_bench::lockwait_cmd::run(&args),
        Command::Api(args) => pga_bench::api_cmd::run(&args),
        Command::Dashboards(args) => pga_bench::dashboards_cmd::run(&args),
        Command::Alerts(args) => pga_bench::alerts_cmd::run(&args),
        Command::RemoteWrite(args) => pga_bench::remote_write_cmd::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // `{:#}` prints the whole cause chain on one line.
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn codec(args: &CodecArgs) -> anyhow::Result<()> {
    let (corpus, text) = corpus::load_corpus(&args.corpus)?;
    let report = codec_cmd::run(&corpus, &text, &args.options())
        .with_context(|| format!("measuring the codec on {}", args.corpus.display()))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!(
            "{}",
            report::render_text(&report, &args.corpus.display().to_string())
        );
    }
    Ok(())
}
