//! Frames: the envelope around every block and series-dictionary payload
//! (FORMAT.md, "Frame").

use crate::error::{DecodeError, EncodeError, Section};
use crate::model::{AgentId, SeriesId};
use crate::wire::{Reader, put_varint};

/// `"PGAF"`, the first four bytes of every frame (FORMAT.md, "Frame").
pub const MAGIC: [u8; 4] = *b"PGAF";
/// The format version this build writes and reads.
pub const FORMAT_VERSION: u16 = 1;
/// Bytes of the fixed frame header, magic through `raw_len` (FORMAT.md, "Frame").
pub const HEADER_LEN: usize = 64;
/// Bytes of the CRC32C trailer.
pub const TRAILER_LEN: usize = 4;
/// Largest series-range section a frame may carry.
pub const MAX_RANGES_LEN: usize = 16 << 20;
/// Largest payload, compressed or not.
pub const MAX_PAYLOAD_LEN: usize = 64 << 20;
/// Largest payload after decompression.
pub const MAX_RAW_LEN: usize = 64 << 20;
/// Most series one frame may cover.
pub const MAX_SERIES_PER_FRAME: usize = 1 << 24;

/// What a frame's payload holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameKind {
    /// Samples and log events of one agent for one time window.
    Block,
    /// Series-dictionary entries.
    Dictionary,
}

impl FrameKind {
    pub(crate) const fn code(self) -> u8 {
        match self {
            FrameKind::Block => 1,
            FrameKind::Dictionary => 2,
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            FrameKind::Block => "block",
            FrameKind::Dictionary => "dictionary",
        }
    }
}

/// How a frame's payload is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    None,
    Zstd,
}

/// Who wrote a frame and where it sits in that writer's sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FrameMeta {
    pub agent_id: AgentId,
    /// Block sequence number (monotonic per agent); for dictionary frames, the
    /// dictionary frame's own sequence.
    pub sequence: u64,
}

/// A run of consecutive series ids, `start .. start + len`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SeriesRange {
    pub start: u64,
    pub len: u64,
}

/// The decoded fixed header and series ranges of a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameHeader {
    pub version: u16,
    pub kind: FrameKind,
    pub compression: Compression,
    pub agent_id: AgentId,
    pub sequence: u64,
    /// First timestamp (ms) of the frame's contents; 0 when it has none.
    pub min_ts: i64,
    /// Last timestamp (ms) of the frame's contents; 0 when it has none.
    pub max_ts: i64,
    /// Number of series ids covered.
    pub series_count: u64,
    /// The covered ids as ascending, non-adjacent runs.
    pub series_ranges: Vec<SeriesRange>,
    /// Payload length after decompression.
    pub raw_len: u32,
}

impl FrameHeader {
    /// The covered series ids, ascending.
    pub fn series_ids(&self) -> impl Iterator<Item = SeriesId> + '_ {
        self.series_ranges
            .iter()
            .flat_map(|r| (r.start..=u64::MAX).take(r.len as usize).map(SeriesId))
    }

    /// Whether the frame covers `id`.
    pub fn covers(&self, id: SeriesId) -> bool {
        let i = self.series_ranges.partition_point(|r| r.start <= id.0);
        i > 0 && id.0 - self.series_ranges[i - 1].start < self.series_ranges[i - 1].len
    }
}

/// One frame as found in a byte buffer, checksum verified, payload not yet decompressed.
#[derive(Debug, Clone)]
pub struct Frame<'a> {
    pub header: FrameHeader,
    /// The payload bytes as stored (compressed when `header.compression` says so).
    pub payload: &'a [u8],
    /// Offset of the payload in the frame, for error messages.
    pub payload_offset: usize,
}

thread_local! {
    /// A zstd context and an output buffer per thread, reused from frame to frame.
    static SCRATCH: std::cell::RefCell<Option<(zstd::bulk::Decompressor<'static>, Vec<u8>)>> =
        const { std::cell::RefCell::new(None) };
}

/// A scratch buffer that grew past this is given back once a small payload comes.
const SCRATCH_KEEP: usize = 8 << 20;

impl<'a> Frame<'a> {
    /// Runs `f` on the payload after decompression (exactly `raw_len` bytes), reusing
    /// this thread's decompression context and buffer.
    pub fn with_raw_payload<R>(&self, f: impl FnOnce(&[u8]) -> R) -> Result<R, DecodeError> {
        if self.header.compression == Compression::None {
            return Ok(f(self.payload));
        }
        self.check_zstd_frame()?;
        let raw_len = self.header.raw_len as usize;
        let taken = SCRATCH.with(|s| s.borrow_mut().take());
        let (mut dctx, mut buf) = match taken {
            Some(t) => t,
            None => {
                let dctx =
                    zstd::bulk::Decompressor::new().map_err(|e| DecodeError::Decompress {
                        detail: e.to_string(),
                    })?;
                (dctx, Vec::new())
            }
        };
        if buf.capacity() > SCRATCH_KEEP && raw_len < buf.capacity() / 4 {
            buf = Vec::new();
        }
        buf.clear();
        buf.reserve(raw_len);
        let result = dctx
            .decompress_to_buffer(self.payload, &mut buf)
            .map_err(|e| DecodeError::Decompress {
                detail: e.to_string(),
            })
            .and_then(|n| {
                if n == raw_len {
                    Ok(f(&buf[..n]))
                } else {
                    Err(DecodeError::Decompress {
                        detail: format!(
                            "payload decompressed to {n} bytes, the frame header says {raw_len}"
                        ),
                    })
                }
            });
        SCRATCH.with(|s| *s.borrow_mut() = Some((dctx, buf)));
        result
    }

    /// The payload is exactly one zstd frame declaring `raw_len` bytes of content.
    fn check_zstd_frame(&self) -> Result<(), DecodeError> {
        let raw_len = self.header.raw_len as usize;
        let declared = zstd::zstd_safe::get_frame_content_size(self.payload).map_err(|_| {
            DecodeError::Decompress {
                detail: "the payload does not start with a zstd frame header".into(),
            }
        })?;
        if declared != Some(raw_len as u64) {
            return Err(DecodeError::Decompress {
                detail: format!(
                    "zstd frame declares {declared:?} bytes of content, the frame header {raw_len}"
                ),
            });
        }
        match zstd::zstd_safe::find_frame_compressed_size(self.payload) {
            Ok(n) if n == self.payload.len() => Ok(()),
            _ => Err(DecodeError::Decompress {
                detail: "the payload is not exactly one complete zstd frame".into(),
            }),
        }
    }

    /// The payload after decompression, exactly `raw_len` bytes.
    pub fn raw_payload(&self) -> Result<std::borrow::Cow<'a, [u8]>, DecodeError> {
        let raw_len = self.header.raw_len as usize;
        match self.header.compression {
            Compression::None => Ok(std::borrow::Cow::Borrowed(self.payload)),
            Compression::Zstd => {
                self.check_zstd_frame()?;
                let raw = zstd::bulk::decompress(self.payload, raw_len).map_err(|e| {
                    DecodeError::Decompress {
                        detail: e.to_string(),
                    }
                })?;
                if raw.len() != raw_len {
                    return Err(DecodeError::Decompress {
                        detail: format!(
                            "payload decompressed to {} bytes, the frame header says {raw_len}",
                            raw.len()
                        ),
                    });
                }
                Ok(std::borrow::Cow::Owned(raw))
            }
        }
    }
}

/// Reads the frame at the start of `bytes`, verifying its bounds and checksum.
/// Returns the frame and the number of bytes it spans, so concatenated frames
/// can be walked one after another.
pub fn read_frame(bytes: &[u8]) -> Result<(Frame<'_>, usize), DecodeError> {
    let mut r = Reader::new(bytes, 0, Section::Frame);
    let magic: [u8; 4] = r.array("magic")?;
    if magic != MAGIC {
        return Err(DecodeError::BadMagic { found: magic });
    }
    let version = r.u16("format version")?;
    if version != FORMAT_VERSION {
        return Err(DecodeError::UnsupportedVersion { version });
    }
    let kind_offset = r.offset();
    let kind = match r.u8("frame kind")? {
        1 => FrameKind::Block,
        2 => FrameKind::Dictionary,
        other => {
            return Err(r.invalid_at(
                kind_offset,
                "frame kind",
                format!("{other} (1 = block, 2 = dictionary)"),
            ));
        }
    };
    let compression_offset = r.offset();
    let compression = match r.u8("compression")? {
        0 => Compression::None,
        1 => Compression::Zstd,
        other => {
            return Err(r.invalid_at(
                compression_offset,
                "compression",
                format!("{other} (0 = none, 1 = zstd)"),
            ));
        }
    };
    let agent_id = AgentId(r.array("agent id")?);
    let sequence = r.u64("sequence")?;
    let min_ts = r.i64("min timestamp")?;
    let max_ts = r.i64("max timestamp")?;
    if min_ts > max_ts {
        return Err(r.invalid_at(32, "time range", format!("min {min_ts} > max {max_ts}")));
    }
    let series_count = r.u32_at_most("series count", MAX_SERIES_PER_FRAME)? as u64;
    let ranges_len = r.u32_at_most("series ranges length", MAX_RANGES_LEN)?;
    let payload_len = r.u32_at_most("payload length", MAX_PAYLOAD_LEN)?;
    let raw_len = r.u32_at_most("raw payload length", MAX_RAW_LEN)? as u32;
    if compression == Compression::None && raw_len as usize != payload_len {
        return Err(r.invalid_at(
            60,
            "raw payload length",
            format!(
                "{raw_len} differs from the payload length {payload_len} of an uncompressed frame"
            ),
        ));
    }
    debug_assert_eq!(r.offset(), HEADER_LEN);
    let total = HEADER_LEN + ranges_len + payload_len + TRAILER_LEN;
    if bytes.len() < total {
        return Err(DecodeError::Truncated {
            section: Section::Frame,
            offset: HEADER_LEN,
            what: "series ranges, payload and checksum",
            needed: total - HEADER_LEN,
            available: bytes.len() - HEADER_LEN,
        });
    }
    let stored = u32::from_le_bytes([
        bytes[total - 4],
        bytes[total - 3],
        bytes[total - 2],
        bytes[total - 1],
    ]);
    let computed = crc32c::crc32c(&bytes[..total - TRAILER_LEN]);
    if stored != computed {
        return Err(DecodeError::ChecksumMismatch { stored, computed });
    }
    let ranges_bytes = r.bytes(ranges_len, "series ranges")?;
    let series_ranges = decode_ranges(ranges_bytes, series_count)?;
    let payload_offset = r.offset();
    let payload = r.bytes(payload_len, "payload")?;
    let header = FrameHeader {
        version,
        kind,
        compression,
        agent_id,
        sequence,
        min_ts,
        max_ts,
        series_count,
        series_ranges,
        raw_len,
    };
    Ok((
        Frame {
            header,
            payload,
            payload_offset,
        },
        total,
    ))
}

/// Reads exactly one frame of the given kind: no bytes may follow it.
pub(crate) fn read_single(bytes: &[u8], expected: FrameKind) -> Result<Frame<'_>, DecodeError> {
    let (frame, used) = read_frame(bytes)?;
    if frame.header.kind != expected {
        return Err(DecodeError::WrongKind {
            offset: 6,
            expected: expected.as_str(),
            found: frame.header.kind.as_str(),
        });
    }
    if used != bytes.len() {
        return Err(DecodeError::TrailingBytes {
            section: Section::Frame,
            offset: used,
            what: "frame",
            count: bytes.len() - used,
        });
    }
    Ok(frame)
}

fn decode_ranges(bytes: &[u8], series_count: u64) -> Result<Vec<SeriesRange>, DecodeError> {
    let mut r = Reader::new(bytes, HEADER_LEN, Section::Frame);
    // Every range takes at least two bytes.
    let mut ranges = Vec::with_capacity(bytes.len() / 2);
    // The smallest id the next range may start at; `None` once ids are exhausted.
    let mut next_min = Some(0u64);
    let mut covered = 0u64;
    while !r.is_empty() {
        let offset = r.offset();
        let gap = r.varint("series range gap")?;
        let len_minus_one = r.varint("series range length")?;
        let start = next_min.and_then(|m| m.checked_add(gap));
        let last = start.and_then(|s| s.checked_add(len_minus_one));
        let (Some(start), Some(last)) = (start, last) else {
            return Err(r.invalid_at(offset, "series range", "series id overflows 64 bits"));
        };
        covered = covered.saturating_add(len_minus_one).saturating_add(1);
        if covered > series_count {
            return Err(r.invalid_at(
                offset,
                "series ranges",
                format!("cover more than the {series_count} series the header declares"),
            ));
        }
        ranges.push(SeriesRange {
            start,
            len: len_minus_one + 1,
        });
        // Ranges are separated by at least one absent id; the gap counts from there.
        next_min = last.checked_add(2);
    }
    if covered != series_count {
        return Err(r.invalid_at(
            HEADER_LEN,
            "series ranges",
            format!("cover {covered} series, the header declares {series_count}"),
        ));
    }
    Ok(ranges)
}

/// Appends the canonical range encoding of ascending, distinct `ids`.
fn encode_ranges(ids: &[SeriesId], out: &mut Vec<u8>) {
    let mut next_min = 0u64;
    let mut i = 0;
    while i < ids.len() {
        let start = ids[i].0;
        let mut j = i + 1;
        while j < ids.len() && ids[j - 1].0.checked_add(1) == Some(ids[j].0) {
            j += 1;
        }
        let len_minus_one = (j - i - 1) as u64;
        put_varint(out, start - next_min);
        put_varint(out, len_minus_one);
        next_min = (start + len_minus_one).saturating_add(2);
        i = j;
    }
}

/// Everything `write_frame` needs besides the payload.
pub(crate) struct FrameSpec<'a> {
    pub kind: FrameKind,
    pub meta: FrameMeta,
    pub min_ts: i64,
    pub max_ts: i64,
    /// Ascending and distinct.
    pub series: &'a [SeriesId],
}

/// Builds a complete frame around `raw`, compressing it with zstd at `level` unless
/// that does not make it smaller.
pub(crate) fn write_frame(
    spec: &FrameSpec<'_>,
    raw: &[u8],
    level: i32,
) -> Result<Vec<u8>, EncodeError> {
    let limit = |what, value: usize, max: usize| {
        if value > max {
            Err(EncodeError::LimitExceeded {
                what,
                value: value as u64,
                max: max as u64,
            })
        } else {
            Ok(())
        }
    };
    limit(
        "series in one frame",
        spec.series.len(),
        MAX_SERIES_PER_FRAME,
    )?;
    limit("raw payload bytes", raw.len(), MAX_RAW_LEN)?;
    let compressed = if raw.is_empty() {
        None
    } else {
        let c = zstd::bulk::compress(raw, level).map_err(|e| EncodeError::Compress {
            detail: e.to_string(),
        })?;
        (c.len() < raw.len()).then_some(c)
    };
    let (compression, payload) = match &compressed {
        Some(c) => (Compression::Zstd, c.as_slice()),
        None => (Compression::None, raw),
    };
    let mut ranges = Vec::new();
    encode_ranges(spec.series, &mut ranges);
    limit("series ranges bytes", ranges.len(), MAX_RANGES_LEN)?;

    let mut out = Vec::with_capacity(HEADER_LEN + ranges.len() + payload.len() + TRAILER_LEN);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.push(spec.kind.code());
    out.push(match compression {
        Compression::None => 0,
        Compression::Zstd => 1,
    });
    out.extend_from_slice(&spec.meta.agent_id.0);
    out.extend_from_slice(&spec.meta.sequence.to_le_bytes());
    out.extend_from_slice(&spec.min_ts.to_le_bytes());
    out.extend_from_slice(&spec.max_ts.to_le_bytes());
    out.extend_from_slice(&(spec.series.len() as u32).to_le_bytes());
    out.extend_from_slice(&(ranges.len() as u32).to_le_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&(raw.len() as u32).to_le_bytes());
    debug_assert_eq!(out.len(), HEADER_LEN);
    out.extend_from_slice(&ranges);
    out.extend_from_slice(payload);
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(out)
}

/// Walks concatenated frames, as served by an agent's `/v1/blocks`.
#[derive(Debug, Clone)]
pub struct FrameIter<'a> {
    bytes: &'a [u8],
    offset: usize,
}

/// Iterates over the frames in `bytes`; stops at the first error.
pub fn frames(bytes: &[u8]) -> FrameIter<'_> {
    FrameIter { bytes, offset: 0 }
}

impl<'a> Iterator for FrameIter<'a> {
    /// The frame's offset in the buffer and its bytes, or the error found there.
    type Item = Result<(usize, &'a [u8]), (usize, DecodeError)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.offset >= self.bytes.len() {
            return None;
        }
        let at = self.offset;
        match read_frame(&self.bytes[at..]) {
            Ok((_, used)) => {
                self.offset += used;
                Some(Ok((at, &self.bytes[at..at + used])))
            }
            Err(e) => {
                self.offset = self.bytes.len();
                Some(Err((at, e)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[u64]) -> Vec<SeriesId> {
        v.iter().copied().map(SeriesId).collect()
    }

    #[test]
    fn ranges_round_trip() {
        for case in [
            vec![],
            vec![0],
            vec![0, 1, 2, 3],
            vec![5, 6, 9, 10, 11, 100],
            vec![u64::MAX - 1, u64::MAX],
            vec![0, u64::MAX],
        ] {
            let ids = ids(&case);
            let mut out = Vec::new();
            encode_ranges(&ids, &mut out);
            let ranges = decode_ranges(&out, ids.len() as u64).unwrap();
            let header_ids: Vec<SeriesId> = ranges
                .iter()
                .flat_map(|r| (r.start..=u64::MAX).take(r.len as usize).map(SeriesId))
                .collect();
            assert_eq!(header_ids, ids);
        }
    }

    #[test]
    fn frame_round_trips_and_detects_damage() {
        let spec = FrameSpec {
            kind: FrameKind::Block,
            meta: FrameMeta {
                agent_id: AgentId([7; 16]),
                sequence: 42,
            },
            min_ts: -5,
            max_ts: 10,
            series: &ids(&[1, 2, 3, 7]),
        };
        let frame = write_frame(&spec, b"hello hello hello hello hello", 3).unwrap();
        let (f, used) = read_frame(&frame).unwrap();
        assert_eq!(used, frame.len());
        assert_eq!(f.header.sequence, 42);
        assert_eq!(
            f.header.series_ids().collect::<Vec<_>>(),
            ids(&[1, 2, 3, 7])
        );
        assert!(f.header.covers(SeriesId(7)) && !f.header.covers(SeriesId(4)));
        assert_eq!(&*f.raw_payload().unwrap(), b"hello hello hello hello hello");

        let mut bad = frame.clone();
        bad[30] ^= 1;
        assert!(matches!(
            read_frame(&bad),
            Err(DecodeError::ChecksumMismatch { .. })
        ));
        assert!(matches!(
            read_frame(&frame[..frame.len() - 1]),
            Err(DecodeError::Truncated { .. })
        ));
    }
}
