//! The federator's benchmarks run end to end at a small size: each starts its
//! throwaway PostgreSQL, checks its own stored counts (a shortfall fails the
//! command) and prints its figures. Speed is not asserted here; the figures are
//! in docs/benchmarks.md.

use std::process::Command;

fn pga_bench(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_pga-bench"))
        .args(args)
        .output()
        .expect("run pga-bench");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "pga-bench {args:?} failed\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn ingest_compares_the_sink_with_a_bare_copy() {
    let out = pga_bench(&[
        "ingest",
        "--series",
        "40",
        "--blocks",
        "4",
        "--blocks-per-batch",
        "2",
    ]);
    assert!(
        out.contains("ingest (synthetic): 40 series × 4 blocks = 9,600 samples"),
        "{out}"
    );
    assert!(out.contains("ratio packed / bare COPY"), "{out}");
    assert!(out.contains("bytes per raw sample: rows "), "{out}");
}

#[test]
fn backfill_catches_up_and_measures_its_floor() {
    let out = pga_bench(&[
        "backfill",
        "--series",
        "40",
        "--hours",
        "1",
        "--victoria-metrics",
    ]);
    // 6 blocks of 60 collections of 40 series, plus the head's one collection.
    assert!(
        out.contains("backfill of 1 h × 40 series (sealed blocks packed): 14440 samples"),
        "{out}"
    );
    // The sealed ones by remote-write too, each inserted by VictoriaMetrics.
    assert!(
        out.contains("remote-write to VictoriaMetrics at the same time: 14400 samples")
            && out.contains("VictoriaMetrics inserted 14400"),
        "{out}"
    );
    assert!(
        out.contains("a bare binary COPY of the same sealed samples"),
        "{out}"
    );
}

#[test]
fn fleet_warms_up_then_measures_the_steady_state() {
    let out = pga_bench(&[
        "fleet",
        "--agents",
        "3",
        "--series",
        "40",
        "--secs",
        "16",
        "--warmup-secs",
        "90",
    ]);
    assert!(out.contains("warm-up: every agent pulled once"), "{out}");
    assert!(out.contains(", 0 failed;"), "{out}");
    // Every agent is due at least once in 16 s of a 15-second schedule.
    let started: u64 = out
        .split("steady state over 16 s: ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no pull count in {out}"));
    assert!(started >= 3, "{out}");
}

#[test]
fn lockwait_shows_no_agent_waiting_on_anothers_late_batch() {
    let out = pga_bench(&[
        "lockwait",
        "--series",
        "40",
        "--late-blocks",
        "2",
        "--live-series",
        "10",
        "--json",
    ]);
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["late_samples"], 40 * 120, "{out}");
    let phases = r["phases"].as_array().unwrap();
    assert_eq!(phases.len(), 3, "{out}");
    let late = &phases[1];
    assert!(late["live_commits"].as_u64().unwrap() > 0, "{out}");
    // No federator session ever waited on a lock while the late batch ran.
    assert_eq!(late["max_lock_wait_ms"].as_f64(), Some(0.0), "{out}");
}
