//! `pga-bench endpoint`: how fast the agent's endpoint serves `/v1/blocks` and renders
//! `/metrics`, measured in process through its router (no sockets, no TLS).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use pga_agent::collect::Emitted;
use pga_agent::endpoint::api::{ApiState, headers, router};
use pga_agent::store::{Store, StoreOptions};
use pga_format::MetricKind;
use serde::Serialize;
use tower::ServiceExt;

use crate::cli::EndpointArgs;
use crate::report::group;
use crate::store_cmd::{ms, percentile};

/// The agent's default block window.
const BLOCK_MS: i64 = 600_000;
/// Series per metric family in the synthetic store.
const FAMILY_SIZE: usize = 50;
/// Pull rounds: at least this many, and for at least `MIN_PULL_TIME`.
const MIN_ROUNDS: usize = 3;
const MIN_PULL_TIME: Duration = Duration::from_secs(2);
const MAX_ROUNDS: usize = 1000;

/// What the command measured.
#[derive(Debug, Serialize)]
pub struct EndpointReport {
    pub series: usize,
    pub blocks: u64,
    pub collections_per_block: u32,
    pub samples: u64,
    pub build_secs: f64,
    pub block_bytes_mean: f64,
    pub max_bytes: usize,
    pub pull: PullReport,
    pub metrics_text: RenderReport,
    pub metrics_openmetrics: RenderReport,
}

/// Pulling everything from sequence 0, repeatedly.
#[derive(Debug, Serialize)]
pub struct PullReport {
    pub rounds: usize,
    pub responses_per_round: usize,
    /// Body bytes of one round, the head's included.
    pub bytes_per_round: u64,
    pub responses_per_sec: f64,
    pub blocks_per_sec: f64,
    pub mb_per_sec: f64,
    pub round_ms_p50: f64,
}

/// Rendering `/metrics` in one format.
#[derive(Debug, Serialize)]
pub struct RenderReport {
    pub renders: usize,
    pub bytes: usize,
    pub samples: usize,
    pub ms_p50: f64,
    pub ms_p99: f64,
}

/// The series of the synthetic host: families of `FAMILY_SIZE`, a third constant
/// settings, a third counters with uneven increments, a third decimal gauges.
fn series(n: usize) -> Vec<Emitted> {
    (0..n)
        .map(|i| {
            let family = i / FAMILY_SIZE;
            let (name, kind, help) = match family % 3 {
                0 => (
                    format!("bench_setting_{family}"),
                    MetricKind::Gauge,
                    "A setting of the benchmark host.",
                ),
                1 => (
                    format!("bench_ops_{family}_total"),
                    MetricKind::Counter,
                    "Operations of the benchmark host.",
                ),
                _ => (
                    format!("bench_ratio_{family}"),
                    MetricKind::Gauge,
                    "A ratio of the benchmark host.",
                ),
            };
            Emitted {
                name,
                labels: vec![
                    ("datname".to_owned(), format!("db{}", i % 7)),
                    ("i".to_owned(), i.to_string()),
                ],
                kind,
                unit: "",
                help,
                value: 0.0,
            }
        })
        .collect()
}

/// Sets the values of collection `tick`.
fn set_values(batch: &mut [Emitted], tick: u64) {
    for (i, e) in batch.iter_mut().enumerate() {
        let h = (tick.wrapping_mul(0x9E37_79B9) ^ (i as u64).wrapping_mul(0x85EB_CA6B)) % 1000;
        e.value = match (i / FAMILY_SIZE) % 3 {
            0 => (i % 7) as f64,
            1 => (tick * 50 + h) as f64,
            _ => h as f64 / 100.0,
        };
    }
}

/// Writes `blocks` sealed 10-minute blocks of `collections_per_block` collections,
/// ending in the window before the current one, then one collection now (the head),
/// so that every series is fresh for `/metrics`.
fn build(dir: &Path, args: &EndpointArgs) -> anyhow::Result<Store> {
    let opts = StoreOptions {
        max_bytes: 64 << 30,
        retention_ms: 0,
        block_ms: BLOCK_MS,
    };
    let (mut store, _) = Store::open(dir, opts).context("opening the store")?;
    if !store.series().is_empty() {
        bail!(
            "{} already holds a store; give an empty --dir",
            dir.display()
        );
    }
    let now = pga_lab::now_ms();
    let first_window = now.div_euclid(BLOCK_MS) - args.blocks as i64;
    let interval = BLOCK_MS / i64::from(args.collections_per_block);
    let mut batch = series(args.series);
    let mut tick = 0u64;
    for w in 0..args.blocks as i64 {
        for c in 0..i64::from(args.collections_per_block) {
            set_values(&mut batch, tick);
            store.append((first_window + w) * BLOCK_MS + c * interval, &batch, None)?;
            tick += 1;
        }
    }
    set_values(&mut batch, tick);
    store.append(now, &batch, None)?;
    if store.block_count() as u64 != args.blocks {
        bail!(
            "the store holds {} sealed blocks, expected {}",
            store.block_count(),
            args.blocks
        );
    }
    Ok(store)
}

async fn get(
    app: &Router,
    uri: &str,
    accept: Option<&str>,
) -> anyhow::Result<(StatusCode, axum::http::HeaderMap, axum::body::Bytes)> {
    let mut req = Request::builder().uri(uri);
    if let Some(a) = accept {
        req = req.header(header::ACCEPT, a);
    }
    let resp = app
        .clone()
        .oneshot(req.body(Body::empty())?)
        .await
        .context("calling the router")?;
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .context("reading a body")?
        .to_bytes();
    Ok((status, headers, body))
}

fn header_u64(h: &axum::http::HeaderMap, name: &axum::http::HeaderName) -> Option<u64> {
    h.get(name)?.to_str().ok()?.parse().ok()
}

/// One pull of everything from 0, the way a federator catches up: (responses,
/// sealed blocks, body bytes).
async fn pull_all(app: &Router, max_bytes: usize) -> anyhow::Result<(usize, u64, u64)> {
    let (mut cursor, mut responses, mut bytes) = (0u64, 0usize, 0u64);
    loop {
        let uri = format!("/v1/blocks?after={cursor}&max_bytes={max_bytes}");
        let (status, h, body) = get(app, &uri, None).await?;
        if status != StatusCode::OK {
            bail!("{uri}: {status}: {}", String::from_utf8_lossy(&body));
        }
        responses += 1;
        bytes += body.len() as u64;
        if let Some(last) = header_u64(&h, &headers::LAST_SEQUENCE) {
            cursor = last;
        }
        if h.get(headers::MORE).is_none_or(|v| v != "true") {
            return Ok((responses, cursor, bytes));
        }
    }
}

async fn render_times(
    app: &Router,
    accept: Option<&str>,
    renders: usize,
) -> anyhow::Result<RenderReport> {
    let mut times = Vec::with_capacity(renders);
    let (mut bytes, mut samples) = (0, 0);
    for i in 0..renders + 2 {
        let t = Instant::now();
        let (status, _, body) = get(app, "/metrics", accept).await?;
        let elapsed = t.elapsed();
        if status != StatusCode::OK {
            bail!("/metrics: {status}");
        }
        // The first two warm up.
        if i >= 2 {
            times.push(ms(elapsed));
        }
        bytes = body.len();
        // The stored series' samples; not the store's health, which /metrics adds live.
        samples = body
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty() && l[0] != b'#' && !l.starts_with(b"pga_agent_store_"))
            .count();
    }
    times.sort_by(f64::total_cmp);
    Ok(RenderReport {
        renders,
        bytes,
        samples,
        ms_p50: percentile(&times, 0.5),
        ms_p99: percentile(&times, 0.99),
    })
}

async fn measure(
    app: &Router,
    args: &EndpointArgs,
) -> anyhow::Result<(PullReport, RenderReport, RenderReport)> {
    let mut round_ms = Vec::new();
    let (mut responses, mut bytes) = (0, 0);
    let started = Instant::now();
    while round_ms.len() < MAX_ROUNDS
        && (round_ms.len() < MIN_ROUNDS || started.elapsed() < MIN_PULL_TIME)
    {
        let t = Instant::now();
        let (r, last, b) = pull_all(app, args.max_bytes).await?;
        round_ms.push(ms(t.elapsed()));
        if last != args.blocks {
            bail!(
                "a pull from 0 ended at block {last}, expected {}",
                args.blocks
            );
        }
        (responses, bytes) = (r, b);
    }
    let secs = round_ms.iter().sum::<f64>() / 1000.0;
    let rounds = round_ms.len();
    round_ms.sort_by(f64::total_cmp);
    let pull = PullReport {
        rounds,
        responses_per_round: responses,
        bytes_per_round: bytes,
        responses_per_sec: (responses * rounds) as f64 / secs,
        blocks_per_sec: (args.blocks as usize * rounds) as f64 / secs,
        mb_per_sec: (bytes as f64 * rounds as f64) / 1e6 / secs,
        round_ms_p50: percentile(&round_ms, 0.5),
    };
    let text = render_times(app, None, args.renders).await?;
    let om = render_times(
        app,
        Some("application/openmetrics-text;version=1.0.0"),
        args.renders,
    )
    .await?;
    for (what, r) in [("text", &text), ("OpenMetrics", &om)] {
        if r.samples != args.series {
            bail!(
                "/metrics ({what}) showed {} samples, expected {}",
                r.samples,
                args.series
            );
        }
    }
    Ok((pull, text, om))
}

pub fn run(args: &EndpointArgs) -> anyhow::Result<()> {
    let (dir, _tmp) = crate::store_cmd::dir_or_temp(args.dir.as_deref())?;
    eprintln!(
        "writing {} blocks of {} collections of {} series into {}",
        args.blocks,
        args.collections_per_block,
        args.series,
        dir.display()
    );
    let t = Instant::now();
    let store = build(&dir, args)?;
    let build_secs = t.elapsed().as_secs_f64();
    let held = store
        .handle()
        .status()
        .context("reading the store status")?;
    let app = router(ApiState {
        store: store.handle(),
        agent_name: "bench".into(),
        max_response_bytes: args.max_bytes,
        inventory: Default::default(),
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting a tokio runtime")?;
    let (pull, metrics_text, metrics_openmetrics) = runtime.block_on(measure(&app, args))?;
    let report = EndpointReport {
        series: args.series,
        blocks: args.blocks,
        collections_per_block: args.collections_per_block,
        samples: (args.blocks * u64::from(args.collections_per_block) + 1) * args.series as u64,
        build_secs,
        block_bytes_mean: pull.bytes_per_round as f64 / args.blocks.max(1) as f64,
        max_bytes: args.max_bytes,
        pull,
        metrics_text,
        metrics_openmetrics,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render_text(&report, held.file_bytes));
    }
    Ok(())
}

fn render_text(r: &EndpointReport, file_bytes: u64) -> String {
    let p = &r.pull;
    let mut out = format!(
        "store      {} series × {} blocks × {} collections = {} samples; {} bytes on disk; built in {:.1} s\n",
        group(r.series as u64),
        group(r.blocks),
        r.collections_per_block,
        group(r.samples),
        group(file_bytes),
        r.build_secs
    );
    out += &format!(
        "/v1/blocks pulling everything from 0 with max_bytes {}: {} responses and {} bytes \
         a round ({} bytes a block); {} rounds, p50 {:.1} ms a round\n",
        group(r.max_bytes as u64),
        p.responses_per_round,
        group(p.bytes_per_round),
        group(r.block_bytes_mean.round() as u64),
        p.rounds,
        p.round_ms_p50
    );
    out += &format!(
        "           {:>14}{:>14}{:>10}\n           {:>14}{:>14}{:>10.1}\n",
        "responses/s",
        "blocks/s",
        "MB/s",
        group(p.responses_per_sec.round() as u64),
        group(p.blocks_per_sec.round() as u64),
        p.mb_per_sec
    );
    out += &format!(
        "/metrics   {} series, {} renders each\n           {:<14}{:>12}{:>10}{:>10}\n",
        group(r.series as u64),
        r.metrics_text.renders,
        "format",
        "bytes",
        "p50 ms",
        "p99 ms"
    );
    for (name, m) in [
        ("text 0.0.4", &r.metrics_text),
        ("OpenMetrics", &r.metrics_openmetrics),
    ] {
        out += &format!(
            "           {name:<14}{:>12}{:>10.2}{:>10.2}\n",
            group(m.bytes as u64),
            m.ms_p50,
            m.ms_p99
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_store_is_pulled_whole_and_rendered_in_both_formats() {
        let dir = tempfile::tempdir().unwrap();
        let args = EndpointArgs {
            series: 120,
            blocks: 4,
            collections_per_block: 3,
            max_bytes: 2000,
            renders: 3,
            dir: None,
            json: false,
        };
        let store = build(dir.path(), &args).unwrap();
        assert_eq!(store.sequence_range(), Some((1, 4)));
        let app = router(ApiState {
            store: store.handle(),
            agent_name: "bench".into(),
            max_response_bytes: args.max_bytes,
            inventory: Default::default(),
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (pull, text, om) = runtime.block_on(measure(&app, &args)).unwrap();
        assert!(pull.rounds >= MIN_ROUNDS);
        assert!(pull.responses_per_round > 1, "max_bytes pages the pull");
        assert!(pull.blocks_per_sec > 0.0 && pull.mb_per_sec > 0.0);
        assert_eq!((text.samples, om.samples), (120, 120));
        assert!(text.ms_p50 <= text.ms_p99);
        let report = EndpointReport {
            series: args.series,
            blocks: args.blocks,
            collections_per_block: args.collections_per_block,
            samples: 1560,
            build_secs: 0.1,
            block_bytes_mean: 1.0,
            max_bytes: args.max_bytes,
            pull,
            metrics_text: text,
            metrics_openmetrics: om,
        };
        let table = render_text(&report, 4096);
        assert!(
            table.contains("blocks/s") && table.contains("OpenMetrics"),
            "{table}"
        );
    }
}
