//! `pga-demo --for 30s` brings up PostgreSQL, two agents and the federator, and data
//! from both agents reaches the central database; everything is cleaned up.
//!
//! It runs the workspace's `pga-agent` and `pga-federator` binaries from the
//! directory of `pga-demo` (`cargo test --workspace`, as `bash bench/run-tests`
//! runs it, builds them there).

use std::path::Path;
use std::process::Command;

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
    assert!(stdout.contains("psql \"postgres://"), "{stdout}");
    assert!(stdout.contains("query 'pg_up'"), "{stdout}");
    let workdir = stdout
        .lines()
        .find_map(|l| l.strip_prefix("removed the cluster and "))
        .unwrap();
    assert!(!Path::new(workdir.trim()).exists(), "{workdir} was removed");
}
