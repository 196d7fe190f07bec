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
        // The filtered decoder steps over the columns it skips; it must be just as
        // careful as the full one.
        let filtered = pga_format::decode_block_filtered(bytes, &|s| s.0 % 2 == 0).map(|_| ());
        let full = pga_format::decode_block(bytes).map(|_| ());
        assert_eq!(
            filtered.is_ok(),
            full.is_ok(),
            "filtered and full decode disagree"
        );
        full
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
