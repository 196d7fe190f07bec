//! The database sink as the puller's [`Destination`]: the sink's errors sorted into
//! "the database is unavailable, pause everything" and "this agent's batch failed",
//! each keeping the [`SinkError`] (and its SQLSTATE). No SQL here: the sink runs it.

use std::collections::BTreeMap;

use pga_format::AgentId;

use crate::db::sink::{Sink, SinkError};
use crate::pull::batch::{Batch, Cursor};
use crate::pull::{AgentStatus, Destination, DestinationError};

impl From<SinkError> for DestinationError {
    fn from(e: SinkError) -> Self {
        if matches!(e, SinkError::Fenced { .. }) {
            DestinationError::Fenced(e)
        } else if e.is_unavailable() {
            DestinationError::Unavailable(e)
        } else {
            DestinationError::Rejected(e)
        }
    }
}

impl Destination for Sink {
    async fn cursor(&self, agent: &str) -> Result<Option<(AgentId, Cursor)>, DestinationError> {
        Sink::cursor(self, agent)
            .await
            .map_err(DestinationError::from)
    }

    async fn ingest(&self, batch: &Batch) -> Result<u64, DestinationError> {
        Sink::ingest(self, batch)
            .await
            .map(|r| r.samples_inserted)
            .map_err(DestinationError::from)
    }

    async fn record_status(
        &self,
        agent: &str,
        url: &str,
        labels: &BTreeMap<String, String>,
        status: &AgentStatus,
    ) -> Result<Vec<String>, DestinationError> {
        let report = Sink::record_status(self, agent, url, labels, status)
            .await
            .map_err(DestinationError::from)?;
        Ok(report
            .identity_changes
            .into_iter()
            .map(|(instance, before, now)| {
                format!(
                    "PostgreSQL instance {instance} now reports system identifier {now} (it \
                     was {before}): the cluster was restored from another or created anew; \
                     the inventory records the new one"
                )
            })
            .collect())
    }

    async fn ping(&self) -> Result<(), DestinationError> {
        Ok(Sink::ping_writable(self).await?)
    }
}
