//! One delivery worker per receiver.
//!
//! Each pass takes the receiver's advisory lock (so across federators one worker
//! delivers to a receiver at a time; another takes over within seconds of it
//! stopping), delivers the outbox rows after the receiver's cursor in id order —
//! to an Alertmanager in batches of up to 64 alerts, to a webhook one notification
//! per post — and moves the cursor in the transaction that records the delivery.
//! Rows muted by a maintenance window are recorded as muted and skipped. A failed
//! attempt (no answer, a timeout, 5xx, 429) is retried with a doubling delay from
//! `retry_initial_ms` up to `retry_max_secs`, the queue waiting behind it, so
//! notifications stay in order; a 4xx answer rejects that notification for good.
//!
//! An Alertmanager is also re-sent, every `resend_secs`, every firing alert and
//! every alert resolved within `resolved_resend_secs` (Prometheus' behaviour: it
//! expires alerts that are not re-sent before their `endsAt`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};

use tokio::sync::{Notify, watch};

use super::http::{Client, Outcome, classify};
use super::payload;
use crate::alerting::metrics::AlertingMetrics;
use crate::db::{alerts, outbox};

/// Alerts per Alertmanager post (Prometheus' batch size).
const AM_BATCH: usize = 64;

/// What kind of receiver, with what it needs.
#[derive(Debug, Clone)]
pub enum Kind {
    Alertmanager,
    Webhook { secret: Option<Vec<u8>> },
}

impl Kind {
    pub fn as_str(&self) -> &'static str {
        match self {
            Kind::Alertmanager => "alertmanager",
            Kind::Webhook { .. } => "webhook",
        }
    }
}

/// A configured receiver.
#[derive(Debug, Clone)]
pub struct Receiver {
    pub name: String,
    pub kind: Kind,
    pub client: Client,
}

/// How workers deliver.
#[derive(Debug, Clone)]
pub struct DeliverySettings {
    pub retry_initial: Duration,
    pub retry_max: Duration,
    pub resend: Duration,
    pub resolved_resend: Duration,
    /// A firing alert's `endsAt` ahead of now: 4 × max(evaluation interval, resend).
    pub valid_for: Duration,
    /// The federator's public URL (the webhook payload's `externalURL`).
    pub external_url: String,
    /// How often an idle worker looks for work (it is also woken by the evaluator).
    pub poll: Duration,
}

/// The delay after `failures` failed attempts in a row.
pub fn backoff(failures: u32, initial: Duration, max: Duration) -> Duration {
    let factor = 1u32
        .checked_shl(failures.saturating_sub(1))
        .unwrap_or(u32::MAX);
    initial.saturating_mul(factor).min(max)
}

enum Pass {
    /// Everything delivered.
    Done,
    /// Another federator holds this receiver.
    NotMine,
    /// An attempt failed; retry after the backoff.
    Failed,
}

/// A receiver's worker.
#[derive(Debug)]
pub struct Worker {
    receiver: Receiver,
    settings: DeliverySettings,
    options: PgConnectOptions,
    conn: Option<PgConnection>,
    metrics: AlertingMetrics,
    last_resend: Option<Instant>,
}

impl Worker {
    pub fn new(
        receiver: Receiver,
        settings: DeliverySettings,
        options: PgConnectOptions,
        metrics: AlertingMetrics,
    ) -> Worker {
        Worker {
            receiver,
            settings,
            options,
            conn: None,
            metrics,
            last_resend: None,
        }
    }

    /// Delivers until `stop`.
    pub async fn run(mut self, wake: Arc<Notify>, mut stop: watch::Receiver<bool>) {
        let mut failures = 0u32;
        let mut delay = Duration::ZERO;
        loop {
            let backing_off = failures > 0;
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = wake.notified(), if !backing_off => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            let name = self.receiver.name.clone();
            match self.pass().await {
                Ok(Pass::Done) => {
                    if failures > 0 {
                        tracing::info!(receiver = %name, after_failures = failures, "receiver reachable again");
                    }
                    failures = 0;
                    delay = self.settings.poll;
                }
                Ok(Pass::NotMine) => {
                    failures = 0;
                    delay = self.settings.poll * 5;
                }
                Ok(Pass::Failed) => {
                    failures = failures.saturating_add(1);
                    delay = backoff(
                        failures,
                        self.settings.retry_initial,
                        self.settings.retry_max,
                    );
                }
                Err(e) => {
                    tracing::warn!(receiver = %name, error = %e, "notification delivery: database error; retrying");
                    self.conn = None;
                    failures = failures.saturating_add(1);
                    delay = backoff(
                        failures,
                        self.settings.retry_initial,
                        self.settings.retry_max,
                    );
                }
            }
            self.metrics.set_failures(&name, failures as i64);
        }
    }

    async fn pass(&mut self) -> Result<Pass, sqlx::Error> {
        if self.conn.is_none() {
            self.conn = Some(crate::db::connect_session(&self.options).await?);
        }
        let Some(mut conn) = self.conn.take() else {
            return Ok(Pass::NotMine);
        };
        let (locked,): (bool,) = sqlx::query_as("SELECT pg_try_advisory_lock(7248, hashtext($1))")
            .bind(&self.receiver.name)
            .fetch_one(&mut conn)
            .await?;
        if !locked {
            self.conn = Some(conn);
            return Ok(Pass::NotMine);
        }
        let result = self.deliver(&mut conn).await;
        let unlocked = sqlx::query("SELECT pg_advisory_unlock(7248, hashtext($1))")
            .bind(&self.receiver.name)
            .execute(&mut conn)
            .await;
        if unlocked.is_ok() && result.is_ok() {
            self.conn = Some(conn);
        }
        // Otherwise the connection is dropped (closed): its lock goes with it.
        result
    }

    async fn deliver(&mut self, conn: &mut PgConnection) -> Result<Pass, sqlx::Error> {
        let name = self.receiver.name.clone();
        loop {
            let (cursor, failures) = outbox::cursor(&mut *conn, &name).await?;
            let rows = outbox::after(&mut *conn, cursor, AM_BATCH as i64).await?;
            if rows.is_empty() {
                break;
            }
            // Muted rows at the head: recorded, skipped.
            let muted: Vec<&outbox::OutboxRow> =
                rows.iter().take_while(|r| r.muted_by.is_some()).collect();
            if let Some(last) = muted.last() {
                let done: Vec<(i64, &'static str, i32, Option<String>)> = muted
                    .iter()
                    .map(|r| {
                        (
                            r.id,
                            "muted",
                            0,
                            r.muted_by.map(|w| format!("maintenance window {w}")),
                        )
                    })
                    .collect();
                let mut tx = conn.begin().await?;
                outbox::advance(&mut tx, &name, last.id, &done).await?;
                tx.commit().await?;
                self.metrics.notified(&name, "muted", done.len() as u64);
                continue;
            }
            let batch: Vec<&outbox::OutboxRow> = match self.receiver.kind {
                Kind::Alertmanager => rows.iter().take_while(|r| r.muted_by.is_none()).collect(),
                Kind::Webhook { .. } => rows.iter().take(1).collect(),
            };
            let outcome = self.send(&batch).await;
            let attempts = failures + 1;
            let through = batch.last().map_or(cursor, |r| r.id);
            match outcome {
                Outcome::Delivered | Outcome::Rejected(_) => {
                    let (word, detail) = match &outcome {
                        Outcome::Rejected(d) => ("rejected", Some(d.clone())),
                        _ => ("delivered", None),
                    };
                    if let Outcome::Rejected(d) = &outcome {
                        tracing::error!(
                            receiver = %name,
                            notifications = batch.len(),
                            detail = %d,
                            "the receiver rejected notifications for good; they are recorded as \
                             rejected and the queue moves on"
                        );
                    }
                    let done: Vec<(i64, &'static str, i32, Option<String>)> = batch
                        .iter()
                        .map(|r| (r.id, word, attempts, detail.clone()))
                        .collect();
                    let mut tx = conn.begin().await?;
                    outbox::advance(&mut tx, &name, through, &done).await?;
                    tx.commit().await?;
                    self.metrics.notified(&name, word, batch.len() as u64);
                    let now = now_ms();
                    for r in &batch {
                        self.metrics
                            .delay((now - r.created_at_ms).max(0) as f64 / 1000.0);
                    }
                    if word == "delivered" {
                        tracing::debug!(receiver = %name, notifications = batch.len(), through, "delivered");
                    }
                }
                Outcome::Retry(e) => {
                    outbox::failed(&mut *conn, &name, &e).await?;
                    self.metrics.notified(&name, "failed", batch.len() as u64);
                    tracing::warn!(
                        receiver = %name,
                        error = %e,
                        attempts,
                        queued_from = batch.first().map_or(0, |r| r.id),
                        "notification delivery failed; retrying with backoff"
                    );
                    return Ok(Pass::Failed);
                }
            }
        }
        if matches!(self.receiver.kind, Kind::Alertmanager)
            && self
                .last_resend
                .is_none_or(|t| t.elapsed() >= self.settings.resend)
        {
            let alerts =
                alerts::to_resend(&mut *conn, self.settings.resolved_resend.as_millis() as i64)
                    .await?;
            let now = now_ms();
            for chunk in alerts.chunks(AM_BATCH) {
                let body: Vec<serde_json::Value> = chunk
                    .iter()
                    .map(|a| {
                        let stored = payload::stored(
                            a.labels.clone(),
                            a.annotations.clone(),
                            &a.fingerprint,
                            a.fired_at_ms,
                            a.resolved_at_ms,
                            &generator_url(&self.settings.external_url, a.id),
                            false,
                        );
                        payload::for_alertmanager(
                            &stored,
                            a.resolved_at_ms.is_some(),
                            now,
                            self.settings.valid_for.as_millis() as i64,
                        )
                    })
                    .collect();
                let bytes = serde_json::to_vec(&body).unwrap_or_default();
                let path = self.receiver.client.target().join("/api/v2/alerts");
                match classify(self.receiver.client.post_json(&path, bytes, &[]).await) {
                    Outcome::Delivered | Outcome::Rejected(_) => {}
                    Outcome::Retry(e) => {
                        outbox::failed(&mut *conn, &name, &e).await?;
                        tracing::warn!(receiver = %name, error = %e, "re-sending firing alerts failed; retrying with backoff");
                        return Ok(Pass::Failed);
                    }
                }
                let ids: Vec<i64> = chunk.iter().map(|a| a.id).collect();
                alerts::mark_sent(&mut *conn, &ids).await?;
            }
            self.last_resend = Some(Instant::now());
        }
        Ok(Pass::Done)
    }

    async fn send(&self, batch: &[&outbox::OutboxRow]) -> Outcome {
        let client = &self.receiver.client;
        match &self.receiver.kind {
            Kind::Alertmanager => {
                let now = now_ms();
                let body: Vec<serde_json::Value> = batch
                    .iter()
                    .map(|r| {
                        payload::for_alertmanager(
                            &r.payload,
                            r.status == "resolved",
                            now,
                            self.settings.valid_for.as_millis() as i64,
                        )
                    })
                    .collect();
                let bytes = serde_json::to_vec(&body).unwrap_or_default();
                let path = client.target().join("/api/v2/alerts");
                classify(client.post_json(&path, bytes, &[]).await)
            }
            Kind::Webhook { secret } => {
                let Some(r) = batch.first() else {
                    return Outcome::Delivered;
                };
                let body = payload::webhook(
                    &self.receiver.name,
                    &r.payload,
                    &r.status,
                    &self.settings.external_url,
                );
                let bytes = serde_json::to_vec(&body).unwrap_or_default();
                let mut headers = Vec::new();
                if let Some(s) = secret {
                    let t = now_ms() / 1000;
                    headers.push((payload::SIGNATURE_HEADER, payload::signature(s, t, &bytes)));
                }
                let path = client.target().path.clone();
                classify(client.post_json(&path, bytes, &headers).await)
            }
        }
    }
}

/// `<external_url>/api/v1/alerts/<id>`, or `""` without an external URL.
pub fn generator_url(external_url: &str, id: i64) -> String {
    if external_url.is_empty() {
        String::new()
    } else {
        format!("{}/api/v1/alerts/{id}", external_url.trim_end_matches('/'))
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_maximum() {
        let (i, m) = (Duration::from_secs(1), Duration::from_secs(60));
        let got: Vec<u64> = (1..=8).map(|f| backoff(f, i, m).as_secs()).collect();
        assert_eq!(got, [1, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(generator_url("https://f/", 3), "https://f/api/v1/alerts/3");
        assert_eq!(generator_url("", 3), "");
    }
}
