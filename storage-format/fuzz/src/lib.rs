//! Helpers shared by the pga-format fuzz targets.
//!
//! A fuzzer mutating a frame almost never produces a matching CRC32C, so the targets
//! also feed the decoders two kinds of input that get past the checksum:
//!
//! - [`with_valid_checksum`]: the input with its trailer rewritten, so a mutated
//!   golden fixture reaches header validation, decompression and the payload decoder;
//! - [`body_input`]: a frame header built from a few leading bytes plus the rest as an
//!   uncompressed payload, for the body-level decoders (`decode_block_payload`,
//!   `dictionary::decode_payload`).
//!
//! Both only ever produce what `pga_format::frame::read_frame` itself could return for
//! some well-formed frame, so a crash they find is reachable by untrusted bytes.

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use pga_format::frame::{MAX_RAW_LEN, TRAILER_LEN};
use pga_format::{AgentId, Compression, FORMAT_VERSION, FrameHeader, FrameKind, SeriesRange};

/// `data` with its last `TRAILER_LEN` bytes replaced by the little-endian CRC32C of
/// everything before them (the checksum's scope when `data` is exactly one frame).
/// `None` when `data` is too short to have a trailer.
pub fn with_valid_checksum(data: &[u8]) -> Option<Vec<u8>> {
    let body_len = data.len().checked_sub(TRAILER_LEN)?;
    let mut fixed = data.to_vec();
    let crc = crc32c::crc32c(&data[..body_len]);
    fixed[body_len..].copy_from_slice(&crc.to_le_bytes());
    Some(fixed)
}

/// Splits `data` into a synthetic frame header of `kind` and the uncompressed payload
/// that follows it. The header keeps every invariant `read_frame` checks: the current
/// version, `min_ts <= max_ts`, series ranges ascending, non-adjacent, without overflow
/// and adding up to `series_count`, and `raw_len` equal to the payload's length.
pub fn body_input(kind: FrameKind, data: &[u8]) -> Option<(FrameHeader, &[u8])> {
    build_body_input(kind, Unstructured::new(data))
        .ok()
        .flatten()
}

fn build_body_input<'a>(
    kind: FrameKind,
    mut u: Unstructured<'a>,
) -> Result<Option<(FrameHeader, &'a [u8])>> {
    let min_ts: i64 = u.arbitrary()?;
    let span: u32 = u.arbitrary()?;
    let max_ts = min_ts.saturating_add(i64::from(span));
    let n_ranges = u.int_in_range(0u8..=4)?;
    let mut series_ranges = Vec::with_capacity(usize::from(n_ranges));
    let mut series_count = 0u64;
    // The smallest id the next range may start at.
    let mut next_min = 0u64;
    for i in 0..n_ranges {
        // The first range may start anywhere (ids near u64::MAX included); later gaps
        // stay small so that several ranges fit.
        let gap = if i == 0 {
            u.arbitrary::<u64>()?
        } else {
            u64::from(u.arbitrary::<u8>()?)
        };
        let len = u64::from(u.arbitrary::<u8>()?) + 1;
        let Some(start) = next_min.checked_add(gap) else {
            break;
        };
        let Some(last) = start.checked_add(len - 1) else {
            break;
        };
        series_ranges.push(SeriesRange { start, len });
        series_count += len;
        match last.checked_add(2) {
            Some(n) => next_min = n,
            None => break,
        }
    }
    let raw = u.take_rest();
    if raw.len() > MAX_RAW_LEN {
        return Ok(None);
    }
    let header = FrameHeader {
        version: FORMAT_VERSION,
        kind,
        compression: Compression::None,
        agent_id: AgentId([0; 16]),
        sequence: 0,
        min_ts,
        max_ts,
        series_count,
        series_ranges,
        raw_len: raw.len() as u32,
    };
    Ok(Some((header, raw)))
}
