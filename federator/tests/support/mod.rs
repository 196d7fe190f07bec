//! Support for the federator's tests, one module for every test binary (each takes
//! it with `mod support;`):
//!
//! - here: the binary's PostgreSQL cluster, shared by its tests, with a fresh
//!   database per test ([`central`]), or a cluster of its own for a test that stops
//!   or reconfigures the server ([`central_alone`]); the helpers of `pga-lab`;
//! - [`sink`]: batches built from real encoded blocks, and a sink on a database;
//! - [`pull`]: agents (the real ring store and endpoint of pga-agent), the
//!   federator as a process, and comparing the central database with an agent;
//! - [`alerting`]: feeding samples, evaluating rules, receiving notifications;
//! - [`api`]: the HTTP API on a fresh database.
#![allow(dead_code, unused_imports, clippy::result_large_err)]

pub mod alerting;
pub mod api;
pub mod pull;
pub mod sink;

use std::ffi::OsStr;
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use pga_lab::{Cluster, LabError};
pub use pga_lab::{now_ms, wait_until};

/// `s` percent-encoded for a URL's path or query: every byte but RFC 3986's
/// unreserved characters (letters, digits, `-`, `_`, `.`, `~`) as `%XX`.
pub fn url_encode(s: &str) -> String {
    const RESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(s, RESERVED).to_string()
}

/// A port of 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    pga_lab::free_port().expect("a free port")
}

/// The binary's cluster, started on first use (its watchdog stops and removes it
/// when the test process ends). The run-time roles are cluster-wide: they are made
/// once here, so that the migrations of concurrent tests do not race to create them.
pub fn cluster() -> &'static Cluster {
    static PG: OnceLock<Cluster> = OnceLock::new();
    PG.get_or_init(|| {
        let pg = Cluster::builder()
            .start()
            .expect("start a throwaway cluster");
        pg.psql(
            "postgres",
            "CREATE ROLE pga_writer NOLOGIN; CREATE ROLE pga_reader NOLOGIN",
        )
        .expect("create the roles");
        pg
    })
}

/// A database name not used before in this process.
pub fn fresh_name(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// A fresh, empty database on the shared cluster.
pub fn fresh_database(prefix: &str) -> String {
    let name = fresh_name(prefix);
    cluster().create_database(&name).expect("create database");
    name
}

enum Server {
    Shared(&'static Cluster),
    Alone(Box<Cluster>),
}

/// A test's central database: its own database on the binary's cluster, or on a
/// cluster of its own.
pub struct Central {
    server: Server,
    /// The database's name.
    pub db: String,
}

/// A fresh central database on the binary's shared cluster.
pub fn central() -> Central {
    Central {
        server: Server::Shared(cluster()),
        db: fresh_database("central"),
    }
}

/// A central database on a cluster of its own, for a test that stops, restarts or
/// reconfigures the server, or makes cluster-wide roles.
pub fn central_alone() -> Central {
    central_on(
        Cluster::builder()
            .start()
            .expect("start a throwaway cluster"),
    )
}

/// A central database `central` on `pg`, a cluster built for the test.
pub fn central_on(pg: Cluster) -> Central {
    pg.create_database("central").expect("create database");
    Central {
        server: Server::Alone(Box::new(pg)),
        db: "central".to_owned(),
    }
}

impl Central {
    /// The server.
    pub fn cluster(&self) -> &Cluster {
        match &self.server {
            Server::Shared(pg) => pg,
            Server::Alone(pg) => pg,
        }
    }

    /// The server, to stop or restart: only a [`central_alone`] one.
    pub fn cluster_mut(&mut self) -> &mut Cluster {
        match &mut self.server {
            Server::Shared(_) => panic!("the shared cluster is not this test's to stop"),
            Server::Alone(pg) => pg,
        }
    }

    /// The database's URL.
    pub fn url(&self) -> String {
        self.cluster().url(&self.db)
    }

    /// `psql` on the database.
    pub fn psql(&self, query: &str) -> Result<String, LabError> {
        self.cluster().psql(&self.db, query)
    }

    pub fn port(&self) -> u16 {
        self.cluster().port()
    }

    pub fn stop(&mut self) -> Result<(), LabError> {
        self.cluster_mut().stop()
    }

    pub fn start_again(&mut self) -> Result<(), LabError> {
        self.cluster_mut().start_again()
    }
}

/// `psql` on the test's database; panics on an error.
pub fn sql(pg: &Central, query: &str) -> String {
    pg.psql(query).expect("psql")
}

/// What a `pga-federator` command did.
pub struct Cli {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `pga-federator ARGS` to its end.
pub fn federator_cli(args: &[&dyn AsRef<OsStr>]) -> Cli {
    let out = Command::new(env!("CARGO_BIN_EXE_pga-federator"))
        .args(args.iter().map(|a| a.as_ref()))
        .output()
        .expect("run pga-federator");
    Cli {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
