//! The orphan guard: a small shell process per cluster that stops the server
//! and removes its directory if the test process dies without running `Drop`
//! (SIGKILL, `abort`, a CI timeout).
//!
//! It blocks reading a pipe whose only write end is held by the [`Cluster`]
//! (the pipe is close-on-exec, so neither the postmaster nor any other child
//! inherits it). When the test process dies, the kernel closes that end, the
//! read returns end-of-file, and the watchdog runs
//! `pg_ctl -m immediate stop` and `rm -rf` on the cluster's directory. It runs
//! in its own process group and ignores SIGINT/SIGTERM/SIGHUP so that a Ctrl-C
//! aimed at `cargo test` does not take it down before it has cleaned up.
//!
//! [`Cluster`]: crate::Cluster

use std::{
    os::unix::process::CommandExt,
    path::Path,
    process::{Child, ChildStdin, Command, Stdio},
};

use crate::{LabError, process::RunAs};

const SCRIPT: &str = r#"trap '' INT TERM HUP
while read -r _; do :; done
"$1" -D "$2" -m immediate -w -t 30 stop >/dev/null 2>&1
if [ -n "$3" ]; then rm -rf "$3"; fi
"#;

#[derive(Debug)]
pub(crate) struct Watchdog {
    child: Child,
    /// Held, never written; its closing is the signal.
    _pipe: ChildStdin,
}

impl Watchdog {
    /// Starts a watchdog for the data directory `data_dir`; it removes
    /// `remove` (when given) after stopping the server.
    pub(crate) fn spawn(
        pg_ctl: &Path,
        data_dir: &Path,
        remove: Option<&Path>,
        run_as: Option<RunAs>,
    ) -> Result<Watchdog, LabError> {
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(SCRIPT)
            .arg("pga-lab-watchdog")
            .arg(pg_ctl)
            .arg(data_dir)
            .arg(remove.map_or(Path::new(""), |p| p))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .current_dir("/")
            .process_group(0);
        if let Some(who) = run_as {
            cmd.uid(who.uid.as_raw()).gid(who.gid.as_raw());
        }
        let mut child = cmd.spawn().map_err(|source| LabError::Spawn {
            command: "/bin/sh -c <pga-lab watchdog>".into(),
            source,
        })?;
        match child.stdin.take() {
            Some(pipe) => Ok(Watchdog { child, _pipe: pipe }),
            None => {
                // Cannot happen: stdin was requested piped just above.
                Self::reap(&mut child);
                Err(LabError::Usage(
                    "watchdog started without a stdin pipe".into(),
                ))
            }
        }
    }

    /// Ends the watchdog without letting it act (the cluster cleaned up
    /// itself). Never panics.
    pub(crate) fn dismiss(mut self) {
        Self::reap(&mut self.child);
    }

    fn reap(child: &mut Child) {
        // Errors mean it has already exited or been reaped, which is what we
        // want.
        drop(child.kill());
        drop(child.wait());
    }
}
