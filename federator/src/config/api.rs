//! `[api]`: the HTTP API's listener, certificate, tokens, password hashing and
//! sign-in throttling.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::{Problem, Severity};
use crate::auth::password::{MIN_ITERATIONS, MIN_MEMORY_KIB};

/// `[api]`: the HTTP API (`/api/v1`). Off until `listen` is set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// `IP:PORT` to serve the API on, separate from `metrics.listen`; `""` (the
    /// default) for no API.
    pub listen: String,
    /// The API's server certificate chain (PEM). HTTPS needs it and `key_file`;
    /// both are reloaded when they change, and on SIGHUP.
    pub cert_file: Option<PathBuf>,
    /// Its private key (PEM).
    pub key_file: Option<PathBuf>,
    /// Serve plain HTTP instead of HTTPS: only on a loopback address (behind a
    /// local TLS proxy, or for tests). Default false.
    pub insecure_plaintext: bool,
    /// File holding the HS256 key that signs access and refresh tokens: at least
    /// 32 bytes (256 bits). `pga-federator keygen --out FILE` writes one. Every
    /// federator sharing the database needs the same key. Required with `listen`.
    pub jwt_key_file: Option<PathBuf>,
    /// `iss` of the tokens. Default `"pga-federator"`.
    pub jwt_issuer: String,
    /// `aud` of the tokens. Default `"pga-api"`.
    pub jwt_audience: String,
    /// Lifetime of an access token, in seconds. 60..=3600, default 900 (15 min).
    pub access_token_ttl_secs: u64,
    /// Lifetime of a refresh token, in seconds. 300..=7776000, default 604800
    /// (7 days).
    pub refresh_token_ttl_secs: u64,
    /// Connections of the API's own database pool (ingest keeps its own).
    /// 1..=100, default 4.
    pub max_db_connections: u32,
    /// HTTP connections served at once. 1..=100000, default 1024.
    pub max_connections: u32,
    /// Bound on answering one request, in seconds. 1..=300, default 30.
    pub request_timeout_secs: u64,
    /// Passwords hashed at the same time, at most: a flood of sign-ins waits here
    /// instead of taking the CPU ingest needs. 1..=64, default 1.
    pub hash_concurrency: u32,
    /// How long a sign-in waits for a hashing slot before it is answered 503, in
    /// milliseconds. 100..=60000, default 5000.
    pub hash_wait_ms: u64,
    /// Argon2id memory cost in KiB. At least 19456 (OWASP's minimum), default 19456.
    /// Raising it (or the iterations) rehashes each password at its next sign-in.
    pub argon2_memory_kib: u32,
    /// Argon2id iterations. At least 2, default 2.
    pub argon2_iterations: u32,
    /// Argon2id lanes. 1..=16, default 1.
    pub argon2_parallelism: u32,
    /// First delay after a failed sign-in, per account and per source address,
    /// in milliseconds; it doubles with each failure in a row. 1..=60000, default
    /// 1000.
    pub login_backoff_initial_ms: u64,
    /// Longest such delay, in seconds. 1..=86400, default 900 (15 min).
    pub login_backoff_max_secs: u64,
    /// How often the agents table is read for agents added, changed or removed
    /// through the API (by this federator or another), in seconds. Changes made
    /// through this federator's API apply at once. 1..=3600, default 10.
    pub agents_poll_secs: u64,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: String::new(),
            cert_file: None,
            key_file: None,
            insecure_plaintext: false,
            jwt_key_file: None,
            jwt_issuer: "pga-federator".to_owned(),
            jwt_audience: "pga-api".to_owned(),
            access_token_ttl_secs: 900,
            refresh_token_ttl_secs: 7 * 86_400,
            max_db_connections: 4,
            max_connections: 1024,
            request_timeout_secs: 30,
            hash_concurrency: 1,
            hash_wait_ms: 5000,
            argon2_memory_kib: MIN_MEMORY_KIB,
            argon2_iterations: MIN_ITERATIONS,
            argon2_parallelism: 1,
            login_backoff_initial_ms: 1000,
            login_backoff_max_secs: 900,
            agents_poll_secs: 10,
        }
    }
}

/// Shortest JWT key, in bytes.
pub const MIN_JWT_KEY_BYTES: usize = 32;

/// Reads the JWT key file: its bytes, a trailing newline dropped.
pub fn read_jwt_key(path: &Path) -> Result<Vec<u8>, String> {
    let mut bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        bytes.pop();
    }
    if bytes.len() < MIN_JWT_KEY_BYTES {
        return Err(format!(
            "{}: {} bytes; the key needs at least {MIN_JWT_KEY_BYTES} (256 bits)",
            path.display(),
            bytes.len()
        ));
    }
    Ok(bytes)
}

impl ApiConfig {
    /// Whether the API is on.
    pub fn enabled(&self) -> bool {
        !self.listen.is_empty()
    }

    /// Every broken rule of `[api]`.
    pub fn problems(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        let mut error = |key: &str, message: String, fix: &str| {
            out.push(Problem {
                severity: Severity::Error,
                key: key.to_owned(),
                message,
                fix: fix.to_owned(),
            });
        };
        let ranges: [(&str, u64, u64, u64, &str); 13] = [
            (
                "api.access_token_ttl_secs",
                self.access_token_ttl_secs,
                60,
                3600,
                "900",
            ),
            (
                "api.refresh_token_ttl_secs",
                self.refresh_token_ttl_secs,
                300,
                90 * 86_400,
                "604800",
            ),
            (
                "api.max_db_connections",
                self.max_db_connections.into(),
                1,
                100,
                "4",
            ),
            (
                "api.max_connections",
                self.max_connections.into(),
                1,
                100_000,
                "1024",
            ),
            (
                "api.request_timeout_secs",
                self.request_timeout_secs,
                1,
                300,
                "30",
            ),
            (
                "api.hash_concurrency",
                self.hash_concurrency.into(),
                1,
                64,
                "1",
            ),
            ("api.hash_wait_ms", self.hash_wait_ms, 100, 60_000, "5000"),
            (
                "api.argon2_memory_kib",
                self.argon2_memory_kib.into(),
                MIN_MEMORY_KIB.into(),
                4 << 20,
                "19456, OWASP's minimum",
            ),
            (
                "api.argon2_iterations",
                self.argon2_iterations.into(),
                MIN_ITERATIONS.into(),
                100,
                "2",
            ),
            (
                "api.argon2_parallelism",
                self.argon2_parallelism.into(),
                1,
                16,
                "1",
            ),
            (
                "api.login_backoff_initial_ms",
                self.login_backoff_initial_ms,
                1,
                60_000,
                "1000",
            ),
            (
                "api.login_backoff_max_secs",
                self.login_backoff_max_secs,
                1,
                86_400,
                "900",
            ),
            ("api.agents_poll_secs", self.agents_poll_secs, 1, 3600, "10"),
        ];
        for (key, value, lo, hi, default) in ranges {
            if !(lo..=hi).contains(&value) {
                error(
                    key,
                    format!("{value} is out of range"),
                    &format!("set it between {lo} and {hi} (default {default})"),
                );
            }
        }
        if self.jwt_issuer.is_empty() || self.jwt_audience.is_empty() {
            error(
                "api.jwt_issuer",
                "jwt_issuer and jwt_audience must not be empty".to_owned(),
                "leave them out for the defaults",
            );
        }
        if !self.enabled() {
            return out;
        }
        let addr = std::net::SocketAddr::from_str(&self.listen);
        if addr.is_err() {
            error(
                "api.listen",
                format!("\"{}\" is not IP:PORT", self.listen),
                "write e.g. \"0.0.0.0:8443\", or \"\" for no API",
            );
        }
        match (&self.cert_file, &self.key_file, self.insecure_plaintext) {
            (Some(_), Some(_), true) => error(
                "api.insecure_plaintext",
                "set together with api.cert_file and api.key_file".to_owned(),
                "remove insecure_plaintext to serve HTTPS, or the certificate to serve plain HTTP",
            ),
            (Some(cert), Some(key), false) => {
                if let Err(e) = crate::http::server::load_tls(cert, key) {
                    error(
                        "api.cert_file",
                        format!("{e:#}"),
                        "name the API's certificate chain and its key, both PEM",
                    );
                }
            }
            (None, None, true) => {
                if addr.is_ok_and(|a| !a.ip().is_loopback()) {
                    error(
                        "api.insecure_plaintext",
                        format!(
                            "plain HTTP on {}, which is not a loopback address",
                            self.listen
                        ),
                        "set api.cert_file and api.key_file for HTTPS, or listen on 127.0.0.1",
                    );
                }
            }
            (None, None, false) => error(
                "api.cert_file",
                "missing: the API serves HTTPS".to_owned(),
                "set api.cert_file and api.key_file (PEM); `pga-agent certs dev` makes test \
                 certificates; or, on 127.0.0.1 only, api.insecure_plaintext = true",
            ),
            _ => error(
                "api.key_file",
                "cert_file and key_file go together".to_owned(),
                "set both, or neither",
            ),
        }
        match &self.jwt_key_file {
            None => error(
                "api.jwt_key_file",
                "missing: the API signs its tokens with it".to_owned(),
                "run `pga-federator keygen --out /etc/pganalytics/api-jwt.key` and name that file",
            ),
            Some(path) => {
                if let Err(e) = read_jwt_key(path) {
                    error(
                        "api.jwt_key_file",
                        e,
                        "write one with `pga-federator keygen --out FILE`",
                    );
                } else if std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o077 != 0)
                {
                    out.push(Problem {
                        severity: Severity::Warning,
                        key: "api.jwt_key_file".to_owned(),
                        message: format!("{} is readable by other users", path.display()),
                        fix: format!("chmod 600 {}", path.display()),
                    });
                }
            }
        }
        out
    }

    /// One line of `check-config`.
    pub fn describe(&self) -> String {
        if !self.enabled() {
            return "off (api.listen is \"\")".to_owned();
        }
        let scheme = if self.insecure_plaintext {
            "http"
        } else {
            "https"
        };
        format!(
            "{scheme}://{}/api/v1, access tokens {} s, refresh tokens {} s, {} hashing slot(s), \
             Argon2id m={} KiB t={} p={}",
            self.listen,
            self.access_token_ttl_secs,
            self.refresh_token_ttl_secs,
            self.hash_concurrency,
            self.argon2_memory_kib,
            self.argon2_iterations,
            self.argon2_parallelism
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::validate::keys;

    #[test]
    fn off_by_default_and_valid() {
        let a = ApiConfig::default();
        assert!(!a.enabled());
        assert!(a.problems().is_empty());
        assert!(a.describe().starts_with("off"));
    }

    #[test]
    fn on_it_needs_a_certificate_and_a_key_file() {
        let a = ApiConfig {
            listen: "0.0.0.0:8443".into(),
            ..ApiConfig::default()
        };
        let p = a.problems();
        assert_eq!(keys(&p), ["api.cert_file", "api.jwt_key_file"]);
        assert!(p[1].fix.contains("pga-federator keygen"), "{}", p[1].fix);
    }

    #[test]
    fn plain_http_only_on_loopback() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("k");
        std::fs::write(&key, "x".repeat(40)).unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        let mut a = ApiConfig {
            listen: "0.0.0.0:8443".into(),
            insecure_plaintext: true,
            jwt_key_file: Some(key.clone()),
            ..ApiConfig::default()
        };
        let p = a.problems();
        assert_eq!(keys(&p), ["api.insecure_plaintext"]);
        assert!(p[0].message.contains("not a loopback address"));
        a.listen = "127.0.0.1:8443".into();
        assert!(a.problems().is_empty());
        // A short key is refused.
        std::fs::write(&key, "short\n").unwrap();
        let p = a.problems();
        assert_eq!(keys(&p), ["api.jwt_key_file"]);
        assert!(p[0].message.contains("256 bits"), "{}", p[0].message);
    }

    #[test]
    fn ranges_and_owasp_minimum() {
        let a = ApiConfig {
            argon2_memory_kib: 4096,
            access_token_ttl_secs: 86_400,
            hash_concurrency: 0,
            ..ApiConfig::default()
        };
        assert_eq!(
            keys(&a.problems()),
            [
                "api.access_token_ttl_secs",
                "api.hash_concurrency",
                "api.argon2_memory_kib"
            ]
        );
    }
}
