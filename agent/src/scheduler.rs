//! The collection scheduler: the second stage of the agent's pipeline, between the
//! collectors (`crate::collect`) and the store writer (`crate::store::write_passes`).
//!
//! Each group (fast, slow, sizes) has one ticker, aligned to multiples of its interval
//! on the wall clock. A tick carries one timestamp; every collector of the group stamps
//! its samples of that pass with it. Each collector runs in its own task, so a slow or
//! failing collector never delays another: a collector still busy when its group ticks
//! again skips that tick (and says so in its health), the others go on. Passes end in a
//! channel to the store writer, a thread of its own that owns the store.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::collect::{Collector, CollectorHealth, Emitter, Group, Pass};
use crate::now_ms;
use crate::telemetry::Telemetry;

/// Tick intervals per group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Intervals {
    pub fast: Duration,
    pub slow: Duration,
    pub sizes: Duration,
}

impl Intervals {
    pub fn of(&self, g: Group) -> Duration {
        match g {
            Group::Fast => self.fast,
            Group::Slow => self.slow,
            Group::Sizes => self.sizes,
        }
    }
}

/// Time until the next multiple of `period` on the wall clock.
fn until_aligned(period: Duration) -> Duration {
    let p = period.as_millis().max(1) as i64;
    let now = now_ms();
    Duration::from_millis((p - now.rem_euclid(p)) as u64)
}

/// Runs a group's ticker: the first tick at once, then on multiples of `period`.
async fn ticker(period: Duration, tx: watch::Sender<i64>) {
    if tx.send(now_ms()).is_err() {
        return;
    }
    tokio::time::sleep(until_aligned(period)).await;
    let mut iv = tokio::time::interval(period);
    iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        iv.tick().await;
        if tx.send(now_ms()).is_err() {
            return;
        }
    }
}

/// Runs one collector on the ticks of its group until the ticker stops.
async fn run_collector(
    mut collector: Box<dyn Collector>,
    mut ticks: watch::Receiver<i64>,
    out: mpsc::Sender<Pass>,
    telemetry: Arc<Telemetry>,
) {
    let name = collector.name();
    let mut health = CollectorHealth::default();
    let mut last_ts = None;
    while ticks.changed().await.is_ok() {
        let ts = *ticks.borrow_and_update();
        if ticks.has_changed().is_err() {
            // The ticker stopped: shutting down, start no new pass.
            break;
        }
        if last_ts == Some(ts) {
            continue;
        }
        last_ts = Some(ts);
        let started = Instant::now();
        let joined = tokio::task::spawn_blocking(move || {
            let mut emitter = Emitter::new();
            let errors = collector.collect(&mut emitter);
            (collector, emitter, errors)
        })
        .await;
        let (c, mut emitter, errors) = match joined {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(collector = name, error = %e, "collector panicked; it stops until the agent restarts");
                return;
            }
        };
        collector = c;
        let secs = started.elapsed().as_secs_f64();
        // The same error pass after pass is said once, then at debug level.
        let first = errors.first().map(ToString::to_string);
        if first.is_some() && first != health.last_error {
            for e in &errors {
                tracing::warn!(collector = name, error = %e, "collection error");
            }
        } else if first.is_some() {
            tracing::debug!(
                collector = name,
                errors = errors.len(),
                "collection errors persist"
            );
        } else if health.last_error.is_some() {
            tracing::info!(collector = name, "collector recovered");
        }
        telemetry.collector_pass(name, secs, emitter.len(), errors.len());
        health.last_run_ms = ts;
        health.last_duration_ms = secs * 1000.0;
        health.last_samples = emitter.len() as u64;
        health.last_error = errors.first().map(ToString::to_string);
        health.runs_total += 1;
        health.errors_total += errors.len() as u64;
        let pass = Pass {
            collector: name,
            ts,
            samples: emitter.take(),
            logs: emitter.take_logs(),
            health: health.clone(),
        };
        if out.send(pass).await.is_err() {
            return;
        }
    }
}

/// Starts the tickers and collectors; returns when `shutdown` resolves, after every
/// collector has finished its current pass.
pub async fn run(
    collectors: Vec<Box<dyn Collector>>,
    intervals: Intervals,
    out: mpsc::Sender<Pass>,
    telemetry: Arc<Telemetry>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let mut by_group: BTreeMap<Group, Vec<Box<dyn Collector>>> = BTreeMap::new();
    for c in collectors {
        by_group.entry(c.group()).or_default().push(c);
    }
    let mut tickers = JoinSet::new();
    let mut workers = JoinSet::new();
    for (group, list) in by_group {
        let (tx, rx) = watch::channel(0i64);
        for c in list {
            tracing::info!(collector = c.name(), group = %group, interval_secs = intervals.of(group).as_secs_f64(), "collector scheduled");
            workers.spawn(run_collector(c, rx.clone(), out.clone(), telemetry.clone()));
        }
        tickers.spawn(ticker(intervals.of(group), tx));
    }
    drop(out);
    shutdown.await;
    // Stopping the tickers ends each collector after its current pass.
    tickers.abort_all();
    while workers.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::CollectError;

    /// Emits one gauge per pass; sleeps `delay` first; fails every pass when `fail`.
    struct Probe {
        name: &'static str,
        delay: Duration,
        fail: bool,
    }

    impl Collector for Probe {
        fn name(&self) -> &'static str {
            self.name
        }

        fn group(&self) -> Group {
            Group::Fast
        }

        fn collect(&mut self, out: &mut Emitter) -> Vec<CollectError> {
            std::thread::sleep(self.delay);
            out.gauge("probe", "A probe.", "", &[("name", self.name)], 1.0);
            if self.fail {
                vec![CollectError::parse("/probe", "always fails")]
            } else {
                Vec::new()
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_slow_or_failing_collector_never_delays_another() {
        let telemetry = Arc::new(Telemetry::new());
        let (tx, mut rx) = mpsc::channel(1024);
        let collectors: Vec<Box<dyn Collector>> = vec![
            Box::new(Probe {
                name: "quick",
                delay: Duration::ZERO,
                fail: false,
            }),
            Box::new(Probe {
                name: "slow",
                delay: Duration::from_millis(2500),
                fail: false,
            }),
            Box::new(Probe {
                name: "failing",
                delay: Duration::ZERO,
                fail: true,
            }),
        ];
        let intervals = Intervals {
            fast: Duration::from_millis(200),
            slow: Duration::from_secs(60),
            sizes: Duration::from_secs(60),
        };
        run(
            collectors,
            intervals,
            tx,
            telemetry.clone(),
            tokio::time::sleep(Duration::from_millis(2000)),
        )
        .await;
        let mut passes: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
        while let Ok(p) = rx.try_recv() {
            assert_eq!(p.samples.len(), 1);
            passes.entry(p.collector).or_default().push(p.ts);
        }
        // 2 s at 200 ms: the quick and the failing collector ran about ten times while
        // the slow one was busy with its first pass (it finishes it before shutdown).
        assert!(passes["quick"].len() >= 7, "{passes:?}");
        assert!(passes["failing"].len() >= 7, "{passes:?}");
        assert_eq!(passes["slow"].len(), 1, "{passes:?}");
        // Every pass of one tick shares its timestamp.
        assert_eq!(passes["quick"][0], passes["slow"][0]);
        assert!(
            telemetry
                .render()
                .contains("pga_agent_collector_errors_total{collector=\"failing\"}")
        );
    }
}
