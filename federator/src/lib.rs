//! # pga-federator
//!
//! The pgAnalytics v3 federator: the central puller. On a schedule it pulls sealed
//! blocks from every agent over mutually authenticated TLS ([`scrape`]), backfills
//! whatever it missed while an agent or the network was down, and writes raw samples
//! and rollups into PostgreSQL (TimescaleDB when installed) for alerting and Grafana.
//!
//! - [`config`]: `federator.toml`, its validation and `check-config`;
//! - [`scrape`]: the pull protocol's client, one pull of one agent;
//! - [`scheduler`]: a job per agent on its cron schedule, concurrency, backoff;
//! - [`batch`]: what one pull hands to the database sink;
//! - [`sink`]: the PostgreSQL sink (migrations, ingest, rollups, retention);
//! - [`telemetry`] and [`listener`]: self-metrics on `/metrics`, `/healthz`, `/readyz`;
//! - [`http`], [`auth`] and [`db`]: the HTTP API (`[api]`), its authentication and
//!   its repositories; [`api`] starts it; [`fleet`] keeps the pulled agents in step
//!   with the `agents` table.

pub mod admin;
pub mod alerting;
pub mod api;
pub mod auth;
pub mod batch;
pub mod cli;
pub mod config;
pub mod db;
pub mod destination;
pub mod fleet;
pub mod http;
pub mod listener;
pub mod notify;
pub mod run;
pub mod scheduler;
pub mod scrape;
pub mod sink;
pub mod telemetry;
pub mod url;
