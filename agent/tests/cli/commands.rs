//! `pga-agent query`, `series`, `status` and `check-config` end to end, through the
//! real binary: on a store written by a real `run` (while it runs and after it
//! stopped), and on a store with a counter reset.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use pga_agent::collect::Emitted;
use pga_agent::store::{Store, StoreOptions};
use pga_format::MetricKind;
use serde_json::Value;

fn agent(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pga-agent"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run pga-agent")
}

fn ok(args: &[&str]) -> String {
    let out = agent(args);
    assert!(
        out.status.success(),
        "pga-agent {args:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

fn json(args: &[&str]) -> Value {
    let text = ok(args);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?}: {e}\n{text}"))
}

fn config(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("agent.toml");
    std::fs::write(
        &path,
        format!(
            "[agent]\ndata_dir = {:?}\n[intervals]\nfast_secs = 1\nslow_secs = 1\nsizes_secs = 1\n\
             [collectors]\npostgres = false\nlogs = false\n",
            dir.join("data").display().to_string()
        ),
    )
    .unwrap();
    path
}

#[test]
fn query_series_and_status_work_while_the_agent_runs_and_after() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let cfg = cfg.to_str().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_pga-agent"))
        .args(["run", "--config", cfg])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait for a few collections.
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        let out = agent(&["status", "--config", cfg, "--format", "json"]);
        if out.status.success() {
            let v: Value = serde_json::from_slice(&out.stdout).unwrap();
            if v["head_collections"].as_u64().unwrap_or(0) >= 6 {
                break v;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the agent stored nothing in 30 s"
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    assert!(status["series"].as_u64().unwrap() > 10);
    let collectors: Vec<&str> = status["collectors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c[0].as_str().unwrap())
        .collect();
    assert!(
        collectors.contains(&"system") && collectors.contains(&"self"),
        "{collectors:?}"
    );

    // While it runs.
    let series = json(&["series", "node_load1", "--config", cfg, "--format", "json"]);
    assert_eq!(series.as_array().unwrap().len(), 1, "{series}");
    // The same question is asked again after the agent stopped.
    let recent_load = [
        "query",
        "node_load1",
        "--since",
        "5m",
        "--config",
        cfg,
        "--format",
        "json",
    ];
    let q = json(&recent_load);
    let points = q[0]["points"].as_array().unwrap();
    assert!(points.len() >= 3, "{q}");
    let load: f64 = std::fs::read_to_string("/proc/loadavg")
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let last = points.last().unwrap()[1].as_f64().unwrap();
    assert!(
        (last - load).abs() < 5.0,
        "node_load1 {last} vs /proc/loadavg {load}"
    );
    let table = ok(&["query", "node_load1", "--since", "5m", "--config", cfg]);
    assert!(table.contains("node_load1"), "{table}");
    let chart = ok(&[
        "query",
        "node_load1",
        "--since",
        "2m",
        "--format",
        "chart",
        "--config",
        cfg,
    ]);
    assert!(chart.lines().count() >= 5, "{chart}");
    let csv = ok(&[
        "query",
        "node_load1",
        "--since",
        "5m",
        "--format",
        "csv",
        "--config",
        cfg,
    ]);
    assert!(csv.starts_with("series,timestamp_ms,time,value\n"), "{csv}");

    // After it stopped (SIGTERM), the same questions still work.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(
        child.wait().unwrap().success(),
        "the agent exits cleanly on SIGTERM"
    );
    let after = json(&recent_load);
    assert!(after[0]["points"].as_array().unwrap().len() >= points.len());
    let status = ok(&["status", "--config", cfg]);
    assert!(
        status.contains("system") && status.contains("series"),
        "{status}"
    );
}

#[test]
fn rate_and_increase_handle_a_counter_reset() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let opts = StoreOptions {
        max_bytes: 1 << 30,
        retention_ms: 0,
        block_ms: 30_000,
    };
    let (mut store, _) = Store::open(&data, opts).unwrap();
    let t0 = 1_795_507_200_000i64; // 2026-11-24T08:00:00Z
    // 0, 10, 20, 30, then a restart resets it: 5, 15.
    for (i, v) in [0.0, 10.0, 20.0, 30.0, 5.0, 15.0].into_iter().enumerate() {
        let e = Emitted {
            name: "test_counter_total".into(),
            labels: vec![("db".into(), "app".into())],
            kind: MetricKind::Counter,
            unit: "",
            help: "A counter that resets.",
            value: v,
        };
        store.append(t0 + i as i64 * 10_000, &[e], None).unwrap();
    }
    drop(store);
    let d = data.to_str().unwrap();
    let range = [
        "--since",
        "2026-11-24T08:00:00Z",
        "--until",
        "2026-11-24T08:01:00Z",
        "--step",
        "60s",
    ];
    let q = |f: &str| {
        let mut args = vec![
            "query",
            "test_counter_total",
            "--data-dir",
            d,
            "--format",
            "json",
            "--fn",
            f,
        ];
        args.extend(range);
        let v = json(&args);
        v[0]["points"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p[1].as_f64().unwrap())
            .collect::<Vec<_>>()
    };
    // 10 + 10 + 10, the reset counts 5 in full, then + 10.
    assert_eq!(q("increase"), vec![45.0]);
    assert_eq!(q("rate"), vec![0.75]);
    assert_eq!(q("max"), vec![30.0]);
    assert_eq!(q("last"), vec![15.0]);
}

#[test]
fn bad_input_gets_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("nothing-here");
    let d = d.to_str().unwrap();

    let out = agent(&["status", "--data-dir", d]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no store at") && err.contains("--data-dir"),
        "{err}"
    );

    let out = agent(&["query", "pg_up{datname~\"x\"}", "--data-dir", d]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("column 14"), "{err}");
    assert!(
        err.contains("             ^"),
        "the caret points at the column: {err}"
    );

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[store]\nmax_byte = 5\n").unwrap();
    let out = agent(&["check-config", "--config", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("max_byte") && err.contains("max_bytes"),
        "names the key and the likely fix: {err}"
    );

    // A data directory that cannot be created: its parent is a file.
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let cfg = dir.path().join("agent.toml");
    std::fs::write(
        &cfg,
        format!(
            "[agent]\ndata_dir = {:?}\n[collectors]\npostgres = false\nlogs = false\n",
            file.join("data").display().to_string()
        ),
    )
    .unwrap();
    let out = agent(&["run", "--config", cfg.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("data") && (err.contains("cannot create") || err.contains("data_dir")),
        "{err}"
    );
}

#[test]
fn a_damaged_store_is_moved_aside_and_collection_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(
        data.join("store.redb"),
        b"this is not a redb file, it is damage".repeat(300),
    )
    .unwrap();
    let opts = StoreOptions {
        max_bytes: 1 << 30,
        retention_ms: 0,
        block_ms: 600_000,
    };
    let (mut store, report) = Store::open(&data, opts).unwrap();
    let (aside, why) = report.moved_aside.expect("the damaged file is moved aside");
    assert!(aside.exists(), "kept, never deleted: {}", aside.display());
    assert!(
        std::fs::read(&aside)
            .unwrap()
            .starts_with(b"this is not a redb file")
    );
    assert!(!why.is_empty());
    let e = Emitted {
        name: "up".into(),
        labels: vec![],
        kind: MetricKind::Gauge,
        unit: "",
        help: "Up.",
        value: 1.0,
    };
    store.append(1, &[e], None).unwrap();
    drop(store);
    let status = json(&[
        "status",
        "--data-dir",
        data.to_str().unwrap(),
        "--format",
        "json",
    ]);
    let events = status["events"].as_array().unwrap();
    assert!(
        events
            .iter()
            .any(|e| e[1].as_str().unwrap().contains("moved aside")),
        "{status}"
    );
    assert_eq!(status["head_collections"], 1);
}

#[test]
fn a_truncated_store_never_stops_collection() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let opts = StoreOptions {
        max_bytes: 1 << 30,
        retention_ms: 0,
        block_ms: 60_000,
    };
    let sample = |v: f64| Emitted {
        name: "truncation_test".into(),
        labels: vec![],
        kind: MetricKind::Gauge,
        unit: "",
        help: "A gauge.",
        value: v,
    };
    {
        let (mut store, _) = Store::open(&data, opts).unwrap();
        for i in 0..200 {
            store
                .append(1_700_000_000_000 + i * 10_000, &[sample(i as f64)], None)
                .unwrap();
        }
    }
    let file = data.join("store.redb");
    let len = std::fs::metadata(&file).unwrap().len();
    for cut in [len / 2, len / 4, 4096, 100] {
        let f = std::fs::OpenOptions::new().write(true).open(&file).unwrap();
        f.set_len(cut).unwrap();
        drop(f);
        // Either redb recovers what the file still holds, or the file is moved aside:
        // the store opens and takes new collections either way.
        let (mut store, report) =
            Store::open(&data, opts).unwrap_or_else(|e| panic!("cut to {cut}: {e}"));
        store
            .append(1_800_000_000_000 + cut as i64, &[sample(1.0)], None)
            .unwrap();
        if let Some((aside, _)) = &report.moved_aside {
            assert!(aside.exists());
        }
    }
}

#[test]
fn help_describes_the_agent_as_it_is() {
    let help = ok(&["--help"]);
    assert!(!help.contains("as the collectors land"), "{help}");
    assert!(help.contains("PostgreSQL statistics"), "{help}");
}

#[test]
fn an_unreadable_key_is_reported_once() {
    use std::io::Write as _;
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    if !nix::unistd::Uid::effective().is_root() {
        let _shown = writeln!(
            std::io::stderr(),
            "SKIPPED an_unreadable_key_is_reported_once: needs root to run the agent as another user"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    let tls = d.join("tls");
    ok(&["certs", "dev", "--out", tls.to_str().unwrap()]);
    std::fs::set_permissions(&tls, std::fs::Permissions::from_mode(0o755)).unwrap();
    for f in ["agent.crt", "ca.crt"] {
        std::fs::set_permissions(tls.join(f), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    // agent.key stays 0600, root's: unreadable by the user the agent runs as below.
    let cfg = d.join("agent.toml");
    let p = |f: &str| tls.join(f).display().to_string();
    std::fs::write(
        &cfg,
        format!(
            "[agent]\ndata_dir = {:?}\n[endpoint]\ncert_file = {:?}\nkey_file = {:?}\n\
             client_ca_file = {:?}\n",
            d.join("data").display().to_string(),
            p("agent.crt"),
            p("agent.key"),
            p("ca.crt")
        ),
    )
    .unwrap();
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pga-agent"))
        .args(["check-config", "--config"])
        .arg(&cfg)
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reports: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains("endpoint.key_file:"))
        .collect();
    assert_eq!(reports.len(), 1, "{stdout}");
    assert!(
        reports[0].starts_with("error:") && reports[0].contains("permission denied"),
        "{stdout}"
    );
}
