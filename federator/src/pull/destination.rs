//! The database sink as the scraper's [`Destination`]: the sink's errors sorted into
//! "the database is unavailable, pause everything" and "this agent's batch failed".

use std::collections::BTreeMap;

use pga_format::AgentId;

use crate::batch::{Batch, Cursor};
use crate::scrape::{AgentStatus, Destination, DestinationError};
use crate::sink::{Sink, SinkError};

fn sort(e: SinkError) -> DestinationError {
    if e.is_unavailable() {
        DestinationError::Unavailable(e.to_string())
    } else {
        DestinationError::Rejected {
            sqlstate: e.sqlstate(),
            message: e.to_string(),
        }
    }
}

impl Destination for Sink {
    async fn cursor(&self, agent: &str) -> Result<Option<(AgentId, Cursor)>, DestinationError> {
        Sink::cursor(self, agent).await.map_err(sort)
    }

    async fn ingest(&self, batch: &Batch) -> Result<u64, DestinationError> {
        Sink::ingest(self, batch)
            .await
            .map(|r| r.samples_inserted)
            .map_err(sort)
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
            .map_err(sort)?;
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

    /// The database answers and takes writes: not a standby, not read-only.
    async fn ping(&self) -> Result<(), DestinationError> {
        let read_only: bool = sqlx::query_scalar(
            "SELECT pg_is_in_recovery() OR current_setting('transaction_read_only')::boolean",
        )
        .fetch_one(self.pool())
        .await
        .map_err(|e| DestinationError::Unavailable(e.to_string()))?;
        if read_only {
            return Err(DestinationError::Unavailable(
                "the database is read-only".to_owned(),
            ));
        }
        Ok(())
    }
}
