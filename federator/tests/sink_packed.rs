//! The packed layout of sealed samples (migration 0080) against a real PostgreSQL:
//! a sealed block goes in packed and replaces the head rows it covers in the same
//! transaction; a block delivered twice or overlapping adds nothing; a damaged
//! packed row is never merged into, and the agent's other series go on.

mod support;

use pga_federator::db::sink::{Sink, SinkOptions};
use pga_format::SeriesId;
use support::sink::*;

/// `n` collections every 10 s from `start`: series 0 counts up, series 1 holds
/// still, series 2 wanders.
fn collections(start: i64, from: usize, n: usize) -> Vec<(i64, Vec<(SeriesId, f64)>)> {
    (from..from + n)
        .map(|i| {
            (
                start + i as i64 * 10_000 + (i % 3) as i64,
                vec![
                    (SeriesId(0), 1000.0 + 7.0 * i as f64),
                    (SeriesId(1), 42.5),
                    (SeriesId(2), (i % 5) as f64 + 0.25),
                ],
            )
        })
        .collect()
}

fn series() -> Vec<pga_format::SeriesMeta> {
    let mut s = app_series(Some("db1:5432"));
    s.push(meta(
        2,
        "pg_stat_database_temp_files",
        &[("datname", "app")],
        pga_format::MetricKind::Gauge,
    ));
    s
}

/// Every stored sample, both forms, as `series_id|ms|value` lines in order, and how
/// many are rows and how many packed rows there are.
fn everything(pg: &Central) -> (Vec<String>, i64, i64) {
    let all = sql(
        pg,
        "SELECT string_agg(se.metric || '|' || (extract(epoch FROM r.ts) * 1000)::bigint || '|' \
         || r.value, ',' ORDER BY se.metric, r.ts) \
         FROM pga_raw(ARRAY(SELECT id FROM series), '-infinity', 'infinity') r \
         JOIN series se ON se.id = r.series_id",
    );
    let rows: i64 = sql(pg, "SELECT count(*) FROM samples").parse().unwrap();
    let packed: i64 = sql(pg, "SELECT count(*) FROM samples_packed")
        .parse()
        .unwrap();
    (
        all.split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        rows,
        packed,
    )
}

fn expected(start: i64, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    for (k, m) in series().iter().enumerate() {
        for (ts, samples) in collections(start, 0, n) {
            let v = samples[k].1;
            out.push(format!("{}|{ts}|{v}", m.name));
        }
    }
    out.sort_by(|a, b| {
        let key = |s: &str| {
            let mut p = s.split('|');
            (
                p.next().unwrap().to_owned(),
                p.next().unwrap().parse::<i64>().unwrap(),
            )
        };
        key(a).cmp(&key(b))
    });
    out
}

#[tokio::test]
async fn a_sealed_block_replaces_the_head_rows_and_nothing_doubles() {
    let pg = central();
    let sink = sink(&pg).await;
    let start = base_ms(2);
    // Pull 1: the head only (collections 0..20), as rows.
    let head = block(AGENT, 1, &collections(start, 0, 20), &[]);
    let first = batch_of(
        "db1",
        AGENT,
        series(),
        vec![],
        Some(head),
        None,
        Default::default(),
    );
    let r = sink.ingest(&first).await.unwrap();
    assert_eq!((r.samples_inserted, r.packed_rows), (60, 0));
    let (_, rows, packed) = everything(&pg);
    assert_eq!((rows, packed), (60, 0));

    // Pull 2: block 1 sealed (0..60) and a new head (60..62).
    let b1 = block(AGENT, 1, &collections(start, 0, 60), &[]);
    let head = block(AGENT, 2, &collections(start, 60, 2), &[]);
    let second = batch("db1", vec![], vec![b1.clone()], Some(head), None, 3);
    let r = sink.ingest(&second).await.unwrap();
    assert_eq!(r.samples_inserted, 40 * 3 + 2 * 3, "{r:?}");
    assert_eq!(r.samples_duplicate, 20 * 3, "{r:?}");
    assert_eq!(r.packed_rows, 3, "{r:?}");
    let (all, rows, packed) = everything(&pg);
    assert_eq!((rows, packed), (6, 3), "only the new head stays as rows");
    assert_eq!(all, expected(start, 62));
    // The timestamps are shared, the constant series holds one value.
    assert_eq!(sql(&pg, "SELECT count(*) FROM sample_times"), "1");
    assert_eq!(
        sql(
            &pg,
            "SELECT string_agg(cardinality(p.vals)::text, ',' ORDER BY se.metric) FROM samples_packed p JOIN series se ON se.id = p.series_id"
        ),
        "1,60,60" // numbackends (constant), temp_files, xact_commit
    );

    // The same block again, and again inside an overlapping staged batch.
    let again = batch("db1", vec![], vec![b1.clone()], None, None, 3);
    let r = sink.ingest(&again).await.unwrap();
    assert_eq!((r.samples_inserted, r.packed_rows), (0, 0), "{r:?}");
    let overlapping = block(AGENT, 9, &collections(start, 50, 20), &[]);
    let staged = batch("db1", vec![], vec![b1, overlapping], None, None, 3);
    let r = sink.ingest(&staged).await.unwrap();
    assert_eq!(r.samples_inserted, 8 * 3, "{r:?}");
    let (all, _, _) = everything(&pg);
    assert_eq!(all, expected(start, 70));
    let doubled = sql(
        &pg,
        "SELECT count(*) FROM (SELECT series_id, ts FROM pga_raw(ARRAY(SELECT id FROM series), \
         '-infinity', 'infinity') GROUP BY 1, 2 HAVING count(*) > 1) d",
    );
    assert_eq!(doubled, "0");
    // The rollups say what the samples say.
    let counts = sql(&pg, "SELECT sum(count) FROM samples_1m");
    assert_eq!(counts, "210");
}

#[tokio::test]
async fn rows_only_when_packing_is_off() {
    let pg = central();
    let sink = Sink::connect(
        &pg.url(),
        SinkOptions {
            packed_samples: false,
            ..options()
        },
    )
    .await
    .unwrap();
    sink.migrate().await.unwrap();
    let start = base_ms(2);
    let b1 = block(AGENT, 1, &collections(start, 0, 60), &[]);
    let r = sink
        .ingest(&batch("db1", series(), vec![b1], None, None, 3))
        .await
        .unwrap();
    assert_eq!((r.samples_inserted, r.packed_rows), (180, 0));
    let (all, rows, packed) = everything(&pg);
    assert_eq!((rows, packed), (180, 0));
    assert_eq!(all, expected(start, 60));
}

#[tokio::test]
async fn a_damaged_packed_row_is_never_merged_into_and_the_other_series_go_on() {
    let pg = central();
    let sink = sink(&pg).await;
    let start = base_ms(2);
    let b1 = block(AGENT, 1, &collections(start, 0, 60), &[]);
    sink.ingest(&batch("db1", series(), vec![b1], None, None, 3))
        .await
        .unwrap();
    // Series temp_files loses a value by hand.
    let id = sql(
        &pg,
        "SELECT id FROM series WHERE metric = 'pg_stat_database_temp_files'",
    );
    sql(
        &pg,
        &format!("UPDATE samples_packed SET vals = vals[1:59] WHERE series_id = {id}"),
    );
    let err = pg
        .psql(&format!(
            "SELECT count(*) FROM pga_raw(ARRAY[{id}::bigint], '-infinity', 'infinity')"
        ))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!("series {id} in the window starting"))
            && err.contains("60 timestamps but 59 values"),
        "{err}"
    );

    // A batch overlapping the damaged window: the first two series get their new
    // samples, the damaged one none.
    let b2 = block(AGENT, 2, &collections(start, 30, 60), &[]);
    let r = sink
        .ingest(&batch("db1", vec![], vec![b2], None, None, 3))
        .await
        .unwrap();
    assert_eq!(r.samples_damaged, 60, "{r:?}");
    assert_eq!(r.samples_inserted, 2 * 30, "{r:?}");
    let n = sql(
        &pg,
        &format!(
            "SELECT count(*) FROM pga_raw(ARRAY(SELECT id FROM series WHERE id <> {id}), '-infinity', 'infinity')"
        ),
    );
    assert_eq!(n, "180");
    assert_eq!(
        sql(
            &pg,
            &format!("SELECT cardinality(vals) FROM samples_packed WHERE series_id = {id}")
        ),
        "59",
        "the damaged row is left as it is"
    );

    // A federator started afresh (nothing remembered) reading around the damaged row
    // for a later block: ingest goes on, the damaged row is skipped, not read.
    let restarted = support::sink::sink(&pg).await;
    let b3 = block(AGENT, 3, &collections(start, 90, 30), &[]);
    let r = restarted
        .ingest(&batch("db1", vec![], vec![b3], None, None, 3))
        .await
        .unwrap();
    assert_eq!((r.samples_inserted, r.samples_damaged), (90, 0), "{r:?}");
}
