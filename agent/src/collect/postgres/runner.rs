//! One collection pass of one group (fast, slow or sizes) on one instance.
//!
//! A pass has one deadline, `statement_timeout_ms + 500 ms` from its start. Families
//! of the instance run one after the other on the main connection; per-database
//! families run on each database's connection, the databases concurrently. Every
//! query runs under the deadline and is cancelled on the server when it passes, so a
//! pass never outlives it by more than the time to notice: a lock held by user DDL
//! costs at most `lock_timeout_ms` to the one family that met it, never the pass.
//!
//! The fast pass also answers `pg_up`: it (re)connects the main connection, and when
//! that fails, or the server stops answering, it emits `pg_up 0` and drops the
//! connection so that the next pass connects afresh.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_postgres::Client;

use super::PostgresError;
use super::catalog::{FAMILIES, Family, Scope};
use super::conn::{self, Pool, QueryError, query_until};
use super::family::{self, Ctx, FamilyState, Outcome};
use crate::collect::INSTANCE_LABEL;
use crate::collect::server_facts::{
    INSTANCE_REPORT_QUERY, InstanceReport, SERVER_FACTS_QUERY, ServerFacts, SharedInstanceReport,
    SharedServerFacts,
};
use crate::collect::system::{
    ROLE_DATA_DIRECTORY, ROLE_WAL_DIRECTORY, SharedPaths, tablespace_role,
};
use crate::collect::{CollectError, Emitter, Group};
use crate::config::PostgresInstance;

/// What the agent knows of the server, refreshed on every connect and pass.
#[derive(Debug, Default, Clone)]
pub(crate) struct ServerState {
    pub version: u32,
    /// `current_database()` of the main connection.
    pub main_datname: String,
    /// Covered databases that accept connections, from the last refresh.
    pub databases: Vec<String>,
}

/// What the groups of one instance share: the connections and the server's state.
pub(crate) struct SharedInstance {
    pub instance: PostgresInstance,
    pub paths: SharedPaths,
    pub facts: SharedServerFacts,
    /// What `/v1/status` reports of the instance.
    pub report: SharedInstanceReport,
    pub pool: Pool,
    pub server: Mutex<ServerState>,
    warned_settings: std::sync::atomic::AtomicBool,
}

impl SharedInstance {
    pub fn new(instance: PostgresInstance, paths: SharedPaths) -> Self {
        let target = conn::config(&instance, None).ok();
        let report = InstanceReport {
            name: instance.name.clone(),
            host: target
                .as_ref()
                .and_then(|c| c.get_hosts().first())
                .map(|h| match h {
                    tokio_postgres::config::Host::Tcp(name) => name.clone(),
                    tokio_postgres::config::Host::Unix(dir) => dir.display().to_string(),
                }),
            port: target.as_ref().and_then(|c| c.get_ports().first().copied()),
            ..InstanceReport::default()
        };
        SharedInstance {
            instance,
            paths,
            facts: SharedServerFacts::default(),
            report: std::sync::Arc::new(std::sync::RwLock::new(report)),
            pool: Pool::default(),
            server: Mutex::new(ServerState::default()),
            warned_settings: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn state(&self) -> ServerState {
        self.server.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Opens the main connection and learns the server's facts on it.
    async fn open_main(&self) -> Result<Client, PostgresError> {
        let cfg = conn::config(&self.instance, None)?;
        let client = conn::connect(&self.instance.name, &cfg).await?;
        self.learn(&client).await;
        Ok(client)
    }

    /// Refreshes what `/v1/status` reports of the instance; a failure leaves it as
    /// it was (the families say what fails).
    async fn refresh_report(&self, client: &Client, deadline: Instant) {
        let Ok(rows) = query_until(client, INSTANCE_REPORT_QUERY, &[], deadline).await else {
            return;
        };
        let Some(row) = rows.first() else {
            return;
        };
        if let Ok(mut r) = self.report.write() {
            r.server_version = row.try_get(0).ok();
            r.server_version_num = row
                .try_get::<_, i32>(1)
                .ok()
                .and_then(|v| u32::try_from(v).ok());
            r.system_identifier = row.try_get(2).ok();
            r.in_recovery = row.try_get(3).ok();
            r.databases = row.try_get(4).ok();
            r.updated_ms = Some(crate::now_ms());
        }
    }

    /// Learns the version, the database name, the log settings (for the log
    /// collector), where the files are (for the system collector) and what
    /// `/v1/status` reports.
    async fn learn(&self, client: &Client) {
        let deadline = Instant::now() + self.instance.statement_timeout();
        self.refresh_report(client, deadline).await;
        if let Ok(row) = client
            .query_one(
                "SELECT current_setting('server_version_num')::int4, current_database()::text",
                &[],
            )
            .await
            && let Ok(mut s) = self.server.lock()
        {
            s.version = u32::try_from(row.get::<_, i32>(0)).unwrap_or(0);
            s.main_datname = row.get(1);
        }
        let mut found = Vec::new();
        match client.query_one(SERVER_FACTS_QUERY, &[]).await {
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
            Err(e) => {
                if !self
                    .warned_settings
                    .swap(true, std::sync::atomic::Ordering::Relaxed)
                {
                    tracing::warn!(
                        instance = %self.instance.name,
                        error = %conn::error_text(&e),
                        "cannot read data_directory and the log settings; grant pg_monitor (or pg_read_all_settings) to the monitoring role for its filesystem metrics and its log"
                    );
                }
            }
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
}

/// One database's families and connection trouble, owned by one group.
#[derive(Debug, Default)]
struct DbState {
    connect_error: Option<PostgresError>,
    families: HashMap<&'static str, FamilyState>,
}

/// The families of one group on one instance, and their standing.
pub(crate) struct GroupRunner {
    pub group: Group,
    instance_families: Vec<&'static Family>,
    database_families: Vec<&'static Family>,
    instance_states: HashMap<&'static str, FamilyState>,
    databases: BTreeMap<String, DbState>,
    /// Whether this group says why a database cannot be entered: the slow group
    /// does (the sizes group too when the slow one has no per-database family), so
    /// that it is said once per instance.
    reports_connect_errors: bool,
}

impl GroupRunner {
    /// The enabled families of `group` for `instance`.
    pub fn new(group: Group, instance: &PostgresInstance) -> Self {
        let enabled = |f: &&&Family| {
            f.group == group
                && !instance.families_exclude.iter().any(|x| x == f.name)
                && !(f.name == "statements" && instance.statements_top_n == 0)
        };
        let slow_per_database = FAMILIES.iter().any(|f| {
            f.group == Group::Slow
                && f.scope == Scope::EachDatabase
                && !instance.families_exclude.iter().any(|x| x == f.name)
        });
        GroupRunner {
            group,
            reports_connect_errors: group == Group::Slow || !slow_per_database,
            instance_families: FAMILIES
                .iter()
                .filter(enabled)
                .filter(|f| f.scope == Scope::Instance)
                .copied()
                .collect(),
            database_families: FAMILIES
                .iter()
                .filter(enabled)
                .filter(|f| f.scope == Scope::EachDatabase)
                .copied()
                .collect(),
            instance_states: HashMap::new(),
            databases: BTreeMap::new(),
        }
    }

    /// One pass; the errors are those of every family currently failing.
    pub async fn pass(
        &mut self,
        shared: &Arc<SharedInstance>,
        out: &mut Emitter,
    ) -> Vec<CollectError> {
        let inst = &shared.instance;
        let deadline = Instant::now() + inst.statement_timeout() + Duration::from_millis(500);
        let main = shared.pool.main();
        let Ok(mut slot) = tokio::time::timeout_at(deadline, main.lock()).await else {
            return vec![
                PostgresError::Busy {
                    instance: inst.name.clone(),
                }
                .into(),
            ];
        };
        if slot.live().is_none() {
            match tokio::time::timeout_at(deadline, shared.open_main()).await {
                Ok(Ok(client)) => slot.client = Some(client),
                Ok(Err(e)) => {
                    self.down(shared, out);
                    if self.group != Group::Fast {
                        // The fast collector says why, with the fix; once is enough.
                        return vec![
                            PostgresError::Unreachable {
                                instance: inst.name.clone(),
                                group: self.group,
                            }
                            .into(),
                        ];
                    }
                    return vec![e.into()];
                }
                Err(_) => {
                    self.down(shared, out);
                    return vec![
                        PostgresError::NoConnection {
                            instance: inst.name.clone(),
                            waited_ms: inst.statement_timeout_ms + 500,
                        }
                        .into(),
                    ];
                }
            }
        }
        let Some(client) = slot.client.as_ref() else {
            return Vec::new();
        };
        if self.group == Group::Fast
            && let Err(e) = up(shared, client, deadline, out).await
        {
            slot.client = None;
            self.down(shared, out);
            return vec![
                PostgresError::NotAnswering {
                    instance: inst.name.clone(),
                    error: Arc::new(e),
                }
                .into(),
            ];
        }
        if self.group == Group::Slow {
            shared.refresh_report(client, deadline).await;
        }
        let state = shared.state();
        let covers = |d: &str| inst.covers_database(d);
        let ctx = Ctx {
            instance: &inst.name,
            datname: None,
            covers: &covers,
            relations_top_n: inst.relations_top_n,
            statements_top_n: inst.statements_top_n,
        };
        for fam in &self.instance_families {
            let st = self.instance_states.entry(fam.name).or_default();
            match family::run(fam, st, client, state.version, &ctx, deadline, out).await {
                Outcome::Done => {}
                Outcome::Broken => {
                    slot.client = None;
                    break;
                }
                Outcome::Late => break,
            }
        }
        let mut errors: Vec<CollectError> = self
            .instance_families
            .iter()
            .filter_map(|f| self.instance_states.get(f.name)?.error.clone())
            .map(CollectError::from)
            .collect();
        if self.database_families.is_empty() {
            return errors;
        }
        if let Some(client) = slot.client.as_ref() {
            match refresh_databases(shared, client, deadline).await {
                Ok(list) => {
                    self.databases.retain(|d, _| list.contains(d));
                    for d in &list {
                        self.databases.entry(d.clone()).or_default();
                    }
                }
                Err(e) => errors.push(
                    PostgresError::ListDatabases {
                        instance: inst.name.clone(),
                        error: Arc::new(e),
                    }
                    .into(),
                ),
            }
        }
        drop(slot);
        let mut tasks = JoinSet::new();
        for (datname, db) in std::mem::take(&mut self.databases) {
            let shared = shared.clone();
            let families = self.database_families.clone();
            let version = state.version;
            let main = datname == state.main_datname;
            let reports = self.reports_connect_errors;
            tasks.spawn(async move {
                let mut db = db;
                let mut part = Emitter::new();
                let gone = database_pass(
                    &shared, &datname, main, reports, &families, &mut db, version, deadline,
                    &mut part,
                )
                .await;
                (datname, db, part, gone)
            });
        }
        while let Some(joined) = tasks.join_next().await {
            let Ok((datname, db, mut part, gone)) = joined else {
                continue;
            };
            out.append(&mut part);
            if gone {
                tracing::info!(instance = %inst.name, database = %datname, "database dropped; no longer collected");
                continue;
            }
            self.databases.insert(datname, db);
        }
        for db in self.databases.values() {
            errors.extend(db.connect_error.clone().map(CollectError::from));
            for f in &self.database_families {
                if let Some(e) = db.families.get(f.name).and_then(|s| s.error.clone()) {
                    errors.push(e.into());
                }
            }
        }
        errors
    }

    /// The server is not answering: `pg_up 0` (from the fast group).
    fn down(&self, shared: &SharedInstance, out: &mut Emitter) {
        if self.group == Group::Fast {
            out.gauge(
                "pg_up",
                UP_HELP,
                "",
                &[(INSTANCE_LABEL, shared.instance.name.as_str())],
                0.0,
            );
        }
    }
}

pub(crate) const UP_HELP: &str = "Whether the server answered the agent (1) or not (0).";

/// `pg_up 1`, version, start time, uptime and role.
async fn up(
    shared: &SharedInstance,
    client: &Client,
    deadline: Instant,
    out: &mut Emitter,
) -> Result<(), QueryError> {
    let rows = query_until(
        client,
        "SELECT current_setting('server_version_num')::float8,
                extract(epoch FROM pg_postmaster_start_time())::float8,
                extract(epoch FROM now() - pg_postmaster_start_time())::float8,
                pg_is_in_recovery()",
        &[],
        deadline,
    )
    .await?;
    let Some(row) = rows.first() else {
        return Err(QueryError::Catalogue(
            "no row from the reachability query".into(),
        ));
    };
    let labels = [(INSTANCE_LABEL, shared.instance.name.as_str())];
    let version: f64 = row.try_get(0).map_err(QueryError::Pg)?;
    out.gauge("pg_up", UP_HELP, "", &labels, 1.0);
    out.gauge(
        "pg_server_version_num",
        "The server's version as server_version_num, e.g. 150004.",
        "",
        &labels,
        version,
    );
    out.gauge(
        "pg_postmaster_start_time_seconds",
        "When the server started, in seconds since the epoch.",
        "seconds",
        &labels,
        row.try_get(1).map_err(QueryError::Pg)?,
    );
    out.gauge(
        "pg_uptime_seconds",
        "Time since the server started.",
        "seconds",
        &labels,
        row.try_get(2).map_err(QueryError::Pg)?,
    );
    let recovery: bool = row.try_get(3).map_err(QueryError::Pg)?;
    out.gauge(
        "pg_in_recovery",
        "Whether the server is a standby in recovery (1) or a primary (0).",
        "",
        &labels,
        f64::from(u8::from(recovery)),
    );
    if let Ok(mut s) = shared.server.lock() {
        s.version = version as u32;
    }
    Ok(())
}

/// The covered databases that accept connections; closes the connections of the
/// others.
async fn refresh_databases(
    shared: &SharedInstance,
    client: &Client,
    deadline: Instant,
) -> Result<Vec<String>, QueryError> {
    let rows = query_until(
        client,
        "SELECT datname::text FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY 1",
        &[],
        deadline,
    )
    .await?;
    let list: Vec<String> = rows
        .iter()
        .filter_map(|r| r.try_get::<_, String>(0).ok())
        .filter(|d| shared.instance.covers_database(d))
        .collect();
    shared.pool.retain(&list);
    if let Ok(mut s) = shared.server.lock() {
        s.databases.clone_from(&list);
    }
    Ok(list)
}

/// The per-database families of one database; `true` when the database is gone.
#[allow(clippy::too_many_arguments)]
async fn database_pass(
    shared: &SharedInstance,
    datname: &str,
    main: bool,
    reports_connect_errors: bool,
    families: &[&'static Family],
    db: &mut DbState,
    version: u32,
    deadline: Instant,
    out: &mut Emitter,
) -> bool {
    let inst = &shared.instance;
    let slot = if main {
        shared.pool.main()
    } else {
        shared.pool.database(datname)
    };
    let Ok(mut slot) = tokio::time::timeout_at(deadline, slot.lock()).await else {
        return false;
    };
    if slot.live().is_none() {
        let opened = match conn::config(inst, Some(datname)) {
            Ok(cfg) => {
                match tokio::time::timeout_at(deadline, conn::connect(&inst.name, &cfg)).await {
                    Ok(Ok(c)) => Ok(c),
                    Ok(Err(PostgresError::Connect { gone: true, .. })) => return true,
                    Ok(Err(e)) => Err(e),
                    Err(_) => Err(PostgresError::ConnectLate {
                        instance: inst.name.clone(),
                        database: datname.to_owned(),
                    }),
                }
            }
            Err(e) => Err(e),
        };
        match opened {
            Ok(c) => {
                slot.client = Some(c);
                db.connect_error = None;
            }
            Err(e) => {
                if reports_connect_errors {
                    db.connect_error = Some(e);
                }
                return false;
            }
        }
    }
    let Some(client) = slot.client.as_ref() else {
        return false;
    };
    let covers = |d: &str| inst.covers_database(d);
    let ctx = Ctx {
        instance: &inst.name,
        datname: Some(datname),
        covers: &covers,
        relations_top_n: inst.relations_top_n,
        statements_top_n: inst.statements_top_n,
    };
    for fam in families {
        let st = db.families.entry(fam.name).or_default();
        match family::run(fam, st, client, version, &ctx, deadline, out).await {
            Outcome::Done => {}
            Outcome::Broken => {
                slot.client = None;
                break;
            }
            Outcome::Late => break,
        }
    }
    false
}
