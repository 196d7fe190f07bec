//! The Prometheus remote-write 1.0 wire format: the protobuf messages of
//! `prometheus/prompb/types.proto` and `remote.proto` (field numbers as there), the
//! labels of a series, and requests cut from a decoded block, snappy-compressed
//! (block format, not framed).
//!
//! Per the specification: every series carries `__name__`; labels are sorted by
//! name, names unique, empty values left out; a series' samples are in time order
//! within a request, and the requests of one agent are sent in order.

use std::collections::BTreeMap;
use std::sync::Arc;

use pga_format::{DecodedBlock, SeriesId, SeriesMeta};
use prost::Message;

/// The `Content-Type` of a request.
pub const CONTENT_TYPE: &str = "application/x-protobuf";
/// The `Content-Encoding` of a request.
pub const CONTENT_ENCODING: &str = "snappy";
/// `X-Prometheus-Remote-Write-Version` of the 1.0 specification.
pub const VERSION: &str = "0.1.0";

/// `prometheus.WriteRequest` (field 2 is reserved; metadata, field 3, is not sent).
#[derive(Clone, PartialEq, Message)]
pub struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

/// `prometheus.TimeSeries` (exemplars and histograms are not sent).
#[derive(Clone, PartialEq, Message)]
pub struct TimeSeries {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
}

/// `prometheus.Label`.
#[derive(Clone, PartialEq, Eq, Message)]
pub struct Label {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `prometheus.Sample`: a value and its timestamp in milliseconds.
#[derive(Clone, Copy, PartialEq, Message)]
pub struct Sample {
    #[prost(double, tag = "1")]
    pub value: f64,
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// The label naming the agent a series comes from (as in the central database's
/// queries and alerts): series of two agents never merge at the destination.
pub const AGENT_LABEL: &str = "agent";
/// Where a series' own `agent` label goes, should it have one.
const EXPORTED_AGENT_LABEL: &str = "exported_agent";
/// The PostgreSQL instance label, and what agents before store schema 2 named it
/// (renamed as the central database does, migration 0004).
const INSTANCE_LABEL: &str = "pg_instance";
const OLD_INSTANCE_LABEL: &str = "instance";

/// The labels of one series at the destination: `__name__`, the series' labels,
/// the agent's configured labels (`agents[].labels`; the series' own win) and
/// `agent="<name>"`; sorted by name, empty values left out.
pub fn series_labels(
    meta: &SeriesMeta,
    agent: &str,
    agent_labels: &BTreeMap<String, String>,
) -> Arc<[Label]> {
    let mut set: BTreeMap<&str, &str> = agent_labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let renamed = meta.label(INSTANCE_LABEL).is_none();
    for (k, v) in &meta.labels {
        let k = match k.as_str() {
            OLD_INSTANCE_LABEL if renamed => INSTANCE_LABEL,
            AGENT_LABEL => EXPORTED_AGENT_LABEL,
            "__name__" => continue,
            k => k,
        };
        set.insert(k, v);
    }
    set.insert(AGENT_LABEL, agent);
    set.insert("__name__", &meta.name);
    set.into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| Label {
            name: k.to_owned(),
            value: v.to_owned(),
        })
        .collect()
}

/// One request's worth of one block: the message, and what it covers.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub block_sequence: u64,
    pub message: WriteRequest,
    pub samples: u64,
    pub min_ts_ms: i64,
    pub max_ts_ms: i64,
}

/// A block's series has no dictionary entry: the pull would have fetched it, so the
/// agent's answer is inconsistent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("block {block} has series {series}, which the agent's dictionary lacks")]
pub struct MissingSeries {
    pub block: u64,
    pub series: u64,
}

/// Cuts `block` into requests of at most `max_samples` samples each (a series with
/// more is split, its samples staying in time order across the requests); `labels`
/// gives each series' labels. No request when the block has no samples.
pub fn block_requests<'a>(
    block: &DecodedBlock,
    labels: impl Fn(SeriesId) -> Option<&'a Arc<[Label]>>,
    max_samples: usize,
) -> Result<Vec<Request>, MissingSeries> {
    let max_samples = max_samples.max(1);
    let seq = block.header.sequence;
    let mut out = Vec::new();
    let mut current = Request {
        block_sequence: seq,
        message: WriteRequest::default(),
        samples: 0,
        min_ts_ms: i64::MAX,
        max_ts_ms: i64::MIN,
    };
    for col in &block.columns {
        let l = labels(col.series).ok_or(MissingSeries {
            block: seq,
            series: col.series.0,
        })?;
        let mut samples = col.samples(block).map(|s| Sample {
            value: s.value,
            timestamp: s.timestamp_ms,
        });
        loop {
            let room = max_samples - current.samples as usize;
            let chunk: Vec<Sample> = samples.by_ref().take(room).collect();
            if chunk.is_empty() {
                break;
            }
            current.samples += chunk.len() as u64;
            current.min_ts_ms = current.min_ts_ms.min(chunk[0].timestamp);
            current.max_ts_ms = current.max_ts_ms.max(chunk[chunk.len() - 1].timestamp);
            current.message.timeseries.push(TimeSeries {
                labels: l.to_vec(),
                samples: chunk,
            });
            if current.samples as usize >= max_samples {
                let next = Request {
                    block_sequence: seq,
                    message: WriteRequest::default(),
                    samples: 0,
                    min_ts_ms: i64::MAX,
                    max_ts_ms: i64::MIN,
                };
                out.push(std::mem::replace(&mut current, next));
            }
        }
    }
    if current.samples > 0 {
        out.push(current);
    }
    Ok(out)
}

/// The body of a request: the protobuf message, snappy-compressed (block format).
pub fn compress(message: &WriteRequest, encoder: &mut snap::raw::Encoder) -> Vec<u8> {
    let raw = message.encode_to_vec();
    // Snappy refuses only inputs over ~4 GiB; max_samples_per_request keeps a
    // request far below (1e6 samples of ~20 bytes).
    encoder.compress_vec(&raw).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use pga_format::{BlockBuilder, MetricKind};

    fn meta(id: u64, name: &str, labels: &[(&str, &str)]) -> SeriesMeta {
        SeriesMeta::new(
            SeriesId(id),
            name,
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            MetricKind::Gauge,
            "",
            "",
        )
        .unwrap()
    }

    #[test]
    fn labels_are_sorted_and_carry_the_agent() {
        let m = meta(
            0,
            "pg_up",
            &[
                ("instance", "db:5432"),
                ("agent", "x"),
                ("Zone", ""),
                ("b", "2"),
            ],
        );
        let env = BTreeMap::from([
            ("env".to_owned(), "prod".to_owned()),
            ("b".into(), "1".into()),
        ]);
        let l = series_labels(&m, "db1", &env);
        let pairs: Vec<(&str, &str)> = l.iter().map(|l| (&*l.name, &*l.value)).collect();
        assert_eq!(
            pairs,
            [
                ("__name__", "pg_up"),
                ("agent", "db1"),
                ("b", "2"),
                ("env", "prod"),
                ("exported_agent", "x"),
                ("pg_instance", "db:5432"),
            ]
        );
    }

    fn block(series: u64, collections: i64) -> DecodedBlock {
        let mut b = BlockBuilder::new();
        for t in 0..collections {
            let samples: Vec<(SeriesId, f64)> = (0..series)
                .map(|s| (SeriesId(s), (t * 10 + s as i64) as f64))
                .collect();
            b.push_collection(1_000 + t * 100, &samples).unwrap();
        }
        let meta = pga_format::FrameMeta {
            agent_id: pga_format::AgentId([7; 16]),
            sequence: 42,
        };
        pga_format::decode_block(&b.encode(meta, 1).unwrap()).unwrap()
    }

    #[test]
    fn requests_split_series_in_time_order_and_lose_nothing() {
        let b = block(3, 7);
        let labels: Vec<Arc<[Label]>> = (0..3)
            .map(|i| {
                series_labels(
                    &meta(i, "m", &[("i", &i.to_string())]),
                    "a",
                    &BTreeMap::new(),
                )
            })
            .collect();
        let reqs = block_requests(&b, |s| labels.get(s.0 as usize), 5).unwrap();
        assert_eq!(reqs.iter().map(|r| r.samples).sum::<u64>(), 21);
        assert!(
            reqs.iter()
                .all(|r| r.samples <= 5 && r.block_sequence == 42)
        );
        let mut per_series: BTreeMap<String, Vec<(i64, f64)>> = BTreeMap::new();
        for r in &reqs {
            let raw = compress(&r.message, &mut snap::raw::Encoder::new());
            let back =
                WriteRequest::decode(&snap::raw::Decoder::new().decompress_vec(&raw).unwrap()[..])
                    .unwrap();
            assert_eq!(back, r.message);
            for ts in back.timeseries {
                let key = ts
                    .labels
                    .iter()
                    .find(|l| l.name == "i")
                    .unwrap()
                    .value
                    .clone();
                per_series
                    .entry(key)
                    .or_default()
                    .extend(ts.samples.iter().map(|s| (s.timestamp, s.value)));
            }
        }
        for (i, got) in &per_series {
            let i: i64 = i.parse().unwrap();
            let want: Vec<(i64, f64)> = (0..7)
                .map(|t| (1_000 + t * 100, (t * 10 + i) as f64))
                .collect();
            assert_eq!(got, &want);
        }
        assert!(block_requests(&b, |_| None, 5).is_err());
    }
}
