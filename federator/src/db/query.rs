//! Series search and range queries over the central database.
//!
//! [`range`] is the one place that reads samples for the API: it picks the source
//! from the step ([`pick_source`]: raw samples below a minute, 1-minute rollups
//! below an hour, 1-hour rollups above) and evaluates the function per step
//! window. It is written against the tables of migrations/0002_metrics.sql and can
//! be pointed at the SQL query layer's functions once they exist.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, TimeZone, Utc};
use pga_selector::Selector;
use sqlx::{FromRow, PgPool};

/// The pseudo-label that matches the agent's name in API selectors.
pub const AGENT_LABEL: &str = "agent";

/// A stored series.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct SeriesInfo {
    pub id: i64,
    pub agent: String,
    pub metric: String,
    pub labels: BTreeMap<String, String>,
    /// `counter` or `gauge`.
    pub kind: String,
    pub unit: String,
    pub help: String,
}

#[derive(Debug, FromRow)]
struct SeriesRow {
    id: i64,
    agent: String,
    metric: String,
    labels: sqlx::types::Json<BTreeMap<String, String>>,
    kind: String,
    unit: String,
    help: String,
}

/// Series the selector matches (the `agent` label matches the agent's name), by
/// id, at most `limit`; looks at no more than `scan_limit` candidates from the
/// index (metric name and exact label values). Returns the series and whether the
/// answer was cut at `limit` or `scan_limit`.
pub async fn find_series(
    pool: &PgPool,
    selector: &Selector,
    limit: usize,
    scan_limit: i64,
) -> Result<(Vec<SeriesInfo>, bool), sqlx::Error> {
    let mut required = selector.required_labels();
    let agent = required.remove(AGENT_LABEL);
    let contains: BTreeMap<&str, &str> = required;
    // Only the conditions the selector has, so that the planner uses the index on
    // `metric` (or the GIN index on `labels`) instead of a generic plan.
    let mut conditions = vec!["TRUE".to_owned()];
    let mut n = 1;
    let mut next = || {
        n += 1;
        n
    };
    if selector.metric_name().is_some() {
        conditions.push(format!("s.metric = ${}", next()));
    }
    if !contains.is_empty() {
        conditions.push(format!("s.labels @> ${}", next()));
    }
    if agent.is_some() {
        conditions.push(format!("a.name = ${}", next()));
    }
    let sql = format!(
        "SELECT s.id, a.name AS agent, s.metric, s.labels, s.kind, s.unit, s.help \
         FROM series s JOIN agents a ON a.id = s.agent_id \
         WHERE {} ORDER BY s.id LIMIT $1",
        conditions.join(" AND ")
    );
    let mut q = sqlx::query_as::<_, SeriesRow>(&sql).bind(scan_limit);
    if let Some(m) = selector.metric_name() {
        q = q.bind(m);
    }
    if !contains.is_empty() {
        q = q.bind(sqlx::types::Json(&contains));
    }
    if let Some(a) = agent {
        q = q.bind(a);
    }
    let rows: Vec<SeriesRow> = q.fetch_all(pool).await?;
    let scanned_all = (rows.len() as i64) < scan_limit;
    let mut out = Vec::new();
    for r in rows {
        let mut labels = r.labels.0;
        let matched = {
            let mut with_agent = labels.clone();
            with_agent
                .entry(AGENT_LABEL.to_owned())
                .or_insert_with(|| r.agent.clone());
            selector.matches_map(&r.metric, &with_agent)
        };
        if !matched {
            continue;
        }
        if out.len() == limit {
            return Ok((out, true));
        }
        labels.remove("");
        out.push(SeriesInfo {
            id: r.id,
            agent: r.agent,
            metric: r.metric,
            labels,
            kind: r.kind,
            unit: r.unit,
            help: r.help,
        });
    }
    Ok((out, !scanned_all))
}

/// Where a query's points come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DataSource {
    Raw,
    #[serde(rename = "rollup_1m")]
    Rollup1m,
    #[serde(rename = "rollup_1h")]
    Rollup1h,
}

impl DataSource {
    /// The bucket width of the source, in milliseconds (1 for raw).
    pub const fn resolution_ms(self) -> i64 {
        match self {
            DataSource::Raw => 1,
            DataSource::Rollup1m => 60_000,
            DataSource::Rollup1h => 3_600_000,
        }
    }
}

/// The source for a step: the coarsest rollup no wider than the step. A step
/// below a minute reads raw samples, unless the range starts before
/// `raw_kept_from_ms` (raw samples of that time are gone), where 1-minute rollups
/// answer and the step is widened to a minute.
pub fn pick_source(start_ms: i64, step_ms: i64, raw_kept_from_ms: i64) -> DataSource {
    if step_ms >= 3_600_000 {
        DataSource::Rollup1h
    } else if step_ms >= 60_000 || start_ms < raw_kept_from_ms {
        DataSource::Rollup1m
    } else {
        DataSource::Raw
    }
}

/// The aggregation of each step window.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Function {
    Avg,
    Min,
    Max,
    Last,
    /// Counter increase per second over the window (resets handled).
    Rate,
    /// Counter increase over the window (resets handled).
    Increase,
}

impl Function {
    pub const fn needs_counter(self) -> bool {
        matches!(self, Function::Rate | Function::Increase)
    }
}

/// A query's effective window: `[start, end)` split into `step` windows aligned on
/// the source's buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start_ms: i64,
    pub end_ms: i64,
    pub step_ms: i64,
    pub source: DataSource,
}

impl Window {
    /// Aligns `start` down and widens `step` to whole buckets of the source.
    pub fn new(start_ms: i64, end_ms: i64, step_ms: i64, source: DataSource) -> Window {
        let r = source.resolution_ms();
        let step_ms = (step_ms.max(r) + r - 1) / r * r;
        Window {
            start_ms: start_ms - start_ms.rem_euclid(r),
            end_ms,
            step_ms,
            source,
        }
    }
}

/// Consecutive raw samples further apart than this are not used for an increase:
/// nothing is attributed across a stretch without data.
pub const MAX_INCREASE_SPAN_MS: i64 = 10 * 60_000;

fn ts(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

/// One row per series with its windows' start times (Unix ms) and values as two
/// arrays, ascending: far cheaper to send and decode than a row per point.
fn wrap(per_point: &str) -> String {
    format!(
        "SELECT series_id, array_agg((extract(epoch FROM b) * 1000)::bigint ORDER BY b), \
                array_agg(v ORDER BY b) \
         FROM ({per_point}) AS p(series_id, b, v) GROUP BY series_id"
    )
}

/// The value of `f` per window from rollup rows: the row's own columns when a window
/// is one row (`grouped` false), else their aggregate over the window's rows.
fn rollup_value(f: Function, grouped: bool, step_ms: i64) -> String {
    let of = |agg: &str, col: &str| {
        if grouped {
            format!("{agg}({col})")
        } else {
            col.to_owned()
        }
    };
    match f {
        Function::Avg => format!("{} / nullif({}, 0)", of("sum", "sum"), of("sum", "count")),
        Function::Min => of("min", "min"),
        Function::Max => of("max", "max"),
        Function::Last if grouped => "(array_agg(last ORDER BY bucket DESC))[1]".to_owned(),
        Function::Last => "last".to_owned(),
        Function::Increase => of("sum", "increase"),
        Function::Rate => format!("{} / {}", of("sum", "increase"), step_ms as f64 / 1000.0),
    }
}

/// The points of each series: `(window start ms, value)`, ascending; windows
/// without data are left out; a non-finite value is `None`.
pub async fn range(
    pool: &PgPool,
    series: &[i64],
    w: Window,
    f: Function,
) -> Result<HashMap<i64, Vec<(i64, Option<f64>)>>, sqlx::Error> {
    // Every statement binds $1 the series; those that put rows in windows $2 the
    // step; then the window's start and end; the raw increase also the longest span.
    // 1-hour rows need the hour up to which they are closed, as a value (migration
    // 0091): read first, and written into the statement (a timestamp from the
    // database, never from the request).
    let closed = if w.source == DataSource::Rollup1h {
        let (closed,): (String,) = sqlx::query_as("SELECT pga_closed_until('hours')::text")
            .fetch_one(pool)
            .await?;
        closed
    } else {
        String::new()
    };
    let (per_point, binned, span) = match (w.source, f) {
        (DataSource::Raw, Function::Rate | Function::Increase) => (
            "WITH s AS ( \
               SELECT series_id, ts, value, lag(value) OVER w AS pv, lag(ts) OVER w AS pts \
               FROM pga_raw($1, $3 - $5 * interval '1 millisecond', \
                            $4 - interval '1 microsecond') \
               WINDOW w AS (PARTITION BY series_id ORDER BY ts)) \
             SELECT series_id, date_bin($2::interval, ts, $3) AS b, \
                    sum(CASE WHEN pv IS NULL OR ts - pts > $5 * interval '1 millisecond' THEN 0 \
                             WHEN value >= pv THEN value - pv ELSE value END) \
             FROM s WHERE ts >= $3 GROUP BY 1, 2"
                .to_owned(),
            true,
            true,
        ),
        (DataSource::Raw, _) => {
            let agg = match f {
                Function::Avg => "avg(value)",
                Function::Min => "min(value)",
                Function::Max => "max(value)",
                _ => "(array_agg(value ORDER BY ts DESC))[1]",
            };
            (
                format!(
                    "SELECT series_id, date_bin($2::interval, ts, $3) AS b, {agg} \
                     FROM pga_raw($1, $3, $4 - interval '1 microsecond') \
                     GROUP BY 1, 2"
                ),
                true,
                false,
            )
        }
        (source, _) if w.step_ms == source.resolution_ms() => {
            // One rollup row per window: read the rows as they are, in index order.
            let table = rollup_table(source, "$2", "$3", &closed);
            let value = rollup_value(f, false, w.step_ms);
            (
                format!(
                    "SELECT series_id, bucket, {value} FROM {table} \
                     WHERE series_id = ANY($1) AND bucket >= $2 AND bucket < $3 \
                     ORDER BY series_id, bucket"
                ),
                false,
                false,
            )
        }
        (source, _) => {
            let table = rollup_table(source, "$3", "$4", &closed);
            let agg = rollup_value(f, true, w.step_ms);
            (
                format!(
                    "SELECT series_id, date_bin($2::interval, bucket, $3) AS b, {agg} \
                     FROM {table} WHERE series_id = ANY($1) AND bucket >= $3 AND bucket < $4 \
                     GROUP BY 1, 2"
                ),
                true,
                false,
            )
        }
    };
    let sql = wrap(&per_point);
    let mut q = sqlx::query_as::<_, (i64, Vec<i64>, Vec<Option<f64>>)>(&sql).bind(series);
    if binned {
        q = q.bind(format!("{} milliseconds", w.step_ms));
    }
    q = q.bind(ts(w.start_ms)).bind(ts(w.end_ms));
    if span {
        q = q.bind(MAX_INCREASE_SPAN_MS);
    }
    let rows = q.fetch_all(pool).await?;
    let mut out: HashMap<i64, Vec<(i64, Option<f64>)>> = HashMap::new();
    for (id, times, values) in rows {
        let points = times.into_iter().zip(values).map(|(t, v)| {
            let v = match (f, w.source, v) {
                (Function::Rate, DataSource::Raw, Some(x)) => Some(x / (w.step_ms as f64 / 1000.0)),
                (_, _, v) => v,
            };
            (t, v.filter(|x| x.is_finite()))
        });
        out.entry(id).or_default().extend(points);
    }
    Ok(out)
}

/// What a source reads, the series `$1` from `from` to `to` (placeholders): 1-hour
/// rows through `pga_rollups_in`, which also sums the minutes of the hours not closed
/// yet, those from `closed` (`pga_closed_until('hours')`; migration 0091).
fn rollup_table(source: DataSource, from: &str, to: &str, closed: &str) -> String {
    if source == DataSource::Rollup1h {
        format!("pga_rollups_in('hours', $1, {from}, {to}, timestamptz '{closed}')")
    } else {
        "samples_1m".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_source_follows_the_step_and_raw_retention() {
        assert_eq!(pick_source(0, 15_000, 0), DataSource::Raw);
        assert_eq!(pick_source(0, 60_000, 0), DataSource::Rollup1m);
        assert_eq!(pick_source(0, 300_000, 0), DataSource::Rollup1m);
        assert_eq!(pick_source(0, 3_600_000, 0), DataSource::Rollup1h);
        assert_eq!(pick_source(0, 15_000, 1), DataSource::Rollup1m);
    }

    #[test]
    fn windows_align_on_buckets() {
        let w = Window::new(90_000, 1_000_000, 90_000, DataSource::Rollup1m);
        assert_eq!((w.start_ms, w.step_ms), (60_000, 120_000));
        let w = Window::new(90_001, 1_000_000, 15_000, DataSource::Raw);
        assert_eq!((w.start_ms, w.step_ms), (90_001, 15_000));
    }
}
