//! Every query of every dashboard (docs/dashboards.md) runs, as Grafana would run it,
//! against a central database filled by real agents:
//!
//! - cluster A, a primary with a streaming standby (through a slot), and cluster B,
//!   with an inactive replication slot and a database named `x'; drop table …`;
//!   pgbench load on both; errors, slow statements, a lock wait and a deadlock in A's
//!   log; pg_stat_statements on both;
//! - three `pga-agent` processes (A's primary, A's standby, B), each instance named
//!   `main`, logs collected, and a `pga-federator` pulling them into a fourth cluster;
//! - each SQL dashboard's variables are resolved by their own queries and every
//!   annotation and panel query runs as the read-only role (`IN ROLE pga_reader`) with
//!   Grafana's macros, over the last hour and the last 7 days at the step of a
//!   1,000-pixel panel: no query fails, and every panel returns rows unless
//!   `dashboards/expected-empty.json` says why it may not; over a month-old hour with
//!   no data every query still runs;
//! - the database named with quotes and SQL is a value of the `datname` variable and
//!   its panels return its rows (Grafana's quoting held);
//! - a stock Prometheus (Debian's) scrapes the primary's agent, and every query of the
//!   two Prometheus dashboards returns data through its HTTP API.
//!
//! It runs the workspace's `pga-agent` and `pga-federator` from the directory of
//! `pga-bench` (`cargo test --workspace` builds them there).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pga_agent::endpoint::certs::{DevCertsOptions, make_dev_certs};
use pga_bench::grafana::dashboard::{self, Dashboard, Source};
use pga_bench::grafana::dashboards_dir;
use pga_bench::grafana::macros::{self, TimeRange};
use pga_bench::grafana::run::{self, RunOptions};
use pga_bench::grafana::template::{self, Scope, Variable};
use pga_lab::{Cluster, PgbenchLength, PgbenchRun};

const ODD_DB: &str = "x'; drop table pga_sentinel; --";
const READER_PASSWORD: &str = "grafana-pw";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process killed when dropped.
struct Reaper(&'static str, Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.1.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).ok();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.1.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("{} did not stop on SIGTERM; killing it", self.0);
        self.1.kill().ok();
        self.1.wait().ok();
    }
}

fn bin(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_BIN_EXE_pga-bench")).parent().unwrap();
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} is missing: run the tests as `cargo test --workspace` (bash bench/run-tests), \
         or `cargo build -p pga-agent -p pga-federator` first",
        p.display()
    );
    p
}

fn spawn(name: &'static str, bin: &Path, args: &[&str], log: &Path) -> Reaper {
    let child = Command::new(bin)
        .args(args)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    Reaper(name, child)
}

fn http_get(port: u16, path_and_query: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {path_and_query} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.split_once("\r\n\r\n").map(|(_, body)| body.to_owned())
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'-' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A Prometheus HTTP API answer's JSON (the body may be chunked).
fn prom_api(port: u16, path_and_query: &str) -> Option<serde_json::Value> {
    let body = http_get(port, path_and_query)?;
    let json = &body[body.find('{')?..=body.rfind('}')?];
    serde_json::from_str(json).ok()
}

fn agent_config(dir: &Path, name: &str, port: u16, tls: &Path, conninfo: &str) -> String {
    format!(
        "[agent]\nname = \"{name}\"\ndata_dir = \"{data}\"\n\n\
         [intervals]\nfast_secs = 1\nslow_secs = 2\nsizes_secs = 4\n\n\
         [store]\nmax_bytes = 67108864\nblock_secs = 60\n\n\
         [collectors]\nsystem = true\npostgres = true\nlogs = true\n\n\
         [endpoint]\nlisten = \"127.0.0.1:{port}\"\ncert_file = \"{t}/agent.crt\"\n\
         key_file = \"{t}/agent.key\"\nclient_ca_file = \"{t}/ca.crt\"\n\n\
         [[postgres]]\nname = \"main\"\nconninfo = \"{conninfo}\"\n",
        data = dir.join("data").display(),
        t = tls.display(),
        conninfo = conninfo.replace('\\', "\\\\").replace('"', "\\\""),
    )
}

fn logging(b: pga_lab::ClusterBuilder) -> pga_lab::ClusterBuilder {
    b.preload("pg_stat_statements")
        .setting("logging_collector", "on")
        .setting("log_destination", "jsonlog")
        .setting("log_directory", "log")
        .setting("lc_messages", "C")
        .setting("log_lock_waits", "on")
        .setting("deadlock_timeout", "100ms")
        .setting("log_min_duration_statement", "150")
        .setting("log_checkpoints", "on")
        .setting("log_autovacuum_min_duration", "0")
        .setting("autovacuum_naptime", "2s")
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Errors, slow statements, a lock wait and a deadlock in A's log.
fn provoke_log_events(a: &Cluster) {
    a.psql(
        "app",
        "CREATE TABLE d (id int PRIMARY KEY, v int); INSERT INTO d VALUES (1, 0), (2, 0); \
         CREATE TABLE w (id int)",
    )
    .unwrap();
    assert!(a.psql("app", "SELECT 1/0").is_err());
    assert!(a.psql("app", "SELECT * FROM no_such_table").is_err());
    a.psql("app", "SELECT pg_sleep(0.3)").unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            a.psql(
                "app",
                "BEGIN; LOCK TABLE w IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(0.6); COMMIT",
            )
            .unwrap()
        });
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(200));
            a.psql("app", "SELECT count(*) FROM w").unwrap()
        });
        let x = s.spawn(|| {
            a.psql(
                "app",
                "BEGIN; UPDATE d SET v = 1 WHERE id = 1; SELECT pg_sleep(0.4); \
                 UPDATE d SET v = 1 WHERE id = 2; COMMIT",
            )
            .is_err()
        });
        let y = s.spawn(|| {
            a.psql(
                "app",
                "BEGIN; UPDATE d SET v = 2 WHERE id = 2; SELECT pg_sleep(0.4); \
                 UPDATE d SET v = 2 WHERE id = 1; COMMIT",
            )
            .is_err()
        });
        let failed = [x.join().unwrap(), y.join().unwrap()];
        assert_eq!(
            failed.iter().filter(|f| **f).count(),
            1,
            "one deadlock victim"
        );
    });
}

/// Runs every query of every SQL dashboard over `range`; returns the failures and
/// the queries that returned no rows.
async fn run_all(
    pool: &sqlx::PgPool,
    boards: &[Dashboard],
    range: TimeRange,
) -> (Vec<String>, Vec<(String, String)>) {
    let opts = RunOptions {
        range,
        pixels: 1000,
        min_interval_ms: 10_000,
        timescaledb: false,
    };
    let mut failures = Vec::new();
    let mut empty = Vec::new();
    for d in boards.iter().filter(|d| d.is_sql()) {
        for o in run::run_dashboard(pool, d, &opts).await {
            match &o.result {
                Err(e) => failures.push(format!("{}: {e}\n  SQL: {}", o.key, o.sql)),
                Ok(0) => empty.push((o.key.clone(), o.sql.clone())),
                Ok(_) => {}
            }
        }
    }
    (failures, empty)
}

/// The value Grafana gives `$__rate_interval` (max of interval + scrape interval and
/// four scrape intervals).
fn rate_interval_ms(interval_ms: i64, scrape_ms: i64) -> i64 {
    (interval_ms + scrape_ms).max(4 * scrape_ms)
}

/// Values of `label_values(selector, label)` from Prometheus.
fn label_values(port: u16, query: &str) -> Vec<String> {
    let inner = query
        .trim()
        .strip_prefix("label_values(")
        .and_then(|q| q.strip_suffix(')'))
        .unwrap_or_else(|| panic!("not label_values: {query}"));
    let (selector, label) = inner.rsplit_once(',').unwrap();
    let v = prom_api(
        port,
        &format!(
            "/api/v1/label/{}/values?match[]={}",
            label.trim(),
            url_encode(selector.trim())
        ),
    )
    .unwrap_or_else(|| panic!("no answer to {query}"));
    v["data"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_query_runs_against_real_agents() {
    let agent_bin = bin("pga-agent");
    let federator_bin = bin("pga-federator");
    let prometheus = ["/usr/bin/prometheus", "/usr/local/bin/prometheus"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect(
            "install the Prometheus server: apt-get install -y prometheus (bench/run-tests does)",
        );
    let work = tempfile::tempdir().unwrap();
    let root = work.path();

    // The fleet.
    let a = logging(Cluster::builder()).start().expect("cluster A");
    a.create_database("app").unwrap();
    a.psql("postgres", "CREATE EXTENSION pg_stat_statements")
        .unwrap();
    a.psql("app", "CREATE EXTENSION pg_stat_statements")
        .unwrap();
    a.pgbench_init("app", 1).unwrap();
    let a_standby = a.standby_with_slot("standby_1").expect("A's standby");
    let b = logging(Cluster::builder()).start().expect("cluster B");
    b.create_database("app").unwrap();
    b.create_database(ODD_DB).unwrap();
    b.psql("postgres", "CREATE EXTENSION pg_stat_statements")
        .unwrap();
    b.pgbench_init("app", 1).unwrap();
    b.psql(
        "postgres",
        "SELECT pg_create_physical_replication_slot('idle_slot', true)",
    )
    .unwrap();
    let central = Cluster::builder()
        .superuser_password("central-pw")
        .start()
        .expect("the central cluster");
    central.create_database("pganalytics").unwrap();

    let tls = root.join("tls");
    make_dev_certs(&DevCertsOptions {
        out: tls.clone(),
        agent_name: "dash-agent".into(),
        agent_sans: vec![],
        days: 2,
        force: false,
    })
    .unwrap();

    // The central database, migrated, with the read-only role Grafana uses.
    let mut fed_cfg = format!(
        "[database]\nurl = \"{}\"\n\n[tls]\ncert_file = \"{t}/federator.crt\"\n\
         key_file = \"{t}/federator.key\"\nca_file = \"{t}/ca.crt\"\n\n\
         [scrape]\nschedule = \"*/2 * * * * *\"\njitter_ms = 200\n",
        central.url("pganalytics"),
        t = tls.display()
    );
    let mut procs = Vec::new();
    let mut agent_ports = BTreeMap::new();
    for (name, cluster) in [("db-a1", &a), ("db-a2", &a_standby), ("db-b1", &b)] {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_port();
        let cfg = dir.join("agent.toml");
        std::fs::write(
            &cfg,
            agent_config(&dir, name, port, &tls, &cluster.conninfo("postgres")),
        )
        .unwrap();
        let cfg_s = cfg.display().to_string();
        procs.push(spawn(
            "pga-agent",
            &agent_bin,
            &["run", "--config", &cfg_s],
            &dir.join("agent.log"),
        ));
        agent_ports.insert(name, port);
        fed_cfg.push_str(&format!(
            "\n[[agents]]\nname = \"{name}\"\nurl = \"https://127.0.0.1:{port}\"\n"
        ));
    }
    // One rule that holds on every healthy instance, so that the Alerts dashboard and
    // the fleet's alert column have a real firing alert (from the real evaluator) to show.
    let rules = root.join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    std::fs::write(
        rules.join("live.toml"),
        "[[rules]]\nname = \"PgUpInLiveTest\"\nquery = \"last(pg_up[5m])\"\ncomparison = \"==\"\n\
         threshold = 1\nseverity = \"info\"\nannotations.summary = \"{{ $labels.agent }} is up\"\n",
    )
    .unwrap();
    fed_cfg.push_str(&format!(
        "\n[alerting]\nschedule = \"*/2 * * * * *\"\nrule_files = [\"{}\"]\n",
        rules.display()
    ));
    let fed_path = root.join("federator.toml");
    std::fs::write(&fed_path, fed_cfg).unwrap();
    let fed_s = fed_path.display().to_string();
    let out = Command::new(&federator_bin)
        .args(["migrate", "--config", &fed_s])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "migrate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    central
        .psql(
            "pganalytics",
            &format!(
                "CREATE ROLE grafana LOGIN PASSWORD '{READER_PASSWORD}' IN ROLE pga_reader; \
                 CREATE TABLE pga_sentinel (x int); SELECT pga_apply_grants();"
            ),
        )
        .unwrap();
    procs.push(spawn(
        "pga-federator",
        &federator_bin,
        &["run", "--config", &fed_s],
        &root.join("federator.log"),
    ));

    // A stock Prometheus scraping the primary's agent. Until the agent names its
    // instance label pg_instance, Prometheus renames it exported_instance (its own
    // `instance` wins); the relabelling gives the PromQL dashboards pg_instance either way.
    let prom_port = free_port();
    let prom_cfg = root.join("prometheus.yml");
    std::fs::write(
        &prom_cfg,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: pganalytics-agent\n    scheme: https\n    \
             tls_config:\n      ca_file: {t}/ca.crt\n      cert_file: {t}/prometheus.crt\n      key_file: {t}/prometheus.key\n      server_name: localhost\n    \
             static_configs:\n      - targets: ['127.0.0.1:{port}']\n    \
             metric_relabel_configs:\n      - source_labels: [exported_instance]\n        regex: (.+)\n        target_label: pg_instance\n",
            t = tls.display(),
            port = agent_ports["db-a1"],
        ),
    )
    .unwrap();
    procs.push(Reaper(
        "prometheus",
        Command::new(prometheus)
            .arg(format!("--config.file={}", prom_cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                root.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    ));

    // Load and log events while the agents collect; wait until the central database
    // holds every agent's samples and A's log events (they travel in sealed blocks:
    // within a block window, 60 s).
    let reader_url = central.url("pganalytics").replacen(
        "postgres:central-pw@",
        &format!("grafana:{READER_PASSWORD}@"),
        1,
    );
    let started = Instant::now();
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        for c in [&a, &b] {
            let stop = &stop;
            s.spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let run = PgbenchRun {
                        clients: 2,
                        jobs: 1,
                        length: PgbenchLength::DurationSecs(3),
                        rate: Some(30),
                        extra_args: vec![],
                    };
                    c.pgbench("app", &run).ok();
                }
            });
        }
        provoke_log_events(&a);
        let ready = "SELECT (SELECT count(DISTINCT agent) FROM pga_series) = 3 \
                     AND (SELECT count(*) FROM pga_log_events WHERE kind = 'deadlock') > 0 \
                     AND (SELECT count(*) FROM pga_log_events WHERE severity = 'ERROR') > 0 \
                     AND (SELECT count(*) FROM pga_instances WHERE role = 'standby') = 1 \
                     AND (SELECT count(*) FROM pga_databases WHERE datname = 'app') = 3 \
                     AND (SELECT count(DISTINCT agent) FROM alerts_current WHERE state = 'firing') = 3";
        let deadline = Instant::now() + Duration::from_secs(150);
        loop {
            if central.psql("pganalytics", ready).is_ok_and(|r| r == "t") {
                break;
            }
            if Instant::now() > deadline {
                stop.store(true, std::sync::atomic::Ordering::SeqCst);
                panic!(
                    "the central database did not fill in 150 s: {:?}\nfederator log:\n{}",
                    central.psql(
                        "pganalytics",
                        "SELECT agent, count(*) FROM pga_series GROUP BY 1; \
                         SELECT kind, count(*) FROM pga_log_events GROUP BY 1; \
                         SELECT agent, alertname, state FROM alerts_current"
                    ),
                    std::fs::read_to_string(root.join("federator.log")).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
    });
    eprintln!("central database filled in {:?}", started.elapsed());

    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(&reader_url)
        .await
        .expect("the read-only role connects");
    let boards = dashboard::load_dir(&dashboards_dir().join("grafana")).unwrap();
    let expected: BTreeMap<String, String> = serde_json::from_str(
        &std::fs::read_to_string(dashboards_dir().join("expected-empty.json")).unwrap(),
    )
    .unwrap();

    // Every query over the last hour and the last 7 days.
    let now = now_ms();
    let mut report = Vec::new();
    for (label, range) in [
        ("1 hour", TimeRange::last(now, 3600)),
        ("7 days", TimeRange::last(now, 7 * 86_400)),
    ] {
        let (failures, empty) = run_all(&pool, &boards, range).await;
        assert!(
            failures.is_empty(),
            "{label}: queries failed:\n{}",
            failures.join("\n")
        );
        let unexpected: Vec<String> = empty
            .iter()
            .filter(|(k, _)| !expected.contains_key(k))
            .map(|(k, sql)| format!("{k}\n  SQL: {sql}"))
            .collect();
        assert!(
            unexpected.is_empty(),
            "{label}: panels without rows that dashboards/expected-empty.json does not list:\n{}",
            unexpected.join("\n")
        );
        report.push(format!(
            "{label}: every query ran; empty as expected: {:?}",
            empty.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>()
        ));
    }
    // A range with no data: every query runs, nothing fails.
    let (failures, _) = run_all(&pool, &boards, TimeRange::last(now - 30 * 86_400_000, 3600)).await;
    assert!(
        failures.is_empty(),
        "a month-old hour without data: queries failed:\n{}",
        failures.join("\n")
    );

    // The odd database: a value of $datname, and its own panels return its rows.
    let database = boards.iter().find(|d| d.uid == "pga-database").unwrap();
    let opts = RunOptions {
        range: TimeRange::last(now, 3600),
        pixels: 1000,
        min_interval_ms: 10_000,
        timescaledb: false,
    };
    let (mut scope, _) = run::resolve_variables(&pool, database, &opts).await;
    assert!(
        scope.vars["datname"].values.iter().any(|v| v == ODD_DB),
        "{ODD_DB:?} is not among {:?}",
        scope.vars["datname"].values
    );
    scope.vars.get_mut("datname").unwrap().values = vec![ODD_DB.to_owned()];
    let size = database
        .queries()
        .into_iter()
        .find(|q| matches!(&q.source, Source::Panel { title, .. } if title == "Database size"))
        .unwrap();
    let o = run::run_query(&pool, &size, &scope, &opts).await;
    assert!(
        matches!(o.result, Ok(n) if n > 0),
        "Database size of {ODD_DB:?}: {:?}\n{}",
        o.result,
        o.sql
    );
    assert!(
        o.sql.contains("'x''; drop table pga_sentinel; --'"),
        "{}",
        o.sql
    );
    central
        .psql("pganalytics", "SELECT count(*) FROM pga_sentinel")
        .expect("pga_sentinel still exists");

    // The PromQL dashboards against Prometheus: variables from label_values, then
    // every query, instant or over the last 5 minutes, returns data.
    let deadline = Instant::now() + Duration::from_secs(60);
    while prom_api(
        prom_port,
        "/api/v1/query?query=pg_stat_database_xact_commit_total",
    )
    .is_none_or(|v| v["data"]["result"].as_array().is_none_or(|r| r.is_empty()))
    {
        assert!(
            Instant::now() < deadline,
            "Prometheus scraped no agent data in 60 s"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    std::thread::sleep(Duration::from_secs(5));
    let now = now_ms();
    let range = TimeRange::last(now, 300);
    let interval_ms = macros::panel_interval_ms(range, 1000, 1000);
    let mut failures = Vec::new();
    for d in boards.iter().filter(|d| !d.is_sql()) {
        let mut scope = Scope::default();
        scope.builtins.insert(
            "__rate_interval".into(),
            macros::format_interval(rate_interval_ms(interval_ms, 1000)),
        );
        scope
            .builtins
            .insert("__interval".into(), macros::format_interval(interval_ms));
        for q in d.queries() {
            let text = template::interpolate(&q.text, &scope);
            match &q.source {
                Source::Variable(name) => {
                    let values = label_values(prom_port, &text);
                    if values.is_empty() {
                        failures.push(format!("{}: no values for {text}", q.key()));
                    }
                    // "All", with the dashboards' allValue `.*`.
                    scope.vars.insert(
                        name.clone(),
                        Variable {
                            values: vec![".*".into()],
                            multi: false,
                        },
                    );
                }
                _ => {
                    let path = if q.instant {
                        format!(
                            "/api/v1/query?query={}&time={}",
                            url_encode(&text),
                            now / 1000
                        )
                    } else {
                        format!(
                            "/api/v1/query_range?query={}&start={}&end={}&step={}",
                            url_encode(&text),
                            range.from_ms / 1000,
                            range.to_ms / 1000,
                            interval_ms as f64 / 1000.0
                        )
                    };
                    let v = prom_api(prom_port, &path);
                    let ok = v.as_ref().is_some_and(|v| {
                        v["status"] == "success"
                            && v["data"]["result"]
                                .as_array()
                                .is_some_and(|r| !r.is_empty())
                    });
                    if !ok {
                        failures.push(format!("{}: {text} → {v:?}", q.key()));
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "PromQL queries without data:\n{}",
        failures.join("\n")
    );
    eprintln!("{}", report.join("\n"));
    drop(procs);
}
