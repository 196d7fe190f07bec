//! # pga-format
//!
//! The pgAnalytics v3 sample model, the columnar block codec and the wire frames
//! that agent and federator share. Every byte is specified in `FORMAT.md` beside
//! this crate. Encoding and decoding are pure functions: no I/O happens here. The
//! pull protocol's names ([`protocol`], specified in `PROTOCOL.md`) and the text
//! forms of values and label values ([`text`]) are defined here once too.
//!
//! ```
//! use pga_format::{AgentId, BlockBuilder, FrameMeta, SeriesId, decode_block};
//!
//! let mut builder = BlockBuilder::new();
//! builder.push_collection(1_700_000_000_000, &[(SeriesId(0), 1.0), (SeriesId(1), 42.5)])?;
//! builder.push_collection(1_700_000_010_000, &[(SeriesId(0), 2.0)])?;
//! let meta = FrameMeta { agent_id: AgentId([1; 16]), sequence: 7 };
//! let frame = builder.encode(meta, pga_format::DEFAULT_ZSTD_LEVEL)?;
//!
//! let block = decode_block(&frame)?;
//! assert_eq!(block.sample_count(), 3);
//! assert_eq!(block.collections()[1], (1_700_000_010_000, vec![(SeriesId(0), 2.0)]));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod block;
pub mod dictionary;
mod error;
pub mod frame;
mod info;
mod logs;
mod model;
pub mod protocol;
pub mod text;
mod values;
mod wire;

pub use block::{
    BlockBuilder, DEFAULT_ZSTD_LEVEL, DecodedBlock, MAX_SAMPLES_PER_BLOCK, SeriesColumn,
    decode_block, decode_block_filtered, decode_block_payload,
};
pub use error::{DecodeError, EncodeError, Section};
pub use frame::{Compression, FORMAT_VERSION, FrameHeader, FrameKind, FrameMeta, SeriesRange};
pub use info::describe;
pub use logs::MAX_LOG_EVENTS_PER_BLOCK;
pub use model::{
    AgentId, LogEvent, LogEventKind, MAX_LABELS, MAX_STRING_LEN, MetricKind, ModelError, Sample,
    SeriesId, SeriesMeta, Severity, is_valid_label_name, is_valid_metric_name, owned_labels,
};
pub use values::{MAX_SCALE, ValueEncoding};
