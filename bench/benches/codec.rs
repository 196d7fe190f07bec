//! Block codec speed by data shape, on synthetic blocks generated here (not the corpus):
//! `BlockBuilder` push + encode, and `decode_block`, for
//!
//! - `constant`: every series holds one value the whole block;
//! - `counter`: integer counters with varying increments, regular timestamps;
//! - `jitter`: the same counters, timestamps regular up to a few ms of jitter;
//! - `gauge-noise`: true floats (noisy gauges).
//!
//! One block is 10 minutes of 10 s collections of 200 series (12,000 samples).
//! `cargo bench -p pga-bench` runs them all; `cargo bench -p pga-bench -- counter` one shape.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pga_format::{AgentId, BlockBuilder, DEFAULT_ZSTD_LEVEL, FrameMeta, SeriesId, decode_block};
use pga_lab::Rng;

const SERIES: u64 = 200;
const COLLECTIONS: i64 = 60;
const INTERVAL_MS: i64 = 10_000;
const START_MS: i64 = 1_700_000_000_000;

const META: FrameMeta = FrameMeta {
    agent_id: AgentId(*b"pga-bench-codec!"),
    sequence: 1,
};

type Collections = Vec<(i64, Vec<(SeriesId, f64)>)>;

/// The collections of one block of the given shape.
fn block(shape: &str) -> Collections {
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let mut counters: Vec<f64> = (0..SERIES).map(|s| (s * 1_000) as f64).collect();
    let gauges: Vec<f64> = (0..SERIES).map(|_| 10.0 + rng.unit() * 1_000.0).collect();
    (0..COLLECTIONS)
        .map(|i| {
            let jitter = if shape == "jitter" {
                (rng.next() % 25) as i64 - 12
            } else {
                0
            };
            let ts = START_MS + i * INTERVAL_MS + jitter;
            let samples = (0..SERIES)
                .map(|s| {
                    let i = s as usize;
                    let v = match shape {
                        "constant" => s as f64 * 1.5,
                        "counter" | "jitter" => {
                            counters[i] += (rng.next() % (1 + s * 10)) as f64;
                            counters[i]
                        }
                        "gauge-noise" => gauges[i] * (0.9 + 0.2 * rng.unit()),
                        other => unreachable!("unknown shape {other}"),
                    };
                    (SeriesId(s), v)
                })
                .collect();
            (ts, samples)
        })
        .collect()
}

fn encode(builder: &mut BlockBuilder, collections: &Collections) -> Vec<u8> {
    builder.clear();
    for (ts, samples) in collections {
        builder
            .push_collection(*ts, samples)
            .expect("synthetic collections are valid");
    }
    builder
        .encode(META, DEFAULT_ZSTD_LEVEL)
        .expect("synthetic block encodes")
}

const SHAPES: [&str; 4] = ["constant", "counter", "jitter", "gauge-noise"];

fn codec(c: &mut Criterion) {
    let samples = SERIES * COLLECTIONS as u64;
    let blocks: Vec<(&str, Collections)> = SHAPES.iter().map(|&s| (s, block(s))).collect();
    let mut builder = BlockBuilder::new();

    let mut group = c.benchmark_group("encode");
    group.throughput(Throughput::Elements(samples));
    for (shape, collections) in &blocks {
        group.bench_function(*shape, |b| {
            b.iter(|| encode(&mut builder, black_box(collections)))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Elements(samples));
    for (shape, collections) in &blocks {
        let frame = encode(&mut builder, collections);
        let decoded = decode_block(&frame).expect("synthetic block decodes");
        assert_eq!(decoded.sample_count() as u64, samples);
        assert!(decoded.collections().iter().zip(collections).all(
            |((ts, got), (want_ts, want))| {
                ts == want_ts
                    && got.len() == want.len()
                    && got
                        .iter()
                        .zip(want)
                        .all(|(a, b)| a.0 == b.0 && a.1.to_bits() == b.1.to_bits())
            }
        ));
        eprintln!(
            "{shape}: {} bytes, {:.3} bytes/sample",
            frame.len(),
            frame.len() as f64 / samples as f64
        );
        group.bench_function(*shape, |b| b.iter(|| decode_block(black_box(&frame))));
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = codec
}
criterion_main!(benches);
