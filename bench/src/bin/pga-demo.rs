//! `pga-demo`: the whole platform on this machine, in one command.
//!
//! Starts a throwaway PostgreSQL cluster from the system's binaries, makes a
//! development CA and mTLS certificates, starts two (or `--agents N`) `pga-agent`
//! processes with distinct identities watching that cluster, and a
//! `pga-federator` pulling them into a central database on the same cluster; runs
//! a light pgbench workload; prints what is happening and where to look. Stops at
//! Ctrl-C (or after `--for DURATION`) and removes everything it made.
//!
//! The agent and federator binaries are taken from the directory of this program
//! (`target/release` after `cargo run --release --bin pga-demo`); when it was
//! started by cargo, they are built (or brought up to date) first.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use clap::Parser;
use pga_agent::endpoint::certs::{DevCertsOptions, make_dev_certs};
use pga_lab::{Cluster, PgbenchLength, PgbenchRun};

/// Runs a throwaway PostgreSQL, agents and a federator on this machine.
#[derive(Debug, Parser)]
#[command(
    name = "pga-demo",
    about = "pgAnalytics v3 demo: a throwaway PostgreSQL, agents watching it, a federator pulling them",
    after_help = "Stops at Ctrl-C and removes every file and process it made.\n\
                  Example: cargo run --release --bin pga-demo"
)]
struct Args {
    /// Stop by itself after this long (e.g. 60s, 5m) and check that data from every
    /// agent reached the central database (exit 1 if not).
    #[arg(long = "for", value_name = "DURATION", value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Number of agents.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=16))]
    agents: u32,
    /// Directory holding pga-agent and pga-federator [default: this program's directory].
    #[arg(long, value_name = "DIR")]
    bin_dir: Option<PathBuf>,
}

/// A child process stopped with SIGTERM (then SIGKILL) when dropped.
struct Proc {
    name: String,
    child: Child,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).ok();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("{} did not stop on SIGTERM; killing it", self.name);
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

fn spawn(name: &str, bin: &Path, args: &[&str], log: &Path) -> anyhow::Result<Proc> {
    let log_file = std::fs::File::create(log)?;
    let child = Command::new(bin)
        .args(args)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    Ok(Proc {
        name: name.to_owned(),
        child,
    })
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Finds (building them when started by cargo) pga-agent and pga-federator.
fn binaries(args: &Args) -> anyhow::Result<(PathBuf, PathBuf)> {
    let dir = match &args.bin_dir {
        Some(d) => d.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("this program's directory")?
            .to_owned(),
    };
    if args.bin_dir.is_none()
        && let Some(cargo) = std::env::var_os("CARGO")
    {
        let release = dir.file_name().is_some_and(|n| n == "release");
        println!(
            "building pga-agent and pga-federator ({})…",
            if release { "release" } else { "debug" }
        );
        let mut cmd = child_cargo_build(&cargo, release, std::env::vars_os().map(|(k, _)| k));
        let status = cmd.status().context("running cargo build")?;
        ensure!(
            status.success(),
            "cargo build of pga-agent and pga-federator failed"
        );
    }
    let (agent, federator) = (dir.join("pga-agent"), dir.join("pga-federator"));
    for b in [&agent, &federator] {
        if !b.exists() {
            bail!(
                "{} not found; build it first (cargo build --release -p pga-agent -p pga-federator) \
                 or name its directory with --bin-dir",
                b.display()
            );
        }
    }
    Ok((agent, federator))
}

/// Whether `name` is one of the variables cargo sets for the program it runs
/// (`cargo run`): the package's manifest and metadata, the crate and binary
/// names, the build script's output directory, and `CARGO` itself.
fn set_by_cargo_run(name: &OsStr) -> bool {
    let Some(name) = name.to_str() else {
        return false;
    };
    name.starts_with("CARGO_PKG_")
        || name.starts_with("CARGO_MANIFEST_")
        || matches!(
            name,
            "CARGO"
                | "CARGO_CRATE_NAME"
                | "CARGO_BIN_NAME"
                | "CARGO_PRIMARY_PACKAGE"
                | "CARGO_RUSTC_CURRENT_DIR"
                | "CARGO_TARGET_TMPDIR"
                | "OUT_DIR"
        )
}

/// `cargo build` of pga-agent and pga-federator, run from a program cargo started.
///
/// The variables `cargo run` gave this program (`inherited` names those of its
/// environment) are removed: build scripts watch some of them (ring's
/// `rerun-if-env-changed=CARGO_PKG_NAME`, `CARGO_MANIFEST_DIR`, …), so a child
/// cargo that saw `CARGO_PKG_NAME=pga-bench` would rebuild ring and everything on
/// top of it, and the next plain `cargo run` would rebuild them back. Cargo's own
/// settings (`CARGO_HOME`, `CARGO_TARGET_DIR`, `CARGO_BUILD_*`, …) stay.
fn child_cargo_build(
    cargo: &OsStr,
    release: bool,
    inherited: impl IntoIterator<Item = OsString>,
) -> Command {
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "-p", "pga-agent", "-p", "pga-federator"]);
    if release {
        cmd.arg("--release");
    }
    for name in inherited {
        if set_by_cargo_run(&name) {
            cmd.env_remove(name);
        }
    }
    cmd
}

fn agent_config(dir: &Path, name: &str, port: u16, tls: &Path, conninfo: &str) -> String {
    format!(
        "[agent]\nname = \"{name}\"\ndata_dir = \"{data}\"\n\n\
         [intervals]\nfast_secs = 5\nslow_secs = 15\nsizes_secs = 30\n\n\
         [store]\nmax_bytes = 67108864\nblock_secs = 60\n\n\
         [collectors]\nsystem = true\npostgres = true\nlogs = false\n\n\
         [endpoint]\nlisten = \"127.0.0.1:{port}\"\ncert_file = \"{t}/agent.crt\"\n\
         key_file = \"{t}/agent.key\"\nclient_ca_file = \"{t}/ca.crt\"\n\n\
         [[postgres]]\nname = \"demo\"\nconninfo = \"{conninfo}\"\n",
        data = dir.join("data").display(),
        t = tls.display(),
        conninfo = conninfo.replace('\\', "\\\\").replace('"', "\\\""),
    )
}

fn count_by_agent(pg: &Cluster) -> String {
    pg.psql(
        "pganalytics",
        "SELECT agent || ': ' || count(*) || ' samples, ' || count(DISTINCT series_id) || ' series' \
         FROM metric_samples GROUP BY agent ORDER BY agent",
    )
    .unwrap_or_default()
}

/// The demo runs PostgreSQL from the system's server binaries. When they are
/// missing it installs them with apt-get as root on Debian or Ubuntu, as
/// `bench/run-tests` does; otherwise it says what to install.
fn ensure_postgresql() -> anyhow::Result<()> {
    if pga_lab::PgInstall::find().is_ok() {
        return Ok(());
    }
    let root = nix::unistd::Uid::effective().is_root();
    let apt = std::path::Path::new("/usr/bin/apt-get").exists();
    if !(root && apt) {
        anyhow::bail!(
            "PostgreSQL server binaries not found (looked in /usr/lib/postgresql/*/bin and \
             PGA_LAB_PG_BIN); install them (Debian/Ubuntu: sudo apt-get install -y postgresql) \
             and run again"
        );
    }
    println!("installing PostgreSQL with apt-get (postgresql, postgresql-client)…");
    for args in [
        &["update", "-qq"][..],
        &[
            "install",
            "-y",
            "-qq",
            "--no-install-recommends",
            "postgresql",
            "postgresql-client",
        ][..],
    ] {
        let status = std::process::Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .context("running apt-get")?;
        anyhow::ensure!(
            status.success(),
            "apt-get {} failed ({status})",
            args.join(" ")
        );
    }
    // Debian starts a cluster of its own on install; the demo needs none of it.
    let stop = "command -v pg_lsclusters >/dev/null || exit 0; \
                pg_lsclusters -h | while read -r v c _; do pg_ctlcluster \"$v\" \"$c\" stop; done";
    match std::process::Command::new("sh").args(["-c", stop]).status() {
        Ok(s) if s.success() => {}
        other => eprintln!(
            "could not stop the cluster Debian started ({other:?}); it does not affect the demo"
        ),
    }
    pga_lab::PgInstall::find()
        .map(|_| ())
        .context("PostgreSQL still not found after apt-get install postgresql")
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (agent_bin, federator_bin) = binaries(&args)?;
    let work = tempfile::Builder::new().prefix("pga-demo-").tempdir()?;
    let root = work.path();

    ensure_postgresql()?;
    println!("starting a throwaway PostgreSQL cluster…");
    // The agents read statement statistics as on any production server: the
    // library preloaded, the extension created in the database they connect to.
    let pg = Cluster::builder()
        .preload("pg_stat_statements")
        .start()
        .context("starting PostgreSQL (apt-get install -y postgresql)")?;
    pg.create_database("pganalytics")?;
    pg.create_database("app")?;
    pg.psql("app", "CREATE EXTENSION IF NOT EXISTS pg_stat_statements")?;
    pg.pgbench_init("app", 1)?;

    let tls = root.join("tls");
    make_dev_certs(&DevCertsOptions {
        out: tls.clone(),
        agent_name: "pga-demo-agent".into(),
        agent_sans: vec![],
        days: 2,
        force: false,
    })?;

    let mut procs = Vec::new();
    let mut agents = Vec::new();
    for i in 1..=args.agents {
        let name = format!("demo-agent-{i}");
        let dir = root.join(&name);
        std::fs::create_dir_all(&dir)?;
        let port = free_port()?;
        let cfg = dir.join("agent.toml");
        std::fs::write(
            &cfg,
            agent_config(&dir, &name, port, &tls, &pg.conninfo("app")),
        )?;
        let log = dir.join("agent.log");
        let cfg_s = cfg.display().to_string();
        procs.push(spawn(
            &name,
            &agent_bin,
            &["run", "--config", &cfg_s],
            &log,
        )?);
        agents.push((name, port, cfg, log));
    }

    let mport = free_port()?;
    let mut fed_cfg = format!(
        "[database]\nurl = \"{}\"\n\n[tls]\ncert_file = \"{t}/federator.crt\"\n\
         key_file = \"{t}/federator.key\"\nca_file = \"{t}/ca.crt\"\n\n\
         [scrape]\nschedule = \"*/5 * * * * *\"\njitter_ms = 500\n\n\
         [metrics]\nlisten = \"127.0.0.1:{mport}\"\n",
        pg.url("pganalytics"),
        t = tls.display()
    );
    for (name, port, _, _) in &agents {
        fed_cfg.push_str(&format!(
            "\n[[agents]]\nname = \"{name}\"\nurl = \"https://127.0.0.1:{port}\"\nlabels = {{ env = \"demo\" }}\n"
        ));
    }
    let fed_path = root.join("federator.toml");
    std::fs::write(&fed_path, fed_cfg)?;
    let fed_log = root.join("federator.log");
    let fed_s = fed_path.display().to_string();
    procs.push(spawn(
        "pga-federator",
        &federator_bin,
        &["run", "--config", &fed_s],
        &fed_log,
    )?);

    println!();
    println!(
        "pgAnalytics demo is running ({} agents). Where to look:",
        agents.len()
    );
    println!();
    println!("  central database (samples, rollups, gaps, agent status):");
    println!(
        "    psql \"{}\" -c \"SELECT agent, metric, count(*) FROM metric_samples GROUP BY 1, 2 ORDER BY 3 DESC LIMIT 20\"",
        pg.url("pganalytics")
    );
    println!(
        "    psql \"{}\" -c \"SELECT * FROM agent_status\"",
        pg.url("pganalytics")
    );
    println!(
        "  federator self-metrics:  curl -s http://127.0.0.1:{mport}/metrics | grep pga_federator_"
    );
    for (name, _, cfg, _) in &agents {
        println!("  {name}, offline from its own store:");
        println!(
            "    {} --config {} query 'pg_up' --since 10m",
            agent_bin.display(),
            cfg.display()
        );
        println!(
            "    {} --config {} status",
            agent_bin.display(),
            cfg.display()
        );
    }
    println!(
        "  logs: {} and {}/demo-agent-*/agent.log",
        fed_log.display(),
        root.display()
    );
    println!();
    match args.duration {
        Some(d) => println!("stopping by itself after {}", humantime::format_duration(d)),
        None => println!("Ctrl-C stops everything and removes it."),
    }
    println!();

    let stop = Arc::new(AtomicBool::new(false));
    stop_on_signals(stop.clone())?;
    let started = Instant::now();
    let deadline = args.duration.map(|d| started + d);
    let mut last_report = Instant::now();
    std::thread::scope(|s| {
        // A light workload: 2 clients at 20 transactions per second, in short rounds.
        s.spawn(|| {
            while !stop.load(Ordering::SeqCst) {
                let run = PgbenchRun {
                    clients: 2,
                    jobs: 1,
                    length: PgbenchLength::DurationSecs(3),
                    rate: Some(20),
                    extra_args: vec![],
                };
                if let Err(e) = pg.pgbench("app", &run) {
                    // Ctrl-C reaches pgbench too (it shares the terminal's process
                    // group): a run cut short by the stop is no failure to report.
                    if !wait_for_stop(&stop, Duration::from_secs(3)) {
                        eprintln!("pgbench: {e}");
                    }
                }
            }
        });
        while !stop.load(Ordering::SeqCst) && deadline.is_none_or(|d| Instant::now() < d) {
            std::thread::sleep(Duration::from_millis(200));
            if last_report.elapsed() >= Duration::from_secs(10) {
                last_report = Instant::now();
                let counts = count_by_agent(&pg);
                println!(
                    "[{:>4}s] in the central database: {}",
                    started.elapsed().as_secs(),
                    if counts.trim().is_empty() {
                        "nothing yet".to_owned()
                    } else {
                        counts.trim().replace('\n', "; ")
                    }
                );
            }
        }
        stop.store(true, Ordering::SeqCst);
    });

    println!("stopping the federator and the agents…");
    drop(procs);
    let counts = count_by_agent(&pg);
    println!(
        "central database at the end: {}",
        counts.trim().replace('\n', "; ")
    );
    let mut errors = Vec::new();
    for (name, _, cfg, _) in &agents {
        match collector_errors(&agent_bin, cfg) {
            Ok(found) => errors.extend(found.into_iter().map(|e| format!("{name}: {e}"))),
            Err(e) => errors.push(format!("{name}: {e:#}")),
        }
    }
    if errors.is_empty() {
        println!("collector errors at the end: none");
    } else {
        println!("collector errors at the end:");
        for e in &errors {
            println!("  {e}");
        }
    }
    let missing: Vec<&str> = agents
        .iter()
        .map(|(n, ..)| n.as_str())
        .filter(|n| !counts.lines().any(|l| l.starts_with(&format!("{n}: "))))
        .collect();
    drop(pg);
    println!("removed the cluster and {}", root.display());
    if args.duration.is_some() && !missing.is_empty() {
        bail!(
            "no data from {} reached the central database; see the logs above",
            missing.join(", ")
        );
    }
    if args.duration.is_some() && !errors.is_empty() {
        bail!("the agents' collectors reported errors (above)");
    }
    Ok(())
}

/// Waits up to `limit` for `stop`; true when it was set.
fn wait_for_stop(stop: &AtomicBool, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if stop.load(Ordering::SeqCst) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.load(Ordering::SeqCst)
}

/// The collectors whose last pass failed, as `pga-agent status --format json` of
/// the agent's store shows them: `collector NAME: ERROR`.
fn collector_errors(agent_bin: &Path, cfg: &Path) -> anyhow::Result<Vec<String>> {
    let out = Command::new(agent_bin)
        .arg("--config")
        .arg(cfg)
        .args(["status", "--format", "json"])
        .output()
        .with_context(|| format!("running {} status", agent_bin.display()))?;
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "pga-agent status ({}) printed no JSON: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )
    })?;
    let collectors = status["collectors"]
        .as_array()
        .context("pga-agent status: no collectors in its JSON")?;
    Ok(collectors
        .iter()
        .filter_map(|c| {
            let error = c[1]["last_error"].as_str()?;
            Some(format!(
                "collector {}: {error}",
                c[0].as_str().unwrap_or("?")
            ))
        })
        .collect())
}

/// Sets `stop` on SIGINT (Ctrl-C) or SIGTERM.
fn stop_on_signals(stop: Arc<AtomicBool>) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::spawn(move || {
        rt.block_on(async {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut int), Ok(mut term)) = (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) else {
                return;
            };
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            stop.store(true, Ordering::SeqCst);
        });
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The child cargo sees the environment of a plain `cargo build`: what
    /// `cargo run` added for this program is gone (ring's build script reruns when
    /// `CARGO_PKG_NAME` or `CARGO_MANIFEST_DIR` change), cargo's settings stay.
    #[test]
    fn the_child_cargo_does_not_inherit_what_cargo_run_set() {
        let inherited = [
            "CARGO",
            "CARGO_MANIFEST_DIR",
            "CARGO_MANIFEST_PATH",
            "CARGO_PKG_NAME",
            "CARGO_PKG_VERSION_MAJOR",
            "CARGO_CRATE_NAME",
            "CARGO_BIN_NAME",
            "OUT_DIR",
            "CARGO_HOME",
            "CARGO_TARGET_DIR",
            "CARGO_BUILD_JOBS",
            "PATH",
            "RUSTFLAGS",
        ]
        .map(OsString::from);
        let cmd = child_cargo_build(OsStr::new("/usr/bin/cargo"), true, inherited);
        let removed: Vec<&OsStr> = cmd
            .get_envs()
            .filter(|(_, value)| value.is_none())
            .map(|(name, _)| name)
            .collect();
        assert_eq!(
            removed,
            [
                "CARGO",
                "CARGO_BIN_NAME",
                "CARGO_CRATE_NAME",
                "CARGO_MANIFEST_DIR",
                "CARGO_MANIFEST_PATH",
                "CARGO_PKG_NAME",
                "CARGO_PKG_VERSION_MAJOR",
                "OUT_DIR",
            ]
        );
        assert_eq!(
            cmd.get_args().collect::<Vec<_>>(),
            [
                "build",
                "-p",
                "pga-agent",
                "-p",
                "pga-federator",
                "--release"
            ]
        );
    }
}
