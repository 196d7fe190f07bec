//! Running PostgreSQL programs: as which user, with what environment, and
//! turning failures into [`LabError::Failed`].

use std::{
    env,
    ffi::OsStr,
    io::Write,
    os::unix::process::CommandExt,
    path::Path,
    process::{Command, Stdio},
    sync::OnceLock,
};

use nix::unistd::{Gid, Group, Uid, User, geteuid};

use crate::{
    LabError,
    error::{TAIL_LINES, tail_lines},
};

/// The user PostgreSQL runs as when the test process is root (initdb and
/// pg_ctl refuse to run as root). Tried first; then [`FALLBACK_USER`].
pub const SERVICE_USER: &str = "postgres";
/// Created with `useradd --system --no-create-home` when running as root and
/// [`SERVICE_USER`] does not exist.
pub const FALLBACK_USER: &str = "pga-lab";

/// Seconds libpq clients wait for a connection before giving up, so that a
/// wedged server fails a test instead of hanging it.
const CONNECT_TIMEOUT_SECS: &str = "10";

/// The unprivileged identity to switch to; `None` means "run as ourselves".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RunAs {
    pub uid: Uid,
    pub gid: Gid,
}

/// Who runs PostgreSQL programs: `None` when we are not root, else the
/// service user (created if need be). Resolved once per process.
pub(crate) fn run_as() -> Result<Option<RunAs>, LabError> {
    static RESOLVED: OnceLock<Result<Option<RunAs>, String>> = OnceLock::new();
    RESOLVED
        .get_or_init(resolve_run_as)
        .clone()
        .map_err(|detail| LabError::NoUser { detail })
}

fn resolve_run_as() -> Result<Option<RunAs>, String> {
    if !geteuid().is_root() {
        return Ok(None);
    }
    for name in [SERVICE_USER, FALLBACK_USER] {
        if let Some(user) = lookup(name)? {
            return Ok(Some(user));
        }
    }
    let out = Command::new("useradd")
        .args(["--system", "--no-create-home", "--user-group"])
        .args(["--shell", "/usr/sbin/nologin", FALLBACK_USER])
        .output()
        .map_err(|e| {
            format!(
                "neither `{SERVICE_USER}` nor `{FALLBACK_USER}` exists and `useradd` could not run ({e}); \
                 create one: `useradd --system --no-create-home {FALLBACK_USER}`"
            )
        })?;
    // Another test process may have created it at the same moment; look again
    // before judging the exit status.
    match lookup(FALLBACK_USER)? {
        Some(user) => Ok(Some(user)),
        None => Err(format!(
            "`useradd --system --no-create-home {FALLBACK_USER}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )),
    }
}

fn lookup(name: &str) -> Result<Option<RunAs>, String> {
    let user = User::from_name(name).map_err(|e| format!("looking up user `{name}`: {e}"))?;
    Ok(user.map(|u| {
        // Prefer the user's own group if it exists under the same name; the
        // primary gid otherwise.
        let gid = Group::from_name(name)
            .ok()
            .flatten()
            .filter(|g| g.gid == u.gid)
            .map_or(u.gid, |g| g.gid);
        RunAs { uid: u.uid, gid }
    }))
}

/// A command for a PostgreSQL program, run as `run_as` if given, from `home`
/// (also its `HOME`), with every inherited `PG*` variable removed so that the
/// developer's own `PGHOST`, `PGPORT`, … cannot redirect it.
pub(crate) fn pg_command(program: &Path, run_as: Option<RunAs>, home: &Path) -> Command {
    let mut cmd = Command::new(program);
    for (key, _) in env::vars_os() {
        if key.to_str().is_some_and(|k| k.starts_with("PG")) {
            cmd.env_remove(key);
        }
    }
    cmd.env("HOME", home)
        .env("PGCONNECT_TIMEOUT", CONNECT_TIMEOUT_SECS)
        .current_dir(home)
        .stdin(Stdio::null());
    if let Some(who) = run_as {
        cmd.uid(who.uid.as_raw()).gid(who.gid.as_raw());
    }
    cmd
}

/// The command line, for messages.
pub(crate) fn describe(cmd: &Command) -> String {
    let program = Path::new(cmd.get_program());
    let mut text = program
        .file_name()
        .unwrap_or(program.as_os_str())
        .to_string_lossy()
        .into_owned();
    for arg in cmd.get_args() {
        text.push(' ');
        text.push_str(&quote_arg(arg));
    }
    text
}

fn quote_arg(arg: &OsStr) -> String {
    let s = arg.to_string_lossy();
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_=./:,+@%".contains(c))
    {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Runs `cmd` to completion, feeding it `stdin`, and returns its stdout.
/// A non-zero exit becomes [`LabError::Failed`], carrying the tail of
/// `server_log` when given.
pub(crate) fn run(
    mut cmd: Command,
    stdin: Option<&[u8]>,
    server_log: Option<&Path>,
) -> Result<String, LabError> {
    let command = describe(&cmd);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    if stdin.is_some() {
        cmd.stdin(Stdio::piped());
    }
    let mut child = cmd.spawn().map_err(|source| LabError::Spawn {
        command: command.clone(),
        source,
    })?;
    let writer = child.stdin.take();
    let output = std::thread::scope(|scope| {
        if let (Some(mut pipe), Some(bytes)) = (writer, stdin) {
            // A child that exits early closes the pipe; its exit status then
            // tells the story, so a write error here is not worth reporting.
            scope.spawn(move || pipe.write_all(bytes).is_ok());
        }
        child.wait_with_output()
    })
    .map_err(|source| LabError::Spawn {
        command: command.clone(),
        source,
    })?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if output.status.success() {
        return Ok(stdout);
    }
    Err(LabError::Failed {
        command,
        status: output.status,
        stderr_tail: tail_lines(&String::from_utf8_lossy(&output.stderr), TAIL_LINES),
        stdout_tail: tail_lines(&stdout, TAIL_LINES),
        server_log: server_log.map(|p| (p.to_path_buf(), log_tail(p))),
    })
}

/// The last lines of a server log, or a note saying why there are none.
pub(crate) fn log_tail(path: &Path) -> String {
    match std::fs::read(path) {
        Ok(bytes) => tail_lines(&String::from_utf8_lossy(&bytes), TAIL_LINES),
        Err(e) => format!("(could not read the server log: {e})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines_are_quoted_for_a_shell() {
        let mut cmd = Command::new("/usr/bin/psql");
        cmd.args(["-c", "select 1", "-p", "5432", "it's"]);
        assert_eq!(describe(&cmd), r"psql -c 'select 1' -p 5432 'it'\''s'");
    }

    #[test]
    fn failures_carry_status_and_stderr() {
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", "echo out; echo boom >&2; exit 3"]);
        let err = run(cmd, None, None).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("exit status: 3"), "{text}");
        assert!(text.contains("boom"), "{text}");
        assert!(text.contains("out"), "{text}");
    }

    #[test]
    fn stdin_is_fed() {
        let mut cmd = Command::new("/bin/cat");
        cmd.stdin(Stdio::null());
        assert_eq!(run(cmd, Some(b"hello"), None).unwrap(), "hello");
    }
}
