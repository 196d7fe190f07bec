//! Errors of encoding and decoding.

use std::fmt;

use crate::model::ModelError;

/// Which part of a frame an offset counts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// Offsets from the first byte of the frame (the magic).
    Frame,
    /// Offsets from the first byte of the decompressed payload.
    Payload,
}

impl fmt::Display for Section {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Section::Frame => "frame",
            Section::Payload => "payload",
        })
    }
}

/// Why bytes could not be decoded. Every variant names where the problem is.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    #[error(
        "{section} truncated at offset {offset}: {what} needs {needed} bytes, {available} left"
    )]
    Truncated {
        section: Section,
        offset: usize,
        what: &'static str,
        needed: usize,
        available: usize,
    },
    #[error("not a pgAnalytics frame: magic is {found:02x?}, expected \"PGAF\" (50 47 41 46)")]
    BadMagic { found: [u8; 4] },
    #[error("frame format version {version} is not supported (this build reads version 1)")]
    UnsupportedVersion { version: u16 },
    #[error("frame checksum mismatch: stored crc32c {stored:#010x}, computed {computed:#010x}")]
    ChecksumMismatch { stored: u32, computed: u32 },
    #[error("{section} offset {offset}: {what} is {value}, the limit is {max}")]
    LimitExceeded {
        section: Section,
        offset: usize,
        what: &'static str,
        value: u64,
        max: u64,
    },
    #[error("{section} offset {offset}: invalid {what}: {detail}")]
    Invalid {
        section: Section,
        offset: usize,
        what: &'static str,
        detail: String,
    },
    #[error("frame offset {offset}: expected a {expected} frame, found {found}")]
    WrongKind {
        offset: usize,
        expected: &'static str,
        found: &'static str,
    },
    #[error("payload does not decompress: {detail}")]
    Decompress { detail: String },
    #[error("{section} offset {offset}: {count} unexpected trailing bytes after the {what}")]
    TrailingBytes {
        section: Section,
        offset: usize,
        what: &'static str,
        count: usize,
    },
    #[error("payload offset {offset}: invalid series {id}: {error}")]
    InvalidSeries {
        offset: usize,
        id: u64,
        error: ModelError,
    },
}

/// Why a block or dictionary frame could not be encoded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    #[error(
        "series {series} has two samples at timestamp {timestamp_ms}; keep one sample per series and timestamp"
    )]
    DuplicateSample { series: u64, timestamp_ms: i64 },
    #[error("{what} is {value}, over the format limit of {max}; seal the block earlier")]
    LimitExceeded {
        what: &'static str,
        value: u64,
        max: u64,
    },
    #[error("series {id} appears twice in the dictionary frame")]
    DuplicateSeries { id: u64 },
    #[error("invalid series {id}: {error}")]
    InvalidSeries { id: u64, error: ModelError },
    #[error("invalid log event at {timestamp_ms}: {error}")]
    InvalidLogEvent {
        timestamp_ms: i64,
        error: ModelError,
    },
    #[error("zstd compression failed: {detail}")]
    Compress { detail: String },
}
