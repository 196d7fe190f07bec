//! # pga-federator
//!
//! The pgAnalytics v3 federator: the central puller. On a schedule it pulls sealed
//! blocks from every agent over mutually authenticated TLS ([`pull`]), backfills
//! whatever it missed while an agent or the network was down, and writes raw samples
//! and rollups into PostgreSQL (TimescaleDB when installed) for alerting and Grafana.
//!
//! Where things are:
//! - [`cmd`]: the command line, one module per subcommand (`main.rs` only calls it);
//! - [`app`]: the composition root: configuration → database → sink → pulls → jobs →
//!   HTTP, built in one place and stopped together;
//! - [`config`]: `federator.toml`, its validation and `check-config`;
//! - [`pull`]: the pull protocol's client, one pull of one agent ([`pull::pull`]),
//!   the scheduler of the agents' pulls and the fleet it follows;
//! - [`db`]: the central database: the sink ([`db::sink`]: migrations, ingest,
//!   rollups, retention) and the repositories the API, alerting and the command line
//!   use;
//! - [`cluster`]: replicas sharing one database: leases, the agents' assignment
//!   and fencing;
//! - [`jobs`]: the runner of everything that runs on a cron schedule, with backoff;
//! - [`telemetry`] and [`listener`]: self-metrics on `/metrics`, `/healthz`, `/readyz`;
//! - [`http`] and [`auth`]: the HTTP API (`[api]`) and its authentication
//!   ([`app::api`] starts it);
//! - [`alerting`] and [`notify`]: rules evaluated at each agent's watermark, and the
//!   notifications they send;
//! - [`remote_write`]: raw samples to Prometheus remote-write destinations, each
//!   from its own cursors.
//!
//! Errors are typed ([`thiserror`]) in the library; `anyhow` is used only in [`cmd`]
//! and [`app`], where errors are said to the operator.

pub mod alerting;
pub mod app;
pub mod auth;
pub mod cluster;
pub mod cmd;
pub mod config;
pub mod db;
pub mod http;
pub mod jobs;
pub mod listener;
pub mod notify;
pub mod pull;
pub mod remote_write;
pub mod telemetry;
pub mod tls;
