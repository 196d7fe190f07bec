//! `pga-bench alerts`: the built-in rule pack evaluated over a fleet while it is being
//! ingested, and the notification latency.
//!
//! `--agents` simulated agents ([`crate::simagent`], the fleet bench's) serve
//! `--series` series each, shaped like a PostgreSQL host's as pga-agent reports it
//! (instance, activity, per-database, replication, host and per-table families; the
//! pack's metrics among them), collected every 10 s. The federator's scheduler pulls
//! them every 15 s into a throwaway PostgreSQL for the whole run (ingest runs), the
//! built-in pack (`federator/rules/`) is loaded as `pga-federator run` loads it, and
//! the evaluator runs every 30 s as its job does, on the 15-second data-time grid (so
//! two steps per agent per cycle). After a warm-up (every agent pulled once; then a
//! first, cold cycle that also loads the series index) it times `--cycles` cycles:
//! wall time, split into reads, evaluation and writes. Goal: under 5 s per cycle on a
//! 2-core machine.
//!
//! Latency: at `--flip-after-secs` of data time every agent's `pg_up` turns 0, so the
//! pack's PgServerDown fires for the whole fleet; an endpoint speaking Alertmanager's
//! `POST /api/v2/alerts` records when each alert arrives. The latency of an agent is
//! from the moment its flipped sample became collectable to its alert's arrival; it
//! includes the rule's `for` (60 s), the collection (10 s), the pull (15 s), the
//! evaluation schedule (30 s) and the delivery.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use clap::Args;
use pga_federator::alerting::engine::Settings;
use pga_federator::alerting::evaluator::{CycleReport, Evaluator, EvaluatorSettings};
use pga_federator::alerting::metrics::AlertingMetrics;
use pga_federator::alerting::rulefile::load_all;
use pga_federator::config::parse_schedule;
use pga_federator::db::sink::{Sink, SinkOptions};
use pga_federator::db::{outbox, rules};
use pga_federator::notify::http::{Auth, Client};
use pga_federator::notify::worker::{DeliverySettings, Kind, Receiver, Worker};
use pga_federator::pull::scheduler;
use pga_federator::telemetry::Telemetry;
use pga_format::{MetricKind, SeriesId, SeriesMeta};
use pga_lab::Cluster;
use sqlx::Connection;
use tokio::sync::{Notify, watch};

use crate::simagent::{Layout, Templates};

/// Measure the alert evaluation of the built-in pack over a fleet, and the latency of
/// a notification.
#[derive(Debug, Args)]
pub struct AlertsArgs {
    /// Simulated agents.
    #[arg(long, default_value_t = 1000)]
    pub agents: u64,
    /// Series per agent (at least 200).
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(200..=100_000))]
    pub series: u64,
    /// Evaluation cycles timed after the cold one (more run until every agent's
    /// alert has arrived).
    #[arg(long, default_value_t = 3)]
    pub cycles: u32,
    /// Data time at which every agent's pg_up turns 0, in seconds after its data
    /// starts (the warm-up must be over well before).
    #[arg(long, default_value_t = 200)]
    pub flip_after_secs: u64,
    /// Pulls at once (scrape.max_concurrent).
    #[arg(long, default_value_t = 32)]
    pub max_concurrent: usize,
    /// Database connections of the ingest (database.max_connections).
    #[arg(long, default_value_t = 8)]
    pub db_connections: u32,
    /// Database connections of the evaluator (alerting.max_connections).
    #[arg(long, default_value_t = 3)]
    pub eval_connections: u32,
    /// How often the series are collected.
    #[arg(long, value_enum, default_value_t = Cadence::Agent)]
    pub cadence: Cadence,
}

const INTERVAL_MS: i64 = 10_000;
const HEAD_COLLECTIONS: u64 = 120;

type ValueOf = Box<dyn Fn(i64) -> f64 + Send + Sync>;

/// How often the simulated series are collected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Cadence {
    /// As pga-agent by default: its fast group every 10 s (reachability, activity,
    /// locks, replication, WAL, logs, host), its slow group every 60 s (databases,
    /// wraparound, checkpointer, archiver, settings, tables), sizes every 300 s.
    Agent,
    /// Every series every 10 s, as `pga-bench fleet` (the heaviest ingest).
    Uniform,
}

/// A series' collection group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Group {
    Fast,
    Slow,
    Sizes,
}

/// Series being built: their descriptions and value functions.
#[derive(Default)]
struct Host {
    metas: Vec<SeriesMeta>,
    values: Vec<ValueOf>,
    groups: Vec<Group>,
}

impl Host {
    fn add(&mut self, name: &str, labels: &[(&str, &str)], value: ValueOf) -> anyhow::Result<()> {
        let group = if name.starts_with("pg_stat_database_")
            || name.starts_with("pg_database_")
            || name.starts_with("pg_checkpoints_")
            || name.starts_with("pg_stat_archiver_")
            || name.starts_with("pg_settings_")
            || name.starts_with("pg_stat_user_tables_")
            || name.starts_with("pg_statio_user_tables_")
        {
            Group::Slow
        } else if name.starts_with("pg_relation_") {
            Group::Sizes
        } else {
            Group::Fast
        };
        self.groups.push(group);
        let mut l: Vec<(String, String)> = vec![("pg_instance".into(), "main".into())];
        l.extend(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let kind = if name.ends_with("_total") {
            MetricKind::Counter
        } else {
            MetricKind::Gauge
        };
        self.metas.push(SeriesMeta::new(
            SeriesId(self.metas.len() as u64),
            name,
            l,
            kind,
            "",
            "A simulated PostgreSQL host series.",
        )?);
        self.values.push(value);
        Ok(())
    }
}

/// A PostgreSQL host's series as pga-agent names them, `n` in all, their values and
/// collection groups; `pg_up` turns 0 at `flip_ms`.
#[allow(clippy::type_complexity)]
fn pg_host(
    n: u64,
    base_ms: i64,
    flip_ms: i64,
) -> anyhow::Result<(Vec<SeriesMeta>, Vec<ValueOf>, Vec<Group>)> {
    let mut h = Host::default();
    let secs = move |ts: i64| (ts - base_ms) as f64 / 1000.0;
    h.add(
        "pg_up",
        &[],
        Box::new(move |ts| if ts >= flip_ms { 0.0 } else { 1.0 }),
    )?;
    h.add(
        "pg_uptime_seconds",
        &[],
        Box::new(move |ts| 86_400.0 + secs(ts)),
    )?;
    h.add("pg_settings_max_connections", &[], Box::new(|_| 200.0))?;
    h.add(
        "pg_settings_superuser_reserved_connections",
        &[],
        Box::new(|_| 3.0),
    )?;
    h.add(
        "pg_oldest_xact_age_seconds",
        &[],
        Box::new(|ts| (ts / 1000 % 7) as f64),
    )?;
    h.add(
        "pg_oldest_idle_in_transaction_age_seconds",
        &[],
        Box::new(|_| 0.0),
    )?;
    h.add("pg_lock_wait_max_seconds", &[], Box::new(|_| 0.0))?;
    h.add(
        "pg_checkpoints_timed_total",
        &[],
        Box::new(move |ts| (secs(ts) / 300.0).floor()),
    )?;
    h.add(
        "pg_checkpoints_requested_total",
        &[],
        Box::new(move |ts| (secs(ts) / 3000.0).floor()),
    )?;
    h.add("pg_stat_archiver_failed_total", &[], Box::new(|_| 0.0))?;
    h.add(
        "node_pressure_memory_waiting_seconds_total",
        &[],
        Box::new(move |ts| secs(ts) * 0.001),
    )?;
    h.add(
        "node_pressure_cpu_waiting_seconds_total",
        &[],
        Box::new(move |ts| secs(ts) * 0.02),
    )?;
    for role in ["data_directory", "wal_directory"] {
        let fs: &[(&str, &str)] = &[
            ("role", role),
            ("mountpoint", "/pg"),
            ("device", "/dev/sdb1"),
            ("fstype", "ext4"),
        ];
        h.add("node_filesystem_avail_bytes", fs, Box::new(|_| 4e11))?;
        h.add("node_filesystem_size_bytes", fs, Box::new(|_| 1e12))?;
    }
    for (sev, class) in [
        ("ERROR", "57"),
        ("ERROR", "23"),
        ("FATAL", "28"),
        ("FATAL", "53"),
        ("PANIC", "XX"),
        ("LOG", ""),
    ] {
        h.add(
            "pg_log_messages_total",
            &[("severity", sev), ("sqlstate_class", class)],
            Box::new(move |ts| (secs(ts) / 600.0).floor()),
        )?;
    }
    let dbs = ["app", "billing", "reports", "auth", "postgres"];
    for db in dbs {
        for state in ["active", "idle", "idle in transaction", "disabled"] {
            h.add(
                "pg_stat_activity_sessions",
                &[
                    ("datname", db),
                    ("state", state),
                    ("backend_type", "client backend"),
                ],
                Box::new(|_| 3.0),
            )?;
        }
    }
    for db in dbs {
        let d: &[(&str, &str)] = &[("datname", db)];
        h.add("pg_stat_database_deadlocks_total", d, Box::new(|_| 0.0))?;
        h.add(
            "pg_stat_database_xact_commit_total",
            d,
            Box::new(move |ts| secs(ts) * 100.0),
        )?;
        h.add(
            "pg_stat_database_xact_rollback_total",
            d,
            Box::new(move |ts| secs(ts) * 0.5),
        )?;
        h.add(
            "pg_stat_database_blks_hit_total",
            d,
            Box::new(move |ts| secs(ts) * 10_000.0),
        )?;
        h.add(
            "pg_stat_database_blks_read_total",
            d,
            Box::new(move |ts| secs(ts) * 10.0),
        )?;
        h.add(
            "pg_stat_database_temp_bytes_total",
            d,
            Box::new(move |ts| secs(ts) * 1000.0),
        )?;
        h.add("pg_database_frozen_xid_age", d, Box::new(|_| 1.5e8))?;
        h.add("pg_database_min_mxid_age", d, Box::new(|_| 2e7))?;
    }
    for (app, addr) in [("standby1", "10.0.0.2"), ("standby2", "10.0.0.3")] {
        let r: &[(&str, &str)] = &[
            ("application_name", app),
            ("client_addr", addr),
            ("state", "streaming"),
            ("sync_state", "async"),
        ];
        h.add("pg_stat_replication_replay_lag_bytes", r, Box::new(|_| 1e6))?;
        h.add(
            "pg_stat_replication_replay_lag_seconds",
            r,
            Box::new(|_| 0.2),
        )?;
        let s: &[(&str, &str)] = &[
            ("slot_name", app),
            ("slot_type", "physical"),
            ("database", ""),
        ];
        h.add("pg_replication_slot_active", s, Box::new(|_| 1.0))?;
        h.add(
            "pg_replication_slot_retained_wal_bytes",
            s,
            Box::new(|_| 1e7),
        )?;
    }
    // Tables fill the rest: the three series of each that the pack reads, and ten
    // it does not.
    const OTHER: [&str; 10] = [
        "pg_stat_user_tables_seq_scan_total",
        "pg_stat_user_tables_idx_scan_total",
        "pg_stat_user_tables_n_tup_ins_total",
        "pg_stat_user_tables_n_tup_upd_total",
        "pg_stat_user_tables_n_tup_del_total",
        "pg_statio_user_tables_heap_blks_hit_total",
        "pg_statio_user_tables_heap_blks_read_total",
        "pg_statio_user_tables_idx_blks_hit_total",
        "pg_statio_user_tables_idx_blks_read_total",
        "pg_relation_size_bytes",
    ];
    let mut t = 0;
    while (h.metas.len() as u64) < n {
        let db = dbs[t % 4];
        let rel = format!("table_{t}");
        let tl: Vec<(&str, &str)> =
            vec![("datname", db), ("schemaname", "public"), ("relname", &rel)];
        if n - h.metas.len() as u64 >= 3 {
            h.add("pg_stat_user_tables_n_dead_tup", &tl, Box::new(|_| 1_000.0))?;
            h.add(
                "pg_stat_user_tables_n_live_tup",
                &tl,
                Box::new(|_| 100_000.0),
            )?;
            h.add(
                "pg_stat_user_tables_last_autovacuum_timestamp_seconds",
                &tl,
                Box::new(|ts| (ts / 1000 - 3600) as f64),
            )?;
        }
        let room = (n - h.metas.len() as u64) as usize;
        for m in OTHER.iter().take(room) {
            h.add(m, &tl, Box::new(move |ts| secs(ts) * 3.0))?;
        }
        t += 1;
    }
    Ok((h.metas, h.values, h.groups))
}

/// Arrival times of alerts at the Alertmanager endpoint, by agent.
type Arrivals = Arc<Mutex<HashMap<String, Instant>>>;

/// An endpoint speaking Alertmanager's `POST /api/v2/alerts`; the port.
async fn alertmanager_endpoint(arrivals: Arrivals) -> anyhow::Result<u16> {
    let app = axum::Router::new().route(
        "/api/v2/alerts",
        axum::routing::post(move |body: axum::body::Bytes| {
            let arrivals = arrivals.clone();
            async move {
                let now = Instant::now();
                if let Ok(serde_json::Value::Array(alerts)) = serde_json::from_slice(&body) {
                    let mut a = arrivals.lock().unwrap_or_else(|p| p.into_inner());
                    for alert in alerts {
                        if alert["labels"]["alertname"] == "PgServerDown"
                            && let Some(agent) = alert["labels"]["agent"].as_str()
                        {
                            a.entry(agent.to_owned()).or_insert(now);
                        }
                    }
                }
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    Ok(port)
}

fn quantile(sorted: &[f64], p: f64) -> f64 {
    sorted
        .get(((sorted.len().max(1) - 1) as f64 * p).round() as usize)
        .copied()
        .unwrap_or(f64::NAN)
}

/// `pga-bench alerts`.
pub fn run(args: &AlertsArgs) -> anyhow::Result<()> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64;
    // The heads start now (on the 10-second grid), so data time follows wall time.
    let head_start = now - now.rem_euclid(INTERVAL_MS);
    let flip_ms = head_start + args.flip_after_secs as i64 * 1000;
    ensure!(
        (args.flip_after_secs as i64 * 1000) < HEAD_COLLECTIONS as i64 * INTERVAL_MS - 300_000,
        "--flip-after-secs must leave 5 minutes of the simulated agents' {} s of data",
        HEAD_COLLECTIONS as i64 * INTERVAL_MS / 1000
    );
    println!(
        "building {} PostgreSQL-shaped series per agent…",
        args.series
    );
    let (metas, values, groups) = pg_host(args.series, head_start, flip_ms)?;
    let used = {
        let files = load_all(&[pack_dir()]).map_err(|e| {
            anyhow::anyhow!(
                "{}",
                e.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        })?;
        let metrics: std::collections::HashSet<String> = files
            .iter()
            .flat_map(|f| f.rules.iter())
            .flat_map(|r| {
                r.expr
                    .terms()
                    .into_iter()
                    .map(|t| t.selector.metric.clone())
            })
            .collect();
        metas
            .iter()
            .filter(|m| metrics.contains(m.name.as_str()))
            .count()
    };
    let cadence = args.cadence;
    let value = move |i: u64, ts: i64| {
        let period = match (cadence, groups[i as usize]) {
            (Cadence::Uniform, _) | (_, Group::Fast) => INTERVAL_MS,
            (_, Group::Slow) => 60_000,
            (_, Group::Sizes) => 300_000,
        };
        ((ts - head_start).rem_euclid(period) == 0).then(|| values[i as usize](ts))
    };
    let templates = Arc::new(Templates::build_with(
        metas,
        &value,
        Layout {
            blocks: 0,
            collections: HEAD_COLLECTIONS,
            head_collections: HEAD_COLLECTIONS,
            interval_ms: INTERVAL_MS,
            head_start_ms: head_start,
        },
    )?);
    // A throwaway database that keeps little WAL: the fleet writes 200,000 samples
    // a second, and the disk is the machine's.
    let pg = Cluster::builder()
        .setting("synchronous_commit", "off")
        .setting("fsync", "off")
        .setting("full_page_writes", "off")
        .setting("wal_level", "minimal")
        .setting("max_wal_senders", "0")
        .setting("max_wal_size", "1GB")
        .start()
        .context("starting PostgreSQL")?;
    pg.create_database("central")?;
    let url = pg.url("central");
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let sink = Arc::new(
            Sink::connect(
                &url,
                SinkOptions {
                    max_connections: args.db_connections,
                    acquire_timeout: Duration::from_secs(60),
                    ..SinkOptions::default()
                },
            )
            .await?,
        );
        sink.migrate().await?;
        let files = load_all(&[pack_dir()]).map_err(|e| anyhow::anyhow!("{}", e.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")))?;
        let n_rules: usize = files.iter().map(|f| f.rules.len()).sum();
        {
            let mut c = sqlx::PgConnection::connect(&url).await?;
            let mut tx = c.begin().await?;
            rules::sync_files(&mut tx, &files).await?;
            tx.commit().await?;
        }
        // The fleet, pulled every 15 s for the whole run.
        let started = Instant::now();
        let schedule = parse_schedule("*/15 * * * * *")?;
        let jobs = crate::pull_cmd::sim_fleet(args.agents, &templates, started, &schedule).await?;
        println!(
            "{} agents × {} series ({used} of them read by the pack's {n_rules} rules), collected at the {:?} cadence, pulled every 15 s…",
            args.agents, args.series, args.cadence
        );
        let telemetry = Arc::new(Telemetry::new());
        let (stop_tx, stop) = watch::channel(false);
        let fleet = tokio::spawn(scheduler::run(
            jobs,
            sink.clone(),
            telemetry.clone(),
            crate::pull_cmd::sim_fleet_settings(args.max_concurrent),
            stop.clone(),
        ));
        // Notifications to an Alertmanager endpoint.
        let arrivals: Arrivals = Arc::default();
        let am = alertmanager_endpoint(arrivals.clone()).await?;
        let eval_pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(args.eval_connections)
            .connect(&url)
            .await?;
        outbox::ensure_receivers(&eval_pool, &[("am".into(), "alertmanager")]).await?;
        let wake = Arc::new(Notify::new());
        let metrics = AlertingMetrics::register(&mut prometheus_client::registry::Registry::default());
        let worker = Worker::new(
            Receiver {
                name: "am".into(),
                kind: Kind::Alertmanager,
                client: Client::new(&format!("http://127.0.0.1:{am}"), None, Auth::None, Duration::from_secs(10))?,
            },
            DeliverySettings {
                retry_initial: Duration::from_secs(1),
                retry_max: Duration::from_secs(60),
                resend: Duration::from_secs(60),
                resolved_resend: Duration::from_secs(900),
                valid_for: Duration::from_secs(240),
                external_url: String::new(),
                poll: Duration::from_secs(1),
            },
            url.parse()?,
            metrics.clone(),
        );
        let delivery = tokio::spawn(worker.run(wake.clone(), stop.clone()));
        // Warm-up: every agent pulled once.
        loop {
            let (n,): (i64,) = sqlx::query_as(
                "SELECT count(*) FROM agent_cursors WHERE watermark_ms IS NOT NULL",
            )
            .fetch_one(&eval_pool)
            .await?;
            if n as u64 >= args.agents {
                break;
            }
            ensure!(
                started.elapsed() < Duration::from_secs(args.flip_after_secs.saturating_sub(60)),
                "the warm-up (every agent pulled once) did not end a minute before the flip; \
                 raise --flip-after-secs or use fewer agents"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        println!("warm-up: every agent pulled once after {:.1} s", started.elapsed().as_secs_f64());
        let mut ev = Evaluator::new(
            eval_pool.clone(),
            url.parse()?,
            EvaluatorSettings {
                engine: Settings {
                    step_ms: 15_000,
                    late_after_ms: 120_000,
                    no_data_for_ms: 900_000,
                    max_steps_per_cycle: 240,
                },
                max_silence_ms: 900_000,
                external_url: String::new(),
                only_agents: None,
            },
            Some(metrics.clone()),
        );
        let wall = || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64)
        };
        let t = Instant::now();
        let cold = ev.cycle(wall()).await?;
        let cold_secs = t.elapsed().as_secs_f64();
        wake.notify_waiters();
        println!(
            "cold cycle (loads the series index): {cold_secs:.2} s — {} agents, {} series read, {} samples and rollup rows",
            cold.agents, cold.series_read, cold.samples_read
        );
        // Timed cycles every 30 s, on the schedule's instants, until the flip has been
        // notified for every agent (or given up on).
        let cron = parse_schedule("*/30 * * * * *")?;
        let mut timed: Vec<(f64, CycleReport)> = Vec::new();
        let flip_visible = started + Duration::from_millis((flip_ms - head_start).max(0) as u64);
        let give_up = flip_visible + Duration::from_secs(300);
        loop {
            let next = cron.upcoming(chrono::Utc).next().context("no next instant")?;
            tokio::time::sleep((next - chrono::Utc::now()).to_std().unwrap_or_default()).await;
            let t = Instant::now();
            let r = ev.cycle(wall()).await?;
            let secs = t.elapsed().as_secs_f64();
            wake.notify_waiters();
            println!(
                "cycle: {secs:.2} s (read {:.2}, evaluate {:.2}, write {:.2}) — {} steps, {} series, {} rows read, {} firing, {} notifications",
                r.read_secs, r.eval_secs, r.write_secs, r.steps, r.series_read, r.samples_read, r.firing, r.notifications
            );
            timed.push((secs, r));
            // The fleet writes about a gigabyte a minute: stop before the disk fills.
            let free = nix::sys::statvfs::statvfs(pg.data_dir())
                .map(|v| v.blocks_available() * v.fragment_size())
                .unwrap_or(u64::MAX);
            if free < 3 << 30 {
                println!("stopping: {} MiB left on the disk", free >> 20);
                break;
            }
            let notified = arrivals.lock().unwrap_or_else(|p| p.into_inner()).len() as u64;
            if (timed.len() as u32 >= args.cycles && notified >= args.agents) || Instant::now() > give_up {
                break;
            }
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        let samples_written = telemetry
            .render()
            .lines()
            .filter(|l| l.starts_with("pga_federator_samples_ingested_total"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>();
        stop_tx.send_replace(true);
        fleet.await.ok();
        delivery.await.ok();
        let mut secs: Vec<f64> = timed.iter().map(|(s, _)| *s).collect();
        secs.sort_by(f64::total_cmp);
        let mut lat: Vec<f64> = arrivals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(|a| a.saturating_duration_since(flip_visible).as_secs_f64())
            .collect();
        lat.sort_by(f64::total_cmp);
        println!();
        println!(
            "alerts {} × {}: {} evaluation cycles of the built-in pack ({n_rules} rules) while the fleet is ingested: \
             median {:.2} s, max {:.2} s per cycle (goal: under 5 s); cold first cycle {cold_secs:.2} s",
            args.agents,
            args.series,
            secs.len(),
            quantile(&secs, 0.5),
            secs.last().copied().unwrap_or(f64::NAN),
        );
        println!(
            "  ingest during the run: {:.0} samples written ({:.0}/s over {:.0} s)",
            samples_written,
            samples_written / started.elapsed().as_secs_f64(),
            started.elapsed().as_secs_f64()
        );
        println!(
            "notification latency, pg_up = 0 collectable → Alertmanager endpoint, {} of {} agents: \
             p50 {:.1} s, p95 {:.1} s, max {:.1} s (of which the rule's for: 60 s)",
            lat.len(),
            args.agents,
            quantile(&lat, 0.5),
            quantile(&lat, 0.95),
            lat.last().copied().unwrap_or(f64::NAN),
        );
        Ok::<_, anyhow::Error>(())
    })
}

fn pack_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../federator/rules")
}
