//! Every statistics family against a real primary under pgbench, with a streaming
//! standby on a slot: the series exist and their values match what happened.

use crate::support::postgres::{Agent, instance};
use pga_lab::{Cluster, PgbenchRun};

#[test]
fn every_family_reports_what_happened() {
    let primary = Cluster::builder()
        .preload("pg_stat_statements")
        .setting("track_io_timing", "on")
        .start()
        .expect("start the primary");
    primary
        .psql("postgres", "CREATE EXTENSION pg_stat_statements")
        .unwrap();
    primary.create_database("bench").unwrap();
    primary.pgbench_init("bench", 1).unwrap();
    let standby = primary
        .standby_with_slot("standby_1")
        .expect("start a standby");

    let extra = "statement_timeout_ms = 2000\nlock_timeout_ms = 500\nstatements_top_n = 20";
    let agent = Agent::watching(
        &format!(
            "{}{}",
            instance("primary", &primary.conninfo("postgres"), extra),
            instance("standby", &standby.conninfo("postgres"), extra)
        ),
        1,
        1,
        2,
    );
    let bench = [("pg_instance", "primary"), ("datname", "bench")];
    agent.wait(30, "a first pg_stat_database pass", |a| {
        a.last("pg_stat_database_xact_commit_total", &bench)
            .is_some()
    });
    let commits_before = agent
        .last("pg_stat_database_xact_commit_total", &bench)
        .unwrap();

    // Load, and a lock held while another session waits for it.
    let report = primary
        .pgbench(
            "bench",
            &PgbenchRun {
                clients: 2,
                ..PgbenchRun::for_secs(3)
            },
        )
        .unwrap();
    assert!(report.transactions > 0);
    std::thread::scope(|s| {
        s.spawn(|| {
            primary
                .psql(
                    "bench",
                    "BEGIN; LOCK TABLE pgbench_branches IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(5); COMMIT;",
                )
                .unwrap();
        });
        std::thread::sleep(std::time::Duration::from_millis(500));
        s.spawn(|| {
            primary
                .psql("bench", "SELECT count(*) FROM pgbench_branches")
                .unwrap();
        });
        agent.wait(15, "a blocked session", |a| {
            a.series("pg_blocked_sessions", &[("pg_instance", "primary")])
                .iter()
                .any(|(_, s)| s.iter().any(|(_, v)| *v >= 1.0))
        });
    });
    let p = [("pg_instance", "primary")];
    // The waiter and the holder form a chain of two; the lock shows in pg_locks.
    assert!(
        agent
            .series("pg_blocking_chain_max_length", &p)
            .iter()
            .any(|(_, s)| s.iter().any(|(_, v)| *v >= 2.0))
    );
    assert!(
        agent
            .series(
                "pg_locks_count",
                &[
                    ("pg_instance", "primary"),
                    ("mode", "AccessExclusiveLock"),
                    ("granted", "true")
                ]
            )
            .iter()
            .any(|(_, s)| s.iter().any(|(_, v)| *v >= 1.0))
    );

    // Commits grew by at least the transactions pgbench ran.
    let want = commits_before + report.transactions as f64;
    agent.wait(20, "commits to grow by the pgbench transactions", |a| {
        a.last("pg_stat_database_xact_commit_total", &bench)
            .is_some_and(|v| v >= want)
    });
    // The written tables show their tuples.
    let accounts = [
        ("pg_instance", "primary"),
        ("datname", "bench"),
        ("relname", "pgbench_accounts"),
    ];
    agent.wait(20, "pgbench_accounts statistics", |a| {
        a.last("pg_stat_user_tables_n_tup_upd_total", &accounts)
            .is_some_and(|v| v >= report.transactions as f64)
    });
    assert_eq!(
        agent.last("pg_stat_user_tables_n_live_tup", &accounts),
        Some(100_000.0)
    );
    let history = [
        ("pg_instance", "primary"),
        ("datname", "bench"),
        ("relname", "pgbench_history"),
    ];
    assert!(
        agent
            .last("pg_stat_user_tables_n_tup_ins_total", &history)
            .unwrap()
            >= report.transactions as f64
    );
    assert!(
        agent
            .last("pg_statio_user_tables_heap_blks_hit_total", &accounts)
            .unwrap()
            > 0.0
    );
    let idx = agent.series(
        "pg_stat_user_indexes_idx_scan_total",
        &[
            ("pg_instance", "primary"),
            ("datname", "bench"),
            ("indexrelname", "pgbench_accounts_pkey"),
        ],
    );
    assert!(
        idx[0].1.last().unwrap().1 >= report.transactions as f64,
        "{idx:?} {}",
        report.transactions
    );
    agent.wait(20, "relation sizes", |a| {
        a.last("pg_relation_total_size_bytes", &accounts)
            .is_some_and(|v| v > 8_000_000.0)
    });
    assert!(agent.last("pg_database_size_bytes", &bench).unwrap() > 8_000_000.0);

    // pg_stat_statements shows the pgbench statements, with their texts redacted.
    agent.wait(20, "the pgbench UPDATE among the top statements", |a| {
        a.series(
            "pg_stat_statements_query_info",
            &[("pg_instance", "primary"), ("datname", "bench")],
        )
        .iter()
        .any(|(l, _)| {
            l.iter()
                .any(|(k, v)| k == "query" && v.starts_with("UPDATE pgbench_accounts SET abalance"))
        })
    });
    let infos = agent.series("pg_stat_statements_query_info", &p);
    let per_pass = agent.max_series_per_pass("pg_stat_statements_query_info", &p);
    assert!((1..=20).contains(&per_pass), "{per_pass}");
    let update = infos
        .iter()
        .find(|(l, _)| {
            l.iter()
                .any(|(k, v)| k == "query" && v.starts_with("UPDATE pgbench_accounts"))
        })
        .unwrap();
    let queryid = update
        .0
        .iter()
        .find(|(k, _)| k == "queryid")
        .unwrap()
        .1
        .clone();
    assert!(
        agent
            .last(
                "pg_stat_statements_calls_total",
                &[("pg_instance", "primary"), ("queryid", queryid.as_str())]
            )
            .unwrap()
            >= report.transactions as f64
    );
    assert!(agent.max_series_per_pass("pg_stat_statements_calls_total", &p) <= 20);

    // The standby: replication seen from both ends, and the slot's retained WAL.
    agent.wait(20, "replication from both ends", |a| {
        a.last("pg_stat_replication_replay_lag_bytes", &p).is_some()
            && a.last("pg_standby_replay_lag_bytes", &[("pg_instance", "standby")])
                .is_some()
            && a.last(
                "pg_replication_slot_retained_wal_bytes",
                &[("slot_name", "standby_1")],
            )
            .is_some()
    });
    assert_eq!(
        agent.last("pg_in_recovery", &[("pg_instance", "standby")]),
        Some(1.0)
    );
    assert_eq!(
        agent.last(
            "pg_standby_wal_receiver_streaming",
            &[("pg_instance", "standby")]
        ),
        Some(1.0)
    );
    assert!(
        agent
            .last(
                "pg_replication_slot_retained_wal_bytes",
                &[("slot_name", "standby_1")]
            )
            .unwrap()
            >= 0.0
    );
    assert_eq!(
        agent.last("pg_replication_slot_active", &[("slot_name", "standby_1")]),
        Some(1.0)
    );
    assert!(
        agent
            .last("pg_stat_replication_replay_lag_seconds", &p)
            .unwrap()
            >= 0.0
    );
    // Retained WAL shows when the standby stops consuming: stop it and write. A
    // second of pgbench on a busy machine may write little, so a known amount of WAL
    // (about 8 MB) follows it.
    drop(standby);
    primary.pgbench("bench", &PgbenchRun::for_secs(1)).unwrap();
    primary
        .psql(
            "bench",
            "CREATE TABLE wal_filler AS SELECT g, repeat('x', 100) AS pad \
             FROM generate_series(1, 50000) g",
        )
        .unwrap();
    primary.psql("postgres", "SELECT pg_switch_wal()").unwrap();
    agent.wait(20, "the slot to retain WAL", |a| {
        a.last(
            "pg_replication_slot_retained_wal_bytes",
            &[("slot_name", "standby_1")],
        )
        .is_some_and(|v| v > 1_000_000.0)
            && a.last("pg_replication_slot_active", &[("slot_name", "standby_1")]) == Some(0.0)
    });

    // Instance-wide families.
    for name in [
        "pg_up",
        "pg_uptime_seconds",
        "pg_stat_activity_sessions",
        "pg_oldest_xact_age_seconds",
        "pg_stat_wal_bytes_total",
        "pg_wal_position_bytes_total",
        "pg_checkpoints_timed_total",
        "pg_checkpoint_buffers_written_total",
        "pg_stat_bgwriter_buffers_alloc_total",
        "pg_stat_archiver_archived_total",
        "pg_stat_database_conflicts_snapshot_total",
        "pg_database_frozen_xid_age",
        "pg_settings_shared_buffers_bytes",
        "pg_stat_statements_dealloc_total",
        "pg_stat_user_tables_frozen_xid_age",
        "pg_statio_user_indexes_idx_blks_hit_total",
    ] {
        assert!(agent.last(name, &p).is_some(), "no {name}");
    }
    assert_eq!(
        agent
            .last("pg_settings_max_connections", &p)
            .unwrap()
            .to_string(),
        primary.psql("postgres", "SHOW max_connections").unwrap()
    );
    assert_eq!(
        agent.last("pg_settings_shared_buffers_bytes", &p).unwrap(),
        primary
            .psql(
                "postgres",
                "SELECT pg_size_bytes(current_setting('shared_buffers'))"
            )
            .unwrap()
            .parse::<f64>()
            .unwrap()
    );
    // The WAL counter grew with the load.
    let wal = &agent.series("pg_stat_wal_bytes_total", &p)[0].1;
    assert!(wal.last().unwrap().1 > wal.first().unwrap().1);
    // Version awareness, live: pg_stat_io exists from 16 only.
    let version: u32 = primary
        .psql("postgres", "SHOW server_version_num")
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        !agent.series("pg_stat_io_reads_total", &p).is_empty(),
        version >= 160000
    );
    if version < 160000 {
        assert!(
            agent
                .log_text()
                .contains("pg_stat_io exists from PostgreSQL 16")
        );
    }
    // Nothing failed along the way (but the standby, stopped on purpose).
    for (labels, samples) in agent.series("pga_agent_collector_errors_total", &[]) {
        if labels
            .iter()
            .any(|(_, v)| v.starts_with("postgres:standby"))
        {
            continue;
        }
        assert_eq!(
            samples.last().unwrap().1,
            0.0,
            "{labels:?}\n{}",
            agent.log_text()
        );
    }
}
