//! Series-dictionary frames from untrusted bytes. `pga_format::dictionary::decode` and
//! the body-level `dictionary::decode_payload` must return `Ok` or a typed
//! `DecodeError`: never panic, never allocate without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pga_format::{FrameKind, SeriesMeta, dictionary};
use pga_format_fuzz::{body_input, with_valid_checksum};

fn exercise(entries: &[SeriesMeta]) {
    for entry in entries {
        std::hint::black_box(entry.validate().is_ok());
        if let Some((name, _)) = entry.labels.first() {
            std::hint::black_box(entry.label(name));
        }
    }
}

fuzz_target!(|data: &[u8]| {
    // The bytes as received: the checksum must match.
    if let Ok((_, entries)) = dictionary::decode(data) {
        exercise(&entries);
    }
    // The same bytes with a matching checksum: header, decompression and payload.
    if let Some(fixed) = with_valid_checksum(data)
        && let Ok((_, entries)) = dictionary::decode(&fixed)
    {
        exercise(&entries);
    }
    // The payload decoder alone, behind a synthetic but well-formed header.
    if let Some((header, raw)) = body_input(FrameKind::Dictionary, data)
        && let Ok(entries) = dictionary::decode_payload(&header, raw)
    {
        exercise(&entries);
    }
});
