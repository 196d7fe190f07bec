//! # pga-federator
//!
//! The pgAnalytics v3 federator: the central puller. On a schedule it pulls sealed
//! blocks from every agent over mutually authenticated TLS, backfills whatever it
//! missed while an agent or the network was down, and writes raw samples and rollups
//! into PostgreSQL (TimescaleDB when installed) for alerting and Grafana.
//!
//! This early build holds the command-line interface and reports the block format it
//! reads; scraping, the PostgreSQL sink, rollups, alerting and the API are not
//! implemented yet.

pub mod batch;
pub mod cli;
pub mod sink;
