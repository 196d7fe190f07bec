//! Damaged frames: every truncation and every single-byte change of a reference
//! frame is a typed error, never a panic.

mod common;

use common::{FIXTURES, decode, fixture, raw_payload, reframe};
use pga_format::{DecodeError, Section, decode_block, frame::read_frame};

#[test]
fn every_truncation_is_an_error() {
    for name in FIXTURES {
        let bytes = fixture(name);
        decode(name, &bytes).expect("fixture decodes");
        for len in 0..bytes.len() {
            let err = decode(name, &bytes[..len]).expect_err("truncated frame must not decode");
            assert!(
                matches!(err, DecodeError::Truncated { .. }),
                "{name} cut to {len} bytes: {err}"
            );
        }
    }
}

#[test]
fn every_single_byte_change_is_an_error() {
    for name in FIXTURES {
        let bytes = fixture(name);
        let mut damaged = bytes.clone();
        for pos in 0..bytes.len() {
            for delta in 1..=255u8 {
                damaged[pos] = bytes[pos].wrapping_add(delta);
                assert!(
                    decode(name, &damaged).is_err(),
                    "{name}: byte {pos} changed to {:#04x} still decodes",
                    damaged[pos]
                );
            }
            damaged[pos] = bytes[pos];
        }
    }
}

#[test]
fn trailing_bytes_after_a_frame_are_an_error() {
    let mut bytes = fixture("block-tiny");
    bytes.push(0);
    let err = decode_block(&bytes).unwrap_err();
    assert!(
        matches!(
            err,
            DecodeError::TrailingBytes {
                offset: 105,
                count: 1,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn errors_name_the_problem_and_where() {
    let bytes = fixture("block-tiny");

    let mut bad = bytes.clone();
    bad[0] = b'X';
    assert_eq!(
        decode_block(&bad).unwrap_err(),
        DecodeError::BadMagic { found: *b"XGAF" }
    );

    let mut bad = bytes.clone();
    bad[4] = 2;
    assert_eq!(
        decode_block(&bad).unwrap_err(),
        DecodeError::UnsupportedVersion { version: 2 }
    );

    let mut bad = bytes.clone();
    bad[80] ^= 0x40;
    let err = decode_block(&bad).unwrap_err();
    assert!(matches!(err, DecodeError::ChecksumMismatch { .. }), "{err}");
    assert!(err.to_string().contains("checksum"), "{err}");

    let err = decode_block(&bytes[..70]).unwrap_err();
    assert_eq!(
        err,
        DecodeError::Truncated {
            section: Section::Frame,
            offset: 64,
            what: "series ranges, payload and checksum",
            needed: 41,
            available: 6,
        }
    );
    assert_eq!(
        err.to_string(),
        "frame truncated at offset 64: series ranges, payload and checksum needs 41 bytes, 6 left"
    );

    // A dictionary frame is not a block.
    let err = decode_block(&fixture("dictionary")).unwrap_err();
    assert!(matches!(err, DecodeError::WrongKind { .. }), "{err}");
}

#[test]
fn oversized_lengths_are_rejected_before_allocating() {
    let bytes = fixture("block-tiny");
    for (offset, what) in [
        (48, "series count"),
        (52, "series ranges length"),
        (56, "payload length"),
        (60, "raw payload length"),
    ] {
        let mut bad = bytes.clone();
        bad[offset..offset + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        let err = read_frame(&bad).unwrap_err();
        assert!(
            matches!(err, DecodeError::LimitExceeded { what: w, offset: o, .. } if w == what && o == offset),
            "{what}: {err}"
        );
    }
}

/// With a valid checksum around a damaged payload, the payload decoder itself must
/// answer every change and truncation with a result or a typed error.
#[test]
fn damaged_payloads_behind_valid_checksums_never_panic() {
    for name in FIXTURES {
        let frame = fixture(name);
        let raw = raw_payload(&frame);
        decode(name, &reframe(&frame, &raw)).expect("re-framed fixture decodes");
        for len in 0..raw.len() {
            assert!(
                decode(name, &reframe(&frame, &raw[..len])).is_err(),
                "{name}: payload cut to {len}"
            );
        }
        let mut damaged = raw.clone();
        for pos in 0..raw.len() {
            for v in [
                0x00,
                0x01,
                0x7f,
                0x80,
                0xff,
                raw[pos] ^ 0x01,
                raw[pos] ^ 0x10,
            ] {
                damaged[pos] = v;
                let _result = decode(name, &reframe(&frame, &damaged));
            }
            damaged[pos] = raw[pos];
        }
    }
}

#[test]
fn payload_errors_carry_payload_offsets() {
    let frame = fixture("block-tiny");
    let mut raw = raw_payload(&frame);
    // Payload byte 9 is the first pattern-index varint (FORMAT.md worked example);
    // index 9 does not exist.
    assert_eq!(raw[9], 0);
    raw[9] = 9;
    let err = decode_block(&reframe(&frame, &raw)).unwrap_err();
    assert_eq!(
        err,
        DecodeError::LimitExceeded {
            section: Section::Payload,
            offset: 9,
            what: "pattern index",
            value: 9,
            max: 1,
        }
    );
}
