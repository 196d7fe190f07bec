//! `pga-bench backfill` and `pga-bench fleet`: the federator's pull path, end to
//! end into a throwaway PostgreSQL (pga-lab), from simulated agents serving
//! pre-built blocks over the pull protocol ([`crate::simagent`]).
//!
//! - **backfill**: one agent holding `--hours` of `--series` series in sealed
//!   10-minute blocks; the federator's pull (its real client, protocol walk, and
//!   sink with binary COPY and rollups) from cursor 0 until caught up, then the
//!   floor: a bare binary COPY of the same samples in transactions of the same
//!   size. Goal: 24 h × 2000 series in at most 10 s. With `--victoria-metrics`, the
//!   same blocks also go by remote-write to a VictoriaMetrics at the same time.
//! - **fleet**: `--agents` agents of `--series` series each, every one with a
//!   growing head, pulled by the federator's scheduler on a 15-second schedule;
//!   after a warm-up (every agent pulled once) it measures `--secs` of steady
//!   state: pulls started against those due, failures, the p50/p95 pull latency,
//!   samples written against those produced and the data lag at the end. Goal:
//!   1000 agents × 2000 series.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use clap::Args;
use pga_federator::config::{BackfillConfig, parse_schedule};
use pga_federator::db::sink::{Sink, SinkOptions};
use pga_federator::pull::scheduler::{self, AgentJob, SchedulerSettings};
use pga_federator::pull::url::AgentUrl;
use pga_federator::pull::{AgentClient, ClientLimits, Pacing, PullMemo, pull};
use pga_federator::telemetry::Telemetry;
use pga_format::AgentId;
use pga_lab::Cluster;

use crate::simagent::{Layout, SimAgent, Templates, serve, stamp};

mod remote_write;

/// Measure a backfill: one agent's day of history pulled into PostgreSQL.
#[derive(Debug, Args)]
pub struct BackfillArgs {
    /// Series of the agent.
    #[arg(long, default_value_t = 2000)]
    pub series: u64,
    /// Hours of history it holds (10-second collections, 10-minute blocks).
    #[arg(long, default_value_t = 24)]
    pub hours: u64,
    /// Also send the agent's blocks by Prometheus remote-write to a VictoriaMetrics
    /// started for the run (Debian's `victoria-metrics`), at the same time as the
    /// database's backfill, and time both.
    #[arg(long)]
    pub victoria_metrics: bool,
    /// Store a row per sample (database.packed_samples = false), the layout before
    /// packing, instead of packed sealed blocks.
    #[arg(long)]
    pub rows: bool,
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
    /// How long to measure, in seconds, once every agent has been pulled once.
    #[arg(long, default_value_t = 120)]
    pub secs: u64,
    /// How long the warm-up (every agent pulled once) may take, in seconds.
    #[arg(long, default_value_t = 900)]
    pub warmup_secs: u64,
    /// Pulls at once (scrape.max_concurrent).
    #[arg(long, default_value_t = 32)]
    pub max_concurrent: usize,
    /// Database connections (database.max_connections), per replica.
    #[arg(long, default_value_t = 8)]
    pub db_connections: u32,
    /// Run this many federator replicas in this process, sharing the fleet through
    /// their leases (docs/federator.md, "Replicas, leases and fencing"), each with
    /// its own pool and scheduler, every batch fenced. Without it: one federator,
    /// no leases.
    #[arg(long)]
    pub replicas: Option<u32>,
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
        Layout {
            blocks,
            collections: BLOCK_COLLECTIONS,
            head_collections: 1,
            interval_ms: INTERVAL_MS,
            head_start_ms: now_window_start(),
        },
    )?;
    let bytes: usize = templates.sealed.iter().map(Vec::len).sum();
    println!(
        "  {} samples, {:.1} MB of frames, built in {:.1} s",
        templates.sealed_samples,
        bytes as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );
    let (pg, mut options) = central(4)?;
    options.packed_samples = !args.rows;
    let rt = tokio::runtime::Runtime::new()?;
    let expected = templates.sealed_samples + args.series;
    let templates_samples = templates.sealed_samples;
    let templates = Arc::new(templates);
    let sealed = templates.clone();
    let (secs, requests) = rt.block_on(async {
        let sink = Sink::connect(&pg.url("central"), options.clone()).await?;
        sink.migrate().await?;
        let agent = SimAgent {
            agent_id: AgentId([0x42; 16]),
            templates,
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
        let remote = if args.victoria_metrics {
            Some(remote_write::start(&sink, client.clone(), pacing, blocks).await?)
        } else {
            None
        };
        let start = Instant::now();
        let mut requests = 0;
        let mut memo = PullMemo::default();
        loop {
            let r = pull("bench", &client, &sink, pacing, &mut memo, |_| {}).await?;
            requests += r.requests;
            if r.caught_up {
                break;
            }
        }
        let secs = start.elapsed().as_secs_f64();
        if let Some(r) = remote {
            r.finish(&sink, templates_samples, secs).await?;
        }
        Ok::<_, anyhow::Error>((secs, requests))
    })?;
    let stored = crate::ingest_cmd::stored_samples(&pg, "central")?;
    ensure!(
        stored == expected,
        "the database holds {stored} samples, expected {expected}"
    );
    let raw_bytes = crate::ingest_cmd::raw_bytes(&pg, "central")?;
    let bare = rt.block_on(bare_copy(&pg, options, &sealed.sealed))?;
    let bare_bytes = crate::ingest_cmd::raw_bytes(&pg, "bare")?;
    println!(
        "backfill of {} h × {} series ({}): {stored} samples in {secs:.2} s ({:.0} samples/s, {requests} requests \
         of ≤ {} bytes, ≤ {} samples per transaction, pause {} ms) — goal ≤ 10 s",
        args.hours,
        args.series,
        if args.rows {
            "a row per sample"
        } else {
            "sealed blocks packed"
        },
        stored as f64 / secs,
        BackfillConfig::default().request_bytes,
        BackfillConfig::default().max_samples_per_transaction,
        BackfillConfig::default().pause_ms,
    );
    println!(
        "  the floor on this machine: a bare binary COPY of the same sealed samples into \
         the same table, in transactions of the same size, took {bare:.2} s ({:.0} samples/s); \
         the backfill took {:.2}× that",
        sealed.sealed_samples as f64 / bare,
        secs / bare
    );
    println!(
        "  raw samples on disk (heap, indexes, TOAST): {:.2} bytes per sample; the bare COPY's rows: {:.1}",
        raw_bytes as f64 / stored as f64,
        bare_bytes as f64 / sealed.sealed_samples as f64
    );
    Ok(())
}

/// Times a bare binary `COPY` of the sealed blocks' samples into `samples` of a
/// fresh database `bare`, in transactions of at most the backfill's samples per
/// transaction (decoding not timed): the least the database needs for the data.
async fn bare_copy(pg: &Cluster, options: SinkOptions, sealed: &[Vec<u8>]) -> anyhow::Result<f64> {
    pg.create_database("bare")?;
    let sink = Sink::connect(&pg.url("bare"), options).await?;
    sink.migrate().await?;
    let blocks = sealed
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let frame = stamp(t, AgentId([0x42; 16]), Some(i as u64 + 1));
            pga_format::decode_block(&frame).context("decoding a sealed template")
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let first_ms = blocks.first().map_or(0, |b| b.header.min_ts);
    sqlx::query(
        "SELECT pga_ensure_partitions(ARRAY[timestamptz 'epoch' + $1 * interval '1 ms', now()])",
    )
    .bind(first_ms)
    .execute(sink.pool())
    .await?;
    pg.psql("bare", "CHECKPOINT")?;
    let max = BackfillConfig::default().max_samples_per_transaction as usize;
    let mut conn = sink.pool().acquire().await?;
    let started = Instant::now();
    let mut i = 0;
    while i < blocks.len() {
        // Whole blocks, as many as fit (at least one).
        let start = i;
        let mut rows = blocks[i].sample_count();
        i += 1;
        while i < blocks.len() && rows + blocks[i].sample_count() <= max {
            rows += blocks[i].sample_count();
            i += 1;
        }
        crate::ingest_cmd::bare_copy(&mut conn, &blocks[start..i]).await?;
    }
    Ok(started.elapsed().as_secs_f64())
}

/// Starts `agents` simulated agents serving `templates` (named `sim-0` …, each with
/// its own identity) and returns the scheduler's job for each.
pub async fn sim_fleet(
    agents: u64,
    templates: &Arc<Templates>,
    started: Instant,
    schedule: &cron::Schedule,
) -> anyhow::Result<Vec<AgentJob>> {
    let mut jobs = Vec::new();
    for i in 0..agents {
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
            labels: Default::default(),
        });
    }
    Ok(jobs)
}

/// How the benches schedule a simulated fleet on a 15 s schedule: up to 14 s of
/// jitter, `max_concurrent` pulls at once, the default pacing of `[backfill]`.
pub fn sim_fleet_settings(max_concurrent: usize) -> SchedulerSettings {
    SchedulerSettings {
        jitter: Duration::from_millis(14_000),
        max_concurrent,
        backoff_initial: Duration::from_secs(15),
        backoff_max: Duration::from_secs(60),
        pacing: Pacing {
            request_bytes: 8 << 20,
            max_requests: 64,
            pause: Duration::from_millis(50),
            max_samples: 1_000_000,
        },
    }
}

/// Figures read from the federator's rendered self-metrics at one moment.
#[derive(Debug, Default)]
struct Snapshot {
    scrapes: u64,
    /// Pulls started, per agent.
    per_agent: HashMap<String, u64>,
    failures: u64,
    samples: u64,
    /// Agents whose last pull succeeded (`pga_federator_agent_up` 1).
    up: u64,
    /// Cumulative scrape-duration histogram: (upper bound, count), ascending.
    buckets: Vec<(f64, f64)>,
}

impl Snapshot {
    fn read(text: &str) -> Snapshot {
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
        // Several replicas' texts: one bucket per bound, their counts summed.
        buckets.dedup_by(|b, a| {
            let same = a.0 == b.0;
            if same {
                a.1 += b.1;
            }
            same
        });
        let mut per_agent: HashMap<String, u64> = HashMap::new();
        for l in text.lines() {
            let Some(rest) = l.strip_prefix("pga_federator_scrapes_total{") else {
                continue;
            };
            if let (Some((_, n)), Some(start)) = (rest.rsplit_once("} "), rest.find("agent=\""))
                && let Some(len) = rest[start + 7..].find('"')
                && let Ok(n) = n.parse::<f64>()
            {
                *per_agent
                    .entry(rest[start + 7..start + 7 + len].to_owned())
                    .or_default() += n as u64;
            }
        }
        Snapshot {
            scrapes: sum("pga_federator_scrapes_total"),
            per_agent,
            failures: sum("pga_federator_scrape_failures_total"),
            samples: sum("pga_federator_samples_ingested_total"),
            up: sum("pga_federator_agent_up{"),
            buckets,
        }
    }

    /// The p-quantile's bucket bound of the pulls finished between `before` and
    /// `self`.
    fn quantile_since(&self, before: &Snapshot, p: f64) -> f64 {
        let counts: Vec<(f64, f64)> = self
            .buckets
            .iter()
            .map(|&(le, n)| {
                let then = before
                    .buckets
                    .iter()
                    .find(|b| b.0 == le)
                    .map_or(0.0, |b| b.1);
                (le, n - then)
            })
            .collect();
        let total = counts.last().map_or(0.0, |b| b.1);
        counts
            .iter()
            .find(|b| b.1 >= p * total && total > 0.0)
            .map_or(f64::NAN, |b| b.0)
    }
}

/// `n` federator replicas in this process, each with its own sink, lease and
/// scheduler, pulling `jobs` as their leases say; their telemetries, and the tasks
/// that end (leases released) once `stop` turns true.
async fn replicas(
    n: u32,
    url: &str,
    options: &SinkOptions,
    jobs: Vec<AgentJob>,
    settings: SchedulerSettings,
    stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<(Vec<Arc<Telemetry>>, Vec<tokio::task::JoinHandle<()>>)> {
    use pga_federator::cluster::{FencedSink, Membership};
    use pga_federator::config::ClusterConfig;
    use pga_federator::pull::scheduler::FleetJob;
    let fleet: Vec<FleetJob> = jobs
        .into_iter()
        .map(|job| FleetJob {
            spec: job.name.clone(),
            job,
        })
        .collect();
    let (mut telemetries, mut runs) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let sink = Arc::new(Sink::connect(url, options.clone()).await?);
        let telemetry = Arc::new(Telemetry::new());
        // The lease's own pool, as `pga-federator run` has: renewals never wait
        // behind the pulls.
        let lease_pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .connect(url)
            .await?;
        let mut membership = Membership::join(
            lease_pool,
            ClusterConfig::default(),
            telemetry.cluster.clone(),
        )
        .await?;
        let (assigned_tx, assigned_rx) = tokio::sync::watch::channel(Vec::new());
        membership.tick(&fleet, &assigned_tx).await?;
        let (_keep, fleet_rx) = tokio::sync::watch::channel(fleet.clone());
        let cluster = membership.cluster();
        let (t, s) = (telemetry.clone(), stop.clone());
        runs.push(tokio::spawn(async move {
            let _keep = _keep;
            let m = tokio::spawn(membership.run(fleet_rx, assigned_tx, s.clone()));
            scheduler::run_fleet(
                assigned_rx,
                Arc::new(FencedSink::new(sink, cluster)),
                t,
                settings,
                s,
            )
            .await;
            if let Ok(m) = m.await {
                m.leave().await;
            }
        }));
        telemetries.push(telemetry);
    }
    Ok((telemetries, runs))
}

/// `pga-bench fleet`.
pub fn fleet(args: &FleetArgs) -> anyhow::Result<()> {
    println!("building head templates of {} series…", args.series);
    let head_start_ms = now_window_start();
    let templates = Arc::new(Templates::build(
        args.series,
        Layout {
            blocks: 0,
            collections: BLOCK_COLLECTIONS,
            head_collections: BLOCK_COLLECTIONS,
            interval_ms: INTERVAL_MS,
            head_start_ms,
        },
    )?);
    let (pg, options) = central(args.db_connections)?;
    let rt = tokio::runtime::Runtime::new()?;
    let outcome = rt.block_on(async {
        let sink = Arc::new(Sink::connect(&pg.url("central"), options.clone()).await?);
        sink.migrate().await?;
        let schedule = parse_schedule("*/15 * * * * *")?;
        let started = Instant::now();
        // The simulated heads start at the window's start, not now: their clock is
        // behind the wall clock by this much, which the lag figures leave out.
        let behind_s = (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis() as i64
            - head_start_ms) as f64
            / 1000.0;
        let jobs = sim_fleet(args.agents, &templates, started, &schedule).await?;
        println!(
            "{} agents × {} series, schedule every 15 s, {} pulls at once, {} database connections, {} s…",
            args.agents, args.series, args.max_concurrent, args.db_connections, args.secs
        );
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let settings = sim_fleet_settings(args.max_concurrent);
        let (telemetries, runs) = match args.replicas {
            None => {
                let telemetry = Arc::new(Telemetry::new());
                let run = tokio::spawn(scheduler::run(
                    jobs,
                    sink.clone(),
                    telemetry.clone(),
                    settings,
                    stop_rx,
                ));
                (vec![telemetry], vec![run])
            }
            Some(n) => replicas(n, &pg.url("central"), &options, jobs, settings, stop_rx).await?,
        };
        let render = || {
            telemetries
                .iter()
                .map(|t| t.render())
                .collect::<Vec<_>>()
                .join("\n")
        };
        // Warm-up: every agent pulled once (its series registered, its head so far
        // written). Then the measured window, in steady state.
        let warm = Instant::now();
        while Snapshot::read(&render()).up < args.agents {
            ensure!(
                warm.elapsed() < Duration::from_secs(args.warmup_secs),
                "not every agent was pulled within {} s of warm-up",
                args.warmup_secs
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let warmup = started.elapsed();
        if let Some(n) = args.replicas {
            // The leases settled: every agent held, by every replica.
            loop {
                let (held, owners): (i64, i64) = sqlx::query_as(
                    "SELECT count(*), count(DISTINCT replica_id) FROM cluster_assignments \
                     WHERE kind = 'agent' AND valid",
                )
                .fetch_one(sink.pool())
                .await?;
                if held as u64 == args.agents && owners == i64::from(n) {
                    break;
                }
                ensure!(
                    warm.elapsed() < Duration::from_secs(args.warmup_secs),
                    "the replicas' leases did not settle within {} s",
                    args.warmup_secs
                );
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            println!("{n} replicas hold the fleet");
        }
        let before = Snapshot::read(&render());
        tokio::time::sleep(Duration::from_secs(args.secs)).await;
        let after = Snapshot::read(&render());
        // Data lag now: per agent, the age of its newest stored sample (one series
        // per agent stands for it; every series of an agent is collected together).
        let lags: Vec<(f64,)> = sqlx::query_as(
            "SELECT extract(epoch FROM now() - (SELECT s.ts \
                                                 FROM pga_raw_before(m.id, 'infinity') s))::float8 \
             FROM (SELECT min(id) AS id FROM series GROUP BY agent_id) m ORDER BY 1",
        )
        .fetch_all(sink.pool())
        .await?;
        let lags: Vec<f64> = lags.into_iter().map(|(l,)| l - behind_s).collect();
        stop_tx.send_replace(true);
        for run in runs {
            run.await.ok();
        }
        Ok::<_, anyhow::Error>((warmup, before, after, lags))
    })?;
    let (warmup, before, after, lags) = outcome;
    let lag = |p: f64| {
        lags.get(((lags.len().max(1) - 1) as f64 * p).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    let scrapes = after.scrapes - before.scrapes;
    let samples = after.samples - before.samples;
    let due = args.agents * args.secs / 15;
    // Each agent has secs / 15 ticks in the window; a pull of the first or last one
    // may fall just outside it, so fewer than one less is a tick missed.
    let per_agent: Vec<u64> = after
        .per_agent
        .iter()
        .map(|(a, n)| n - before.per_agent.get(a).copied().unwrap_or(0))
        .collect();
    let short = per_agent
        .iter()
        .filter(|&&n| n + 1 < args.secs / 15)
        .count();
    println!(
        "warm-up: every agent pulled once after {:.1} s ({} series registered)",
        warmup.as_secs_f64(),
        args.agents * args.series
    );
    println!(
        "fleet {} × {}, steady state over {} s: {scrapes} pulls started of ~{due} due ({:.0} %), \
         {} failed; pull latency p50 ≤ {} s, p95 ≤ {} s (histogram bucket bounds); \
         {samples} samples written ({:.0}/s; the agents produce {}/s); data lag at the \
         end (age of each agent's newest stored sample; collections are 10 s apart, \
         pulls due every 15 s): median {:.0} s, max {:.0} s",
        args.agents,
        args.series,
        args.secs,
        100.0 * scrapes as f64 / due.max(1) as f64,
        after.failures - before.failures,
        after.quantile_since(&before, 0.5),
        after.quantile_since(&before, 0.95),
        samples as f64 / args.secs as f64,
        args.agents * args.series * 1000 / INTERVAL_MS as u64,
        lag(0.5),
        lag(1.0),
    );
    println!(
        "per agent: fewest pulls started {} of {} ticks in the window; agents with a tick \
         missed (fewer than {}): {short}",
        per_agent.iter().min().copied().unwrap_or(0),
        args.secs / 15,
        (args.secs / 15).saturating_sub(1),
    );
    Ok(())
}
