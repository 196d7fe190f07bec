//! Finding an instance's log files: from the server's settings
//! ([`ServerFacts`]: `log_destination`, `logging_collector`, `log_directory`,
//! `log_filename`) or from an explicit path or glob in the configuration.
//!
//! When several destinations are on, one is read, the most structured first:
//! jsonlog, then csvlog, then stderr. PostgreSQL names a csvlog (jsonlog) file after
//! `log_filename` with a final `.log` replaced by `.csv` (`.json`), or the suffix
//! appended when there is no `.log`.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use super::LogFormat;
use crate::collect::server_facts::ServerFacts;

/// Compressed rotations are not read.
const COMPRESSED: [&str; 7] = [".gz", ".bz2", ".xz", ".zst", ".lz4", ".Z", ".zip"];

/// Where an instance's log is and how it is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLocation {
    pub dir: PathBuf,
    /// File-name pattern: `*` matches any run of characters.
    pub pattern: String,
    /// With an explicit single file: also its rotations (`NAME.1`, `NAME-20240301`).
    pub rotations: bool,
    pub format: LogFormat,
    /// `log_line_prefix` for stderr files.
    pub prefix: String,
}

/// Why no log can be followed, with what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiscoverError {
    #[error(
        "waiting for the first connection to the server to learn where it logs (or set logs.path and logs.format)"
    )]
    NoFacts,
    #[error(
        "logging_collector is off: the server's stderr goes wherever its service manager sends it; \
         set logs.path (and logs.prefix) to that file, or turn logging_collector on"
    )]
    NoCollector,
    #[error(
        "log_destination = '{0}' writes no file the agent reads; add csvlog, jsonlog or stderr \
         to log_destination, or set logs.path"
    )]
    NoFileDestination(String),
    #[error(
        "logs.format = \"{format}\" but the server writes log_destination = '{log_destination}'; \
         remove logs.format or add {format} to log_destination"
    )]
    NotWritten {
        format: LogFormat,
        log_destination: String,
    },
    #[error("no file matching {pattern} in {dir} yet; is the server writing its log there?")]
    NoFiles { dir: PathBuf, pattern: String },
    #[error(
        "the server's log_line_prefix is not known yet and logs.prefix is not set; set logs.prefix \
         to the server's log_line_prefix"
    )]
    NoPrefix,
    #[error(
        "cannot read the log directory {dir}: permission denied; add the agent's user to the group \
         owning it (e.g. `usermod -aG postgres pganalytics` for a data directory's log/, or `adm` \
         for /var/log/postgresql) and restart the agent"
    )]
    Unreadable { dir: PathBuf },
    #[error("cannot read the log directory {dir}: {error}")]
    Io { dir: PathBuf, error: String },
}

/// The configuration's explicit choices (`[logs]`), all optional.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Explicit {
    pub path: Option<String>,
    pub format: Option<LogFormat>,
    pub prefix: Option<String>,
}

/// The destinations `log_destination` turns on that write files, best first.
pub fn file_destinations(log_destination: &str) -> Vec<LogFormat> {
    let on: Vec<String> = log_destination
        .split(',')
        .map(|d| d.trim().to_ascii_lowercase())
        .collect();
    [LogFormat::Jsonlog, LogFormat::Csvlog, LogFormat::Stderr]
        .into_iter()
        .filter(|f| on.iter().any(|d| d == f.as_str()))
        .collect()
}

/// Where to read, from the configuration first and the server's settings second.
pub fn locate(
    explicit: &Explicit,
    facts: Option<&ServerFacts>,
) -> Result<LogLocation, DiscoverError> {
    if let Some(path) = &explicit.path {
        let path = Path::new(path);
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_owned();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let format = explicit.format.unwrap_or_else(|| format_of_name(&name));
        let prefix = match (format, &explicit.prefix, facts) {
            (LogFormat::Stderr, Some(p), _) => p.clone(),
            (LogFormat::Stderr, None, Some(f)) => f.log_line_prefix.clone(),
            (LogFormat::Stderr, None, None) => return Err(DiscoverError::NoPrefix),
            _ => String::new(),
        };
        return Ok(LogLocation {
            dir,
            rotations: !name.contains('*'),
            pattern: name,
            format,
            prefix,
        });
    }
    let facts = facts.ok_or(DiscoverError::NoFacts)?;
    let on = file_destinations(&facts.log_destination);
    let format = match explicit.format {
        Some(f) if !on.contains(&f) => {
            return Err(DiscoverError::NotWritten {
                format: f,
                log_destination: facts.log_destination.clone(),
            });
        }
        Some(f) => f,
        None => *on
            .first()
            .ok_or_else(|| DiscoverError::NoFileDestination(facts.log_destination.clone()))?,
    };
    if !facts.logging_collector {
        return Err(DiscoverError::NoCollector);
    }
    let mut dir = PathBuf::from(&facts.log_directory);
    if dir.is_relative() {
        dir = Path::new(&facts.data_directory).join(dir);
    }
    let prefix = explicit
        .prefix
        .clone()
        .unwrap_or_else(|| facts.log_line_prefix.clone());
    Ok(LogLocation {
        dir,
        pattern: file_pattern(&facts.log_filename, format),
        rotations: false,
        format,
        prefix,
    })
}

/// The format a file name suggests: `.csv` → csvlog, `.json` → jsonlog, else stderr.
pub fn format_of_name(name: &str) -> LogFormat {
    let lower = name.to_ascii_lowercase();
    if lower.ends_with(".csv") {
        LogFormat::Csvlog
    } else if lower.ends_with(".json") {
        LogFormat::Jsonlog
    } else {
        LogFormat::Stderr
    }
}

/// `log_filename` (a strftime pattern) as a file-name pattern for `format`: every
/// `%x` escape becomes `*`, and the csvlog/jsonlog suffix rule is applied.
pub fn file_pattern(log_filename: &str, format: LogFormat) -> String {
    let mut out = String::new();
    let mut chars = log_filename.chars();
    while let Some(c) = chars.next() {
        if c == '%' {
            match chars.next() {
                Some('%') => out.push('%'),
                Some(_) | None => {
                    if !out.ends_with('*') {
                        out.push('*');
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    let suffix = match format {
        LogFormat::Stderr => return out,
        LogFormat::Csvlog => ".csv",
        LogFormat::Jsonlog => ".json",
    };
    match out.strip_suffix(".log") {
        Some(stem) => format!("{stem}{suffix}"),
        None => format!("{out}{suffix}"),
    }
}

/// Whether `name` matches `pattern`, where `*` matches any run of characters.
pub fn wildcard_match(pattern: &str, name: &str) -> bool {
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ni));
            pi += 1;
        } else if pi < p.len() && p[pi] == n[ni] {
            pi += 1;
            ni += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&b| b == b'*')
}

impl LogLocation {
    /// Whether a file of the directory belongs to this log.
    pub fn matches(&self, name: &str) -> bool {
        if COMPRESSED.iter().any(|c| name.ends_with(c)) {
            return false;
        }
        if self.format == LogFormat::Stderr
            && !self.pattern.contains('.')
            && (name.ends_with(".csv") || name.ends_with(".json"))
        {
            // `log_filename` without `.log`: its csvlog/jsonlog siblings match `*` too.
            return false;
        }
        if wildcard_match(&self.pattern, name) {
            return true;
        }
        self.rotations
            && name.len() > self.pattern.len() + 1
            && name.starts_with(&self.pattern)
            && matches!(name.as_bytes()[self.pattern.len()], b'.' | b'-')
    }

    /// The files of the log, by path; the tailer orders them.
    pub fn list(&self) -> Result<Vec<PathBuf>, DiscoverError> {
        let entries = std::fs::read_dir(&self.dir).map_err(|e| match e.kind() {
            ErrorKind::PermissionDenied => DiscoverError::Unreadable {
                dir: self.dir.clone(),
            },
            _ => DiscoverError::Io {
                dir: self.dir.clone(),
                error: e.to_string(),
            },
        })?;
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if self.matches(name) {
                out.push(entry.path());
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(dest: &str, collector: bool) -> ServerFacts {
        ServerFacts {
            server_version_num: 150_000,
            data_directory: "/srv/pg".into(),
            log_destination: dest.into(),
            logging_collector: collector,
            log_directory: "log".into(),
            log_filename: "postgresql-%Y-%m-%d_%H%M%S.log".into(),
            log_line_prefix: "%m [%p] ".into(),
            log_timezone: "UTC".into(),
        }
    }

    #[test]
    fn patterns_follow_postgresql_naming() {
        let f = "postgresql-%Y-%m-%d_%H%M%S.log";
        assert_eq!(file_pattern(f, LogFormat::Stderr), "postgresql-*-*-*_*.log");
        assert_eq!(file_pattern(f, LogFormat::Csvlog), "postgresql-*-*-*_*.csv");
        assert_eq!(file_pattern("pg-%a", LogFormat::Jsonlog), "pg-*.json");
        assert_eq!(file_pattern("pg%%x", LogFormat::Stderr), "pg%x");
        assert!(wildcard_match(
            "postgresql-*-*-*_*.log",
            "postgresql-2024-03-01_120000.log"
        ));
        assert!(!wildcard_match("postgresql-*.log", "postgresql-2024.csv"));
        assert!(wildcard_match("a*b*", "aXXbYY"));
    }

    #[test]
    fn the_most_structured_destination_wins() {
        let loc = locate(
            &Explicit::default(),
            Some(&facts("stderr, csvlog,jsonlog", true)),
        )
        .unwrap();
        assert_eq!(loc.format, LogFormat::Jsonlog);
        assert_eq!(loc.dir, Path::new("/srv/pg/log"));
        assert_eq!(loc.pattern, "postgresql-*-*-*_*.json");
        let loc = locate(&Explicit::default(), Some(&facts("stderr,csvlog", true))).unwrap();
        assert_eq!(loc.format, LogFormat::Csvlog);
        let forced = Explicit {
            format: Some(LogFormat::Stderr),
            ..Explicit::default()
        };
        let err = locate(&forced, Some(&facts("csvlog", true))).unwrap_err();
        assert!(
            err.to_string().contains("add stderr to log_destination"),
            "{err}"
        );
        let loc = locate(&forced, Some(&facts("stderr,csvlog", true))).unwrap();
        assert_eq!(
            (loc.format, loc.prefix.as_str()),
            (LogFormat::Stderr, "%m [%p] ")
        );
        assert_eq!(
            locate(&Explicit::default(), Some(&facts("syslog", true))),
            Err(DiscoverError::NoFileDestination("syslog".into()))
        );
        let err = locate(&Explicit::default(), Some(&facts("stderr", false))).unwrap_err();
        assert!(err.to_string().contains("logs.path"), "{err}");
        assert_eq!(
            locate(&Explicit::default(), None),
            Err(DiscoverError::NoFacts)
        );
    }

    #[test]
    fn explicit_paths_and_their_rotations() {
        let e = Explicit {
            path: Some("/var/log/postgresql/postgresql-15-main.log".into()),
            prefix: Some("%m ".into()),
            ..Explicit::default()
        };
        let loc = locate(&e, None).unwrap();
        assert_eq!(loc.dir, Path::new("/var/log/postgresql"));
        assert!(loc.matches("postgresql-15-main.log"));
        assert!(loc.matches("postgresql-15-main.log.1"));
        assert!(!loc.matches("postgresql-15-main.log.2.gz"));
        assert!(!loc.matches("postgresql-16-main.log"));
        let csv = Explicit {
            path: Some("/logs/*.csv".into()),
            ..Explicit::default()
        };
        let loc = locate(&csv, None).unwrap();
        assert_eq!(loc.format, LogFormat::Csvlog);
        assert!(loc.matches("a.csv") && !loc.matches("a.log"));
        let no_prefix = Explicit {
            path: Some("/x/pg.log".into()),
            ..Explicit::default()
        };
        assert_eq!(locate(&no_prefix, None), Err(DiscoverError::NoPrefix));
    }
}
