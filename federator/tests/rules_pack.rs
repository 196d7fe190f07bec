//! The built-in rule pack (`federator/rules/`): every file loads, every test passes,
//! every rule is expected to fire by a test, names its source pack and has a runbook,
//! and the pack covers what a DBA expects to be told.

use std::collections::BTreeSet;

mod support;

use pga_federator::alerting::engine::Settings;
use pga_federator::alerting::testing::run_file;
use support::alerting::{load_or_panic, pack};
use support::{Cli, federator_cli};

#[test]
fn every_built_in_rule_is_tested_sourced_and_passes() {
    let files = load_or_panic(&[pack()]);
    assert!(files.len() >= 7, "{} files", files.len());
    let mut names = BTreeSet::new();
    for f in &files {
        let out = run_file(f, &Settings::default());
        for t in &out.tests {
            assert!(
                t.failures.is_empty(),
                "{}: {}: {:?}",
                f.path.display(),
                t.name,
                t.failures
            );
        }
        assert!(
            out.untested.is_empty(),
            "{}: no test expects these to fire: {:?}",
            f.path.display(),
            out.untested
        );
        for r in &f.rules {
            let s = &r.spec;
            assert!(!s.pack.is_empty(), "{}: no pack", s.name);
            assert!(
                !s.runbook.is_empty() && !s.runbook.contains('\n'),
                "{}: the runbook is one line",
                s.name
            );
            assert!(
                s.annotations.contains_key("summary"),
                "{}: no summary",
                s.name
            );
            // The PostgreSQL instance label is pg_instance (never Prometheus' instance).
            for t in r.expr.terms() {
                assert!(
                    t.selector.matchers.iter().all(|m| m.name != "instance"),
                    "{}: selects on `instance`",
                    s.name
                );
            }
            assert!(!s.query.contains("$labels.instance"), "{}", s.name);
            for a in s.annotations.values() {
                assert!(!a.contains("$labels.instance "), "{}: {a}", s.name);
            }
            names.insert(s.name.clone());
        }
    }
    for expected in [
        "PgaAgentUnreachable",
        "PgServerDown",
        "PgServerRestarted",
        "PgConnectionsHigh",
        "PgConnectionsCritical",
        "PgIdleInTransaction",
        "PgLongTransaction",
        "PgBlockedSessions",
        "PgDeadlocks",
        "PgRollbackRatioHigh",
        "PgCacheHitRatioLow",
        "PgReplicationLagBytes",
        "PgReplicationLagSeconds",
        "PgReplicationSlotInactive",
        "PgReplicationSlotRetainingWal",
        "PgWalArchivingFailing",
        "PgXidWraparoundWarning",
        "PgXidWraparoundCritical",
        "PgMultixactWraparoundWarning",
        "PgMultixactWraparoundCritical",
        "PgTableNotAutovacuumed",
        "PgDeadTuplesHigh",
        "PgCheckpointsRequested",
        "PgTempFilesLarge",
        "PgStatementTimeouts",
        "PgDataDiskSpaceLow",
        "PgDataDiskSpaceCritical",
        "PgWalDiskSpaceLow",
        "PgWalDiskSpaceCritical",
        "HostMemoryPressure",
        "HostCpuPressure",
        "PgLogPanic",
        "PgLogFatal",
        "PgaDataGapRecorded",
    ] {
        assert!(names.contains(expected), "the pack lacks {expected}");
    }
}

#[test]
fn the_rules_test_command_runs_the_whole_pack() {
    let Cli { ok, stdout, stderr } = federator_cli(&[&"rules", &"test", &pack()]);
    assert!(ok, "{stdout}{}", stderr);
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
    assert!(!stdout.contains("FAIL"), "{stdout}");
    // A broken expectation makes the command fail and say where.
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(pack().join("availability.toml"))
        .unwrap()
        .replace(
            "at_secs = 90\nrule = \"PgServerDown\"\nalerts = [",
            "at_secs = 75\nrule = \"PgServerDown\"\nalerts = [",
        );
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, text).unwrap();
    let Cli { ok, stdout, .. } = federator_cli(&[&"rules", &"test", &bad]);
    assert!(!ok, "{stdout}");
    assert!(
        stdout.contains("FAIL  pg_up 0 for a minute is server down"),
        "{stdout}"
    );
    assert!(
        stdout.contains("at 75 s, PgServerDown: expected firing"),
        "{stdout}"
    );
}

#[test]
fn a_bad_rule_is_refused_with_its_position_and_fix() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("mine.toml");
    std::fs::write(
        &f,
        "[[rules]]\nname = \"Mine\"\nquery = \"avg_over_time(pg_up[5m])\"\ncomparison = \">\"\n\
         threshold = \"80%\"\nseverity = \"warning\"\n",
    )
    .unwrap();
    let Cli { ok, stdout, .. } = federator_cli(&[&"rules", &"check", &f]);
    assert!(!ok, "{stdout}");
    assert!(
        stdout.contains("mine.toml:5:13: rules[0].threshold"),
        "{stdout}"
    );
    assert!(stdout.contains("fix: write a plain number"), "{stdout}");
    std::fs::write(
        &f,
        "[[rules]]\nname = \"Mine\"\nquery = \"avg_over_time(pg_up[5m])\"\ncomparison = \">\"\n\
         threshold = 0.8\nseverity = \"warning\"\n",
    )
    .unwrap();
    let Cli { ok, stdout, .. } = federator_cli(&[&"rules", &"check", &f]);
    assert!(!ok, "{stdout}");
    assert!(
        stdout.contains("mine.toml:3:10: rules[0].query: unknown function `avg_over_time`"),
        "{stdout}"
    );
    assert!(stdout.contains("fix: write avg(metric[5m])"), "{stdout}");
}
