//! # pga-bench
//!
//! The pgAnalytics v3 lab. `pga-bench store` measures the agent's ring store (write
//! cost per collection, query time over a day of one series). `pga-bench endpoint`
//! measures the agent's endpoint in process (`/v1/blocks` pages per second and MB/s,
//! `/metrics` render time). `pga-bench logparse` measures the agent's PostgreSQL log
//! parsers (MB/s and entries/s per format); `pga-bench logtail` the whole log collector,
//! from file to committed store transaction. `pga-bench overhead` measures what
//! monitoring a PostgreSQL host costs with the agent and with the Prometheus exporters.
//! `pga-bench ingest` measures the federator's ingest into PostgreSQL against a bare
//! binary `COPY` of the same rows; `pga-bench lockwait` how long one agent's long ingest
//! transaction makes another agent's writes wait. `pga-bench backfill` and `pga-bench fleet` measure the
//! federator's pull into PostgreSQL from simulated agents ([`simagent`]).
//! `pga-bench api` measures the federator's HTTP API (authenticated requests/s, p50/p99
//! on the list and query routes, sign-ins/s) while it ingests.
//! `pga-bench dashboards` times every panel query of the Grafana dashboards over 7 days of a
//! simulated fleet ([`grafana`]). `pga-bench alerts` measures an evaluation cycle of the
//! built-in alert rules over a simulated fleet while it is ingested, and the notification
//! latency. `pga-bench remote-write` measures the encoding of
//! the federator's Prometheus remote-write requests. `pga-bench codec` measures the block format of `pga-format` on
//! a recorded scrape corpus: bytes per sample, encode and decode speed, the cost of each
//! data shape, and baselines to compare with. The binary is a thin shell over these
//! modules so that tests drive the same code.

pub mod alerts_cmd;
pub mod api_cmd;
pub mod baselines;
pub mod blocks;
pub mod cli;
pub mod codec_cmd;
pub mod corpus;
pub mod dashboards_cmd;
pub mod endpoint_cmd;
pub mod grafana;
pub mod ingest_cmd;
pub mod lockwait_cmd;
pub mod logparse_cmd;
pub mod logtail_cmd;
pub mod overhead_cmd;
pub mod pull_cmd;
pub mod remote_write_cmd;
pub mod report;
pub mod simagent;
pub mod store_cmd;
