//! `kill -9` the agent binary while it works through a large server log, several times,
//! then let it finish: every entry is stored exactly once, and the counters (which
//! continue across restarts from the totals saved with the offsets) say the same.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pga_agent::store::StoreReader;

const ENTRIES: u64 = 60_000;
const KILLS: usize = 4;

/// Counts of each entry number among the stored events, or `None` while the store is
/// not there yet.
fn stored(config: &std::path::Path) -> Option<BTreeMap<u64, u32>> {
    let out = Command::new(env!("CARGO_BIN_EXE_pga-agent"))
        .args([
            "logs",
            "--json",
            "--since",
            "2024-01-01T00:00:00Z",
            "--limit",
            "1000000",
            "--config",
        ])
        .arg(config)
        .output()
        .unwrap();
    if !out.status.success() {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut ids = BTreeMap::new();
    for e in v["events"].as_array().unwrap() {
        let msg = e["message"].as_str().unwrap();
        let id: u64 = msg
            .split("\"t_")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no id in {msg:?}"));
        *ids.entry(id).or_insert(0) += 1;
    }
    Some(ids)
}

#[test]
fn kill_9_while_reading_a_large_log_neither_loses_nor_repeats_an_event() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("postgresql.log");
    let mut text = String::new();
    for id in 0..ENTRIES {
        text.push_str(&format!(
            "2024-03-01 12:{:02}:{:02}.{:03} UTC [{}] ERROR:  relation \"t_{id}\" does not exist\n\
             2024-03-01 12:00:00.000 UTC [7] STATEMENT:  SELECT * FROM t_{id} WHERE a = 'x'\n",
            (id / 60_000) % 60,
            (id / 1000) % 60,
            id % 1000,
            1000 + id % 5000
        ));
    }
    std::fs::File::create(&log)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[agent]\ndata_dir = {:?}\n[intervals]\nfast_secs = 1\nslow_secs = 1\nsizes_secs = 1\n\
             [store]\nblock_secs = 60\n[collectors]\npostgres = false\nsystem = false\n\
             [logs]\npath = {:?}\nformat = \"stderr\"\nprefix = \"%m [%p] \"\nread_bytes_per_pass = 524288\n",
            data.display().to_string(),
            log.display().to_string()
        ),
    )
    .unwrap();
    let start = || {
        Command::new(env!("CARGO_BIN_EXE_pga-agent"))
            .args(["run", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start pga-agent")
    };
    let started = Instant::now();
    let mut progress = Vec::new();
    for round in 0..KILLS {
        let mut child = start();
        std::thread::sleep(Duration::from_millis(1000 + 300 * round as u64));
        child.kill().expect("kill -9");
        child.wait().unwrap();
        let ids = stored(&config).unwrap_or_default();
        assert!(
            ids.values().all(|n| *n == 1),
            "round {round}: an entry stored twice"
        );
        progress.push(ids.len());
    }
    assert!(
        progress.last().copied().unwrap_or(0) < ENTRIES as usize,
        "the agent read everything before the last kill: {progress:?}; use a larger log"
    );
    let mut child = start();
    let deadline = Instant::now() + Duration::from_secs(120);
    let ids = loop {
        let ids = stored(&config).unwrap_or_default();
        if ids.len() as u64 == ENTRIES || Instant::now() > deadline {
            break ids;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    // A pass or two more, so the counters of the last pass are stored too.
    std::thread::sleep(Duration::from_millis(2500));
    child.kill().unwrap();
    child.wait().unwrap();
    let twice: Vec<_> = ids.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(twice.is_empty(), "stored twice: {twice:?}");
    assert_eq!(
        ids.len() as u64,
        ENTRIES,
        "entries lost; progress {progress:?}"
    );
    assert!(ids.keys().copied().eq(0..ENTRIES));

    // The counter continued across the restarts from the saved totals.
    let reader = StoreReader::open(&data).unwrap();
    let view = reader.view();
    let meta = view
        .series()
        .unwrap()
        .into_iter()
        .find(|m| m.name == "pg_log_events_total" && m.label("kind") == Some("error"))
        .expect("the error counter is stored");
    let samples = view.samples(&[meta.id], 0, i64::MAX).unwrap();
    let last = samples[&meta.id].last().unwrap().value;
    assert_eq!(last, ENTRIES as f64);
    eprintln!(
        "{KILLS} kills at {progress:?} events stored; {ENTRIES} events exactly once in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
