//! `pga-bench codec`: sizes, speed and a bit-exact round trip of the block format on a
//! scrape corpus.

use std::hint::black_box;
use std::time::{Duration, Instant};

use pga_format::{BlockBuilder, DecodeError, EncodeError};
use serde::Serialize;

use crate::baselines::{self, BaselineError, Baselines, per_sample};
use crate::blocks::{self, Shape, VerifyError, Window};
use crate::corpus::Corpus;

/// What to measure and how.
#[derive(Debug, Clone, PartialEq)]
pub struct CodecOptions {
    /// Block window length in seconds.
    pub block_secs: u32,
    /// zstd level for block and dictionary frames.
    pub zstd_level: i32,
    /// Also measure the baselines (slow: zstd level 22 over the corpus text).
    pub baselines: bool,
    /// Repeat each speed measurement until this much time has passed…
    pub min_timing: Duration,
    /// …and at least this many times; the best run counts.
    pub min_runs: u32,
}

impl Default for CodecOptions {
    fn default() -> Self {
        Self {
            block_secs: 600,
            zstd_level: pga_format::DEFAULT_ZSTD_LEVEL,
            baselines: false,
            min_timing: Duration::from_secs(1),
            min_runs: 3,
        }
    }
}

/// The measurement failed or the round trip did not reproduce the corpus.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    #[error("the corpus holds no samples")]
    NoSamples,
    #[error("block length must be at least 1 second")]
    ZeroBlockLength,
    #[error("encoding a block failed")]
    Encode(#[source] EncodeError),
    #[error("encoding the series dictionary failed")]
    EncodeDictionary(#[source] EncodeError),
    #[error("decoding a block failed")]
    Decode(#[from] DecodeError),
    #[error("round trip check failed")]
    Verify(#[from] VerifyError),
    #[error("a baseline failed")]
    Baseline(#[from] BaselineError),
}

/// Series, samples and size of one data shape.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ShapeStats {
    pub series: u64,
    pub samples: u64,
    /// Bytes of blocks holding only this shape's series (same windows), per sample.
    pub block_bytes: u64,
    pub bytes_per_sample: f64,
}

/// The three data shapes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Shapes {
    pub constant: ShapeStats,
    pub counter: ShapeStats,
    pub gauge: ShapeStats,
}

impl Shapes {
    pub fn get(&self, shape: Shape) -> &ShapeStats {
        match shape {
            Shape::Constant => &self.constant,
            Shape::Counter => &self.counter,
            Shape::Gauge => &self.gauge,
        }
    }
}

/// Everything `pga-bench codec` measures; `--json` prints it as is.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CodecReport {
    pub samples: u64,
    pub series: u64,
    pub scrapes: u64,
    pub failed_scrapes: u64,
    pub corpus_text_bytes: u64,
    pub block_secs: u32,
    pub zstd_level: i32,
    pub blocks: u64,
    /// Bytes of all block frames.
    pub block_bytes: u64,
    pub dict_frames: u64,
    /// Bytes of all series-dictionary frames.
    pub dict_bytes: u64,
    /// `block_bytes / samples`.
    pub bytes_per_sample: f64,
    /// `(block_bytes + dict_bytes) / samples`.
    pub bytes_per_sample_with_dict: f64,
    /// Push every collection and encode every block, one thread, best run.
    pub encode_samples_per_sec: f64,
    /// `decode_block` of every frame to columns, one thread, best run.
    pub decode_samples_per_sec: f64,
    pub encode_runs: u32,
    pub decode_runs: u32,
    /// Every block and dictionary frame decoded to its input, floats compared bit for bit.
    pub round_trip_exact: bool,
    pub shapes: Shapes,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baselines: Option<Baselines>,
}

/// Runs the whole measurement. `text` is the decompressed corpus (for the text baseline).
///
/// Fails with [`CodecError::Verify`] if the frames do not decode to the input bit-exactly.
pub fn run(corpus: &Corpus, text: &[u8], opts: &CodecOptions) -> Result<CodecReport, CodecError> {
    if opts.block_secs == 0 {
        return Err(CodecError::ZeroBlockLength);
    }
    let samples = corpus.sample_count() as u64;
    if samples == 0 {
        return Err(CodecError::NoSamples);
    }
    let windows = blocks::windows(corpus, i64::from(opts.block_secs) * 1000);
    let mut builder = BlockBuilder::new();

    let frames = blocks::encode_windows(&mut builder, &windows, opts.zstd_level)
        .map_err(CodecError::Encode)?;
    let checked = blocks::verify_frames(&windows, &frames)?;
    debug_assert_eq!(checked as u64, samples);
    let dict_frames = blocks::encode_dictionary(&corpus.series, opts.zstd_level)
        .map_err(CodecError::EncodeDictionary)?;
    blocks::verify_dictionary(&corpus.series, &dict_frames)?;

    let (encode_time, encode_runs) = best_of(opts, || {
        blocks::encode_windows(&mut builder, &windows, opts.zstd_level).map(black_box)
    })
    .map_err(CodecError::Encode)?;
    let (decode_time, decode_runs) = best_of(opts, || blocks::decode_frames(&frames))?;

    let block_bytes = total_len(&frames);
    let dict_bytes = total_len(&dict_frames);
    let shapes = shapes(corpus, &windows, &mut builder, opts.zstd_level)?;
    let baselines = if opts.baselines {
        Some(baselines::measure(&windows, text)?)
    } else {
        None
    };
    Ok(CodecReport {
        samples,
        series: corpus.series.len() as u64,
        scrapes: corpus.scrapes.len() as u64,
        failed_scrapes: corpus.failed.len() as u64,
        corpus_text_bytes: text.len() as u64,
        block_secs: opts.block_secs,
        zstd_level: opts.zstd_level,
        blocks: frames.len() as u64,
        block_bytes,
        dict_frames: dict_frames.len() as u64,
        dict_bytes,
        bytes_per_sample: per_sample(block_bytes, samples),
        bytes_per_sample_with_dict: per_sample(block_bytes + dict_bytes, samples),
        encode_samples_per_sec: rate(samples, encode_time),
        decode_samples_per_sec: rate(samples, decode_time),
        encode_runs,
        decode_runs,
        round_trip_exact: true,
        shapes,
        baselines,
    })
}

/// Sizes of blocks holding one shape's series at a time.
fn shapes(
    corpus: &Corpus,
    windows: &[Window],
    builder: &mut BlockBuilder,
    zstd_level: i32,
) -> Result<Shapes, CodecError> {
    let shape_of = blocks::classify(corpus);
    let mut measure = |shape: Shape| -> Result<ShapeStats, CodecError> {
        // Invariant: `classify` returns one entry per series, indexed by id.
        let only = blocks::filter_windows(windows, |id| shape_of[id.0 as usize] == shape);
        let frames =
            blocks::encode_windows(builder, &only, zstd_level).map_err(CodecError::Encode)?;
        let samples: u64 = only.iter().map(|w| w.sample_count() as u64).sum();
        let block_bytes = total_len(&frames);
        Ok(ShapeStats {
            series: shape_of.iter().filter(|&&s| s == shape).count() as u64,
            samples,
            block_bytes,
            bytes_per_sample: per_sample(block_bytes, samples),
        })
    };
    Ok(Shapes {
        constant: measure(Shape::Constant)?,
        counter: measure(Shape::Counter)?,
        gauge: measure(Shape::Gauge)?,
    })
}

fn total_len(frames: &[Vec<u8>]) -> u64 {
    frames.iter().map(|f| f.len() as u64).sum()
}

fn rate(samples: u64, time: Duration) -> f64 {
    samples as f64 / time.as_secs_f64().max(1e-9)
}

/// Runs `f` until `opts.min_timing` has passed and at least `opts.min_runs` times;
/// returns the fastest run and the number of runs.
fn best_of<T, E>(
    opts: &CodecOptions,
    mut f: impl FnMut() -> Result<T, E>,
) -> Result<(Duration, u32), E> {
    let start = Instant::now();
    let mut best = Duration::MAX;
    let mut runs = 0;
    while runs < opts.min_runs.max(1) || start.elapsed() < opts.min_timing {
        let t = Instant::now();
        black_box(f()?);
        best = best.min(t.elapsed());
        runs += 1;
    }
    Ok((best, runs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::corpus::parse_corpus;

    fn quick() -> CodecOptions {
        CodecOptions {
            min_timing: Duration::ZERO,
            min_runs: 1,
            ..CodecOptions::default()
        }
    }

    #[test]
    fn empty_corpus_is_an_error() {
        let corpus = parse_corpus(b"# SCRAPE a 1\n").unwrap();
        assert!(matches!(
            run(&corpus, b"", &quick()),
            Err(CodecError::NoSamples)
        ));
    }

    #[test]
    fn best_of_honours_min_runs() {
        let opts = CodecOptions {
            min_runs: 4,
            ..quick()
        };
        let mut calls = 0;
        let (_, runs) = best_of(&opts, || {
            calls += 1;
            Ok::<_, ()>(())
        })
        .unwrap();
        assert_eq!((runs, calls), (4, 4));
    }

    #[test]
    fn shapes_add_up() {
        let text = "\
# SCRAPE a 0
# TYPE c counter
c 1
g 2.5
k 7
# SCRAPE a 10000
# TYPE c counter
c 4
g 2.25
k 7
";
        let corpus = parse_corpus(text.as_bytes()).unwrap();
        let report = run(&corpus, text.as_bytes(), &quick()).unwrap();
        assert_eq!(report.samples, 6);
        assert_eq!(report.blocks, 1);
        for shape in Shape::ALL {
            let s = report.shapes.get(shape);
            assert_eq!((s.series, s.samples), (1, 2), "{shape:?}");
            assert!(s.block_bytes > 0);
        }
        assert!(report.baselines.is_none());
    }
}
