//! PostgreSQL reachability: `pg_up`, start time, version and role of each instance,
//! and where its files live (for the system collector's filesystem metrics).
//!
//! One connection per instance, opened on the first pass and reused; every session
//! sets `statement_timeout`, `lock_timeout` and `application_name = 'pga-agent'`. A
//! server that is down gives `pg_up 0` and a reconnect on the next pass. The full
//! statistics families build on this connection.

use std::path::PathBuf;
use std::time::Duration;

use tokio_postgres::{Client, Config, NoTls};

use super::server_facts::{SERVER_FACTS_QUERY, ServerFacts, SharedServerFacts};
use super::system::{ROLE_DATA_DIRECTORY, ROLE_WAL_DIRECTORY, SharedPaths, tablespace_role};
use super::{CollectError, Emitter, Group};
use crate::config::PostgresInstance;

/// Reachability of one PostgreSQL instance.
pub struct PostgresProbe {
    name: &'static str,
    instance: PostgresInstance,
    paths: SharedPaths,
    facts: SharedServerFacts,
    client: Option<Client>,
    /// Said once, then quiet: settings this role may not read.
    warned_settings: bool,
}

impl std::fmt::Debug for PostgresProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresProbe")
            .field("instance", &self.instance.name)
            .field("connected", &self.client.is_some())
            .finish_non_exhaustive()
    }
}

impl PostgresProbe {
    /// `paths` is the system collector's list of watched filesystems.
    pub fn new(instance: PostgresInstance, paths: SharedPaths) -> Self {
        // Collector names live as long as the agent; there is one per instance.
        let name: &'static str = Box::leak(format!("postgres:{}", instance.name).into_boxed_str());
        PostgresProbe {
            name,
            instance,
            paths,
            facts: SharedServerFacts::default(),
            client: None,
            warned_settings: false,
        }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Where this instance writes its log and how, refreshed on every (re)connect;
    /// `None` until the first connection.
    pub fn server_facts(&self) -> SharedServerFacts {
        self.facts.clone()
    }

    pub fn group(&self) -> Group {
        Group::Fast
    }

    /// The connection settings, with the agent's session settings added.
    fn config(&self) -> Result<Config, CollectError> {
        let params = self
            .instance
            .conninfo_params()
            .map_err(|e| CollectError::Other(format!("instance {}: {e}", self.instance.name)))?;
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
                    return Err(CollectError::Other(format!(
                        "instance {}: sslmode={v} is not supported by this build; connect over the unix socket or with sslmode=disable on a trusted network",
                        self.instance.name
                    )));
                }
                _ => {}
            }
        }
        let host = host.unwrap_or_else(|| crate::config::default_socket_dir().to_owned());
        let port: u16 = match port.as_deref().map(str::parse) {
            None => 5432,
            Some(Ok(p)) => p,
            Some(Err(_)) => {
                return Err(CollectError::Other(format!(
                    "instance {}: port {:?} is not a number",
                    self.instance.name,
                    port.unwrap_or_default()
                )));
            }
        };
        cfg.host(&host).port(port);
        if let Some(u) = &user {
            cfg.user(u);
        }
        if let Some(d) = &dbname {
            cfg.dbname(d);
        }
        let from_file = self
            .instance
            .read_password()
            .map_err(|e| CollectError::Other(format!("instance {}: {e}", self.instance.name)))?;
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
        let timeout = self.instance.statement_timeout();
        cfg.application_name("pga-agent")
            .connect_timeout(timeout)
            .options(format!(
                "-c statement_timeout={} -c lock_timeout={}",
                timeout.as_millis(),
                self.instance.lock_timeout().as_millis()
            ));
        Ok(cfg)
    }

    async fn connect(&mut self) -> Result<(), CollectError> {
        let cfg = self.config()?;
        let (client, connection) = cfg.connect(NoTls).await.map_err(|e| {
            let whereto = cfg
                .get_hosts()
                .first()
                .map(|h| match h {
                    tokio_postgres::config::Host::Tcp(h) => format!("{h}:{}", cfg.get_ports().first().unwrap_or(&5432)),
                    tokio_postgres::config::Host::Unix(p) => {
                        format!("{}/.s.PGSQL.{}", p.display(), cfg.get_ports().first().unwrap_or(&5432))
                    }
                })
                .unwrap_or_default();
            CollectError::Other(format!(
                "instance {}: cannot connect to {whereto}: {}; is the server running there? \
                 Point the agent at it with [[postgres]] conninfo in the configuration, or PGHOST and PGPORT",
                self.instance.name,
                error_text(&e)
            ))
        })?;
        let name = self.instance.name.clone();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(instance = %name, error = %e, "connection closed");
            }
        });
        self.client = Some(client);
        self.learn_paths().await;
        Ok(())
    }

    /// Tells the system collector where the data directory, WAL and tablespaces are.
    async fn learn_paths(&mut self) {
        let Some(client) = &self.client else { return };
        let settings = client.query_one(SERVER_FACTS_QUERY, &[]).await;
        let mut found = Vec::new();
        match settings {
            Ok(row) => {
                let text = |i: usize| row.get::<_, Option<String>>(i).unwrap_or_default();
                let facts = ServerFacts {
                    server_version_num: u32::try_from(row.get::<_, i32>(0)).unwrap_or(0),
                    data_directory: text(1),
                    log_destination: text(2),
                    logging_collector: text(3) == "on",
                    log_directory: text(4),
                    log_filename: text(5),
                    log_line_prefix: text(6),
                    log_timezone: text(7),
                };
                if !facts.data_directory.is_empty() {
                    let data = PathBuf::from(&facts.data_directory);
                    found.push((ROLE_DATA_DIRECTORY.to_owned(), data.clone()));
                    found.push((ROLE_WAL_DIRECTORY.to_owned(), data.join("pg_wal")));
                }
                if let Ok(mut shared) = self.facts.write() {
                    *shared = Some(facts);
                }
            }
            Err(e) if !self.warned_settings => {
                self.warned_settings = true;
                tracing::warn!(
                    instance = %self.instance.name,
                    error = %error_text(&e),
                    "cannot read data_directory and the log settings; grant pg_monitor (or pg_read_all_settings) to the monitoring role for its filesystem metrics and its log"
                );
            }
            Err(_) => {}
        }
        if let Ok(rows) = client
            .query(
                "SELECT spcname::text, pg_tablespace_location(oid) FROM pg_tablespace WHERE pg_tablespace_location(oid) <> ''",
                &[],
            )
            .await
        {
            for row in rows {
                let name: String = row.get(0);
                let path: String = row.get(1);
                found.push((tablespace_role(&name), PathBuf::from(path)));
            }
        }
        if found.is_empty() {
            return;
        }
        if let Ok(mut paths) = self.paths.write() {
            paths.retain(|(role, _)| {
                role != ROLE_DATA_DIRECTORY
                    && role != ROLE_WAL_DIRECTORY
                    && !role.starts_with("tablespace:")
            });
            paths.extend(found);
        }
    }

    async fn pass(&mut self, out: &mut Emitter) -> Result<(), CollectError> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            self.client = None;
            self.connect().await?;
        }
        let Some(client) = &self.client else {
            return Err(CollectError::Other("not connected".into()));
        };
        let row = client
            .query_one(
                "SELECT current_setting('server_version_num')::float8, \
                 extract(epoch FROM pg_postmaster_start_time())::float8, \
                 pg_is_in_recovery()",
                &[],
            )
            .await
            .map_err(|e| {
                CollectError::Other(format!(
                    "instance {}: {}",
                    self.instance.name,
                    error_text(&e)
                ))
            })?;
        let labels = [("instance", self.instance.name.as_str())];
        out.gauge(
            "pg_up",
            "Whether the server answered the agent (1) or not (0).",
            "",
            &labels,
            1.0,
        );
        out.gauge(
            "pg_server_version_num",
            "The server's version as server_version_num, e.g. 150004.",
            "",
            &labels,
            row.get(0),
        );
        out.gauge(
            "pg_postmaster_start_time_seconds",
            "When the server started, in seconds since the epoch.",
            "seconds",
            &labels,
            row.get(1),
        );
        let recovery: bool = row.get(2);
        out.gauge(
            "pg_in_recovery",
            "Whether the server is a standby in recovery (1) or a primary (0).",
            "",
            &labels,
            f64::from(u8::from(recovery)),
        );
        Ok(())
    }

    /// One pass; runs on a blocking thread of the agent's runtime.
    pub fn collect(&mut self, out: &mut Emitter) -> Vec<CollectError> {
        let handle = tokio::runtime::Handle::current();
        let deadline = self.instance.statement_timeout() + Duration::from_secs(1);
        let result = handle.block_on(async {
            match tokio::time::timeout(deadline, self.pass(out)).await {
                Ok(r) => r,
                Err(_) => Err(CollectError::Other(format!(
                    "instance {}: no answer within {} ms",
                    self.instance.name,
                    deadline.as_millis()
                ))),
            }
        });
        match result {
            Ok(()) => Vec::new(),
            Err(e) => {
                self.client = None;
                out.gauge(
                    "pg_up",
                    "Whether the server answered the agent (1) or not (0).",
                    "",
                    &[("instance", self.instance.name.as_str())],
                    0.0,
                );
                vec![e]
            }
        }
    }
}

/// The server's message with its detail and hint, or the client error.
fn error_text(e: &tokio_postgres::Error) -> String {
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
    use super::pgpass_lookup;

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
