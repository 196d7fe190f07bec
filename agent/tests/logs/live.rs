//! The log collector against a real server writing stderr, csvlog and jsonlog at once
//! (`logging_collector = on`, a non-default `log_line_prefix`): every event kind is
//! provoked, and
//!
//! - three collectors, each forced to one format and finding the files from the
//!   server's own settings (learned by the PostgreSQL probe), count the same per kind;
//! - the agent binary itself (reading jsonlog, the most structured) stores the same
//!   counts, shown by `pga-agent logs`;
//! - pgbadger over the stderr file finds the same errors and slow statements;
//! - a password canary and a literal canary appear nowhere: not in the store file, not
//!   in `pga-agent logs` output, not on `/metrics`, not in the agent's own log.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pga_agent::collect::logs::LogFormat;
use pga_agent::collect::logs::collector::{LogCollector, LogOptions};
use pga_agent::collect::logs::discover::Explicit;
use pga_agent::collect::postgres::PostgresProbe;
use pga_agent::collect::{Collector as _, Emitter};
use pga_agent::config::PostgresInstance;
use pga_lab::{free_port, http_get};

const PREFIX: &str = "%m [%p] %q%u@%d/%a %e ";
const PASSWORD: &str = "lab-pw";
const CANARY: &str = "canary-7f3e9c1d";
/// The kinds the test provokes; each must be seen at least once.
const PROVOKED: [&str; 9] = [
    "error",
    "slow_statement",
    "checkpoint",
    "autovacuum",
    "lock_wait",
    "deadlock",
    "temp_file",
    "auth_failure",
    "connection",
];

fn collector(facts: &PostgresProbe, format: LogFormat) -> LogCollector {
    let opts = LogOptions {
        explicit: Explicit {
            format: Some(format),
            ..Explicit::default()
        },
        redact: true,
        drop_unclassified: false,
        read_bytes_per_pass: 16 << 20,
        max_files: 64,
    };
    LogCollector::new("lab", Some(facts.server_facts()), opts, None)
}

/// Counts per kind of what a collector has read so far (one more pass first).
fn kinds(c: &mut LogCollector, events: &mut Vec<pga_format::LogEvent>) -> BTreeMap<String, u64> {
    let mut out = Emitter::new();
    let errors = c.collect(&mut out);
    assert!(errors.is_empty(), "{errors:?}");
    events.extend(out.take_logs().events);
    c.totals().kinds.clone()
}

fn provoke(pg: &pga_lab::Cluster) {
    let ok = |sql: &str| {
        pg.psql("postgres", sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    };
    ok(
        "CREATE TABLE u (id int PRIMARY KEY); INSERT INTO u VALUES (1);\
        CREATE TABLE d (id int PRIMARY KEY, v int); INSERT INTO d VALUES (1, 0), (2, 0);\
        CREATE TABLE w (id int); CREATE ROLE canary_role LOGIN;\
        CREATE TABLE av (i int) WITH (autovacuum_vacuum_threshold = 10);\
        INSERT INTO av SELECT generate_series(1, 2000)",
    );
    assert!(pg.psql("postgres", "SELECT 1/0").is_err());
    assert!(pg.psql("postgres", "SELEC 1").is_err());
    assert!(pg.psql("postgres", "INSERT INTO u VALUES (1)").is_err());
    // Secrets: a password (logged by log_statement = all) and a literal in an error
    // and in a slow statement.
    ok(&format!(
        "SET log_statement = 'all'; ALTER ROLE canary_role PASSWORD '{CANARY}';"
    ));
    assert!(
        pg.psql("postgres", &format!("SELECT '{CANARY}'::int"))
            .is_err()
    );
    ok(&format!("SELECT pg_sleep(0.2), '{CANARY}' AS slow"));
    ok(
        "SET work_mem = '64kB'; SELECT count(*) FROM (SELECT g FROM generate_series(1, 200000) g ORDER BY g DESC) s",
    );
    ok("CHECKPOINT");
    std::thread::scope(|s| {
        // A lock wait over deadlock_timeout.
        s.spawn(|| ok("BEGIN; LOCK TABLE w IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(1); COMMIT"));
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(300));
            ok("SELECT count(*) FROM w");
        });
        // A deadlock: one of the two is cancelled.
        let a = s.spawn(|| {
            pg.psql(
                "postgres",
                "BEGIN; UPDATE d SET v = 1 WHERE id = 1; SELECT pg_sleep(0.5); UPDATE d SET v = 1 WHERE id = 2; COMMIT",
            )
            .is_err()
        });
        let b = s.spawn(|| {
            pg.psql(
                "postgres",
                "BEGIN; UPDATE d SET v = 2 WHERE id = 2; SELECT pg_sleep(0.5); UPDATE d SET v = 2 WHERE id = 1; COMMIT",
            )
            .is_err()
        });
        let failed = [a.join().unwrap(), b.join().unwrap()]
            .iter()
            .filter(|failed| **failed)
            .count();
        assert_eq!(failed, 1, "exactly one side of the deadlock fails");
    });
    // A failed login over TCP (scram-sha-256 with a wrong password).
    let psql = pg.install().tool("psql").unwrap();
    let status = Command::new(psql)
        .arg(format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres password=wrong connect_timeout=5",
            pg.port()
        ))
        .args(["-c", "SELECT 1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success());
    ok("DELETE FROM av");
}

#[test]
fn every_kind_from_three_formats_the_agent_and_pgbadger_and_no_secret_leaks() {
    let pg = pga_lab::Cluster::builder()
        .superuser_password(PASSWORD)
        .setting("logging_collector", "on")
        .setting("log_destination", "stderr,csvlog,jsonlog")
        .setting("log_directory", "log")
        .setting("log_filename", "postgresql-%Y-%m-%d_%H%M%S.log")
        .setting("log_line_prefix", PREFIX)
        .setting("lc_messages", "C")
        .setting("log_connections", "on")
        .setting("log_disconnections", "on")
        .setting("log_checkpoints", "on")
        .setting("log_lock_waits", "on")
        .setting("deadlock_timeout", "100ms")
        .setting("log_min_duration_statement", "150")
        .setting("log_temp_files", "0")
        .setting("log_autovacuum_min_duration", "0")
        .setting("autovacuum_naptime", "1s")
        .start()
        .expect("start a throwaway cluster (apt-get install -y postgresql)");

    // The probe learns where the server logs, on its one session.
    let instance = PostgresInstance {
        name: "lab".into(),
        conninfo: Some(pg.conninfo("postgres")),
        ..Default::default()
    };
    let paths = std::sync::Arc::new(std::sync::RwLock::new(Vec::new()));
    let probe = PostgresProbe::new(instance, paths);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let probe = rt.block_on(async move {
        tokio::task::spawn_blocking(move || {
            let mut probe = probe;
            let errors = probe.collect(&mut Emitter::new());
            assert!(errors.is_empty(), "{errors:?}");
            probe
        })
        .await
        .unwrap()
    });

    // The agent binary, reading on its own (jsonlog, the format it prefers).
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port().unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[agent]\nname = \"lab\"\ndata_dir = {:?}\n[intervals]\nfast_secs = 1\nslow_secs = 1\nsizes_secs = 1\n\
             [store]\nblock_secs = 60\n[collectors]\nsystem = false\n\
             [endpoint]\nlisten = \"127.0.0.1:{port}\"\ninsecure_plaintext = true\n\
             [[postgres]]\nname = \"lab\"\nconninfo = {:?}\n",
            data.display().to_string(),
            pg.conninfo("postgres")
        ),
    )
    .unwrap();
    let agent_log = dir.path().join("agent.log");
    let mut agent = Command::new(env!("CARGO_BIN_EXE_pga-agent"))
        .args(["run", "--config"])
        .arg(&config)
        .env("RUST_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&agent_log).unwrap())
        .spawn()
        .expect("start pga-agent");

    let mut collectors: Vec<(LogFormat, LogCollector, Vec<pga_format::LogEvent>)> = LogFormat::ALL
        .into_iter()
        .map(|f| (f, collector(&probe, f), Vec::new()))
        .collect();
    provoke(&pg);

    // Wait for the autovacuum run, then stop autovacuum so the counts settle, and wait
    // until the three formats agree.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut autovacuum_off = false;
    let counts = loop {
        let counts: Vec<BTreeMap<String, u64>> = collectors
            .iter_mut()
            .map(|(_, c, events)| kinds(c, events))
            .collect();
        let all_seen = counts
            .iter()
            .all(|k| PROVOKED.iter().all(|p| k.get(*p).copied().unwrap_or(0) > 0));
        if !autovacuum_off && counts.iter().all(|k| k.contains_key("autovacuum")) {
            pg.psql(
                "postgres",
                "ALTER SYSTEM SET autovacuum = off; SELECT pg_reload_conf()",
            )
            .unwrap();
            autovacuum_off = true;
            std::thread::sleep(Duration::from_millis(1500));
            continue;
        }
        if autovacuum_off && all_seen && counts[0] == counts[1] && counts[1] == counts[2] {
            break counts;
        }
        assert!(
            Instant::now() < deadline,
            "after 60 s: stderr {:?}\ncsvlog {:?}\njsonlog {:?}",
            counts[0],
            counts[1],
            counts[2]
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    let expected = &counts[2];
    eprintln!("counts per kind, every format: {expected:?}");
    // What each provocation gives, at least.
    assert!(
        expected["error"] >= 3,
        "division by zero, syntax error, unique violation"
    );
    assert_eq!(expected["deadlock"], 1);
    assert!(expected["lock_wait"] >= 2, "still waiting + acquired");
    assert_eq!(expected["auth_failure"], 1);
    // Three formats, the same SQLSTATEs where the prefix shows them (%e).
    for (format, _, events) in &collectors {
        let states: Vec<_> = events
            .iter()
            .filter_map(|e| e.sqlstate)
            .map(|s| String::from_utf8_lossy(&s).into_owned())
            .collect();
        for want in ["22012", "42601", "23505", "40P01", "28P01"] {
            assert!(
                states.iter().any(|s| s == want),
                "{format}: {want} in {states:?}"
            );
        }
        for e in events {
            assert!(!e.message.contains(CANARY), "{format}: {}", e.message);
        }
    }

    // The agent binary stored the same counts.
    let agent_counts = loop {
        let v = crate::support::agent::json_of(
            Command::new(env!("CARGO_BIN_EXE_pga-agent"))
                .args([
                    "logs", "--json", "--since", "1h", "--limit", "100000", "--config",
                ])
                .arg(&config),
        );
        let got: BTreeMap<String, u64> = v["counts_by_kind"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(_, n)| n.as_u64() != Some(0))
            .map(|(k, n)| (k.clone(), n.as_u64().unwrap()))
            .collect();
        let comparable = |m: &BTreeMap<String, u64>| {
            // Connections of the agent's own session and of `pga-agent logs` itself
            // differ from the in-process count; every other kind is the same.
            m.iter()
                .filter(|(k, _)| !matches!(k.as_str(), "connection" | "disconnection" | "other"))
                .map(|(k, n)| (k.clone(), *n))
                .collect::<BTreeMap<_, _>>()
        };
        if comparable(&got) == comparable(expected) {
            break got;
        }
        assert!(
            Instant::now() < deadline + Duration::from_secs(30),
            "agent {got:?} != {expected:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    eprintln!("the agent binary (jsonlog): {agent_counts:?}");
    let table = Command::new(env!("CARGO_BIN_EXE_pga-agent"))
        .args([
            "logs",
            "--severity",
            "error",
            "--kind",
            "error,deadlock",
            "--config",
        ])
        .arg(&config)
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&table.stdout).into_owned();
    assert!(table.contains("division by zero"), "{table}");
    assert!(table.contains("deadlock detected"), "{table}");
    assert!(!table.contains("checkpoint"), "filters: {table}");
    let metrics = http_get(port, "/metrics", Duration::from_secs(5))
        .expect("/metrics answers")
        .body;
    let line = format!(
        "pg_log_deadlocks_total{{pg_instance=\"lab\"}} {}",
        expected["deadlock"]
    );
    assert!(metrics.contains(&line), "{line} in\n{metrics}");
    assert!(metrics.contains(
        "pg_log_messages_total{pg_instance=\"lab\",severity=\"ERROR\",sqlstate_class=\"22\"}"
    ));

    // Secrets: nowhere.
    let json_out = Command::new(env!("CARGO_BIN_EXE_pga-agent"))
        .args([
            "logs", "--json", "--since", "1h", "--limit", "100000", "--config",
        ])
        .arg(&config)
        .output()
        .unwrap();
    terminate(&agent);
    agent.wait().unwrap();
    let logs_dir = pg.data_dir().join("log");
    let in_server_log = std::fs::read_dir(&logs_dir)
        .unwrap()
        .flatten()
        .any(|f| contains(&std::fs::read(f.path()).unwrap(), CANARY.as_bytes()));
    assert!(
        in_server_log,
        "the canary must be in the server's own log for this test to mean anything"
    );
    for (what, bytes) in [
        (
            "the store file",
            std::fs::read(data.join("store.redb")).unwrap(),
        ),
        ("pga-agent logs --json", json_out.stdout),
        ("pga-agent logs", table.into_bytes()),
        ("/metrics", metrics.into_bytes()),
        ("the agent's own log", std::fs::read(&agent_log).unwrap()),
    ] {
        assert!(
            !contains(&bytes, CANARY.as_bytes()),
            "the canary leaked into {what}"
        );
        // Nor any part of it long enough to matter.
        assert!(
            !contains(&bytes, &CANARY.as_bytes()[7..]),
            "part of the canary leaked into {what}"
        );
    }

    pgbadger_agrees(&logs_dir, &collectors[0].2);
}

/// SIGTERM, so the agent stops after its current pass.
fn terminate(child: &std::process::Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// LOG messages pgbadger reports among its errors (its `change_log_level`).
const PGBADGER_LOG_AS_ERROR: [&str; 10] = [
    "changed to \"",
    "database system was",
    "recovery has paused",
    "ending cancel to blocking autovacuum",
    "skipping analyze of",
    "using stale statistics",
    "replication command:",
    "still waiting for",
    "was terminated by signal",
    " data from client",
];

/// pgbadger over the stderr file, against the agent's events of the same file. The
/// documented differences, asserted:
///
/// - errors: pgbadger's `errors_number` is the ERROR, FATAL and PANIC entries (as the
///   agent's severities, also per severity in `logs_type`) **plus** the LOG entries it
///   moves into its error report (`parameter … changed to`, `database system was …`,
///   `… still waiting for …`, see [`PGBADGER_LOG_AS_ERROR`]), which the agent keeps
///   at severity LOG (a lock wait is a `lock_wait` event, not an error);
/// - slow statements: pgbadger's `queries_number` is the `duration: … statement:`
///   entries (the agent's slow statements) **plus** the statements `log_statement`
///   logged (`LOG:  statement: …`), which the agent classifies as "other": they carry
///   no duration.
fn pgbadger_agrees(logs_dir: &Path, stderr_events: &[pga_format::LogEvent]) {
    use pga_format::Severity;
    let stderr_file = std::fs::read_dir(logs_dir)
        .unwrap()
        .flatten()
        .map(|f| f.path())
        .find(|p| p.extension().is_some_and(|e| e == "log"))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("pgbadger.json");
    let status = Command::new("pgbadger")
        .args(["-q", "-f", "stderr", "--prefix", PREFIX, "-x", "json", "-o"])
        .arg(&out)
        .arg(&stderr_file)
        .status()
        .expect("pgbadger runs (apt-get install -y pgbadger)");
    assert!(status.success());
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let stat = &v["overall_stat"];
    let count = |f: &dyn Fn(&pga_format::LogEvent) -> bool| {
        stderr_events.iter().filter(|e| f(e)).count() as u64
    };
    let errors = count(&|e| e.severity >= Severity::Error);
    let log_as_error = count(&|e| {
        e.severity == Severity::Log && PGBADGER_LOG_AS_ERROR.iter().any(|p| e.message.contains(p))
    });
    let slow = count(&|e| e.kind == pga_format::LogEventKind::SlowStatement);
    let text = String::from_utf8_lossy(&std::fs::read(&stderr_file).unwrap()).into_owned();
    let logged_statements = text.matches(" LOG:  statement: ").count() as u64;
    eprintln!(
        "pgbadger: errors_number {}, queries_number {}, logs_type {}; agent: errors {errors} \
         + LOG entries pgbadger reports as errors {log_as_error}, slow statements {slow} \
         + log_statement entries {logged_statements}",
        stat["errors_number"], stat["queries_number"], v["logs_type"]
    );
    assert!(errors >= 6 && slow >= 1 && logged_statements >= 1);
    assert_eq!(
        stat["errors_number"].as_u64(),
        Some(errors + log_as_error),
        "{stat}"
    );
    assert_eq!(
        stat["queries_number"].as_u64(),
        Some(slow + logged_statements),
        "{stat}"
    );
    let types = &v["logs_type"]["postgres"];
    for sev in [Severity::Error, Severity::Fatal, Severity::Panic] {
        let agent = count(&|e| e.severity == sev);
        assert_eq!(
            types[sev.as_str()].as_u64().unwrap_or(0),
            agent,
            "{sev:?}: {types}"
        );
    }
}
