//! `kill -9` the agent at random moments while it collects: every time, the store
//! opens and holds every collection the agent had reported as stored.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pga_agent::store::StoreReader;

const KILLS: usize = 30;

/// A small deterministic generator, so a failure can be replayed.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, lo: u64, hi: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        lo + (self.0 >> 33) % (hi - lo)
    }
}

/// `collector="system" ts=1795... samples=95` from a "stored" log line.
fn parse_stored(line: &str) -> Option<(String, i64)> {
    if !line.contains("stored") {
        return None;
    }
    let collector = line
        .split("collector=\"")
        .nth(1)?
        .split('"')
        .next()?
        .to_owned();
    let ts = line
        .split(" ts=")
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some((collector, ts))
}

#[test]
fn kill_9_at_random_moments_loses_no_committed_collection() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[agent]\ndata_dir = {:?}\n[intervals]\nfast_secs = 1\nslow_secs = 1\nsizes_secs = 1\n\
             [store]\nblock_secs = 60\n[collectors]\npostgres = false\nlogs = false\n",
            data.display().to_string()
        ),
    )
    .unwrap();
    let mut rng = Lcg(0x5eed);
    let mut committed: Vec<(String, i64)> = Vec::new();
    let started = Instant::now();
    for round in 0..KILLS {
        let mut child = Command::new(env!("CARGO_BIN_EXE_pga-agent"))
            .args(["run", "--config"])
            .arg(&config)
            .env("RUST_LOG", "pga_agent::store=debug,warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start pga-agent");
        let stderr = child.stderr.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut stored = Vec::new();
            let mut log = Vec::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(s) = parse_stored(&line) {
                    stored.push(s);
                }
                log.push(line);
            }
            (stored, log)
        });
        std::thread::sleep(Duration::from_millis(rng.next(150, 2200)));
        child.kill().expect("kill -9"); // SIGKILL
        child.wait().unwrap();
        let (stored, log) = reader.join().unwrap();
        committed.extend(stored);

        // The store opens every time, and every reported collection is in it.
        let reader = StoreReader::open(&data)
            .unwrap_or_else(|e| panic!("round {round}: {e}\n{}", log.join("\n")));
        let view = reader.view();
        let metas = view.series().unwrap();
        let probe = |collector: &str| {
            let name = if collector == "system" {
                "node_load1"
            } else {
                "pga_agent_store_series"
            };
            metas.iter().find(|m| m.name == name).map(|m| m.id)
        };
        for (collector, ts) in &committed {
            let id = probe(collector)
                .unwrap_or_else(|| panic!("round {round}: no series of {collector}"));
            let got = view.samples(&[id], *ts, *ts).unwrap();
            assert_eq!(
                got[&id].len(),
                1,
                "round {round}: {collector} collection at {ts} was reported stored but is missing"
            );
        }
    }
    assert!(
        committed.len() >= KILLS,
        "only {} collections in {KILLS} runs",
        committed.len()
    );
    eprintln!(
        "{KILLS} kills, {} committed collections verified, {:.1} s",
        committed.len(),
        started.elapsed().as_secs_f64()
    );
}
