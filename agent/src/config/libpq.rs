//! libpq's defaults: where `psql` connects when told nothing.
//!
//! libpq fills every connection parameter a connection string leaves out from an
//! environment variable, else from a built-in default:
//!
//! | parameter | environment | default |
//! | --- | --- | --- |
//! | `host` | `PGHOST` | the unix-socket directory: `/var/run/postgresql` (Debian, Ubuntu, RHEL packages) when it exists, else `/tmp` (upstream) |
//! | `port` | `PGPORT` | 5432 |
//! | `user` | `PGUSER` | the operating-system user of the effective uid |
//! | `dbname` | `PGDATABASE` | the user name (after `user` is resolved) |
//! | `passfile` | `PGPASSFILE` | `~/.pgpass` (`HOME`, else the home directory in `/etc/passwd`) |
//!
//! An empty variable counts as unset. Other libpq variables (`PGSSLMODE`,
//! `PGSERVICE`, …) are not read; `PGPASSWORD` is deliberately not honoured, since
//! secrets come from files.

use std::path::{Path, PathBuf};

use super::PostgresInstance;
use super::conninfo::{parse_conninfo, render_conninfo};

/// The default PostgreSQL port.
pub const DEFAULT_PORT: u16 = 5432;
/// The unix-socket directory of Debian's (and most distributions') libpq.
pub const DEBIAN_SOCKET_DIR: &str = "/var/run/postgresql";
/// The unix-socket directory of an upstream libpq build.
pub const UPSTREAM_SOCKET_DIR: &str = "/tmp";
/// The `name` of the instance monitored when the configuration has no
/// `[[postgres]]` table.
pub const DEFAULT_INSTANCE_NAME: &str = "local";

type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The variable's value, with an empty value counting as unset (as in libpq).
fn var(env: Env<'_>, name: &str) -> Option<String> {
    env(name).filter(|v| !v.is_empty())
}

/// The unix-socket directory libpq uses when no host is given:
/// [`DEBIAN_SOCKET_DIR`] when that directory exists, else [`UPSTREAM_SOCKET_DIR`].
pub fn default_socket_dir() -> &'static str {
    if Path::new(DEBIAN_SOCKET_DIR).is_dir() {
        DEBIAN_SOCKET_DIR
    } else {
        UPSTREAM_SOCKET_DIR
    }
}

/// This host's name, from `/proc/sys/kernel/hostname`; `localhost` when that
/// cannot be read.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// The user name libpq connects as when none is given: the `/etc/passwd` entry of
/// the effective uid (what libpq itself looks up), else the `USER` variable (for
/// containers whose uid has no passwd entry, where libpq would fail).
pub fn os_user_name(env: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    user_name_from(passwd_entry_of_euid(), env)
}

fn user_name_from(entry: Option<PasswdEntry>, env: Env<'_>) -> Option<String> {
    entry.map(|e| e.name).or_else(|| var(env, "USER"))
}

/// `~/.pgpass`: `HOME`, else the home directory of the effective uid.
fn home_dir(env: Env<'_>) -> Option<PathBuf> {
    var(env, "HOME")
        .map(PathBuf::from)
        .or_else(|| passwd_entry_of_euid().map(|e| e.home))
}

/// The password file libpq reads when none is given: `PGPASSFILE`, else
/// `~/.pgpass`.
pub(crate) fn default_passfile(env: Env<'_>) -> Option<PathBuf> {
    var(env, "PGPASSFILE")
        .map(PathBuf::from)
        .or_else(|| home_dir(env).map(|h| h.join(".pgpass")))
}

/// `PGPORT`, if set: `Ok(None)` when unset, `Err(value)` when it is not a port.
pub(crate) fn env_port(env: Env<'_>) -> Result<Option<u16>, String> {
    match var(env, "PGPORT") {
        None => Ok(None),
        Some(v) => match v.trim().parse::<u16>() {
            Ok(p) if p != 0 => Ok(Some(p)),
            _ => Err(v),
        },
    }
}

/// The instance `psql` would connect to with no arguments, every parameter
/// resolved (see the module table). Named [`DEFAULT_INSTANCE_NAME`], every other
/// key at its default. When `PGPORT` is set but is not a port number, `port` is
/// left unset; [`super::Loaded::validate`] reports it.
pub fn default_instance(env: &dyn Fn(&str) -> Option<String>) -> PostgresInstance {
    PostgresInstance {
        name: DEFAULT_INSTANCE_NAME.to_owned(),
        ..PostgresInstance::default()
    }
    .with_libpq_defaults(env)
}

impl PostgresInstance {
    /// The connection parameters this instance states itself, in libpq order
    /// (`host`, `port`, `user`, `dbname`, `passfile`), or as `conninfo` gives
    /// them.
    pub fn conninfo_params(&self) -> Result<Vec<(String, String)>, super::ConninfoError> {
        if let Some(conninfo) = &self.conninfo {
            return parse_conninfo(conninfo);
        }
        let mut out = Vec::new();
        if let Some(h) = &self.host {
            out.push(("host".to_owned(), h.clone()));
        }
        if let Some(p) = self.port {
            out.push(("port".to_owned(), p.to_string()));
        }
        if let Some(u) = &self.user {
            out.push(("user".to_owned(), u.clone()));
        }
        if let Some(d) = &self.dbname {
            out.push(("dbname".to_owned(), d.clone()));
        }
        if let Some(f) = &self.passfile {
            out.push(("passfile".to_owned(), f.display().to_string()));
        }
        Ok(out)
    }

    /// This instance's connection as a libpq `key=value` string, quoted per libpq's
    /// rules; a `postgresql://` URL is converted. Parameters the instance leaves
    /// out stay out (libpq fills them at connect time); call
    /// [`Self::with_libpq_defaults`] first to spell them all out. A `conninfo`
    /// that does not parse is returned as it is ([`super::AgentConfig::validate`]
    /// reports it). The password, if the string has one, is kept: never log this.
    pub fn resolved_conninfo(&self) -> String {
        match self.conninfo_params() {
            Ok(params) => render_conninfo(&params),
            Err(_) => self.conninfo.clone().unwrap_or_default(),
        }
    }

    /// A copy with every connection parameter libpq would fill in made explicit:
    /// `host`, `port`, `user`, `dbname` and (unless `password_file` is set)
    /// `passfile`, each from its environment variable, else libpq's default. An
    /// instance given by `conninfo` gets a `conninfo` with the missing parameters
    /// appended (a URL becomes `key=value`); one given by separate keys gets those
    /// keys filled. A `conninfo` that does not parse is left as it is.
    pub fn with_libpq_defaults(&self, env: &dyn Fn(&str) -> Option<String>) -> PostgresInstance {
        let Ok(mut params) = self.conninfo_params() else {
            return self.clone();
        };
        let has = |params: &[(String, String)], k: &str| params.iter().any(|(pk, _)| pk == k);
        let mut add = Vec::new();
        if !has(&params, "host") && !has(&params, "hostaddr") {
            let host = var(env, "PGHOST").unwrap_or_else(|| default_socket_dir().to_owned());
            add.push(("host", host));
        }
        if !has(&params, "port") {
            // An invalid PGPORT leaves the port unset; `Loaded::validate` says so.
            if let Ok(port) = env_port(env) {
                add.push(("port", port.unwrap_or(DEFAULT_PORT).to_string()));
            }
        }
        let user = params
            .iter()
            .find(|(k, _)| k == "user")
            .map(|(_, v)| v.clone())
            .or_else(|| var(env, "PGUSER"))
            .or_else(|| os_user_name(env));
        if !has(&params, "user")
            && let Some(u) = &user
        {
            add.push(("user", u.clone()));
        }
        if !has(&params, "dbname")
            && let Some(db) = var(env, "PGDATABASE").or(user)
        {
            add.push(("dbname", db));
        }
        if !has(&params, "passfile")
            && self.password_file.is_none()
            && let Some(f) = default_passfile(env)
        {
            add.push(("passfile", f.display().to_string()));
        }

        let mut out = self.clone();
        if self.conninfo.is_some() {
            params.extend(add.into_iter().map(|(k, v)| (k.to_owned(), v)));
            out.conninfo = Some(render_conninfo(&params));
        } else {
            for (k, v) in add {
                match k {
                    "host" => out.host = Some(v),
                    "port" => out.port = v.parse().ok(),
                    "user" => out.user = Some(v),
                    "dbname" => out.dbname = Some(v),
                    _ => out.passfile = Some(PathBuf::from(v)),
                }
            }
        }
        out
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct PasswdEntry {
    name: String,
    home: PathBuf,
}

/// The user database entry of the effective uid, as libpq looks it up
/// (`getpwuid_r`: `/etc/passwd` and every other NSS source, such as LDAP, sssd or
/// systemd's dynamic users).
fn passwd_entry_of_euid() -> Option<PasswdEntry> {
    let user = nix::unistd::User::from_uid(nix::unistd::Uid::effective()).ok()??;
    Some(PasswdEntry {
        name: user.name,
        home: user.dir,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn environment_variables_win() {
        let env = env_of(&[
            ("PGHOST", "db.example.com"),
            ("PGPORT", "6432"),
            ("PGUSER", "pga_monitor"),
            ("PGDATABASE", "postgres"),
            ("PGPASSFILE", "/etc/pganalytics/pgpass"),
        ]);
        let i = default_instance(&env);
        assert_eq!(i.name, "local");
        assert_eq!(i.host.as_deref(), Some("db.example.com"));
        assert_eq!(i.port, Some(6432));
        assert_eq!(i.user.as_deref(), Some("pga_monitor"));
        assert_eq!(i.dbname.as_deref(), Some("postgres"));
        assert_eq!(
            i.passfile.as_deref(),
            Some(Path::new("/etc/pganalytics/pgpass"))
        );
        assert_eq!(i.conninfo, None);
        assert_eq!(
            i.resolved_conninfo(),
            "host=db.example.com port=6432 user=pga_monitor dbname=postgres \
             passfile=/etc/pganalytics/pgpass"
        );
    }

    #[test]
    fn without_environment_libpq_defaults_apply() {
        let env = env_of(&[("HOME", "/home/alice"), ("USER", "alice")]);
        let i = default_instance(&env);
        assert_eq!(i.host.as_deref(), Some(default_socket_dir()));
        assert_eq!(i.port, Some(5432));
        let user = os_user_name(&env).unwrap();
        assert_eq!(i.user.as_deref(), Some(user.as_str()));
        // dbname defaults to the user name.
        assert_eq!(i.dbname.as_deref(), Some(user.as_str()));
        assert_eq!(
            i.passfile.as_deref(),
            Some(Path::new("/home/alice/.pgpass"))
        );
    }

    #[test]
    fn socket_dir_is_debians_when_present_else_tmp() {
        let expected = if Path::new("/var/run/postgresql").is_dir() {
            "/var/run/postgresql"
        } else {
            "/tmp"
        };
        assert_eq!(default_socket_dir(), expected);
    }

    #[test]
    fn dbname_follows_the_resolved_user() {
        let env = env_of(&[("PGUSER", "bob")]);
        let i = default_instance(&env);
        assert_eq!(i.dbname.as_deref(), Some("bob"));
        // A user given by the instance, not the environment, names the database too.
        let inst = PostgresInstance {
            name: "x".into(),
            user: Some("carol".into()),
            ..PostgresInstance::default()
        };
        let r = inst.with_libpq_defaults(&env);
        assert_eq!(r.user.as_deref(), Some("carol"));
        assert_eq!(r.dbname.as_deref(), Some("carol"));
    }

    #[test]
    fn empty_variables_count_as_unset() {
        let env = env_of(&[("PGHOST", ""), ("PGPORT", ""), ("PGUSER", "u")]);
        let i = default_instance(&env);
        assert_eq!(i.host.as_deref(), Some(default_socket_dir()));
        assert_eq!(i.port, Some(5432));
    }

    #[test]
    fn an_invalid_pgport_leaves_the_port_unset() {
        let env = env_of(&[("PGPORT", "fivefour"), ("PGUSER", "u")]);
        assert_eq!(env_port(&env), Err("fivefour".to_owned()));
        assert_eq!(default_instance(&env).port, None);
        assert_eq!(env_port(&env_of(&[("PGPORT", "0")])), Err("0".into()));
        assert_eq!(
            env_port(&env_of(&[("PGPORT", "70000")])),
            Err("70000".into())
        );
        assert_eq!(env_port(&env_of(&[])), Ok(None));
    }

    #[test]
    fn conninfo_instances_get_missing_parameters_appended() {
        let env = env_of(&[
            ("PGHOST", "ignored-because-given"),
            ("PGPORT", "5433"),
            ("PGUSER", "mon"),
            ("PGPASSFILE", "/p"),
        ]);
        let inst = PostgresInstance {
            name: "x".into(),
            conninfo: Some("postgresql://db1/app?sslmode=require".into()),
            ..PostgresInstance::default()
        };
        let r = inst.with_libpq_defaults(&env);
        assert_eq!(
            r.conninfo.as_deref(),
            Some("host=db1 dbname=app sslmode=require port=5433 user=mon passfile=/p")
        );
        assert_eq!(r.host, None);
        // hostaddr alone also suppresses the default host.
        let inst = PostgresInstance {
            name: "x".into(),
            conninfo: Some("hostaddr=10.0.0.1 port=5432 user=u dbname=d".into()),
            password_file: Some("/pw".into()),
            ..PostgresInstance::default()
        };
        assert_eq!(
            inst.with_libpq_defaults(&env).resolved_conninfo(),
            "hostaddr=10.0.0.1 port=5432 user=u dbname=d"
        );
    }

    #[test]
    fn resolved_conninfo_quotes_values() {
        let inst = PostgresInstance {
            name: "x".into(),
            host: Some("/run/pg sockets".into()),
            port: Some(5432),
            user: Some("o'neil".into()),
            dbname: Some("my db".into()),
            ..PostgresInstance::default()
        };
        assert_eq!(
            inst.resolved_conninfo(),
            r"host='/run/pg sockets' port=5432 user='o\'neil' dbname='my db'"
        );
        // A URL is converted to key=value.
        let inst = PostgresInstance {
            conninfo: Some("postgres://u@h:5/d".into()),
            ..PostgresInstance::default()
        };
        assert_eq!(inst.resolved_conninfo(), "user=u host=h port=5 dbname=d");
    }

    #[test]
    fn the_effective_uid_is_looked_up_in_the_user_database() {
        // What `id` (getpwuid through NSS, as libpq) says of this process's user.
        let id = |arg: &str| {
            let out = std::process::Command::new("id").arg(arg).output().unwrap();
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        };
        let entry = passwd_entry_of_euid();
        assert_eq!(entry.as_ref().map(|e| e.name.clone()), id("-un"));
        if let Some(e) = entry {
            let getent = std::process::Command::new("getent")
                .args(["passwd", &id("-u").unwrap()])
                .output()
                .unwrap();
            let line = String::from_utf8_lossy(&getent.stdout).into_owned();
            assert_eq!(
                line.trim().split(':').nth(5).map(PathBuf::from),
                Some(e.home),
                "{line}"
            );
        }
    }

    #[test]
    fn user_is_the_passwd_name_else_the_user_variable() {
        let env = env_of(&[("USER", "from-env")]);
        let entry = PasswdEntry {
            name: "from-passwd".into(),
            home: PathBuf::from("/home/x"),
        };
        assert_eq!(
            user_name_from(Some(entry), &env).as_deref(),
            Some("from-passwd")
        );
        assert_eq!(user_name_from(None, &env).as_deref(), Some("from-env"));
        assert_eq!(user_name_from(None, &env_of(&[("USER", "")])), None);
    }
}
