//! Sink tests: a migrated sink on the test's database, and batches built from real
//! encoded blocks.

use std::time::Duration;

pub use super::{Central, central, central_alone, now_ms, sql};
use pga_federator::db::sink::{Sink, SinkOptions};
use pga_federator::pull::batch::{Batch, Cursor, Gap};
use pga_format::{
    AgentId, BlockBuilder, DEFAULT_ZSTD_LEVEL, DecodedBlock, FrameMeta, LogEvent, MetricKind,
    SeriesId, SeriesMeta, decode_block,
};

pub const AGENT: AgentId = AgentId([7; 16]);

/// Options for tests: short waits so an unavailable database fails fast.
pub fn options() -> SinkOptions {
    SinkOptions {
        acquire_timeout: Duration::from_secs(3),
        max_connections: 2,
        ..SinkOptions::default()
    }
}

/// A sink on the test's database, migrated.
pub async fn sink(pg: &Central) -> Sink {
    let sink = Sink::connect(&pg.url(), options()).await.expect("connect");
    sink.migrate().await.expect("migrate");
    sink
}

/// A round minute about `hours_ago` hours before now.
pub fn base_ms(hours_ago: i64) -> i64 {
    let t = now_ms() - hours_ago * 3_600_000;
    t - t.rem_euclid(60_000)
}

pub fn meta(id: u64, name: &str, labels: &[(&str, &str)], kind: MetricKind) -> SeriesMeta {
    SeriesMeta::new(
        SeriesId(id),
        name,
        pga_format::owned_labels(labels),
        kind,
        "",
        format!("help of {name}"),
    )
    .unwrap()
}

/// The two series of database `app` the sink's tests store: 0, transactions
/// committed (a counter, with `pg_instance` = `instance` when given), and 1, its
/// sessions (a gauge).
pub fn app_series(instance: Option<&str>) -> Vec<SeriesMeta> {
    let mut commit_labels = vec![("datname", "app")];
    commit_labels.extend(instance.map(|i| ("pg_instance", i)));
    vec![
        meta(
            0,
            "pg_stat_database_xact_commit_total",
            &commit_labels,
            MetricKind::Counter,
        ),
        meta(
            1,
            "pg_stat_database_numbackends",
            &[("datname", "app")],
            MetricKind::Gauge,
        ),
    ]
}

/// Encodes the collections (and log events) as a real block frame and decodes it.
pub fn block(
    agent: AgentId,
    sequence: u64,
    collections: &[(i64, Vec<(SeriesId, f64)>)],
    logs: &[LogEvent],
) -> DecodedBlock {
    let mut b = BlockBuilder::new();
    for (ts, samples) in collections {
        b.push_collection(*ts, samples).unwrap();
    }
    for e in logs {
        b.push_log_event(e.clone()).unwrap();
    }
    let bytes = b
        .encode(
            FrameMeta {
                agent_id: agent,
                sequence,
            },
            DEFAULT_ZSTD_LEVEL,
        )
        .unwrap();
    decode_block(&bytes).unwrap()
}

/// A batch of sealed `blocks` (cursor at the last one) with `series` new entries.
pub fn batch(
    agent: &str,
    series: Vec<SeriesMeta>,
    blocks: Vec<DecodedBlock>,
    head: Option<DecodedBlock>,
    gap: Option<Gap>,
    series_count: u64,
) -> Batch {
    let cursor = Cursor {
        last_sequence: blocks.last().map(|b| b.header.sequence),
        last_ts_ms: blocks.last().map(|b| b.header.max_ts),
        series_count,
    };
    batch_of(agent, AGENT, series, blocks, head, gap, cursor)
}

/// A batch of agent `agent_id` (configured as `agent`) with this cursor.
pub fn batch_of(
    agent: &str,
    agent_id: AgentId,
    series: Vec<SeriesMeta>,
    blocks: Vec<DecodedBlock>,
    head: Option<DecodedBlock>,
    gap: Option<Gap>,
    cursor: Cursor,
) -> Batch {
    Batch {
        agent: agent.to_owned(),
        agent_id,
        series: series.into_iter().map(|m| (m.id, m)).collect(),
        blocks,
        head,
        gap,
        cursor,
        complete_through_ms: None,
    }
}

/// Every stored sample of the series `metric` as `(ts_ms, value)`, oldest first.
pub fn stored(pg: &Central, metric: &str) -> Vec<(i64, f64)> {
    let out = sql(
        pg,
        &format!(
            "SELECT (extract(epoch FROM ts) * 1000)::bigint || '|' || value \
             FROM metric_samples WHERE metric = '{metric}' ORDER BY ts"
        ),
    );
    out.lines()
        .map(|l| {
            let (ts, v) = l.split_once('|').unwrap();
            (ts.parse().unwrap(), v.parse().unwrap())
        })
        .collect()
}

/// Every 10-minute rollup, as readers see it (migration 0091), for
/// [`rollup_mismatches`].
pub const PGA_TENS: &str = "pga_rollups_in('tens', ARRAY(SELECT id FROM series), '-infinity', 'infinity', \
     pga_closed_until('tens'))";

/// Rows of the reference aggregate (docs/central-database.md, "Rollups"), computed by a GROUP BY
/// over the raw samples and the recorded gaps, that differ from the stored rollup,
/// or exist on one side only, for `width` ('1 minute' or '1 hour') and rollup table
/// `table`; `max_silence_secs` as the sink's. Empty when they all agree.
pub fn rollup_mismatches(pg: &Central, width: &str, table: &str, max_silence_secs: u64) -> String {
    sql(
        pg,
        &format!(
            "WITH p AS ( \
                 SELECT s.series_id, s.ts, s.value, se.kind, se.agent_id, \
                        lag(s.value) OVER w AS prev, lag(s.ts) OVER w AS prev_ts \
                 FROM pga_samples s JOIN series se ON se.id = s.series_id \
                 WINDOW w AS (PARTITION BY s.series_id ORDER BY s.ts)), \
             b AS ( \
                 SELECT p.*, p.prev_ts IS NOT NULL AND ( \
                            p.ts - p.prev_ts > interval '{max_silence_secs} seconds' \
                            OR EXISTS (SELECT FROM gaps g WHERE g.agent_id = p.agent_id \
                                       AND g.after_ts >= p.prev_ts AND g.after_ts < p.ts)) \
                        AS broken \
                 FROM p), \
             ref AS ( \
                 SELECT series_id, date_bin('{width}', ts, timestamptz 'epoch') AS bucket, \
                        count(*) AS count, sum(value) AS sum, min(value) AS min, \
                        max(value) AS max, (array_agg(value ORDER BY ts DESC))[1] AS last, \
                        CASE WHEN kind = 'counter' THEN \
                            sum(CASE WHEN value >= prev THEN value - prev ELSE value END) \
                                FILTER (WHERE prev_ts IS NOT NULL AND NOT broken) END AS increase, \
                        CASE WHEN kind = 'counter' THEN \
                            (sum(extract(epoch FROM ts - prev_ts)) \
                                FILTER (WHERE prev_ts IS NOT NULL AND NOT broken))::float8 \
                        END AS increase_secs, \
                        bool_or(broken) AS after_gap \
                 FROM b GROUP BY series_id, bucket, kind) \
             SELECT string_agg(coalesce(ref.series_id, r.series_id) || '@' \
                               || coalesce(ref.bucket, r.bucket), ', ') \
             FROM ref FULL JOIN {table} r USING (series_id, bucket) \
             WHERE (ref.count, ref.sum, ref.min, ref.max, ref.last, ref.increase, \
                    ref.increase_secs, ref.after_gap) \
                   IS DISTINCT FROM (r.count, r.sum, r.min, r.max, r.last, r.increase, \
                                     r.increase_secs, r.after_gap)"
        ),
    )
}
