//! Helpers shared by the corruption tests.

#![allow(dead_code)]

use std::fs;
use std::path::PathBuf;

use pga_format::frame::read_frame;

pub const FIXTURES: [&str; 4] = ["block-tiny", "block-empty", "block-mixed", "dictionary"];

pub fn fixture(name: &str) -> Vec<u8> {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/v1/{name}.bin"));
    fs::read(path).expect("fixture")
}

/// Decodes `bytes` as the kind of frame `name` is.
pub fn decode(name: &str, bytes: &[u8]) -> Result<(), pga_format::DecodeError> {
    if name == "dictionary" {
        pga_format::dictionary::decode(bytes).map(|_| ())
    } else {
        let keep = |s: pga_format::SeriesId| s.0.is_multiple_of(2);
        let filtered = pga_format::decode_block_filtered(bytes, &keep);
        let full = pga_format::decode_block(bytes);
        if let Ok(full) = &full {
            // Whatever the full decoder accepts, the filtered one reads the same.
            let filtered = filtered.expect("the filtered decoder accepts what the full one does");
            let bits = |c: &pga_format::SeriesColumn| {
                (
                    c.series,
                    c.values.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                )
            };
            let kept: Vec<_> = full
                .columns
                .iter()
                .filter(|c| keep(c.series))
                .map(bits)
                .collect();
            assert_eq!(filtered.columns.iter().map(bits).collect::<Vec<_>>(), kept);
        }
        full.map(|_| ())
    }
}

/// Re-frames `frame` around `raw` as an uncompressed payload with a valid checksum
/// (FORMAT.md, "Frame"), so the payload decoder itself sees the bytes.
pub fn reframe(frame: &[u8], raw: &[u8]) -> Vec<u8> {
    let ranges_len = u32::from_le_bytes(frame[52..56].try_into().expect("4 bytes")) as usize;
    let mut out = frame[..64].to_vec();
    out[7] = 0; // compression: none
    out[56..60].copy_from_slice(&(raw.len() as u32).to_le_bytes());
    out[60..64].copy_from_slice(&(raw.len() as u32).to_le_bytes());
    out.extend_from_slice(&frame[64..64 + ranges_len]);
    out.extend_from_slice(raw);
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// The decompressed payload of a valid frame.
pub fn raw_payload(frame: &[u8]) -> Vec<u8> {
    let (f, _) = read_frame(frame).expect("valid fixture");
    f.raw_payload().expect("valid payload").into_owned()
}
