//! The [`Collector`] trait, and the [`Pass`] the scheduler makes of each pass of a
//! collector for the store writer.

use super::{CollectError, Emitted, Emitter, Group, LogBatch};
use serde::{Deserialize, Serialize};

/// A collector the scheduler can run: synchronous, run on a blocking thread.
///
/// The implementations live beside what they collect: `system::SystemCollector`,
/// `postgres::PostgresProbe` and `postgres::PostgresGroup`, `logs::collector::LogCollector`,
/// and the agent's own `crate::telemetry::SelfCollector`.
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
    /// The tick's timestamp, shared by every collector of the group.
    pub ts: i64,
    pub samples: Vec<Emitted>,
    /// Log events and the cursor that produced them, stored with the samples.
    pub logs: LogBatch,
    pub health: CollectorHealth,
}

/// What the last pass of a collector did, kept in the store for `pga-agent status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct CollectorHealth {
    pub last_run_ms: i64,
    pub last_duration_ms: f64,
    pub last_samples: u64,
    pub last_error: Option<String>,
    pub runs_total: u64,
    pub errors_total: u64,
}
