//! Turning a corpus into block frames exactly as the agent does, and checking them.
//!
//! Each scrape is one collection at the scrape's timestamp. Collections fall into windows
//! aligned to multiples of the block length (`window = floor(ts_ms / (block_secs * 1000))`);
//! each window becomes one [`BlockBuilder`], encoded as one frame with sequence numbers
//! 1, 2, 3, … in window order.

use std::collections::BTreeMap;
use std::hint::black_box;

use pga_format::{
    AgentId, BlockBuilder, DecodeError, EncodeError, FrameMeta, MetricKind, SeriesId, SeriesMeta,
    decode_block, dictionary,
};

use crate::corpus::Corpus;

/// The agent id every frame of a measurement carries (16 ASCII bytes).
pub const BENCH_AGENT_ID: AgentId = AgentId(*b"pga-bench-corpus");

/// Most series descriptions in one dictionary frame.
pub const DICTIONARY_CHUNK: usize = 4096;

/// One collection pass: every sample shares the timestamp.
#[derive(Debug, Clone, PartialEq)]
pub struct Collection {
    pub timestamp_ms: i64,
    pub samples: Vec<(SeriesId, f64)>,
}

/// The collections of one block window, in push order.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    /// `floor(ts_ms / block_ms)`.
    pub index: i64,
    pub collections: Vec<Collection>,
}

impl Window {
    pub fn sample_count(&self) -> usize {
        self.collections.iter().map(|c| c.samples.len()).sum()
    }
}

/// The frames' round trip did not reproduce the input.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    #[error("block {sequence} does not decode")]
    Decode { sequence: u64, source: DecodeError },
    #[error("block {sequence} decodes to different data than was encoded: {detail}")]
    Mismatch { sequence: u64, detail: String },
    #[error("dictionary frame {sequence} does not decode")]
    DictionaryDecode { sequence: u64, source: DecodeError },
    #[error("dictionary frame {sequence} decodes to different series: {detail}")]
    DictionaryMismatch { sequence: u64, detail: String },
    #[error("{frames} frames for {windows} windows")]
    FrameCount { frames: usize, windows: usize },
}

/// Groups the scrapes of a corpus into block windows of `block_ms` milliseconds.
///
/// Windows come out in time order; inside a window, collections keep file order. Scrapes
/// without samples are left out: they add nothing to a block.
pub fn windows(corpus: &Corpus, block_ms: i64) -> Vec<Window> {
    let mut by_index: BTreeMap<i64, Vec<Collection>> = BTreeMap::new();
    for scrape in corpus.scrapes.iter().filter(|s| !s.samples.is_empty()) {
        by_index
            .entry(scrape.timestamp_ms.div_euclid(block_ms))
            .or_default()
            .push(Collection {
                timestamp_ms: scrape.timestamp_ms,
                samples: scrape.samples.clone(),
            });
    }
    by_index
        .into_iter()
        .map(|(index, collections)| Window { index, collections })
        .collect()
}

/// The same windows holding only the series `keep` accepts; emptied collections and
/// windows are dropped.
pub fn filter_windows(windows: &[Window], keep: impl Fn(SeriesId) -> bool) -> Vec<Window> {
    windows
        .iter()
        .filter_map(|w| {
            let collections: Vec<Collection> = w
                .collections
                .iter()
                .filter_map(|c| {
                    let samples: Vec<_> = c
                        .samples
                        .iter()
                        .copied()
                        .filter(|&(id, _)| keep(id))
                        .collect();
                    (!samples.is_empty()).then_some(Collection {
                        timestamp_ms: c.timestamp_ms,
                        samples,
                    })
                })
                .collect();
            (!collections.is_empty()).then_some(Window {
                index: w.index,
                collections,
            })
        })
        .collect()
}

/// Encodes one frame per window, reusing `builder`; sequences start at 1.
pub fn encode_windows(
    builder: &mut BlockBuilder,
    windows: &[Window],
    zstd_level: i32,
) -> Result<Vec<Vec<u8>>, EncodeError> {
    let mut frames = Vec::with_capacity(windows.len());
    for (sequence, window) in (1..).zip(windows) {
        builder.clear();
        for c in &window.collections {
            builder.push_collection(c.timestamp_ms, &c.samples)?;
        }
        let meta = FrameMeta {
            agent_id: BENCH_AGENT_ID,
            sequence,
        };
        frames.push(builder.encode(meta, zstd_level)?);
    }
    builder.clear();
    Ok(frames)
}

/// Decodes every frame to columns and drops the result: the decode measurement.
pub fn decode_frames(frames: &[Vec<u8>]) -> Result<usize, DecodeError> {
    let mut samples = 0;
    for frame in frames {
        let block = decode_block(frame)?;
        samples += block.sample_count();
        black_box(block);
    }
    Ok(samples)
}

/// Checks that every frame decodes to exactly its window's collections, comparing values
/// bit for bit. Collections at one timestamp merge, series ascending, as the decoder
/// returns them. Returns the number of samples checked.
pub fn verify_frames(windows: &[Window], frames: &[Vec<u8>]) -> Result<usize, VerifyError> {
    if windows.len() != frames.len() {
        return Err(VerifyError::FrameCount {
            frames: frames.len(),
            windows: windows.len(),
        });
    }
    let mut checked = 0;
    for ((sequence, window), frame) in (1u64..).zip(windows).zip(frames) {
        let block =
            decode_block(frame).map_err(|source| VerifyError::Decode { sequence, source })?;
        let mismatch = |detail: String| VerifyError::Mismatch { sequence, detail };
        if block.header.sequence != sequence || block.header.agent_id != BENCH_AGENT_ID {
            return Err(mismatch(format!(
                "header says agent {} sequence {}",
                block.header.agent_id, block.header.sequence
            )));
        }
        let expected = expected_collections(window);
        let got = block.collections();
        if got.len() != expected.len() {
            return Err(mismatch(format!(
                "{} collections, expected {}",
                got.len(),
                expected.len()
            )));
        }
        for ((ts, samples), (want_ts, want)) in got.iter().zip(&expected) {
            if ts != want_ts {
                return Err(mismatch(format!("timestamp {ts}, expected {want_ts}")));
            }
            if samples.len() != want.len() {
                return Err(mismatch(format!(
                    "{} samples at {ts}, expected {}",
                    samples.len(),
                    want.len()
                )));
            }
            for (&(id, v), &(want_id, want_v)) in samples.iter().zip(want) {
                if id != want_id || v.to_bits() != want_v.to_bits() {
                    return Err(mismatch(format!(
                        "at {ts}: series {id} = {v:?} ({:#018x}), expected series {want_id} = \
                         {want_v:?} ({:#018x})",
                        v.to_bits(),
                        want_v.to_bits()
                    )));
                }
            }
            checked += samples.len();
        }
    }
    Ok(checked)
}

/// A window's collections merged by timestamp, series ascending.
fn expected_collections(window: &Window) -> Vec<(i64, Vec<(SeriesId, f64)>)> {
    let mut merged: BTreeMap<i64, Vec<(SeriesId, f64)>> = BTreeMap::new();
    for c in &window.collections {
        merged
            .entry(c.timestamp_ms)
            .or_default()
            .extend_from_slice(&c.samples);
    }
    merged
        .into_iter()
        .map(|(ts, mut samples)| {
            samples.sort_by_key(|&(id, _)| id);
            (ts, samples)
        })
        .collect()
}

/// Encodes the series dictionary in frames of at most [`DICTIONARY_CHUNK`] entries,
/// sequences 1, 2, 3, ….
pub fn encode_dictionary(
    series: &[SeriesMeta],
    zstd_level: i32,
) -> Result<Vec<Vec<u8>>, EncodeError> {
    (1..)
        .zip(series.chunks(DICTIONARY_CHUNK))
        .map(|(sequence, chunk)| {
            let meta = FrameMeta {
                agent_id: BENCH_AGENT_ID,
                sequence,
            };
            dictionary::encode(meta, chunk, zstd_level)
        })
        .collect()
}

/// Checks that the dictionary frames decode to exactly `series`.
pub fn verify_dictionary(series: &[SeriesMeta], frames: &[Vec<u8>]) -> Result<(), VerifyError> {
    let chunks: Vec<&[SeriesMeta]> = series.chunks(DICTIONARY_CHUNK).collect();
    if chunks.len() != frames.len() {
        return Err(VerifyError::FrameCount {
            frames: frames.len(),
            windows: chunks.len(),
        });
    }
    for ((sequence, chunk), frame) in (1u64..).zip(chunks).zip(frames) {
        let (_, decoded) = dictionary::decode(frame)
            .map_err(|source| VerifyError::DictionaryDecode { sequence, source })?;
        if decoded.len() != chunk.len() {
            return Err(VerifyError::DictionaryMismatch {
                sequence,
                detail: format!("{} entries, expected {}", decoded.len(), chunk.len()),
            });
        }
        if let Some((got, want)) = decoded.iter().zip(chunk).find(|(got, want)| got != want) {
            return Err(VerifyError::DictionaryMismatch {
                sequence,
                detail: format!("got {got:?}, expected {want:?}"),
            });
        }
    }
    Ok(())
}

/// Data shape of a series over the whole corpus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Shape {
    /// Every value bit-identical.
    Constant,
    /// Kind counter, not constant.
    Counter,
    /// Kind gauge, not constant.
    Gauge,
}

impl Shape {
    pub const ALL: [Shape; 3] = [Shape::Constant, Shape::Counter, Shape::Gauge];

    pub const fn as_str(self) -> &'static str {
        match self {
            Shape::Constant => "constant",
            Shape::Counter => "counter",
            Shape::Gauge => "gauge",
        }
    }
}

/// Shape of every series, indexed by series id.
pub fn classify(corpus: &Corpus) -> Vec<Shape> {
    let mut first_bits: Vec<Option<u64>> = vec![None; corpus.series.len()];
    let mut constant = vec![true; corpus.series.len()];
    for scrape in &corpus.scrapes {
        for &(id, v) in &scrape.samples {
            // Invariant: the parser hands out ids 0..series.len().
            let i = id.0 as usize;
            match first_bits[i] {
                None => first_bits[i] = Some(v.to_bits()),
                Some(bits) => constant[i] &= bits == v.to_bits(),
            }
        }
    }
    corpus
        .series
        .iter()
        .zip(constant)
        .map(|(meta, constant)| match (constant, meta.kind) {
            (true, _) => Shape::Constant,
            (false, MetricKind::Counter) => Shape::Counter,
            (false, MetricKind::Gauge) => Shape::Gauge,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::corpus::parse_corpus;

    const TEXT: &str = "\
# SCRAPE a 599999
# TYPE c counter
c 1
g 5
# SCRAPE a 600000
# TYPE c counter
c 2
g 5
# SCRAPE b 600000
g 7
# SCRAPE a 1200001
# TYPE c counter
c 3
g 5.5
";

    #[test]
    fn windows_align_to_block_length() {
        let corpus = parse_corpus(TEXT.as_bytes()).unwrap();
        let w = windows(&corpus, 600_000);
        let shape: Vec<(i64, usize)> = w.iter().map(|w| (w.index, w.collections.len())).collect();
        assert_eq!(shape, vec![(0, 1), (1, 2), (2, 1)]);
    }

    #[test]
    fn round_trip_merges_equal_timestamps() {
        let corpus = parse_corpus(TEXT.as_bytes()).unwrap();
        let w = windows(&corpus, 600_000);
        let frames = encode_windows(&mut BlockBuilder::new(), &w, 3).unwrap();
        assert_eq!(verify_frames(&w, &frames).unwrap(), 7);
        assert_eq!(decode_frames(&frames).unwrap(), 7);
    }

    #[test]
    fn verify_notices_a_different_window() {
        let corpus = parse_corpus(TEXT.as_bytes()).unwrap();
        let w = windows(&corpus, 600_000);
        let frames = encode_windows(&mut BlockBuilder::new(), &w, 3).unwrap();
        let mut changed = w.clone();
        changed[1].collections[0].samples[0].1 = f64::from_bits(2f64.to_bits() + 1);
        let err = verify_frames(&changed, &frames).unwrap_err();
        assert!(
            matches!(err, VerifyError::Mismatch { sequence: 2, .. }),
            "{err}"
        );
    }

    #[test]
    fn shapes() {
        let corpus = parse_corpus(TEXT.as_bytes()).unwrap();
        // c{job=a}, g{job=a}, g{job=b}
        assert_eq!(
            classify(&corpus),
            vec![Shape::Counter, Shape::Gauge, Shape::Constant]
        );
    }

    #[test]
    fn filtered_windows_drop_empty_collections() {
        let corpus = parse_corpus(TEXT.as_bytes()).unwrap();
        let w = windows(&corpus, 600_000);
        let only_b = filter_windows(&w, |id| id == SeriesId(2));
        assert_eq!(only_b.len(), 1);
        assert_eq!(only_b[0].collections.len(), 1);
        assert_eq!(only_b[0].sample_count(), 1);
    }

    #[test]
    fn dictionary_round_trip() {
        let corpus = parse_corpus(TEXT.as_bytes()).unwrap();
        let frames = encode_dictionary(&corpus.series, 3).unwrap();
        assert_eq!(frames.len(), 1);
        verify_dictionary(&corpus.series, &frames).unwrap();
    }
}
