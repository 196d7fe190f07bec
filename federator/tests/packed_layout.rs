//! Raw samples in both forms (migrations/0080_packed_samples.sql,
//! 0081_packed_query.sql): the same random series stored once as rows and once
//! packed (shared timestamps per window, constant windows as one value, windows of
//! one series that overlap in time, some samples left as rows) give the same answers
//! from every reader of the query layer and of the federator; a packed row damaged
//! by hand is reported with its series and window, and ranges beside it still read.

mod support;

use std::collections::HashMap;
use std::sync::OnceLock;

use pga_federator::alerting::data::{WindowRequest, read_windows};
use pga_federator::db::query::{self, DataSource, Function, Window};
use pga_format::{MetricKind, SeriesId};
use proptest::collection::vec;
use proptest::prelude::*;
use sqlx::PgPool;
use support::sink::*;

/// The series of the test's agent (id 1): id, metric, labels, kind. Series 1 and 4
/// have a sample at every collection, so their packed windows share timestamps.
const SERIES: [(i64, &str, &str, &str); 4] = [
    (1, "c_total", r#"{"k": "a"}"#, "counter"),
    (2, "c_total", r#"{"k": "b"}"#, "counter"),
    (3, "g", "{}", "gauge"),
    (4, "h_flat", "{}", "gauge"),
];

/// Longest span of a packed window (0080: a window spans less than an hour).
const WINDOW_MS: i64 = 3_600_000;

/// One case: collections of the agent, what each series has at each, and how the
/// packed database stores it.
#[derive(Debug, Clone)]
struct Case {
    /// From one collection to the next, in half seconds (silences included).
    steps: Vec<u16>,
    /// Per collection and series: a draw for presence and one for the value.
    cells: Vec<[(u8, u8); 4]>,
    /// Collections per segment, used in turn.
    segments: Vec<u8>,
    /// Per segment and series, used in turn (mod 5): 0 rows; 1, 2 one packed
    /// window; 3 two interleaved packed windows (overlapping in time); 4 every other
    /// sample packed, the others rows.
    layouts: Vec<[u8; 4]>,
    /// A recorded gap of the agent after this collection (mod their number).
    gap: Option<u16>,
    /// A late block: samples 250 ms after the collections of this range (fractions
    /// of their number), written through the sink into both databases.
    late: (u16, u16),
    queries: Vec<Query>,
}

#[derive(Debug, Clone)]
struct Query {
    /// The series read (bit set, mod 15, plus 1).
    series: u8,
    /// The range's ends, as fractions of the data's span (widened by 5 minutes).
    a: u16,
    b: u16,
    /// Move both ends onto the nearest collection, to hit the inclusive bounds.
    snap: bool,
    step: u8,
    lookback: u8,
}

fn cases() -> impl Strategy<Value = Case> {
    (20usize..160).prop_flat_map(|n| {
        (
            // Mostly 10 to 60 s, some silences past max_silence, a few past an hour.
            vec(
                prop_oneof![16 => 20u16..120, 4 => 120u16..800, 1 => 7_200u16..20_000],
                n,
            ),
            vec(any::<[(u8, u8); 4]>(), n),
            vec(1u8..40, 1..12),
            vec(any::<[u8; 4]>(), 1..12),
            proptest::option::of(any::<u16>()),
            (any::<u16>(), any::<u16>()),
            vec(
                (
                    any::<u8>(),
                    any::<u16>(),
                    any::<u16>(),
                    any::<bool>(),
                    any::<u8>(),
                    any::<u8>(),
                )
                    .prop_map(|(series, a, b, snap, step, lookback)| Query {
                        series,
                        a,
                        b,
                        snap,
                        step,
                        lookback,
                    }),
                3..7,
            ),
        )
            .prop_map(
                |(steps, cells, segments, mut layouts, gap, late, queries)| {
                    // At least one packed window in every case.
                    layouts[0][0] = 1;
                    Case {
                        steps,
                        cells,
                        segments,
                        layouts,
                        gap,
                        late,
                        queries,
                    }
                },
            )
    })
}

/// The case's samples per series `(ts_ms, value)`, ascending, and the collection
/// times. Values are multiples of 0.5 and times of 500 ms, so every sum is exact
/// in any order.
fn samples(case: &Case, base_ms: i64) -> (Vec<Vec<(i64, f64)>>, Vec<i64>) {
    let mut out = vec![Vec::new(); SERIES.len()];
    let mut times = Vec::new();
    let mut t = base_ms;
    let mut value = [0.0, 100.0, 0.0, 3.0];
    for (step, cells) in case.steps.iter().zip(&case.cells) {
        t += i64::from(*step) * 500;
        times.push(t);
        for (s, &(present, draw)) in cells.iter().enumerate() {
            value[s] = match s {
                0 | 1 if draw >= 250 => f64::from(draw - 250),
                0 | 1 => value[s] + f64::from(draw % 40) * 0.5,
                2 => (f64::from(draw) - 100.0) * 0.5,
                _ if draw >= 245 => f64::from(draw % 7),
                _ => value[s],
            };
            // Series 2 and 3 miss some collections (the last one too: their newest
            // sample may then be packed, which the sink must find before a late
            // block); 1 and 4 never do.
            if s == 0 || s == 3 || present % 10 != 0 {
                out[s].push((t, value[s]));
            }
        }
    }
    (out, times)
}

/// The packed database's content: rows, `sample_times` rows `(id, lo, offsets)`
/// and `samples_packed` rows `(series, lo, hi, times_id, vals)`.
#[derive(Default)]
struct Packed {
    rows: Vec<(i64, i64, f64)>,
    times: Vec<(i64, i64, Vec<i32>)>,
    windows: Vec<(i64, i64, i64, i64, Vec<f64>)>,
    by_times: HashMap<(i64, Vec<i32>), i64>,
}

impl Packed {
    fn window(&mut self, series: i64, samples: &[(i64, f64)]) {
        let Some(&(lo, first)) = samples.first() else {
            return;
        };
        let hi = samples[samples.len() - 1].0;
        assert!(hi - lo < WINDOW_MS);
        let offsets: Vec<i32> = samples.iter().map(|&(t, _)| (t - lo) as i32).collect();
        let next = self.times.len() as i64 + 1;
        let times_id = *self.by_times.entry((lo, offsets.clone())).or_insert(next);
        if times_id == next {
            self.times.push((times_id, lo, offsets));
        }
        let vals = if samples.iter().all(|&(_, v)| v == first) {
            vec![first]
        } else {
            samples.iter().map(|&(_, v)| v).collect()
        };
        self.windows.push((series, lo, hi, times_id, vals));
    }

    fn rows(&mut self, series: i64, samples: &[(i64, f64)]) {
        self.rows
            .extend(samples.iter().map(|&(t, v)| (series, t, v)));
    }
}

fn every_other(samples: &[(i64, f64)], first: usize) -> Vec<(i64, f64)> {
    samples.iter().skip(first).step_by(2).copied().collect()
}

/// Cuts the collections into segments (each shorter than an hour) and stores each
/// series' samples of a segment as its layout says; the newest segment as rows.
fn pack(case: &Case, per_series: &[Vec<(i64, f64)>], times: &[i64]) -> Packed {
    let mut packed = Packed::default();
    let mut next = vec![0usize; per_series.len()];
    let (mut i, mut k) = (0usize, 0usize);
    while i < times.len() {
        let mut end = (i + usize::from(case.segments[k % case.segments.len()])).min(times.len());
        while times[end - 1] - times[i] >= WINDOW_MS {
            end -= 1;
        }
        // The newest segment is the open head: rows, as the sink keeps it.
        let layout = if end == times.len() {
            [0; 4]
        } else {
            case.layouts[k % case.layouts.len()]
        };
        for (s, samples) in per_series.iter().enumerate() {
            let from = next[s];
            let mut to = from;
            while to < samples.len() && samples[to].0 <= times[end - 1] {
                to += 1;
            }
            next[s] = to;
            let part = &samples[from..to];
            let id = SERIES[s].0;
            match layout[s] % 5 {
                0 => packed.rows(id, part),
                1 | 2 => packed.window(id, part),
                3 => {
                    packed.window(id, &every_other(part, 0));
                    packed.window(id, &every_other(part, 1));
                }
                _ => {
                    packed.window(id, &every_other(part, 0));
                    packed.rows(id, &every_other(part, 1));
                }
            }
        }
        i = end;
        k += 1;
    }
    packed
}

/// The binary's two central databases (rows; packed) on the shared cluster, and
/// the runtime their pools live on.
struct Lab {
    rt: tokio::runtime::Runtime,
    rows: PgPool,
    packed: PgPool,
    /// Their URLs, for sinks.
    urls: Vec<String>,
    base_ms: i64,
}

fn lab() -> &'static Lab {
    static LAB: OnceLock<Lab> = OnceLock::new();
    LAB.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let base_ms = base_ms(48);
        let (rows, packed, urls) = rt.block_on(async {
            let mut pools = Vec::new();
            let mut urls = Vec::new();
            for _ in 0..2 {
                let pg = central();
                // The agent and its series as the sink registers them (agent 1,
                // series 1 to 4 in SERIES order, checked below).
                let first = sink(&pg).await;
                let metas = SERIES
                    .iter()
                    .enumerate()
                    .map(|(i, &(_, metric, _, kind))| {
                        let labels: &[(&str, &str)] = match i {
                            0 => &[("k", "a")],
                            1 => &[("k", "b")],
                            _ => &[],
                        };
                        let kind = if kind == "counter" {
                            MetricKind::Counter
                        } else {
                            MetricKind::Gauge
                        };
                        meta(i as u64, metric, labels, kind)
                    })
                    .collect();
                let one: Vec<(SeriesId, f64)> = (0..SERIES.len())
                    .map(|i| (SeriesId(i as u64), 0.0))
                    .collect();
                first
                    .ingest(&batch(
                        "db1",
                        metas,
                        vec![block(AGENT, 1, &[(base_ms - 86_400_000, one)], &[])],
                        None,
                        None,
                        SERIES.len() as u64,
                    ))
                    .await
                    .unwrap();
                drop(first);
                let pool = PgPool::connect(&pg.url()).await.unwrap();
                sqlx::raw_sql(&format!(
                    "SELECT pga_ensure_partitions(ARRAY(
                         SELECT generate_series(t - interval '1 day', t + interval '2 days',
                                                interval '6 hours')
                         FROM (SELECT timestamptz 'epoch' + {base_ms} * interval '1 millisecond'
                               AS t) b));"
                ))
                .execute(&pool)
                .await
                .unwrap();
                for (id, metric, labels, _) in SERIES {
                    let (found,): (i64,) = sqlx::query_as(
                        "SELECT se.id FROM series se JOIN agents a ON a.id = se.agent_id \
                         WHERE a.id = 1 AND a.name = 'db1' AND se.metric = $1 \
                           AND se.labels = $2::jsonb",
                    )
                    .bind(metric)
                    .bind(labels)
                    .fetch_one(&pool)
                    .await
                    .unwrap();
                    assert_eq!(found, id, "{metric} {labels}");
                }
                pools.push(pool);
                urls.push(pg.url());
            }
            (pools.remove(0), pools.remove(0), urls)
        });
        Lab {
            rt,
            rows,
            packed,
            urls,
            base_ms,
        }
    })
}

const TRUNCATE: &str =
    "TRUNCATE samples, samples_packed, sample_times, gaps, samples_1m, samples_1h";

const ROWS: &str = "\
INSERT INTO samples (series_id, ts, value)
SELECT i, timestamptz 'epoch' + t * interval '1 millisecond', v
FROM unnest($1::bigint[], $2::bigint[], $3::float8[]) AS x (i, t, v)";

const TIMES: &str = "\
INSERT INTO sample_times (id, lo, agent_id, offsets)
SELECT i, timestamptz 'epoch' + lo * interval '1 millisecond', 1, o::integer[]
FROM unnest($1::bigint[], $2::bigint[], $3::text[]) AS x (i, lo, o)";

const WINDOWS: &str = "\
INSERT INTO samples_packed (series_id, lo, hi, times_id, vals)
SELECT i, timestamptz 'epoch' + lo * interval '1 millisecond',
       timestamptz 'epoch' + hi * interval '1 millisecond', t, v::float8[]
FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[], $5::text[])
     AS x (i, lo, hi, t, v)";

const GAP: &str = "\
INSERT INTO gaps (agent_id, agent_uid, first_sequence, last_sequence, after_ts, before_ts)
VALUES (1, gen_random_uuid(), 5, 6, timestamptz 'epoch' + $1 * interval '1 millisecond',
        timestamptz 'epoch' + $2 * interval '1 millisecond')";

fn array_text<T: std::fmt::Debug>(xs: &[T]) -> String {
    let inner: Vec<String> = xs.iter().map(|x| format!("{x:?}")).collect();
    format!("{{{}}}", inner.join(","))
}

async fn insert_rows(pool: &PgPool, rows: &[(i64, i64, f64)]) {
    sqlx::query(ROWS)
        .bind(rows.iter().map(|r| r.0).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.1).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.2).collect::<Vec<_>>())
        .execute(pool)
        .await
        .unwrap();
}

async fn load(lab: &Lab, per_series: &[Vec<(i64, f64)>], packed: &Packed, gap: Option<(i64, i64)>) {
    for pool in [&lab.rows, &lab.packed] {
        sqlx::query(TRUNCATE).execute(pool).await.unwrap();
        if let Some((after, before)) = gap {
            sqlx::query(GAP)
                .bind(after)
                .bind(before)
                .execute(pool)
                .await
                .unwrap();
        }
    }
    let all: Vec<(i64, i64, f64)> = per_series
        .iter()
        .enumerate()
        .flat_map(|(s, xs)| xs.iter().map(move |&(t, v)| (SERIES[s].0, t, v)))
        .collect();
    insert_rows(&lab.rows, &all).await;
    insert_rows(&lab.packed, &packed.rows).await;
    sqlx::query(TIMES)
        .bind(packed.times.iter().map(|r| r.0).collect::<Vec<_>>())
        .bind(packed.times.iter().map(|r| r.1).collect::<Vec<_>>())
        .bind(
            packed
                .times
                .iter()
                .map(|r| array_text(&r.2))
                .collect::<Vec<_>>(),
        )
        .execute(&lab.packed)
        .await
        .unwrap();
    let w = &packed.windows;
    sqlx::query(WINDOWS)
        .bind(w.iter().map(|r| r.0).collect::<Vec<_>>())
        .bind(w.iter().map(|r| r.1).collect::<Vec<_>>())
        .bind(w.iter().map(|r| r.2).collect::<Vec<_>>())
        .bind(w.iter().map(|r| r.3).collect::<Vec<_>>())
        .bind(w.iter().map(|r| array_text(&r.4)).collect::<Vec<_>>())
        .execute(&lab.packed)
        .await
        .unwrap();
}

/// `(series, ts_ms, value)` rows of a statement whose binds are the series ids and
/// two times in ms.
type Rows = Vec<(i64, i64, Option<f64>)>;

async fn rows_of(pool: &PgPool, sql: &str, ids: &[i64], a: i64, b: i64) -> Rows {
    sqlx::query_as(sql)
        .bind(ids)
        .bind(a)
        .bind(b)
        .fetch_all(pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

const T1: &str = "timestamptz 'epoch' + $2 * interval '1 millisecond'";
const T2: &str = "timestamptz 'epoch' + $3 * interval '1 millisecond'";

fn ms(col: &str) -> String {
    format!("(extract(epoch FROM {col}) * 1000)::bigint")
}

/// Every statement the case's query asks, each on both databases.
async fn compare(lab: &Lab, q: &Query, per_series: &[Vec<(i64, f64)>], times: &[i64]) {
    let (first, last) = (times[0], times[times.len() - 1]);
    let (lo, span) = (first - 300_000, last - first + 600_000);
    let at = |f: u16| {
        let t = lo + span * i64::from(f) / i64::from(u16::MAX);
        if q.snap {
            *times.iter().min_by_key(|&&x| (x - t).abs()).unwrap()
        } else {
            t
        }
    };
    let (from, to) = (at(q.a).min(at(q.b)), at(q.a).max(at(q.b)));
    let mask = q.series % 15 + 1;
    let picked: Vec<usize> = (0..SERIES.len()).filter(|s| mask & (1 << s) != 0).collect();
    let ids: Vec<i64> = picked.iter().map(|&s| SERIES[s].0).collect();
    let step_ms =
        [1_000i64, 7_000, 15_000, 30_000, 45_000, 90_000, 150_000][usize::from(q.step % 7)];
    let lookback_ms = [60_000i64, 600_000, 3_600_000][usize::from(q.lookback % 3)];
    let metric = SERIES[picked[0]].1;

    let raw = format!(
        "SELECT series_id, {}, value FROM pga_raw($1, {T1}, {T2}) ORDER BY 1, 2",
        ms("ts")
    );
    let want: Rows = picked
        .iter()
        .flat_map(|&s| {
            per_series[s]
                .iter()
                .filter(|&&(t, _)| from <= t && t <= to)
                .map(move |&(t, v)| (SERIES[s].0, t, Some(v)))
        })
        .collect();
    let got = rows_of(&lab.rows, &raw, &ids, from, to).await;
    assert_eq!(got, want, "pga_raw on rows, {from}..={to}");
    assert_eq!(
        rows_of(&lab.packed, &raw, &ids, from, to).await,
        want,
        "pga_raw on packed, {from}..={to}"
    );

    // The neighbours of both ends, of the first series.
    let mut statements: Vec<(String, String)> = ["pga_raw_before", "pga_raw_after"]
        .iter()
        .map(|f| {
            let ts = ms("ts");
            (
                (*f).to_owned(),
                format!(
                    "SELECT $1[1], {ts}, value FROM {f}($1[1], {T1}) \
                     UNION ALL SELECT $1[1], {ts}, value FROM {f}($1[1], {T2})"
                ),
            )
        })
        .collect();
    statements.extend([
        (
            "pga_latest".to_owned(),
            format!(
                "SELECT series_id, {}, value FROM pga_latest('{metric}', p_at => {T2}, \
                     p_lookback => {lookback_ms} * interval '1 millisecond') \
                 WHERE $1 IS NOT NULL AND $2 IS NOT NULL",
                ms("time")
            ),
        ),
        (
            "pga_samples".to_owned(),
            format!(
                "SELECT series_id, {}, value FROM pga_samples \
                 WHERE series_id = ANY ($1) AND ts >= {T1} AND ts <= {T2} ORDER BY 1, 2",
                ms("ts")
            ),
        ),
    ]);
    for f in ["avg", "min", "max", "last", "increase", "rate"] {
        statements.push((
            format!("pga_range {f} step {step_ms} ms"),
            format!(
                "SELECT series_id, {}, value FROM pga_range('{metric}', '{f}', {T1}, {T2}, \
                     {step_ms} * interval '1 millisecond') \
                 WHERE $1 IS NOT NULL",
                ms("time")
            ),
        ));
    }
    for (what, sql) in &statements {
        let on_rows = rows_of(&lab.rows, sql, &ids, from, to).await;
        let on_packed = rows_of(&lab.packed, sql, &ids, from, to).await;
        assert_eq!(on_rows, on_packed, "{what} over {from}..={to} of {ids:?}");
    }

    // The federator's own readers: the API's query route and alerting's windows.
    let window = Window::new(from, to, step_ms, DataSource::Raw);
    for f in [
        Function::Avg,
        Function::Min,
        Function::Max,
        Function::Last,
        Function::Increase,
        Function::Rate,
    ] {
        let on_rows = query::range(&lab.rows, &ids, window, f).await.unwrap();
        let on_packed = query::range(&lab.packed, &ids, window, f).await.unwrap();
        assert_eq!(on_rows, on_packed, "query::range {f:?} over {window:?}");
    }
    let requests: Vec<WindowRequest> = ids
        .iter()
        .enumerate()
        .map(|(k, &series_id)| WindowRequest {
            series_id,
            raw: vec![(from, to)],
            // Every other series with the sample before the range: the other
            // statement of read_windows.
            prev_after: (k % 2 == 0).then_some(from - lookback_ms),
            buckets: None,
        })
        .collect();
    let on_rows = read_windows(&lab.rows, &requests).await.unwrap();
    let on_packed = read_windows(&lab.packed, &requests).await.unwrap();
    assert_eq!(on_rows, on_packed, "alerting windows {requests:?}");
}

/// The late block of the case through a new sink into both databases (the sink
/// recomputes the rollups it touches from the stored samples around it: rollup.rs,
/// WIDEN and ROLLUP_1M), then both databases' rollups, which must be the same.
async fn late_block(lab: &Lab, case: &Case, per_series: &[Vec<(i64, f64)>], times: &[i64]) {
    let n = times.len();
    let (a, b) = (
        usize::from(case.late.0) * n / 65_536,
        usize::from(case.late.1) * n / 65_536,
    );
    let (a, b) = (a.min(b), a.max(b).min(n - 1));
    let mut collections = Vec::new();
    for &t in &times[a..=b] {
        // Each series' value at the collection before, so counters stay monotone.
        let samples: Vec<(SeriesId, f64)> = per_series
            .iter()
            .enumerate()
            .filter_map(|(s, xs)| {
                xs.iter()
                    .find(|&&(x, _)| x == t)
                    .map(|&(_, v)| (SeriesId(s as u64), v))
            })
            .collect();
        if !samples.is_empty() {
            collections.push((t + 250, samples));
        }
    }
    if collections.is_empty() {
        return;
    }
    let late = block(AGENT, 2, &collections, &[]);
    for url in &lab.urls {
        let sink = pga_federator::db::sink::Sink::connect(url, options())
            .await
            .unwrap();
        sink.ingest(&batch("db1", vec![], vec![late.clone()], None, None, 4))
            .await
            .unwrap();
    }
    for table in ["samples_1m", "pga_hours"] {
        let sql = format!(
            "SELECT series_id, {}, count::float8, sum, min, max, last, increase, \
                    increase_secs, after_gap \
             FROM {table} ORDER BY 1, 2",
            ms("bucket")
        );
        type Rollup = (
            i64,
            i64,
            f64,
            f64,
            f64,
            f64,
            f64,
            Option<f64>,
            Option<f64>,
            Option<bool>,
        );
        let on_rows: Vec<Rollup> = sqlx::query_as(&sql).fetch_all(&lab.rows).await.unwrap();
        let on_packed: Vec<Rollup> = sqlx::query_as(&sql).fetch_all(&lab.packed).await.unwrap();
        assert!(
            !on_rows.is_empty(),
            "{table}: the late block made no rollups"
        );
        assert_eq!(
            on_rows, on_packed,
            "{table} after a late block over {a}..={b}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn the_query_layer_answers_the_same_from_rows_and_from_packed_windows(case in cases()) {
        let lab = lab();
        let (per_series, times) = samples(&case, lab.base_ms);
        let packed = pack(&case, &per_series, &times);
        let gap = case.gap.map(|g| {
            let i = usize::from(g) % times.len();
            (times[i], times.get(i + 1).copied().unwrap_or(times[i] + 1_000))
        });
        lab.rt.block_on(async {
            load(lab, &per_series, &packed, gap).await;
            for q in &case.queries {
                compare(lab, q, &per_series, &times).await;
            }
            late_block(lab, &case, &per_series, &times).await;
        });
    }
}

/// A packed window of series `series` at `lo` (ms) with these offsets, `hi` and
/// values, written as-is (sample_times id = series id).
async fn put_window(pool: &PgPool, series: i64, lo: i64, hi: i64, offsets: &[i32], vals: &[f64]) {
    sqlx::query(TIMES)
        .bind(vec![series * 100 + lo % 97])
        .bind(vec![lo])
        .bind(vec![array_text(offsets)])
        .execute(pool)
        .await
        .unwrap();
    sqlx::query(WINDOWS)
        .bind(vec![series])
        .bind(vec![lo])
        .bind(vec![hi])
        .bind(vec![series * 100 + lo % 97])
        .bind(vec![array_text(vals)])
        .execute(pool)
        .await
        .unwrap();
}

#[test]
fn a_damaged_packed_row_is_reported_with_its_series_and_window() {
    let lab = lab();
    // A database of its own: the property test truncates the lab's.
    lab.rt.block_on(async {
        let pg = central();
        drop(sink(&pg).await);
        let pool = PgPool::connect(&pg.url()).await.unwrap();
        let t = lab.base_ms;
        sqlx::raw_sql(&format!(
            "INSERT INTO agents (id, name) OVERRIDING SYSTEM VALUE VALUES (1, 'db1');
             INSERT INTO series (id, agent_id, metric, kind) OVERRIDING SYSTEM VALUE
             VALUES (11, 1, 'm11', 'gauge'), (12, 1, 'm12', 'gauge'), (13, 1, 'm13', 'gauge');
             SELECT pga_ensure_partitions(ARRAY[timestamptz 'epoch' + {t} * interval '1 millisecond',
                 timestamptz 'epoch' + {t} * interval '1 millisecond' + interval '1 day'])"
        ))
        .execute(&pool)
        .await
        .unwrap();
        let hour = 3_600_000;
        for series in [11, 12, 13] {
            // A sound window two hours later, to read beside the damaged one.
            put_window(&pool, series, t + 2 * hour, t + 2 * hour + 20_000, &[0, 10_000, 20_000], &[
                1.0, 2.0, 3.0,
            ])
            .await;
        }
        // Values of another length; timestamps out of order; timestamps that stop
        // short of hi.
        put_window(&pool, 11, t, t + 30_000, &[0, 10_000, 20_000, 30_000], &[1.0, 2.0, 3.0]).await;
        put_window(&pool, 12, t, t + 30_000, &[0, 20_000, 10_000, 30_000], &[1.0, 2.0, 3.0, 4.0])
            .await;
        put_window(&pool, 13, t, t + 40_000, &[0, 10_000, 20_000, 30_000], &[1.0, 2.0, 3.0, 4.0])
            .await;
        let (lo_text,): (String,) = sqlx::query_as(&format!(
            "SELECT (timestamptz 'epoch' + {t} * interval '1 millisecond')::text"
        ))
        .fetch_one(&pool)
        .await
        .unwrap();
        for (series, what) in [
            (11, "4 timestamps but 3 values"),
            (12, "not in ascending order"),
            (13, "do not run from lo to hi"),
        ] {
            for sql in [
                "SELECT count(*) FROM pga_raw($1, {T1}, {T2})",
                "SELECT count(*) FROM pga_range('m' || $1[1], 'avg', {T1}, {T2}, \
                                                interval '15 seconds')",
                // The newest value a minute after the damaged window.
                "SELECT count(*) FROM pga_latest('m' || $1[1], \
                                                 p_at => {T1} + interval '1 hour 1 minute') \
                 WHERE {T2} IS NOT NULL",
            ] {
                let sql = sql.replace("{T1}", T1).replace("{T2}", T2);
                let err = sqlx::query_as::<_, (i64,)>(&sql)
                    .bind(vec![series])
                    .bind(t - hour)
                    .bind(t + 3 * hour)
                    .fetch_one(&pool)
                    .await
                    .expect_err("a damaged row must not be read");
                let msg = err.to_string();
                assert!(
                    msg.contains(&format!("packed samples of series {series} in the window starting {lo_text}"))
                        && msg.contains(what),
                    "{sql}: {msg}"
                );
            }
            // The range beside it reads.
            let (n,): (i64,) = sqlx::query_as(&format!(
                "SELECT count(*) FROM pga_raw($1, {T1}, {T2})"
            ))
            .bind(vec![series])
            .bind(t + hour + 60_000)
            .bind(t + 3 * hour)
            .fetch_one(&pool)
            .await
            .unwrap();
            assert_eq!(n, 3, "series {series}");
        }
    });
}
