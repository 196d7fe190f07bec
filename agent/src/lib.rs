//! # pga-agent
//!
//! The pgAnalytics v3 agent: the per-host collector. It runs on every PostgreSQL
//! host, collects operating-system metrics and its own health (PostgreSQL statistics
//! and log events arrive with their collectors) into a compressed local ring store
//! that keeps days of data within a byte budget, and answers `query`, `series` and
//! `status` from that store offline.
//!
//! Modules: [`config`] (the TOML configuration), [`collect`] (collectors and what they
//! emit), [`scheduler`] (ticks, passes, the store writer), [`store`] (the redb ring
//! store), [`query`] (selectors, aggregations, output), [`telemetry`] (self-metrics),
//! [`cmd`] and [`cli`] (the command line).

pub mod cli;
pub mod cmd;
pub mod collect;
pub mod config;
pub mod endpoint;
pub mod query;
pub mod scheduler;
pub mod store;
pub mod telemetry;
