//! What the block format is measured against, on the same windows.
//!
//! - `postcard_zstd`: plain `(series_id u64, ts i64, value f64)` rows of each window,
//!   serialised with postcard (varints for the integers, 8 bytes per float), then zstd at
//!   level [`POSTCARD_ZSTD_LEVEL`] per window.
//! - `tsz_gorilla`: Facebook Gorilla chunks from the `tsz` crate (delta-of-delta
//!   timestamps, XOR floats), one chunk per series per window, timestamps in ms.
//! - `zstd_text`: zstd at its highest level ([`TEXT_ZSTD_LEVEL`]) over the whole corpus
//!   text, as a generic compressor would store the scrapes. This one is slow.

use std::io::{self, Write};

use serde::Serialize;
use tsz::stream::{BufferedReader, BufferedWriter};
use tsz::{DataPoint, Decode, Encode, StdDecoder, StdEncoder};

use crate::blocks::Window;

/// zstd level for the postcard rows.
pub const POSTCARD_ZSTD_LEVEL: i32 = 19;
/// zstd's highest level, for the corpus text.
pub const TEXT_ZSTD_LEVEL: i32 = 22;

/// A baseline could not be computed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BaselineError {
    #[error("postcard serialisation failed")]
    Postcard(#[from] postcard::Error),
    #[error("zstd compression failed")]
    Zstd(#[from] io::Error),
    #[error("tsz stores unsigned timestamps; {0} ms is before 1970")]
    NegativeTimestamp(i64),
}

/// Size of one baseline encoding.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BaselineSize {
    pub bytes: u64,
    pub bytes_per_sample: f64,
}

impl BaselineSize {
    pub fn new(bytes: u64, samples: u64) -> Self {
        Self {
            bytes,
            bytes_per_sample: per_sample(bytes, samples),
        }
    }
}

/// Bytes per sample; 0 when there are no samples.
pub fn per_sample(bytes: u64, samples: u64) -> f64 {
    if samples == 0 {
        0.0
    } else {
        bytes as f64 / samples as f64
    }
}

/// The Gorilla baseline, with whether its chunks decoded back bit-exactly.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct GorillaSize {
    pub bytes: u64,
    pub bytes_per_sample: f64,
    /// Every chunk decoded to its input, values compared bit for bit.
    pub round_trip_exact: bool,
}

/// All baselines of one run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Baselines {
    pub postcard_zstd: BaselineSize,
    pub tsz_gorilla: GorillaSize,
    pub zstd_text: BaselineSize,
}

/// Computes every baseline; `text` is the decompressed corpus.
pub fn measure(windows: &[Window], text: &[u8]) -> Result<Baselines, BaselineError> {
    let samples: u64 = windows.iter().map(|w| w.sample_count() as u64).sum();
    let (gorilla_bytes, round_trip_exact) = tsz_gorilla(windows)?;
    Ok(Baselines {
        postcard_zstd: BaselineSize::new(postcard_zstd(windows)?, samples),
        tsz_gorilla: GorillaSize {
            bytes: gorilla_bytes,
            bytes_per_sample: per_sample(gorilla_bytes, samples),
            round_trip_exact,
        },
        zstd_text: BaselineSize::new(zstd_text(text)?, samples),
    })
}

/// One plain row.
#[derive(Debug, Serialize)]
struct Row {
    series_id: u64,
    ts: i64,
    value: f64,
}

/// Bytes of postcard rows compressed with zstd, one compressed buffer per window.
pub fn postcard_zstd(windows: &[Window]) -> Result<u64, BaselineError> {
    let mut total = 0;
    for window in windows {
        let rows: Vec<Row> = window
            .collections
            .iter()
            .flat_map(|c| {
                c.samples.iter().map(|&(id, value)| Row {
                    series_id: id.0,
                    ts: c.timestamp_ms,
                    value,
                })
            })
            .collect();
        let plain = postcard::to_allocvec(&rows)?;
        total += zstd::bulk::compress(&plain, POSTCARD_ZSTD_LEVEL)?.len() as u64;
    }
    Ok(total)
}

/// Bytes of tsz Gorilla chunks, one per series per window, and whether all decode exactly.
pub fn tsz_gorilla(windows: &[Window]) -> Result<(u64, bool), BaselineError> {
    let mut total = 0;
    let mut exact = true;
    let mut points: Vec<Vec<(u64, f64)>> = Vec::new();
    for window in windows {
        points.iter_mut().for_each(Vec::clear);
        for c in &window.collections {
            let ts = u64::try_from(c.timestamp_ms)
                .map_err(|_| BaselineError::NegativeTimestamp(c.timestamp_ms))?;
            for &(id, value) in &c.samples {
                // Invariant: series ids are dense indexes (0..series count).
                let i = id.0 as usize;
                if points.len() <= i {
                    points.resize_with(i + 1, Vec::new);
                }
                points[i].push((ts, value));
            }
        }
        for series in points.iter_mut().filter(|p| !p.is_empty()) {
            // Collections of one window may come out of time order; a chunk may not.
            series.sort_by_key(|&(ts, _)| ts);
            let chunk = gorilla_chunk(series);
            total += chunk.len() as u64;
            exact &= gorilla_decodes_to(chunk, series);
        }
    }
    Ok((total, exact))
}

/// Encodes one series' points (ascending time, at least one) as a tsz chunk.
///
/// The chunk starts at the first timestamp: tsz stores the first delta in 14 bits, which
/// would overflow for a window start more than 16 s (in ms) before the first point.
fn gorilla_chunk(points: &[(u64, f64)]) -> Box<[u8]> {
    let start = points.first().map_or(0, |&(ts, _)| ts);
    let mut encoder = StdEncoder::new(start, BufferedWriter::new());
    for &(ts, value) in points {
        encoder.encode(DataPoint::new(ts, value));
    }
    encoder.close()
}

fn gorilla_decodes_to(chunk: Box<[u8]>, points: &[(u64, f64)]) -> bool {
    let mut decoder = StdDecoder::new(BufferedReader::new(chunk));
    for &(ts, value) in points {
        match decoder.next() {
            Ok(dp) if dp.get_time() == ts && dp.get_value().to_bits() == value.to_bits() => {}
            _ => return false,
        }
    }
    matches!(decoder.next(), Err(tsz::decode::Error::EndOfStream))
}

/// Bytes of the text compressed by zstd at [`TEXT_ZSTD_LEVEL`].
pub fn zstd_text(text: &[u8]) -> Result<u64, BaselineError> {
    let mut counter = CountingWriter(0);
    zstd::stream::copy_encode(text, &mut counter, TEXT_ZSTD_LEVEL)?;
    Ok(counter.0)
}

/// Counts the bytes written to it and keeps none.
#[derive(Debug)]
struct CountingWriter(u64);

impl Write for CountingWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blocks::Collection;
    use pga_format::SeriesId;

    fn sample_windows() -> Vec<Window> {
        let collections = (0..60)
            .map(|i| Collection {
                timestamp_ms: 1_700_000_000_000 + i * 10_000 + (i * 7) % 13,
                samples: vec![
                    (SeriesId(0), 1.0),
                    (SeriesId(1), i as f64 * 3.5),
                    (SeriesId(2), f64::NAN),
                ],
            })
            .collect();
        vec![Window {
            index: 0,
            collections,
        }]
    }

    #[test]
    fn gorilla_round_trips_and_is_smaller_than_raw() {
        let (bytes, exact) = tsz_gorilla(&sample_windows()).unwrap();
        assert!(exact);
        assert!(bytes > 0 && bytes < 180 * 16, "{bytes}");
    }

    #[test]
    fn postcard_rows_compress() {
        let bytes = postcard_zstd(&sample_windows()).unwrap();
        assert!(bytes > 0 && bytes < 180 * 17, "{bytes}");
    }

    #[test]
    fn text_baseline_counts_compressed_bytes() {
        let text = "pg_up 1\n".repeat(1000);
        let bytes = zstd_text(text.as_bytes()).unwrap();
        let mut real = Vec::new();
        zstd::stream::copy_encode(text.as_bytes(), &mut real, TEXT_ZSTD_LEVEL).unwrap();
        assert_eq!(bytes, real.len() as u64);
        assert!(bytes < 100, "{bytes}");
    }

    #[test]
    fn negative_timestamps_are_an_error_for_tsz() {
        let w = vec![Window {
            index: -1,
            collections: vec![Collection {
                timestamp_ms: -5,
                samples: vec![(SeriesId(0), 1.0)],
            }],
        }];
        assert!(matches!(
            tsz_gorilla(&w),
            Err(BaselineError::NegativeTimestamp(-5))
        ));
    }
}
