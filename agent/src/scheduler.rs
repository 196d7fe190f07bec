//! The collection scheduler.
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

use crate::collect::{CollectError, Emitted, Emitter, Group};
use crate::store::{CollectorHealth, LogBatch, Store, now_ms};
use crate::telemetry::Telemetry;

/// A collector the scheduler can run: synchronous, run on a blocking thread.
pub trait Collector: Send + 'static {
    /// Stable name, used as the `collector` label and in `pga-agent status`.
    fn name(&self) -> &'static str;
    fn group(&self) -> Group;
    /// One pass; errors of parts of the collector do not stop the rest.
    fn collect(&mut self, out: &mut Emitter) -> Vec<CollectError>;
}

/// One finished collector pass on its way to the store.
#[derive(Debug)]
pub struct Pass {
    pub collector: &'static str,
    pub ts: i64,
    pub samples: Vec<Emitted>,
    /// Log events and the cursor that produced them, stored with the samples.
    pub logs: LogBatch,
    pub health: CollectorHealth,
}

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

/// A store that keeps failing is reported at most this often ...
const STORE_REPORT_EVERY: Duration = Duration::from_secs(60);
/// ... and its cause named at ERROR level at most this often (a filesystem that
/// stays nearly full makes writes fail and succeed by turns).
const STORE_ERROR_EVERY: Duration = Duration::from_secs(600);

/// What the store writer has said about failed writes, so that it says little.
#[derive(Debug, Default)]
struct StoreReport {
    /// The last write failed.
    failing: bool,
    /// When the cause was last named (ERROR), and when anything was last said.
    error_at: Option<Instant>,
    said_at: Option<Instant>,
    /// Collections lost since the last line.
    lost: u64,
}

impl StoreReport {
    fn due(at: Option<Instant>, every: Duration) -> bool {
        at.is_none_or(|t| t.elapsed() >= every)
    }

    fn failed(&mut self, e: &crate::store::StoreError, store: &Store, collector: &str, ts: i64) {
        self.lost += 1;
        if !self.failing && Self::due(self.error_at, STORE_ERROR_EVERY) {
            tracing::error!(collector, ts, error = %e, "could not store a collection; it is lost, and so is every collection until the store writes again");
            self.error_at = Some(Instant::now());
            self.said_at = self.error_at;
            self.lost = 0;
        } else if Self::due(self.said_at, STORE_REPORT_EVERY) {
            let h = store.health();
            tracing::warn!(
                lost = self.lost,
                lost_total = h.write_errors_total,
                last_error = h.last_error.as_deref().unwrap_or("-"),
                "the store still cannot write every collection"
            );
            self.said_at = Some(Instant::now());
            self.lost = 0;
        } else {
            tracing::debug!(collector, ts, error = %e, "collection not stored");
        }
        self.failing = true;
    }

    fn stored(&mut self, store: &Store) {
        if !self.failing {
            return;
        }
        self.failing = false;
        if Self::due(self.said_at, STORE_REPORT_EVERY) || self.said_at == self.error_at {
            tracing::warn!(
                store = %store.path().display(),
                lost = self.lost,
                reopens = store.health().reopens_total,
                "the store writes again; the collections it could not write were lost (pga-agent status lists the failure among the store's events)"
            );
            self.said_at = Some(Instant::now());
            self.lost = 0;
        }
    }
}

/// Writes passes into the store on the calling thread until the channel closes.
///
/// A store that cannot write is reported with its cause once (an ERROR naming the
/// error and the file; again only after ten minutes), then at most once a minute
/// with the collections lost, and when it writes again; the store reopens itself
/// (see `store`).
pub fn write_passes(store: &mut Store, mut rx: mpsc::Receiver<Pass>, telemetry: &Telemetry) {
    let mut report = StoreReport::default();
    while let Some(pass) = rx.blocking_recv() {
        let health = Some((pass.collector, &pass.health));
        match store.append_with_logs(pass.ts, &pass.samples, &pass.logs, health) {
            Ok(r) => {
                report.stored(store);
                telemetry.store(store, r.evicted_blocks);
                if let Some(seq) = r.sealed {
                    tracing::debug!(sequence = seq, "block sealed");
                }
                // Tests and operators key on this line: the pass is durable now.
                tracing::debug!(
                    collector = pass.collector,
                    ts = pass.ts,
                    samples = pass.samples.len(),
                    log_events = pass.logs.events.len(),
                    "stored"
                );
            }
            Err(e) => {
                telemetry.store_write_failed();
                report.failed(&e, store, pass.collector, pass.ts);
            }
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

/// The agent's own health as a collector in the fast group.
#[derive(Debug)]
pub struct SelfCollector {
    pub telemetry: Arc<Telemetry>,
    pub collectors: Vec<&'static str>,
}

impl Collector for SelfCollector {
    fn name(&self) -> &'static str {
        "self"
    }

    fn group(&self) -> Group {
        Group::Fast
    }

    fn collect(&mut self, out: &mut Emitter) -> Vec<CollectError> {
        self.telemetry.emit(&self.collectors, out);
        Vec::new()
    }
}

impl Collector for crate::collect::postgres::PostgresProbe {
    fn name(&self) -> &'static str {
        crate::collect::postgres::PostgresProbe::name(self)
    }

    fn group(&self) -> Group {
        crate::collect::postgres::PostgresProbe::group(self)
    }

    fn collect(&mut self, out: &mut Emitter) -> Vec<CollectError> {
        crate::collect::postgres::PostgresProbe::collect(self, out)
    }
}

impl Collector for crate::collect::system::SystemCollector {
    fn name(&self) -> &'static str {
        "system"
    }

    fn group(&self) -> Group {
        Group::Fast
    }

    fn collect(&mut self, out: &mut Emitter) -> Vec<CollectError> {
        crate::collect::system::SystemCollector::collect(self, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
                vec![CollectError::Other("always fails".into())]
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
