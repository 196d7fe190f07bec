//! `pga-demo --for 30s` brings up PostgreSQL, two agents and the federator, and data
//! from both agents reaches the central database, with no collector failing;
//! everything is cleaned up. Ctrl-C stops it quietly.
//!
//! It runs the workspace's `pga-agent` and `pga-federator` binaries from the
//! directory of `pga-demo` (`cargo test --workspace`, as `bash bench/run-tests`
//! runs it, builds them there).

use std::io::{BufRead as _, BufReader, Read as _};
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Command, Stdio};

#[test]
fn the_demo_brings_data_from_every_agent_into_the_central_database() {
    let demo = Path::new(env!("CARGO_BIN_EXE_pga-demo"));
    let dir = demo.parent().unwrap();
    for bin in ["pga-agent", "pga-federator"] {
        assert!(
            dir.join(bin).exists(),
            "{} is missing: run the tests as `cargo test --workspace` (bash bench/run-tests), \
             or `cargo build -p pga-agent -p pga-federator` first",
            dir.join(bin).display()
        );
    }
    let out = Command::new(demo)
        .args(["--for", "30s", "--bin-dir"])
        .arg(dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let end = stdout
        .lines()
        .find(|l| l.starts_with("central database at the end:"))
        .unwrap_or_else(|| panic!("{stdout}"));
    for agent in ["demo-agent-1", "demo-agent-2"] {
        let count: u64 = end
            .split(&format!("{agent}: "))
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no count for {agent} in {end:?}"));
        assert!(count > 0, "{end}");
    }
    // The agents watch a cluster with pg_stat_statements: no collector fails.
    assert!(
        stdout.contains("collector errors at the end: none"),
        "{stdout}"
    );
    assert!(stdout.contains("psql \"postgres://"), "{stdout}");
    assert!(stdout.contains("query 'pg_up'"), "{stdout}");
    let workdir = stdout
        .lines()
        .find_map(|l| l.strip_prefix("removed the cluster and "))
        .unwrap();
    assert!(!Path::new(workdir.trim()).exists(), "{workdir} was removed");
}

/// Ctrl-C at a terminal signals the whole foreground process group: the demo, its
/// agents, its federator and the pgbench it runs. The demo stops, cleans up and
/// prints nothing on stderr (pgbench once dumped its debug trace there).
#[test]
fn ctrl_c_stops_the_demo_quietly() {
    let demo = Path::new(env!("CARGO_BIN_EXE_pga-demo"));
    let dir = demo.parent().unwrap();
    let mut child = Command::new(demo)
        .arg("--bin-dir")
        .arg(dir)
        .process_group(0)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let err_reader = std::thread::spawn(move || {
        let mut text = String::new();
        stderr.read_to_string(&mut text).unwrap();
        text
    });
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut seen = String::new();
    // The first report, 10 s in: pgbench has been running for a while.
    loop {
        let mut line = String::new();
        let n = stdout.read_line(&mut line).unwrap();
        assert!(n > 0, "the demo ended before its first report:\n{seen}");
        seen.push_str(&line);
        if line.contains("in the central database:") {
            break;
        }
    }
    let group = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGINT).unwrap();
    stdout.read_to_string(&mut seen).unwrap();
    let status = child.wait().unwrap();
    let stderr = err_reader.join().unwrap();
    assert!(status.success(), "{status}\n{seen}\n{stderr}");
    assert!(
        stderr.trim().is_empty(),
        "Ctrl-C printed on stderr:\n{stderr}"
    );
    let workdir = seen
        .lines()
        .find_map(|l| l.strip_prefix("removed the cluster and "))
        .unwrap_or_else(|| panic!("{seen}"));
    assert!(!Path::new(workdir.trim()).exists(), "{workdir} was removed");
}
