//! Prometheus remote-write: every agent's raw samples also go to `[[remote_write]]`
//! destinations (VictoriaMetrics, Mimir, Thanos Receive, Prometheus), each on its
//! own, beside the database's ingest (docs/scaling.md, "Remote-write").
//!
//! Each destination runs its own loop over the fleet: at each instant of its
//! schedule, a round pulls every agent again from **this destination's cursor**
//! (the pull protocol's client walk, [`crate::pull::pull`], with the destination as
//! [`crate::pull::Destination`]), at most `max_shards` agents at once, one request
//! in flight each. An agent behind is walked on at once, round after round. When
//! the receiver is down, slow or misconfigured, the round stops, the destination
//! waits (`retry_initial_ms` doubling to `retry_max_secs`) and starts again from
//! its cursors: it falls behind alone — the database's pulls never wait for it —
//! and is caught up from the agents' stores, which keep days. Blocks the agents
//! evicted meanwhile are this destination's gaps (`remote_write_gaps`).
//!
//! - [`encode`] holds the wire format (protobuf `WriteRequest`, snappy);
//! - [`send`] one request, its retries, and what an answer means;
//! - [`destination`] a batch → requests → acknowledgements → the cursor;
//! - [`metrics`] the self-metrics, `pga_federator_remote_write_*`.

pub mod destination;
pub mod encode;
pub mod metrics;
pub mod send;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures_util::StreamExt;
use tokio::sync::watch;

pub use destination::{RemoteWrite, WriteError};
pub use metrics::RemoteWriteMetrics;

use crate::pull::scheduler::FleetJob;
use crate::pull::{DestinationError, Pacing, PullMemo, ScrapeError, pull};

/// How one round over the fleet ended.
#[derive(Debug, Default)]
struct RoundEnd {
    /// Some agent has more sealed blocks than the round took.
    behind: bool,
    /// The destination (or the database) failed: the round stopped. With whether
    /// the operator must fix something (the URL, the credentials).
    down: Option<(String, bool)>,
}

/// Pulls `job` for `dest` until caught up or the pull's request budget is spent.
async fn one_agent(
    dest: &RemoteWrite,
    job: &FleetJob,
    pacing: Pacing,
) -> Result<bool, ScrapeError> {
    let j = &job.job;
    dest.set_labels(&j.name, &j.labels);
    let mut memo = PullMemo::new(j.labels.clone());
    let report = pull(&j.name, &j.client, dest, pacing, &mut memo, |_| {}).await?;
    Ok(!report.caught_up)
}

async fn round(dest: &RemoteWrite, jobs: Vec<FleetJob>, pacing: Pacing, shards: usize) -> RoundEnd {
    let stop_round = std::sync::atomic::AtomicBool::new(false);
    let results: Vec<(String, Option<Result<bool, ScrapeError>>)> =
        futures_util::stream::iter(jobs)
            .map(|job| {
                let stop_round = &stop_round;
                async move {
                    if stop_round.load(std::sync::atomic::Ordering::Relaxed) {
                        return (job.job.name.clone(), None);
                    }
                    let r = one_agent(dest, &job, pacing).await;
                    if matches!(&r, Err(e) if is_destination_down(e)) {
                        stop_round.store(true, std::sync::atomic::Ordering::Relaxed);
                    }
                    (job.job.name.clone(), Some(r))
                }
            })
            .buffer_unordered(shards.max(1))
            .collect()
            .await;
    let mut end = RoundEnd::default();
    for (agent, r) in results {
        match r {
            None => end.behind = true,
            Some(Ok(behind)) => end.behind |= behind,
            Some(Err(e)) if is_destination_down(&e) => {
                end.down
                    .get_or_insert_with(|| (e.to_string(), is_misconfigured(&e)));
            }
            Some(Err(e)) if e.is_fenced() => {
                // Said and counted where refused; the next round follows the
                // assignment (the agent gone to another replica, or its lease back).
            }
            Some(Err(e)) => {
                // The agent's own trouble (unreachable, malformed): the database's
                // pulls report it; this destination tries it again next round.
                tracing::debug!(destination = %dest.name(), agent = %agent, error = %e, "remote-write pull of this agent failed; next round");
            }
        }
    }
    end
}

/// Whether the failure is the destination's (or the database's) as a whole.
fn is_destination_down(e: &ScrapeError) -> bool {
    matches!(
        e,
        ScrapeError::Destination(DestinationError::Other(_) | DestinationError::Unavailable(_))
    )
}

/// Whether the destination's URL or credentials are wrong (no receiver there).
fn is_misconfigured(e: &ScrapeError) -> bool {
    let ScrapeError::Destination(DestinationError::Other(e)) = e else {
        return false;
    };
    matches!(
        e.downcast_ref::<WriteError>(),
        Some(WriteError::GaveUp {
            source: send::GiveUp::Misconfigured { .. },
            ..
        })
    )
}

/// Runs destination `dest` over the fleet `fleet` until `stop`: a round at each
/// instant of `schedule`, at once again while an agent is behind, and after a
/// failure the destination's backoff.
pub async fn run(
    dest: Arc<RemoteWrite>,
    fleet: watch::Receiver<Vec<FleetJob>>,
    schedule: cron::Schedule,
    pacing: Pacing,
    shards: usize,
    mut stop: watch::Receiver<bool>,
) {
    let name = dest.name().to_owned();
    let mut failures = 0u32;
    let mut said: Option<String> = None;
    dest.metrics.set_up(&name, true);
    loop {
        let jobs = fleet.borrow().clone();
        let started = Instant::now();
        let end = tokio::select! {
            e = round(&dest, jobs, pacing, shards) => e,
            _ = stop.wait_for(|s| *s) => return,
        };
        let wait = match end.down {
            Some((why, misconfigured)) => {
                failures = failures.saturating_add(1);
                dest.metrics.set_up(&name, false);
                let delay = dest.retry.delay(failures);
                if said.as_deref() != Some(why.as_str()) {
                    if misconfigured {
                        tracing::error!(
                            destination = %name,
                            error = %why,
                            retry_in_ms = delay.as_millis() as u64,
                            "remote-write destination misconfigured: nothing is sent to it \
                             until it is fixed (the database's pulls go on; it is caught up \
                             from the agents then)"
                        );
                    } else {
                        tracing::warn!(
                            destination = %name,
                            error = %why,
                            retry_in_ms = delay.as_millis() as u64,
                            "remote-write destination not taking writes: it falls behind \
                             alone (the database's pulls go on) and is caught up from the \
                             agents"
                        );
                    }
                    said = Some(why);
                }
                delay
            }
            None => {
                if failures > 0 {
                    tracing::info!(destination = %name, after_failures = failures, "remote-write destination takes writes again; catching up from its cursors");
                    dest.metrics.set_up(&name, true);
                }
                failures = 0;
                said = None;
                if end.behind {
                    Duration::ZERO
                } else {
                    until_next(&schedule, started)
                }
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// Until the first instant of `schedule` after the round that started at `started`.
fn until_next(schedule: &cron::Schedule, started: Instant) -> Duration {
    let base = Utc::now() - chrono::Duration::from_std(started.elapsed()).unwrap_or_default();
    match schedule.after(&base).find(|t| *t > Utc::now()) {
        Some(t) => (t - Utc::now()).to_std().unwrap_or_default(),
        None => Duration::from_secs(365 * 86_400),
    }
}
