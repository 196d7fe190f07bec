//! `pga-federator check-config`.

use std::path::Path;
use std::process::ExitCode;

use crate::config::{self, has_errors, render_check};

/// Shows the effective configuration and every problem; exits 1 on an error.
pub(super) fn main(path: Option<&Path>) -> anyhow::Result<ExitCode> {
    let loaded = config::load(path)?;
    let problems = loaded.config.validate();
    super::print(&render_check(&loaded, &problems))?;
    Ok(if has_errors(&problems) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
