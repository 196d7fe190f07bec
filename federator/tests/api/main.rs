//! The HTTP API end to end, on one throwaway cluster with a database per test.

mod accounts;
mod alerting;
mod attacks;
mod audit;
mod bad_input;
mod bruteforce;
mod docs;
mod fleet;
mod query;
mod roles;
mod schemathesis;
#[path = "../support/mod.rs"]
mod support;
mod tls;
