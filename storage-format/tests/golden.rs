//! Golden vectors: committed frames from `tests/fixtures/v1/` must decode to the
//! contents their `.expected.json` files state. Never regenerate these files; a
//! format change bumps the version and adds a new directory.

use std::fs;
use std::path::PathBuf;

use pga_format::{Compression, DecodedBlock, FrameHeader, ValueEncoding, decode_block, dictionary};
use serde_json::{Value, json};

fn fixture(name: &str) -> (Vec<u8>, Value) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1");
    let bin = fs::read(dir.join(format!("{name}.bin"))).expect("fixture frame");
    let text =
        fs::read_to_string(dir.join(format!("{name}.expected.json"))).expect("fixture expectation");
    (
        bin,
        serde_json::from_str(&text).expect("expectation is JSON"),
    )
}

fn hex(v: f64) -> String {
    format!("{:016x}", v.to_bits())
}

fn header_json(h: &FrameHeader) -> Value {
    json!({
        "kind": h.kind.as_str(),
        "version": h.version,
        "compression": match h.compression { Compression::None => "none", Compression::Zstd => "zstd" },
        "agent_id": h.agent_id.to_string(),
        "sequence": h.sequence,
        "min_ts": h.min_ts,
        "max_ts": h.max_ts,
        "series": h.series_ids().map(|s| s.0).collect::<Vec<_>>(),
    })
}

fn block_json(b: &DecodedBlock) -> Value {
    let mut v = header_json(&b.header);
    let samples: Vec<Value> = b
        .columns
        .iter()
        .flat_map(|c| {
            c.samples(b)
                .map(move |s| json!([c.series.0, s.timestamp_ms, hex(s.value)]))
        })
        .collect();
    let logs: Vec<Value> = b
        .log_events
        .iter()
        .map(|e| {
            json!({
                "timestamp_ms": e.timestamp_ms,
                "severity": e.severity.as_str(),
                "kind": e.kind.as_str(),
                "sqlstate": e.sqlstate.map(|c| String::from_utf8_lossy(&c).into_owned()),
                "pid": e.pid,
                "instance": e.instance,
                "user": e.user,
                "database": e.database,
                "application": e.application,
                "message": e.message,
                "duration_ms": e.duration_ms.map(hex),
            })
        })
        .collect();
    v["samples"] = Value::Array(samples);
    v["log_events"] = Value::Array(logs);
    v
}

#[test]
fn block_fixtures_decode_to_their_expected_contents() {
    for name in ["block-tiny", "block-empty", "block-mixed"] {
        let (bin, expected) = fixture(name);
        let block = decode_block(&bin).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(block_json(&block), expected, "{name}");
    }
}

#[test]
fn dictionary_fixture_decodes_to_its_expected_contents() {
    let (bin, expected) = fixture("dictionary");
    let (header, entries) = dictionary::decode(&bin).unwrap();
    let mut v = header_json(&header);
    v["entries"] = entries
        .iter()
        .map(|e| {
            json!({
                "id": e.id.0,
                "name": e.name,
                "kind": e.kind.as_str(),
                "unit": e.unit,
                "help": e.help,
                "labels": e.labels.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>(),
            })
        })
        .collect();
    assert_eq!(v, expected);
}

#[test]
fn fixtures_cover_every_value_encoding() {
    // The worked example in FORMAT.md is `block-tiny.bin`; its payload is stored
    // uncompressed so every byte can be read off the page.
    let (bin, _) = fixture("block-tiny");
    let (frame, _) = pga_format::frame::read_frame(&bin).unwrap();
    assert_eq!(frame.header.compression, Compression::None);
    // The mixed block exercises every value encoding.
    let (bin, _) = fixture("block-mixed");
    let block = decode_block(&bin).unwrap();
    let mut seen: Vec<ValueEncoding> = block.columns.iter().map(|c| c.encoding).collect();
    seen.sort_by_key(|e| e.as_str());
    seen.dedup();
    assert_eq!(seen.len(), 5, "block-mixed uses {seen:?}");
}
