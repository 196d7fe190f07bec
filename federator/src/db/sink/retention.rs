//! Retention: dropping whole partitions past their age, creating the next ones.
//!
//! On plain PostgreSQL a table keeps a partition until the partition's upper bound
//! is older than the table's retention age, so data lives at least that long and at
//! most one partition width (a day; a month for `samples_1h` and `samples_1d`) longer. The ingest
//! does not store samples or log events already older than their retention age
//! (they are counted in the report), so a late delivery never revives a dropped
//! day or recomputes a rollup from a partial one. Under TimescaleDB the retention
//! policies set at migration do this work and [`Sink::retention`] has nothing to drop.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{Sink, SinkError};

const DAY: Duration = Duration::from_secs(86_400);

/// How long each kind of data is kept, and how far ahead partitions are created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionOptions {
    /// Raw samples (`samples`, and `samples_packed` with `sample_times`); default 7
    /// days.
    pub raw: Duration,
    /// One-minute rollups (`samples_1m`); default 30 days.
    pub rollup_1m: Duration,
    /// Ten-minute rollups (`samples_10m`); default 90 days.
    pub rollup_10m: Duration,
    /// One-hour and one-day rollups (`samples_1h`, `samples_1d`); default 365 days.
    pub rollup_1h: Duration,
    /// Log events (`log_events`); default 30 days.
    pub log_events: Duration,
    /// Days of partitions created ahead of today; default 3.
    pub partitions_ahead_days: u32,
}

impl Default for RetentionOptions {
    fn default() -> Self {
        RetentionOptions {
            raw: 7 * DAY,
            rollup_1m: 30 * DAY,
            rollup_10m: 90 * DAY,
            rollup_1h: 365 * DAY,
            log_events: 30 * DAY,
            partitions_ahead_days: 3,
        }
    }
}

/// What one [`Sink::retention`] run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// Partitions dropped, oldest first per table.
    pub dropped: Vec<String>,
    /// Partitions created ahead.
    pub partitions_created: u32,
}

impl Sink {
    /// Drops the partitions whose data is past its retention age at `now_ms`
    /// (milliseconds since the Unix epoch) and creates the partitions of the next
    /// [`RetentionOptions::partitions_ahead_days`] days.
    pub async fn retention(&self, now_ms: i64) -> Result<RetentionReport, SinkError> {
        let r = &self.options.retention;
        let mut report = RetentionReport::default();
        self.forget_partitions();
        // A packed window lives in the partition of its `lo` day: one that crosses
        // midnight (a block from 23:40 to 00:20) goes with its first day. Its samples
        // reach less than an hour into the next day, so the packed tables keep their
        // partitions an hour longer than `samples`: no sample goes before the raw
        // retention age.
        let packed_keep = r.raw + Duration::from_secs(3600);
        for (table, keep) in [
            ("samples", r.raw),
            ("samples_packed", packed_keep),
            ("sample_times", packed_keep),
            ("samples_1m", r.rollup_1m),
            ("samples_10m", r.rollup_10m),
            ("samples_1h", r.rollup_1h),
            // The 1-day rollups (migration 0094) go with the 1-hour ones.
            ("samples_1d", r.rollup_1h),
            ("log_events", r.log_events),
        ] {
            let before_ms = now_ms.saturating_sub(keep.as_millis() as i64);
            let dropped: Vec<(String,)> = sqlx::query_as(
                "SELECT pga_drop_partitions($1, timestamptz 'epoch' + $2::bigint * interval '1 millisecond')",
            )
            .bind(table)
            .bind(before_ms)
            .fetch_all(&self.pool)
            .await
            .map_err(SinkError::db("dropping expired partitions"))?;
            report
                .dropped
                .extend(dropped.into_iter().map(|(name,)| name));
        }
        // The per-agent minute counts live as long as the 1-minute rollups.
        let before_ms = now_ms.saturating_sub(r.rollup_1m.as_millis() as i64);
        sqlx::query(
            "DELETE FROM agent_samples_1m \
             WHERE bucket < timestamptz 'epoch' + $1::bigint * interval '1 millisecond'",
        )
        .bind(before_ms)
        .execute(&self.pool)
        .await
        .map_err(SinkError::db("deleting expired per-agent sample counts"))?;
        report.partitions_created = self.create_partitions_ahead_at(now_ms).await?;
        Ok(report)
    }

    /// Creates the partitions of today and the next days (wall clock).
    pub(crate) async fn create_partitions_ahead(&self) -> Result<u32, SinkError> {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        self.create_partitions_ahead_at(now_ms).await
    }

    async fn create_partitions_ahead_at(&self, now_ms: i64) -> Result<u32, SinkError> {
        let (created,): (i32,) = sqlx::query_as(
            "SELECT pga_create_partitions_ahead( \
                 timestamptz 'epoch' + $1::bigint * interval '1 millisecond', $2)",
        )
        .bind(now_ms)
        .bind(self.options.retention.partitions_ahead_days as i32)
        .fetch_one(&self.pool)
        .await
        .map_err(SinkError::db("creating partitions ahead"))?;
        Ok(created as u32)
    }
}
