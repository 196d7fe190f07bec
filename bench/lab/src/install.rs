//! Finding the system's PostgreSQL binaries.

use std::{
    env,
    ffi::OsString,
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
};

use crate::LabError;

/// Environment variable naming a directory that holds `initdb`, `pg_ctl` and
/// `postgres`; it overrides the search.
pub const PG_BIN_ENV: &str = "PGA_LAB_PG_BIN";

/// Where Debian and Ubuntu install each major version's binaries.
const DEBIAN_ROOT: &str = "/usr/lib/postgresql";

/// The binaries a cluster cannot start without.
const SERVER_TOOLS: [&str; 3] = ["initdb", "pg_ctl", "postgres"];

const INSTALL_SERVER_HINT: &str = "install the PostgreSQL server: `apt-get install -y postgresql` \
     (Debian/Ubuntu; or one major version, e.g. `apt-get install -y postgresql-15`; \
     add `postgresql-contrib` for pg_stat_statements on releases where contrib is separate), \
     or set PGA_LAB_PG_BIN to a directory holding initdb, pg_ctl and postgres";

/// One installed PostgreSQL: its binary directory and version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgInstall {
    bin_dir: PathBuf,
    major: u32,
    version: String,
}

impl PgInstall {
    /// The installation the lab uses: the directory in `PGA_LAB_PG_BIN` if set,
    /// else the highest major version under `/usr/lib/postgresql/<major>/bin`.
    ///
    /// The answer is cached for the life of the process once found.
    pub fn find() -> Result<PgInstall, LabError> {
        static FOUND: OnceLock<PgInstall> = OnceLock::new();
        if let Some(found) = FOUND.get() {
            return Ok(found.clone());
        }
        let found = Self::search(env::var_os(PG_BIN_ENV), Path::new(DEBIAN_ROOT))?;
        Ok(FOUND.get_or_init(|| found).clone())
    }

    /// Searches `override_dir` (the value of `PGA_LAB_PG_BIN`) or else
    /// `<root>/<major>/bin`.
    fn search(override_dir: Option<OsString>, root: &Path) -> Result<PgInstall, LabError> {
        if let Some(dir) = override_dir.filter(|d| !d.is_empty()) {
            let dir = PathBuf::from(dir);
            if !has_server_tools(&dir) {
                return Err(LabError::NotInstalled {
                    what: "PostgreSQL server binaries (initdb, pg_ctl, postgres)".into(),
                    searched: format!("{} (from {PG_BIN_ENV})", dir.display()),
                    hint: format!(
                        "point {PG_BIN_ENV} at a directory holding initdb, pg_ctl and postgres, \
                         or unset it and {INSTALL_SERVER_HINT}"
                    ),
                });
            }
            return Self::at(dir);
        }
        let mut candidates: Vec<(u32, PathBuf)> = std::fs::read_dir(root)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let major = entry.file_name().to_str()?.parse::<u32>().ok()?;
                Some((major, entry.path().join("bin")))
            })
            .filter(|(_, bin)| has_server_tools(bin))
            .collect();
        candidates.sort();
        match candidates.pop() {
            Some((_, bin)) => Self::at(bin),
            None => Err(LabError::NotInstalled {
                what: "PostgreSQL server binaries (initdb, pg_ctl, postgres)".into(),
                searched: format!("{}/<major>/bin; {PG_BIN_ENV} is not set", root.display()),
                hint: INSTALL_SERVER_HINT.into(),
            }),
        }
    }

    /// Reads the version of the server in `bin_dir`.
    fn at(bin_dir: PathBuf) -> Result<PgInstall, LabError> {
        let postgres = bin_dir.join("postgres");
        let command = format!("{} --version", postgres.display());
        let out = Command::new(&postgres)
            .arg("--version")
            .output()
            .map_err(|source| LabError::Spawn {
                command: command.clone(),
                source,
            })?;
        let text = String::from_utf8_lossy(&out.stdout);
        let (major, version) = parse_version(&text).ok_or_else(|| LabError::Output {
            command,
            detail: format!("no version number in {:?}", text.trim()),
        })?;
        Ok(PgInstall {
            bin_dir,
            major,
            version,
        })
    }

    /// The directory holding `initdb`, `pg_ctl` and `postgres`.
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// The major version, e.g. 15.
    pub fn major(&self) -> u32 {
        self.major
    }

    /// The full version as `postgres --version` prints it, e.g. "15.18".
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The path of a PostgreSQL program: the binary directory first, then
    /// `/usr/bin`, then `PATH`; an error saying what to install when absent.
    pub fn tool(&self, name: &str) -> Result<PathBuf, LabError> {
        let mut dirs = vec![self.bin_dir.clone(), PathBuf::from("/usr/bin")];
        dirs.extend(env::var_os("PATH").iter().flat_map(env::split_paths));
        if let Some(found) = dirs.iter().map(|d| d.join(name)).find(|p| p.is_file()) {
            return Ok(found);
        }
        Err(LabError::NotInstalled {
            what: format!("`{name}`"),
            searched: format!("{}, /usr/bin, PATH", self.bin_dir.display()),
            hint: tool_hint(name, self.major),
        })
    }

    /// The server's library directory (`pg_config --pkglibdir`), if `pg_config`
    /// is installed.
    pub fn pkglibdir(&self) -> Option<PathBuf> {
        let pg_config = self.tool("pg_config").ok()?;
        let out = Command::new(pg_config).arg("--pkglibdir").output().ok()?;
        let dir = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        (out.status.success() && !dir.is_empty()).then(|| PathBuf::from(dir))
    }

    /// Whether the loadable library `name` (e.g. "pg_stat_statements") is
    /// installed; `None` when that cannot be told (no `pg_config`).
    pub fn has_library(&self, name: &str) -> Option<bool> {
        let dir = self.pkglibdir()?;
        Some(dir.join(format!("{name}.so")).is_file())
    }

    /// Fails with install instructions unless `name` is installed (or cannot
    /// be checked).
    pub(crate) fn require_library(&self, name: &str) -> Result<(), LabError> {
        // Only bare names can be checked; "$libdir/x" or absolute paths are
        // left to the server.
        if name.contains('/') {
            return Ok(());
        }
        match self.pkglibdir() {
            Some(dir) if !dir.join(format!("{name}.so")).is_file() => {
                Err(LabError::MissingLibrary {
                    name: name.to_owned(),
                    dir,
                    hint: library_hint(name, self.major),
                })
            }
            _ => Ok(()),
        }
    }
}

fn has_server_tools(dir: &Path) -> bool {
    SERVER_TOOLS.iter().all(|t| dir.join(t).is_file())
}

/// "postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)" -> (15, "15.18");
/// also "17devel", "18beta1".
fn parse_version(text: &str) -> Option<(u32, String)> {
    let rest = text.split("(PostgreSQL)").nth(1)?.trim_start();
    let version: String = rest.chars().take_while(|c| !c.is_whitespace()).collect();
    let digits: String = version.chars().take_while(char::is_ascii_digit).collect();
    let major = digits.parse().ok()?;
    Some((major, version))
}

fn tool_hint(name: &str, major: u32) -> String {
    let package = match name {
        "psql" | "pg_basebackup" | "pg_dump" | "pg_restore" | "pg_config" | "pg_receivewal"
        | "pg_recvlogical" => format!("postgresql-client-{major}"),
        _ => format!("postgresql-{major}"),
    };
    format!("install it: `apt-get install -y {package}` (Debian/Ubuntu)")
}

fn library_hint(name: &str, major: u32) -> String {
    format!(
        "`{name}` ships with the server package `postgresql-{major}` on current Debian/Ubuntu; \
         on older releases install `apt-get install -y postgresql-contrib` \
         (RHEL/PGDG: `postgresql{major}-contrib`)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse() {
        assert_eq!(
            parse_version("postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)\n"),
            Some((15, "15.18".into()))
        );
        assert_eq!(
            parse_version("postgres (PostgreSQL) 17devel"),
            Some((17, "17devel".into()))
        );
        assert_eq!(parse_version("something else"), None);
    }

    #[test]
    fn nothing_installed_says_what_to_install() {
        let empty = tempfile::tempdir().unwrap();
        let err = PgInstall::search(None, empty.path()).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, LabError::NotInstalled { .. }), "{text}");
        assert!(text.contains("apt-get install -y postgresql"), "{text}");
        assert!(text.contains("postgresql-15"), "{text}");

        let err = PgInstall::search(Some(empty.path().into()), Path::new("/usr/lib/postgresql"))
            .unwrap_err();
        assert!(err.to_string().contains(PG_BIN_ENV), "{err}");
    }

    #[test]
    fn the_highest_major_wins() {
        let root = tempfile::tempdir().unwrap();
        for major in ["9", "15", "13", "notanumber"] {
            let bin = root.path().join(major).join("bin");
            std::fs::create_dir_all(&bin).unwrap();
            for tool in SERVER_TOOLS {
                std::fs::write(bin.join(tool), "").unwrap();
            }
        }
        // `at` then runs the fake `postgres`, which cannot execute: the error
        // names the directory that was chosen.
        let err = PgInstall::search(None, root.path()).unwrap_err();
        assert!(err.to_string().contains("/15/bin/postgres"), "{err}");
    }

    #[test]
    fn hints_name_the_package() {
        assert!(tool_hint("psql", 15).contains("postgresql-client-15"));
        assert!(tool_hint("pgbench", 15).contains("postgresql-15"));
        assert!(library_hint("pg_stat_statements", 15).contains("postgresql-contrib"));
    }
}
