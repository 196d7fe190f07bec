//! The PostgreSQL instance label became `pg_instance` (pga-agent store schema 2):
//! migration 0004 renames it in the series written before, keeping their ids, and
//! an agent not yet upgraded, still sending `instance`, continues the same series.

mod support;

use std::path::Path;

use pga_format::{MetricKind, SeriesId};
use support::sink::*;

#[tokio::test]
async fn series_written_with_the_old_instance_label_keep_their_identity() {
    let pg = central();
    // The central database as it was before migration 0004, with two series of an
    // older agent.
    let pool = sqlx::PgPool::connect(&pg.url()).await.unwrap();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations");
    let mut before = sqlx::migrate::Migrator::new(dir).await.unwrap();
    before.migrations = before
        .migrations
        .iter()
        .filter(|m| m.version < 4)
        .cloned()
        .collect::<Vec<_>>()
        .into();
    before.run(&pool).await.unwrap();
    pool.close().await;
    sql(&pg, "INSERT INTO agents (name) VALUES ('db1')");
    sql(
        &pg,
        r#"INSERT INTO series (agent_id, metric, labels, kind)
           SELECT id, 'pg_up', '{"instance": "main"}'::jsonb, 'gauge' FROM agents UNION ALL
           SELECT id, 'pg_stat_database_xact_commit_total',
                  '{"datname": "app", "instance": "main"}'::jsonb, 'counter' FROM agents"#,
    );
    let ids = sql(
        &pg,
        "SELECT string_agg(id::text, ',' ORDER BY metric) FROM series",
    );

    let sink = sink(&pg).await;
    assert_eq!(
        sql(
            &pg,
            "SELECT string_agg(id || ' ' || labels::text, ';' ORDER BY metric) FROM series"
        ),
        {
            let ids: Vec<&str> = ids.split(',').collect();
            format!(
                r#"{} {{"datname": "app", "pg_instance": "main"}};{} {{"pg_instance": "main"}}"#,
                ids[0], ids[1]
            )
        }
    );

    // An agent not upgraded yet sends `instance`: its samples land in the same series.
    let up = meta(0, "pg_up", &[("instance", "main")], MetricKind::Gauge);
    let start = base_ms(1);
    let collections: Vec<(i64, Vec<(SeriesId, f64)>)> = (0..4)
        .map(|i| (start + i * 10_000, vec![(SeriesId(0), 1.0)]))
        .collect();
    let b = block(AGENT, 1, &collections, &[]);
    sink.ingest(&batch("db1", vec![up], vec![b], None, None, 1))
        .await
        .unwrap();
    assert_eq!(
        sql(&pg, "SELECT count(*) FROM series WHERE metric = 'pg_up'"),
        "1"
    );
    assert_eq!(
        sql(
            &pg,
            "SELECT count(*) FROM metric_samples WHERE metric = 'pg_up' \
             AND labels->>'pg_instance' = 'main'"
        ),
        "4"
    );
}
