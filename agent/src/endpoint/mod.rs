//! The agent's HTTPS endpoint: what the federator and Prometheus pull from.
//!
//! - [`tls`]: the rustls server configuration (ring provider, TLS 1.3 only, a client
//!   certificate required and verified against the configured CA bundle and CRLs),
//!   the allow-list of client identities, and loading all of it from PEM files with
//!   errors that name the file, the problem and the fix.
//! - [`reload`]: the current configuration behind a lock, re-read when the files
//!   change (polled every 2 s) and on SIGHUP; a failed reload keeps the old one.
//! - [`server`]: the accept loop and each connection's limits: a connection cap,
//!   handshake and header timeouts, a request timeout, bounded request bodies, and
//!   a write-stall timeout for clients that stop reading. Response sizes are the
//!   API's to bound (`ApiState::max_response_bytes`).
//! - [`certs`]: development certificates (`pga-agent certs dev`).
//! - [`api`]: the routes (`/metrics`, `/v1/blocks`, `/v1/series`, `/v1/status`) as an
//!   [`axum::Router`]; the rest of this module only decides who may reach them and
//!   for how long.
//!
//! The endpoint runs on the agent's async runtime; collection passes run on
//! blocking threads and the store writer on its own thread, so no client, slow or
//! hostile, delays a collection.

pub mod admission;
pub mod api;
pub mod certs;
pub mod reload;
pub mod server;
pub mod tls;

use std::path::PathBuf;
use std::time::Duration;

use crate::config::{EndpointConfig, EndpointMode, Problem};

pub use server::{Endpoint, serve};

/// The files and identities of the TLS endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The agent's certificate chain (PEM).
    pub cert_file: PathBuf,
    /// Its private key (PEM).
    pub key_file: PathBuf,
    /// The CA bundle that signs clients' certificates (PEM).
    pub client_ca_file: PathBuf,
    /// Revocation lists (PEM or DER).
    pub crl_files: Vec<PathBuf>,
    /// Client identities let in; empty lets in any certificate the CA signed.
    pub allowed_clients: Vec<String>,
}

impl TlsFiles {
    /// Every file, with the configuration key that names it.
    pub fn all(&self) -> Vec<(String, &PathBuf)> {
        let mut v = vec![
            ("endpoint.cert_file".to_owned(), &self.cert_file),
            ("endpoint.key_file".to_owned(), &self.key_file),
            ("endpoint.client_ca_file".to_owned(), &self.client_ca_file),
        ];
        v.extend(
            self.crl_files
                .iter()
                .enumerate()
                .map(|(i, f)| (format!("endpoint.crl_files[{i}]"), f)),
        );
        v
    }
}

/// How connections are bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Authenticated connections served at once; one more gets 503.
    pub max_connections: usize,
    /// TLS handshakes in progress at once.
    pub max_handshakes: usize,
    /// TLS handshakes in progress at once from one source address.
    pub max_handshakes_per_address: usize,
    /// Bound on the TLS handshake.
    pub handshake_timeout: Duration,
    /// Bound on each request's headers, and on keep-alive idle.
    pub header_timeout: Duration,
    /// Bound on answering one request, and on a stalled response write.
    pub request_timeout: Duration,
    /// Largest response body.
    pub max_response_bytes: u64,
}

impl Default for Limits {
    /// The configuration defaults.
    fn default() -> Self {
        Self::from_config(&EndpointConfig::default())
    }
}

impl Limits {
    /// The limits of an `[endpoint]` table.
    pub fn from_config(c: &EndpointConfig) -> Self {
        Limits {
            max_connections: c.max_connections as usize,
            max_handshakes: c.max_handshakes as usize,
            max_handshakes_per_address: c.max_handshakes_per_address as usize,
            handshake_timeout: c.handshake_timeout(),
            header_timeout: c.header_timeout(),
            request_timeout: c.request_timeout(),
            max_response_bytes: c.max_response_bytes,
        }
    }
}

/// A validated `[endpoint]` table, when the endpoint is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointSettings {
    /// `IP:PORT`, `[IPv6]:PORT` or `HOST:PORT`.
    pub listen: String,
    /// Mutual TLS, or `None` for plain HTTP (loopback only).
    pub tls: Option<TlsFiles>,
    /// Connection limits.
    pub limits: Limits,
}

impl EndpointSettings {
    /// The endpoint an `[endpoint]` table asks for; `None` when it is off. Assumes
    /// the table passed [`EndpointConfig::validate`]; a TLS table missing a file
    /// counts as off here.
    pub fn from_config(c: &EndpointConfig) -> Option<Self> {
        let tls = match c.mode() {
            EndpointMode::Off => return None,
            EndpointMode::Plaintext => None,
            EndpointMode::Tls => Some(TlsFiles {
                cert_file: c.cert_file.clone()?,
                key_file: c.key_file.clone()?,
                client_ca_file: c.client_ca_file.clone()?,
                crl_files: c.crl_files.clone(),
                allowed_clients: c.allowed_clients.clone(),
            }),
        };
        Some(EndpointSettings {
            listen: c.listen.clone(),
            tls,
            limits: Limits::from_config(c),
        })
    }
}

/// Why the endpoint cannot start (or a reload cannot take effect).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EndpointError {
    /// A certificate, key, CA or CRL file is missing, unreadable or wrong.
    #[error("{key} = {}: {problem}; fix: {fix}", path.display())]
    File {
        /// The configuration key naming the file (`endpoint.key_file`).
        key: String,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
        /// What to do.
        fix: String,
    },
    /// The listen address cannot be bound.
    #[error("endpoint.listen = \"{listen}\": cannot listen: {source}; fix: {fix}")]
    Bind {
        /// The address.
        listen: String,
        /// Why.
        #[source]
        source: std::io::Error,
        /// What to do.
        fix: String,
    },
    /// Plain HTTP asked for on an address that is not loopback.
    #[error(
        "endpoint.insecure_plaintext: plaintext only on 127.0.0.1/::1/localhost; \
         endpoint.listen = \"{listen}\" is not a loopback address; fix: listen on \
         127.0.0.1, or serve mutual TLS"
    )]
    PlaintextNotLoopback {
        /// The address.
        listen: String,
    },
}

impl From<pga_config::pem::FileError> for EndpointError {
    fn from(e: pga_config::pem::FileError) -> Self {
        EndpointError::File {
            key: e.key,
            path: e.path,
            problem: e.problem,
            fix: e.fix,
        }
    }
}

impl EndpointError {
    /// The configuration key at fault.
    pub fn key(&self) -> String {
        match self {
            EndpointError::File { key, .. } => key.clone(),
            EndpointError::Bind { .. } => "endpoint.listen".to_owned(),
            EndpointError::PlaintextNotLoopback { .. } => "endpoint.insecure_plaintext".to_owned(),
        }
    }

    /// The error as a configuration [`Problem`] (for `check-config`).
    pub fn to_problem(&self) -> Problem {
        match self {
            EndpointError::File {
                key,
                path,
                problem,
                fix,
            } => Problem::error(key, format!("{}: {problem}", path.display()), fix),
            EndpointError::Bind {
                listen,
                source,
                fix,
            } => Problem::error(
                "endpoint.listen",
                format!("\"{listen}\" cannot be bound: {source}"),
                fix,
            ),
            EndpointError::PlaintextNotLoopback { listen } => Problem::error(
                "endpoint.insecure_plaintext",
                format!("plaintext only on 127.0.0.1/::1/localhost; \"{listen}\" is not"),
                "listen on 127.0.0.1, or serve mutual TLS",
            ),
        }
    }
}

/// Loads every TLS file of `settings` the way start-up does, without binding:
/// errors (at most one: loading stops at the first bad file) and warnings (an
/// expired server certificate, a stale CRL) as configuration problems. Empty for a
/// plaintext endpoint.
pub fn check(settings: &EndpointSettings) -> Vec<Problem> {
    let Some(files) = &settings.tls else {
        return Vec::new();
    };
    match tls::load(files) {
        Ok(loaded) => loaded.warnings,
        Err(e) => vec![e.to_problem()],
    }
}

/// The start-up line for an endpoint that is off: why, and how to turn it on.
pub const OFF_HINT: &str = "set endpoint.cert_file, endpoint.key_file and endpoint.client_ca_file \
     (`pga-agent certs dev --out DIR` makes a test set), or endpoint.insecure_plaintext = true \
     with a loopback endpoint.listen";
