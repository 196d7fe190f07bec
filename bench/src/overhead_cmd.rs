//! `pga-bench overhead`: what monitoring one PostgreSQL host costs with `pga-agent`,
//! side by side with `prometheus-postgres-exporter` + `prometheus-node-exporter`.
//!
//! One throwaway cluster (pg_stat_statements preloaded) runs a rate-limited pgbench
//! load for the whole measurement. On it, at the same time:
//! * `pga-agent run` at its default intervals (fast 10 s, slow 60 s, sizes 300 s),
//!   PostgreSQL and system collectors on, storing into its ring store, connected as
//!   role `pga_agent`;
//! * `prometheus-postgres-exporter` (connected as role `pga_exporter`, every database
//!   discovered, with the package's example queries for tables, I/O, statements and
//!   sizes, their statement query moved to PostgreSQL 13+ column names) and
//!   `prometheus-node-exporter`, both scraped every `--scrape-secs` (default 10 s, the
//!   agent's fast interval) by a small scraper loop in this process.
//!
//! Both roles are plain `pg_monitor` members. At the end the command reports, per
//! process, CPU seconds (user + system, from `/proc/PID/stat`) and peak RSS (`VmHWM`
//! from `/proc/PID/status`); per role, the server time spent on its queries
//! (`pg_stat_statements`, reset when the measurement starts); and the agent's store
//! bytes per stored sample. The goal: the agent at most half the CPU and half the RSS
//! of the two exporters together.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use pga_agent::store::StoreReader;
use pga_lab::{Cluster, PgbenchRun};
use serde::Serialize;

use crate::cli::OverheadArgs;

const POSTGRES_EXPORTER: &str = "/usr/bin/prometheus-postgres-exporter";
const NODE_EXPORTER: &str = "/usr/bin/prometheus-node-exporter";
const EXPORTER_QUERIES: &str = "/usr/share/doc/prometheus-postgres-exporter/examples/queries.yaml";

/// One process's cost.
#[derive(Debug, Serialize)]
pub struct ProcessCost {
    pub name: String,
    pub cpu_seconds: f64,
    pub peak_rss_bytes: u64,
    /// Server time spent on this tool's queries, and how many it ran.
    pub server_seconds: Option<f64>,
    pub server_calls: Option<f64>,
}

/// What the command measured.
#[derive(Debug, Serialize)]
pub struct OverheadReport {
    pub minutes: f64,
    pub scrape_secs: u64,
    pub pgbench_rate: u32,
    pub agent: ProcessCost,
    pub postgres_exporter: ProcessCost,
    pub node_exporter: ProcessCost,
    pub scrapes: u64,
    pub scrape_failures: u64,
    pub first_scrape_failure: Option<String>,
    pub agent_store_file_bytes: u64,
    pub agent_store_logical_bytes: u64,
    pub agent_samples: u64,
    pub agent_series: u64,
    pub agent_bytes_per_sample: f64,
    pub cpu_ratio: f64,
    pub rss_ratio: f64,
    pub goal_met: bool,
}

pub fn run(args: &OverheadArgs) -> anyhow::Result<()> {
    let agent_bin = match &args.agent {
        Some(p) => p.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("locating pga-agent next to pga-bench")?
            .join("pga-agent"),
    };
    if !agent_bin.is_file() {
        bail!(
            "{} not found: build it first (cargo build --release -p pga-agent) or pass --agent PATH",
            agent_bin.display()
        );
    }
    ensure_exporters()?;
    let report = measure(args, &agent_bin)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report));
    }
    Ok(())
}

/// Installs the Debian exporters when missing (as root), else says how.
fn ensure_exporters() -> anyhow::Result<()> {
    if Path::new(POSTGRES_EXPORTER).is_file() && Path::new(NODE_EXPORTER).is_file() {
        return Ok(());
    }
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .map(|u| u.split_whitespace().next() == Some("0"))
        })
        .unwrap_or(false);
    if !root {
        bail!(
            "the baseline exporters are missing: apt-get install prometheus-postgres-exporter prometheus-node-exporter"
        );
    }
    eprintln!("installing prometheus-postgres-exporter and prometheus-node-exporter with apt-get");
    let status = Command::new("apt-get")
        .args([
            "install",
            "-y",
            "--no-install-recommends",
            "prometheus-postgres-exporter",
            "prometheus-node-exporter",
        ])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .context("running apt-get")?;
    if !status.success() {
        bail!("apt-get install of the exporters failed ({status})");
    }
    Ok(())
}

/// A child process killed on drop.
struct Proc(Child, &'static str);

impl Drop for Proc {
    fn drop(&mut self) {
        if self.0.kill().is_ok() {
            drop(self.0.wait());
        }
    }
}

fn measure(args: &OverheadArgs, agent_bin: &Path) -> anyhow::Result<OverheadReport> {
    let cluster = Cluster::builder()
        .preload("pg_stat_statements")
        .setting("pg_stat_statements.track", "top")
        .start()
        .context("starting the cluster")?;
    cluster.psql(
        "postgres",
        "CREATE EXTENSION pg_stat_statements;
         CREATE ROLE pga_agent LOGIN; GRANT pg_monitor TO pga_agent;
         CREATE ROLE pga_exporter LOGIN; GRANT pg_monitor TO pga_exporter;",
    )?;
    cluster.create_database("bench")?;
    eprintln!("pgbench -i -s {} …", args.scale);
    cluster.pgbench_init("bench", args.scale)?;

    let dir = tempfile::tempdir()?;
    let data = dir.path().join("agent-data");
    let cfg = dir.path().join("agent.toml");
    std::fs::write(
        &cfg,
        format!(
            "[agent]\ndata_dir = {:?}\n[collectors]\nlogs = false\n\
             [[postgres]]\nname = \"bench\"\nconninfo = {:?}\n",
            data.display().to_string(),
            format!("{} user=pga_agent", cluster.conninfo("postgres")),
        ),
    )?;
    let minutes = args.minutes;
    let run_secs = (minutes * 60.0).round() as u64;

    // The load runs for the whole measurement, and a little longer.
    let load_secs = u32::try_from(run_secs + 10).unwrap_or(u32::MAX);
    let run = PgbenchRun {
        clients: 4,
        jobs: 2,
        rate: Some(args.rate),
        ..PgbenchRun::for_secs(load_secs)
    };
    let cluster_ref = &cluster;
    std::thread::scope(|s| -> anyhow::Result<OverheadReport> {
        // The load finishes on its own; only whether it ran matters here.
        let load = s.spawn(move || {
            cluster_ref
                .pgbench("bench", &run)
                .map(drop)
                .map_err(|e| e.to_string())
        });
        std::thread::sleep(Duration::from_secs(2));
        cluster_ref.psql("postgres", "SELECT pg_stat_statements_reset()")?;
        let report = run_tools(args, agent_bin, &cfg, &data, cluster_ref, run_secs)?;
        match load.join() {
            Ok(Ok(())) => Ok(report),
            Ok(Err(e)) => bail!("the pgbench load failed: {e}"),
            Err(_) => bail!("the pgbench load panicked"),
        }
    })
}

fn run_tools(
    args: &OverheadArgs,
    agent_bin: &Path,
    cfg: &Path,
    data: &Path,
    cluster: &Cluster,
    run_secs: u64,
) -> anyhow::Result<OverheadReport> {
    let mut agent = Proc(
        Command::new(agent_bin)
            .args(["run", "--config"])
            .arg(cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting pga-agent")?,
        "pga-agent",
    );
    let extend = exporter_queries(cfg.parent().unwrap_or(Path::new(".")))?;
    let pg_port = pga_lab::free_port()?;
    let dsn = format!(
        "host={} port={} user=pga_exporter dbname=postgres sslmode=disable",
        cluster.socket_dir().display(),
        cluster.port()
    );
    let mut pg_exporter = Proc(
        Command::new(POSTGRES_EXPORTER)
            .arg(format!("--web.listen-address=127.0.0.1:{pg_port}"))
            .arg("--auto-discover-databases")
            .args(
                extend
                    .iter()
                    .map(|p| format!("--extend.query-path={}", p.display())),
            )
            .env("DATA_SOURCE_NAME", dsn)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting prometheus-postgres-exporter")?,
        "postgres_exporter",
    );
    let node_port = pga_lab::free_port()?;
    let mut node_exporter = Proc(
        Command::new(NODE_EXPORTER)
            .arg(format!("--web.listen-address=127.0.0.1:{node_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting prometheus-node-exporter")?,
        "node_exporter",
    );
    eprintln!(
        "measuring for {} s: pga-agent (pid {}), postgres_exporter (pid {}), node_exporter (pid {}), scraped every {} s",
        run_secs,
        agent.0.id(),
        pg_exporter.0.id(),
        node_exporter.0.id(),
        args.scrape_secs
    );
    // Both exporters listen before the clock starts.
    let listening = Instant::now() + Duration::from_secs(10);
    while [pg_port, node_port]
        .iter()
        .any(|p| TcpStream::connect(("127.0.0.1", *p)).is_err())
    {
        if Instant::now() > listening {
            bail!("the exporters did not start listening within 10 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let started = Instant::now();
    let (mut scrapes, mut failures) = (0u64, 0u64);
    let mut first_failure: Option<String> = None;
    let mut next = started;
    while started.elapsed() < Duration::from_secs(run_secs) {
        for (port, who) in [(pg_port, "postgres_exporter"), (node_port, "node_exporter")] {
            scrapes += 1;
            if let Err(e) = scrape(port) {
                failures += 1;
                if first_failure.is_none() {
                    first_failure = Some(format!("{who}: {e}"));
                }
            }
        }
        for p in [&mut agent, &mut pg_exporter, &mut node_exporter] {
            if let Ok(Some(status)) = p.0.try_wait() {
                bail!("{} exited early ({status})", p.1);
            }
        }
        next += Duration::from_secs(args.scrape_secs);
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        }
    }
    let ticks = clock_ticks();
    let cost = |p: &Proc| -> anyhow::Result<ProcessCost> {
        let pid = p.0.id();
        Ok(ProcessCost {
            name: p.1.to_owned(),
            cpu_seconds: cpu_ticks(pid)? as f64 / ticks,
            peak_rss_bytes: peak_rss(pid)?,
            server_seconds: None,
            server_calls: None,
        })
    };
    let mut agent_cost = cost(&agent)?;
    let mut pg_cost = cost(&pg_exporter)?;
    let node_cost = cost(&node_exporter)?;
    let server = cluster.psql(
        "postgres",
        "SELECT r.rolname || ' ' || sum(s.calls) || ' ' || sum(s.total_exec_time + s.total_plan_time) / 1000
           FROM pg_stat_statements s JOIN pg_roles r ON r.oid = s.userid
          WHERE r.rolname IN ('pga_agent', 'pga_exporter') GROUP BY r.rolname",
    )?;
    for line in server.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if let [role, calls, secs] = f[..] {
            let target = if role == "pga_agent" {
                &mut agent_cost
            } else {
                &mut pg_cost
            };
            target.server_calls = calls.parse().ok();
            target.server_seconds = secs.parse().ok();
        }
    }
    drop(agent);
    drop(pg_exporter);
    drop(node_exporter);
    let (file_bytes, logical_bytes, samples, series) = store_figures(data)?;
    let exporters_cpu = pg_cost.cpu_seconds + node_cost.cpu_seconds;
    let exporters_rss = (pg_cost.peak_rss_bytes + node_cost.peak_rss_bytes) as f64;
    let cpu_ratio = agent_cost.cpu_seconds / exporters_cpu.max(f64::MIN_POSITIVE);
    let rss_ratio = agent_cost.peak_rss_bytes as f64 / exporters_rss.max(1.0);
    Ok(OverheadReport {
        minutes: args.minutes,
        scrape_secs: args.scrape_secs,
        pgbench_rate: args.rate,
        agent: agent_cost,
        postgres_exporter: pg_cost,
        node_exporter: node_cost,
        scrapes,
        scrape_failures: failures,
        first_scrape_failure: first_failure,
        agent_store_file_bytes: file_bytes,
        agent_store_logical_bytes: logical_bytes,
        agent_samples: samples,
        agent_series: series,
        agent_bytes_per_sample: logical_bytes as f64 / (samples.max(1)) as f64,
        cpu_ratio,
        rss_ratio,
        goal_met: cpu_ratio <= 0.5 && rss_ratio <= 0.5,
    })
}

/// The Debian package's example queries (tables, statio, statements, sizes), the
/// statement query moved to the column names of PostgreSQL 13 and later and the
/// instance-wide idle-session query run once, so that the
/// exporter covers about what the agent does. `None` when the example is missing.
fn exporter_queries(dir: &Path) -> anyhow::Result<Option<std::path::PathBuf>> {
    let Ok(example) = std::fs::read_to_string(EXPORTER_QUERIES) else {
        eprintln!("{EXPORTER_QUERIES} not found: the exporter runs with its built-in metrics only");
        return Ok(None);
    };
    let mut fixed = example;
    for t in ["total", "min", "max", "mean", "stddev"] {
        fixed = fixed.replace(
            &format!("{t}_time / 1000"),
            &format!("{t}_exec_time / 1000"),
        );
    }
    // Instance-wide: run once, not once per discovered database (duplicates fail the
    // whole scrape).
    fixed = fixed.replace("pg_process_idle:\n", "pg_process_idle:\n  master: true\n");
    let path = dir.join("exporter-queries.yaml");
    std::fs::write(&path, fixed)?;
    Ok(Some(path))
}

/// GET /metrics over plain HTTP; the body is read and dropped.
fn scrape(port: u16) -> std::io::Result<usize> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut body = Vec::new();
    s.read_to_end(&mut body)?;
    if !body.starts_with(b"HTTP/1.0 200") && !body.starts_with(b"HTTP/1.1 200") {
        let head = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
        return Err(std::io::Error::other(format!("answered {head:?}")));
    }
    Ok(body.len())
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// utime + stime of `pid` (and of its waited-for children), in clock ticks.
fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let rest = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields after the command: state is field 3 (index 0 here); utime 14, stime 15,
    // cutime 16, cstime 17.
    let get = |n: usize| {
        f.get(n - 3)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Ok(get(14) + get(15) + get(16) + get(17))
}

fn peak_rss(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .context("no VmHWM")?;
    Ok(kb * 1024)
}

/// File bytes, logical bytes, samples and series of the agent's store.
fn store_figures(data: &Path) -> anyhow::Result<(u64, u64, u64, u64)> {
    let reader = StoreReader::open(data).context("opening the agent's store")?;
    let view = reader.view();
    let status = view.status()?;
    let metas = view.series()?;
    let ids: Vec<_> = metas.iter().map(|m| m.id).collect();
    let samples: u64 = view
        .samples(&ids, i64::MIN, i64::MAX)?
        .values()
        .map(|v| v.len() as u64)
        .sum();
    Ok((
        status.file_bytes,
        status.logical_bytes,
        samples,
        metas.len() as u64,
    ))
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

fn render(r: &OverheadReport) -> String {
    let mut s = format!(
        "overhead: {:.1} min, pgbench at {} tps, exporters scraped every {} s ({} scrapes, {} failed)\n\n",
        r.minutes, r.pgbench_rate, r.scrape_secs, r.scrapes, r.scrape_failures
    );
    if let Some(f) = &r.first_scrape_failure {
        s.push_str(&format!("first failed scrape: {f}\n\n"));
    }
    s.push_str("process              CPU s   peak RSS MiB   server s   server calls\n");
    for p in [&r.agent, &r.postgres_exporter, &r.node_exporter] {
        s.push_str(&format!(
            "{:<18} {:>7.2} {:>14.1} {:>10} {:>14}\n",
            p.name,
            p.cpu_seconds,
            mib(p.peak_rss_bytes),
            p.server_seconds.map_or("-".into(), |v| format!("{v:.2}")),
            p.server_calls.map_or("-".into(), |v| format!("{v:.0}")),
        ));
    }
    s.push_str(&format!(
        "\nagent / (postgres_exporter + node_exporter): CPU {:.2}, RSS {:.2} (goal: both <= 0.50) -> {}\n",
        r.cpu_ratio,
        r.rss_ratio,
        if r.goal_met { "met" } else { "MISSED" }
    ));
    s.push_str(&format!(
        "agent store: {} series, {} samples, {:.2} logical bytes per sample ({} logical, {} file bytes)\n",
        r.agent_series, r.agent_samples, r.agent_bytes_per_sample, r.agent_store_logical_bytes, r.agent_store_file_bytes
    ));
    s
}
