//! A central database that is read-only or down: the ingest fails as transient,
//! the cursor stays, nothing is half-written, and the same batch goes in once the
//! database is back. Also: the three roles (owner, writer, reader) work as documented.

mod common;

use common::*;
use pga_federator::sink::Sink;
use pga_format::{MetricKind, SeriesId};

fn rows(start: i64, from: usize, n: usize) -> Vec<(i64, Vec<(SeriesId, f64)>)> {
    (from..from + n)
        .map(|i| (start + i as i64 * 10_000, vec![(SeriesId(0), i as f64)]))
        .collect()
}

fn up() -> pga_format::SeriesMeta {
    meta(0, "pg_up", &[("instance", "db1")], MetricKind::Gauge)
}

#[tokio::test]
async fn read_only_or_stopped_database_pauses_without_advancing_the_cursor() {
    let mut pg = central();
    let sink = sink(&pg).await;
    let start = base_ms(1);
    let first = batch(
        "db1",
        vec![up()],
        vec![block(AGENT, 1, &rows(start, 0, 6), &[])],
        None,
        None,
        1,
    );
    sink.ingest(&first).await.unwrap();
    let cursor = sink.cursor("db1").await.unwrap();

    // Read-only: every session, the pooled ones included, after a reload.
    sql(
        &pg,
        "ALTER SYSTEM SET default_transaction_read_only = on; SELECT pg_reload_conf();",
    );
    std::thread::sleep(std::time::Duration::from_millis(300));
    let second = batch(
        "db1",
        vec![],
        vec![block(AGENT, 2, &rows(start, 6, 6), &[])],
        None,
        None,
        1,
    );
    let err = sink.ingest(&second).await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert!(!err.is_bad_batch(), "{err}");
    assert_eq!(err.sqlstate().as_deref(), Some("25006"), "{err}");
    assert_eq!(sink.cursor("db1").await.unwrap(), cursor);
    assert_eq!(sql(&pg, "SELECT count(*) FROM samples"), "6");
    sql(
        &pg,
        "SET default_transaction_read_only = off; \
         ALTER SYSTEM RESET default_transaction_read_only; SELECT pg_reload_conf();",
    );
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(sink.ingest(&second).await.unwrap().samples_inserted, 6);
    let cursor = sink.cursor("db1").await.unwrap();
    assert_eq!(cursor.unwrap().1.last_sequence, Some(2));

    // Stopped: the pool cannot connect within its acquire timeout.
    pg.stop().unwrap();
    let third = batch(
        "db1",
        vec![],
        vec![block(AGENT, 3, &rows(start, 12, 6), &[])],
        None,
        None,
        1,
    );
    let err = sink.ingest(&third).await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert!(sink.cursor("db1").await.unwrap_err().is_transient());
    pg.start_again().unwrap();
    let report = sink.ingest(&third).await.unwrap();
    assert_eq!(report.samples_inserted, 6);
    assert_eq!(
        sink.cursor("db1").await.unwrap().unwrap().1.last_sequence,
        Some(3)
    );
    let want: Vec<(i64, f64)> = rows(start, 0, 18)
        .iter()
        .map(|(t, s)| (*t, s[0].1))
        .collect();
    assert_eq!(stored(&pg, "pg_up"), want);
}

#[tokio::test]
async fn owner_migrates_writer_ingests_reader_only_reads() {
    let pg = central();
    // An owner that may not create roles; the superuser creates the two group roles
    // (README.md, "Central database") and the login roles.
    pg.psql(
        "postgres",
        "CREATE ROLE pga_writer NOLOGIN; CREATE ROLE pga_reader NOLOGIN; \
         CREATE ROLE pga_owner LOGIN; CREATE ROLE fed LOGIN IN ROLE pga_writer; \
         CREATE ROLE grafana LOGIN IN ROLE pga_reader; \
         CREATE DATABASE metrics OWNER pga_owner;",
    )
    .unwrap();
    let url = |user: &str| format!("postgres://{user}@127.0.0.1:{}/metrics", pg.port());

    let owner = Sink::connect(&url("pga_owner"), options()).await.unwrap();
    let report = owner.migrate().await.unwrap();
    assert_eq!(report.applied.len(), report.known);

    // The writer: migrate is a no-op, ingest creates the partitions of an older day
    // through the owner's functions.
    let writer = Sink::connect(&url("fed"), options()).await.unwrap();
    assert!(writer.migrate().await.unwrap().applied.is_empty());
    let start = base_ms(5 * 24);
    let b = block(AGENT, 1, &rows(start, 0, 6), &[]);
    assert_eq!(
        writer
            .ingest(&batch("db1", vec![up()], vec![b], None, None, 1))
            .await
            .unwrap()
            .samples_inserted,
        6
    );
    let psql_as = |user: &str, query: &str| {
        pg.psql("metrics", &format!("SET ROLE {user}; {query}"))
            .map_err(|e| e.to_string())
    };
    assert_eq!(
        psql_as(
            "grafana",
            "SELECT count(*) FROM metric_samples WHERE metric = 'pg_up'"
        )
        .unwrap(),
        "6"
    );
    let denied = psql_as("grafana", "DELETE FROM samples").unwrap_err();
    assert!(denied.contains("permission denied"), "{denied}");
    let denied = psql_as("fed", "DROP TABLE samples").unwrap_err();
    assert!(denied.contains("must be owner"), "{denied}");
}
