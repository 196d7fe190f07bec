//! The runner of everything the federator does on a schedule: retention, the
//! fleet's upkeep, alert evaluation, token and outbox purges. One loop serves them
//! all: wait for the next instant (a cron schedule or an interval, or an early wake
//! when one is given), run the job, and after a failure try again with backoff,
//! never later than the next regular instant. A stop signal ends the wait at once;
//! a run in progress is not cut.
//!
//! [`retry`] is the same backoff for work that must succeed once before the rest
//! can start (the first connection to the database).

use std::fmt::Display;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{Notify, watch};

/// Doubling delays between `initial` and `max`.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff {
            initial,
            max: max.max(initial),
            next: initial,
        }
    }

    /// The delay before the next attempt; each call doubles the one after.
    pub fn delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d
    }

    /// Back to `initial`, after a success.
    pub fn reset(&mut self) {
        self.next = self.initial;
    }
}

/// When a job runs.
#[derive(Debug, Clone)]
pub enum Every {
    /// At each instant of a cron schedule (UTC).
    Cron(Box<cron::Schedule>),
    /// This long after the previous run ended (the first run one interval after
    /// the start).
    Interval(Duration),
}

impl Every {
    /// How long from now until the next regular run; `None` when a cron schedule
    /// has no instant left.
    pub fn wait(&self) -> Option<Duration> {
        match self {
            Every::Cron(s) => s
                .upcoming(Utc)
                .next()
                .map(|next| (next - Utc::now()).to_std().unwrap_or_default()),
            Every::Interval(d) => Some(*d),
        }
    }
}

/// A job's schedule and retry policy.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// The job's name in logs.
    pub name: &'static str,
    pub every: Every,
    /// After a failure the job runs again after these delays (each capped at the
    /// next regular instant); a success resets them.
    pub backoff: Backoff,
    /// Notified when the job should run now (a change it must pick up).
    pub wake: Option<Arc<Notify>>,
}

/// Waits `d`, or until `stop` turns true: `false` when stopped.
pub async fn sleep_or_stop(d: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        () = tokio::time::sleep(d) => true,
        _ = stop.wait_for(|s| *s) => false,
    }
}

/// Runs `job` on `schedule` until `stop`. The job logs its own successes; its
/// failures are logged here with the time of the next attempt.
pub async fn run<F, Fut, E>(schedule: Schedule, mut stop: watch::Receiver<bool>, mut job: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: Display,
{
    let mut backoff = schedule.backoff;
    let mut retry_in: Option<Duration> = None;
    loop {
        let Some(regular) = schedule.every.wait() else {
            return;
        };
        let wait = retry_in.map_or(regular, |r| r.min(regular));
        let wake = async {
            match &schedule.wake {
                Some(n) => n.notified().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = wake => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        match job().await {
            Ok(()) => {
                backoff.reset();
                retry_in = None;
            }
            Err(e) => {
                let d = backoff.delay();
                retry_in = Some(d);
                tracing::warn!(
                    job = schedule.name,
                    error = %e,
                    retry_in_secs = d.as_secs_f64(),
                    "{} failed; it is tried again with backoff, at the latest at its next scheduled run",
                    schedule.name
                );
            }
        }
    }
}

/// Runs `attempt` until it succeeds, fails for good (`is_transient` false), or
/// `stop` turns true (`Ok(None)`), waiting with `backoff` between attempts.
pub async fn retry<T, E, F, Fut>(
    what: &str,
    mut backoff: Backoff,
    stop: &mut watch::Receiver<bool>,
    is_transient: impl Fn(&E) -> bool,
    mut attempt: F,
) -> Result<Option<T>, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: Display,
{
    loop {
        match attempt().await {
            Ok(v) => return Ok(Some(v)),
            Err(e) if is_transient(&e) => {
                let d = backoff.delay();
                tracing::warn!(error = %e, retry_in_secs = d.as_secs(), "{what}");
                if !sleep_or_stop(d, stop).await {
                    return Ok(None);
                }
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn backoff_doubles_to_its_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(5));
        let d: Vec<u64> = (0..5).map(|_| b.delay().as_secs()).collect();
        assert_eq!(d, [1, 2, 4, 5, 5]);
        b.reset();
        assert_eq!(b.delay(), Duration::from_secs(1));
    }

    /// An hourly job that fails its first `failures` runs; its run count.
    fn hourly(
        failures: u32,
        wake: Option<Arc<Notify>>,
        stop: watch::Receiver<bool>,
    ) -> (Arc<AtomicU32>, tokio::task::JoinHandle<()>) {
        let runs = Arc::new(AtomicU32::new(0));
        let r = runs.clone();
        let task = tokio::spawn(run(
            Schedule {
                name: "test job",
                every: Every::Interval(Duration::from_secs(3600)),
                backoff: Backoff::new(Duration::from_secs(1), Duration::from_secs(60)),
                wake,
            },
            stop,
            move || {
                let n = r.fetch_add(1, Ordering::SeqCst);
                async move { if n < failures { Err("not yet") } else { Ok(()) } }
            },
        ));
        (runs, task)
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_run_is_retried_before_the_next_regular_one() {
        let (tx, rx) = watch::channel(false);
        let (runs, task) = hourly(2, None, rx);
        // First run after an hour; it fails, then again 1 s and 2 s later.
        tokio::time::sleep(Duration::from_secs(3600 + 4)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 3);
        // Succeeded: the next run waits for the regular hour again.
        tokio::time::sleep(Duration::from_secs(1800)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 3);
        tx.send_replace(true);
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_wake_runs_the_job_at_once_and_stop_ends_it() {
        let wake = Arc::new(Notify::new());
        let (tx, rx) = watch::channel(false);
        let (runs, task) = hourly(0, Some(wake.clone()), rx);
        tokio::task::yield_now().await;
        wake.notify_one();
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        tx.send_replace(true);
        task.await.unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }
}
