//! `pga-federator run`: the service, until SIGTERM or SIGINT ([`crate::app`]).

use std::path::Path;
use std::process::ExitCode;

pub(super) fn main(path: Option<&Path>) -> anyhow::Result<ExitCode> {
    super::init_tracing();
    let loaded = super::load_for_service(path)?;
    let rt = super::runtime()?;
    tracing::info!(config = %loaded.path.display(), version = env!("CARGO_PKG_VERSION"), "pga-federator starting");
    rt.block_on(crate::app::run(loaded.config))?;
    Ok(ExitCode::SUCCESS)
}
