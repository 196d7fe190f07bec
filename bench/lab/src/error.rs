//! The one error type of this crate.

use std::{io, path::PathBuf, process::ExitStatus};

/// How many trailing lines of a failed command's output (and of the server
/// log) an error carries.
pub const TAIL_LINES: usize = 20;

/// Why a lab operation failed.
///
/// Every variant's message is meant to be read in a CI log by someone who
/// cannot rerun the test: it names the command, its exit status, and the last
/// [`TAIL_LINES`] lines of its stderr (and of the server log when the server
/// itself failed), or says exactly what to install.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LabError {
    /// PostgreSQL (or one of its tools) is not installed where we looked.
    #[error("{what} not found (looked in: {searched})\n{hint}")]
    NotInstalled {
        /// What is missing, e.g. "PostgreSQL server binaries (initdb, pg_ctl, postgres)".
        what: String,
        /// The places searched.
        searched: String,
        /// What to install, as a command.
        hint: String,
    },

    /// A library passed to [`ClusterBuilder::preload`](crate::ClusterBuilder::preload)
    /// is not in the server's library directory.
    #[error("shared library `{name}` is not installed in {}\n{hint}", dir.display())]
    MissingLibrary {
        /// The library name as given.
        name: String,
        /// The server's `pkglibdir`.
        dir: PathBuf,
        /// What to install.
        hint: String,
    },

    /// A command could not be started at all.
    #[error("could not run `{command}`: {source}")]
    Spawn {
        /// The command line.
        command: String,
        /// The operating system's reason.
        #[source]
        source: io::Error,
    },

    /// A command ran and exited unsuccessfully.
    #[error(
        "`{command}` failed: {status}{}",
        render_tails(stderr_tail, stdout_tail, server_log.as_ref())
    )]
    Failed {
        /// The command line.
        command: String,
        /// Its exit status.
        status: ExitStatus,
        /// The last lines of its stderr.
        stderr_tail: String,
        /// The last lines of its stdout.
        stdout_tail: String,
        /// The server log path and its last lines, when the command was one that
        /// starts, stops or promotes the server.
        server_log: Option<(PathBuf, String)>,
    },

    /// A file-system operation on the lab's own files failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, naming the path.
        context: String,
        /// The operating system's reason.
        #[source]
        source: io::Error,
    },

    /// Running as root, and no unprivileged user to run PostgreSQL as.
    #[error(
        "running as root, and PostgreSQL refuses to run as root; no unprivileged user to run it as: {detail}"
    )]
    NoUser {
        /// What went wrong looking up or creating the user.
        detail: String,
    },

    /// A command succeeded but printed something we could not interpret.
    #[error("could not understand the output of `{command}`: {detail}")]
    Output {
        /// The command line.
        command: String,
        /// What was missing or malformed.
        detail: String,
    },

    /// The lab was asked for something it cannot do in its current state
    /// (e.g. `start_again` on a running cluster) or set up (e.g. a socket
    /// path that is too long).
    #[error("{0}")]
    Usage(String),
}

impl LabError {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        LabError::Io {
            context: context.into(),
            source,
        }
    }
}

fn render_tails(stderr: &str, stdout: &str, log: Option<&(PathBuf, String)>) -> String {
    let mut out = String::new();
    for (label, text) in [("stderr", stderr), ("stdout", stdout)] {
        if !text.trim().is_empty() {
            out.push_str(&format!(
                "\n--- {label} (last {TAIL_LINES} lines) ---\n{}",
                text.trim_end()
            ));
        }
    }
    if let Some((path, tail)) = log {
        out.push_str(&format!(
            "\n--- server log {} (last {TAIL_LINES} lines) ---\n{}",
            path.display(),
            if tail.trim().is_empty() {
                "(empty)"
            } else {
                tail.trim_end()
            }
        ));
    }
    out
}

/// The last `n` lines of `text`.
pub(crate) fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(n);
    lines[start..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail_lines("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail_lines("a", 5), "a");
        assert_eq!(tail_lines("", 5), "");
    }
}
