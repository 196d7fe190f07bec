//! Connections to one instance: how a session is configured (libpq-like settings,
//! password file, the agent's session settings), the one connection per database
//! shared by the fast, slow and sizes groups, and what a server error means for the
//! operator.
//!
//! Every session sets `statement_timeout`, `lock_timeout` and
//! `application_name = 'pga-agent'` in its start-up packet, so they hold from the
//! first query on. A query that outlives the pass's deadline is cancelled on the
//! server, never left running.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Config, NoTls, Row};

use super::PostgresError;
use crate::config::PostgresInstance;

/// One database's connection, `None` until opened or after it broke.
#[derive(Default)]
pub(crate) struct Slot {
    pub client: Option<Client>,
}

impl Slot {
    /// The open client, or `None` when it was never opened or the server closed it.
    pub fn live(&mut self) -> Option<&Client> {
        if self.client.as_ref().is_some_and(Client::is_closed) {
            self.client = None;
        }
        self.client.as_ref()
    }
}

pub(crate) type SharedSlot = Arc<tokio::sync::Mutex<Slot>>;

/// The connections of one instance: the main one (the configured database, for
/// instance-wide statistics) and one per other covered database, each shared by
/// all groups behind an async mutex.
#[derive(Default)]
pub(crate) struct Pool {
    main: SharedSlot,
    /// By database name; never holds the main database.
    others: Mutex<BTreeMap<String, SharedSlot>>,
}

impl Pool {
    pub fn main(&self) -> SharedSlot {
        self.main.clone()
    }

    /// The slot of database `datname`, created on first use.
    pub fn database(&self, datname: &str) -> SharedSlot {
        let mut map = self.others.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(datname.to_owned()).or_default().clone()
    }

    /// Closes the connections of databases not in `keep` (dropped or no longer
    /// covered).
    pub fn retain(&self, keep: &[String]) {
        let mut map = self.others.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|name, _| keep.iter().any(|k| k == name));
    }
}

/// The connection settings of `instance`, with the agent's session settings;
/// `dbname` overrides the configured database.
pub(crate) fn config(
    instance: &PostgresInstance,
    dbname_override: Option<&str>,
) -> Result<Config, PostgresError> {
    let params = instance
        .conninfo_params()
        .map_err(|error| PostgresError::Conninfo {
            instance: instance.name.clone(),
            error,
        })?;
    let mut cfg = Config::new();
    let mut passfile = None;
    let (mut host, mut port, mut user, mut dbname) = (None, None, None, None);
    for (k, v) in &params {
        match k.as_str() {
            "host" | "hostaddr" => host = Some(v.clone()),
            "port" => port = Some(v.clone()),
            "user" => user = Some(v.clone()),
            "dbname" => dbname = Some(v.clone()),
            "password" => {
                cfg.password(v.as_str());
            }
            "passfile" => passfile = Some(PathBuf::from(v)),
            "connect_timeout" => {
                if let Ok(secs) = v.parse::<u64>() {
                    cfg.connect_timeout(Duration::from_secs(secs));
                }
            }
            "sslmode" if v != "disable" && v != "prefer" && v != "allow" => {
                return Err(PostgresError::SslMode {
                    instance: instance.name.clone(),
                    mode: v.clone(),
                });
            }
            _ => {}
        }
    }
    if let Some(d) = dbname_override {
        dbname = Some(d.to_owned());
    }
    let host = host.unwrap_or_else(|| crate::config::default_socket_dir().to_owned());
    let port: u16 = match port.as_deref().map(str::parse) {
        None => 5432,
        Some(Ok(p)) => p,
        Some(Err(_)) => {
            return Err(PostgresError::Port {
                instance: instance.name.clone(),
                port: port.unwrap_or_default(),
            });
        }
    };
    cfg.host(&host).port(port);
    if let Some(u) = &user {
        cfg.user(u);
    }
    if let Some(d) = &dbname {
        cfg.dbname(d);
    }
    let from_file = instance
        .read_password()
        .map_err(|error| PostgresError::PasswordFile {
            instance: instance.name.clone(),
            error: error.into(),
        })?;
    let from_passfile = || {
        let text = std::fs::read_to_string(passfile.as_ref()?).ok()?;
        pgpass_lookup(
            &text,
            &host,
            port,
            dbname.as_deref().unwrap_or(""),
            user.as_deref().unwrap_or(""),
        )
    };
    if let Some(pw) = from_file {
        cfg.password(pw);
    } else if cfg.get_password().is_none()
        && let Some(pw) = from_passfile()
    {
        cfg.password(pw);
    }
    let timeout = instance.statement_timeout();
    cfg.application_name("pga-agent")
        .connect_timeout(timeout)
        .options(format!(
            "-c statement_timeout={} -c lock_timeout={}",
            timeout.as_millis(),
            instance.lock_timeout().as_millis()
        ));
    Ok(cfg)
}

/// Opens a session with `cfg`; the connection task runs on the agent's runtime.
pub(crate) async fn connect(instance: &str, cfg: &Config) -> Result<Client, PostgresError> {
    let (client, connection) = cfg.connect(NoTls).await.map_err(|e| {
        let whereto = cfg
            .get_hosts()
            .first()
            .map(|h| match h {
                tokio_postgres::config::Host::Tcp(h) => {
                    format!("{h}:{}", cfg.get_ports().first().unwrap_or(&5432))
                }
                tokio_postgres::config::Host::Unix(p) => {
                    format!("{}/.s.PGSQL.{}", p.display(), cfg.get_ports().first().unwrap_or(&5432))
                }
            })
            .unwrap_or_default();
        let db = cfg.get_dbname().unwrap_or("(default)");
        let code = e.as_db_error().map(|d| d.code().code().to_owned());
        let auth;
        let fix = match code.as_deref() {
            Some("28P01" | "28000") => {
                auth = auth_fix(e.as_db_error().map_or("", |d| d.message()));
                auth.as_str()
            }
            Some("3D000") => "the database does not exist (dropped?)",
            Some("42501") => {
                "the role may not connect to this database: GRANT CONNECT ON DATABASE … TO the monitoring role, or exclude it with databases_exclude"
            }
            Some("53300") => "the server has no connection slot left; raise max_connections or free connections",
            Some(_) => "see the server's log",
            None => {
                "is the server running there? Point the agent at it with [[postgres]] conninfo in the configuration, or PGHOST and PGPORT"
            }
        };
        PostgresError::Connect {
            instance: instance.to_owned(),
            target: whereto,
            database: db.to_owned(),
            cause: error_text(&e),
            fix: fix.to_owned(),
            gone: code.as_deref() == Some("3D000"),
        }
    })?;
    let name = instance.to_owned();
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(instance = %name, error = %e, "connection closed");
        }
    });
    Ok(client)
}

/// What to do when the server refused the agent's role: `message` is the server's.
fn auth_fix(message: &str) -> String {
    let quoted = |after: &str| -> Option<String> {
        let rest = &message[message.find(after)? + after.len()..];
        Some(rest.split('"').next()?.to_owned())
    };
    let os_user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "the agent's user".to_owned());
    if let Some(role) = quoted("role \"").filter(|_| message.contains("does not exist")) {
        format!(
            "the server has no role \"{role}\" (without a user setting, the agent connects as \
             the role named like its operating-system user). Either create it as the monitoring \
             role, once: sudo -u postgres psql -c 'CREATE ROLE \"{role}\" LOGIN; GRANT pg_monitor \
             TO \"{role}\";' (local peer authentication then lets the operating-system user \
             {role} in as it); or run the agent as the postgres user: sudo -u postgres pga-agent \
             run; or set user in [[postgres]] (or PGUSER) to an existing role"
        )
    } else if let Some(role) = quoted("Peer authentication failed for user \"") {
        format!(
            "peer authentication lets an operating-system user in only as the role of the same \
             name, and the agent runs as {os_user}, not {role}. Either run the agent as that user: \
             sudo -u {role} pga-agent run; or connect as a role named like the agent's user, made \
             once: sudo -u postgres psql -c 'CREATE ROLE \"{os_user}\" LOGIN; GRANT pg_monitor TO \
             \"{os_user}\";' and user = \"{os_user}\"; or give {role} a password in a 0600 file \
             (password_file) and connect over TCP (host = \"127.0.0.1\")"
        )
    } else if message.contains("no pg_hba.conf entry") {
        "pg_hba.conf has no line that lets this role in from here: add one (e.g. `local all \
         pga_monitor peer`, or `host all pga_monitor 127.0.0.1/32 scram-sha-256`), then SELECT \
         pg_reload_conf()"
            .to_owned()
    } else {
        "check the role and its password (password_file, or the passfile's line for this host, \
         port, database and user) and pg_hba.conf"
            .to_owned()
    }
}

/// Why a query gave no rows.
#[derive(Debug)]
pub enum QueryError {
    Pg(tokio_postgres::Error),
    /// The pass's deadline came first; the query was cancelled on the server.
    Deadline,
    /// The result did not match the catalogue (a defect of the agent).
    Catalogue(String),
}

impl QueryError {
    pub fn code(&self) -> Option<&str> {
        match self {
            QueryError::Pg(e) => e.as_db_error().map(|d| d.code().code()),
            QueryError::Deadline | QueryError::Catalogue(_) => None,
        }
    }

    /// The connection itself broke (server gone, session terminated).
    pub fn broke_connection(&self) -> bool {
        match self {
            QueryError::Pg(e) => {
                e.is_closed()
                    || e.as_db_error().is_none()
                    || self.code().is_some_and(|c| c.starts_with("57P"))
            }
            QueryError::Deadline | QueryError::Catalogue(_) => false,
        }
    }
}

impl std::fmt::Display for QueryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QueryError::Pg(e) => f.write_str(&error_text(e)),
            QueryError::Catalogue(m) => write!(f, "{m} (a defect of this agent build; please report it)"),
            QueryError::Deadline => f.write_str("no answer before the pass's deadline (statement_timeout_ms + 1 s); the query was cancelled"),
        }
    }
}

impl std::error::Error for QueryError {}

/// Runs `sql` unless `deadline` comes first; then the query is cancelled on the
/// server so that it does not keep running (or waiting) there.
pub(crate) async fn query_until(
    client: &Client,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
    deadline: Instant,
) -> Result<Vec<Row>, QueryError> {
    match tokio::time::timeout_at(deadline, client.query(sql, params)).await {
        Ok(r) => r.map_err(QueryError::Pg),
        Err(_) => {
            let token = client.cancel_token();
            tokio::spawn(async move {
                if let Err(e) = token.cancel_query(NoTls).await {
                    tracing::debug!(error = %e, "cancelling a late monitoring query failed");
                }
            });
            Err(QueryError::Deadline)
        }
    }
}

/// The server's message with its detail and hint, or the client error.
pub(crate) fn error_text(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut s = format!("{} ({})", db.message(), db.code().code());
            if let Some(h) = db.hint() {
                s.push_str("; hint: ");
                s.push_str(h);
            }
            s
        }
        None => {
            let mut s = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(inner) = source {
                s.push_str(": ");
                s.push_str(&inner.to_string());
                source = inner.source();
            }
            s
        }
    }
}

/// The password of a `.pgpass` file for this connection: the first line whose
/// `host:port:database:user` fields match, `*` matching anything, `\:` and `\\`
/// escaping. A unix-socket host matches `localhost`, as libpq does.
pub fn pgpass_lookup(
    text: &str,
    host: &str,
    port: u16,
    dbname: &str,
    user: &str,
) -> Option<String> {
    let host = if host.starts_with('/') {
        "localhost"
    } else {
        host
    };
    let port = port.to_string();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let mut fields = Vec::new();
        let mut cur = String::new();
        let mut chars = line.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => cur.extend(chars.next()),
                ':' if fields.len() < 4 => fields.push(std::mem::take(&mut cur)),
                c => cur.push(c),
            }
        }
        fields.push(cur);
        if fields.len() != 5 {
            continue;
        }
        let ok = |f: &str, v: &str| f == "*" || f == v;
        if ok(&fields[0], host)
            && ok(&fields[1], &port)
            && ok(&fields[2], dbname)
            && ok(&fields[3], user)
        {
            return fields.pop();
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::{auth_fix, pgpass_lookup};

    #[test]
    fn a_refused_role_gets_the_commands_that_fix_it() {
        let fix = auth_fix("role \"root\" does not exist");
        assert!(
            fix.contains("CREATE ROLE \"root\" LOGIN; GRANT pg_monitor TO \"root\""),
            "{fix}"
        );
        assert!(fix.contains("sudo -u postgres pga-agent run"), "{fix}");
        let fix = auth_fix("Peer authentication failed for user \"postgres\"");
        assert!(fix.contains("sudo -u postgres pga-agent run"), "{fix}");
        assert!(fix.contains("GRANT pg_monitor"), "{fix}");
        let fix = auth_fix("password authentication failed for user \"x\"");
        assert!(fix.contains("password_file"), "{fix}");
    }

    #[test]
    fn pgpass_matches_like_libpq() {
        let text = "# comment\ndb1:5432:app:alice:s3cret\n*:*:*:pga\\:monitor:p\\:w\nlocalhost:5433:*:*:local\n";
        assert_eq!(
            pgpass_lookup(text, "db1", 5432, "app", "alice").as_deref(),
            Some("s3cret")
        );
        assert_eq!(
            pgpass_lookup(text, "x", 1, "y", "pga:monitor").as_deref(),
            Some("p:w")
        );
        assert_eq!(
            pgpass_lookup(text, "/var/run/postgresql", 5433, "z", "bob").as_deref(),
            Some("local")
        );
        assert_eq!(pgpass_lookup(text, "db1", 5432, "app", "mallory"), None);
    }
}
