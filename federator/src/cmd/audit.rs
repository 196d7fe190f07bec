//! `pga-federator audit verify`: recomputes the audit log's hash chain.

use std::path::Path;
use std::process::ExitCode;

use crate::config::{self, FederatorConfig};
use crate::db::audit::{self, Verification};

/// Reads the whole chain.
pub async fn audit_verify(cfg: &FederatorConfig) -> anyhow::Result<Verification> {
    let pool = super::admin_pool(cfg).await?;
    Ok(audit::verify(&pool).await?)
}

pub(super) fn main(path: Option<&Path>) -> anyhow::Result<ExitCode> {
    let loaded = config::load(path)?;
    let v = super::runtime()?.block_on(audit_verify(&loaded.config))?;
    match v.first_break {
        None => {
            super::print(&format!(
                "audit log OK: {} entries chain without a break; head {} (seq {})\n",
                v.entries, v.head, v.last_seq
            ))?;
            Ok(ExitCode::SUCCESS)
        }
        Some(b) => {
            super::print(&format!(
                "audit log BROKEN: {b}\n{} entries before it chain correctly (last good seq {})\n",
                v.entries, v.last_seq
            ))?;
            Ok(ExitCode::FAILURE)
        }
    }
}
