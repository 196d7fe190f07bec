//! Simulated agents: servers of pre-built blocks over the pull protocol
//! (storage-format/PROTOCOL.md), for benchmarks that need more agents or more
//! history than real agents could produce in the time of a run.
//!
//! Frames are encoded once, as templates, with the real block codec; each agent
//! serves them stamped with its own identity and sequence (the agent id and
//! sequence fields patched, the CRC-32C recomputed), so a thousand agents cost the
//! memory of one. An agent holds `sealed` blocks and a head that grows with the
//! wall clock: one collection per `interval_ms` since the head's window started,
//! as a real agent's head does. It answers `/v1/series` and `/v1/blocks` (plain
//! HTTP on 127.0.0.1) with the protocol's headers, paging by `max_bytes`, and
//! `/v1/status` with what a real agent says of itself and of one PostgreSQL
//! instance (so that a pull costs what it costs against a real agent).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use pga_format::protocol::{headers as H, routes};
use pga_format::{
    AgentId, BlockBuilder, FORMAT_VERSION, FrameMeta, MetricKind, SeriesId, SeriesMeta,
};

/// Frames shared by every simulated agent.
#[derive(Debug)]
pub struct Templates {
    /// Series in the dictionary (ids `0..series`).
    pub series: u64,
    /// Dictionary frames.
    pub dictionary: Vec<Vec<u8>>,
    /// Sealed block frames, in sequence order.
    pub sealed: Vec<Vec<u8>>,
    /// The head with `k + 1` collections at index `k`.
    pub heads: Vec<Vec<u8>>,
    /// Milliseconds between two collections.
    pub interval_ms: i64,
    /// Samples in the sealed blocks.
    pub sealed_samples: u64,
}

/// The value of series `i` at `ts`: a mix of counters, constants and gauges.
fn value(i: u64, ts: i64) -> f64 {
    let step = ts / 10_000;
    match i % 4 {
        0 => (step * (i as i64 % 7 + 1)) as f64,
        1 => (i % 13) as f64,
        _ => ((step + i as i64) % 100) as f64 * 1.5,
    }
}

/// The value of series `i` at `ts`, `None` when the series is not collected then (a
/// slower collection group).
pub type ValueFn = dyn Fn(u64, i64) -> Option<f64> + Sync;

fn block(
    series: u64,
    value: &ValueFn,
    timestamps: impl Iterator<Item = i64>,
) -> anyhow::Result<(Vec<u8>, u64)> {
    let mut b = BlockBuilder::new();
    let mut samples = 0;
    for ts in timestamps {
        let pairs: Vec<(SeriesId, f64)> = (0..series)
            .filter_map(|i| value(i, ts).map(|v| (SeriesId(i), v)))
            .collect();
        samples += pairs.len() as u64;
        b.push_collection(ts, &pairs)?;
    }
    let meta = FrameMeta {
        agent_id: AgentId([0; 16]),
        sequence: 0,
    };
    Ok((b.encode(meta, pga_format::DEFAULT_ZSTD_LEVEL)?, samples))
}

/// What the templates hold: `blocks` sealed blocks of `collections` collections
/// each, `interval_ms` apart, ending at `head_start_ms`; heads of 1 ..=
/// `head_collections` collections from `head_start_ms` on.
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    pub blocks: u64,
    pub collections: u64,
    pub head_collections: u64,
    pub interval_ms: i64,
    pub head_start_ms: i64,
}

impl Templates {
    /// The frames of `layout` for `series` simulated series. Blocks are encoded on
    /// every core.
    pub fn build(series: u64, layout: Layout) -> anyhow::Result<Templates> {
        let metas: Vec<SeriesMeta> = (0..series)
            .map(|i| {
                let (name, kind) = match i % 4 {
                    0 => ("sim_events_total", MetricKind::Counter),
                    1 => ("sim_setting", MetricKind::Gauge),
                    _ => ("sim_level", MetricKind::Gauge),
                };
                SeriesMeta::new(
                    SeriesId(i),
                    name,
                    vec![("i".into(), i.to_string())],
                    kind,
                    "",
                    "A simulated series.",
                )
            })
            .collect::<Result<_, _>>()?;
        Templates::build_with(metas, &|i, ts| Some(value(i, ts)), layout)
    }

    /// As [`Templates::build`], with the series `metas` (ids `0..n`) taking the values
    /// of `value`.
    pub fn build_with(
        metas: Vec<SeriesMeta>,
        value: &ValueFn,
        layout: Layout,
    ) -> anyhow::Result<Templates> {
        let Layout {
            blocks,
            collections,
            head_collections,
            interval_ms,
            head_start_ms,
        } = layout;
        let series = metas.len() as u64;
        let dictionary = metas
            .chunks(4096)
            .enumerate()
            .map(|(n, c)| {
                let meta = FrameMeta {
                    agent_id: AgentId([0; 16]),
                    sequence: n as u64 + 1,
                };
                pga_format::dictionary::encode(meta, c, pga_format::DEFAULT_ZSTD_LEVEL)
            })
            .collect::<Result<_, _>>()?;
        let window = collections as i64 * interval_ms;
        let first = head_start_ms - blocks as i64 * window;
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut sealed: Vec<(u64, Vec<u8>, u64)> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads as u64)
                .map(|t| {
                    s.spawn(move || -> anyhow::Result<Vec<(u64, Vec<u8>, u64)>> {
                        (0..blocks)
                            .filter(|b| b % threads as u64 == t)
                            .map(|b| {
                                let start = first + b as i64 * window;
                                let (f, n) = block(
                                    series,
                                    value,
                                    (0..collections as i64).map(|c| start + c * interval_ms),
                                )?;
                                Ok((b, f, n))
                            })
                            .collect()
                    })
                })
                .collect();
            let mut all = Vec::new();
            for h in handles {
                all.extend(
                    h.join()
                        .map_err(|_| anyhow::anyhow!("encoder panicked"))??,
                );
            }
            Ok::<_, anyhow::Error>(all)
        })?;
        sealed.sort_by_key(|(b, ..)| *b);
        let sealed_samples = sealed.iter().map(|(_, _, n)| n).sum();
        let heads = (1..=head_collections as i64)
            .map(|k| {
                block(
                    series,
                    value,
                    (0..k).map(|c| head_start_ms + c * interval_ms),
                )
                .map(|(f, _)| f)
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Templates {
            series,
            dictionary,
            sealed: sealed.into_iter().map(|(_, f, _)| f).collect(),
            heads,
            interval_ms,
            sealed_samples,
        })
    }
}

/// A frame template stamped with an agent's identity and a sequence.
pub fn stamp(template: &[u8], agent: AgentId, sequence: Option<u64>) -> Vec<u8> {
    let mut f = template.to_vec();
    f[8..24].copy_from_slice(&agent.0);
    if let Some(s) = sequence {
        f[24..32].copy_from_slice(&s.to_le_bytes());
    }
    let n = f.len() - 4;
    let crc = crc32c::crc32c(&f[..n]);
    f[n..].copy_from_slice(&crc.to_le_bytes());
    f
}

/// One simulated agent.
#[derive(Debug, Clone)]
pub struct SimAgent {
    pub agent_id: AgentId,
    pub templates: Arc<Templates>,
    /// When the head's first collection was taken.
    pub started: Instant,
}

fn header(h: &mut HeaderMap, name: &'static str, v: String) {
    if let Ok(v) = HeaderValue::from_str(&v) {
        h.insert(name, v);
    }
}

/// The headers of every answer: the agent's identity and the format version.
fn identity(a: &SimAgent) -> HeaderMap {
    let mut h = HeaderMap::new();
    header(&mut h, H::AGENT_ID, a.agent_id.to_string());
    header(&mut h, H::FORMAT_VERSION, FORMAT_VERSION.to_string());
    h
}

async fn series(State(a): State<Arc<SimAgent>>) -> impl IntoResponse {
    let mut h = identity(&a);
    header(&mut h, H::SERIES_COUNT, a.templates.series.to_string());
    let mut body = Vec::new();
    for f in &a.templates.dictionary {
        body.extend(stamp(f, a.agent_id, None));
    }
    (h, body)
}

async fn blocks(
    State(a): State<Arc<SimAgent>>,
    Query(q): Query<HashMap<String, String>>,
) -> axum::response::Response {
    let Some(after) = q.get("after").and_then(|v| v.parse::<u64>().ok()) else {
        return (StatusCode::BAD_REQUEST, "invalid after").into_response();
    };
    let max_bytes: usize = q
        .get("max_bytes")
        .and_then(|v| v.parse().ok())
        .unwrap_or(8 << 20);
    let t = &a.templates;
    let newest = t.sealed.len() as u64;
    let mut h = identity(&a);
    header(&mut h, H::HEAD_SEQUENCE, (newest + 1).to_string());
    if newest > 0 {
        header(&mut h, H::OLDEST_SEQUENCE, "1".into());
        header(&mut h, H::NEWEST_SEQUENCE, newest.to_string());
    }
    let mut body = Vec::new();
    let mut last = None;
    let mut seq = after + 1;
    while seq <= newest {
        let f = &t.sealed[(seq - 1) as usize];
        if last.is_some() && body.len() + f.len() > max_bytes {
            break;
        }
        body.extend(stamp(f, a.agent_id, Some(seq)));
        last = Some(seq);
        seq += 1;
    }
    let more = seq <= newest;
    let elapsed = a.started.elapsed().as_millis() as i64;
    let k = ((elapsed / t.interval_ms) as usize).min(t.heads.len().saturating_sub(1));
    let head = !more && after <= newest && !t.heads.is_empty();
    if head {
        body.extend(stamp(&t.heads[k], a.agent_id, Some(newest + 1)));
    }
    header(
        &mut h,
        H::HEAD,
        if head { "present" } else { "absent" }.into(),
    );
    header(&mut h, H::MORE, more.to_string());
    if let Some(l) = last {
        header(&mut h, H::LAST_SEQUENCE, l.to_string());
    }
    (h, body).into_response()
}

async fn status(State(a): State<Arc<SimAgent>>) -> impl IntoResponse {
    let id = a.agent_id.to_string();
    let newest = a.templates.sealed.len();
    let body = serde_json::json!({
        "agent_name": format!("sim-{}", &id[..8]),
        "agent_id": id,
        "version": env!("CARGO_PKG_VERSION"),
        "format_version": 1,
        "host": format!("sim-{}.example", &id[..8]),
        "blocks": newest,
        "oldest_sequence": (newest > 0).then_some(1),
        "newest_sequence": (newest > 0).then_some(newest),
        "series": a.templates.series,
        "instances": [{
            "name": "main", "host": "/var/run/postgresql", "port": 5432,
            "server_version": "15.4", "server_version_num": 150004,
            "system_identifier": format!("{}", 7_000_000_000_000_000_000u64 + u64::from(a.agent_id.0[0])),
            "in_recovery": false, "databases": ["app", "postgres"],
        }],
    });
    let h = identity(&a);
    (h, axum::Json(body))
}

/// The agent's routes.
pub fn router(agent: SimAgent) -> Router {
    Router::new()
        .route(routes::SERIES, get(series))
        .route(routes::BLOCKS, get(blocks))
        .route(routes::STATUS, get(status))
        .with_state(Arc::new(agent))
}

/// Serves `agent` on a free port of 127.0.0.1 until the runtime ends; the port.
pub async fn serve(agent: SimAgent) -> anyhow::Result<u16> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move { axum::serve(listener, router(agent)).await.ok() });
    Ok(port)
}
