//! Concatenated frames from untrusted bytes, as a puller receives them from an agent's
//! `/v1/blocks`: `pga_format::frame::read_frame` is called in a loop until the input is
//! used up or a frame is rejected, and each frame found is decompressed and decoded by
//! its kind. None of it may panic or allocate without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pga_format::frame::{self, Frame};
use pga_format::{FrameKind, decode_block_payload, dictionary};

fn decode_contents(frame: &Frame<'_>) {
    let Ok(raw) = frame.raw_payload() else { return };
    match frame.header.kind {
        FrameKind::Block => {
            std::hint::black_box(decode_block_payload(frame.header.clone(), &raw).is_ok());
        }
        FrameKind::Dictionary => {
            std::hint::black_box(dictionary::decode_payload(&frame.header, &raw).is_ok());
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while !rest.is_empty() {
        let Ok((frame, consumed)) = frame::read_frame(rest) else {
            break;
        };
        decode_contents(&frame);
        // `consumed` is the length of the frame found at the start of `rest`
        // (read_frame's contract); a zero or out-of-range value would break every
        // caller that walks frames, so it is a finding, not something to skip.
        assert!(
            consumed > 0 && consumed <= rest.len(),
            "read_frame reported {consumed} bytes consumed of {}",
            rest.len()
        );
        rest = &rest[consumed..];
    }
    // The crate's own walker over the same bytes.
    for item in frame::frames(data) {
        if item.is_err() {
            break;
        }
    }
});
