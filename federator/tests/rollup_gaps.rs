//! Rollups across a recorded gap and across a long silence (docs/central-database.md, "Rollups"):
//! no bucket attributes a counter's increase across them, the gap's bounds are
//! exact (a head written before the gap was known lies before it), and the rates
//! read from the views on both sides equal those computed from the raw samples —
//! whether the sink computed the rollups from the batch (a live agent) or
//! recomputed them in SQL (overlapping deliveries).

mod support;

use pga_federator::pull::batch::{Batch, Cursor, Gap};
use pga_format::{DecodedBlock, SeriesId};
use support::sink::*;

/// One collection pass: a timestamp and its samples.
type Collection = (i64, Vec<(SeriesId, f64)>);

/// Commits per second of the simulated database: the counter's true rate.
const RATE: f64 = 21.0;

/// Collections every 10 s at 5 s past, from `from_min` to `to_min` minutes after
/// `start`: a counter growing at [`RATE`] per second and a gauge.
fn collections(start: i64, from_min: i64, to_min: i64) -> Vec<Collection> {
    (from_min * 6..to_min * 6)
        .map(|i| {
            let ts = start + 5_000 + i * 10_000;
            let secs = (ts - start) as f64 / 1000.0;
            (
                ts,
                vec![(SeriesId(0), secs * RATE), (SeriesId(1), (i % 7) as f64)],
            )
        })
        .collect()
}

fn sealed(agent: pga_format::AgentId, seq: u64, rows: &[Collection]) -> DecodedBlock {
    block(agent, seq, rows, &[])
}

/// A batch of `blocks` (and `head`), cursor at the last block, for `agent`.
fn delivery(
    name: &str,
    agent: pga_format::AgentId,
    first: bool,
    blocks: Vec<DecodedBlock>,
    head: Option<DecodedBlock>,
    gap: Option<Gap>,
    cursor: Cursor,
) -> Batch {
    let series = if first { app_series(None) } else { vec![] };
    batch_of(name, agent, series, blocks, head, gap, cursor)
}

/// Per 1-minute bucket of `agent`'s counter: the rate computed from the raw samples
/// (the increase of the pairs that neither span a recorded gap nor a silence of
/// more than 180 s, over the time they span) and the view's `rate`, side by side.
fn rates(pg: &Central, agent: &str, width: &str, view: &str) -> Vec<(String, f64, f64)> {
    let out = sql(
        pg,
        &format!(
            "WITH p AS ( \
                 SELECT s.ts, s.value, se.agent_id, lag(s.value) OVER w AS prev, \
                        lag(s.ts) OVER w AS prev_ts \
                 FROM pga_samples s JOIN series se ON se.id = s.series_id \
                 JOIN agents a ON a.id = se.agent_id \
                 WHERE a.name = '{agent}' AND se.kind = 'counter' \
                 WINDOW w AS (ORDER BY s.ts)), \
             counted AS ( \
                 SELECT date_bin('{width}', ts, 'epoch') AS bucket, value - prev AS inc, \
                        extract(epoch FROM ts - prev_ts) AS secs \
                 FROM p \
                 WHERE prev_ts IS NOT NULL AND ts - prev_ts <= interval '180 seconds' \
                   AND NOT EXISTS (SELECT FROM gaps g WHERE g.agent_id = p.agent_id \
                                   AND g.after_ts >= p.prev_ts AND g.after_ts < p.ts)), \
             raw AS (SELECT bucket, sum(inc) / sum(secs)::float8 AS rate FROM counted GROUP BY bucket) \
             SELECT v.bucket, raw.rate, v.rate FROM {view} v JOIN raw USING (bucket) \
             WHERE v.agent = '{agent}' AND v.metric = 'pg_stat_database_xact_commit_total' \
             ORDER BY v.bucket"
        ),
    );
    out.lines()
        .map(|l| {
            let f: Vec<&str> = l.split('|').collect();
            (
                f[0].to_owned(),
                f[1].parse().unwrap(),
                f[2].parse().unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn no_increase_crosses_a_gap_or_a_silence_and_rates_hold_on_both_sides() {
    let pg = central();
    let sink = sink(&pg).await;
    let start = base_ms(3);
    let start = start - start.rem_euclid(3_600_000) - 3_600_000;
    // Two agents with the same history: `live` delivered as a live agent is pulled
    // (rollups computed from each batch), `overlap` with each sealed block's head
    // sent along (overlapping blocks: rollups recomputed from the raw samples).
    for (name, id) in [
        ("live", pga_format::AgentId([1; 16])),
        ("overlap", pga_format::AgentId([2; 16])),
    ] {
        let overlap = name == "overlap";
        let head_of = |seq: u64, rows: &[Collection]| {
            overlap.then(|| sealed(id, seq, &rows[..rows.len() / 2]))
        };
        let mut cursor = Cursor {
            series_count: 2,
            ..Cursor::default()
        };
        let mut deliver = |blocks: Vec<(u64, Vec<Collection>)>,
                           head: Option<DecodedBlock>,
                           gap: Option<Gap>| {
            let first = cursor.last_sequence.is_none();
            if let Some((seq, rows)) = blocks.last() {
                cursor.last_sequence = Some(*seq);
                cursor.last_ts_ms = rows.last().map(|r| r.0);
            } else if let Some(g) = gap {
                cursor.last_sequence = Some(g.last_sequence);
            }
            let head = head.or_else(|| blocks.last().and_then(|(seq, rows)| head_of(*seq, rows)));
            let blocks = blocks.iter().map(|(s, r)| sealed(id, *s, r)).collect();
            delivery(name, id, first, blocks, head, gap, cursor)
        };
        // Blocks 1 and 2: minutes 0–20.
        let b1 = collections(start, 0, 10);
        let b2 = collections(start, 10, 20);
        sink.ingest(&deliver(vec![(1, b1)], None, None))
            .await
            .unwrap();
        let b2_max = b2.last().unwrap().0;
        sink.ingest(&deliver(vec![(2, b2)], None, None))
            .await
            .unwrap();
        // The head of block 3 (minutes 20–23) is written, then the agent is cut off;
        // blocks 3 and 4 (minutes 20–40) are evicted before they are pulled.
        let b3_head = collections(start, 20, 23);
        let head_newest = b3_head.last().unwrap().0;
        sink.ingest(&deliver(vec![], Some(sealed(id, 3, &b3_head)), None))
            .await
            .unwrap();
        // Block 5 (minutes 40–50) comes with the gap 3–4, as the pull records it.
        let b5 = collections(start, 40, 50);
        let gap = Gap {
            first_sequence: 3,
            last_sequence: 4,
            after_ts_ms: Some(b2_max),
            before_ts_ms: Some(b5[0].0),
        };
        let before_ts = b5[0].0;
        sink.ingest(&deliver(vec![(5, b5)], None, Some(gap)))
            .await
            .unwrap();
        // Block 6: minutes 50–52, then the agent stops collecting for 10 minutes (no
        // gap: nothing was evicted; a silence); block 7: minutes 62–70.
        sink.ingest(&deliver(vec![(6, collections(start, 50, 52))], None, None))
            .await
            .unwrap();
        sink.ingest(&deliver(vec![(7, collections(start, 62, 70))], None, None))
            .await
            .unwrap();

        // The gap's bounds are exact: it starts at the newest sample stored before
        // it (the head's), and nothing stored lies inside.
        let bounds = sql(
            &pg,
            &format!(
                "SELECT (extract(epoch FROM after_ts) * 1000)::bigint, \
                        (extract(epoch FROM before_ts) * 1000)::bigint \
                 FROM agent_gaps WHERE agent = '{name}'"
            ),
        );
        assert_eq!(bounds, format!("{head_newest}|{before_ts}"), "{name}");
        let inside = sql(
            &pg,
            &format!(
                "SELECT count(*) FROM metric_samples s JOIN agent_gaps g USING (agent) \
                 WHERE s.agent = '{name}' AND s.ts > g.after_ts AND s.ts < g.before_ts"
            ),
        );
        assert_eq!(
            inside, "0",
            "{name}: stored samples inside the recorded gap"
        );
    }

    // Every rollup row equals the reference GROUP BY over the raw samples and gaps.
    assert_eq!(rollup_mismatches(&pg, "1 minute", "samples_1m", 180), "");
    assert_eq!(rollup_mismatches(&pg, "1 hour", "pga_hours", 180), "");
    assert_eq!(rollup_mismatches(&pg, "10 minutes", PGA_TENS, 180), "");
    for name in ["live", "overlap"] {
        // The first agent is read with every 10-minute and 1-hour bucket open
        // (summed from minutes), the second once the hours job closed them.
        if name == "overlap" {
            let report = sink.close_hours(None, None).await.unwrap();
            assert!(report.complete && report.rows > 0, "{report:?}");
            assert_eq!(rollup_mismatches(&pg, "1 hour", "samples_1h", 180), "");
            assert_eq!(rollup_mismatches(&pg, "10 minutes", "samples_10m", 180), "");
        }
        // No bucket holds an increase across the gap or the silence: the true
        // rate everywhere, from the views as from the raw samples, on both sides.
        for (width, view) in [
            ("1 minute", "metric_rollups_1m"),
            ("1 hour", "metric_rollups_1h"),
        ] {
            let r = rates(&pg, name, width, view);
            assert!(r.len() >= 2, "{name} {view}: {r:?}");
            for (bucket, raw, from_view) in &r {
                assert!(
                    (raw - RATE).abs() < 1e-9,
                    "{name} {view} {bucket}: raw {raw}"
                );
                assert!(
                    (from_view - raw).abs() < 1e-9,
                    "{name} {view} {bucket}: view {from_view}, raw samples {raw}"
                );
            }
        }
        // The first bucket after each break says so, and its increase covers only
        // the time after the break.
        let marked = sql(
            &pg,
            &format!(
                "SELECT (extract(epoch FROM bucket) * 1000)::bigint || ':' || \
                        coalesce(increase_secs::text, 'null') \
                 FROM metric_rollups_1m \
                 WHERE agent = '{name}' AND metric = 'pg_stat_database_xact_commit_total' \
                   AND after_gap ORDER BY bucket"
            ),
        );
        let after_gap = start + 40 * 60_000;
        let after_silence = start + 62 * 60_000;
        assert_eq!(
            marked,
            format!("{after_gap}:50\n{after_silence}:50"),
            "{name}"
        );
        // The minute that held 16 minutes of commits before: with increase / 60
        // it read 21 × 17 = 357 per second; `rate` says 21.
        let spike = sql(
            &pg,
            &format!(
                "SELECT increase, round(rate::numeric, 6) FROM metric_rollups_1m \
                 WHERE agent = '{name}' AND metric = 'pg_stat_database_xact_commit_total' \
                   AND bucket = to_timestamp({after_gap} / 1000.0)"
            ),
        );
        assert_eq!(spike, "1050|21.000000", "{name}");

        // The query layer (migrations/0030_query_layer.sql) gives the same answers
        // whatever table the step makes it read: pga_range's rate is the true rate in
        // every bucket from raw samples (10 s, 30 s), 1-minute (1, 5 min), 10-minute
        // (10, 30 min) and 1-hour rollups, never a spike across the gap or the silence, and the increases
        // add up to the same total from every source and from pga_summary.
        let range = format!(
            "to_timestamp({} / 1000.0), to_timestamp({} / 1000.0)",
            start,
            start + 3 * 3_600_000
        );
        let mut totals = Vec::new();
        for step in [
            "10 seconds",
            "30 seconds",
            "1 minute",
            "5 minutes",
            "10 minutes",
            "30 minutes",
            "1 hour",
        ] {
            let rates = sql(
                &pg,
                &format!(
                    "SELECT count(value), count(*) FILTER (WHERE abs(value - {RATE}) > 1e-9) \
                     FROM pga_range('pg_stat_database_xact_commit_total', 'rate', {range}, \
                                    '{step}', ARRAY['{name}'])"
                ),
            );
            let (known, off) = rates.split_once('|').unwrap();
            assert!(known.parse::<u32>().unwrap() >= 2, "{name} {step}: {rates}");
            assert_eq!(off, "0", "{name} {step}: buckets whose rate is not {RATE}");
            totals.push(sql(
                &pg,
                &format!(
                    "SELECT round(sum(value)::numeric, 6) \
                     FROM pga_range('pg_stat_database_xact_commit_total', 'increase', {range}, \
                                    '{step}', ARRAY['{name}'])"
                ),
            ));
        }
        totals.push(sql(
            &pg,
            &format!(
                "SELECT round(value::numeric, 6) \
                 FROM pga_summary('pg_stat_database_xact_commit_total', 'increase', {range}, \
                                  ARRAY['{name}'])"
            ),
        ));
        assert!(
            totals.iter().all(|t| t == &totals[0]),
            "{name}: increases by source {totals:?}"
        );
        // Buckets that hold samples but no known increase (the first after each
        // break, at a 10 s step) are NULL rows, so a graph breaks there.
        let nulls = sql(
            &pg,
            &format!(
                "SELECT count(*) FILTER (WHERE value IS NULL) \
                 FROM pga_range('pg_stat_database_xact_commit_total', 'rate', {range}, \
                                '10 seconds', ARRAY['{name}'])"
            ),
        );
        assert_eq!(
            nulls, "3",
            "{name}: the first sample and one after each break"
        );
        // A gauge's minimum, maximum and average agree between raw samples (one
        // per 10 s bucket) and rollups.
        for f in ["min", "max", "avg"] {
            let raw = sql(
                &pg,
                &format!(
                    "SELECT round({f}(value)::numeric, 9) FROM pga_range( \
                       'pg_stat_database_numbackends', 'avg', {range}, '10 seconds', \
                       ARRAY['{name}'])"
                ),
            );
            let rolled = sql(
                &pg,
                &format!(
                    "SELECT round(value::numeric, 9) FROM pga_summary( \
                       'pg_stat_database_numbackends', '{f}', {range}, ARRAY['{name}'])"
                ),
            );
            assert_eq!(raw, rolled, "{name} {f}: raw samples vs rollups");
        }
        // `last`, `avg`, `min` and `max` at the steps of every rollup width, one row
        // per bucket (migrations/0096_range_rows.sql takes that row's own value) or
        // several (20 minutes over 10-minute rows), are those of the raw samples of
        // each bucket.
        for (metric, step, f) in [
            "pg_stat_database_numbackends",
            "pg_stat_database_xact_commit_total",
        ]
        .into_iter()
        .flat_map(|m| ["1 minute", "10 minutes", "20 minutes", "1 hour"].map(|s| (m, s)))
        .flat_map(|(m, s)| ["last", "avg", "min", "max"].map(|f| (m, s, f)))
        {
            let want = match f {
                "last" => "(array_agg(s.value ORDER BY s.ts DESC))[1]",
                "avg" => "sum(s.value) / count(*)",
                other => &format!("{other}(s.value)"),
            };
            let check = sql(
                &pg,
                &format!(
                    "WITH got AS (SELECT time, series_id, round(value::numeric, 9) AS value \
                                  FROM pga_range('{metric}', '{f}', {range}, '{step}', \
                                                 ARRAY['{name}'])), \
                     want AS (SELECT date_bin('{step}', s.ts, timestamptz 'epoch') AS time, \
                                     s.series_id, round(({want})::numeric, 9) AS value \
                              FROM pga_samples s \
                              WHERE s.series_id IN (SELECT series_id FROM got) \
                                AND s.ts >= to_timestamp({start} / 1000.0) \
                                AND s.ts < to_timestamp({end} / 1000.0) \
                              GROUP BY 1, 2) \
                     SELECT (SELECT count(*) FROM got), \
                            (SELECT count(*) FROM (TABLE got EXCEPT ALL TABLE want) x), \
                            (SELECT count(*) FROM (TABLE want EXCEPT ALL TABLE got) y)",
                    end = start + 3 * 3_600_000
                ),
            );
            let parts: Vec<&str> = check.split('|').collect();
            assert!(
                parts[0].parse::<u32>().unwrap() > 0,
                "{name} {metric} {step}: {check}"
            );
            assert_eq!(
                &parts[1..],
                ["0", "0"],
                "{name} {metric} {step} {f}: {check}"
            );
        }
        // pga_range_top (migrations/0040_query_speed.sql) gives pga_range's rows of
        // the series that rank highest over both agents, and only those, from every
        // source.
        for step in ["10 seconds", "1 minute", "10 minutes", "1 hour"] {
            for (rank, n) in [("max", 1), ("avg", 2), ("increase", 1)] {
                let check = sql(
                    &pg,
                    &format!(
                        "WITH best AS ( \
                           SELECT series_id FROM pga_summary('pg_stat_database_numbackends', \
                                                             '{rank}', {range}, NULL) \
                           ORDER BY value DESC NULLS LAST, series_id LIMIT {n}), \
                         top AS (SELECT * FROM pga_range_top('pg_stat_database_numbackends', \
                                 'avg', {range}, '{step}', '{rank}', {n}, NULL)), \
                         want AS (SELECT * FROM pga_range('pg_stat_database_numbackends', \
                                  'avg', {range}, '{step}', NULL) \
                                  WHERE series_id IN (SELECT series_id FROM best)) \
                         SELECT (SELECT count(*) FROM top), (SELECT count(*) FROM want), \
                                (SELECT count(*) FROM (TABLE top EXCEPT ALL TABLE want) x), \
                                (SELECT count(*) FROM (TABLE want EXCEPT ALL TABLE top) y)"
                    ),
                );
                let parts: Vec<&str> = check.split('|').collect();
                assert!(
                    parts[0].parse::<u32>().unwrap() > 0,
                    "{name} {step} {rank}: {check}"
                );
                assert_eq!(parts[0], parts[1], "{name} {step} {rank}: {check}");
                assert_eq!(&parts[2..], ["0", "0"], "{name} {step} {rank}: {check}");
            }
        }
    }
}

/// pga_range_grouped (migrations/0096_range_rows.sql) gives pga_range's values
/// combined outside it, per instance and per database, from every source: two agents,
/// each with a counter and a gauge in three databases.
#[tokio::test]
async fn grouped_ranges_equal_pga_range_combined_outside() {
    let pg = central();
    let sink = sink(&pg).await;
    let start = base_ms(3);
    let start = start - start.rem_euclid(3_600_000) - 3_600_000;
    let series: Vec<pga_format::SeriesMeta> = ["a", "b", "c"]
        .iter()
        .enumerate()
        .flat_map(|(d, datname)| {
            [
                meta(
                    2 * d as u64,
                    "pg_stat_database_xact_commit_total",
                    &[("datname", datname)],
                    pga_format::MetricKind::Counter,
                ),
                meta(
                    2 * d as u64 + 1,
                    "pg_stat_database_numbackends",
                    &[("datname", datname)],
                    pga_format::MetricKind::Gauge,
                ),
            ]
        })
        .collect();
    // Two hours every 10 s, in 10-minute blocks: counters at different rates, gauges
    // that differ between databases.
    for (k, (name, id)) in [
        ("one", pga_format::AgentId([3; 16])),
        ("two", pga_format::AgentId([4; 16])),
    ]
    .into_iter()
    .enumerate()
    {
        let rows: Vec<Collection> = (0..720i64)
            .map(|i| {
                let samples = (0..3u64)
                    .flat_map(|d| {
                        [
                            (SeriesId(2 * d), (i * (d as i64 + 1 + k as i64)) as f64),
                            (SeriesId(2 * d + 1), ((i * (d as i64 + 2)) % 11) as f64),
                        ]
                    })
                    .collect();
                (start + 5_000 + i * 10_000, samples)
            })
            .collect();
        for (b, chunk) in rows.chunks(60).enumerate() {
            let seq = b as u64 + 1;
            let cursor = Cursor {
                series_count: 6,
                last_sequence: Some(seq),
                last_ts_ms: chunk.last().map(|r| r.0),
            };
            let entries = if b == 0 { series.clone() } else { vec![] };
            sink.ingest(&batch_of(
                name,
                id,
                entries,
                vec![sealed(id, seq, chunk)],
                None,
                None,
                cursor,
            ))
            .await
            .unwrap();
        }
    }
    // The hours job closes the 10-minute and 1-hour buckets those steps read.
    let report = sink.close_hours(None, None).await.unwrap();
    assert!(report.complete, "{report:?}");
    let range = format!(
        "to_timestamp({} / 1000.0), to_timestamp({} / 1000.0)",
        start,
        start + 2 * 3_600_000
    );
    for step in [
        "10 seconds",
        "1 minute",
        "10 minutes",
        "30 minutes",
        "1 hour",
    ] {
        for (metric, f, agg) in [
            ("pg_stat_database_xact_commit_total", "rate", "sum"),
            ("pg_stat_database_xact_commit_total", "increase", "max"),
            ("pg_stat_database_numbackends", "avg", "sum"),
            ("pg_stat_database_numbackends", "last", "min"),
            ("pg_stat_database_numbackends", "max", "avg"),
        ] {
            for by in ["'{}'", "ARRAY['datname']"] {
                let key = if by.contains("datname") {
                    "jsonb_build_object('datname', labels->'datname')"
                } else {
                    "'{}'::jsonb"
                };
                let check = sql(
                    &pg,
                    &format!(
                        "WITH got AS (SELECT time, agent, pg_instance, labels, \
                                             round(value::numeric, 9) AS value \
                                      FROM pga_range_grouped('{metric}', '{f}', {range}, \
                                                             '{step}', '{agg}', {by})), \
                         want AS (SELECT time, agent, pg_instance, {key} AS labels, \
                                         round({agg}(value)::numeric, 9) AS value \
                                  FROM pga_range('{metric}', '{f}', {range}, '{step}') \
                                  GROUP BY 1, 2, 3, 4) \
                         SELECT (SELECT count(*) FROM got), \
                                (SELECT count(DISTINCT agent) FROM got), \
                                (SELECT count(*) FROM (TABLE got EXCEPT ALL TABLE want) x), \
                                (SELECT count(*) FROM (TABLE want EXCEPT ALL TABLE got) y)"
                    ),
                );
                let parts: Vec<&str> = check.split('|').collect();
                assert!(
                    parts[0].parse::<u32>().unwrap() > 0,
                    "{metric} {f} {agg} {step} {by}: {check}"
                );
                assert_eq!(parts[1], "2", "{metric} {f} {agg} {step} {by}: {check}");
                assert_eq!(
                    &parts[2..],
                    ["0", "0"],
                    "{metric} {f} {agg} {step} {by}: {check}"
                );
            }
        }
    }
    // Its arguments are checked like pga_range's.
    for (call, error) in [
        (
            format!("pga_range_grouped('pg_up', 'median', {range}, '1 minute')"),
            "unknown function",
        ),
        (
            format!("pga_range_grouped('pg_up', 'avg', {range}, '1 minute', 'count')"),
            "unknown combination",
        ),
        (
            format!("pga_range_grouped('pg_up', 'avg', {range}, '-1 minute')"),
            "the step must be positive",
        ),
    ] {
        let out = pg.psql(&format!("SELECT count(*) FROM {call}"));
        let err = out.expect_err(&call).to_string();
        assert!(err.contains(error), "{call}: {err}");
    }
}
