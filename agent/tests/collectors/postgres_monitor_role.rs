//! As a least-privilege role (`pg_monitor` and nothing else), the agent collects
//! every family, other roles' statements and sessions included, and reports no error.

use crate::support::postgres::{Agent, instance, statements_cluster};
use pga_lab::PgbenchRun;

#[test]
fn a_pg_monitor_member_collects_everything_quietly() {
    let cluster = statements_cluster(
        "CREATE ROLE pga_monitor LOGIN;
         GRANT pg_monitor TO pga_monitor;",
    );
    cluster.create_database("bench").unwrap();
    cluster.pgbench_init("bench", 1).unwrap();
    let conninfo = format!("{} user=pga_monitor", cluster.conninfo("postgres"));
    let agent = Agent::watching(
        &instance(
            "lab",
            &conninfo,
            "statement_timeout_ms = 2000\nlock_timeout_ms = 500",
        ),
        1,
        1,
        1,
    );
    agent.wait(30, "pg_up 1", |a| a.last("pg_up", &[]) == Some(1.0));
    cluster
        .pgbench(
            "bench",
            &PgbenchRun {
                clients: 2,
                ..PgbenchRun::for_secs(2)
            },
        )
        .unwrap();
    // Another role's statements, with their texts, and its tables' statistics.
    agent.wait(20, "the superuser's pgbench statements", |a| {
        a.series(
            "pg_stat_statements_query_info",
            &[("datname", "bench"), ("user", "postgres")],
        )
        .iter()
        .any(|(l, _)| {
            l.iter()
                .any(|(k, v)| k == "query" && v.contains("pgbench_accounts"))
        })
    });
    agent.wait(20, "pgbench_accounts sizes", |a| {
        a.last(
            "pg_relation_total_size_bytes",
            &[("datname", "bench"), ("relname", "pgbench_accounts")],
        )
        .is_some()
    });
    for name in [
        "pg_stat_activity_sessions",
        "pg_oldest_xact_age_seconds",
        "pg_locks_count",
        "pg_blocked_sessions",
        "pg_wal_position_bytes_total",
        "pg_stat_database_xact_commit_total",
        "pg_stat_database_conflicts_lock_total",
        "pg_database_frozen_xid_age",
        "pg_checkpoints_timed_total",
        "pg_stat_bgwriter_buffers_clean_total",
        "pg_stat_archiver_archived_total",
        "pg_stat_statements_calls_total",
        "pg_settings_max_connections",
        "pg_stat_user_tables_n_live_tup",
        "pg_stat_user_indexes_idx_scan_total",
        "pg_statio_user_tables_heap_blks_hit_total",
        "pg_statio_user_indexes_idx_blks_hit_total",
        "pg_database_size_bytes",
        "pg_relation_size_bytes",
    ] {
        assert!(
            agent.last(name, &[]).is_some(),
            "no {name}\n{}",
            agent.log_text()
        );
    }
    // Sessions of other roles are seen with their state (pg_read_all_stats).
    assert!(
        agent
            .series(
                "pg_stat_activity_sessions",
                &[("backend_type", "client backend")]
            )
            .is_empty()
            || agent
                .series("pg_stat_activity_sessions", &[("state", "")])
                .len()
                < agent.series("pg_stat_activity_sessions", &[]).len()
    );
    // Nothing failed, nothing warned.
    for (labels, samples) in agent.series("pga_agent_collector_errors_total", &[]) {
        assert_eq!(
            samples.last().unwrap().1,
            0.0,
            "{labels:?}\n{}",
            agent.log_text()
        );
    }
    let log = agent.log_text();
    assert!(
        !log.lines()
            .any(|l| l.contains(" WARN ") && !l.contains("statement_timeout_ms")),
        "{log}"
    );
    // The server sees one session of the agent per database, no more.
    let sessions = cluster
        .psql(
            "postgres",
            "SELECT string_agg(datname || ':' || n, ',' ORDER BY datname) FROM (SELECT datname, count(*) AS n FROM pg_stat_activity WHERE application_name = 'pga-agent' GROUP BY 1) s",
        )
        .unwrap();
    assert_eq!(sessions, "bench:1,postgres:1");
}
