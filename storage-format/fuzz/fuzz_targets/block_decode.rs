//! Block frames from untrusted bytes. `pga_format::decode_block` and the body-level
//! `pga_format::decode_block_payload` must return `Ok` or a typed `DecodeError`: never
//! panic, never allocate without bound. On success the block's accessors are exercised
//! too: they must hold up on anything the decoder accepted.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pga_format::{DecodedBlock, FrameKind, decode_block, decode_block_payload};
use pga_format_fuzz::{body_input, with_valid_checksum};

fn exercise(block: &DecodedBlock) {
    std::hint::black_box(block.sample_count());
    for column in &block.columns {
        std::hint::black_box(column.samples(block).count());
        std::hint::black_box(block.column(column.series).is_some());
    }
    std::hint::black_box(block.collections());
}

fuzz_target!(|data: &[u8]| {
    // The bytes as received: the checksum must match.
    if let Ok(block) = decode_block(data) {
        exercise(&block);
    }
    // The same bytes with a matching checksum: header, decompression and payload.
    if let Some(fixed) = with_valid_checksum(data)
        && let Ok(block) = decode_block(&fixed)
    {
        exercise(&block);
    }
    // The payload decoder alone, behind a synthetic but well-formed header.
    if let Some((header, raw)) = body_input(FrameKind::Block, data)
        && let Ok(block) = decode_block_payload(header, raw)
    {
        exercise(&block);
    }
});
