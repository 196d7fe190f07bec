//! `pga-bench dashboards`: the time of every panel query of the PostgreSQL dashboards
//! over 7 days of a simulated fleet, written through the federator's sink.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use pga_federator::db::sink::{RetentionOptions, Sink, SinkOptions};
use pga_federator::pull::batch::{Batch, Cursor};
use pga_federator::pull::status::{AgentStatus, InstanceStatus};
use pga_format::{
    AgentId, BlockBuilder, DEFAULT_ZSTD_LEVEL, FrameMeta, MetricKind, SeriesId, SeriesMeta,
    decode_block,
};
use pga_lab::Cluster;

use crate::grafana::dashboard::{self, Source};
use crate::grafana::macros::{self, TimeRange};
use crate::grafana::run::{self, RunOptions};

const INTERVAL_MS: i64 = 10_000;
const BLOCK_MS: i64 = 600_000;
const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 86_400_000;

/// Time every panel query of the PostgreSQL dashboards over 7 days of a fleet.
///
/// Starts a throwaway cluster and writes, through the federator's sink (real blocks,
/// the sink's COPY and rollups, the inventory from each agent's status), --days days
/// of --agents simulated agents. Each agent reports one PostgreSQL instance `main`
/// with --databases databases and the series a real agent sends for them, at the
/// agent's default intervals: pg_stat_database, sessions by state, locks, WAL,
/// replication and system every 10 s; the --tables busiest tables and the
/// --statements top statements of each database, bgwriter, checkpointer and
/// wraparound every 60 s; sizes every 300 s. Counters grow at per-series rates,
/// gauges wander. Raw samples are kept for --raw-hours (older raw partitions are
/// dropped as retention would drop them, so the database fits the disk); the 10-minute
/// and 1-hour rollups cover every day, and so do the 1-minute ones unless
/// --minute-hours keeps only the newest (the 7-day panels read 10-minute rows; a
/// fleet of 50 agents × 2,000 series holds about 140 GB of 1-minute rows a week).
/// The hours job closes the buckets once the data is written, as the federator does
/// every 5 minutes; with --minute-hours it runs after every day written, before
/// retention, and the days after it arrive as late data into closed buckets, as a
/// backfill does.
///
/// Then every query of every SQL dashboard (variables on "All") runs as Grafana runs
/// it over the last 7 days at the step of a 1,000-pixel panel (10 minutes: 10-minute
/// rollups), --repeat times; the median of each is reported, slowest first, with the
/// goals (every panel under 500 ms, the fleet overview under 1 s), and one panel's
/// time against how many agents it selects.
///
/// With --database-url nothing is written: the panels of that central database are
/// timed the same way over the 7 days before its newest sample (for example a
/// database this command kept with PGA_LAB_KEEP=1, after a change to the query
/// layer; or your own, as the read-only role Grafana uses).
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct DashboardsArgs {
    /// Simulated agents.
    #[arg(long, default_value_t = 10)]
    pub agents: u64,
    /// Databases per agent's instance.
    #[arg(long, default_value_t = 3)]
    pub databases: u64,
    /// Busiest tables per database (the agent's relations_top_n).
    #[arg(long, default_value_t = 5)]
    pub tables: u64,
    /// Top statements per database (the agent's statements_top_n, per database).
    #[arg(long, default_value_t = 10)]
    pub statements: u64,
    /// Days of history.
    #[arg(long, default_value_t = 7)]
    pub days: u64,
    /// Hours of raw samples kept (the newest).
    #[arg(long, default_value_t = 24)]
    pub raw_hours: u64,
    /// Hours of 1-minute rollups kept (the newest); every day's when not given.
    #[arg(long)]
    pub minute_hours: Option<u64>,
    /// Runs of each query; the median is reported.
    #[arg(long, default_value_t = 3)]
    pub repeat: usize,
    /// Time the panels of this central database instead of writing one
    /// (postgres://role:password@host:port/database; the fleet options are then
    /// not used).
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
}

/// One series of the simulated agent: its metadata and every how many 10-s
/// collections it is collected.
struct SimSeries {
    meta: SeriesMeta,
    every: i64,
    /// Per-second rate of a counter, or the level of a gauge.
    scale: f64,
}

fn catalog(args: &DashboardsArgs) -> anyhow::Result<Vec<SimSeries>> {
    let mut out: Vec<SimSeries> = Vec::new();
    let mut add =
        |name: &str, labels: &[(&str, &str)], kind: MetricKind, every: i64, scale: f64| {
            let mut l = pga_format::owned_labels(labels);
            if name.starts_with("pg_") {
                l.push(("instance".into(), "main".into()));
            }
            let id = SeriesId(out.len() as u64);
            let meta = SeriesMeta::new(id, name, l, kind, "", format!("{name} (simulated)"))?;
            out.push(SimSeries { meta, every, scale });
            anyhow::Ok(())
        };
    use MetricKind::{Counter as C, Gauge as G};
    for m in ["pg_up", "pg_server_version_num", "pg_in_recovery"] {
        add(m, &[], G, 1, 1.0)?;
    }
    add("pg_uptime_seconds", &[], C, 1, 1.0)?;
    add("pg_postmaster_start_time_seconds", &[], G, 1, 1.7e9)?;
    add("pg_oldest_xact_age_seconds", &[], G, 1, 3.0)?;
    add("pg_blocked_sessions", &[], G, 1, 0.5)?;
    add("pg_lock_wait_max_seconds", &[], G, 1, 0.2)?;
    for (mode, granted) in [
        ("AccessShareLock", "true"),
        ("RowExclusiveLock", "true"),
        ("ShareLock", "false"),
    ] {
        add(
            "pg_locks_count",
            &[("mode", mode), ("granted", granted)],
            G,
            1,
            8.0,
        )?;
    }
    for m in ["bytes", "records", "full_page_images"] {
        add(&format!("pg_stat_wal_{m}_total"), &[], C, 1, 5e4)?;
    }
    for m in ["timed", "requested"] {
        add(&format!("pg_checkpoints_{m}_total"), &[], C, 6, 0.003)?;
    }
    for m in ["write", "sync"] {
        add(
            &format!("pg_checkpoint_{m}_time_seconds_total"),
            &[],
            C,
            6,
            0.01,
        )?;
    }
    add("pg_checkpoint_buffers_written_total", &[], C, 6, 20.0)?;
    for m in ["buffers_clean", "buffers_alloc", "buffers_backend"] {
        add(&format!("pg_stat_bgwriter_{m}_total"), &[], C, 6, 10.0)?;
    }
    add(
        "pg_stat_replication_replay_lag_bytes",
        &[("application_name", "standby")],
        G,
        1,
        4096.0,
    )?;
    add(
        "pg_stat_replication_replay_lag_seconds",
        &[("application_name", "standby")],
        G,
        1,
        0.05,
    )?;
    add(
        "pg_replication_slot_retained_wal_bytes",
        &[("slot_name", "standby"), ("slot_type", "physical")],
        G,
        1,
        1e7,
    )?;
    add(
        "pg_replication_slot_active",
        &[("slot_name", "standby"), ("slot_type", "physical")],
        G,
        1,
        1.0,
    )?;
    for d in 0..args.databases {
        let db = format!("db{d}");
        let dl = [("datname", db.as_str())];
        for m in [
            "xact_commit",
            "xact_rollback",
            "blks_hit",
            "blks_read",
            "tup_returned",
            "tup_fetched",
            "tup_inserted",
            "tup_updated",
            "tup_deleted",
            "temp_bytes",
            "deadlocks",
            "conflicts",
        ] {
            add(&format!("pg_stat_database_{m}_total"), &dl, C, 1, 50.0)?;
        }
        for state in ["active", "idle", "idle in transaction"] {
            add(
                "pg_stat_activity_sessions",
                &[
                    ("datname", db.as_str()),
                    ("state", state),
                    ("wait_event_type", ""),
                    ("wait_event", ""),
                    ("backend_type", "client backend"),
                ],
                G,
                1,
                5.0,
            )?;
        }
        add("pg_database_size_bytes", &dl, G, 30, 1e9)?;
        add("pg_database_frozen_xid_age", &dl, G, 6, 1e7)?;
        add("pg_database_min_mxid_age", &dl, G, 6, 1e5)?;
        for t in 0..args.tables {
            let rel = format!("t{t}");
            let tl = [
                ("datname", db.as_str()),
                ("schemaname", "public"),
                ("relname", rel.as_str()),
            ];
            for m in [
                "seq_scan",
                "idx_scan",
                "n_tup_ins",
                "n_tup_upd",
                "autovacuum",
                "autoanalyze",
            ] {
                add(&format!("pg_stat_user_tables_{m}_total"), &tl, C, 6, 2.0)?;
            }
            for m in [
                "n_dead_tup",
                "last_autovacuum_timestamp_seconds",
                "last_autoanalyze_timestamp_seconds",
                "last_vacuum_timestamp_seconds",
            ] {
                add(&format!("pg_stat_user_tables_{m}"), &tl, G, 6, 1e3)?;
            }
            for m in ["heap_blks_read", "heap_blks_hit"] {
                add(&format!("pg_statio_user_tables_{m}_total"), &tl, C, 6, 30.0)?;
            }
            let il = [
                ("datname", db.as_str()),
                ("schemaname", "public"),
                ("relname", rel.as_str()),
                ("indexrelname", "pkey"),
            ];
            add("pg_stat_user_indexes_idx_scan_total", &il, C, 6, 2.0)?;
            add("pg_stat_user_indexes_idx_tup_read_total", &il, C, 6, 20.0)?;
            let sl = [
                ("datname", db.as_str()),
                ("schemaname", "public"),
                ("relname", rel.as_str()),
                ("relkind", "r"),
            ];
            add("pg_relation_total_size_bytes", &sl, G, 30, 1e8)?;
        }
        for q in 0..args.statements {
            let queryid = format!("{}", 1_000_000 + d * 1000 + q);
            let ql = [
                ("datname", db.as_str()),
                ("user", "app"),
                ("queryid", queryid.as_str()),
            ];
            for m in ["calls", "rows", "shared_blks_hit", "shared_blks_read"] {
                add(&format!("pg_stat_statements_{m}_total"), &ql, C, 6, 10.0)?;
            }
            add(
                "pg_stat_statements_exec_time_seconds_total",
                &ql,
                C,
                6,
                0.05,
            )?;
            let text = format!(
                "SELECT * FROM t{} WHERE id = $1 -- statement {q}",
                q % args.tables.max(1)
            );
            let il = [
                ("datname", db.as_str()),
                ("user", "app"),
                ("queryid", queryid.as_str()),
                ("query", text.as_str()),
            ];
            add("pg_stat_statements_query_info", &il, G, 6, 1.0)?;
        }
    }
    for cpu in ["0", "1"] {
        for mode in ["user", "system", "iowait", "idle"] {
            add(
                "node_cpu_seconds_total",
                &[("cpu", cpu), ("mode", mode)],
                C,
                1,
                0.25,
            )?;
        }
    }
    add("node_cpu_count", &[], G, 1, 2.0)?;
    for m in ["MemTotal", "MemAvailable"] {
        add(&format!("node_memory_{m}_bytes"), &[], G, 1, 8e9)?;
    }
    add("node_load1", &[], G, 1, 1.0)?;
    for r in ["cpu", "memory", "io"] {
        add(
            &format!("node_pressure_{r}_waiting_seconds_total"),
            &[],
            C,
            1,
            0.01,
        )?;
    }
    for m in ["read_bytes", "written_bytes", "io_time_seconds"] {
        add(
            &format!("node_disk_{m}_total"),
            &[("device", "vda")],
            C,
            1,
            1e5,
        )?;
    }
    for m in ["receive", "transmit"] {
        add(
            &format!("node_network_{m}_bytes_total"),
            &[("device", "eth0")],
            C,
            1,
            1e5,
        )?;
    }
    let fl = [
        ("role", "data_directory"),
        ("path", "/var/lib/postgresql"),
        ("mountpoint", "/"),
        ("device", "/dev/vda"),
        ("fstype", "ext4"),
    ];
    add("node_filesystem_size_bytes", &fl, G, 1, 1e11)?;
    add("node_filesystem_avail_bytes", &fl, G, 1, 4e10)?;
    Ok(out)
}

/// The value of series `i` of agent `a` at `ts`.
fn value(s: &SimSeries, i: usize, a: u64, ts: i64) -> f64 {
    let secs = ts as f64 / 1000.0;
    let jitter = ((i as u64 * 31 + a * 17) % 97) as f64 / 97.0;
    match s.meta.kind {
        MetricKind::Counter => (secs - 1.7e9).max(0.0) * s.scale * (0.5 + jitter),
        MetricKind::Gauge => {
            let wave = ((secs / 600.0 + jitter * std::f64::consts::TAU).sin() + 1.0) / 2.0;
            if s.scale == 1.0 && s.meta.name != "node_load1" {
                1.0
            } else {
                s.scale * (0.5 + 0.5 * wave)
            }
        }
    }
}

fn agent_id(a: u64) -> AgentId {
    let mut id = [0x5d; 16];
    id[..8].copy_from_slice(&a.to_le_bytes());
    AgentId(id)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

pub fn run(args: &DashboardsArgs) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run_async(args))
}

async fn run_async(args: &DashboardsArgs) -> anyhow::Result<()> {
    if let Some(url) = &args.database_url {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(url)
            .await
            .with_context(|| format!("connecting to --database-url {}", redact(url)))?;
        // The range ends with the minute of the newest sample stored.
        let (newest,): (Option<i64>,) = sqlx::query_as("SELECT max(last_ts_ms) FROM agent_cursors")
            .fetch_one(&pool)
            .await
            .context("reading the newest sample time from agent_cursors")?;
        let newest = newest.context(
            "the database holds no agent's data (agent_cursors is empty): point --database-url \
             at a central database the federator has written",
        )?;
        let end = newest - newest.rem_euclid(60_000) + 60_000;
        println!("pga-bench dashboards: the panels of {}", redact(url));
        return time_panels(&pool, end, args.repeat, None).await;
    }
    if let Some(h) = args.minute_hours {
        anyhow::ensure!(
            h >= args.raw_hours,
            "--minute-hours {h} is below --raw-hours {}: the federator keeps 1-minute rollups \
             at least as long as raw samples; raise --minute-hours",
            args.raw_hours
        );
    }
    let catalog = catalog(args)?;
    let pg = Cluster::builder()
        .setting("synchronous_commit", "off")
        .setting("max_wal_size", "4GB")
        .superuser_password("bench")
        .start()
        .context("starting PostgreSQL")?;
    pg.create_database("central")?;
    let full = Sink::connect(
        &pg.url("central"),
        SinkOptions {
            max_connections: 2,
            acquire_timeout: Duration::from_secs(120),
            retention: RetentionOptions {
                raw: Duration::from_millis((args.days as i64 * DAY_MS + 2 * DAY_MS) as u64),
                ..RetentionOptions::default()
            },
            ..SinkOptions::default()
        },
    )
    .await?;
    full.migrate().await?;
    let short = Sink::connect(
        &pg.url("central"),
        SinkOptions {
            max_connections: 1,
            retention: RetentionOptions {
                raw: Duration::from_secs(args.raw_hours.saturating_mul(3600)),
                rollup_1m: match args.minute_hours {
                    Some(h) => Duration::from_secs(h.saturating_mul(3600)),
                    None => RetentionOptions::default().rollup_1m,
                },
                ..RetentionOptions::default()
            },
            ..SinkOptions::default()
        },
    )
    .await?;

    let now = pga_lab::now_ms();
    let end = now - now.rem_euclid(BLOCK_MS);
    let start = end - args.days as i64 * DAY_MS;
    println!(
        "pga-bench dashboards: {} agents × {} series ({} databases, {} tables and {} statements per database), \
         {} days, raw samples for the newest {} h, 1-minute rollups for {}",
        args.agents,
        catalog.len(),
        args.databases,
        args.tables,
        args.statements,
        args.days,
        args.raw_hours,
        match args.minute_hours {
            Some(h) => format!("the newest {h} h"),
            None => "every day".into(),
        }
    );
    for a in 0..args.agents {
        let status = AgentStatus {
            agent_id: Some(format!("{:?}", agent_id(a))),
            version: Some("bench".into()),
            host: Some(format!("host-{a:03}")),
            newest_sequence: None,
            instances: vec![InstanceStatus {
                name: "main".into(),
                host: Some("/run/postgresql".into()),
                port: Some(5432),
                server_version: Some("16.4".into()),
                server_version_num: Some(160_004),
                system_identifier: Some(7_000_000_000_000_000_000 + a as i64),
                in_recovery: Some(false),
                databases: Some((0..args.databases).map(|d| format!("db{d}")).collect()),
            }],
            missing: vec![],
        };
        full.record_status(
            &format!("agent-{a:03}"),
            "https://bench",
            &BTreeMap::new(),
            &status,
        )
        .await?;
    }
    let written = Instant::now();
    let mut samples = 0u64;
    let mut seq = 0u64;
    let mut closed_rows = 0u64;
    let mut closing_time = Duration::ZERO;
    let hour_blocks = HOUR_MS / BLOCK_MS;
    let mut t = start;
    while t < end {
        for a in 0..args.agents {
            let mut blocks = Vec::new();
            for b in 0..hour_blocks {
                let from = t + b * BLOCK_MS;
                let mut builder = BlockBuilder::new();
                for k in 0..BLOCK_MS / INTERVAL_MS {
                    let ts = from + k * INTERVAL_MS;
                    let step = ts / INTERVAL_MS;
                    let pairs: Vec<(SeriesId, f64)> = catalog
                        .iter()
                        .enumerate()
                        .filter(|(_, s)| step % s.every == 0)
                        .map(|(i, s)| (s.meta.id, value(s, i, a, ts)))
                        .collect();
                    samples += pairs.len() as u64;
                    builder.push_collection(ts, &pairs)?;
                }
                let bytes = builder.encode(
                    FrameMeta {
                        agent_id: agent_id(a),
                        sequence: seq + b as u64,
                    },
                    DEFAULT_ZSTD_LEVEL,
                )?;
                blocks.push(decode_block(&bytes)?);
            }
            let cursor = Cursor {
                last_sequence: blocks.last().map(|b| b.header.sequence),
                last_ts_ms: blocks.last().map(|b| b.header.max_ts),
                series_count: catalog.len() as u64,
            };
            let batch = Batch {
                agent: format!("agent-{a:03}"),
                agent_id: agent_id(a),
                series: if t == start {
                    catalog
                        .iter()
                        .map(|s| (s.meta.id, s.meta.clone()))
                        .collect()
                } else {
                    Default::default()
                },
                blocks,
                head: None,
                gap: None,
                complete_through_ms: None,
                cursor,
            };
            full.ingest(&batch).await?;
        }
        seq += hour_blocks as u64;
        t += HOUR_MS;
        if (t - start) % DAY_MS == 0 {
            if args.minute_hours.is_some() {
                // The 1-minute rows about to be dropped are closed into 10-minute,
                // 1-hour and 1-day rows first.
                let closing = Instant::now();
                let closed = full.close_hours(None, None).await?;
                anyhow::ensure!(closed.complete, "the hours job did not finish: {closed:?}");
                closed_rows += closed.rows;
                closing_time += closing.elapsed();
            }
            // Retention as of the newest data written: drops only raw partitions
            // that end before it, all of whose days are written.
            short.retention(t).await?;
            println!(
                "  written through the sink: day {} of {} ({} samples, {:.0} s, database {})",
                (t - start) / DAY_MS,
                args.days,
                samples,
                written.elapsed().as_secs_f64(),
                pg.psql(
                    "central",
                    "SELECT pg_size_pretty(pg_database_size('central'))"
                )?
            );
        }
    }
    short.retention(now).await?;
    // The federator's hours job runs every 5 minutes; here once, over the whole
    // history written.
    let closing = Instant::now();
    let closed = full.close_hours(None, None).await?;
    anyhow::ensure!(closed.complete, "the hours job did not finish: {closed:?}");
    closed_rows += closed.rows;
    closing_time += closing.elapsed();
    println!(
        "hours job: {closed_rows} 1-hour, 10-minute and 1-day rows of {} agents in {:.1} s{}",
        args.agents,
        closing_time.as_secs_f64(),
        if args.minute_hours.is_some() {
            " (after each day; the days after the first arrived as late data, their rows \
             written by the ingest)"
        } else {
            ""
        }
    );
    pg.psql("central", "VACUUM ANALYZE")?;
    let sizes = pg.psql(
        "central",
        "SELECT (SELECT count(*) FROM pga_samples) || ' raw samples, ' || \
                (SELECT count(*) FROM samples_1m) || ' 1-minute rows, ' || \
                (SELECT count(*) FROM samples_10m) || ' 10-minute rows, ' || \
                (SELECT count(*) FROM samples_1h) || ' 1-hour rows, ' || \
                (SELECT count(*) FROM samples_1d) || ' 1-day rows, ' || \
                (SELECT round(sum(pg_total_relation_size(p.name::regclass)) \
                              / greatest((SELECT count(*) FROM samples_1m), 1), 1) \
                 FROM pga_partitions p WHERE p.parent = 'samples_1m') \
                || ' bytes per 1-minute row, ' || \
                (SELECT round(sum(pg_total_relation_size(p.name::regclass)) \
                              / greatest((SELECT count(*) FROM samples_10m), 1), 1) \
                 FROM pga_partitions p WHERE p.parent = 'samples_10m') \
                || ' per 10-minute row, ' || \
                (SELECT round(sum(pg_total_relation_size(p.name::regclass)) \
                              / greatest((SELECT count(*) FROM samples_1h), 1), 1) \
                 FROM pga_partitions p WHERE p.parent = 'samples_1h') \
                || ' per 1-hour row, ' || \
                pg_size_pretty(pg_database_size('central'))",
    )?;
    println!(
        "wrote {samples} samples in {:.0} s; the database holds {sizes}",
        written.elapsed().as_secs_f64()
    );

    // Every panel over the last 7 days, as the read-only role.
    pg.psql(
        "central",
        "CREATE ROLE grafana LOGIN PASSWORD 'bench' IN ROLE pga_reader",
    )?;
    let url = pg
        .url("central")
        .replacen("postgres:bench@", "grafana:bench@", 1);
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await?;
    time_panels(&pool, end, args.repeat, Some((args.databases, args.days))).await
}

/// The URL without its password.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => match url[s + 3..at].find(':') {
            Some(c) => format!("{}:***{}", &url[..s + 3 + c], &url[at..]),
            None => url.to_owned(),
        },
        _ => url.to_owned(),
    }
}

/// Times every panel query over the 7 days before `end` (ms), `repeat` times each,
/// and prints them; `fleet` is the simulated fleet's databases per agent and days,
/// when known, for the rows the last figures read.
async fn time_panels(
    pool: &sqlx::PgPool,
    end: i64,
    repeat: usize,
    fleet: Option<(u64, u64)>,
) -> anyhow::Result<()> {
    let boards = dashboard::load_dir(&crate::grafana::dashboards_dir().join("grafana"))
        .map_err(anyhow::Error::msg)?;
    let opts = RunOptions {
        // Ending where the data ends, not now: panels of current values look back
        // 10 minutes, however long the writing took.
        range: TimeRange::last(end, 7 * 86_400),
        pixels: 1000,
        min_interval_ms: 10_000,
        timescaledb: false,
    };
    println!(
        "panels over the last 7 days at a 1,000-pixel step ({}), median of {}:",
        macros::format_interval(macros::panel_interval_ms(opts.range, 1000, 10_000)),
        repeat
    );
    let mut timings: Vec<(Duration, String, usize)> = Vec::new();
    let mut per_board: BTreeMap<String, Duration> = BTreeMap::new();
    for d in boards.iter().filter(|d| d.is_sql()) {
        let (scope, _) = run::resolve_variables(pool, d, &opts).await;
        for q in d.queries() {
            if matches!(q.source, Source::Variable(_)) {
                continue;
            }
            let mut times = Vec::new();
            let mut rows = 0;
            for _ in 0..repeat.max(1) {
                let o = run::run_query(pool, &q, &scope, &opts).await;
                rows = o
                    .result
                    .map_err(|e| anyhow::anyhow!("{}: {e}\n{}", o.key, o.sql))?;
                times.push(o.elapsed);
            }
            let m = median(times);
            *per_board.entry(d.uid.clone()).or_default() += m;
            timings.push((m, q.key(), rows));
        }
    }
    timings.sort_by_key(|t| std::cmp::Reverse(t.0));
    for (m, key, rows) in &timings {
        println!(
            "  {:>8.1} ms  {key} ({rows} rows)",
            m.as_secs_f64() * 1000.0
        );
    }
    println!("per dashboard (sum of its panels, run one after another):");
    for (uid, total) in &per_board {
        println!("  {:>8.1} ms  {uid}", total.as_secs_f64() * 1000.0);
    }
    let over: Vec<&(Duration, String, usize)> = timings
        .iter()
        .filter(|t| t.0 > Duration::from_millis(500))
        .collect();
    println!(
        "goal: every panel under 500 ms: {} ({} over); fleet overview's slowest panel {:.1} ms (goal 1 s)",
        if over.is_empty() { "met" } else { "NOT met" },
        over.len(),
        timings
            .iter()
            .filter(|t| t.1.starts_with("pga-fleet/"))
            .map(|t| t.0.as_secs_f64() * 1000.0)
            .fold(0.0, f64::max)
    );

    // How a panel's cost follows what it selects: commits per second per instance,
    // over 1, a quarter, half and all agents.
    let fleet_board = boards
        .iter()
        .find(|d| d.uid == "pga-fleet")
        .context("no fleet dashboard")?;
    let q = fleet_board
        .queries()
        .into_iter()
        .find(|q| matches!(&q.source, Source::Panel { title, .. } if title == "Commits per second"))
        .context("no commits panel")?;
    let (mut scope, _) = run::resolve_variables(pool, fleet_board, &opts).await;
    let all = scope.vars["agent"].values.clone();
    println!("commits per second over 7 days against the agents selected:");
    let mut counts: Vec<usize> = [1, all.len() / 4, all.len() / 2, all.len()]
        .into_iter()
        .map(|n| n.max(1))
        .collect();
    counts.dedup();
    for n in counts {
        scope.vars.get_mut("agent").expect("agent variable").values = all[..n].to_vec();
        let mut times = Vec::new();
        for _ in 0..repeat.max(1) {
            times.push(run::run_query(pool, &q, &scope, &opts).await.elapsed);
        }
        let took = median(times).as_secs_f64() * 1000.0;
        match fleet {
            Some((databases, days)) => {
                let series = n as u64 * databases;
                println!(
                    "  {n:>4} agents ({series} series, {} 10-minute rows): {took:.1} ms",
                    series * days * 144,
                );
            }
            None => println!("  {n:>4} agents: {took:.1} ms"),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn redact_hides_only_the_password() {
        assert_eq!(
            redact("postgres://grafana:s3cr:t@db.example:5432/central"),
            "postgres://grafana:***@db.example:5432/central"
        );
        assert_eq!(
            redact("postgres://grafana@db.example/central"),
            "postgres://grafana@db.example/central"
        );
        assert_eq!(redact("postgres:///central"), "postgres:///central");
    }
}
