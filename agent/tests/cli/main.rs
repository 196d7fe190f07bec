//! The command line, the example configuration and the README's lists.

#[path = "../support/mod.rs"]
mod support;

mod commands;
mod config_example;
mod readme;
