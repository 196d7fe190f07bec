//! Block frames from untrusted bytes. `pga_format::decode_block`,
//! `decode_block_filtered` and the body-level `decode_block_payload` must return `Ok`
//! or a typed `DecodeError`: never panic, never allocate without bound. On success the
//! block's accessors are exercised too: they must hold up on anything the decoder
//! accepted.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pga_format::{
    DecodedBlock, FrameKind, LogEvent, SeriesId, decode_block, decode_block_filtered,
    decode_block_payload,
};
use pga_format_fuzz::{body_input, with_valid_checksum};

fn exercise(block: &DecodedBlock) {
    std::hint::black_box(block.sample_count());
    for column in &block.columns {
        std::hint::black_box(column.samples(block).count());
        std::hint::black_box(block.column(column.series).is_some());
    }
    std::hint::black_box(block.collections());
}

/// The filter the filtered decoder is run with: every other series.
fn keep(id: SeriesId) -> bool {
    id.0.is_multiple_of(2)
}

/// Per kept series: its timestamps and the bits of its values.
fn kept_columns(block: &DecodedBlock) -> Vec<(SeriesId, Vec<(i64, u64)>)> {
    block
        .columns
        .iter()
        .filter(|c| keep(c.series))
        .map(|c| {
            let samples = c
                .samples(block)
                .map(|s| (s.timestamp_ms, s.value.to_bits()));
            (c.series, samples.collect())
        })
        .collect()
}

/// The log events with each duration as its bits: a decoded duration may be NaN, which
/// never equals itself, so `==` on the events would fail on identical bytes.
fn log_events_bitwise(block: &DecodedBlock) -> Vec<(LogEvent, Option<u64>)> {
    block
        .log_events
        .iter()
        .map(|event| {
            let bits = event.duration_ms.map(f64::to_bits);
            let mut event = event.clone();
            event.duration_ms = None;
            (event, bits)
        })
        .collect()
}

/// Full and filtered decoding of the same bytes.
fn decode_both(frame: &[u8]) {
    let full = decode_block(frame);
    let filtered = decode_block_filtered(frame, &keep);
    if let Ok(block) = &full {
        exercise(block);
    }
    if let Ok(block) = &filtered {
        exercise(block);
    }
    // When both accept the frame, the filtered block is the full one restricted to the
    // kept series (decode_block_filtered's contract); nothing is claimed when only one
    // of them accepts it.
    if let (Ok(full), Ok(filtered)) = (&full, &filtered) {
        assert!(filtered.columns.iter().all(|c| keep(c.series)));
        assert_eq!(kept_columns(full), kept_columns(filtered));
        assert_eq!(log_events_bitwise(full), log_events_bitwise(filtered));
    }
}

fuzz_target!(|data: &[u8]| {
    // The bytes as received: the checksum must match.
    decode_both(data);
    // The same bytes with a matching checksum: header, decompression and payload.
    if let Some(fixed) = with_valid_checksum(data) {
        decode_both(&fixed);
    }
    // The payload decoder alone, behind a synthetic but well-formed header.
    if let Some((header, raw)) = body_input(FrameKind::Block, data)
        && let Ok(block) = decode_block_payload(header, raw)
    {
        exercise(&block);
    }
});
