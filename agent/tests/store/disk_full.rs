//! `pga-agent run` with its data directory on a small filesystem that fills up (a
//! tmpfs the test mounts; root only): the agent keeps running and says why it cannot
//! store (once, naming ENOSPC and the file), `/metrics`, `/v1/status` and
//! `pga-agent status` show the failure, and once space returns it collects again
//! by itself, within two intervals, with every collection committed before still in
//! the store.

use std::io::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::endpoint::write;
use crate::support::tmpfs::Tmpfs;
use crate::support::{Agent, free_port};
use pga_agent::store::StoreReader;

/// The agent's fast interval.
const INTERVAL: Duration = Duration::from_secs(1);

/// GET over plain HTTP on loopback: status line and body.
fn http_get(port: u16, path: &str) -> (String, String) {
    let r = pga_lab::http_get(port, path, Duration::from_secs(10)).expect("GET");
    (r.status, r.body)
}

/// The value of `name` (a sample without labels) in a `/metrics` body.
fn metric(body: &str, name: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// Appends `n` server log lines to `log`, each naming a random relation: text that
/// does not compress away.
fn log_lines(log: &Path, from: usize, n: usize) {
    let mut text = String::with_capacity(n * 200);
    let mut x = from as u64 ^ 0x9e37_79b9_7f4a_7c15;
    for i in from..from + n {
        let mut name = String::with_capacity(128);
        for _ in 0..8 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            name.push_str(&format!("{x:016x}"));
        }
        text.push_str(&format!(
            "2024-03-01 12:00:00.{:03} UTC [{}] ERROR:  relation \"t_{name}\" does not exist\n",
            i % 1000,
            1000 + i % 50
        ));
    }
    let mut f = std::fs::OpenOptions::new().append(true).open(log).unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

/// `(collector, ts, log_events)` of every pass the agent logged as stored.
fn stored(agent: &Agent) -> Vec<(String, i64, u64)> {
    let field = |l: &str, key: &str| -> Option<String> {
        let rest = &l[l.find(key)? + key.len()..];
        Some(rest.split_whitespace().next()?.trim_matches('"').to_owned())
    };
    agent
        .log_lines()
        .iter()
        .filter(|l| {
            l.contains(" stored ") || l.ends_with(" stored") || l.contains("stored collector=")
        })
        .filter_map(|l| {
            Some((
                field(l, "collector=")?,
                field(l, " ts=")?.parse().ok()?,
                field(l, "log_events=")?.parse().ok()?,
            ))
        })
        .collect()
}

#[test]
fn a_full_disk_is_reported_and_collection_resumes_by_itself_when_space_returns() {
    let Some(fs) = Tmpfs::mount(
        "a_full_disk_is_reported_and_collection_resumes_by_itself_when_space_returns",
        24,
    ) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("postgresql.log");
    std::fs::write(&log, "").unwrap();
    let data = fs.path().join("data");
    let port = free_port().unwrap();
    let cfg = tmp.path().join("agent.toml");
    write(
        &cfg,
        &format!(
            "[agent]\nname = \"disk-full\"\ndata_dir = {data:?}\n\
             [intervals]\nfast_secs = {s}\nslow_secs = {s}\nsizes_secs = {s}\n\
             [store]\nblock_secs = 600\n\
             [collectors]\npostgres = false\nlogs = true\n\
             [logs]\npath = {log:?}\nformat = \"stderr\"\nprefix = \"%m [%p] \"\n\
             [endpoint]\nlisten = \"127.0.0.1:{port}\"\ninsecure_plaintext = true\n",
            data = data.display().to_string(),
            log = log.display().to_string(),
            s = INTERVAL.as_secs(),
        ),
    );
    let agent = Agent::start(&cfg);
    agent.wait_log("a first stored pass", 30, |l| l.contains("stored"));
    // Space that returns later.
    std::fs::write(fs.path().join("ballast"), vec![0u8; 8 << 20]).unwrap();

    // Log lines pour in until the store cannot take them.
    let mut written = 0;
    let started = Instant::now();
    while agent.count_log(|l| l.contains("could not store a collection")) == 0 {
        log_lines(&log, written, 5_000);
        written += 5_000;
        std::thread::sleep(Duration::from_millis(250));
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "the store never filled the filesystem; log:\n{}",
            agent.log_text()
        );
    }
    let failed_at = Instant::now();
    eprintln!(
        "the store filled the filesystem after {:?} ({written} log lines)",
        started.elapsed()
    );
    // A few more intervals of failing.
    std::thread::sleep(INTERVAL * 3);

    // The cause, once: ENOSPC and the file, not a line per collection.
    let errors: Vec<String> = agent
        .log_lines()
        .iter()
        .filter(|l| l.contains("ERROR"))
        .cloned()
        .collect();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    let store_file = data.join("store.redb").display().to_string();
    assert!(
        errors[0].contains("No space left on device"),
        "{}",
        errors[0]
    );
    assert!(errors[0].contains(&store_file), "{}", errors[0]);

    // /metrics answers and says so; the frozen values are gone.
    let (status, body) = http_get(port, "/metrics");
    assert!(status.contains("200"), "{status}");
    assert_eq!(
        metric(&body, "pga_agent_store_healthy"),
        Some(0.0),
        "{body}"
    );
    assert!(metric(&body, "pga_agent_store_write_errors_total").unwrap_or(0.0) >= 2.0);
    // /v1/status answers with the cause.
    let (status, body) = http_get(port, "/v1/status");
    assert!(status.contains("200"), "{status}: {body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["health"]["healthy"], false, "{v}");
    assert!(
        v["health"]["last_error"]
            .as_str()
            .unwrap_or("")
            .contains("No space left"),
        "{v}"
    );
    // So does `pga-agent status`, in another process, exiting 1.
    let out = Command::new(env!("CARGO_BIN_EXE_pga-agent"))
        .args(["status", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // FAILING, or RECOVERING when small collections fit again while large ones fail.
    assert!(
        (text.contains("FAILING") || text.contains("RECOVERING")) && text.contains("No space left"),
        "{text}"
    );

    // Space returns: collection resumes by itself, without a restart.
    let stored_before = stored(&agent).len();
    std::fs::remove_file(fs.path().join("ballast")).unwrap();
    let back = Instant::now();
    let mut waited = Duration::ZERO;
    while stored(&agent).len() == stored_before {
        std::thread::sleep(Duration::from_millis(50));
        waited = back.elapsed();
        assert!(
            waited < INTERVAL * 10,
            "no collection stored {waited:?} after space returned; log:\n{}",
            agent.log_text()
        );
    }
    eprintln!(
        "failed for {:?}; first collection stored {waited:?} after space returned",
        back - failed_at
    );
    assert!(
        waited <= INTERVAL * 2 + Duration::from_millis(500),
        "collection resumed only after {waited:?}"
    );
    agent.wait_log("the recovery", 10, |l| l.contains("the store writes again"));
    std::thread::sleep(INTERVAL);
    // No collection is lost any more; healthy again once none was for a minute.
    let (_, body) = http_get(port, "/metrics");
    let errors_then = metric(&body, "pga_agent_store_write_errors_total").unwrap();
    assert!(metric(&body, "pga_agent_store_reopens_total").unwrap_or(0.0) >= 1.0);
    std::thread::sleep(INTERVAL * 2);
    let (_, body) = http_get(port, "/metrics");
    assert_eq!(
        metric(&body, "pga_agent_store_write_errors_total"),
        Some(errors_then),
        "{body}"
    );
    assert!(
        body.contains("node_load1 "),
        "fresh values are served again"
    );

    // Stop it, then read the store back: every collection it said it stored is there.
    let pid = nix::unistd::Pid::from_raw(agent.pid() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    agent.wait_log("the agent to stop", 20, |l| l.contains("stopped"));
    std::thread::sleep(Duration::from_millis(200));
    let passes = stored(&agent);
    let reader = StoreReader::open(&data).unwrap();
    let view = reader.view();
    let metas = view.series().unwrap();
    let load1: Vec<_> = metas
        .iter()
        .filter(|m| m.name == "node_load1")
        .map(|m| m.id)
        .collect();
    let samples = view.samples(&load1, i64::MIN, i64::MAX).unwrap();
    let times: std::collections::BTreeSet<i64> =
        samples.values().flatten().map(|s| s.timestamp_ms).collect();
    let system: Vec<i64> = passes
        .iter()
        .filter(|(c, _, _)| c == "system")
        .map(|(_, ts, _)| *ts)
        .collect();
    assert!(system.len() >= 3, "{passes:?}");
    for ts in &system {
        assert!(
            times.contains(ts),
            "system pass at {ts} is not in the store"
        );
    }
    let events = view
        .log_events(i64::MIN, i64::MAX, &|_| true)
        .unwrap()
        .len() as u64;
    let stored_events: u64 = passes.iter().map(|(_, _, n)| n).sum();
    assert_eq!(events, stored_events, "log events stored vs. read back");
    let status = view.status().unwrap();
    assert!(
        status
            .events
            .iter()
            .any(|(_, e)| e.contains("writes failed") && e.contains("No space left")),
        "{:?}",
        status.events
    );
}
