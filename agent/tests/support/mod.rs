//! Shared by the agent's test binaries (each includes it as `support`): the running
//! agent, the endpoint's certificates and clients, the PostgreSQL collector's
//! helpers and small tmpfs filesystems. What every crate's tests need (free ports,
//! the clock, waiting, one HTTP GET, a child process) is in `pga-lab`.

#![allow(dead_code, unused_imports)]

pub mod agent;
pub mod endpoint;
pub mod postgres;
pub mod tmpfs;

pub use agent::Agent;
pub use pga_lab::{free_port, http_get, now_ms, wait_until};
