//! The agent's HTTP endpoint: the API, TLS, floods, and what promtool and Prometheus make of it.

#[path = "../support/mod.rs"]
mod support;

mod api;
mod flood;
mod prometheus_interop;
mod promtool;
mod tls;
