//! `pga-federator keygen`: a new key for signing the API's tokens.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

use crate::db::audit;

/// `keygen`: 64 random bytes, hex, into a new file readable by its owner only.
pub fn keygen(out: &Path, force: bool) -> anyhow::Result<()> {
    let mut key = [0u8; 64];
    getrandom::getrandom(&mut key).context("the OS random source")?;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).mode(0o600);
    if force {
        opts.create(true).truncate(true);
    } else {
        opts.create_new(true);
    }
    let mut f = opts.open(out).with_context(|| {
        format!(
            "{}: cannot create it{}",
            out.display(),
            if force { "" } else { " (an existing key is never overwritten without --force: every token signed with it would stop working)" }
        )
    })?;
    writeln!(f, "{}", audit::hex(&key)).with_context(|| format!("writing {}", out.display()))?;
    Ok(())
}

pub(super) fn main(out: &Path, force: bool) -> anyhow::Result<ExitCode> {
    keygen(out, force)?;
    super::print(&format!(
        "wrote a new token-signing key to {}; set api.jwt_key_file to it\n",
        out.display()
    ))?;
    Ok(ExitCode::SUCCESS)
}
