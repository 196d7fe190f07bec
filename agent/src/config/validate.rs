//! `validate()`: every rule a parsed configuration must follow, each broken rule
//! reported as a [`Problem`] naming the key and the fix.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::conninfo::{SECRET_KEYWORDS, parse_conninfo};
use super::{AgentConfig, PostgresInstance};

/// Smallest `store.max_bytes`: 4 MiB.
pub const MIN_STORE_BYTES: u64 = 4 << 20;
/// Smallest `store.block_secs`.
pub const BLOCK_SECS_MIN: u64 = 60;
/// Largest `store.block_secs`.
pub const BLOCK_SECS_MAX: u64 = 3600;
/// Largest `intervals.fast_secs`.
pub const FAST_SECS_MAX: u64 = 300;
/// Largest `intervals.slow_secs`.
pub const SLOW_SECS_MAX: u64 = 3600;
/// Largest `intervals.sizes_secs`.
pub const SIZES_SECS_MAX: u64 = 86_400;
/// Smallest `postgres[].statement_timeout_ms`.
pub const STATEMENT_TIMEOUT_MS_MIN: u64 = 100;
/// Largest `postgres[].statement_timeout_ms`.
pub const STATEMENT_TIMEOUT_MS_MAX: u64 = 60_000;
/// Largest `postgres[].statements_top_n`: bounds the series count.
pub const STATEMENTS_TOP_N_MAX: u32 = 1000;
/// Largest `postgres[].relations_top_n`: bounds the per-relation series count.
pub const RELATIONS_TOP_N_MAX: u32 = 10_000;
pub use pga_config::{MAX_NAME_LEN, Problem, Severity, has_errors, is_valid_name};

impl AgentConfig {
    /// Checks every rule the parser cannot: ranges, relations between keys, files
    /// that must exist. Returns all problems, in key order; empty means valid.
    /// Reads the file system (`data_dir`, `passfile`, `password_file`).
    pub fn validate(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        self.validate_agent(&mut p);
        self.validate_intervals(&mut p);
        self.validate_store(&mut p);
        self.validate_collectors(&mut p);
        self.endpoint.validate(&mut p);
        self.logs.validate(self.postgres.len(), &mut p);
        for (i, inst) in self.postgres.iter().enumerate() {
            validate_instance(
                &format!("postgres[{i}]"),
                inst,
                self.intervals.fast_secs,
                &mut p,
            );
            if let Some(first) = self.postgres[..i]
                .iter()
                .position(|o| !inst.name.is_empty() && o.name == inst.name)
            {
                p.push(Problem::error(
                    format!("postgres[{i}].name"),
                    format!("\"{}\" is already the name of postgres[{first}]", inst.name),
                    "give every [[postgres]] instance its own name",
                ));
            }
        }
        p
    }

    fn validate_agent(&self, p: &mut Vec<Problem>) {
        let name = &self.agent.name;
        if !is_valid_name(name) {
            p.push(Problem::error(
                "agent.name",
                format!("\"{name}\" is not a valid agent name"),
                format!(
                    "use 1 to {MAX_NAME_LEN} letters, digits, '_', '.' or '-', \
                     or remove the key to use the host name"
                ),
            ));
        }
        let dir = &self.agent.data_dir;
        if dir.as_os_str().is_empty() {
            p.push(Problem::error(
                "agent.data_dir",
                "is empty",
                "set it to a directory, e.g. \"/var/lib/pganalytics/agent\"",
            ));
            return;
        }
        match std::fs::metadata(dir) {
            Ok(m) if !m.is_dir() => p.push(Problem::error(
                "agent.data_dir",
                format!("{} exists and is not a directory", dir.display()),
                "point it at a directory, or move the file away",
            )),
            Ok(_) => {}
            Err(_) => {
                // Missing: the agent creates it, so its nearest existing ancestor
                // must be a directory.
                let existing = dir
                    .ancestors()
                    .skip(1)
                    .map(|a| {
                        if a.as_os_str().is_empty() {
                            Path::new(".")
                        } else {
                            a
                        }
                    })
                    .find(|a| std::fs::metadata(a).is_ok());
                if let Some(ancestor) = existing
                    && !ancestor.is_dir()
                {
                    p.push(Problem::error(
                        "agent.data_dir",
                        format!(
                            "{} cannot be created: {} is not a directory",
                            dir.display(),
                            ancestor.display()
                        ),
                        "point it at a path under an existing directory",
                    ));
                }
            }
        }
    }

    fn validate_intervals(&self, p: &mut Vec<Problem>) {
        let iv = &self.intervals;
        if !(1..=FAST_SECS_MAX).contains(&iv.fast_secs) {
            p.push(Problem::error(
                "intervals.fast_secs",
                format!("{} is out of range", iv.fast_secs),
                format!("set it between 1 and {FAST_SECS_MAX} (default 10)"),
            ));
        }
        if iv.slow_secs < iv.fast_secs {
            p.push(Problem::error(
                "intervals.slow_secs",
                format!(
                    "{} is shorter than intervals.fast_secs = {}",
                    iv.slow_secs, iv.fast_secs
                ),
                "make slow_secs at least fast_secs (default 60)",
            ));
        } else if iv.slow_secs > SLOW_SECS_MAX {
            p.push(Problem::error(
                "intervals.slow_secs",
                format!("{} is out of range", iv.slow_secs),
                format!("set it to at most {SLOW_SECS_MAX} (default 60)"),
            ));
        }
        if iv.sizes_secs < iv.slow_secs {
            p.push(Problem::error(
                "intervals.sizes_secs",
                format!(
                    "{} is shorter than intervals.slow_secs = {}",
                    iv.sizes_secs, iv.slow_secs
                ),
                "make sizes_secs at least slow_secs (default 300)",
            ));
        } else if iv.sizes_secs > SIZES_SECS_MAX {
            p.push(Problem::error(
                "intervals.sizes_secs",
                format!("{} is out of range", iv.sizes_secs),
                format!("set it to at most {SIZES_SECS_MAX} (default 300)"),
            ));
        }
    }

    fn validate_store(&self, p: &mut Vec<Problem>) {
        let s = &self.store;
        if s.max_bytes < MIN_STORE_BYTES {
            p.push(Problem::error(
                "store.max_bytes",
                format!("{} bytes is below the minimum of 4 MiB", s.max_bytes),
                format!("set it to at least {MIN_STORE_BYTES} (default 1073741824, 1 GiB)"),
            ));
        }
        if !(BLOCK_SECS_MIN..=BLOCK_SECS_MAX).contains(&s.block_secs) {
            p.push(Problem::error(
                "store.block_secs",
                format!("{} is out of range", s.block_secs),
                format!("set it between {BLOCK_SECS_MIN} and {BLOCK_SECS_MAX} (default 600)"),
            ));
        }
        let fast = self.intervals.fast_secs;
        if fast > 0 && !s.block_secs.is_multiple_of(fast) {
            p.push(Problem::error(
                "store.block_secs",
                format!(
                    "{} is not a multiple of intervals.fast_secs = {fast}",
                    s.block_secs
                ),
                match nearest_block_secs(s.block_secs, fast) {
                    Some(b) => format!("make block_secs a multiple of fast_secs, e.g. {b}"),
                    None => format!(
                        "no multiple of fast_secs = {fast} lies in \
                         {BLOCK_SECS_MIN}..={BLOCK_SECS_MAX}: change intervals.fast_secs"
                    ),
                },
            ));
        }
        if s.retention_secs != 0 && s.retention_secs < s.block_secs {
            p.push(Problem::error(
                "store.retention_secs",
                format!(
                    "{} is shorter than one block (store.block_secs = {})",
                    s.retention_secs, s.block_secs
                ),
                "set it to at least block_secs, or to 0 to bound the store by max_bytes alone",
            ));
        }
    }

    fn validate_collectors(&self, p: &mut Vec<Problem>) {
        let c = &self.collectors;
        if !c.system && !c.postgres && !c.logs {
            p.push(Problem::warning(
                "collectors",
                "every collector is off: the agent collects nothing but its own health",
                "turn on at least one of system, postgres, logs",
            ));
            return;
        }
        if !c.postgres && !self.postgres.is_empty() {
            p.push(Problem::warning(
                "collectors.postgres",
                format!(
                    "is false, so the {} [[postgres]] instance(s) configured are not monitored",
                    self.postgres.len()
                ),
                "set collectors.postgres = true, or remove the [[postgres]] tables",
            ));
        }
        if c.logs && !c.postgres && self.logs.path.is_none() {
            p.push(Problem::warning(
                "collectors.logs",
                "finds the log files through PostgreSQL, but collectors.postgres is false",
                "set collectors.postgres = true, set logs.path, or set collectors.logs = false",
            ));
        }
    }
}

/// The valid block length (a multiple of `fast` in the allowed range) nearest to
/// `block`.
fn nearest_block_secs(block: u64, fast: u64) -> Option<u64> {
    let target = block.clamp(BLOCK_SECS_MIN, BLOCK_SECS_MAX);
    let below = target / fast * fast;
    [below, below + fast]
        .into_iter()
        .filter(|b| (BLOCK_SECS_MIN..=BLOCK_SECS_MAX).contains(b))
        .min_by_key(|b| b.abs_diff(target))
}

/// Checks one `[[postgres]]` instance; `at` is its key path (`postgres[0]`).
pub(crate) fn validate_instance(
    at: &str,
    inst: &PostgresInstance,
    fast_secs: u64,
    p: &mut Vec<Problem>,
) {
    if inst.name.is_empty() {
        p.push(Problem::error(
            format!("{at}.name"),
            "is missing",
            "add name = \"main\" (any unique name; it becomes the `instance` label)",
        ));
    } else if !is_valid_name(&inst.name) {
        p.push(Problem::error(
            format!("{at}.name"),
            format!("\"{}\" is not a valid instance name", inst.name),
            format!("use 1 to {MAX_NAME_LEN} letters, digits, '_', '.' or '-'"),
        ));
    }

    validate_connection(at, inst, p);
    if let Some(f) = &inst.passfile {
        check_secret_file(&format!("{at}.passfile"), f, 0o077, p);
    }
    if let Some(f) = &inst.password_file {
        check_secret_file(&format!("{at}.password_file"), f, 0o007, p);
    }

    let st = inst.statement_timeout_ms;
    if !(STATEMENT_TIMEOUT_MS_MIN..=STATEMENT_TIMEOUT_MS_MAX).contains(&st) {
        p.push(Problem::error(
            format!("{at}.statement_timeout_ms"),
            format!("{st} is out of range"),
            format!(
                "set it between {STATEMENT_TIMEOUT_MS_MIN} and {STATEMENT_TIMEOUT_MS_MAX} \
                 (default 5000)"
            ),
        ));
    } else if st > fast_secs.saturating_mul(1000) {
        p.push(Problem::warning(
            format!("{at}.statement_timeout_ms"),
            format!("{st} ms is longer than the fast interval ({fast_secs} s)"),
            "a slow query may delay the next collection: lower it below intervals.fast_secs",
        ));
    }
    let lt = inst.lock_timeout_ms;
    let st_valid = (STATEMENT_TIMEOUT_MS_MIN..=STATEMENT_TIMEOUT_MS_MAX).contains(&st);
    if lt == 0 || (st_valid && lt > st) {
        p.push(Problem::error(
            format!("{at}.lock_timeout_ms"),
            if lt == 0 {
                "0 turns lock_timeout off, so a monitoring query could queue behind user DDL"
                    .to_owned()
            } else {
                format!("{lt} is longer than statement_timeout_ms = {st}")
            },
            "set it between 1 and statement_timeout_ms (default 1000)",
        ));
    }

    if inst.databases_include.is_empty() {
        p.push(Problem::warning(
            format!("{at}.databases_include"),
            "is empty: no database's tables, indexes or sizes are collected",
            "list the databases to cover, or [\"*\"] for all",
        ));
    }
    for (list, patterns) in [
        ("databases_include", &inst.databases_include),
        ("databases_exclude", &inst.databases_exclude),
    ] {
        for (j, pat) in patterns.iter().enumerate() {
            if pat.is_empty() {
                p.push(Problem::error(
                    format!("{at}.{list}[{j}]"),
                    "is an empty pattern, which matches no database",
                    "remove it, or write a database name or a glob such as \"app_*\"",
                ));
            }
        }
    }
    if inst.statements_top_n > STATEMENTS_TOP_N_MAX {
        p.push(Problem::error(
            format!("{at}.statements_top_n"),
            format!("{} is out of range", inst.statements_top_n),
            format!("set it between 0 (off) and {STATEMENTS_TOP_N_MAX} (default 100)"),
        ));
    }
    if !(1..=RELATIONS_TOP_N_MAX).contains(&inst.relations_top_n) {
        p.push(Problem::error(
            format!("{at}.relations_top_n"),
            format!("{} is out of range", inst.relations_top_n),
            format!("set it between 1 and {RELATIONS_TOP_N_MAX} (default 300)"),
        ));
    }
    for (j, name) in inst.families_exclude.iter().enumerate() {
        if crate::collect::postgres::catalog::family(name).is_none() {
            let known: Vec<&str> = crate::collect::postgres::catalog::family_names().collect();
            p.push(Problem::error(
                format!("{at}.families_exclude[{j}]"),
                format!("\"{name}\" is not a statistics family"),
                format!("use one of: {}", known.join(", ")),
            ));
        }
    }
}

fn validate_connection(at: &str, inst: &PostgresInstance, p: &mut Vec<Problem>) {
    let separate: Vec<&str> = [
        ("host", inst.host.is_some()),
        ("port", inst.port.is_some()),
        ("user", inst.user.is_some()),
        ("dbname", inst.dbname.is_some()),
        ("passfile", inst.passfile.is_some()),
    ]
    .into_iter()
    .filter_map(|(k, set)| set.then_some(k))
    .collect();

    if let Some(conninfo) = &inst.conninfo {
        if !separate.is_empty() {
            p.push(Problem::error(
                format!("{at}.conninfo"),
                format!(
                    "is set together with {}",
                    separate
                        .iter()
                        .map(|k| format!("{at}.{k}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                "say where the instance is either with conninfo or with \
                 host/port/user/dbname/passfile, not both",
            ));
        }
        match parse_conninfo(conninfo) {
            Err(e) => p.push(Problem::error(
                format!("{at}.conninfo"),
                format!("is not a valid libpq connection string: {e}"),
                "write key=value pairs (host=... port=... user=... dbname=...) or a \
                 postgresql:// URL; quote values with spaces in single quotes",
            )),
            Ok(params) => {
                for (k, _) in params
                    .iter()
                    .filter(|(k, _)| SECRET_KEYWORDS.contains(&k.as_str()))
                {
                    p.push(Problem::error(
                        format!("{at}.conninfo"),
                        format!("contains a {k}; secrets do not belong in the config file"),
                        format!(
                            "remove it and put the password in a file named by \
                             {at}.password_file (mode 0600), or in a pgpass file"
                        ),
                    ));
                }
            }
        }
    }

    for (k, v) in [
        ("host", &inst.host),
        ("user", &inst.user),
        ("dbname", &inst.dbname),
    ] {
        if v.as_deref() == Some("") {
            p.push(Problem::error(
                format!("{at}.{k}"),
                "is empty",
                format!("remove {k} to use the libpq default, or give a value"),
            ));
        }
    }
    if inst.port == Some(0) {
        p.push(Problem::error(
            format!("{at}.port"),
            "0 is not a port",
            "set it between 1 and 65535, or remove it for the default (PGPORT, else 5432)",
        ));
    }
}

/// A file holding a secret must exist, be a regular file, and grant nothing to the
/// permission bits in `forbidden` (0o007: others; 0o077: group and others, as
/// libpq demands of a password file).
pub(super) fn check_secret_file(key: &str, path: &Path, forbidden: u32, p: &mut Vec<Problem>) {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            p.push(Problem::error(
                key,
                format!("{} does not exist", path.display()),
                "create the file, or correct the path",
            ));
            return;
        }
        Err(e) => {
            p.push(Problem::warning(
                key,
                format!("{} cannot be checked: {e}", path.display()),
                "run check-config as the user the agent runs as",
            ));
            return;
        }
    };
    if !meta.is_file() {
        p.push(Problem::error(
            key,
            format!("{} is not a regular file", path.display()),
            "point it at a file",
        ));
        return;
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & forbidden != 0 {
        let who = if forbidden & 0o070 != 0 {
            "group or others (libpq ignores such a password file)"
        } else {
            "every local user"
        };
        p.push(Problem::error(
            key,
            format!(
                "{} has mode {mode:04o}: the secret is open to {who}",
                path.display()
            ),
            format!("chmod {:04o} {}", mode & !forbidden, path.display()),
        ));
    }
    if let Err(e) = std::fs::File::open(path) {
        p.push(Problem::warning(
            key,
            format!("{} cannot be read: {e}", path.display()),
            "make it readable by the user the agent runs as",
        ));
    }
}

/// A file the agent reads (a certificate, a CA bundle) must exist and be a regular
/// file; one that cannot be read is a warning (check-config may run as another user).
pub(super) fn check_readable_file(key: &str, path: &Path, p: &mut Vec<Problem>) {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => {
            if let Err(e) = std::fs::File::open(path) {
                p.push(Problem::warning(
                    key,
                    format!("{} cannot be read: {e}", path.display()),
                    "make it readable by the user the agent runs as",
                ));
            }
        }
        Ok(_) => p.push(Problem::error(
            key,
            format!("{} is not a regular file", path.display()),
            "point it at a file",
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => p.push(Problem::error(
            key,
            format!("{} does not exist", path.display()),
            "create the file, or correct the path",
        )),
        Err(e) => p.push(Problem::warning(
            key,
            format!("{} cannot be checked: {e}", path.display()),
            "run check-config as the user the agent runs as",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn instance(name: &str) -> PostgresInstance {
        PostgresInstance {
            name: name.to_owned(),
            ..PostgresInstance::default()
        }
    }

    fn with_instances(list: Vec<PostgresInstance>) -> AgentConfig {
        AgentConfig {
            postgres: list,
            ..AgentConfig::default()
        }
    }

    /// The keys of the problems of `c` at `severity`.
    fn keys(c: &AgentConfig, severity: Severity) -> Vec<String> {
        c.validate()
            .into_iter()
            .filter(|p| p.severity == severity)
            .map(|p| p.key)
            .collect()
    }

    fn errors(c: &AgentConfig) -> Vec<String> {
        keys(c, Severity::Error)
    }

    fn warnings(c: &AgentConfig) -> Vec<String> {
        keys(c, Severity::Warning)
    }

    fn write_mode(dir: &Path, name: &str, mode: u32) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, "secret\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn defaults_and_a_sane_instance_are_valid() {
        let c = with_instances(vec![instance("main"), instance("replica-1")]);
        assert_eq!(c.validate(), []);
    }

    #[test]
    fn agent_name_charset_and_length() {
        for bad in ["", "db 1", "db/1", "ü", &"x".repeat(129)] {
            let mut c = AgentConfig::default();
            c.agent.name = bad.to_owned();
            assert_eq!(errors(&c), ["agent.name"], "{bad:?}");
        }
        let mut c = AgentConfig::default();
        c.agent.name = "db-1.eu_west".to_owned();
        assert_eq!(errors(&c), Vec::<String>::new());
    }

    #[test]
    fn data_dir_must_be_a_directory_or_creatable() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("file");
        std::fs::write(&file, "").unwrap();
        let mut c = AgentConfig::default();
        c.agent.data_dir = file.clone();
        assert_eq!(errors(&c), ["agent.data_dir"]);
        c.agent.data_dir = file.join("sub/dir");
        let problems = c.validate();
        assert_eq!(problems[0].key, "agent.data_dir");
        assert!(
            problems[0].message.contains("is not a directory"),
            "{problems:?}"
        );
        c.agent.data_dir = PathBuf::new();
        assert_eq!(errors(&c), ["agent.data_dir"]);
        // Missing but under a directory: fine, the agent creates it.
        c.agent.data_dir = tmp.path().join("a/b/c");
        assert_eq!(errors(&c), Vec::<String>::new());
        c.agent.data_dir = PathBuf::from("pga-data-relative-test");
        assert_eq!(errors(&c), Vec::<String>::new());
    }

    #[test]
    fn fast_interval_range() {
        for bad in [0, 301] {
            let mut c = AgentConfig::default();
            c.intervals.fast_secs = bad;
            c.intervals.slow_secs = 600;
            c.intervals.sizes_secs = 600;
            c.store.block_secs = 600;
            assert!(
                errors(&c).contains(&"intervals.fast_secs".to_owned()),
                "{bad}"
            );
        }
    }

    #[test]
    fn slow_interval_at_least_fast() {
        let mut c = AgentConfig::default();
        c.intervals.slow_secs = 5;
        assert_eq!(errors(&c), ["intervals.slow_secs"]);
        c.intervals.slow_secs = 3601;
        c.intervals.sizes_secs = 4000;
        assert_eq!(errors(&c), ["intervals.slow_secs"]);
    }

    #[test]
    fn sizes_interval_at_least_slow() {
        let mut c = AgentConfig::default();
        c.intervals.sizes_secs = 30;
        assert_eq!(errors(&c), ["intervals.sizes_secs"]);
        c.intervals.sizes_secs = 86_401;
        assert_eq!(errors(&c), ["intervals.sizes_secs"]);
    }

    #[test]
    fn store_budget_minimum() {
        let mut c = AgentConfig::default();
        c.store.max_bytes = MIN_STORE_BYTES - 1;
        assert_eq!(errors(&c), ["store.max_bytes"]);
        c.store.max_bytes = MIN_STORE_BYTES;
        assert_eq!(errors(&c), Vec::<String>::new());
    }

    #[test]
    fn block_length_range() {
        for bad in [30, 3610] {
            let mut c = AgentConfig::default();
            c.store.block_secs = bad;
            assert_eq!(errors(&c), ["store.block_secs"], "{bad}");
        }
    }

    #[test]
    fn block_length_multiple_of_fast_interval() {
        let mut c = AgentConfig::default();
        c.intervals.fast_secs = 7;
        c.store.block_secs = 600;
        let problems = c.validate();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].key, "store.block_secs");
        assert!(problems[0].fix.contains("602"), "{}", problems[0].fix);
        assert_eq!(nearest_block_secs(45, 10), Some(60));
        assert_eq!(nearest_block_secs(600, 7), Some(602));
        assert_eq!(nearest_block_secs(4000, 7), Some(3598));
        assert_eq!(nearest_block_secs(90, 300), Some(300));
    }

    #[test]
    fn retention_zero_or_at_least_one_block() {
        let mut c = AgentConfig::default();
        c.store.retention_secs = 599;
        assert_eq!(errors(&c), ["store.retention_secs"]);
        c.store.retention_secs = 0;
        assert_eq!(errors(&c), Vec::<String>::new());
    }

    #[test]
    fn collector_toggles_that_make_no_sense_warn() {
        let mut c = AgentConfig::default();
        c.collectors.postgres = false;
        assert_eq!(warnings(&c), ["collectors.logs"]);
        c.postgres = vec![instance("main")];
        assert_eq!(warnings(&c), ["collectors.postgres", "collectors.logs"]);
        // An explicit log path needs no server.
        c.logs.path = Some("/var/log/postgresql/postgresql-16-main.log".into());
        assert_eq!(warnings(&c), ["collectors.postgres"]);
        c.collectors.logs = false;
        c.collectors.system = false;
        assert_eq!(warnings(&c), ["collectors"]);
        assert_eq!(errors(&c), Vec::<String>::new());
    }

    #[test]
    fn instance_names_are_required_valid_and_unique() {
        let c = with_instances(vec![
            instance("main"),
            instance(""),
            instance("bad name"),
            instance("main"),
        ]);
        assert_eq!(
            errors(&c),
            ["postgres[1].name", "postgres[2].name", "postgres[3].name"]
        );
        let dup = &c.validate()[2];
        assert!(dup.message.contains("postgres[0]"), "{dup:?}");
    }

    #[test]
    fn conninfo_excludes_separate_keys() {
        let c = with_instances(vec![PostgresInstance {
            conninfo: Some("host=/tmp".into()),
            port: Some(5433),
            user: Some("mon".into()),
            ..instance("main")
        }]);
        let problems = c.validate();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].key, "postgres[0].conninfo");
        assert!(
            problems[0]
                .message
                .contains("postgres[0].port, postgres[0].user"),
            "{problems:?}"
        );
    }

    #[test]
    fn conninfo_must_parse() {
        for bad in ["host=a dbname", "hots=a", "host='a", ""] {
            let c = with_instances(vec![PostgresInstance {
                conninfo: Some(bad.into()),
                ..instance("main")
            }]);
            assert_eq!(errors(&c), ["postgres[0].conninfo"], "{bad:?}");
        }
    }

    #[test]
    fn conninfo_must_not_hold_a_password() {
        for bad in ["host=h password=hunter2", "postgresql://u:hunter2@h/db"] {
            let c = with_instances(vec![PostgresInstance {
                conninfo: Some(bad.into()),
                ..instance("main")
            }]);
            let problems = c.validate();
            assert_eq!(problems.len(), 1, "{problems:?}");
            assert_eq!(problems[0].key, "postgres[0].conninfo");
            assert!(problems[0].fix.contains("password_file"), "{problems:?}");
            assert!(!problems[0].to_string().contains("hunter2"), "{problems:?}");
        }
    }

    #[test]
    fn empty_connection_values_and_port_zero() {
        let c = with_instances(vec![PostgresInstance {
            host: Some(String::new()),
            port: Some(0),
            user: Some(String::new()),
            dbname: Some(String::new()),
            ..instance("main")
        }]);
        assert_eq!(
            errors(&c),
            [
                "postgres[0].host",
                "postgres[0].user",
                "postgres[0].dbname",
                "postgres[0].port"
            ]
        );
    }

    #[test]
    fn password_file_must_exist() {
        let tmp = tempfile::tempdir().unwrap();
        let c = with_instances(vec![PostgresInstance {
            password_file: Some(tmp.path().join("missing")),
            ..instance("main")
        }]);
        assert_eq!(errors(&c), ["postgres[0].password_file"]);
        let c = with_instances(vec![PostgresInstance {
            password_file: Some(tmp.path().to_owned()),
            ..instance("main")
        }]);
        assert_eq!(errors(&c), ["postgres[0].password_file"]);
    }

    #[test]
    fn password_file_must_not_be_world_readable() {
        let tmp = tempfile::tempdir().unwrap();
        let ok = write_mode(tmp.path(), "ok", 0o640);
        let open = write_mode(tmp.path(), "open", 0o644);
        let c = with_instances(vec![
            PostgresInstance {
                password_file: Some(ok),
                ..instance("a")
            },
            PostgresInstance {
                password_file: Some(open.clone()),
                ..instance("b")
            },
        ]);
        let problems = c.validate();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].key, "postgres[1].password_file");
        assert_eq!(problems[0].fix, format!("chmod 0640 {}", open.display()));
    }

    #[test]
    fn passfile_must_exist_and_be_private_like_libpq_wants() {
        let tmp = tempfile::tempdir().unwrap();
        let private = write_mode(tmp.path(), "pgpass", 0o600);
        let group = write_mode(tmp.path(), "pgpass-g", 0o640);
        let c = with_instances(vec![
            PostgresInstance {
                passfile: Some(private),
                ..instance("a")
            },
            PostgresInstance {
                passfile: Some(group),
                ..instance("b")
            },
            PostgresInstance {
                passfile: Some(tmp.path().join("nope")),
                ..instance("c")
            },
        ]);
        assert_eq!(errors(&c), ["postgres[1].passfile", "postgres[2].passfile"]);
    }

    #[test]
    fn statement_timeout_range_and_fast_interval() {
        for bad in [0, 99, 60_001] {
            let c = with_instances(vec![PostgresInstance {
                statement_timeout_ms: bad,
                lock_timeout_ms: 1,
                ..instance("main")
            }]);
            assert_eq!(errors(&c), ["postgres[0].statement_timeout_ms"], "{bad}");
        }
        let c = with_instances(vec![PostgresInstance {
            statement_timeout_ms: 15_000,
            ..instance("main")
        }]);
        assert_eq!(warnings(&c), ["postgres[0].statement_timeout_ms"]);
        assert_eq!(errors(&c), Vec::<String>::new());
    }

    #[test]
    fn lock_timeout_on_and_below_statement_timeout() {
        for bad in [0, 5001] {
            let c = with_instances(vec![PostgresInstance {
                lock_timeout_ms: bad,
                ..instance("main")
            }]);
            assert_eq!(errors(&c), ["postgres[0].lock_timeout_ms"], "{bad}");
        }
    }

    #[test]
    fn database_patterns() {
        let c = with_instances(vec![PostgresInstance {
            databases_include: vec![],
            databases_exclude: vec!["template0".into(), String::new()],
            ..instance("main")
        }]);
        assert_eq!(warnings(&c), ["postgres[0].databases_include"]);
        assert_eq!(errors(&c), ["postgres[0].databases_exclude[1]"]);
    }

    #[test]
    fn relations_top_n_and_families_exclude_checked() {
        for bad in [0, 10_001] {
            let c = with_instances(vec![PostgresInstance {
                relations_top_n: bad,
                ..instance("main")
            }]);
            assert_eq!(errors(&c), ["postgres[0].relations_top_n"], "{bad}");
        }
        let c = with_instances(vec![PostgresInstance {
            families_exclude: vec!["statements".into(), "relation_sizes".into()],
            ..instance("main")
        }]);
        let problems = c.validate();
        assert_eq!(errors(&c), ["postgres[0].families_exclude[1]"]);
        let p = problems
            .iter()
            .find(|p| p.key == "postgres[0].families_exclude[1]")
            .unwrap();
        assert!(p.fix.contains("relation_size"), "{p:?}");
    }

    #[test]
    fn statements_top_n_bounded() {
        let c = with_instances(vec![PostgresInstance {
            statements_top_n: 1001,
            ..instance("main")
        }]);
        assert_eq!(errors(&c), ["postgres[0].statements_top_n"]);
        let c = with_instances(vec![PostgresInstance {
            statements_top_n: 0,
            ..instance("main")
        }]);
        assert_eq!(errors(&c), Vec::<String>::new());
    }

    #[test]
    fn every_problem_is_reported_not_just_the_first() {
        let mut c = with_instances(vec![instance(""), instance("x y")]);
        c.agent.name = "bad name".into();
        c.intervals.slow_secs = 1;
        c.store.max_bytes = 1;
        c.store.block_secs = 1;
        let errs = errors(&c);
        for key in [
            "agent.name",
            "intervals.slow_secs",
            "store.max_bytes",
            "store.block_secs",
            "postgres[0].name",
            "postgres[1].name",
        ] {
            assert!(
                errs.contains(&key.to_owned()),
                "{key} missing from {errs:?}"
            );
        }
    }

    #[test]
    fn problem_display_format() {
        let p = Problem::error("store.block_secs", "7 is out of range", "set it to 600");
        assert_eq!(
            p.to_string(),
            "error: store.block_secs: 7 is out of range\n  fix: set it to 600"
        );
        let w = Problem::warning("collectors", "m", "f");
        assert_eq!(w.to_string(), "warning: collectors: m\n  fix: f");
        assert!(has_errors(&[w.clone(), p]));
        assert!(!has_errors(&[w]));
    }
}
