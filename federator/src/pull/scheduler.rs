//! The scrape scheduler: one job per agent on its cron schedule.
//!
//! - Each agent's pulls start at the instants of its cron schedule (UTC) plus a
//!   fixed per-agent offset below `scrape.jitter_ms` (from a hash of its name), so a
//!   fleet is spread over the jitter window instead of pulled in one burst.
//! - At most `scrape.max_concurrent` pulls run at once (a semaphore).
//! - A pull that ends behind (the agent has more: a backfill) is followed by the
//!   next one at once, after its permit went back to the queue, so a returning
//!   fleet catches up in turns, `backfill.request_bytes` per transaction.
//! - A failing agent is retried after `backoff_initial_secs`, doubling up to
//!   `backoff_max_secs`; its `up` is 0 until a pull succeeds. Other agents go on.
//!   A database error caused by one agent's batch (a constraint, a trigger, a
//!   timeout, a limit) is such a failure: counted with reason `database_rejected`
//!   and logged with the agent's name and the SQLSTATE.
//! - Only when the database as a whole is unavailable (unreachable, shutting down,
//!   read-only) does every job pause: no pull starts, no cursor moves. One probe
//!   checks the database with a growing interval (1 s up to 30 s) and releases the
//!   jobs when it takes writes again. Meanwhile each job still asks its agent's
//!   `/v1/status` at its scheduled instants, so that `agent_lag_blocks` shows the
//!   backlog growing.
//! - The set of jobs may change while running ([`run_fleet`]): agents added,
//!   changed or removed through the API are started and stopped without a restart.

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

use crate::pull::{AgentClient, Destination, Pacing, PullMemo, pull};
use crate::telemetry::Telemetry;

/// One agent's job.
#[derive(Debug, Clone)]
pub struct AgentJob {
    /// The configured name.
    pub name: String,
    /// The client for its endpoint.
    pub client: AgentClient,
    /// When to pull it.
    pub schedule: cron::Schedule,
    /// Its labels in the central database (`agents[].labels`).
    pub labels: BTreeMap<String, String>,
}

/// Settings shared by every job.
#[derive(Debug, Clone, Copy)]
pub struct SchedulerSettings {
    pub jitter: Duration,
    pub max_concurrent: usize,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    pub pacing: Pacing,
}

/// Whether the database takes writes; closed while it does not.
#[derive(Debug)]
struct DatabaseGate {
    open: watch::Sender<bool>,
}

impl DatabaseGate {
    fn is_open(&self) -> bool {
        *self.open.borrow()
    }

    /// Resolves once the gate is open (never, should its sender be gone).
    async fn opened(&self) {
        let mut rx = self.open.subscribe();
        if rx.wait_for(|open| *open).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// The per-agent offset within the jitter window, stable across restarts.
pub fn jitter_offset(name: &str, jitter: Duration) -> Duration {
    if jitter.is_zero() {
        return Duration::ZERO;
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    name.hash(&mut h);
    Duration::from_millis(h.finish() % (jitter.as_millis() as u64 + 1))
}

/// The delay before attempt number `failures + 1` after `failures` failures in a row.
pub fn backoff(failures: u32, initial: Duration, max: Duration) -> Duration {
    let factor = 1u32
        .checked_shl(failures.saturating_sub(1))
        .unwrap_or(u32::MAX);
    initial.saturating_mul(factor).min(max)
}

/// How long from now until the agent's next start: the first instant of `schedule`,
/// plus `offset`, that is not before `not_before`.
fn until_next(schedule: &cron::Schedule, not_before: Instant, offset: Duration) -> Duration {
    let now = Utc::now();
    let wait_extra = not_before.saturating_duration_since(Instant::now());
    let earliest = now + chrono::Duration::from_std(wait_extra).unwrap_or_default();
    match next_start(schedule, earliest, offset) {
        Some(t) => (t - Utc::now()).to_std().unwrap_or_default(),
        // A schedule with no future instant (a past year): never again.
        None => Duration::from_secs(365 * 86_400),
    }
}

/// The first start `s + offset` after `earliest`, `s` an instant of `schedule`.
///
/// The offset is taken off before the schedule is searched, not added after it: an
/// agent whose offset is 14 s on a 15 s schedule and whose pull ends 1 s after the
/// next instant still starts at that instant plus 14 s, instead of skipping a tick.
fn next_start(
    schedule: &cron::Schedule,
    earliest: DateTime<Utc>,
    offset: Duration,
) -> Option<DateTime<Utc>> {
    let offset = chrono::Duration::from_std(offset).unwrap_or_default();
    schedule
        .after(&(earliest - offset))
        .next()
        .map(|s| s + offset)
}

/// Runs every job until `stop` turns true; returns when all jobs have stopped.
pub async fn run<D: Destination + 'static>(
    jobs: Vec<AgentJob>,
    dest: Arc<D>,
    telemetry: Arc<Telemetry>,
    settings: SchedulerSettings,
    stop: watch::Receiver<bool>,
) {
    let fleet = jobs
        .into_iter()
        .map(|job| FleetJob {
            spec: job.name.clone(),
            job,
        })
        .collect();
    let (_keep, rx) = watch::channel(fleet);
    run_fleet(rx, dest, telemetry, settings, stop).await;
}

/// A job and what defines it (URL, schedule): a job whose `spec` changes is
/// restarted with its new definition.
#[derive(Debug, Clone)]
pub struct FleetJob {
    pub spec: String,
    pub job: AgentJob,
}

/// Runs the jobs `fleet` holds, following its changes without a restart: a job
/// that leaves the set stops once its pull in flight ended (a transaction is never
/// cut in the middle), a new one starts, a changed one is stopped and started
/// again. At `stop`, pulls in flight are abandoned (they roll back). Returns when `stop`
/// turns true and every job has stopped.
pub async fn run_fleet<D: Destination + 'static>(
    mut fleet: watch::Receiver<Vec<FleetJob>>,
    dest: Arc<D>,
    telemetry: Arc<Telemetry>,
    settings: SchedulerSettings,
    mut stop: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(settings.max_concurrent.max(1)));
    let gate = Arc::new(DatabaseGate {
        open: watch::Sender::new(true),
    });
    let probe = {
        let (gate, dest, telemetry, stop) =
            (gate.clone(), dest.clone(), telemetry.clone(), stop.clone());
        tokio::spawn(async move { probe_database(gate, dest, telemetry, stop).await })
    };
    let mut running: HashMap<String, (String, watch::Sender<bool>, JoinHandle<()>)> =
        HashMap::new();
    let mut fleet_open = true;
    loop {
        let wanted: HashMap<String, FleetJob> = fleet
            .borrow_and_update()
            .iter()
            .map(|j| (j.job.name.clone(), j.clone()))
            .collect();
        let gone: Vec<String> = running
            .iter()
            .filter(|(name, (spec, _, _))| wanted.get(*name).is_none_or(|j| &j.spec != spec))
            .map(|(name, _)| name.clone())
            .collect();
        for name in gone {
            if let Some((_, tx, task)) = running.remove(&name) {
                tx.send_replace(true);
                task.await.ok();
                tracing::info!(agent = %name, "agent left the fleet or changed: its pulls stopped");
            }
        }
        for (name, j) in wanted {
            if running.contains_key(&name) {
                continue;
            }
            telemetry.agent_configured(&name);
            let (tx, rx) = watch::channel(false);
            let ctx = (
                dest.clone(),
                telemetry.clone(),
                permits.clone(),
                gate.clone(),
            );
            let spec = j.spec.clone();
            let shutdown = stop.clone();
            let task = tokio::spawn(async move {
                let (dest, telemetry, permits, gate) = ctx;
                let stops = Stops { job: rx, shutdown };
                agent_loop(j.job, &*dest, &telemetry, &permits, &gate, settings, stops).await;
            });
            running.insert(name, (spec, tx, task));
        }
        tokio::select! {
            changed = fleet.changed(), if fleet_open => {
                if changed.is_err() {
                    fleet_open = false;
                }
            }
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    for (_, (_, tx, task)) in running {
        tx.send_replace(true);
        task.await.ok();
    }
    probe.await.ok();
}

/// What ends a job: its own stop (the agent left the fleet, or moved to another
/// replica) ends it between pulls, so that no transaction is cut in the middle;
/// the process's shutdown also abandons a pull in flight (it rolls back).
struct Stops {
    job: watch::Receiver<bool>,
    shutdown: watch::Receiver<bool>,
}

async fn agent_loop<D: Destination>(
    job: AgentJob,
    dest: &D,
    telemetry: &Telemetry,
    permits: &Semaphore,
    gate: &DatabaseGate,
    settings: SchedulerSettings,
    stops: Stops,
) {
    let Stops {
        job: mut stop,
        mut shutdown,
    } = stops;
    let offset = jitter_offset(&job.name, settings.jitter);
    let mut failures = 0u32;
    let mut not_before = Instant::now();
    let mut immediately = false;
    let mut memo = PullMemo::new(job.labels.clone());
    // The last committed cursor, for the lag while pulls are paused.
    let mut cursor: Option<u64> = None;
    loop {
        if !immediately {
            let wait = until_next(&job.schedule, not_before, offset);
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
        immediately = false;
        if !gate.is_open() {
            // Paused for the database: watch the agent's backlog grow, and pull as
            // soon as the database is back.
            observe_while_paused(&job, telemetry, cursor).await;
            tokio::select! {
                () = gate.opened() => immediately = true,
                () = tokio::time::sleep(until_next(&job.schedule, not_before, offset)) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            continue;
        }
        let permit = tokio::select! {
            p = permits.acquire() => match p { Ok(p) => p, Err(_) => return },
            _ = stop.wait_for(|s| *s) => return,
        };
        telemetry.scrape_started(&job.name);
        let started = Instant::now();
        let name = job.name.clone();
        let result = tokio::select! {
            r = pull(&job.name, &job.client, dest, settings.pacing, &mut memo, |round| {
                telemetry.round(&name, round);
                cursor = Some(round.cursor);
            }) => r,
            _ = shutdown.wait_for(|s| *s) => return,
        };
        drop(permit);
        let secs = started.elapsed().as_secs_f64();
        telemetry.scrape_ended(&job.name, secs, &result);
        match result {
            Ok(r) => {
                if failures > 0 {
                    tracing::info!(agent = %job.name, after_failures = failures, "agent reachable again");
                }
                failures = 0;
                not_before = Instant::now();
                if !r.caught_up {
                    immediately = true;
                    tracing::info!(
                        agent = %job.name,
                        cursor = r.cursor,
                        newest = r.newest,
                        blocks_left = r.newest.saturating_sub(r.cursor),
                        blocks = r.blocks,
                        samples = r.samples,
                        secs = format_args!("{secs:.2}"),
                        "backfill in progress"
                    );
                } else if r.blocks > 1 || r.gap_blocks > 0 {
                    tracing::info!(
                        agent = %job.name,
                        cursor = r.cursor,
                        blocks = r.blocks,
                        samples = r.samples,
                        gap_blocks = r.gap_blocks,
                        "caught up"
                    );
                } else {
                    tracing::debug!(agent = %job.name, cursor = r.cursor, samples = r.samples, "pulled");
                }
                if r.gap_blocks > 0 {
                    tracing::warn!(
                        agent = %job.name,
                        gap_blocks = r.gap_blocks,
                        "the agent evicted blocks before they were pulled; the gap is recorded"
                    );
                }
                if let Some(note) = r.note {
                    tracing::debug!(agent = %job.name, note = %note, "a response was cut short; continuing from the cursor");
                }
            }
            Err(e) if e.is_fenced() => {
                // The lease moved to another replica (or this one's ran out): no
                // backoff; the assignment stops this job or the lease comes back.
                not_before = Instant::now();
                tracing::info!(agent = %job.name, error = %e, "batch refused by fencing: the agent's lease is not this replica's");
            }
            Err(e) if e.is_database_unavailable() => {
                if gate.open.send_replace(false) {
                    tracing::warn!(
                        agent = %job.name,
                        error = %e,
                        "database unavailable: every pull paused, cursors untouched"
                    );
                }
                immediately = true;
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                let delay = backoff(failures, settings.backoff_initial, settings.backoff_max);
                not_before = Instant::now() + delay;
                tracing::warn!(
                    agent = %job.name,
                    reason = %e.reason(),
                    sqlstate = %e.sqlstate().as_deref().unwrap_or("-"),
                    error = %e,
                    failures,
                    retry_in_secs = delay.as_secs(),
                    "scrape failed; this agent is retried after its backoff, the others go on"
                );
            }
        }
    }
}

/// While pulls are paused for the database: the agent's newest sealed block from
/// its `/v1/status`, for `agent_lag_blocks`. Failures only leave the figure as it was.
async fn observe_while_paused(job: &AgentJob, telemetry: &Telemetry, cursor: Option<u64>) {
    let Some(cursor) = cursor else {
        return;
    };
    let Ok(mut session) = job.client.session().await else {
        return;
    };
    let Ok(resp) = session.get("/v1/status").await else {
        return;
    };
    if resp.status != hyper::StatusCode::OK || resp.cut.is_some() {
        return;
    }
    if let Some(newest) = crate::pull::status::parse_status(&resp.body)
        .ok()
        .and_then(|s| s.newest_sequence)
    {
        telemetry.lag_while_paused(&job.name, newest, cursor);
    }
}

/// Watches the gate: while it is closed, pings the database with a growing
/// interval and opens it again once the database takes writes.
async fn probe_database<D: Destination>(
    gate: Arc<DatabaseGate>,
    dest: Arc<D>,
    telemetry: Arc<Telemetry>,
    mut stop: watch::Receiver<bool>,
) {
    let mut rx = gate.open.subscribe();
    loop {
        tokio::select! {
            r = rx.wait_for(|open| !*open) => if r.is_err() { return },
            _ = stop.wait_for(|s| *s) => return,
        }
        telemetry.set_database_up(false);
        let mut interval = Duration::from_secs(1);
        loop {
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            match dest.ping().await {
                Ok(()) => {
                    tracing::info!(
                        "database available again: scrapes resume from the committed cursors"
                    );
                    telemetry.set_database_up(true);
                    gate.open.send_replace(true);
                    break;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "database still unavailable");
                    interval = (interval * 2).min(Duration::from_secs(30));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_maximum() {
        let (i, m) = (Duration::from_secs(15), Duration::from_secs(300));
        let got: Vec<u64> = (1..=7).map(|f| backoff(f, i, m).as_secs()).collect();
        assert_eq!(got, [15, 30, 60, 120, 240, 300, 300]);
        assert_eq!(backoff(200, i, m), m);
    }

    #[test]
    fn jitter_is_stable_and_bounded() {
        let j = Duration::from_millis(2000);
        let a = jitter_offset("db-1", j);
        assert_eq!(a, jitter_offset("db-1", j));
        assert!(a <= j);
        let spread: std::collections::BTreeSet<_> = (0..50)
            .map(|i| jitter_offset(&format!("db-{i}"), j))
            .collect();
        assert!(spread.len() > 40, "offsets spread the fleet: {spread:?}");
        assert_eq!(jitter_offset("x", Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn the_next_instant_follows_the_schedule() {
        let every_15 = crate::config::parse_schedule("*/15 * * * * *").unwrap();
        let d = until_next(&every_15, Instant::now(), Duration::ZERO);
        assert!(d <= Duration::from_secs(15), "{d:?}");
        let later = until_next(
            &every_15,
            Instant::now() + Duration::from_secs(60),
            Duration::ZERO,
        );
        assert!(later >= Duration::from_secs(59), "{later:?}");
    }

    /// A pull that ends after the next schedule instant, but before that instant plus
    /// the agent's offset, does not cost the agent that tick (seen in `pga-bench
    /// fleet`: one agent in ten, those with the largest offsets, missed ticks).
    #[test]
    fn a_large_offset_keeps_every_tick() {
        let every_15 = crate::config::parse_schedule("*/15 * * * * *").unwrap();
        let at = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        let offset = Duration::from_secs(14);
        // Started at 12:00:14, ended at 12:00:15.2: next at 12:00:29.
        let next = next_start(&every_15, at("2026-12-05T12:00:15.200Z"), offset);
        assert_eq!(next, Some(at("2026-12-05T12:00:29Z")));
        // Ended at 12:00:29.5, past its next start: the one after.
        let next = next_start(&every_15, at("2026-12-05T12:00:29.500Z"), offset);
        assert_eq!(next, Some(at("2026-12-05T12:00:44Z")));
        // No offset: the schedule's own instants.
        let next = next_start(&every_15, at("2026-12-05T12:00:15.200Z"), Duration::ZERO);
        assert_eq!(next, Some(at("2026-12-05T12:00:30Z")));
        // The first start of a job: the next offset instant after now.
        let next = next_start(&every_15, at("2026-12-05T12:00:03Z"), offset);
        assert_eq!(next, Some(at("2026-12-05T12:00:14Z")));
    }
}
