//! A throwaway PostgreSQL cluster: build, start, use, stop, drop.

use std::{
    env,
    fs::{self, OpenOptions},
    io::Write,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Command,
};

use tempfile::TempDir;

use crate::{
    LabError, PgInstall, PgbenchReport, PgbenchRun,
    conf::{self, ConfSpec, LAB_CONF, SUPERUSER},
    process::{self, RunAs},
    watchdog::Watchdog,
};

/// Environment variable: the directory cluster directories are created in
/// (default: the system temporary directory, normally `/tmp`).
pub const TMPDIR_ENV: &str = "PGA_LAB_TMPDIR";

/// Environment variable: when set to anything but empty or `0`, a dropped
/// cluster is stopped but its directory is kept (and its path printed) for
/// post-mortem reading of the server log.
pub const KEEP_ENV: &str = "PGA_LAB_KEEP";

/// `pg_ctl -t`: how long start and stop may take.
const PG_CTL_TIMEOUT_SECS: &str = "60";

/// How many free ports a start tries before giving up, when the port picked
/// was taken between picking it and the server binding it.
const PORT_ATTEMPTS: u32 = 5;

/// The longest unix socket path the kernel accepts (`sun_path` minus NUL).
const MAX_SOCKET_PATH: usize = 107;

/// Chooses the settings of a cluster, then starts it.
///
/// ```no_run
/// let pg = pga_lab::Cluster::builder()
///     .setting("log_min_duration_statement", "0")
///     .preload("pg_stat_statements")
///     .start()?;
/// assert_eq!(pg.psql("postgres", "select 1")?, "1");
/// # Ok::<(), pga_lab::LabError>(())
/// ```
#[derive(Debug, Clone, Default)]
#[must_use = "a builder does nothing until `.start()`"]
pub struct ClusterBuilder {
    spec: ConfSpec,
    password: Option<String>,
    initdb_args: Vec<String>,
    install: Option<PgInstall>,
}

impl ClusterBuilder {
    /// Adds a `postgresql.conf` line `name = 'value'`. Later settings win,
    /// and settings win over the lab's defaults (`fsync = off`,
    /// `listen_addresses = '127.0.0.1'`, `wal_level = replica`, …) but not
    /// over `port` and `unix_socket_directories`, which the lab owns.
    pub fn setting(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.spec.settings.push((name.into(), value.into()));
        self
    }

    /// Adds a library to `shared_preload_libraries`, e.g. `"pg_stat_statements"`.
    /// The start fails with [`LabError::MissingLibrary`] (saying what to
    /// install) when it is not installed.
    pub fn preload(mut self, library: impl Into<String>) -> Self {
        self.spec.preload.push(library.into());
        self
    }

    /// Gives the `postgres` superuser this password and makes TCP connections
    /// (see [`Cluster::url`]) use `scram-sha-256`; unix-socket connections
    /// (see [`Cluster::conninfo`]) stay trusted. Without it, both are trusted.
    pub fn superuser_password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(password.into());
        self
    }

    /// Passes an extra argument to `initdb`, e.g. `"--data-checksums"`.
    pub fn initdb_arg(mut self, arg: impl Into<String>) -> Self {
        self.initdb_args.push(arg.into());
        self
    }

    /// Runs the cluster from `install` (e.g. a [`PgInstall::relocated_copy`])
    /// instead of the system's installation ([`PgInstall::find`]).
    pub fn install(mut self, install: PgInstall) -> Self {
        self.install = Some(install);
        self
    }

    /// Creates the cluster in a fresh temporary directory and starts it on a
    /// free port. Takes about a second.
    pub fn start(self) -> Result<Cluster, LabError> {
        self.spec.validate()?;
        let install = match self.install {
            Some(i) => i,
            None => PgInstall::find()?,
        };
        for library in &self.spec.preload {
            install.require_library(library)?;
        }
        // From here on, an error drops `cluster`, which cleans up.
        let mut cluster = Cluster::prepare(install, self.spec, self.password)?;
        cluster.initdb(&self.initdb_args)?;
        cluster.write_hba()?;
        cluster.include_lab_conf()?;
        cluster.start_on_free_port()?;
        Ok(cluster)
    }
}

/// A running (or stopped) throwaway PostgreSQL cluster.
///
/// Everything lives in one temporary directory: the data directory
/// (`data/`), the server log (`postgres.log`) and the unix socket. The
/// server listens on `127.0.0.1` on a port chosen free at start.
///
/// Dropping a `Cluster` — also while a test unwinds from a panic — stops the
/// server (`pg_ctl -m immediate stop`) and deletes the directory. If the test
/// process dies without unwinding (SIGKILL, abort, a CI timeout), a small
/// watchdog process per cluster notices and does the same. If even that
/// fails, the leftovers are `pga-lab-*` directories in the temporary
/// directory; `pg_ctl -D <dir>/data -m immediate stop` stops a server left
/// in one.
#[derive(Debug)]
pub struct Cluster {
    install: PgInstall,
    run_as: Option<RunAs>,
    spec: ConfSpec,
    password: Option<String>,
    /// `None` only while dropping.
    dir: Option<TempDir>,
    root: PathBuf,
    data_dir: PathBuf,
    log_path: PathBuf,
    port: u16,
    running: bool,
    /// `None` only while dropping.
    watchdog: Option<Watchdog>,
}

impl Cluster {
    /// Starts choosing a cluster's settings.
    pub fn builder() -> ClusterBuilder {
        ClusterBuilder::default()
    }

    /// Creates the directory and its watchdog; nothing runs yet.
    fn prepare(
        install: PgInstall,
        spec: ConfSpec,
        password: Option<String>,
    ) -> Result<Cluster, LabError> {
        let run_as = process::run_as()?;
        let dir = make_root(run_as)?;
        let root = dir.path().to_path_buf();
        let data_dir = root.join("data");
        let keep = keep_requested();
        let watchdog = Watchdog::spawn(
            &install.bin_dir().join("pg_ctl"),
            &data_dir,
            (!keep).then_some(root.as_path()),
            run_as,
        )?;
        Ok(Cluster {
            log_path: root.join("postgres.log"),
            install,
            run_as,
            spec,
            password,
            dir: Some(dir),
            root,
            data_dir,
            port: 0,
            running: false,
            watchdog: Some(watchdog),
        })
    }

    /// The TCP port on 127.0.0.1 (also the unix socket's number).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory holding the unix socket (`.s.PGSQL.<port>`); also the
    /// cluster's temporary directory.
    pub fn socket_dir(&self) -> &Path {
        &self.root
    }

    /// The data directory (`PGDATA`).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The server log (stderr of the postmaster; `logging_collector` is off).
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The PostgreSQL installation this cluster runs from.
    pub fn install(&self) -> &PgInstall {
        &self.install
    }

    /// Whether the server is running (as far as this handle knows).
    pub fn is_running(&self) -> bool {
        self.running
    }

    /// A libpq keyword/value connection string over the unix socket:
    /// `host=<socket dir> port=<port> user=postgres dbname=<db>`.
    pub fn conninfo(&self, db: &str) -> String {
        format!(
            "host={} port={} user={SUPERUSER} dbname={}",
            conf::conninfo_value(&self.root.to_string_lossy()),
            self.port,
            conf::conninfo_value(db)
        )
    }

    /// A `postgres://` URL over TCP to 127.0.0.1, with the superuser
    /// password when one was set.
    pub fn url(&self, db: &str) -> String {
        let password = self
            .password
            .as_deref()
            .map(|p| format!(":{}", conf::percent_encode(p)))
            .unwrap_or_default();
        format!(
            "postgres://{SUPERUSER}{password}@127.0.0.1:{}/{}",
            self.port,
            conf::percent_encode(db)
        )
    }

    /// The postmaster's process id, from `postmaster.pid`.
    pub fn postmaster_pid(&self) -> Result<i32, LabError> {
        let path = self.data_dir.join("postmaster.pid");
        let text = fs::read_to_string(&path)
            .map_err(|e| LabError::io(format!("reading {}", path.display()), e))?;
        text.lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .ok_or_else(|| LabError::Output {
                command: format!("read {}", path.display()),
                detail: format!("no pid on the first line of {text:?}"),
            })
    }

    /// Runs `sql` (one or more statements) with
    /// `psql -X -A -t -q -v ON_ERROR_STOP=1` on database `db` and returns its
    /// output, trimmed: one line per row, columns separated by `|`.
    /// Statements run one by one, as in a script; the first error stops it
    /// and is returned with psql's message.
    pub fn psql(&self, db: &str, sql: &str) -> Result<String, LabError> {
        let mut cmd = self.command(&self.install.tool("psql")?);
        cmd.args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-f", "-"]);
        self.connect_args(&mut cmd, db);
        let out = process::run(cmd, Some(sql.as_bytes()), None)?;
        Ok(out.trim().to_owned())
    }

    /// `CREATE DATABASE "<name>"`.
    pub fn create_database(&self, name: &str) -> Result<(), LabError> {
        self.psql(
            "postgres",
            &format!("CREATE DATABASE {}", conf::quote_ident(name)),
        )
        .map(drop)
    }

    /// Stops the server (`pg_ctl -m fast stop`); the directory stays, and
    /// [`start_again`](Self::start_again) starts it on the same port.
    pub fn stop(&mut self) -> Result<(), LabError> {
        if !self.running {
            return Err(LabError::Usage(
                "stop: the cluster is not running".to_owned(),
            ));
        }
        let mut cmd = self.pg_ctl();
        cmd.args(["-m", "fast", "-w", "-t", PG_CTL_TIMEOUT_SECS, "stop"]);
        process::run(cmd, None, Some(&self.log_path))?;
        self.running = false;
        Ok(())
    }

    /// Starts a stopped cluster again, on the same port. Fails (with the
    /// server log) if another process took the port meanwhile.
    pub fn start_again(&mut self) -> Result<(), LabError> {
        if self.running {
            return Err(LabError::Usage(
                "start_again: the cluster is already running".to_owned(),
            ));
        }
        self.pg_ctl_start()
    }

    /// Stops (fast) and starts the server, same port.
    pub fn restart(&mut self) -> Result<(), LabError> {
        self.stop()?;
        self.start_again()
    }

    /// Promotes a standby to primary (`pg_ctl promote`, waiting for it).
    pub fn promote(&self) -> Result<(), LabError> {
        let mut cmd = self.pg_ctl();
        cmd.args(["-w", "-t", PG_CTL_TIMEOUT_SECS, "promote"]);
        process::run(cmd, None, Some(&self.log_path)).map(drop)
    }

    /// `pgbench -i -s <scale>` on database `db`.
    pub fn pgbench_init(&self, db: &str, scale: u32) -> Result<(), LabError> {
        let mut cmd = self.command(&self.install.tool("pgbench")?);
        cmd.args(["-i", "-q", "-s", &scale.to_string()]);
        self.connect_args(&mut cmd, db);
        process::run(cmd, None, None).map(drop)
    }

    /// Runs pgbench on database `db` (initialised with
    /// [`pgbench_init`](Self::pgbench_init), unless `extra_args` bring their
    /// own script) and returns what it reported.
    pub fn pgbench(&self, db: &str, run: &PgbenchRun) -> Result<PgbenchReport, LabError> {
        let mut cmd = self.command(&self.install.tool("pgbench")?);
        cmd.args(run.args());
        self.connect_args(&mut cmd, db);
        let command = process::describe(&cmd);
        let stdout = process::run(cmd, None, None)?;
        PgbenchReport::parse(&command, stdout)
    }

    /// Makes and starts a streaming-replication standby of this cluster
    /// (`pg_basebackup -R -X stream`), in its own directory on its own port.
    pub fn standby(&self) -> Result<Cluster, LabError> {
        self.make_standby(None)
    }

    /// Like [`standby`](Self::standby), streaming through a physical
    /// replication slot `slot`, created on this cluster (`pg_basebackup -C -S`).
    pub fn standby_with_slot(&self, slot: &str) -> Result<Cluster, LabError> {
        self.make_standby(Some(slot))
    }

    fn make_standby(&self, slot: Option<&str>) -> Result<Cluster, LabError> {
        if !self.running {
            return Err(LabError::Usage(
                "standby: the primary is not running".to_owned(),
            ));
        }
        let mut standby = Cluster::prepare(
            self.install.clone(),
            self.spec.clone(),
            self.password.clone(),
        )?;
        let mut cmd = standby.command(&self.install.tool("pg_basebackup")?);
        cmd.arg("-D")
            .arg(&standby.data_dir)
            .arg("-h")
            .arg(&self.root)
            .args(["-p", &self.port.to_string(), "-U", SUPERUSER])
            .args(["-R", "-X", "stream", "-c", "fast", "--no-sync"]);
        if let Some(slot) = slot {
            cmd.args(["-C", "-S", slot]);
        }
        process::run(cmd, None, None)?;
        standby.start_on_free_port()?;
        Ok(standby)
    }

    /// A command for a PostgreSQL program, as the right user, from the
    /// cluster directory.
    fn command(&self, program: &Path) -> Command {
        process::pg_command(program, self.run_as, &self.root)
    }

    fn pg_ctl(&self) -> Command {
        let mut cmd = self.command(&self.install.bin_dir().join("pg_ctl"));
        cmd.arg("-D").arg(&self.data_dir);
        cmd
    }

    fn connect_args(&self, cmd: &mut Command, db: &str) {
        connect_args(cmd, &self.root, self.port, db);
    }

    fn initdb(&self, extra: &[String]) -> Result<(), LabError> {
        let mut cmd = self.command(&self.install.bin_dir().join("initdb"));
        cmd.arg("-D").arg(&self.data_dir).args([
            "-U",
            SUPERUSER,
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ]);
        let pwfile = self.root.join("pwfile");
        if let Some(password) = &self.password {
            self.write_file(&pwfile, &format!("{password}\n"), 0o600)?;
            cmd.arg(format!("--pwfile={}", pwfile.display()));
        }
        cmd.args(extra);
        let result = process::run(cmd, None, None).map(drop);
        if self.password.is_some() {
            fs::remove_file(&pwfile)
                .map_err(|e| LabError::io(format!("removing {}", pwfile.display()), e))?;
        }
        result
    }

    fn write_hba(&self) -> Result<(), LabError> {
        let path = self.data_dir.join("pg_hba.conf");
        self.write_file(&path, &conf::hba(self.password.is_some()), 0o600)
    }

    fn include_lab_conf(&self) -> Result<(), LabError> {
        let path = self.data_dir.join("postgresql.conf");
        OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut f| writeln!(f, "\ninclude = '{LAB_CONF}'"))
            .map_err(|e| LabError::io(format!("appending to {}", path.display()), e))
    }

    /// Picks a free port, writes the configuration, starts; retries with
    /// another port if the server could not bind the one picked.
    fn start_on_free_port(&mut self) -> Result<(), LabError> {
        let socket = self.root.join(".s.PGSQL.65535");
        if socket.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(LabError::Usage(format!(
                "the unix socket path {} would exceed {MAX_SOCKET_PATH} bytes; \
                 set {TMPDIR_ENV} to a shorter directory (e.g. /tmp)",
                socket.display()
            )));
        }
        let mut attempt = 1;
        loop {
            self.port = free_port()?;
            let lab_conf = self.spec.render(self.port, &self.root);
            self.write_file(&self.data_dir.join(LAB_CONF), &lab_conf, 0o600)?;
            let log_before = fs::metadata(&self.log_path).map_or(0, |m| m.len());
            match self.pg_ctl_start() {
                Err(e) if attempt < PORT_ATTEMPTS && self.port_was_taken(log_before) => {
                    attempt += 1;
                    drop(e);
                }
                result => return result,
            }
        }
    }

    fn pg_ctl_start(&mut self) -> Result<(), LabError> {
        let mut cmd = self.pg_ctl();
        cmd.arg("-l")
            .arg(&self.log_path)
            .args(["-w", "-t", PG_CTL_TIMEOUT_SECS, "start"]);
        process::run(cmd, None, Some(&self.log_path))?;
        self.running = true;
        Ok(())
    }

    /// Whether the server log, from byte `from` on, says the port was taken.
    fn port_was_taken(&self, from: u64) -> bool {
        let Ok(bytes) = fs::read(&self.log_path) else {
            return false;
        };
        let start = usize::try_from(from).unwrap_or(usize::MAX).min(bytes.len());
        String::from_utf8_lossy(&bytes[start..]).contains("Address already in use")
    }

    /// Writes a file the server reads, owned by the server's user.
    fn write_file(&self, path: &Path, contents: &str, mode: u32) -> Result<(), LabError> {
        let context = || format!("writing {}", path.display());
        fs::write(path, contents).map_err(|e| LabError::io(context(), e))?;
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
            .map_err(|e| LabError::io(context(), e))?;
        give_to(path, self.run_as)
    }
}

impl Drop for Cluster {
    /// Stops the server (immediate mode) and removes the directory. Never
    /// panics; problems are reported on stderr.
    fn drop(&mut self) {
        if self.data_dir.join("postmaster.pid").exists() {
            let mut cmd = self.pg_ctl();
            cmd.args(["-m", "immediate", "-w", "-t", "30", "stop"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null());
            if let Err(e) = cmd.status() {
                note(&format!(
                    "could not stop the server in {}: {e}",
                    self.data_dir.display()
                ));
            }
        }
        if let Some(dir) = self.dir.take() {
            if keep_requested() {
                let path = dir.keep();
                note(&format!("{KEEP_ENV} is set: kept {}", path.display()));
            } else if let Err(e) = dir.close() {
                note(&format!("could not remove {}: {e}", self.root.display()));
            }
        }
        if let Some(watchdog) = self.watchdog.take() {
            watchdog.dismiss();
        }
    }
}

/// Where psql and pgbench connect: the socket directory, the port, the superuser,
/// and the database as the last, positional argument. (`-d` names the database
/// for psql, but for pgbench it is `--debug`, which prints every statement it sends
/// on stderr.)
fn connect_args(cmd: &mut Command, socket_dir: &Path, port: u16, db: &str) {
    cmd.arg("-h")
        .arg(socket_dir)
        .args(["-p", &port.to_string(), "-U", SUPERUSER, db]);
}

/// A message on stderr that cannot panic.
fn note(message: &str) {
    // Nothing sensible to do if stderr itself is gone.
    if writeln!(std::io::stderr(), "pga-lab: {message}").is_err() {}
}

fn keep_requested() -> bool {
    env::var_os(KEEP_ENV).is_some_and(|v| !v.is_empty() && v != "0")
}

/// A port that was free a moment ago on 127.0.0.1.
fn free_port() -> Result<u16, LabError> {
    crate::free_port().map_err(|e| LabError::io("finding a free port on 127.0.0.1", e))
}

/// Creates the cluster's directory: mode 0755 so that both the test process
/// and the server's user reach the socket, owned by the server's user.
fn make_root(run_as: Option<RunAs>) -> Result<TempDir, LabError> {
    let base = env::var_os(TMPDIR_ENV)
        .filter(|v| !v.is_empty())
        .map_or_else(env::temp_dir, PathBuf::from);
    if run_as.is_some() {
        // The server runs as another user, who must be able to walk down to
        // its directory; we do not loosen directories we did not create.
        for dir in base.ancestors() {
            let mode = fs::metadata(dir)
                .map_err(|e| LabError::io(format!("inspecting {}", dir.display()), e))?
                .permissions()
                .mode();
            if mode & 0o001 == 0 {
                return Err(LabError::Usage(format!(
                    "{} (mode {:o}) cannot be traversed by the unprivileged user PostgreSQL runs as; \
                     set {TMPDIR_ENV} (or TMPDIR) to a directory such as /tmp",
                    dir.display(),
                    mode & 0o7777
                )));
            }
        }
    }
    let dir = tempfile::Builder::new()
        .prefix("pga-lab-")
        .tempdir_in(&base)
        .map_err(|e| LabError::io(format!("creating a directory in {}", base.display()), e))?;
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755))
        .map_err(|e| LabError::io(format!("chmod 0755 {}", dir.path().display()), e))?;
    give_to(dir.path(), run_as)?;
    Ok(dir)
}

fn give_to(path: &Path, run_as: Option<RunAs>) -> Result<(), LabError> {
    match run_as {
        None => Ok(()),
        Some(who) => std::os::unix::fs::chown(path, Some(who.uid.as_raw()), Some(who.gid.as_raw()))
            .map_err(|e| LabError::io(format!("chown {}", path.display()), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_is_named_positionally_never_with_d() {
        // pgbench reads `-d` as --debug; psql and pgbench both take the database as
        // their last argument.
        let mut cmd = Command::new("pgbench");
        cmd.args(["-c", "2", "-T", "3"]);
        connect_args(&mut cmd, Path::new("/tmp/pga-lab-x"), 5433, "app");
        assert_eq!(
            process::describe(&cmd),
            "pgbench -c 2 -T 3 -h /tmp/pga-lab-x -p 5433 -U postgres app"
        );
    }
}
