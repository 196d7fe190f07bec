//! `pga-federator migrate`: creates or upgrades the schema as its owner, then exits.

use std::path::Path;
use std::process::ExitCode;

pub(super) fn main(path: Option<&Path>) -> anyhow::Result<ExitCode> {
    super::init_tracing();
    let loaded = super::load_for_service(path)?;
    let report = super::runtime()?.block_on(crate::app::migrate(&loaded.config))?;
    super::print(&report)?;
    Ok(ExitCode::SUCCESS)
}
