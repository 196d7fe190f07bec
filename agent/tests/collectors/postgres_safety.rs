//! The collector is never the incident: a DDL lock held past the statement timeout
//! costs no pass its deadline and stops no other family; a restart and a statistics
//! reset leave no negative rate; a dropped database, a missing extension and a wrong
//! password are each said once, with the fix, while everything else goes on.

use std::time::Duration;

use crate::support::postgres::{Agent, instance, now_ms};
use pga_lab::{Cluster, PgbenchRun};

/// Timestamps of the samples of `name` with `labels` within `[from, to]`.
fn stamps_within(
    agent: &Agent,
    name: &str,
    labels: &[(&str, &str)],
    from: i64,
    to: i64,
) -> Vec<i64> {
    let mut ts: Vec<i64> = agent
        .series(name, labels)
        .into_iter()
        .flat_map(|(_, s)| s.into_iter().map(|(t, _)| t))
        .filter(|t| (from..=to).contains(t))
        .collect();
    ts.sort_unstable();
    ts.dedup();
    ts
}

#[test]
fn a_ddl_lock_past_the_statement_timeout_costs_no_pass_its_deadline() {
    let cluster = Cluster::builder().start().expect("start a cluster");
    cluster
        .psql(
            "postgres",
            "CREATE TABLE locked AS SELECT g AS id FROM generate_series(1, 1000) g;
             CREATE INDEX ON locked (id);
             CREATE TABLE free AS SELECT g AS id FROM generate_series(1, 1000) g;
             ANALYZE locked; ANALYZE free;",
        )
        .unwrap();
    let agent = Agent::watching(
        &instance(
            "lab",
            &cluster.conninfo("postgres"),
            "statement_timeout_ms = 1000\nlock_timeout_ms = 300",
        ),
        1,
        1,
        1,
    );
    let locked = [("relname", "locked")];
    let free = [("relname", "free")];
    agent.wait(30, "sizes of both tables", |a| {
        a.last("pg_relation_size_bytes", &locked).is_some()
            && a.last("pg_relation_size_bytes", &free).is_some()
    });

    // Hold ACCESS EXCLUSIVE for 5 s, five times the statement timeout.
    let (from, to) = std::thread::scope(|s| {
        let holder = s.spawn(|| {
            cluster
                .psql(
                    "postgres",
                    "BEGIN; LOCK TABLE locked IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(5); COMMIT;",
                )
                .unwrap();
        });
        std::thread::sleep(Duration::from_millis(300));
        let from = now_ms() + 200;
        holder.join().unwrap();
        (from, now_ms() - 200)
    });
    std::thread::sleep(Duration::from_secs(3));

    // Every pass of every group finished within statement timeout + 1 s, by the
    // agent's own account of its pass durations.
    let durations = agent.series("pga_agent_collector_last_duration_seconds", &[]);
    let pg: Vec<_> = durations
        .iter()
        .filter(|(l, _)| l.iter().any(|(_, v)| v.starts_with("postgres:lab")))
        .collect();
    assert_eq!(pg.len(), 3, "fast, slow and sizes: {pg:?}");
    for (labels, samples) in pg {
        let within: Vec<f64> = samples
            .iter()
            .filter(|(t, _)| (from..=to + 2000).contains(t))
            .map(|(_, v)| *v)
            .collect();
        assert!(within.len() >= 3, "{labels:?}: {within:?}");
        assert!(within.iter().all(|d| *d <= 2.0), "{labels:?}: {within:?}");
    }
    // The other families kept arriving while the lock was held, the locked table's
    // statistics included (they take no lock); only its size paused.
    for (name, labels) in [
        ("pg_stat_activity_sessions", &[][..]),
        ("pg_locks_count", &[("mode", "AccessExclusiveLock")][..]),
        ("pg_stat_user_tables_n_live_tup", &locked[..]),
        ("pg_stat_user_tables_n_live_tup", &free[..]),
        ("pg_relation_size_bytes", &free[..]),
        ("pg_database_size_bytes", &[("datname", "postgres")][..]),
    ] {
        let n = stamps_within(&agent, name, labels, from, to).len();
        assert!(n >= 3, "{name} {labels:?}: {n} passes during the lock");
    }
    assert!(
        stamps_within(&agent, "pg_relation_size_bytes", &locked, from + 1000, to).is_empty(),
        "the locked table's size was read under the lock"
    );
    agent.wait(10, "the locked table's size after the lock", |a| {
        !stamps_within(a, "pg_relation_size_bytes", &locked, to + 500, i64::MAX).is_empty()
    });
}

#[test]
fn restart_and_statistics_reset_give_no_negative_rate() {
    let mut cluster = Cluster::builder().start().expect("start a cluster");
    cluster.create_database("bench").unwrap();
    cluster.pgbench_init("bench", 1).unwrap();
    let agent = Agent::watching(
        &instance(
            "lab",
            &cluster.conninfo("postgres"),
            "statement_timeout_ms = 1000\nlock_timeout_ms = 300",
        ),
        1,
        1,
        5,
    );
    let up = [("pg_instance", "lab")];
    let bench = [("datname", "bench")];
    agent.wait(30, "pg_up 1", |a| a.last("pg_up", &up) == Some(1.0));
    cluster.pgbench("bench", &PgbenchRun::for_secs(2)).unwrap();
    agent.wait(10, "commits counted", |a| {
        a.last("pg_stat_database_xact_commit_total", &bench)
            .is_some_and(|v| v > 100.0)
    });

    cluster.stop().unwrap();
    agent.wait(15, "pg_up 0", |a| a.last("pg_up", &up) == Some(0.0));
    cluster.start_again().unwrap();
    agent.wait(15, "pg_up 1 again", |a| a.last("pg_up", &up) == Some(1.0));
    cluster.pgbench("bench", &PgbenchRun::for_secs(1)).unwrap();
    let before_reset = agent
        .last("pg_stat_database_xact_commit_total", &bench)
        .unwrap();
    cluster.psql("bench", "SELECT pg_stat_reset()").unwrap();
    agent.wait(10, "the reset seen", |a| {
        a.last("pg_stat_database_xact_commit_total", &bench)
            .is_some_and(|v| v < before_reset)
    });
    cluster.pgbench("bench", &PgbenchRun::for_secs(1)).unwrap();
    std::thread::sleep(Duration::from_secs(2));

    let ups: Vec<f64> = agent.series("pg_up", &up)[0]
        .1
        .iter()
        .map(|(_, v)| *v)
        .collect();
    let first_down = ups.iter().position(|v| *v == 0.0).expect("pg_up 0 stored");
    assert!(ups[first_down..].contains(&1.0), "{ups:?}");
    for metric in [
        "pg_stat_database_xact_commit_total",
        "pg_stat_user_tables_n_tup_upd_total",
        "pg_stat_statements_calls_total",
    ] {
        let json = agent.query_json(&[
            &format!("{metric}{{datname=\"bench\"}}"),
            "--since",
            "10m",
            "--step",
            "1s",
            "--fn",
            "rate",
        ]);
        let mut points = 0;
        let mut positive = 0;
        for series in json.as_array().unwrap() {
            for p in series["points"].as_array().unwrap() {
                if let Some(v) = p[1].as_f64() {
                    assert!(v >= 0.0, "{metric}: negative rate {v} in {series}");
                    points += 1;
                    positive += usize::from(v > 0.0);
                }
            }
        }
        if metric != "pg_stat_statements_calls_total" {
            assert!(points > 5 && positive > 0, "{metric}: {json}");
        }
    }
}

#[test]
fn bad_input_is_said_once_with_the_fix_and_the_rest_goes_on() {
    let cluster = Cluster::builder()
        .superuser_password("right")
        .start()
        .expect("start a cluster");
    cluster.create_database("scratch").unwrap();
    cluster
        .psql("scratch", "CREATE TABLE doomed AS SELECT 1 AS x")
        .unwrap();
    cluster
        .psql("postgres", "CREATE TABLE kept AS SELECT 1 AS x")
        .unwrap();
    // A role without pg_monitor, and a database it may not connect to.
    cluster.create_database("private").unwrap();
    cluster
        .psql(
            "postgres",
            "CREATE ROLE plain LOGIN; REVOKE CONNECT ON DATABASE private FROM PUBLIC;",
        )
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let wrong = dir.path().join("wrong.pw");
    std::fs::write(&wrong, "wrong\n").unwrap();
    std::fs::set_permissions(&wrong, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    // No pg_stat_statements here; and a second instance with a wrong password.
    let agent = Agent::watching(
        &format!(
            "{}{}{}",
            instance(
                "lab",
                &cluster.conninfo("postgres"),
                "statement_timeout_ms = 1000\nlock_timeout_ms = 300"
            ),
            instance(
                "plain",
                &format!("{} user=plain", cluster.conninfo("postgres")),
                "families_exclude = [\"statements\"]\ndatabases_exclude = [\"template*\", \"scratch\"]"
            ),
            instance(
                "wrongpw",
                &format!(
                    "host=127.0.0.1 port={} user=postgres dbname=postgres",
                    cluster.port()
                ),
                &format!("password_file = {:?}", wrong.display().to_string())
            ),
        ),
        1,
        1,
        1,
    );
    let doomed = [
        ("pg_instance", "lab"),
        ("datname", "scratch"),
        ("relname", "doomed"),
    ];
    let kept = [
        ("pg_instance", "lab"),
        ("datname", "postgres"),
        ("relname", "kept"),
    ];
    agent.wait(30, "both databases' tables", |a| {
        a.last("pg_stat_user_tables_n_live_tup", &doomed).is_some()
            && a.last("pg_stat_user_tables_n_live_tup", &kept).is_some()
    });
    cluster
        .psql("postgres", "DROP DATABASE scratch WITH (FORCE)")
        .unwrap();
    let dropped_at = now_ms();
    std::thread::sleep(Duration::from_secs(4));
    // The other database is still collected, the dropped one no longer.
    let after = |name: &str, labels: &[(&str, &str)]| {
        agent
            .series(name, labels)
            .iter()
            .flat_map(|(_, s)| s.iter().map(|(t, _)| *t))
            .filter(|t| *t > dropped_at + 1500)
            .count()
    };
    assert!(after("pg_stat_user_tables_n_live_tup", &kept) >= 2);
    assert_eq!(after("pg_stat_user_tables_n_live_tup", &doomed), 0);
    assert_eq!(agent.last("pg_up", &[("pg_instance", "lab")]), Some(1.0));
    assert_eq!(
        agent.last("pg_up", &[("pg_instance", "wrongpw")]),
        Some(0.0)
    );

    let log = agent.log_text();
    let said = |needle: &str| log.lines().filter(|l| l.contains(needle)).count();
    // The missing extension: once, with the fix.
    assert_eq!(said("family statements failed"), 1, "{log}");
    assert!(log.contains("CREATE EXTENSION pg_stat_statements"), "{log}");
    // The wrong password: once, naming the problem and the fix.
    assert_eq!(said("password authentication failed"), 1, "{log}");
    assert!(log.contains("check the role and its password"), "{log}");
    // The database the role may not enter: once, with the fix; the role's other
    // databases are collected.
    assert_eq!(said("permission denied for database"), 1, "{log}");
    assert!(log.contains("GRANT CONNECT ON DATABASE"), "{log}");
    assert!(
        agent
            .last(
                "pg_stat_user_tables_n_live_tup",
                &[("pg_instance", "plain"), ("relname", "kept")]
            )
            .is_some()
    );
    // Nothing ERROR-level: no data was lost.
    assert_eq!(said(" ERROR "), 0, "{log}");
}
