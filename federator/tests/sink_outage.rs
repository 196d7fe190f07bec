//! A central database that is read-only or down: the ingest fails as transient,
//! the cursor stays, nothing is half-written, and the same batch goes in once the
//! database is back. Also: the three roles (owner, writer, reader) work as documented.

mod support;

use pga_federator::db::sink::{MigrateReport, Sink, TimescaleState};
use pga_format::{MetricKind, SeriesId};
use support::sink::*;

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
    let mut pg = central_alone();
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
    assert_eq!(sql(&pg, "SELECT count(*) FROM pga_samples"), "6");
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

/// The control file a TimescaleDB package installs in the server's extension
/// directory (the extension is then *available*; creating it needs the library in
/// shared_preload_libraries).
const TIMESCALEDB_CONTROL: &str = "\
# timescaledb extension
comment = 'Enables scalable inserts and complex queries for time-series data'
default_version = '2.28.0'
module_pathname = '$libdir/timescaledb-2.28.0'
relocatable = false
trusted = true
";

/// The three roles of docs/central-database.md, "Roles", on `pg`: an owner that may not create
/// roles migrates, the writer starts (what `run` does) and ingests, the reader
/// only reads. Returns what `migrate` and the writer's start reported.
async fn roles_work(pg: &pga_lab::Cluster) -> (MigrateReport, MigrateReport) {
    // The superuser creates the two group roles and the login roles.
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
    let migrated = owner.migrate().await.unwrap();
    assert_eq!(migrated.applied.len(), migrated.known);

    // The writer: the start applies nothing and changes nothing; ingest creates the
    // partitions of an older day through the owner's functions.
    let writer = Sink::connect(&url("fed"), options()).await.unwrap();
    let started = writer.start().await.unwrap();
    assert!(started.applied.is_empty());
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
    (migrated, started)
}

#[tokio::test]
async fn owner_migrates_writer_ingests_reader_only_reads() {
    // Plain PostgreSQL, TimescaleDB not installed.
    let pg = central_alone();
    let (migrated, started) = roles_work(pg.cluster()).await;
    assert_eq!(migrated.timescaledb, TimescaleState::Unavailable);
    assert_eq!(started.timescaledb, TimescaleState::Unavailable);
    assert!(migrated.notes.is_empty() && started.notes.is_empty());
    drop(pg);

    // TimescaleDB available on the server (its control file installed, as the
    // package does) but not created in the database: the same roles work, and
    // both say once how to use it. The server runs from a private copy of the
    // installation, so the system's extension directory is never touched.
    let copy = tempfile::tempdir().unwrap();
    let install = pga_lab::PgInstall::find()
        .unwrap()
        .relocated_copy(copy.path())
        .unwrap();
    let ext = install.share_dir().unwrap().join("extension");
    assert!(ext.starts_with(copy.path()), "{}", ext.display());
    std::fs::write(ext.join("timescaledb.control"), TIMESCALEDB_CONTROL).unwrap();
    let pg = pga_lab::Cluster::builder()
        .install(install)
        .start()
        .unwrap();
    assert_eq!(
        pg.psql(
            "postgres",
            "SELECT default_version FROM pg_available_extensions WHERE name = 'timescaledb'"
        )
        .unwrap(),
        "2.28.0"
    );
    let (migrated, started) = roles_work(&pg).await;
    assert_eq!(migrated.timescaledb, TimescaleState::NotCreated);
    assert_eq!(started.timescaledb, TimescaleState::NotCreated);
    for report in [&migrated, &started] {
        assert_eq!(report.notes.len(), 1, "{report:?}");
        assert!(
            report.notes[0].contains("CREATE EXTENSION timescaledb"),
            "{report:?}"
        );
    }
    assert_eq!(
        pg.psql(
            "metrics",
            "SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'"
        )
        .unwrap(),
        "0"
    );
}
