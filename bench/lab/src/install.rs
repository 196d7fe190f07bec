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

    /// A directory `pg_config` names (`--sharedir`, `--pkglibdir`, `--bindir`).
    fn pg_config_dir(&self, flag: &str) -> Result<PathBuf, LabError> {
        let pg_config = self.bin_dir.join("pg_config");
        let pg_config = if pg_config.is_file() {
            pg_config
        } else {
            self.tool("pg_config")?
        };
        let command = format!("{} {flag}", pg_config.display());
        let out = Command::new(&pg_config)
            .arg(flag)
            .output()
            .map_err(|source| LabError::Spawn {
                command: command.clone(),
                source,
            })?;
        let dir = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if !out.status.success() || dir.is_empty() {
            return Err(LabError::Output {
                command,
                detail: format!("no directory in {dir:?}"),
            });
        }
        Ok(PathBuf::from(dir))
    }

    /// The server's share directory (`pg_config --sharedir`): `extension/` in it
    /// holds the control files of the extensions the server can create.
    pub fn share_dir(&self) -> Result<PathBuf, LabError> {
        self.pg_config_dir("--sharedir")
    }

    /// A private copy of this installation in `into`, for a test that must add
    /// files to the server's directories (an extension's control file in
    /// `share_dir()/extension`, as a package would install it) without touching
    /// the system's, which other tests on the machine share.
    ///
    /// The binary, library and share directories are laid out under `into` as
    /// they are under their common root (`/usr`), so that the copied server finds
    /// the copy's share and library directories relative to its own binaries
    /// (PostgreSQL's relocatable installations). Every file is a hard link to the
    /// original (a copy where linking fails), so this takes milliseconds and
    /// almost no space. Add files to the copy; never write into one of its files,
    /// which are the system's. `into` is made traversable (0755) for the user the
    /// server runs as; its ancestors must be already.
    pub fn relocated_copy(&self, into: &Path) -> Result<PgInstall, LabError> {
        use std::os::unix::fs::PermissionsExt;
        let dirs = [
            self.pg_config_dir("--bindir")?,
            self.pg_config_dir("--pkglibdir")?,
            self.share_dir()?,
        ];
        let root: PathBuf = dirs[0]
            .components()
            .zip(dirs[1].components())
            .zip(dirs[2].components())
            .take_while(|((a, b), c)| a == b && b == c)
            .map(|((a, _), _)| a)
            .collect();
        std::fs::set_permissions(into, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| LabError::io(format!("chmod 0755 {}", into.display()), e))?;
        for dir in &dirs {
            let rel = dir.strip_prefix(&root).map_err(|_| {
                LabError::Usage(format!("{} is not under {}", dir.display(), root.display()))
            })?;
            link_tree(dir, &into.join(rel))?;
        }
        let rel = dirs[0].strip_prefix(&root).map_err(|_| {
            LabError::Usage(format!(
                "{} is not under {}",
                dirs[0].display(),
                root.display()
            ))
        })?;
        Self::at(into.join(rel))
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

/// Recreates the tree `from` at `to`: directories created (0755), files hard-linked
/// (copied where linking fails), symbolic links recreated.
fn link_tree(from: &Path, to: &Path) -> Result<(), LabError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(to)
        .map_err(|e| LabError::io(format!("creating {}", to.display()), e))?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| LabError::io(format!("chmod 0755 {}", to.display()), e))?;
    let entries = std::fs::read_dir(from)
        .map_err(|e| LabError::io(format!("reading {}", from.display()), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| LabError::io(format!("reading {}", from.display()), e))?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let kind = entry
            .file_type()
            .map_err(|e| LabError::io(format!("inspecting {}", src.display()), e))?;
        if kind.is_symlink() {
            let target = std::fs::read_link(&src)
                .map_err(|e| LabError::io(format!("reading the link {}", src.display()), e))?;
            std::os::unix::fs::symlink(&target, &dst)
                .map_err(|e| LabError::io(format!("linking {}", dst.display()), e))?;
        } else if kind.is_dir() {
            link_tree(&src, &dst)?;
        } else if std::fs::hard_link(&src, &dst).is_err() {
            std::fs::copy(&src, &dst).map_err(|e| {
                LabError::io(format!("copying {} to {}", src.display(), dst.display()), e)
            })?;
        }
    }
    Ok(())
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
