//! The HTTP API end to end, on one throwaway cluster with a database per test.

mod accounts;
mod alerting;
mod attacks;
mod audit;
mod bad_input;
mod bruteforce;
#[path = "../common/mod.rs"]
mod common;
mod docs;
mod fleet;
#[path = "../support/mod.rs"]
mod pull;
mod query;
mod roles;
mod schemathesis;
mod support;
mod tls;
