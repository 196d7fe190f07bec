//! The sink against a real throwaway PostgreSQL: migrations, exact ingest of real
//! decoded blocks, the head's overlap, gaps, failed transactions, roles.

mod support;

use pga_federator::db::sink::Sink;
use pga_federator::pull::batch::Gap;
use pga_format::{LogEvent, LogEventKind, MetricKind, SeriesId, Severity};
use support::sink::*;

const MIN: i64 = 60_000;

/// `n` collections every 15 s from `start`: series 0 counts up, series 1 wanders.
fn collections(start: i64, from: usize, n: usize) -> Vec<(i64, Vec<(SeriesId, f64)>)> {
    (from..from + n)
        .map(|i| {
            (
                start + i as i64 * 15_000,
                vec![
                    (SeriesId(0), 1000.0 + 7.0 * i as f64),
                    (SeriesId(1), (i % 5) as f64 + 0.25),
                ],
            )
        })
        .collect()
}

/// Ingests agent db1's first block (sequence 1): `n` collections from `start`, with
/// the definitions of both series.
async fn first_blocks(sink: &Sink, start: i64, n: usize) {
    let b1 = block(AGENT, 1, &collections(start, 0, n), &[]);
    let first = batch("db1", app_series(Some("db1:5432")), vec![b1], None, None, 2);
    sink.ingest(&first).await.unwrap();
}

#[tokio::test]
async fn migrations_apply_on_an_empty_database_and_again_as_a_no_op() {
    let pg = central();
    let sink = Sink::connect(&pg.url(), options()).await.unwrap();
    let first = sink.migrate().await.unwrap();
    assert_eq!(first.applied.len(), first.known, "{first:?}");
    assert!(first.known >= 3);
    assert!(
        !first.timescaledb.hypertables(),
        "no TimescaleDB in the lab"
    );
    assert!(first.partitions_created >= 4, "{first:?}");
    let tables = sql(
        &pg,
        "SELECT string_agg(relname, ',' ORDER BY relname) FROM pg_class \
         WHERE relname IN ('users','api_tokens','agents','servers','postgresql_instances', \
         'databases','alert_rules','alerts','audit_log','series','samples','samples_1m', \
         'samples_1h','log_events','agent_cursors','gaps','metric_samples','metric_rollups_1m')",
    );
    assert_eq!(tables.split(',').count(), 18, "{tables}");

    let again = sink.migrate().await.unwrap();
    assert!(again.applied.is_empty(), "{again:?}");
    assert_eq!(again.partitions_created, 0);
    assert_eq!(
        sql(&pg, "SELECT count(*) FROM _sqlx_migrations"),
        first.known.to_string()
    );

    // updated_at triggers.
    sql(&pg, "INSERT INTO users (username) VALUES ('ann')");
    sql(
        &pg,
        "UPDATE users SET updated_at = 'epoch', created_at = 'epoch' WHERE username = 'ann'",
    );
    sql(
        &pg,
        "UPDATE users SET full_name = 'Ann' WHERE username = 'ann'",
    );
    assert_eq!(
        sql(
            &pg,
            "SELECT updated_at > created_at FROM users WHERE username = 'ann'"
        ),
        "t"
    );
}

/// migrations/0092_rollup_cover.sql on a database whose 1-hour rollups hold rows:
/// a partition with rows keeps its heap reads (building its index in the migration
/// would hold writes to `samples_1h` for as long as the build takes), an empty one gets
/// the covering index at once, and so does every partition created later.
#[tokio::test]
async fn the_hours_covering_index_is_built_online() {
    let pg = central();
    let _sink = sink(&pg).await;
    let covered = |part: &str| {
        sql(
            &pg,
            &format!(
                "SELECT count(*) FROM pg_indexes \
                 WHERE tablename = '{part}' AND indexdef LIKE '%INCLUDE (count, sum%'"
            ),
        )
    };
    // A new database: every partition has it.
    let current = sql(
        &pg,
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
         WHERE i.inhparent = 'samples_1h'::regclass ORDER BY 1 LIMIT 1",
    );
    assert_eq!(covered(&current), "1", "{current}");
    // As before 0092: no covering index, a partition with a row and an empty one.
    sql(&pg, "DROP INDEX samples_1h_cover");
    assert_eq!(covered(&current), "0");
    assert_eq!(
        sql(
            &pg,
            "INSERT INTO samples_1h (series_id, bucket, count, sum, min, max, last) \
             VALUES (1, date_trunc('hour', now()), 1, 1, 1, 1, 1) RETURNING tableoid::regclass",
        )
        .lines()
        .next(),
        Some(current.as_str()),
        "the current month is the first partition"
    );
    sql(
        &pg,
        "CREATE TABLE samples_1h_p209901 PARTITION OF samples_1h \
         FOR VALUES FROM ('2099-01-01') TO ('2099-02-01')",
    );
    sql(&pg, include_str!("../../migrations/0092_rollup_cover.sql"));
    assert_eq!(
        covered(&current),
        "0",
        "a partition with rows is left alone"
    );
    assert_eq!(covered("samples_1h_p209901"), "1", "an empty partition");
    sql(
        &pg,
        "CREATE TABLE samples_1h_p209902 PARTITION OF samples_1h \
         FOR VALUES FROM ('2099-02-01') TO ('2099-03-01')",
    );
    assert_eq!(
        covered("samples_1h_p209902"),
        "1",
        "a partition created later"
    );
}

#[tokio::test]
async fn ingest_of_real_blocks_lands_exactly() {
    let pg = central();
    let sink = sink(&pg).await;
    assert_eq!(sink.cursor("db1").await.unwrap(), None);
    let start = base_ms(2);
    let mut slow = LogEvent::new(
        start + 5_000,
        Severity::Log,
        LogEventKind::SlowStatement,
        "duration: 1500 ms  statement: select $1",
    );
    slow.duration_ms = Some(1500.0);
    slow.pid = Some(4242);
    slow.database = Some("app".into());
    let mut err = LogEvent::new(
        start + 9_000,
        Severity::Error,
        LogEventKind::Error,
        "deadlock detected",
    );
    err.sqlstate = Some(*b"40P01");
    let b1 = block(AGENT, 1, &collections(start, 0, 20), &[slow, err]);
    let b2 = block(AGENT, 2, &collections(start, 20, 20), &[]);
    let batch = batch(
        "db1",
        app_series(Some("db1:5432")),
        vec![b1, b2],
        None,
        None,
        2,
    );
    let report = sink.ingest(&batch).await.unwrap();
    assert_eq!(report.samples_received, 80);
    assert_eq!(report.samples_inserted, 80);
    assert_eq!(report.samples_duplicate, 0);
    assert_eq!(report.log_events_inserted, 2);
    assert!(report.rollups_1m >= 20, "{report:?}");

    let want: Vec<(i64, f64)> = collections(start, 0, 40)
        .iter()
        .map(|(ts, s)| (*ts, s[0].1))
        .collect();
    assert_eq!(stored(&pg, "pg_stat_database_xact_commit_total"), want);
    let want: Vec<(i64, f64)> = collections(start, 0, 40)
        .iter()
        .map(|(ts, s)| (*ts, s[1].1))
        .collect();
    assert_eq!(stored(&pg, "pg_stat_database_numbackends"), want);

    assert_eq!(
        sql(
            &pg,
            "SELECT agent || ' ' || kind || ' ' || (labels->>'pg_instance') FROM metric_series \
             WHERE metric = 'pg_stat_database_xact_commit_total'"
        ),
        "db1 counter db1:5432"
    );
    assert_eq!(
        sql(
            &pg,
            "SELECT kind || ' ' || coalesce(sqlstate, '-') || ' ' || coalesce(pid::text, '-') \
             || ' ' || coalesce(duration_ms::text, '-') FROM agent_log_events ORDER BY ts"
        ),
        "slow_statement - 4242 1500\nerror 40P01 - -"
    );
    let (agent, cursor) = sink.cursor("db1").await.unwrap().unwrap();
    assert_eq!(agent, AGENT);
    assert_eq!(cursor, batch.cursor);
    assert_eq!(cursor.last_sequence, Some(2));

    // The same blocks again (a retried pull): nothing doubles.
    let again = sink.ingest(&batch).await.unwrap();
    assert_eq!(again.samples_inserted, 0);
    assert_eq!(again.samples_duplicate, 80);
    assert_eq!(again.log_events_inserted, 0);
    assert_eq!(sql(&pg, "SELECT count(*) FROM pga_samples"), "80");
    assert_eq!(sql(&pg, "SELECT count(*) FROM log_events"), "2");
}

#[tokio::test]
async fn the_heads_overlap_is_dropped_never_doubled() {
    let pg = central();
    let sink = sink(&pg).await;
    let start = base_ms(2);
    // Pull 1: sealed block 1 (collections 0..10) and the head (10..15).
    let b1 = block(AGENT, 1, &collections(start, 0, 10), &[]);
    let head = block(AGENT, 2, &collections(start, 10, 5), &[]);
    let first = batch(
        "db1",
        app_series(Some("db1:5432")),
        vec![b1],
        Some(head),
        None,
        2,
    );
    let r1 = sink.ingest(&first).await.unwrap();
    assert_eq!(r1.samples_inserted, 30);
    assert_eq!(
        sink.cursor("db1").await.unwrap().unwrap().1.last_sequence,
        Some(1)
    );
    // Pull 2: block 2 sealed (10..20) and a new head (20..22), series known already.
    let b2 = block(AGENT, 2, &collections(start, 10, 10), &[]);
    let head = block(AGENT, 3, &collections(start, 20, 2), &[]);
    let second = batch("db1", vec![], vec![b2], Some(head), None, 2);
    let r2 = sink.ingest(&second).await.unwrap();
    assert_eq!(r2.samples_received, 24);
    assert_eq!(r2.samples_duplicate, 10, "{r2:?}");
    assert_eq!(r2.samples_inserted, 14);
    let want: Vec<(i64, f64)> = collections(start, 0, 22)
        .iter()
        .map(|(ts, s)| (*ts, s[0].1))
        .collect();
    assert_eq!(stored(&pg, "pg_stat_database_xact_commit_total"), want);
    assert_eq!(sql(&pg, "SELECT count(*) FROM pga_samples"), "44");
    // A second sink (a restarted federator) knows the series from the database.
    let other = support::sink::sink(&pg).await;
    let b3 = block(AGENT, 3, &collections(start, 22, 3), &[]);
    let third = batch("db1", vec![], vec![b3], None, None, 2);
    assert_eq!(other.ingest(&third).await.unwrap().samples_inserted, 6);
}

#[tokio::test]
async fn a_gap_is_recorded_once() {
    let pg = central();
    let sink = sink(&pg).await;
    let start = base_ms(3);
    first_blocks(&sink, start, 4).await;
    let b9 = block(AGENT, 9, &collections(start + 60 * MIN, 0, 4), &[]);
    let gap = Gap {
        first_sequence: 2,
        last_sequence: 8,
        after_ts_ms: Some(start + 45_000),
        before_ts_ms: Some(start + 60 * MIN),
    };
    let with_gap = batch("db1", vec![], vec![b9], None, Some(gap), 2);
    assert!(sink.ingest(&with_gap).await.unwrap().gap_recorded);
    assert!(!sink.ingest(&with_gap).await.unwrap().gap_recorded);
    assert_eq!(
        sql(
            &pg,
            &format!(
                "SELECT first_sequence || '-' || last_sequence || ' ' \
                 || (extract(epoch FROM after_ts) * 1000)::bigint - {start} || ' ' \
                 || (extract(epoch FROM before_ts) * 1000)::bigint - {start} FROM agent_gaps"
            )
        ),
        format!("2-8 45000 {}", 60 * MIN)
    );
    assert_eq!(
        sql(&pg, "SELECT gaps || ' ' || blocks_lost FROM agent_status"),
        "1 7"
    );
}

#[tokio::test]
async fn a_failed_transaction_leaves_cursor_and_data_untouched() {
    let pg = central();
    let sink = sink(&pg).await;
    let start = base_ms(2);
    first_blocks(&sink, start, 10).await;
    let before = sink.cursor("db1").await.unwrap();
    let rollups = sql(&pg, "SELECT count(*) || ' ' || sum(count) FROM samples_1m");

    // A new series and its samples, then a failure in the last statements (a
    // trigger on log_events standing in for any database-side error): the whole
    // batch is rolled back, the samples written before the failing statement included.
    sql(
        &pg,
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN RAISE EXCEPTION 'refused' USING ERRCODE = '22000'; END $$; \
         CREATE TRIGGER refuse BEFORE INSERT ON log_events \
         FOR EACH ROW EXECUTE FUNCTION refuse();",
    );
    let extra = meta(2, "pg_up", &[], MetricKind::Gauge);
    let mut rows = collections(start, 10, 10);
    for (_, samples) in &mut rows {
        samples.push((SeriesId(2), 1.0));
    }
    // A NUL byte, which PostgreSQL text cannot hold: stored as U+FFFD below.
    let poison = LogEvent::new(
        start + 11 * 15_000,
        Severity::Log,
        LogEventKind::Other,
        "bad\0text",
    );
    let b2 = block(AGENT, 2, &rows, &[poison]);
    let bad = batch("db1", vec![extra], vec![b2.clone()], None, None, 3);
    let err = sink.ingest(&bad).await.unwrap_err();
    assert!(err.is_bad_batch(), "{err}");
    assert!(!err.is_transient(), "{err}");
    assert_eq!(sink.cursor("db1").await.unwrap(), before);
    assert_eq!(sql(&pg, "SELECT count(*) FROM pga_samples"), "20");
    assert_eq!(sql(&pg, "SELECT count(*) FROM series"), "2");
    assert_eq!(
        sql(&pg, "SELECT count(*) || ' ' || sum(count) FROM samples_1m"),
        rollups
    );

    sql(&pg, "DROP TRIGGER refuse ON log_events");

    // The rolled-back series did not reach the cache: samples of series 2 without
    // its dictionary entry are refused, not written under a stale id.
    let err = sink
        .ingest(&batch("db1", vec![], vec![b2.clone()], None, None, 3))
        .await
        .unwrap_err();
    assert!(err.is_bad_batch(), "{err}");
    assert!(err.to_string().contains("series id 2"), "{err}");
    assert_eq!(sql(&pg, "SELECT count(*) FROM pga_samples"), "20");

    // With the entry, the batch goes in.
    let good = batch(
        "db1",
        vec![meta(2, "pg_up", &[], MetricKind::Gauge)],
        vec![b2],
        None,
        None,
        3,
    );
    let report = sink.ingest(&good).await.unwrap();
    assert_eq!(report.samples_inserted, 30);
    assert_eq!(report.log_events_inserted, 1);
    assert_eq!(
        sink.cursor("db1").await.unwrap().unwrap().1.last_sequence,
        Some(2)
    );
    assert_eq!(
        sql(&pg, "SELECT message FROM log_events"),
        "bad\u{fffd}text"
    );
}

#[tokio::test]
async fn partitions_are_created_ahead_and_dropped_by_retention() {
    let pg = central();
    let sink = sink(&pg).await;
    let day = 86_400_000i64;
    let now = now_ms();
    let today = now - now.rem_euclid(day);
    let parts = |table: &str| {
        sql(
            &pg,
            &format!(
                "SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhparent \
                 WHERE c.relname = '{table}'"
            ),
        )
        .parse::<i64>()
        .unwrap()
    };
    // Today and three days ahead.
    assert_eq!(parts("samples"), 4);
    assert_eq!(parts("log_events"), 4);
    assert!(parts("samples_1h") >= 1);

    let start = base_ms(1);
    first_blocks(&sink, start, 8).await;
    // Samples older than the raw retention are not stored.
    let old = block(AGENT, 2, &collections(now - 8 * day, 0, 3), &[]);
    let r = sink
        .ingest(&batch("db1", vec![], vec![old], None, None, 2))
        .await
        .unwrap();
    assert_eq!((r.samples_expired, r.samples_inserted), (6, 0));
    // Nor samples from a clock five days fast: no partition that far ahead appears.
    let fast = block(AGENT, 3, &collections(now + 5 * day, 0, 3), &[]);
    let r = sink
        .ingest(&batch("db1", vec![], vec![fast], None, None, 2))
        .await
        .unwrap();
    assert_eq!((r.samples_future, r.samples_inserted), (6, 0));
    assert_eq!(
        sql(
            &pg,
            &format!(
                "SELECT count(*) FROM pga_partitions \
                 WHERE lower_bound >= timestamptz 'epoch' + {} * interval '1 ms'",
                today + 4 * day
            )
        ),
        "0"
    );

    // Ten days later: today's raw partition is past 7 days, its 1 m rollups are kept.
    let later = sink.retention(today + 10 * day).await.unwrap();
    assert!(
        later.dropped.iter().any(|p| p.starts_with("samples_p")),
        "{later:?}"
    );
    assert!(
        !later.dropped.iter().any(|p| p.starts_with("samples_1m_")),
        "{later:?}"
    );
    assert_eq!(sql(&pg, "SELECT count(*) FROM pga_samples"), "0");
    assert_ne!(sql(&pg, "SELECT count(*) FROM samples_1m"), "0");
    assert!(later.partitions_created >= 4, "{later:?}");
    // The partitions of day +10 .. +13 exist now; nothing older than 7 days remains.
    assert_eq!(
        sql(
            &pg,
            &format!(
                "SELECT count(*) FROM pga_partitions WHERE parent = 'samples' \
                 AND upper_bound <= timestamptz 'epoch' + {} * interval '1 ms'",
                today + 3 * day
            )
        ),
        "0"
    );
    assert!(parts("samples") >= 4);
    // A year and a month later, everything is gone, the 1 h rollups last.
    let much_later = sink.retention(today + 400 * day).await.unwrap();
    assert!(
        much_later
            .dropped
            .iter()
            .any(|p| p.starts_with("samples_1h_p"))
    );
    assert_eq!(sql(&pg, "SELECT count(*) FROM samples_1h"), "0");
}
