//! The stock Prometheus server (Debian's `prometheus`) scrapes the agent over TLS with
//! a client certificate; its HTTP API then reports `up` 1 for the agent and a
//! PostgreSQL series from it, its instance label `pg_instance` under its own name.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use pga_lab::{Cluster, Spawned, http_get, wait_until};

use crate::support::{Agent, free_port};

fn promql(port: u16, query: &str) -> Option<serde_json::Value> {
    let q: String = query
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let body = http_get(
        port,
        &format!("/api/v1/query?query={q}"),
        Duration::from_secs(5),
    )
    .ok()?
    .body;
    // The body may be chunked; the JSON object is between the first '{' and last '}'.
    let json = &body[body.find('{')?..=body.rfind('}')?];
    serde_json::from_str(json).ok()
}

fn prometheus_bin() -> String {
    for p in ["/usr/bin/prometheus", "/usr/local/bin/prometheus"] {
        if Path::new(p).exists() {
            return p.to_owned();
        }
    }
    panic!("install the Prometheus server: apt-get install -y prometheus (bench/run-tests does)");
}

#[test]
fn stock_prometheus_scrapes_the_agent_over_mtls() {
    let prometheus = prometheus_bin();
    let cluster = Cluster::builder()
        .start()
        .expect("a throwaway PostgreSQL cluster");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let certs = d.join("certs");
    let out = Command::new(env!("CARGO_BIN_EXE_pga-agent"))
        .args(["certs", "dev", "--out"])
        .arg(&certs)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "certs dev: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Its scrape snippet says which labels arrive how.
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        printed.contains("job_name: pga-agent") && printed.contains("pg_instance"),
        "{printed}"
    );

    let agent_port = free_port().unwrap();
    let cfg = d.join("agent.toml");
    std::fs::write(
        &cfg,
        format!(
            "[agent]\ndata_dir = {data:?}\n[intervals]\nfast_secs = 1\nslow_secs = 1\nsizes_secs = 1\n\
             [collectors]\nlogs = false\n\
             [endpoint]\nlisten = \"127.0.0.1:{agent_port}\"\ncert_file = {crt:?}\nkey_file = {key:?}\nclient_ca_file = {ca:?}\n\
             [[postgres]]\nname = \"lab\"\nconninfo = {conninfo:?}\n",
            data = d.join("data").display().to_string(),
            crt = certs.join("agent.crt").display().to_string(),
            key = certs.join("agent.key").display().to_string(),
            ca = certs.join("ca.crt").display().to_string(),
            conninfo = cluster.conninfo("postgres"),
        ),
    )
    .unwrap();
    let _agent = Agent::spawn(&cfg, &d.join("data"), "info");

    let prom_port = free_port().unwrap();
    let prom_cfg = d.join("prometheus.yml");
    std::fs::write(
        &prom_cfg,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: pga-agent\n    scheme: https\n    \
             tls_config:\n      ca_file: {ca}\n      cert_file: {crt}\n      key_file: {key}\n      server_name: localhost\n    \
             static_configs:\n      - targets: ['127.0.0.1:{agent_port}']\n",
            ca = certs.join("ca.crt").display(),
            crt = certs.join("prometheus.crt").display(),
            key = certs.join("prometheus.key").display(),
        ),
    )
    .unwrap();
    let _prom = Spawned::start(
        Command::new(prometheus)
            .arg(format!("--config.file={}", prom_cfg.display()))
            .arg(format!("--storage.tsdb.path={}", d.join("tsdb").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .stdout(Stdio::null()),
    )
    .unwrap();

    wait_until("Prometheus to report up == 1 for the agent", 60, || {
        promql(prom_port, "up{job=\"pga-agent\"}")
            .is_some_and(|v| v["data"]["result"][0]["value"][1] == "1")
    });
    // The agent names the PostgreSQL instance `pg_instance`, which no Prometheus
    // target label takes: it arrives under its own name, beside Prometheus's own
    // `instance` (the target's address), and nothing is renamed `exported_instance`.
    let target = format!("127.0.0.1:{agent_port}");
    let mut arrived = serde_json::Value::Null;
    wait_until(
        "pg_up of the lab instance to arrive in Prometheus",
        60,
        || {
            let Some(v) = promql(prom_port, "pg_up{job=\"pga-agent\",pg_instance=\"lab\"}") else {
                return false;
            };
            let found = v["data"]["result"]
                .as_array()
                .and_then(|r| r.first())
                .filter(|s| s["value"][1] == "1")
                .cloned();
            found.map(|s| arrived = s).is_some()
        },
    );
    let labels = &arrived["metric"];
    assert_eq!(labels["pg_instance"], "lab", "{arrived}");
    assert_eq!(labels["instance"], target.as_str(), "{arrived}");
    assert!(labels.get("exported_instance").is_none(), "{arrived}");
    wait_until("a system series to arrive", 30, || {
        promql(prom_port, "node_load1{job=\"pga-agent\"}").is_some_and(|v| {
            v["data"]["result"]
                .as_array()
                .is_some_and(|r| !r.is_empty())
        })
    });
}
