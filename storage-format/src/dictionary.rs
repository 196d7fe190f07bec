//! Series-dictionary frames: the metric name, labels, kind, unit and help of each
//! series id (FORMAT.md, "Dictionary payload").

use crate::error::{DecodeError, EncodeError, Section};
use crate::frame::{self, FrameHeader, FrameKind, FrameMeta, FrameSpec};
use crate::model::{MAX_LABELS, MetricKind, SeriesMeta};
use crate::wire::{Reader, put_str, put_varint};

/// Encodes `entries` as one dictionary frame. Entries may come in any order; each
/// id may appear once. The frame's time range is zero (reserved in version 1).
pub fn encode(
    meta: FrameMeta,
    entries: &[SeriesMeta],
    zstd_level: i32,
) -> Result<Vec<u8>, EncodeError> {
    let mut sorted: Vec<&SeriesMeta> = entries.iter().collect();
    sorted.sort_unstable_by_key(|e| e.id);
    if let Some(w) = sorted.windows(2).find(|w| w[0].id == w[1].id) {
        return Err(EncodeError::DuplicateSeries { id: w[0].id.0 });
    }
    let mut payload = Vec::new();
    put_varint(&mut payload, sorted.len() as u64);
    for e in &sorted {
        e.validate()
            .map_err(|error| EncodeError::InvalidSeries { id: e.id.0, error })?;
        payload.push(e.kind.code());
        put_str(&mut payload, &e.name);
        put_str(&mut payload, &e.unit);
        put_str(&mut payload, &e.help);
        put_varint(&mut payload, e.labels.len() as u64);
        for (name, value) in &e.labels {
            put_str(&mut payload, name);
            put_str(&mut payload, value);
        }
    }
    let ids: Vec<_> = sorted.iter().map(|e| e.id).collect();
    let spec = FrameSpec {
        kind: FrameKind::Dictionary,
        meta,
        min_ts: 0,
        max_ts: 0,
        series: &ids,
    };
    frame::write_frame(&spec, &payload, zstd_level)
}

/// Decodes one complete dictionary frame (and nothing after it).
pub fn decode(frame_bytes: &[u8]) -> Result<(FrameHeader, Vec<SeriesMeta>), DecodeError> {
    let frame = frame::read_single(frame_bytes, FrameKind::Dictionary)?;
    let raw = frame.raw_payload()?;
    let entries = decode_payload(&frame.header, &raw)?;
    Ok((frame.header, entries))
}

/// Decodes a dictionary payload, already checksummed and decompressed, that belongs
/// to `header`.
pub fn decode_payload(header: &FrameHeader, raw: &[u8]) -> Result<Vec<SeriesMeta>, DecodeError> {
    if (header.min_ts, header.max_ts) != (0, 0) {
        return Err(DecodeError::Invalid {
            section: Section::Frame,
            offset: 32,
            what: "time range",
            detail: format!(
                "{}..={}; a version 1 dictionary frame has 0..=0",
                header.min_ts, header.max_ts
            ),
        });
    }
    let mut r = Reader::new(raw, 0, Section::Payload);
    let at = r.offset();
    // An entry takes at least 5 bytes: kind and four lengths.
    let n = r.count("dictionary entry count", frame::MAX_SERIES_PER_FRAME, 5)?;
    if n as u64 != header.series_count {
        return Err(r.invalid_at(
            at,
            "dictionary entry count",
            format!(
                "{n}, the frame header covers {} series",
                header.series_count
            ),
        ));
    }
    let mut entries = Vec::with_capacity(n);
    for id in header.series_ids() {
        let at = r.offset();
        let code = r.u8("metric kind")?;
        let kind = MetricKind::from_code(code).ok_or_else(|| {
            r.invalid_at(
                at,
                "metric kind",
                format!("{code} (0 = counter, 1 = gauge)"),
            )
        })?;
        let name = r.string("metric name")?;
        let unit = r.string("unit")?;
        let help = r.string("help")?;
        let n_labels = r.count("label count", MAX_LABELS, 2)?;
        let mut labels = Vec::with_capacity(n_labels);
        for _ in 0..n_labels {
            labels.push((r.string("label name")?, r.string("label value")?));
        }
        let meta = SeriesMeta {
            id,
            name,
            labels,
            kind,
            unit,
            help,
        };
        meta.validate()
            .map_err(|error| DecodeError::InvalidSeries {
                offset: at,
                id: id.0,
                error,
            })?;
        entries.push(meta);
    }
    r.finish("dictionary payload")?;
    Ok(entries)
}
