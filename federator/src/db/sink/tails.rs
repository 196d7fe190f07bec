//! The newest stored sample of each series, remembered between two ingests of an
//! agent so that a batch that only continues its series needs no read of what is
//! stored: no overlap to look for, and the rollups follow from the tail and the new
//! samples alone.
//!
//! The memory is only trusted while nobody else wrote the agent: every ingest
//! rewrites the agent's `agent_cursors` row, and the sink keeps the row version it
//! committed (`xmin`, the writing transaction's id). An ingest that finds another
//! version (a second federator, a restored database, a commit whose outcome was
//! lost) forgets the agent's tails and reads them afresh. Tails older than the raw
//! retention are not trusted either: retention may have dropped them.

use std::collections::HashMap;

/// The newest stored sample of a series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Tail {
    /// Milliseconds since the Unix epoch.
    pub ts: i64,
    pub value: f64,
    pub counter: bool,
    /// At most the series' `last_seen` (ms; `i64::MIN` when unknown): `last_seen`
    /// is only moved when it falls more than an hour behind.
    pub seen_ms: i64,
}

/// Tails by global series id.
pub(crate) type Tails = HashMap<i64, Tail>;

/// Committed tails per agent row, each with the cursor row version it belongs to.
#[derive(Debug, Default)]
pub(crate) struct TailCache {
    agents: HashMap<i64, (i64, Tails)>,
}

impl TailCache {
    /// Takes the agent's tails out (an ingest puts them back after its commit);
    /// empty unless `token`, the cursor row version found now, is the one they
    /// were committed with.
    pub(crate) fn take(&mut self, agent_row: i64, token: Option<i64>) -> Tails {
        match self.agents.remove(&agent_row) {
            Some((committed, tails)) if Some(committed) == token => tails,
            _ => Tails::new(),
        }
    }

    /// Records the agent's tails after a commit that left the cursor row at `token`.
    pub(crate) fn put(&mut self, agent_row: i64, token: i64, tails: Tails) {
        self.agents.insert(agent_row, (token, tails));
    }

    pub(crate) fn clear(&mut self) {
        self.agents.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tails_come_back_only_with_the_same_cursor_version() {
        let mut cache = TailCache::default();
        let tail = Tail {
            ts: 10,
            value: 1.0,
            counter: true,
            seen_ms: 10,
        };
        cache.put(7, 100, Tails::from([(1, tail)]));
        assert!(cache.take(7, Some(101)).is_empty(), "another writer");
        // Taken means gone: a failed ingest does not leave stale tails behind.
        assert!(cache.take(7, Some(100)).is_empty());
        cache.put(7, 100, Tails::from([(1, tail)]));
        assert_eq!(cache.take(7, Some(100))[&1], tail);
        cache.put(7, 100, Tails::from([(1, tail)]));
        assert!(cache.take(7, None).is_empty(), "cursor row gone");
    }
}
