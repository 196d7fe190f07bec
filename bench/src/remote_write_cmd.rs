//! `pga-bench remote-write`: the cost of encoding the federator's Prometheus
//! remote-write requests (`pga_federator::remote_write::encode`), measured on a
//! recorded scrape corpus cut into the agent's blocks.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use pga_federator::remote_write::encode::{self, Label};
use pga_format::{BlockBuilder, DecodedBlock};

use crate::blocks;
use crate::corpus;

/// Measure the encoding of remote-write requests: protobuf `WriteRequest` + snappy.
///
/// The corpus is cut into block windows as the agent would (`--block-secs`), each block
/// encoded and decoded with pga-format (not measured), then, on one thread, every block
/// is turned into requests of at most --max-samples-per-request samples (labels with
/// the agent's identity, samples in time order), each serialised and snappy-compressed,
/// over and over for --secs seconds. Reported: samples per second on one core for the
/// whole, and for protobuf alone; compressed bytes per sample; requests made. Goal: at
/// least 5 million samples per second per core.
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct RemoteWriteArgs {
    /// Scrape corpus (as for `pga-bench codec`): plain text or zstd-compressed.
    #[arg(long, value_name = "FILE")]
    pub corpus: PathBuf,
    /// Length of a block window in seconds (the agent's default is 600).
    #[arg(long, default_value_t = 600, value_name = "SECS")]
    pub block_secs: u32,
    /// Samples in one request, at most (`remote_write[].max_samples_per_request`).
    #[arg(long, default_value_t = 5000, value_name = "N")]
    pub max_samples_per_request: u64,
    /// How long each measurement runs, in seconds.
    #[arg(long, default_value_t = 5.0, value_name = "SECS")]
    pub secs: f64,
}

/// Runs the measurement and prints it.
pub fn run(args: &RemoteWriteArgs) -> anyhow::Result<()> {
    let (corpus, _) = corpus::load_corpus(&args.corpus)?;
    let windows = blocks::windows(&corpus, i64::from(args.block_secs) * 1000);
    let frames = blocks::encode_windows(&mut BlockBuilder::new(), &windows, 3)
        .context("encoding the corpus into blocks")?;
    let decoded: Vec<DecodedBlock> = frames
        .iter()
        .map(|f| pga_format::decode_block(f))
        .collect::<Result<_, _>>()
        .context("decoding the blocks")?;
    let agent_labels = BTreeMap::from([("env".to_owned(), "bench".to_owned())]);
    let labels: Vec<Arc<[Label]>> = corpus
        .series
        .iter()
        .map(|m| encode::series_labels(m, "bench-agent", &agent_labels))
        .collect();
    let samples: usize = decoded.iter().map(DecodedBlock::sample_count).sum();
    anyhow::ensure!(samples > 0, "the corpus has no samples");
    let max = args.max_samples_per_request as usize;
    let budget = Duration::from_secs_f64(args.secs);

    let mut encoder = snap::raw::Encoder::new();
    let (mut n, mut bytes, mut requests, mut raw_bytes) = (0u64, 0u64, 0u64, 0u64);
    let started = Instant::now();
    while started.elapsed() < budget {
        for b in &decoded {
            for r in encode::block_requests(b, |id| labels.get(id.0 as usize), max)? {
                let body = encode::compress(&r.message, &mut encoder);
                n += r.samples;
                bytes += body.len() as u64;
                requests += 1;
            }
        }
    }
    let whole = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let mut n_proto = 0u64;
    while started.elapsed() < budget {
        for b in &decoded {
            for r in encode::block_requests(b, |id| labels.get(id.0 as usize), max)? {
                raw_bytes += prost::Message::encode_to_vec(&r.message).len() as u64;
                n_proto += r.samples;
            }
        }
    }
    let proto = started.elapsed().as_secs_f64();

    println!("corpus:                {}", args.corpus.display());
    println!(
        "blocks:                {} of {} s, {} series, {} samples",
        decoded.len(),
        args.block_secs,
        corpus.series.len(),
        samples
    );
    println!(
        "requests:              {} of at most {} samples",
        requests / (n / samples as u64).max(1),
        max
    );
    println!(
        "encode + snappy:       {:.2} M samples/s on one core ({:.1} ns/sample)",
        n as f64 / whole / 1e6,
        whole * 1e9 / n as f64
    );
    println!(
        "protobuf alone:        {:.2} M samples/s on one core",
        n_proto as f64 / proto / 1e6
    );
    println!(
        "bytes per sample:      {:.2} protobuf, {:.2} after snappy",
        raw_bytes as f64 / n_proto as f64,
        bytes as f64 / n as f64
    );
    Ok(())
}
