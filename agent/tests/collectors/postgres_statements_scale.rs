//! A statement store of 10 000 entries: the agent reads only the top N (the series
//! count per pass respects `statements_top_n`), and its memory stays bounded.

use crate::support::postgres::{Agent, instance};
use pga_lab::Cluster;

#[test]
fn ten_thousand_statements_keep_the_agent_small() {
    let cluster = Cluster::builder()
        .preload("pg_stat_statements")
        .setting("pg_stat_statements.max", "12000")
        .setting("pg_stat_statements.track", "all")
        .start()
        .expect("start a cluster");
    cluster
        .psql("postgres", "CREATE EXTENSION pg_stat_statements")
        .unwrap();
    // 100 tables; every ordered pair joined is a distinct statement: 10 000 of them.
    cluster
        .psql(
            "postgres",
            "DO $$ BEGIN FOR i IN 1..100 LOOP EXECUTE format('CREATE TABLE t%s (x int)', i); END LOOP; END $$;
             SELECT pg_stat_statements_reset();
             DO $$ BEGIN
               FOR i IN 1..100 LOOP FOR j IN 1..100 LOOP
                 EXECUTE format('SELECT count(*) FROM t%s a JOIN t%s b ON a.x = b.x', i, j);
               END LOOP; END LOOP;
             END $$;",
        )
        .unwrap();
    let entries: u32 = cluster
        .psql("postgres", "SELECT count(*) FROM pg_stat_statements")
        .unwrap()
        .parse()
        .unwrap();
    assert!(entries >= 10_000, "{entries}");

    let agent = Agent::watching(
        &instance(
            "lab",
            &cluster.conninfo("postgres"),
            "statement_timeout_ms = 3000\nlock_timeout_ms = 500\nstatements_top_n = 50",
        ),
        1,
        1,
        60,
    );
    agent.wait(40, "five statement passes", |a| {
        a.series("pg_stat_statements_dealloc_total", &[])
            .first()
            .is_some_and(|(_, s)| s.len() >= 5)
    });
    let per_pass = agent.max_series_per_pass("pg_stat_statements_calls_total", &[]);
    assert_eq!(per_pass, 50);
    assert_eq!(
        agent.max_series_per_pass("pg_stat_statements_query_info", &[]),
        50
    );
    // Texts are bounded and redacted.
    for (labels, _) in agent.series("pg_stat_statements_query_info", &[]) {
        let q = &labels.iter().find(|(k, _)| k == "query").unwrap().1;
        assert!(q.chars().count() <= 301, "{q}");
    }
    // Peak RSS: the agent holds 50 statements, never the 10 000 (a debug build).
    let peak = agent.peak_rss_bytes();
    eprintln!("agent peak RSS with 10 000 statements, top 50: {peak} bytes");
    assert!(peak < 64 * 1024 * 1024, "peak RSS {peak} bytes");
}
