//! Finding and reading `agent.toml`, and resolving what the agent will monitor.

use std::fmt;
use std::path::{Path, PathBuf};

use super::parse::ConfigError;
use super::validate::Problem;
use super::{AgentConfig, PostgresInstance, default_instance, libpq};

/// Where the agent looks for its configuration when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/pganalytics/agent.toml";

/// The data directory when there is no configuration file at all, so a first
/// try needs neither a file nor root.
pub const NO_CONFIG_DATA_DIR: &str = "./pga-data";

/// Where the configuration came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    /// This file.
    File(PathBuf),
    /// No file: `--config` was not given and [`DEFAULT_CONFIG_PATH`] does not exist.
    Defaults,
}

impl ConfigSource {
    /// Whether the configuration came from a file.
    pub fn is_file(&self) -> bool {
        matches!(self, ConfigSource::File(_))
    }
}

impl fmt::Display for ConfigSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigSource::File(p) => write!(f, "{}", p.display()),
            ConfigSource::Defaults => write!(
                f,
                "built-in defaults ({DEFAULT_CONFIG_PATH} does not exist and no --config was given)"
            ),
        }
    }
}

/// A parsed configuration and what the agent makes of it.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The configuration, with `--data-dir` applied.
    pub config: AgentConfig,
    /// Where it came from.
    pub source: ConfigSource,
    /// The PostgreSQL instances the agent monitors, each with libpq's defaults made
    /// explicit ([`PostgresInstance::with_libpq_defaults`]): the `[[postgres]]`
    /// tables, or the [`default_instance`] when there are none; empty when
    /// `collectors.postgres` is false.
    pub instances: Vec<PostgresInstance>,
    /// Problems found in the environment while resolving `instances` (an invalid
    /// `PGPORT`); part of [`Loaded::validate`].
    pub env_problems: Vec<Problem>,
}

impl Loaded {
    /// Whether the monitored instance is the libpq default, because the
    /// configuration has no `[[postgres]]` table.
    pub fn uses_default_instance(&self) -> bool {
        self.config.postgres.is_empty() && !self.instances.is_empty()
    }

    /// Every problem: those of [`AgentConfig::validate`], then those of the
    /// environment. `pga-agent check-config` prints them; `pga-agent run` refuses
    /// to start when one is an error.
    pub fn validate(&self) -> Vec<Problem> {
        let mut problems = self.config.validate();
        problems.extend(self.env_problems.iter().cloned());
        problems
    }
}
/// Loads the agent configuration.
///
/// - `path` given: that file; it must exist.
/// - `path` not given: [`DEFAULT_CONFIG_PATH`] if it exists, else the built-in
///   defaults with the data directory [`NO_CONFIG_DATA_DIR`].
/// - `data_dir_override` (`--data-dir`) replaces `agent.data_dir` either way.
/// - `env` looks up environment variables (the CLI passes
///   `&|k| std::env::var(k).ok()`); it resolves the libpq defaults of
///   [`Loaded::instances`].
///
/// Fails on a missing or unreadable file, TOML syntax errors, unknown keys and
/// mistyped values; range and cross-key rules are [`Loaded::validate`]'s job.
pub fn load(
    path: Option<&Path>,
    data_dir_override: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Loaded, ConfigError> {
    load_with_system_path(path, Path::new(DEFAULT_CONFIG_PATH), data_dir_override, env)
}

/// [`load`], with the file looked for when `path` is `None` given as
/// `system_path` instead of [`DEFAULT_CONFIG_PATH`] (for tests and packaging).
pub fn load_with_system_path(
    path: Option<&Path>,
    system_path: &Path,
    data_dir_override: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Loaded, ConfigError> {
    let file = match path {
        Some(p) => match std::fs::metadata(p) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ConfigError::NotFound { path: p.to_owned() });
            }
            // Any other failure shows up, with its reason, when reading.
            _ => Some(p),
        },
        None => match std::fs::metadata(system_path) {
            Ok(_) => Some(system_path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => {
                return Err(ConfigError::Read {
                    path: system_path.to_owned(),
                    source,
                });
            }
        },
    };
    let (mut config, source) = match file {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                path: p.to_owned(),
                source,
            })?;
            (
                AgentConfig::parse(&text, p)?,
                ConfigSource::File(p.to_owned()),
            )
        }
        None => {
            let mut c = AgentConfig::default();
            c.agent.data_dir = PathBuf::from(NO_CONFIG_DATA_DIR);
            (c, ConfigSource::Defaults)
        }
    };
    if let Some(dir) = data_dir_override {
        config.agent.data_dir = dir.to_owned();
    }

    let instances: Vec<PostgresInstance> = if !config.collectors.postgres {
        Vec::new()
    } else if config.postgres.is_empty() {
        vec![default_instance(env)]
    } else {
        config
            .postgres
            .iter()
            .map(|i| i.with_libpq_defaults(env))
            .collect()
    };
    let mut env_problems = Vec::new();
    if let Err(value) = libpq::env_port(env) {
        let portless = instances_needing_env_port(&instances);
        if !portless.is_empty() {
            env_problems.push(Problem::error(
                "PGPORT",
                format!(
                    "\"{value}\" is not a port number, and instance(s) {} take their port from it",
                    portless.join(", ")
                ),
                "set PGPORT to a number between 1 and 65535, unset it, or give each \
                 [[postgres]] instance a port",
            ));
        }
    }
    Ok(Loaded {
        config,
        source,
        instances,
        env_problems,
    })
}

/// Names of the resolved instances that still have no port: they needed `PGPORT`.
fn instances_needing_env_port(instances: &[PostgresInstance]) -> Vec<&str> {
    instances
        .iter()
        .filter(|i| {
            i.conninfo_params()
                .is_ok_and(|ps| !ps.iter().any(|(k, _)| k == "port"))
        })
        .map(|i| i.name.as_str())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn no_file_means_defaults_with_a_local_data_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let absent = tmp.path().join("agent.toml");
        let loaded = load_with_system_path(None, &absent, None, &no_env).unwrap();
        assert_eq!(loaded.source, ConfigSource::Defaults);
        assert_eq!(loaded.config.agent.data_dir, PathBuf::from("./pga-data"));
        assert_eq!(loaded.instances.len(), 1);
        assert_eq!(loaded.instances[0].name, "local");
        assert!(loaded.uses_default_instance());
    }

    #[test]
    fn the_system_file_is_used_when_present() {
        let tmp = tempfile::tempdir().unwrap();
        let system = tmp.path().join("agent.toml");
        std::fs::write(&system, "[agent]\nname = \"db9\"\n").unwrap();
        let loaded = load_with_system_path(None, &system, None, &no_env).unwrap();
        assert_eq!(loaded.source, ConfigSource::File(system));
        assert_eq!(loaded.config.agent.name, "db9");
        assert_eq!(
            loaded.config.agent.data_dir,
            PathBuf::from("/var/lib/pganalytics/agent")
        );
    }

    #[test]
    fn a_named_file_must_exist() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = tmp.path().join("nope.toml");
        let err = load(Some(&missing), None, &no_env).unwrap_err();
        assert!(matches!(err, ConfigError::NotFound { .. }), "{err:?}");
        assert!(err.to_string().contains("does not exist"), "{err}");
        let err = load(Some(tmp.path()), None, &no_env).unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }), "{err:?}");
    }

    #[test]
    fn data_dir_override_wins_in_both_cases() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("a.toml");
        std::fs::write(&file, "[agent]\ndata_dir = \"/srv/x\"\n").unwrap();
        let over = Path::new("/srv/override");
        let loaded = load(Some(&file), Some(over), &no_env).unwrap();
        assert_eq!(loaded.config.agent.data_dir, over);
        let loaded =
            load_with_system_path(None, &tmp.path().join("absent"), Some(over), &no_env).unwrap();
        assert_eq!(loaded.config.agent.data_dir, over);
    }

    #[test]
    fn configured_instances_replace_the_default_one() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("a.toml");
        std::fs::write(
            &file,
            "[[postgres]]\nname = \"main\"\nhost = \"db1\"\nport = 5433\n",
        )
        .unwrap();
        let env = |k: &str| (k == "PGUSER").then(|| "mon".to_owned());
        let loaded = load(Some(&file), None, &env).unwrap();
        assert!(!loaded.uses_default_instance());
        assert_eq!(loaded.instances.len(), 1);
        assert_eq!(loaded.instances[0].user.as_deref(), Some("mon"));
        assert_eq!(loaded.instances[0].host.as_deref(), Some("db1"));

        std::fs::write(&file, "[collectors]\npostgres = false\n").unwrap();
        let loaded = load(Some(&file), None, &env).unwrap();
        assert!(loaded.instances.is_empty());
        assert!(!loaded.uses_default_instance());
    }

    #[test]
    fn an_invalid_pgport_is_a_problem_only_when_used() {
        let vars: HashMap<&str, &str> = [("PGPORT", "54x2"), ("PGUSER", "u")].into();
        let env = move |k: &str| vars.get(k).map(|v| (*v).to_owned());
        let tmp = tempfile::tempdir().unwrap();
        let loaded = load_with_system_path(None, &tmp.path().join("x"), None, &env).unwrap();
        let problems = loaded.validate();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].key, "PGPORT");
        assert!(problems[0].message.contains("54x2"), "{problems:?}");

        let file = tmp.path().join("a.toml");
        std::fs::write(&file, "[[postgres]]\nname = \"main\"\nport = 5432\n").unwrap();
        let loaded = load(Some(&file), None, &env).unwrap();
        assert_eq!(loaded.validate(), []);
    }
}
