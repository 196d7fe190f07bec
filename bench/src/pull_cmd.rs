//! `pga-bench backfill` and `pga-bench fleet`: the federator's pull path, end to
//! end into a throwaway PostgreSQL (pga-lab), from simulated agents serving
//! pre-built blocks over the pull protocol ([`crate::simagent`]).
//!
//! - **backfill**: one agent holding `--hours` of `--series` series in sealed
//!   10-minute blocks; the federator's pull (its real client, protocol walk, and
//!   sink with binary COPY and rollups) from cursor 0 until caught up. Goal: 24 h ×
//!   2000 series in at most 10 s.
//! - **fleet**: `--agents` agents of `--series` series each, every one with a
//!   growing head, pulled by the federator's scheduler on a 15-second schedule for
//!   `--secs`; reports the scrapes done against those due, failures, the p50/p95
//!   scrape latency and the samples written. Goal: 1000 agents × 2000 series.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use clap::Args;
use pga_federator::config::{BackfillConfig, parse_schedule};
use pga_federator::scheduler::{self, AgentJob, SchedulerSettings};
use pga_federator::scrape::{AgentClient, ClientLimits, HeadMemo, Pacing, pull};
use pga_federator::sink::{Sink, SinkOptions};
use pga_federator::telemetry::Telemetry;
use pga_federator::url::AgentUrl;
use pga_format::AgentId;
use pga_lab::Cluster;

use crate::simagent::{SimAgent, Templates, serve};

/// Measure a backfill: one agent's day of history pulled into PostgreSQL.
#[derive(Debug, Args)]
pub struct BackfillArgs {
    /// Series of the agent.
    #[arg(long, default_value_t = 2000)]
    pub series: u64,
    /// Hours of history it holds (10-second collections, 10-minute blocks).
    #[arg(long, default_value_t = 24)]
    pub hours: u64,
}

/// Measure one federator pulling many agents on a 15-second schedule.
#[derive(Debug, Args)]
pub struct FleetArgs {
    /// Simulated agents.
    #[arg(long, default_value_t = 1000)]
    pub agents: u64,
    /// Series per agent.
    #[arg(long, default_value_t = 2000)]
    pub series: u64,
    /// How long to run, in seconds.
    #[arg(long, default_value_t = 120)]
    pub secs: u64,
    /// Pulls at once (scrape.max_concurrent).
    #[arg(long, default_value_t = 32)]
    pub max_concurrent: usize,
    /// Database connections (database.max_connections).
    #[arg(long, default_value_t = 8)]
    pub db_connections: u32,
}

const INTERVAL_MS: i64 = 10_000;
const BLOCK_COLLECTIONS: u64 = 60;

fn central(connections: u32) -> anyhow::Result<(Cluster, SinkOptions)> {
    let pg = Cluster::builder()
        .setting("synchronous_commit", "off")
        .start()
        .context("starting PostgreSQL")?;
    pg.create_database("central")?;
    let options = SinkOptions {
        max_connections: connections,
        acquire_timeout: Duration::from_secs(60),
        ..SinkOptions::default()
    };
    Ok((pg, options))
}

fn now_window_start() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    now - now.rem_euclid(BLOCK_COLLECTIONS as i64 * INTERVAL_MS)
}

fn limits() -> ClientLimits {
    ClientLimits {
        connect_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(60),
        max_response_bytes: 64 << 20,
    }
}

fn client(port: u16) -> anyhow::Result<AgentClient> {
    let url = AgentUrl::parse(&format!("http://127.0.0.1:{port}"))?;
    Ok(AgentClient::new(url, None, limits()))
}

/// `pga-bench backfill`.
pub fn backfill(args: &BackfillArgs) -> anyhow::Result<()> {
    let blocks = args.hours * 3_600_000 / (BLOCK_COLLECTIONS * INTERVAL_MS as u64);
    println!(
        "building {blocks} sealed blocks of {} series × {BLOCK_COLLECTIONS} collections…",
        args.series
    );
    let t = Instant::now();
    let templates = Templates::build(
        args.series,
        blocks,
        BLOCK_COLLECTIONS,
        1,
        INTERVAL_MS,
        now_window_start(),
    )?;
    let bytes: usize = templates.sealed.iter().map(Vec::len).sum();
    println!(
        "  {} samples, {:.1} MB of frames, built in {:.1} s",
        templates.sealed_samples,
        bytes as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );
    let (pg, options) = central(4)?;
    let rt = tokio::runtime::Runtime::new()?;
    let expected = templates.sealed_samples + args.series;
    let (secs, requests) = rt.block_on(async {
        let sink = Sink::connect(&pg.url("central"), options).await?;
        sink.migrate().await?;
        let agent = SimAgent {
            agent_id: AgentId([0x42; 16]),
            templates: Arc::new(templates),
            started: Instant::now(),
        };
        let port = serve(agent).await?;
        let client = client(port)?;
        let defaults = BackfillConfig::default();
        let pacing = Pacing {
            request_bytes: defaults.request_bytes,
            max_requests: u32::MAX,
            pause: Duration::from_millis(defaults.pause_ms),
            max_samples: defaults.max_samples_per_transaction,
        };
        let start = Instant::now();
        let mut requests = 0;
        let mut memo = HeadMemo::default();
        loop {
            let r = pull("bench", &client, &sink, pacing, &mut memo, |_| {}).await?;
            requests += r.requests;
            if r.caught_up {
                break;
            }
        }
        Ok::<_, anyhow::Error>((start.elapsed().as_secs_f64(), requests))
    })?;
    let stored: u64 = pg
        .psql("central", "SELECT count(*) FROM samples")?
        .trim()
        .parse()?;
    ensure!(
        stored == expected,
        "the database holds {stored} samples, expected {expected}"
    );
    println!(
        "backfill of {} h × {} series: {stored} samples in {secs:.2} s ({:.0} samples/s, {requests} requests \
         of ≤ {} bytes, ≤ {} samples per transaction, pause {} ms) — goal ≤ 10 s",
        args.hours,
        args.series,
        stored as f64 / secs,
        BackfillConfig::default().request_bytes,
        BackfillConfig::default().max_samples_per_transaction,
        BackfillConfig::default().pause_ms,
    );
    Ok(())
}

/// Sum of a counter family and the p50/p95 of the scrape-duration histogram, read
/// from the rendered self-metrics.
fn read_metrics(text: &str) -> (u64, u64, u64, f64, f64) {
    let sum = |prefix: &str| -> u64 {
        text.lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    };
    let mut buckets: Vec<(f64, f64)> = text
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("pga_federator_scrape_duration_seconds_bucket{le=\"")?;
            let (le, count) = rest.split_once("\"} ")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, count.parse().ok()?))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = buckets.last().map_or(0.0, |b| b.1);
    let q = |p: f64| {
        buckets
            .iter()
            .find(|b| b.1 >= p * total)
            .map_or(f64::NAN, |b| b.0)
    };
    (
        sum("pga_federator_scrapes_total"),
        sum("pga_federator_scrape_failures_total"),
        sum("pga_federator_samples_ingested_total"),
        q(0.5),
        q(0.95),
    )
}

/// `pga-bench fleet`.
pub fn fleet(args: &FleetArgs) -> anyhow::Result<()> {
    println!("building head templates of {} series…", args.series);
    let templates = Arc::new(Templates::build(
        args.series,
        0,
        BLOCK_COLLECTIONS,
        BLOCK_COLLECTIONS,
        INTERVAL_MS,
        now_window_start(),
    )?);
    let (pg, options) = central(args.db_connections)?;
    let rt = tokio::runtime::Runtime::new()?;
    let text = rt.block_on(async {
        let sink = Arc::new(Sink::connect(&pg.url("central"), options).await?);
        sink.migrate().await?;
        let schedule = parse_schedule("*/15 * * * * *").map_err(anyhow::Error::msg)?;
        let started = Instant::now();
        let mut jobs = Vec::new();
        for i in 0..args.agents {
            let mut id = [0u8; 16];
            id[..8].copy_from_slice(&(i + 1).to_le_bytes());
            let port = serve(SimAgent {
                agent_id: AgentId(id),
                templates: templates.clone(),
                started,
            })
            .await?;
            jobs.push(AgentJob {
                name: format!("sim-{i}"),
                client: client(port)?,
                schedule: schedule.clone(),
            });
        }
        println!(
            "{} agents × {} series, schedule every 15 s, {} pulls at once, {} database connections, {} s…",
            args.agents, args.series, args.max_concurrent, args.db_connections, args.secs
        );
        let telemetry = Arc::new(Telemetry::new());
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let settings = SchedulerSettings {
            jitter: Duration::from_millis(14_000),
            max_concurrent: args.max_concurrent,
            backoff_initial: Duration::from_secs(15),
            backoff_max: Duration::from_secs(60),
            pacing: Pacing {
                request_bytes: 8 << 20,
                max_requests: 64,
                pause: Duration::from_millis(50),
                max_samples: 1_000_000,
            },
        };
        let run = tokio::spawn(scheduler::run(
            jobs,
            sink.clone(),
            telemetry.clone(),
            settings,
            stop_rx,
        ));
        tokio::time::sleep(Duration::from_secs(args.secs)).await;
        stop_tx.send_replace(true);
        run.await.ok();
        Ok::<_, anyhow::Error>(telemetry.render())
    })?;
    let (scrapes, failures, samples, p50, p95) = read_metrics(&text);
    let due = args.agents * (args.secs / 15);
    println!(
        "fleet {} × {}: {scrapes} scrapes started of ~{due} due ({:.0} %), {failures} failed; \
         scrape latency p50 ≤ {p50} s, p95 ≤ {p95} s (histogram bucket bounds); \
         {samples} samples written ({:.0}/s)",
        args.agents,
        args.series,
        100.0 * scrapes as f64 / due.max(1) as f64,
        samples as f64 / args.secs as f64
    );
    Ok(())
}
