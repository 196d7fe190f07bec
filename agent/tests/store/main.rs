//! The agent's store as a user meets it: budgets, faults, corruption, crashes, a full disk.

#[path = "../support/mod.rs"]
mod support;

mod budget;
mod corruption_cli;
mod crash;
mod disk_full;
mod faults;
mod log_crash;
mod model;
