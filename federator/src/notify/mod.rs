//! Notifications: from the outbox the evaluator fills to Alertmanagers (API v2, as
//! Prometheus sends) and webhooks (Alertmanager's webhook payload, version 4, signed).
//!
//! - [`http`]: the HTTP client, receiver URLs and how an attempt's result is sorted
//!   (delivered, retry, rejected);
//! - [`payload`]: what is sent;
//! - [`worker`]: one delivery worker per receiver: in order, at least once, with
//!   retries; Alertmanager re-sends.

pub mod http;
pub mod payload;
pub mod worker;
