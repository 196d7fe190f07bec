//! Repositories: the SQL of one kind of row each, for the HTTP API's handlers and
//! the background jobs.

pub mod alerts;
pub mod maintenance;
pub mod outbox;
pub mod rules;
