//! Alerting: rules over the central data, evaluated per agent at its data watermark
//! (docs/alerting.md).
//!
//! - [`expr`]: the query language; [`window`]: window functions over samples and
//!   rollups; [`eval`]: a query for one agent at one time; [`labels`]: label sets;
//! - [`rule`]: the rule model and its checks; [`template`]: annotation templates;
//!   [`rulefile`]: rule files (TOML) with located errors;
//! - [`state`]: one alert's state machine; [`engine`]: the evaluation core (data-time
//!   steps, what an evaluation does to alerts) shared by the evaluator and
//!   [`testing`] (`pga-federator rules test`);
//! - [`data`]: reading windows of samples and rollups from the central database;
//!   [`evaluator`]: one evaluation cycle against the database; the cycle runs on
//!   its cron schedule in [`crate::app::alerting`]. `pga-federator rules …` is [`crate::cmd::rules`].

pub mod cache;
pub mod data;
pub mod engine;
pub mod eval;
pub mod evaluator;
pub mod expr;
pub mod labels;
pub mod metrics;
pub mod rule;
pub mod rulefile;
pub mod state;
pub mod template;
pub mod testing;
pub mod window;
