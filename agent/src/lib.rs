//! # pga-agent
//!
//! The pgAnalytics v3 agent: the per-host collector. It runs on every PostgreSQL
//! host, collects PostgreSQL statistics, operating-system metrics, PostgreSQL log
//! events and its own health into a compressed local ring store that keeps days of
//! data within a byte budget, serves them over mutual TLS to the federator and to
//! Prometheus, and answers `query`, `series`, `status` and `logs` from that store
//! offline.
//!
//! ## The pipeline, in the order data flows
//!
//! 1. [`config`]: the TOML configuration, checked before anything runs.
//! 2. [`collect`]: the collectors ([`collect::system`], [`collect::postgres`],
//!    [`collect::logs`]) behind the [`collect::Collector`] trait. One pass of a
//!    collector fills an [`collect::Emitter`] with samples ([`collect::Emitted`]) and
//!    log events with their cursor ([`collect::LogBatch`]).
//! 3. [`scheduler`]: one ticker per group (fast, slow, sizes); every collector of a
//!    group runs on its ticks in a task of its own, and each finished pass goes, as a
//!    [`collect::Pass`] stamped with the tick's time, down a channel to the store
//!    writer.
//! 4. [`store`]: the store writer ([`store::write_passes`], a thread of its own)
//!    appends each pass to the redb ring store in one transaction: new series
//!    interned, a head row, the head sealed into a compressed block when its window
//!    ends, the oldest blocks evicted within the budget.
//! 5. [`endpoint`]: the mutual-TLS HTTP endpoint serves the store to the federator
//!    (blocks, dictionary, status) and to Prometheus (`/metrics`), reading it through
//!    a [`store::StoreHandle`].
//!
//! Beside the pipeline: [`telemetry`] (the agent's self-metrics, stored by
//! [`telemetry::SelfCollector`] and served on `/metrics`), and the command line:
//! [`cli`] (arguments), [`cmd`] (one module per command) and [`query`] (selectors,
//! aggregations, output of `pga-agent query`; only the command line uses it).
//!
//! Types flow one way: `collect` knows neither the scheduler nor the store; the
//! scheduler knows the collectors; the store knows what a pass carries.

pub mod cli;
pub mod cmd;
pub mod collect;
pub mod config;
pub mod endpoint;
pub mod query;
pub mod scheduler;
pub mod store;
pub mod telemetry;

/// Milliseconds since the Unix epoch on the wall clock: the time passes are stamped
/// with, and the time of the store's events.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
