//! Decoding hostile bytes never allocates from an unchecked length. This file
//! holds a single test so no other test's allocations are counted.

mod common;

use std::alloc::System;

use common::{FIXTURES, decode, fixture, raw_payload, reframe};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// FORMAT.md, "Limits": a decoder allocates at most a fixed multiple of its input,
/// plus 8 bytes per decoded sample, and a block cannot decode to more samples
/// than series × timestamps, each timestamp costing at least one input byte.
fn allowed(frame_len: usize, raw_len: usize, series: usize) -> usize {
    64 * (frame_len + raw_len) + 8 * series.max(1) * raw_len + (64 << 10)
}

#[test]
fn hostile_payloads_allocate_within_bounds() {
    let mut worst = 0f64;
    for name in FIXTURES {
        let frame = fixture(name);
        let raw = raw_payload(&frame);
        let series = u32::from_le_bytes(frame[48..52].try_into().expect("4 bytes")) as usize;
        let mut damaged = raw.clone();
        let mut check = |bytes: &[u8]| {
            let framed = reframe(&frame, bytes);
            let region = Region::new(GLOBAL);
            let _result = decode(name, &framed);
            let used = region.change().bytes_allocated;
            let limit = allowed(framed.len(), bytes.len(), series);
            assert!(
                used <= limit,
                "{name}: decoding {} bytes allocated {used}, limit {limit}",
                framed.len()
            );
            worst = worst.max(used as f64 / limit as f64);
        };
        for pos in 0..raw.len() {
            for v in [0x00, 0x7f, 0xff, 0x80, raw[pos] ^ 0x04] {
                damaged[pos] = v;
                check(&damaged);
            }
            damaged[pos] = raw[pos];
        }
        for len in 0..raw.len() {
            check(&raw[..len]);
        }
        // Counts that claim far more than the input holds.
        for claim in [u32::MAX as u64, 1 << 24, 1 << 40] {
            let mut hostile = Vec::new();
            let mut v = claim;
            while v >= 0x80 {
                hostile.push(v as u8 | 0x80);
                v >>= 7;
            }
            hostile.push(v as u8);
            hostile.extend_from_slice(&[0x01; 16]);
            check(&hostile);
        }
    }
    assert!(worst > 0.0);
}
