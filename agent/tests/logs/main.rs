//! The log collector: parsers, tailing, redaction, and a live server's log.

#[path = "../support/mod.rs"]
mod support;

mod live;
mod parsers;
mod redaction;
mod tail;
