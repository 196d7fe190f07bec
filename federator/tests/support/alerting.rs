//! Alerting tests: a database per test on the binary's cluster, agent data written
//! through the real sink, the real evaluator and delivery workers, and webhook
//! receivers that record what they are given (and can fail, hang or answer garbage
//! on demand).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

pub use super::{cluster, free_port, now_ms, wait_until};
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use pga_federator::alerting::engine::Settings;
use pga_federator::alerting::evaluator::{CycleReport, Evaluator, EvaluatorSettings};
use pga_federator::alerting::rulefile::{RuleFile, load_all};
use pga_federator::db::rules;
use pga_federator::db::sink::{Sink, SinkOptions};
use pga_federator::pull::batch::{Batch, Cursor};
use pga_format::{
    AgentId, BlockBuilder, DEFAULT_ZSTD_LEVEL, FrameMeta, MetricKind, SeriesId, SeriesMeta,
    decode_block,
};
use sqlx::postgres::{PgConnectOptions, PgPool};
use sqlx::{Connection, PgConnection};

/// A fresh, migrated database for one test: its URL and a sink on it.
pub async fn database(name: &str) -> (String, Sink) {
    let pg = cluster();
    pg.create_database(name).expect("create database");
    let url = pg.url(name);
    let sink = Sink::connect(
        &url,
        SinkOptions {
            max_connections: 2,
            acquire_timeout: Duration::from_secs(5),
            ..SinkOptions::default()
        },
    )
    .await
    .expect("connect");
    sink.migrate().await.expect("migrate");
    (url, sink)
}

pub fn sql(db: &str, query: &str) -> String {
    cluster().psql(db, query).expect("psql")
}

/// `t` rounded down to a multiple of `step`.
pub fn floor(t: i64, step: i64) -> i64 {
    t - t.rem_euclid(step)
}

/// A series of a [`Feed`]: metric, labels, kind.
pub type SeriesDef<'a> = (&'a str, &'a [(&'a str, &'a str)], MetricKind);

/// An alert as [`alerts`] lists it: rule, state, fired and resolved (ms), late, labels.
pub type AlertLine = (
    String,
    String,
    Option<i64>,
    Option<i64>,
    bool,
    BTreeMap<String, String>,
);

/// One agent's data, written through the sink: each push is one sealed block.
pub struct Feed {
    pub name: String,
    id: AgentId,
    series: Vec<SeriesMeta>,
    sent: usize,
    seq: u64,
}

impl Feed {
    /// An agent named `name` with these series: `(metric, labels, kind)`.
    pub fn new(name: &str, n: u8, series: &[SeriesDef<'_>]) -> Feed {
        let series = series
            .iter()
            .enumerate()
            .map(|(i, (metric, labels, kind))| {
                SeriesMeta::new(
                    SeriesId(i as u64),
                    *metric,
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                    *kind,
                    "",
                    "a test series",
                )
                .unwrap()
            })
            .collect();
        Feed {
            name: name.to_owned(),
            id: AgentId([n; 16]),
            series,
            sent: 0,
            seq: 0,
        }
    }

    /// Writes collections `(ts, one value per series)` as one sealed block; the
    /// agent's watermark moves to the last one.
    pub async fn push(&mut self, sink: &Sink, collections: &[(i64, Vec<f64>)]) {
        let mut b = BlockBuilder::new();
        for (ts, values) in collections {
            let pairs: Vec<(SeriesId, f64)> = values
                .iter()
                .enumerate()
                .map(|(i, v)| (SeriesId(i as u64), *v))
                .collect();
            b.push_collection(*ts, &pairs).unwrap();
        }
        self.seq += 1;
        let bytes = b
            .encode(
                FrameMeta {
                    agent_id: self.id,
                    sequence: self.seq,
                },
                DEFAULT_ZSTD_LEVEL,
            )
            .unwrap();
        let block = decode_block(&bytes).unwrap();
        let new: Vec<(SeriesId, SeriesMeta)> = self.series[self.sent..]
            .iter()
            .map(|m| (m.id, m.clone()))
            .collect();
        self.sent = self.series.len();
        let batch = Batch {
            agent: self.name.clone(),
            agent_id: self.id,
            series: new,
            cursor: Cursor {
                last_sequence: Some(self.seq),
                last_ts_ms: Some(block.header.max_ts),
                series_count: self.series.len() as u64,
            },
            blocks: vec![block],
            head: None,
            gap: None,
            complete_through_ms: None,
        };
        sink.ingest(&batch).await.expect("ingest");
    }
}

/// Loads rule files (written from `texts` into `dir`, plus `extra` paths) and stores
/// them as the federator does at start.
pub async fn load_rules(
    pool: &PgPool,
    dir: &Path,
    texts: &[(&str, &str)],
    extra: &[&Path],
) -> Vec<RuleFile> {
    let mut paths: Vec<std::path::PathBuf> = extra.iter().map(|p| p.to_path_buf()).collect();
    for (name, text) in texts {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        paths.push(p);
    }
    let files = load_or_panic(&paths);
    let mut conn = pool.acquire().await.unwrap();
    let mut tx = conn.begin().await.unwrap();
    rules::sync_files(&mut tx, &files).await.unwrap();
    tx.commit().await.unwrap();
    files
}

/// A fresh central database `name` (its URL, its sink and a pool) with the rule
/// files `texts` written into a temporary directory and loaded: how a test of the
/// evaluator starts. The directory lives as long as the returned `TempDir`.
pub async fn rule_db(
    name: &str,
    texts: &[(&str, &str)],
) -> (String, Sink, PgPool, tempfile::TempDir) {
    let (url, sink) = database(name).await;
    let dir = tempfile::tempdir().unwrap();
    let pool = pool(&url).await;
    load_rules(&pool, dir.path(), texts, &[]).await;
    (url, sink, pool, dir)
}

/// The built-in pack's directory.
/// The rule files at `paths`; every problem is said when one does not load.
pub fn load_or_panic(paths: &[std::path::PathBuf]) -> Vec<RuleFile> {
    load_all(paths).unwrap_or_else(|e| {
        panic!(
            "{}",
            e.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        )
    })
}

/// The built-in rule pack's directory.
pub fn pack() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("rules")
}

pub async fn pool(url: &str) -> PgPool {
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(3)
        .connect(url)
        .await
        .unwrap()
}

pub fn options(url: &str) -> PgConnectOptions {
    url.parse().unwrap()
}

/// An evaluator on the database at `url`.
pub async fn evaluator(url: &str, engine: Settings) -> Evaluator {
    Evaluator::new(
        pool(url).await,
        options(url),
        EvaluatorSettings {
            engine,
            max_silence_ms: 900_000,
            external_url: "https://federator.test".into(),
            only_agents: None,
        },
        None,
    )
}

/// Runs a cycle that must run.
pub async fn cycle(e: &mut Evaluator, now: i64) -> CycleReport {
    let r = e.cycle(now).await.expect("cycle");
    assert!(r.ran, "the cycle ran");
    assert_eq!(r.errors, 0, "{r:?}");
    r
}

/// Every alert, by id (see [`AlertLine`]).
pub async fn alerts(url: &str) -> Vec<AlertLine> {
    type Row = (
        String,
        String,
        Option<i64>,
        Option<i64>,
        bool,
        serde_json::Value,
    );
    let mut c = PgConnection::connect(url).await.unwrap();
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT r.name, a.state, (extract(epoch FROM a.fired_at) * 1000)::bigint, \
                (extract(epoch FROM a.resolved_at) * 1000)::bigint, a.late, a.labels \
         FROM alerts a JOIN alert_rules r ON r.id = a.rule_id ORDER BY a.id",
    )
    .fetch_all(&mut c)
    .await
    .unwrap();
    rows.into_iter()
        .map(|(n, s, f, r, l, labels)| (n, s, f, r, l, serde_json::from_value(labels).unwrap()))
        .collect()
}

/// `(status, alertname, muted)` of every outbox row, by id.
pub async fn outbox(url: &str) -> Vec<(String, String, bool)> {
    let mut c = PgConnection::connect(url).await.unwrap();
    sqlx::query_as(
        "SELECT status, payload->'labels'->>'alertname', muted_by IS NOT NULL \
         FROM alert_outbox ORDER BY id",
    )
    .fetch_all(&mut c)
    .await
    .unwrap()
}

// ---------------------------------------------------------------------------------
// Webhook receivers.

/// What a receiver does with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Ok,
    /// Answers 500 until then, 200 after.
    FailUntil(Instant),
}

/// One request received.
#[derive(Debug, Clone)]
pub struct Received {
    pub at: Instant,
    pub status: u16,
    pub signature: Option<String>,
    pub body: Vec<u8>,
    pub json: serde_json::Value,
}

/// A webhook receiver on 127.0.0.1.
#[derive(Clone)]
pub struct Receiver {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Received>>>,
    pub mode: Arc<Mutex<Mode>>,
}

impl Receiver {
    pub async fn start(mode: Mode) -> Receiver {
        let seen: Arc<Mutex<Vec<Received>>> = Arc::default();
        let mode = Arc::new(Mutex::new(mode));
        let (s, m) = (seen.clone(), mode.clone());
        let app = axum::Router::new().route(
            "/{*path}",
            axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                let (s, m) = (s.clone(), m.clone());
                async move {
                    let status = match *m.lock().unwrap() {
                        Mode::Ok => 200,
                        Mode::FailUntil(t) if Instant::now() < t => 500,
                        Mode::FailUntil(_) => 200,
                    };
                    s.lock().unwrap().push(Received {
                        at: Instant::now(),
                        status,
                        signature: headers
                            .get("x-pga-signature")
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned),
                        json: serde_json::from_slice(&body).unwrap_or_default(),
                        body: body.to_vec(),
                    });
                    StatusCode::from_u16(status).unwrap()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.ok() });
        Receiver { addr, seen, mode }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// The requests answered 200.
    pub fn delivered(&self) -> Vec<Received> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.status == 200)
            .cloned()
            .collect()
    }

    pub fn attempts(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

/// Verifies an `X-Pga-Signature` header over `body` with `secret`.
pub fn signature_verifies(header: &str, secret: &[u8], body: &[u8]) -> bool {
    let Some((t, hex)) = header
        .strip_prefix("t=")
        .and_then(|r| r.split_once(",sha256="))
    else {
        return false;
    };
    let Ok(tag) = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2).unwrap_or("zz"), 16))
        .collect::<Result<Vec<u8>, _>>()
    else {
        return false;
    };
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let mut msg = format!("{t}.").into_bytes();
    msg.extend_from_slice(body);
    ring::hmac::verify(&key, &msg, &tag).is_ok()
}

/// Waits (async) until `f` holds, polling every 100 ms; panics naming `what`.
pub async fn eventually(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
