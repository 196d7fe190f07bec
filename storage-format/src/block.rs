//! Blocks: every sample and log event of one agent for one time window, columnar
//! (FORMAT.md, "Block payload").

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::error::{DecodeError, EncodeError, Section};
use crate::frame::{self, FrameHeader, FrameKind, FrameMeta, FrameSpec};
use crate::logs;
use crate::model::{LogEvent, Sample, SeriesId};
use crate::values::{self, ValueEncoder, ValueEncoding};
use crate::wire::{Reader, put_varint};

/// Most samples one block may hold. An agent seals its head block well before this.
pub const MAX_SAMPLES_PER_BLOCK: usize = 1 << 24;

/// The zstd level blocks are compressed with unless the caller picks another.
pub const DEFAULT_ZSTD_LEVEL: i32 = 6;

/// Hashes a `SeriesId` with one multiply (ids are dense small integers).
#[derive(Debug, Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = (v ^ (v >> 29)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type IdMap = HashMap<SeriesId, u32, BuildHasherDefault<IdHasher>>;

#[derive(Debug, Clone, Default)]
struct ColumnBuf {
    id: SeriesId,
    timestamps: Vec<i64>,
    values: Vec<f64>,
    /// Timestamps were pushed in ascending order.
    sorted: bool,
}

/// Collects the samples and log events of one block and encodes them as a frame.
///
/// Collections may arrive in any order; a series may be missing from any of them.
#[derive(Debug, Clone, Default)]
pub struct BlockBuilder {
    /// Timestamp of every non-empty collection pushed, possibly repeated.
    collection_ts: Vec<i64>,
    index: IdMap,
    columns: Vec<ColumnBuf>,
    log_events: Vec<LogEvent>,
    samples: usize,
}

impl BlockBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one collection pass: every sample shares `timestamp_ms`.
    ///
    /// A series that already has a sample at this timestamp is an error, and the
    /// collection is then not added at all.
    pub fn push_collection(
        &mut self,
        timestamp_ms: i64,
        samples: &[(SeriesId, f64)],
    ) -> Result<(), EncodeError> {
        if samples.is_empty() {
            return Ok(());
        }
        if self.samples + samples.len() > MAX_SAMPLES_PER_BLOCK {
            return Err(EncodeError::LimitExceeded {
                what: "samples in one block",
                value: (self.samples + samples.len()) as u64,
                max: MAX_SAMPLES_PER_BLOCK as u64,
            });
        }
        let columns_before = self.columns.len();
        for (done, &(id, value)) in samples.iter().enumerate() {
            let next = self.columns.len() as u32;
            let idx = *self.index.entry(id).or_insert(next) as usize;
            if idx == self.columns.len() {
                self.columns.push(ColumnBuf {
                    id,
                    sorted: true,
                    ..ColumnBuf::default()
                });
            }
            let col = &mut self.columns[idx];
            match col.timestamps.last() {
                Some(&last) if last == timestamp_ms => {
                    self.rollback(&samples[..done], columns_before);
                    return Err(EncodeError::DuplicateSample {
                        series: id.0,
                        timestamp_ms,
                    });
                }
                Some(&last) if last > timestamp_ms => col.sorted = false,
                _ => {}
            }
            col.timestamps.push(timestamp_ms);
            col.values.push(value);
        }
        self.samples += samples.len();
        self.collection_ts.push(timestamp_ms);
        Ok(())
    }

    /// Undoes the first samples of a collection that failed part-way.
    fn rollback(&mut self, pushed: &[(SeriesId, f64)], columns_before: usize) {
        for (id, _) in pushed {
            if let Some(&idx) = self.index.get(id) {
                let col = &mut self.columns[idx as usize];
                col.timestamps.pop();
                col.values.pop();
            }
        }
        for col in self.columns.drain(columns_before..) {
            self.index.remove(&col.id);
        }
    }

    /// Adds one log event.
    pub fn push_log_event(&mut self, event: LogEvent) -> Result<(), EncodeError> {
        event
            .validate()
            .map_err(|error| EncodeError::InvalidLogEvent {
                timestamp_ms: event.timestamp_ms,
                error,
            })?;
        if self.log_events.len() >= logs::MAX_LOG_EVENTS_PER_BLOCK {
            return Err(EncodeError::LimitExceeded {
                what: "log events in one block",
                value: self.log_events.len() as u64 + 1,
                max: logs::MAX_LOG_EVENTS_PER_BLOCK as u64,
            });
        }
        self.log_events.push(event);
        Ok(())
    }

    pub fn sample_count(&self) -> usize {
        self.samples
    }

    pub fn series_count(&self) -> usize {
        self.columns.len()
    }

    pub fn log_event_count(&self) -> usize {
        self.log_events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples == 0 && self.log_events.is_empty()
    }

    /// First and last timestamp of any sample or log event, if there is one.
    pub fn time_range(&self) -> Option<(i64, i64)> {
        let ts = self
            .collection_ts
            .iter()
            .copied()
            .chain(self.log_events.iter().map(|e| e.timestamp_ms));
        ts.fold(None, |acc, t| match acc {
            None => Some((t, t)),
            Some((lo, hi)) => Some((lo.min(t), hi.max(t))),
        })
    }

    /// Forgets everything, keeping allocations for the next block.
    pub fn clear(&mut self) {
        self.collection_ts.clear();
        self.index.clear();
        self.columns.clear();
        self.log_events.clear();
        self.samples = 0;
    }

    /// Encodes everything pushed so far as one block frame, payload compressed with
    /// zstd at `zstd_level`. The builder is left as it was, so a head block can be
    /// encoded again after more collections.
    pub fn encode(&self, meta: FrameMeta, zstd_level: i32) -> Result<Vec<u8>, EncodeError> {
        let (min_ts, max_ts) = self.time_range().unwrap_or((0, 0));
        let mut timestamps = self.collection_ts.clone();
        timestamps.sort_unstable();
        timestamps.dedup();

        let mut order: Vec<u32> = (0..self.columns.len() as u32).collect();
        order.sort_unstable_by_key(|&i| self.columns[i as usize].id);
        let ids: Vec<SeriesId> = order.iter().map(|&i| self.columns[i as usize].id).collect();

        let words = timestamps.len().div_ceil(64);
        let mut patterns: Vec<Vec<u64>> = Vec::new();
        let mut pattern_index: HashMap<Vec<u64>, u64> = HashMap::new();
        let mut pattern_of: Vec<u64> = Vec::with_capacity(order.len());
        let mut tags = Vec::with_capacity(order.len());
        let mut data = Vec::with_capacity(self.samples * 2);
        let mut encoder = ValueEncoder::default();
        let mut bitmap = vec![0u64; words];
        let mut sorted_buf: Vec<(i64, f64)> = Vec::new();
        let mut values_buf: Vec<f64> = Vec::new();

        for &i in &order {
            let col = &self.columns[i as usize];
            let (col_ts, col_values): (&[i64], &[f64]) = if col.sorted {
                (&col.timestamps, &col.values)
            } else {
                sorted_buf.clear();
                sorted_buf.extend(
                    col.timestamps
                        .iter()
                        .copied()
                        .zip(col.values.iter().copied()),
                );
                sorted_buf.sort_by_key(|&(t, _)| t);
                if let Some(w) = sorted_buf.windows(2).find(|w| w[0].0 == w[1].0) {
                    return Err(EncodeError::DuplicateSample {
                        series: col.id.0,
                        timestamp_ms: w[0].0,
                    });
                }
                values_buf.clear();
                values_buf.extend(sorted_buf.iter().map(|&(_, v)| v));
                (&[], &values_buf)
            };
            bitmap.fill(0);
            if col.values.len() == timestamps.len() {
                for (w, word) in bitmap.iter_mut().enumerate() {
                    let bits = (timestamps.len() - w * 64).min(64);
                    *word = if bits == 64 {
                        u64::MAX
                    } else {
                        (1u64 << bits) - 1
                    };
                }
            } else {
                let mut set = |t: i64| {
                    // Present: every column timestamp is one of the collection timestamps.
                    let p = timestamps.partition_point(|&x| x < t);
                    bitmap[p / 64] |= 1u64 << (p % 64);
                };
                if col.sorted {
                    col_ts.iter().for_each(|&t| set(t));
                } else {
                    sorted_buf.iter().for_each(|&(t, _)| set(t));
                }
            }
            let next = patterns.len() as u64;
            let p = match patterns.last() {
                Some(last) if *last == bitmap => next - 1,
                _ => *pattern_index.entry(bitmap.clone()).or_insert_with(|| {
                    patterns.push(bitmap.clone());
                    next
                }),
            };
            pattern_of.push(p);
            tags.push(encoder.encode(col_values, &mut data).tag);
        }

        let bitmap_bytes = timestamps.len().div_ceil(8);
        let mut payload = Vec::with_capacity(
            data.len()
                + patterns.len() * bitmap_bytes
                + order.len() * 3
                + timestamps.len() * 3
                + 64,
        );
        put_varint(&mut payload, timestamps.len() as u64);
        let mut prev = min_ts;
        for &t in &timestamps {
            put_varint(&mut payload, t.wrapping_sub(prev) as u64);
            prev = t;
        }
        put_varint(&mut payload, patterns.len() as u64);
        for pattern in &patterns {
            let bytes = pattern.iter().flat_map(|w| w.to_le_bytes());
            payload.extend(bytes.take(bitmap_bytes));
        }
        for &p in &pattern_of {
            put_varint(&mut payload, p);
        }
        payload.extend_from_slice(&tags);
        payload.extend_from_slice(&data);
        logs::encode(&self.log_events, min_ts, &mut payload)?;

        let spec = FrameSpec {
            kind: FrameKind::Block,
            meta,
            min_ts,
            max_ts,
            series: &ids,
        };
        frame::write_frame(&spec, &payload, zstd_level)
    }
}

/// The values of one series in a decoded block.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesColumn {
    pub series: SeriesId,
    /// One value per timestamp the series is present at, oldest first.
    pub values: Vec<f64>,
    /// How the values were stored.
    pub encoding: ValueEncoding,
    pattern: u32,
}

impl SeriesColumn {
    /// The timestamp of each value, in the same order.
    pub fn timestamps<'a>(&'a self, block: &'a DecodedBlock) -> impl Iterator<Item = i64> + 'a {
        block.present(self.pattern).map(|i| block.timestamps[i])
    }

    /// The column as samples.
    pub fn samples<'a>(&'a self, block: &'a DecodedBlock) -> impl Iterator<Item = Sample> + 'a {
        self.timestamps(block)
            .zip(self.values.iter())
            .map(|(timestamp_ms, &value)| Sample {
                timestamp_ms,
                value,
            })
    }
}

/// A block decoded into columns.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedBlock {
    pub header: FrameHeader,
    /// Every distinct collection timestamp in the block, ascending.
    pub timestamps: Vec<i64>,
    /// One column per covered series, in ascending series order.
    pub columns: Vec<SeriesColumn>,
    pub log_events: Vec<LogEvent>,
    /// Presence bitmaps over `timestamps`, 64 per word, least significant bit first.
    patterns: Vec<Vec<u64>>,
}

impl DecodedBlock {
    /// Indices into `timestamps` where pattern `p` has a value.
    fn present(&self, p: u32) -> impl Iterator<Item = usize> + '_ {
        self.patterns[p as usize]
            .iter()
            .enumerate()
            .flat_map(|(w, &word)| {
                let mut bits = word;
                std::iter::from_fn(move || {
                    (bits != 0).then(|| {
                        let b = bits.trailing_zeros() as usize;
                        bits &= bits - 1;
                        w * 64 + b
                    })
                })
            })
    }

    pub fn sample_count(&self) -> usize {
        self.columns.iter().map(|c| c.values.len()).sum()
    }

    /// The block in the shape it was pushed: one entry per collection timestamp,
    /// ascending, each with its samples in ascending series order.
    pub fn collections(&self) -> Vec<(i64, Vec<(SeriesId, f64)>)> {
        let mut out: Vec<(i64, Vec<(SeriesId, f64)>)> =
            self.timestamps.iter().map(|&t| (t, Vec::new())).collect();
        for col in &self.columns {
            for (i, &v) in self.present(col.pattern).zip(col.values.iter()) {
                out[i].1.push((col.series, v));
            }
        }
        out
    }

    /// Drops every collection at or before `after_ms`: the timestamps, each column's
    /// values at them, and the columns left empty; log events stay. The header's
    /// `min_ts` follows what remains. A puller that already wrote a head block's
    /// older collections uses it to write only the new ones.
    pub fn retain_after(&mut self, after_ms: i64) {
        let cut = self.timestamps.partition_point(|&t| t <= after_ms);
        if cut == 0 {
            return;
        }
        let remaining = self.timestamps.len() - cut;
        let mut dropped_per_pattern = Vec::with_capacity(self.patterns.len());
        for bits in &mut self.patterns {
            let before: usize = (0..cut)
                .filter(|&i| bits[i / 64] >> (i % 64) & 1 == 1)
                .count();
            dropped_per_pattern.push(before);
            *bits = shift_bits(bits, cut, remaining);
        }
        for col in &mut self.columns {
            col.values
                .drain(..dropped_per_pattern[col.pattern as usize]);
        }
        self.columns.retain(|c| !c.values.is_empty());
        self.timestamps.drain(..cut);
        let events = self.log_events.iter().map(|e| e.timestamp_ms);
        if let Some(min) = self
            .timestamps
            .first()
            .copied()
            .into_iter()
            .chain(events)
            .min()
        {
            self.header.min_ts = min;
        }
    }

    /// The column of `series`, if the block has one.
    pub fn column(&self, series: SeriesId) -> Option<&SeriesColumn> {
        self.columns
            .binary_search_by_key(&series, |c| c.series)
            .ok()
            .map(|i| &self.columns[i])
    }
}

/// Bits `from..from + len` of `bits` as a bitmap of `len` bits starting at bit 0.
fn shift_bits(bits: &[u64], from: usize, len: usize) -> Vec<u64> {
    let (word, bit) = (from / 64, from % 64);
    let mut out: Vec<u64> = (0..len.div_ceil(64))
        .map(|i| {
            let lo = bits.get(word + i).copied().unwrap_or(0) >> bit;
            let hi = if bit == 0 {
                0
            } else {
                bits.get(word + i + 1).copied().unwrap_or(0) << (64 - bit)
            };
            lo | hi
        })
        .collect();
    if !len.is_multiple_of(64)
        && let Some(last) = out.last_mut()
    {
        *last &= (1u64 << (len % 64)) - 1;
    }
    out
}

/// Decodes one complete block frame (and nothing after it).
pub fn decode_block(frame_bytes: &[u8]) -> Result<DecodedBlock, DecodeError> {
    let frame = frame::read_single(frame_bytes, FrameKind::Block)?;
    frame.with_raw_payload(|raw| decode_payload(frame.header.clone(), raw, &|_| true))?
}

/// Decodes one complete block frame, keeping only the columns of the series for
/// which `keep` is true; the others are stepped over without being materialised.
/// The frame is checked as by [`decode_block`] (checksum, structure, time range),
/// except the values of skipped columns, which are only walked to find their end:
/// whatever this returns for a kept column, [`decode_block`] returns too.
pub fn decode_block_filtered(
    frame_bytes: &[u8],
    keep: &dyn Fn(SeriesId) -> bool,
) -> Result<DecodedBlock, DecodeError> {
    let frame = frame::read_single(frame_bytes, FrameKind::Block)?;
    frame.with_raw_payload(|raw| decode_payload(frame.header.clone(), raw, keep))?
}

/// Decodes a block payload, already checksummed and decompressed, that belongs
/// to `header`.
pub fn decode_block_payload(header: FrameHeader, raw: &[u8]) -> Result<DecodedBlock, DecodeError> {
    decode_payload(header, raw, &|_| true)
}

fn decode_payload(
    header: FrameHeader,
    raw: &[u8],
    keep: &dyn Fn(SeriesId) -> bool,
) -> Result<DecodedBlock, DecodeError> {
    let mut r = Reader::new(raw, 0, Section::Payload);
    let series_count = header.series_count as usize;
    let (min_ts, max_ts) = (header.min_ts, header.max_ts);

    // Timestamps: the first relative to min_ts, then strictly positive steps.
    let n_ts = r.count("timestamp count", MAX_SAMPLES_PER_BLOCK, 1)?;
    let mut timestamps = Vec::with_capacity(n_ts);
    let mut prev = i128::from(min_ts);
    for i in 0..n_ts {
        let at = r.offset();
        let step = i128::from(r.varint("timestamp step")?);
        if i > 0 && step == 0 {
            return Err(r.invalid_at(
                at,
                "timestamp step",
                "0; timestamps must be distinct and ascending",
            ));
        }
        let t = prev + step;
        if t > i128::from(max_ts) {
            return Err(r.invalid_at(
                at,
                "timestamp",
                format!("{t} is after the frame's max timestamp {max_ts}"),
            ));
        }
        timestamps.push(t as i64);
        prev = t;
    }

    // Presence patterns.
    let bitmap_bytes = n_ts.div_ceil(8);
    let n_patterns = r.count("pattern count", series_count, bitmap_bytes.max(1))?;
    if series_count > 0 && n_patterns == 0 {
        return Err(r.invalid_at(
            r.offset(),
            "pattern count",
            "0, but the frame covers series",
        ));
    }
    let mut patterns = Vec::with_capacity(n_patterns);
    let mut popcounts = Vec::with_capacity(n_patterns);
    for _ in 0..n_patterns {
        let at = r.offset();
        let bytes = r.bytes(bitmap_bytes, "presence pattern")?;
        let mut words = vec![0u64; n_ts.div_ceil(64)];
        for (i, &b) in bytes.iter().enumerate() {
            words[i / 8] |= u64::from(b) << (8 * (i % 8));
        }
        if n_ts % 8 != 0 && bytes[bitmap_bytes - 1] >> (n_ts % 8) != 0 {
            return Err(r.invalid_at(at, "presence pattern", "bits set past the last timestamp"));
        }
        let ones: u32 = words.iter().map(|w| w.count_ones()).sum();
        if ones == 0 {
            return Err(r.invalid_at(at, "presence pattern", "no timestamp set"));
        }
        patterns.push(words);
        popcounts.push(ones as usize);
    }

    // Column headers: pattern indices, then encoding tags.
    if series_count > r.remaining() {
        return Err(r.truncated("column headers", series_count * 2));
    }
    let mut pattern_of = Vec::with_capacity(series_count);
    let mut samples = 0usize;
    for _ in 0..series_count {
        let at = r.offset();
        let p = r.varint("pattern index")?;
        let Some(&ones) = popcounts.get(p as usize) else {
            return Err(r.limit_at(at, "pattern index", p, n_patterns as u64 - 1));
        };
        samples += ones;
        if samples > MAX_SAMPLES_PER_BLOCK {
            return Err(r.limit_at(
                at,
                "samples in the block",
                samples as u64,
                MAX_SAMPLES_PER_BLOCK as u64,
            ));
        }
        pattern_of.push(p as u32);
    }
    let tags_at = r.offset();
    let tags = r.bytes(series_count, "encoding tags")?;
    for (i, &tag) in tags.iter().enumerate() {
        if ValueEncoding::from_tag(tag).is_none() {
            return Err(r.invalid_at(
                tags_at + i,
                "value encoding",
                format!("{tag} is not one of 0 (constant), 1 (raw), 2 (xor), 3 (delta), 4 (delta of delta)"),
            ));
        }
    }

    let mut columns = Vec::with_capacity(series_count);
    let mut scratch = Vec::new();
    for ((series, &p), &tag) in header.series_ids().zip(&pattern_of).zip(tags) {
        let n = popcounts[p as usize];
        if !keep(series) {
            values::skip(&mut r, tag, n, &mut scratch)?;
            continue;
        }
        let mut values = Vec::with_capacity(n);
        values::decode(&mut r, tag, n, &mut values)?;
        columns.push(SeriesColumn {
            series,
            values,
            encoding: ValueEncoding::from_tag(tag).unwrap_or(ValueEncoding::Raw),
            pattern: p,
        });
    }

    let log_events = logs::decode(&mut r, min_ts, max_ts)?;
    r.finish("block payload")?;

    let range = timestamps
        .first()
        .map(|&t| (t, timestamps[timestamps.len() - 1]))
        .into_iter()
        .chain(log_events.iter().map(|e| (e.timestamp_ms, e.timestamp_ms)))
        .reduce(|a, b| (a.0.min(b.0), a.1.max(b.1)))
        .unwrap_or((0, 0));
    if range != (min_ts, max_ts) {
        return Err(DecodeError::Invalid {
            section: Section::Frame,
            offset: 32,
            what: "time range",
            detail: format!(
                "header says {min_ts}..={max_ts}, the contents span {}..={}",
                range.0, range.1
            ),
        });
    }

    Ok(DecodedBlock {
        header,
        timestamps,
        columns,
        log_events,
        patterns,
    })
}
