//! The PostgreSQL and system collectors against real clusters and the host.

#[path = "../support/mod.rs"]
mod support;

mod postgres_families;
mod postgres_monitor_role;
mod postgres_probe;
mod postgres_safety;
mod postgres_statements_scale;
mod postgres_versions;
mod system;
