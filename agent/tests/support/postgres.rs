//! For the PostgreSQL collector tests: run the real `pga-agent` against a lab
//! cluster and read what it stored.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use pga_agent::store::StoreReader;

pub use super::Agent;
pub use pga_lab::now_ms;

/// A lab cluster with `pg_stat_statements` preloaded and created in `postgres`,
/// where `setup` (SQL) has run too.
pub fn statements_cluster(setup: &str) -> pga_lab::Cluster {
    let cluster = pga_lab::Cluster::builder()
        .preload("pg_stat_statements")
        .start()
        .expect("start a cluster");
    cluster
        .psql(
            "postgres",
            &format!("CREATE EXTENSION pg_stat_statements; {setup}"),
        )
        .unwrap();
    cluster
}

/// One stored series: its labels and its `(timestamp_ms, value)` samples.
pub type Stored = (Vec<(String, String)>, Vec<(i64, f64)>);

impl Agent {
    /// Starts the agent with `[[postgres]]` tables `instances` (TOML text) and
    /// intervals of `fast`, `slow`, `sizes` seconds; the logs and system collectors
    /// off.
    pub fn watching(instances: &str, fast: u64, slow: u64, sizes: u64) -> Agent {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let cfg = dir.path().join("agent.toml");
        std::fs::write(
            &cfg,
            format!(
                "[agent]\ndata_dir = {:?}\n[intervals]\nfast_secs = {fast}\nslow_secs = {slow}\nsizes_secs = {sizes}\n\
                 [collectors]\nlogs = false\nsystem = false\n{instances}",
                data.display().to_string()
            ),
        )
        .unwrap();
        let mut agent = Agent::spawn(&cfg, &data, "info");
        agent._dir = Some(dir);
        agent
    }

    /// Every series named `name` whose labels include `labels`, with its samples.
    pub fn series(&self, name: &str, labels: &[(&str, &str)]) -> Vec<Stored> {
        series(&self.data, name, labels)
    }

    /// The latest value of the one series matching.
    pub fn last(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.series(name, labels)
            .iter()
            .filter_map(|(_, s)| s.last().copied())
            .max_by_key(|(ts, _)| *ts)
            .map(|(_, v)| v)
    }

    /// The most series named `name` (with `labels`) that one pass stored.
    pub fn max_series_per_pass(&self, name: &str, labels: &[(&str, &str)]) -> usize {
        let mut per_ts = std::collections::BTreeMap::<i64, usize>::new();
        for (_, samples) in self.series(name, labels) {
            for (ts, _) in samples {
                *per_ts.entry(ts).or_default() += 1;
            }
        }
        per_ts.values().copied().max().unwrap_or(0)
    }

    /// Waits up to `secs` for `cond` on the store; panics with `what` otherwise.
    pub fn wait(&self, secs: u64, what: &str, mut cond: impl FnMut(&Agent) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !cond(self) {
            assert!(
                Instant::now() < deadline,
                "{what} never happened; agent log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// `pga-agent query …` on this agent's store, as parsed JSON.
    pub fn query_json(&self, args: &[&str]) -> serde_json::Value {
        super::agent::json_of(
            Command::new(env!("CARGO_BIN_EXE_pga-agent"))
                .arg("query")
                .args(args)
                .args(["--format", "json", "--data-dir"])
                .arg(&self.data),
        )
    }

    /// The agent's peak resident set size, from /proc.
    pub fn peak_rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap()
            * 1024
    }
}

/// Every series named `name` in the store at `data` whose labels include `labels`.
pub fn series(data: &Path, name: &str, labels: &[(&str, &str)]) -> Vec<Stored> {
    let Ok(reader) = StoreReader::open(data) else {
        return Vec::new();
    };
    let view = reader.view();
    let Ok(metas) = view.series() else {
        return Vec::new();
    };
    let chosen: Vec<_> = metas
        .into_iter()
        .filter(|m| m.name == name && labels.iter().all(|(k, v)| m.label(k) == Some(*v)))
        .collect();
    let ids: Vec<_> = chosen.iter().map(|m| m.id).collect();
    let Ok(samples) = view.samples(&ids, i64::MIN, i64::MAX) else {
        return Vec::new();
    };
    chosen
        .into_iter()
        .map(|m| {
            let pts = samples
                .get(&m.id)
                .map(|v| v.iter().map(|s| (s.timestamp_ms, s.value)).collect())
                .unwrap_or_default();
            (m.labels.clone(), pts)
        })
        .collect()
}

/// A `[[postgres]]` table for `conninfo`.
pub fn instance(name: &str, conninfo: &str, extra: &str) -> String {
    format!("[[postgres]]\nname = {name:?}\nconninfo = {conninfo:?}\n{extra}\n")
}
