//! Rollup exactness: after out-of-order and duplicate deliveries (a shuffled
//! backfill, blocks pulled twice, heads overlapping sealed blocks, live heads
//! growing, a second writer), every 1-minute, 10-minute, 1-hour and 1-day row
//! equals the same aggregate computed by a GROUP BY over the raw samples, counter
//! increases with resets and silences included, and so does pga_summary over a range
//! that reads all four.

mod support;

use std::time::{SystemTime, UNIX_EPOCH};

use pga_format::{MetricKind, SeriesId};
use support::sink::*;

const DAY_MS: i64 = 86_400_000;

/// One collection pass: a timestamp and its samples.
type Collection = (i64, Vec<(SeriesId, f64)>);

/// A small deterministic generator (xorshift64*), seeded per run and printed, so a
/// failure can be replayed with `PGA_TEST_SEED`.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn mismatches(pg: &Central, width: &str, table: &str) -> String {
    rollup_mismatches(pg, width, table, 180)
}

#[tokio::test]
async fn rollups_equal_a_group_by_over_raw_samples_after_shuffled_duplicate_deliveries() {
    let seed = std::env::var("PGA_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("PGA_TEST_SEED={seed}");
    let mut rng = Rng(seed);

    // Three hours every 15 s, some collections missing; two counters with resets and
    // a gauge. Values are multiples of 0.5 so sums are exact in any order. They
    // straddle the midnight (UTC) two days back, so that both days are closed when
    // the hours job runs, whatever the time of day: what arrives after that is late
    // data in closed days too.
    let midnight = {
        let now = now_ms();
        now - now.rem_euclid(DAY_MS) - 2 * DAY_MS
    };
    let start = midnight - 90 * 60_000;
    let mut counters = [0.0f64; 2];
    let mut rows: Vec<Collection> = Vec::new();
    for i in 0..720i64 {
        // Two silences longer than max_silence (180 s): 5 minutes in the shuffled
        // part, 3 m 45 s in the live part. No increase may be counted across them.
        if rng.below(10) == 0 || (300..320).contains(&i) || (600..615).contains(&i) {
            continue;
        }
        let mut samples = Vec::new();
        for (c, value) in counters.iter_mut().enumerate() {
            *value = if rng.below(60) == 0 {
                rng.below(5) as f64 // a reset: the counter restarts low
            } else {
                *value + rng.below(40) as f64
            };
            if rng.below(20) != 0 {
                samples.push((SeriesId(c as u64), *value));
            }
        }
        samples.push((SeriesId(2), rng.below(200) as f64 * 0.5 - 30.0));
        rows.push((start + i * 15_000, samples));
    }
    let total: usize = rows.iter().map(|(_, s)| s.len()).sum();

    // Cut into sealed blocks of 4..24 collections; each delivery carries one to
    // three blocks and sometimes a head made of a prefix of a later block.
    // The first two thirds go shuffled and duplicated (a backfill gone wrong every
    // way), the last third in order, block by block (a live agent): both the rollups
    // recomputed in SQL and those computed from a batch's own samples are checked.
    let split = rows.len() * 2 / 3;
    let mut blocks = Vec::new();
    let mut i = 0;
    while i < split {
        let n = (4 + rng.below(21) as usize).min(split - i);
        blocks.push(rows[i..i + n].to_vec());
        i += n;
    }
    // A live agent's blocks are aligned time windows (5 minutes here).
    let mut live: Vec<Vec<Collection>> = Vec::new();
    for row in &rows[i..] {
        match live.last_mut() {
            Some(w) if w[0].0.div_euclid(300_000) == row.0.div_euclid(300_000) => {
                w.push(row.clone())
            }
            _ => live.push(vec![row.clone()]),
        }
    }
    let mut order: Vec<usize> = (0..blocks.len()).collect();
    // Some blocks arrive twice.
    for _ in 0..blocks.len() / 3 {
        order.push(rng.below(blocks.len() as u64) as usize);
    }
    for k in (1..order.len()).rev() {
        order.swap(k, rng.below(k as u64 + 1) as usize);
    }

    let pg = central();
    let sink = sink(&pg).await;
    let series = vec![
        meta(0, "c_a_total", &[("k", "a")], MetricKind::Counter),
        meta(1, "c_b_total", &[("k", "b")], MetricKind::Counter),
        meta(2, "g", &[], MetricKind::Gauge),
    ];
    let mut first = true;
    let mut k = 0;
    let mut closed = false;
    while k < order.len() {
        // Halfway, the hours job closes every hour so far: what arrives after that
        // is late data the ingest must keep exact in the 1-hour rows itself. Until
        // then pga_hours sums the minutes.
        if !closed && k >= order.len() / 2 {
            closed = true;
            assert_eq!(mismatches(&pg, "1 hour", "pga_hours"), "", "seed {seed}");
            assert_eq!(mismatches(&pg, "10 minutes", PGA_TENS), "", "seed {seed}");
            let report = sink.close_hours(None, None).await.unwrap();
            assert!(report.complete, "{report:?}");
            assert_eq!(report.agents, 1, "{report:?}");
            assert!(report.rows > 0, "{report:?}");
        }
        let take = (1 + rng.below(3) as usize).min(order.len() - k);
        let sealed: Vec<_> = order[k..k + take]
            .iter()
            .map(|&b| block(AGENT, b as u64 + 1, &blocks[b], &[]))
            .collect();
        k += take;
        let head = (rng.below(3) == 0).then(|| {
            let b = rng.below(blocks.len() as u64) as usize;
            let n = 1 + rng.below(blocks[b].len() as u64) as usize;
            block(AGENT, b as u64 + 1, &blocks[b][..n], &[])
        });
        let entries = if first { series.clone() } else { vec![] };
        first = false;
        sink.ingest(&batch("db1", entries, sealed, head, None, 3))
            .await
            .unwrap();
    }

    // Live: each window shown first as a growing head (what a live pull writes: the
    // sink continues series from the newest samples it remembers), then sealed. One
    // window goes through a second sink, as a second federator would: the first must
    // notice and not trust what it remembers.
    let other = support::sink::sink(&pg).await;
    for (j, rows) in live.iter().enumerate() {
        let sequence = (blocks.len() + j) as u64 + 1;
        let mut shown = 0;
        while shown < rows.len() && rng.below(3) != 0 {
            shown += 1 + rng.below((rows.len() - shown) as u64) as usize;
            let head = block(AGENT, sequence, &rows[..shown], &[]);
            sink.ingest(&batch("db1", vec![], vec![], Some(head), None, 3))
                .await
                .unwrap();
        }
        let sealed = block(AGENT, sequence, rows, &[]);
        let by = if j == live.len() / 2 { &other } else { &sink };
        by.ingest(&batch("db1", vec![], vec![sealed], None, None, 3))
            .await
            .unwrap();
    }

    assert_eq!(
        sql(&pg, "SELECT count(*) FROM pga_samples"),
        total.to_string()
    );
    assert_eq!(
        sql(
            &pg,
            "SELECT count(DISTINCT date_bin('1 minute', ts, 'epoch')) FROM pga_samples"
        ),
        sql(&pg, "SELECT count(DISTINCT bucket) FROM samples_1m"),
    );
    assert_eq!(mismatches(&pg, "1 minute", "samples_1m"), "", "seed {seed}");
    // The per-agent minute counts ("samples received") count each stored sample
    // once, whichever path and however often it came.
    assert_eq!(
        sql(
            &pg,
            "SELECT count(*) FROM agent_samples_1m c \
             FULL JOIN (SELECT se.agent_id, date_bin('1 minute', s.ts, 'epoch') AS bucket, \
                               count(*) AS n \
                        FROM pga_samples s JOIN series se ON se.id = s.series_id GROUP BY 1, 2) x \
               ON x.agent_id = c.agent_id AND x.bucket = c.bucket \
             WHERE c.samples IS DISTINCT FROM x.n"
        ),
        "0",
        "seed {seed}"
    );
    assert_eq!(
        sql(&pg, "SELECT sum(samples) FROM agent_samples_1m"),
        total.to_string()
    );
    // first_seen exact, last_seen within the hour it is allowed to lag.
    assert_eq!(
        sql(
            &pg,
            "SELECT count(*) FROM series se \
             JOIN (SELECT series_id, min(ts) AS f, max(ts) AS l FROM pga_samples GROUP BY 1) x \
               ON x.series_id = se.id \
             WHERE se.first_seen <> x.f OR se.last_seen > x.l \
                OR se.last_seen < x.l - interval '1 hour'"
        ),
        "0",
        "seed {seed}"
    );
    // The hours closed halfway, kept by the ingest since: the rows themselves and
    // what readers see.
    assert_eq!(mismatches(&pg, "1 hour", "samples_1h"), "", "seed {seed}");
    assert_eq!(mismatches(&pg, "1 hour", "pga_hours"), "", "seed {seed}");
    assert_eq!(
        mismatches(&pg, "10 minutes", "samples_10m"),
        "",
        "seed {seed}"
    );
    assert_eq!(mismatches(&pg, "10 minutes", PGA_TENS), "", "seed {seed}");
    // The days, closed with the hours and kept by the ingest since.
    assert_eq!(mismatches(&pg, "1 day", "samples_1d"), "", "seed {seed}");
    assert_eq!(sql(&pg, "SELECT count(*) FROM samples_1d"), "6");
    assert_eq!(
        sql(
            &pg,
            &format!("SELECT pga_closed_until('days') >= to_timestamp({midnight} / 1000.0)")
        ),
        "t"
    );
    // pga_summary over a range made of minutes, hours, a whole day (the day before
    // `midnight`, read from samples_1d), hours and minutes again, against the raw
    // samples of the range.
    let (from, to) = (midnight - DAY_MS - 37 * 60_000, midnight + 83 * 60_000);
    for metric in ["c_a_total", "c_b_total", "g"] {
        for f in ["avg", "min", "max", "last", "increase", "rate"] {
            let reference = match f {
                "avg" => "sum(value) / count(*)",
                "min" => "min(value)",
                "max" => "max(value)",
                "last" => "(array_agg(value ORDER BY ts DESC))[1]",
                "increase" => "sum(inc)",
                _ => "sum(inc) / nullif(sum(secs), 0)",
            };
            let off = sql(
                &pg,
                &format!(
                    "WITH p AS ( \
                         SELECT s.series_id, s.ts, s.value, se.kind, \
                                lag(s.value) OVER w AS prev, lag(s.ts) OVER w AS prev_ts \
                         FROM pga_samples s JOIN series se ON se.id = s.series_id \
                         WHERE se.metric = '{metric}' \
                         WINDOW w AS (PARTITION BY s.series_id ORDER BY s.ts)), \
                     b AS ( \
                         SELECT p.*, \
                                CASE WHEN p.kind <> 'counter' OR p.prev_ts IS NULL \
                                          OR p.ts - p.prev_ts > interval '180 seconds' THEN NULL \
                                     WHEN p.value >= p.prev THEN p.value - p.prev \
                                     ELSE p.value END AS inc, \
                                CASE WHEN p.kind <> 'counter' OR p.prev_ts IS NULL \
                                          OR p.ts - p.prev_ts > interval '180 seconds' THEN NULL \
                                     ELSE extract(epoch FROM p.ts - p.prev_ts)::float8 END AS secs \
                         FROM p \
                         WHERE p.ts >= to_timestamp({from} / 1000.0) \
                           AND p.ts < to_timestamp({to} / 1000.0)), \
                     want AS (SELECT series_id, {reference} AS value FROM b GROUP BY 1) \
                     SELECT count(*) FROM want \
                     FULL JOIN pga_summary('{metric}', '{f}', to_timestamp({from} / 1000.0), \
                                           to_timestamp({to} / 1000.0)) got USING (series_id) \
                     WHERE want.value IS DISTINCT FROM got.value"
                ),
            );
            assert_eq!(off, "0", "seed {seed}: pga_summary {metric} {f}");
        }
    }
    // A database migrated from before 0094 has hours but neither days nor a days
    // mark: the hours job writes them from the agent's oldest hour on.
    sql(
        &pg,
        "UPDATE closed_rollups SET days_until = NULL; DELETE FROM samples_1d",
    );
    let report = sink.close_hours(None, None).await.unwrap();
    assert!(report.complete, "{report:?}");
    assert_eq!(report.rows, 6, "{report:?}");
    assert_eq!(mismatches(&pg, "1 day", "samples_1d"), "", "seed {seed}");
    assert_eq!(sql(&pg, "SELECT count(*) FROM samples_1d"), "6");
    // The rollups are not trivially empty, and resets happened.
    let hours: i64 = sql(&pg, "SELECT count(*) FROM samples_1h").parse().unwrap();
    // (A typo in the reference above would also give 0 differences against no row.)
    assert_eq!(
        sql(
            &pg,
            &format!(
                "SELECT count(*) FROM pga_summary('c_a_total', 'increase', \
                 to_timestamp({from} / 1000.0), to_timestamp({to} / 1000.0)) WHERE value > 0"
            )
        ),
        "1"
    );
    assert!(hours >= 9, "{hours} hourly rows");
    assert_eq!(
        sql(
            &pg,
            "SELECT count(*) > 0 FROM metric_rollups_1m WHERE increase IS NOT NULL"
        ),
        "t"
    );
    assert_eq!(
        sql(
            &pg,
            "SELECT bool_and(increase IS NULL) FROM metric_rollups_1h WHERE metric = 'g'"
        ),
        "t"
    );
    // Both silences are marked, in every series.
    assert_eq!(
        sql(&pg, "SELECT count(*) FROM samples_1m WHERE after_gap"),
        "6"
    );
}
