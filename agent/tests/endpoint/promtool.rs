//! `promtool check metrics` (Debian's `prometheus` package) finds nothing to report on
//! the agent's `/metrics`: PostgreSQL-like counters and gauges, labels holding quotes,
//! backslashes and newlines, and the agent's own `pga_agent_*` series.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use pga_agent::collect::Collector;
use pga_agent::collect::{Emitted, Emitter};
use pga_agent::endpoint::api::{ApiState, TEXT_CONTENT_TYPE, router};
use pga_agent::store::{Store, StoreOptions};
use pga_agent::telemetry::SelfCollector;
use pga_agent::telemetry::Telemetry;
use pga_format::MetricKind;
use tower::ServiceExt;

/// promtool's findings on `text` (its stdout and stderr), and whether it succeeded.
fn promtool_check(text: &str) -> (bool, String) {
    let found = Command::new("promtool")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(found, "install promtool: apt-get install -y prometheus");
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running promtool");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let mut report = String::from_utf8_lossy(&out.stdout).into_owned();
    report.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), report)
}

fn emitted(
    name: &str,
    labels: &[(&str, &str)],
    kind: MetricKind,
    unit: &'static str,
    help: &'static str,
    value: f64,
) -> Emitted {
    Emitted::new(kind, name, help, unit, labels, value)
}

/// One collection of what a PostgreSQL host's agent stores.
fn realistic() -> Vec<Emitted> {
    use MetricKind::{Counter, Gauge};
    let mut out = Vec::new();
    for (db, commits) in [
        ("app", 1_234_567.0),
        ("postgres", 88.0),
        ("we\"ird\\db\nname", 1.0),
    ] {
        out.push(emitted(
            "pg_stat_database_xact_commit_total",
            &[("datname", db), ("pg_instance", "main")],
            Counter,
            "",
            "Transactions committed in this database.",
            commits,
        ));
        out.push(emitted(
            "pg_stat_database_blk_read_time_seconds_total",
            &[("datname", db), ("pg_instance", "main")],
            Counter,
            "seconds",
            "Time spent reading data file blocks.\nZero unless track_io_timing is on.",
            commits / 1e4,
        ));
        out.push(emitted(
            "pg_database_size_bytes",
            &[("datname", db), ("pg_instance", "main")],
            Gauge,
            "bytes",
            "Disk space used by the database.",
            commits * 8192.0,
        ));
    }
    for (state, n) in [
        ("active", 3.0),
        ("idle", 17.0),
        ("idle in transaction", 1.0),
    ] {
        out.push(emitted(
            "pg_stat_activity_connections",
            &[("pg_instance", "main"), ("state", state)],
            Gauge,
            "",
            "Backends by state.",
            n,
        ));
    }
    out.push(emitted(
        "pg_stat_statements_calls_total",
        &[
            ("datname", "app"),
            (
                "query",
                "SELECT \"name\" FROM t WHERE path = 'C:\\tmp'\n  AND x = $1",
            ),
            ("queryid", "-4617005372926426541"),
        ],
        Counter,
        "",
        "Times the statement was executed (\"calls\"), top statements by total time.",
        420.0,
    ));
    out.push(emitted(
        "pg_replication_lag_seconds",
        &[("application_name", "replica-1"), ("pg_instance", "main")],
        Gauge,
        "seconds",
        "Replay lag of a standby.",
        0.000_25,
    ));
    out.push(emitted(
        "pg_stat_checkpointer_last_ratio",
        &[("pg_instance", "main")],
        Gauge,
        "",
        "A value that is not a number yet.",
        f64::NAN,
    ));
    out.push(emitted(
        "pg_up",
        &[("pg_instance", "main")],
        Gauge,
        "",
        "Whether the last connection to PostgreSQL succeeded (1) or not (0).",
        1.0,
    ));
    out.push(emitted(
        "node_filesystem_avail_bytes",
        &[("mountpoint", "/var/lib/postgresql"), ("role", "data")],
        Gauge,
        "bytes",
        "Filesystem space available to the agent's user.",
        1.2e12,
    ));
    out
}

#[tokio::test]
async fn promtool_reports_no_problem_on_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let opts = StoreOptions {
        max_bytes: 64 << 20,
        retention_ms: 0,
        block_ms: 600_000,
    };
    let (mut store, _) = Store::open(dir.path(), opts).unwrap();
    let telemetry = Arc::new(Telemetry::new());
    telemetry.collector_pass("postgres", 0.034, 18, 0);
    let mut me = SelfCollector {
        telemetry: telemetry.clone(),
        collectors: vec!["postgres", "self", "system"],
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let mut own = Emitter::new();
    me.collect(&mut own);
    store.append(now - 10_000, &realistic(), None).unwrap();
    store.append(now, &own.take(), None).unwrap();
    // The log collector's counters, from a pass over a small log.
    let log = dir.path().join("postgresql.log");
    std::fs::write(
        &log,
        "2024-03-01 12:00:00.000 UTC [1] LOG:  duration: 1500.2 ms  statement: SELECT 1\n\
         2024-03-01 12:00:01.000 UTC [1] ERROR:  division by zero\n",
    )
    .unwrap();
    let opts = pga_agent::collect::logs::collector::LogOptions {
        explicit: pga_agent::collect::logs::discover::Explicit {
            path: Some(log.display().to_string()),
            format: None,
            prefix: Some("%m [%p] ".into()),
        },
        redact: true,
        drop_unclassified: false,
        read_bytes_per_pass: 1 << 20,
        max_files: 8,
    };
    let mut logs = pga_agent::collect::logs::collector::LogCollector::new("main", None, opts, None);
    let mut out = Emitter::new();
    assert!(logs.collect(&mut out).is_empty());
    let batch = out.take_logs();
    assert_eq!(batch.events.len(), 2);
    store
        .append_with_logs(now - 5_000, &out.take(), &batch, None)
        .unwrap();

    let app = router(ApiState {
        store: store.handle(),
        agent_name: "db-1".into(),
        max_response_bytes: 1 << 20,
        inventory: Default::default(),
    });
    let resp = app
        .oneshot(
            Request::builder()
                .uri("/metrics")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()[header::CONTENT_TYPE], TEXT_CONTENT_TYPE);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let text = std::str::from_utf8(&body).unwrap();
    assert!(text.contains("pga_agent_store_series"), "{text}");
    assert!(
        text.contains(
            "pg_log_slow_statements_by_duration_total{le_seconds=\"5\",pg_instance=\"main\"} 1"
        ),
        "{text}"
    );
    assert!(text.contains(r#"datname="we\"ird\\db\nname""#), "{text}");

    let (ok, report) = promtool_check(text);
    assert!(
        ok && report.is_empty(),
        "promtool check metrics reported:\n{report}\non:\n{text}"
    );

    // The check can fail: a counter without `_total` and a family without HELP.
    let (ok, report) =
        promtool_check("# TYPE pg_commits counter\npg_commits 1\n# TYPE x gauge\nx 1\n");
    assert!(!ok && report.contains("_total"), "{report}");
}
