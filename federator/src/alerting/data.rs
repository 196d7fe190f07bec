//! What the evaluator reads from the central database.
//!
//! - [`SeriesIndex`]: the series of the metrics the rules use, per agent, with their
//!   labels (shared strings), refreshed incrementally by series id;
//! - [`read_windows`]: **the** read of samples and rollups for evaluation — every
//!   query of a cycle goes through it, so it can be pointed at a SQL query layer
//!   later without touching the evaluator;
//! - [`load_agents`], [`load_gaps`]: each agent's watermark, evaluation position and
//!   recorded gaps; [`federator_view`]: the federator's own per-agent metrics
//!   ([`super::rule::FEDERATOR_METRICS`]) at wall-clock time.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use sqlx::{PgPool, Row};

use super::expr::{Selector, WindowFn};
use super::labels::{Interner, LabelSet, Labels, Str};
use super::window::{self, Bucket, Point, SeriesData};

/// One indexed series.
#[derive(Debug, Clone)]
pub struct IndexedSeries {
    pub id: i64,
    pub labels: Labels,
}

/// The series of the metrics rules use, by agent and metric.
#[derive(Debug, Default)]
pub struct SeriesIndex {
    metrics: HashSet<String>,
    max_id: i64,
    /// Metric → agent → series.
    by_metric: HashMap<Str, HashMap<i64, Vec<IndexedSeries>>>,
    pub interner: Interner,
}

impl SeriesIndex {
    /// Brings the index up to date for `metrics` (reloading it when the set of
    /// metrics grew), labelling each series with its agent's name and labels.
    pub async fn refresh(
        &mut self,
        pool: &PgPool,
        metrics: &HashSet<String>,
        agents: &HashMap<i64, AgentInfo>,
    ) -> Result<(), sqlx::Error> {
        if !metrics.is_subset(&self.metrics) {
            self.metrics = metrics.clone();
            self.max_id = 0;
            self.by_metric.clear();
        }
        let wanted: Vec<&str> = self.metrics.iter().map(String::as_str).collect();
        if wanted.is_empty() {
            return Ok(());
        }
        let rows = sqlx::query(
            "SELECT id, agent_id, metric, labels FROM series \
             WHERE id > $1 AND metric = ANY($2) ORDER BY id",
        )
        .bind(self.max_id)
        .bind(&wanted)
        .fetch_all(pool)
        .await?;
        for r in &rows {
            let id: i64 = r.try_get("id")?;
            let agent_id: i64 = r.try_get("agent_id")?;
            self.max_id = self.max_id.max(id);
            let Some(agent) = agents.get(&agent_id) else {
                // An agent created after the agents were read: next cycle.
                self.max_id = self.max_id.min(id - 1);
                break;
            };
            let metric: &str = r.try_get("metric")?;
            let json: serde_json::Value = r.try_get("labels")?;
            let mut extra: Vec<(&str, &str)> = agent.labels.iter().collect();
            extra.push(("agent", &agent.name));
            let labels = self.interner.labels_from_json(&json, &extra);
            let metric = self.interner.get(metric);
            self.by_metric
                .entry(metric)
                .or_default()
                .entry(agent_id)
                .or_default()
                .push(IndexedSeries {
                    id,
                    labels: Arc::new(labels),
                });
        }
        Ok(())
    }

    /// The agent's series selected by `selector`.
    pub fn select(&self, agent_id: i64, selector: &Selector) -> Vec<&IndexedSeries> {
        self.by_metric
            .get(selector.metric.as_str())
            .and_then(|m| m.get(&agent_id))
            .map(|v| {
                v.iter()
                    .filter(|s| selector.matches(|n| s.labels.get(n)))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Series indexed.
    pub fn len(&self) -> usize {
        self.by_metric
            .values()
            .flat_map(|m| m.values())
            .map(Vec::len)
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What is read for one series: raw samples in `(from, to]` ranges, optionally the
/// last sample at or before the first range's start (for `rate` and `increase`,
/// no older than `prev_after`), and 1-minute rollups with a start in
/// `[buckets_from, buckets_to)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowRequest {
    pub series_id: i64,
    pub raw: Vec<(i64, i64)>,
    pub prev_after: Option<i64>,
    pub buckets: Option<(i64, i64)>,
}

impl WindowRequest {
    /// What evaluating `f` over a window of `range_ms` at every time of `steps`
    /// (ascending) needs:
    /// - `last`: the samples after the first step, and the newest one at or before
    ///   it within the window (nothing older matters, whatever the window);
    /// - windows read raw: the samples over the whole span (and, for `rate` and
    ///   `increase`, the one before it);
    /// - longer windows: raw samples at both edges and the whole minutes between.
    pub fn for_steps(
        series_id: i64,
        f: WindowFn,
        range_ms: i64,
        steps: &[i64],
        max_silence_ms: i64,
    ) -> Self {
        let (first, last) = (steps[0], steps[steps.len() - 1]);
        let counter = matches!(f, WindowFn::Rate | WindowFn::Increase);
        if f == WindowFn::Last {
            return WindowRequest {
                series_id,
                raw: vec![(first, last)],
                prev_after: Some(first - range_ms),
                buckets: None,
            };
        }
        let prev_after = counter.then_some(first - range_ms - max_silence_ms);
        if !window::uses_rollups(f, range_ms) {
            return WindowRequest {
                series_id,
                raw: vec![(first - range_ms, last)],
                prev_after,
                buckets: None,
            };
        }
        let (a0, b0) = window::bucket_span(first, range_ms);
        let (a1, b1) = window::bucket_span(last, range_ms);
        WindowRequest {
            series_id,
            raw: vec![(first - range_ms, a1), (b0 - 1, last)],
            prev_after,
            buckets: Some((a0, b1)),
        }
    }
}

/// Reads samples and rollups for `requests`, in chunks run concurrently over the
/// pool. Each series' data comes back ascending.
pub async fn read_windows(
    pool: &PgPool,
    requests: &[WindowRequest],
) -> Result<HashMap<i64, SeriesData>, sqlx::Error> {
    const CHUNK: usize = 8192;
    let mut tasks = tokio::task::JoinSet::new();
    for chunk in requests.chunks(CHUNK) {
        let pool = pool.clone();
        let chunk = chunk.to_vec();
        tasks.spawn(async move { read_chunk(&pool, &chunk).await });
    }
    let mut out: HashMap<i64, SeriesData> = HashMap::with_capacity(requests.len());
    while let Some(r) = tasks.join_next().await {
        let part = r.map_err(|e| sqlx::Error::Protocol(format!("a read task failed: {e}")))??;
        out.extend(part);
    }
    Ok(out)
}

async fn read_chunk(
    pool: &PgPool,
    requests: &[WindowRequest],
) -> Result<HashMap<i64, SeriesData>, sqlx::Error> {
    let mut ids = Vec::new();
    let mut lo = Vec::new();
    let mut hi = Vec::new();
    let mut prev = Vec::new();
    // The usual request of a cycle — the samples after what was read before — is read
    // for all series at once over the span of their ranges (one index scan over an
    // array of ids), and each series' own range is cut from it.
    let mut simple: Vec<(i64, i64, i64)> = Vec::new();
    for r in requests {
        if let ([(a, b)], None, None) = (r.raw.as_slice(), r.prev_after, r.buckets) {
            if a < b {
                simple.push((r.series_id, *a, *b));
            }
            continue;
        }
        for (i, &(a, b)) in r.raw.iter().enumerate() {
            let p = if i == 0 { r.prev_after } else { None };
            // An empty range still carries the sample before it.
            if a >= b && p.is_none() {
                continue;
            }
            ids.push(r.series_id);
            lo.push(a);
            hi.push(b);
            prev.push(p);
        }
    }
    let mut out: HashMap<i64, SeriesData> = requests
        .iter()
        .map(|r| (r.series_id, SeriesData::default()))
        .collect();
    let rows = if ids.is_empty() {
        Vec::new()
    } else {
        sqlx::query(
            "SELECT r.id, (extract(epoch FROM s.ts) * 1000)::bigint AS ts, s.value \
         FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[]) AS r(id, lo, hi, pf) \
         CROSS JOIN LATERAL ( \
             SELECT b.ts, b.value \
             FROM pga_raw_before(r.id, timestamptz 'epoch' + r.lo * interval '1 millisecond' \
                                       + interval '1 microsecond') b \
             WHERE r.pf IS NOT NULL \
               AND b.ts > timestamptz 'epoch' + r.pf * interval '1 millisecond' \
             UNION ALL \
             SELECT x.ts, x.value \
             FROM pga_raw(ARRAY[r.id], \
                          timestamptz 'epoch' + r.lo * interval '1 millisecond' \
                              + interval '1 microsecond', \
                          timestamptz 'epoch' + r.hi * interval '1 millisecond') x \
         ) s",
        )
        .bind(&ids)
        .bind(&lo)
        .bind(&hi)
        .bind(&prev)
        .fetch_all(pool)
        .await?
    };
    for row in &rows {
        let id: i64 = row.try_get(0)?;
        let ts: i64 = row.try_get(1)?;
        let value: f64 = row.try_get(2)?;
        if let Some(d) = out.get_mut(&id) {
            d.points.push(Point { ts, value });
        }
    }
    if !simple.is_empty() {
        let span_lo = simple.iter().map(|s| s.1).min().unwrap_or(0);
        let span_hi = simple.iter().map(|s| s.2).max().unwrap_or(0);
        let ranges: HashMap<i64, (i64, i64)> =
            simple.iter().map(|&(i, a, b)| (i, (a, b))).collect();
        let ids: Vec<i64> = simple.iter().map(|s| s.0).collect();
        let rows = sqlx::query(
            "SELECT series_id, (extract(epoch FROM ts) * 1000)::bigint, value \
             FROM pga_raw($1, \
                          timestamptz 'epoch' + $2::bigint * interval '1 millisecond' \
                              + interval '1 microsecond', \
                          timestamptz 'epoch' + $3::bigint * interval '1 millisecond')",
        )
        .bind(&ids)
        .bind(span_lo)
        .bind(span_hi)
        .fetch_all(pool)
        .await?;
        for row in &rows {
            let id: i64 = row.try_get(0)?;
            let ts: i64 = row.try_get(1)?;
            if let (Some(&(a, b)), Some(d)) = (ranges.get(&id), out.get_mut(&id))
                && ts > a
                && ts <= b
            {
                d.points.push(Point {
                    ts,
                    value: row.try_get(2)?,
                });
            }
        }
    }
    let (bid, blo, bhi): (Vec<i64>, Vec<i64>, Vec<i64>) = requests
        .iter()
        .filter_map(|r| r.buckets.map(|(a, b)| (r.series_id, a, b)))
        .filter(|(_, a, b)| a < b)
        .fold((vec![], vec![], vec![]), |mut acc, (i, a, b)| {
            acc.0.push(i);
            acc.1.push(a);
            acc.2.push(b);
            acc
        });
    if !bid.is_empty() {
        let rows = sqlx::query(
            "SELECT r.id, (extract(epoch FROM b.bucket) * 1000)::bigint AS start, b.count, b.sum, \
                    b.min, b.max, b.last, b.increase \
             FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS r(id, lo, hi) \
             CROSS JOIN LATERAL ( \
                 SELECT * FROM samples_1m \
                 WHERE series_id = r.id \
                   AND bucket >= timestamptz 'epoch' + r.lo * interval '1 millisecond' \
                   AND bucket < timestamptz 'epoch' + r.hi * interval '1 millisecond') b",
        )
        .bind(&bid)
        .bind(&blo)
        .bind(&bhi)
        .fetch_all(pool)
        .await?;
        for row in &rows {
            let id: i64 = row.try_get(0)?;
            if let Some(d) = out.get_mut(&id) {
                d.buckets.push(Bucket {
                    start: row.try_get(1)?,
                    count: row.try_get::<i64, _>(2)?.max(0) as u64,
                    sum: row.try_get(3)?,
                    min: row.try_get(4)?,
                    max: row.try_get(5)?,
                    last: row.try_get(6)?,
                    increase: row.try_get(7)?,
                });
            }
        }
    }
    for d in out.values_mut() {
        d.points.sort_by_key(|p| p.ts);
        d.points.dedup_by_key(|p| p.ts);
        d.buckets.sort_by_key(|b| b.start);
    }
    Ok(out)
}

/// What the evaluator knows of an agent.
#[derive(Debug, Clone)]
pub struct AgentInfo {
    pub id: i64,
    pub name: Str,
    /// `agents.labels` (added to every series of the agent).
    pub labels: LabelSet,
    /// The data watermark (ms), once the agent has data.
    pub watermark: Option<i64>,
    /// Evaluated through (ms).
    pub position: Option<i64>,
    /// When the federator last wrote its data (ms, wall clock).
    pub last_seen: Option<i64>,
    /// When its latest gap was recorded (ms, wall clock).
    pub last_gap: Option<i64>,
}

/// The enabled agents (those named in `only`, when given), with watermark and
/// evaluation position.
pub async fn load_agents(
    pool: &PgPool,
    only: Option<&HashSet<String>>,
    interner: &mut Interner,
) -> Result<Vec<AgentInfo>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT a.id, a.name, a.labels, c.watermark_ms, p.evaluated_through_ms, \
                (extract(epoch FROM a.last_seen_at) * 1000)::bigint AS seen_ms, \
                (SELECT (extract(epoch FROM max(g.recorded_at)) * 1000)::bigint \
                 FROM gaps g WHERE g.agent_id = a.id) AS gap_ms \
         FROM agents a \
         LEFT JOIN agent_cursors c ON c.agent_id = a.id \
         LEFT JOIN alert_positions p ON p.agent_id = a.id \
         WHERE a.enabled ORDER BY a.id",
    )
    .fetch_all(pool)
    .await?;
    let mut out = Vec::new();
    for r in &rows {
        let name: String = r.try_get("name")?;
        if only.is_some_and(|o| !o.contains(&name)) {
            continue;
        }
        let labels: serde_json::Value = r.try_get("labels")?;
        out.push(AgentInfo {
            id: r.try_get("id")?,
            name: interner.get(&name),
            labels: interner.labels_from_json(&labels, &[]),
            watermark: r.try_get("watermark_ms")?,
            position: r.try_get("evaluated_through_ms")?,
            last_seen: r.try_get("seen_ms")?,
            last_gap: r.try_get("gap_ms")?,
        });
    }
    Ok(out)
}

/// A recorded gap's bounds, `(after, before)` ms, each unknown when `None`.
pub type GapBounds = (Option<i64>, Option<i64>);

/// The recorded gaps of the agents that end after `since`.
pub async fn load_gaps(
    pool: &PgPool,
    agents: &[i64],
    since: i64,
) -> Result<HashMap<i64, Vec<GapBounds>>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT agent_id, (extract(epoch FROM after_ts) * 1000)::bigint, \
                (extract(epoch FROM before_ts) * 1000)::bigint \
         FROM gaps WHERE agent_id = ANY($1) \
           AND (before_ts IS NULL OR before_ts > timestamptz 'epoch' + $2 * interval '1 millisecond')",
    )
    .bind(agents)
    .bind(since)
    .fetch_all(pool)
    .await?;
    let mut out: HashMap<i64, Vec<GapBounds>> = HashMap::new();
    for r in &rows {
        out.entry(r.try_get(0)?)
            .or_default()
            .push((r.try_get(1)?, r.try_get(2)?));
    }
    Ok(out)
}

/// The federator's own view of an agent at `now`: one sample per metric of
/// [`super::rule::FEDERATOR_METRICS`] it has a value for.
pub fn federator_view(agent: &AgentInfo, now: i64) -> Vec<(&'static str, SeriesData)> {
    let at = |v: Option<i64>| {
        v.map(|t| SeriesData {
            points: vec![Point {
                ts: now,
                value: (now - t) as f64 / 1000.0,
            }],
            buckets: Vec::new(),
        })
    };
    [
        (
            "pga_federator_agent_last_pull_age_seconds",
            at(agent.last_seen),
        ),
        ("pga_federator_agent_data_lag_seconds", at(agent.watermark)),
        (
            "pga_federator_agent_last_gap_age_seconds",
            at(agent.last_gap),
        ),
    ]
    .into_iter()
    .filter_map(|(n, d)| d.map(|d| (n, d)))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_cover_every_step() {
        let r =
            WindowRequest::for_steps(1, WindowFn::Rate, 300_000, &[1_000_000, 1_015_000], 900_000);
        assert_eq!(r.raw, [(700_000, 1_015_000)]);
        assert_eq!(r.prev_after, Some(-200_000));
        assert_eq!(r.buckets, None);
        let r = WindowRequest::for_steps(1, WindowFn::Last, 1_800_000, &[1_000_000, 1_015_000], 0);
        assert_eq!(
            (r.raw, r.prev_after),
            (vec![(1_000_000, 1_015_000)], Some(-800_000))
        );
        let steps = [10_000_000, 10_015_000, 10_030_000];
        let r = WindowRequest::for_steps(1, WindowFn::Avg, 7_200_000, &steps, 0);
        let (a0, b0) = window::bucket_span(steps[0], 7_200_000);
        let (a2, b2) = window::bucket_span(steps[2], 7_200_000);
        assert_eq!(r.buckets, Some((a0, b2)));
        assert_eq!(r.raw, [(steps[0] - 7_200_000, a2), (b0 - 1, steps[2])]);
        assert_eq!(r.prev_after, None);
    }
}
