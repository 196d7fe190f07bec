//! `[endpoint]`: where and how the agent serves `/metrics` and `/v1/*`, and the
//! rules that table follows.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::validate::{Problem, check_readable_file, check_secret_file};

/// Default `endpoint.listen`.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:9187";
/// Largest `endpoint.max_connections`.
pub const MAX_CONNECTIONS_MAX: u32 = 4096;
/// Largest `endpoint.header_timeout_secs`.
pub const HEADER_TIMEOUT_SECS_MAX: u64 = 300;
/// Largest `endpoint.handshake_timeout_secs`.
pub const HANDSHAKE_TIMEOUT_SECS_MAX: u64 = 60;
/// Largest `endpoint.max_handshakes`.
pub const MAX_HANDSHAKES_MAX: u32 = 4096;
/// Largest `endpoint.request_timeout_secs`.
pub const REQUEST_TIMEOUT_SECS_MAX: u64 = 3600;
/// Smallest `endpoint.max_response_bytes`: 1 MiB.
pub const MIN_RESPONSE_BYTES: u64 = 1 << 20;
/// Largest `endpoint.max_response_bytes`: 1 GiB.
pub const MAX_RESPONSE_BYTES_MAX: u64 = 1 << 30;

/// The keys that, all three together, switch the TLS endpoint on.
const TLS_KEYS: [&str; 3] = ["cert_file", "key_file", "client_ca_file"];

/// `[endpoint]`: the HTTPS endpoint the federator and Prometheus pull from.
///
/// Off unless `cert_file`, `key_file` and `client_ca_file` are all set (mutual TLS)
/// or `insecure_plaintext = true` (plain HTTP, loopback only). Off, the agent still
/// collects and stores; `pga-agent query` reads the store locally.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EndpointConfig {
    /// Address and port to listen on: `IP:PORT`, `[IPv6]:PORT` or `HOST:PORT`.
    /// Default `0.0.0.0:9187`.
    pub listen: String,
    /// The agent's certificate chain (PEM): its own certificate first, then any
    /// intermediates. Its SANs must name the address the federator dials.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
    /// The private key of `cert_file` (PEM: PKCS#8, PKCS#1 or SEC1). Must not be
    /// readable by others (mode 0600 or 0640).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// CA certificates (PEM) that sign the clients' certificates. Every client must
    /// present a certificate chaining to one of them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_ca_file: Option<PathBuf>,
    /// Certificate revocation lists (PEM or DER), each issued by a CA of
    /// `client_ca_file`. When any is given, a client whose certificate's revocation
    /// status no list covers is refused. Default: none.
    pub crl_files: Vec<PathBuf>,
    /// Client identities let in: DNS or URI subject alternative names, or the
    /// subject common name of certificates that have neither. Empty (the default):
    /// any certificate the CA signed.
    pub allowed_clients: Vec<String>,
    /// Serve plain HTTP, without TLS or client authentication. Only allowed on a
    /// loopback address (127.0.0.1, ::1, localhost). Default false.
    pub insecure_plaintext: bool,
    /// Authenticated connections (past the TLS handshake) served at once; one more
    /// is answered 503 and closed. 1..=4096, default 64.
    pub max_connections: u32,
    /// TLS handshakes in progress at once: connections not authenticated yet, kept
    /// apart from `max_connections` so that they cannot starve authenticated
    /// clients. At the bound the handshake silent the longest is closed to make
    /// room. 1..=4096, default 256.
    pub max_handshakes: u32,
    /// TLS handshakes in progress at once from one source address.
    /// 1..=max_handshakes, default 32.
    pub max_handshakes_per_address: u32,
    /// Time a client has to finish the TLS handshake. 1..=60 seconds, default 5.
    pub handshake_timeout_secs: u64,
    /// Time a client has for sending a request's headers; also how long an idle
    /// connection stays open. 1..=300 seconds, default 10.
    pub header_timeout_secs: u64,
    /// Time the agent spends answering one request, and the longest a response
    /// write may stall on a client that does not read. 1..=3600 seconds, default 30.
    pub request_timeout_secs: u64,
    /// Largest response body, in bytes. 1 MiB..=1 GiB, default 16 MiB (16777216).
    pub max_response_bytes: u64,
}

const fn default_insecure_plaintext() -> bool {
    false
}
const fn default_max_connections() -> u32 {
    64
}
const fn default_max_handshakes() -> u32 {
    256
}
const fn default_max_handshakes_per_address() -> u32 {
    32
}
const fn default_handshake_timeout_secs() -> u64 {
    5
}
const fn default_header_timeout_secs() -> u64 {
    10
}
const fn default_request_timeout_secs() -> u64 {
    30
}
const fn default_max_response_bytes() -> u64 {
    16 << 20
}

impl Default for EndpointConfig {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.to_owned(),
            cert_file: None,
            key_file: None,
            client_ca_file: None,
            crl_files: Vec::new(),
            allowed_clients: Vec::new(),
            insecure_plaintext: default_insecure_plaintext(),
            max_connections: default_max_connections(),
            max_handshakes: default_max_handshakes(),
            max_handshakes_per_address: default_max_handshakes_per_address(),
            handshake_timeout_secs: default_handshake_timeout_secs(),
            header_timeout_secs: default_header_timeout_secs(),
            request_timeout_secs: default_request_timeout_secs(),
            max_response_bytes: default_max_response_bytes(),
        }
    }
}

/// What the `[endpoint]` table asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointMode {
    /// No endpoint: none of the TLS files is set and `insecure_plaintext` is false.
    Off,
    /// Mutual TLS (possibly misconfigured: [`EndpointConfig::validate`] says).
    Tls,
    /// Plain HTTP on loopback.
    Plaintext,
}

impl EndpointConfig {
    /// Whether the endpoint is off, TLS or plaintext. A table with only some of the
    /// TLS keys counts as [`EndpointMode::Tls`]; validation reports what is missing.
    pub fn mode(&self) -> EndpointMode {
        if self.insecure_plaintext {
            EndpointMode::Plaintext
        } else if self.cert_file.is_some()
            || self.key_file.is_some()
            || self.client_ca_file.is_some()
        {
            EndpointMode::Tls
        } else {
            EndpointMode::Off
        }
    }

    /// The time a client has for each request's headers.
    pub const fn header_timeout(&self) -> Duration {
        Duration::from_secs(self.header_timeout_secs)
    }

    /// The time a client has for the TLS handshake.
    pub const fn handshake_timeout(&self) -> Duration {
        Duration::from_secs(self.handshake_timeout_secs)
    }

    /// The time one request may take.
    pub const fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs)
    }

    /// Checks the `[endpoint]` table: the mode is unambiguous, the TLS keys come as
    /// a set, plaintext stays on loopback, the files exist (the key file private),
    /// and the limits are in range. Parsing the PEM files is the endpoint's job at
    /// start-up (`endpoint::check`).
    pub fn validate(&self, p: &mut Vec<Problem>) {
        if let Err(e) = parse_listen(&self.listen) {
            p.push(Problem::error(
                "endpoint.listen",
                format!("\"{}\" {e}", self.listen),
                format!(
                    "write IP:PORT, [IPv6]:PORT or HOST:PORT, e.g. \"{DEFAULT_LISTEN}\" or \
                     \"127.0.0.1:9187\""
                ),
            ));
        }
        let set: Vec<&str> = TLS_KEYS
            .into_iter()
            .zip([&self.cert_file, &self.key_file, &self.client_ca_file])
            .filter_map(|(k, v)| v.is_some().then_some(k))
            .collect();
        let extras: Vec<&str> = [
            ("crl_files", !self.crl_files.is_empty()),
            ("allowed_clients", !self.allowed_clients.is_empty()),
        ]
        .into_iter()
        .filter_map(|(k, on)| on.then_some(k))
        .collect();

        if self.insecure_plaintext {
            self.validate_plaintext(&set, &extras, p);
        } else if !set.is_empty() || !extras.is_empty() {
            for missing in TLS_KEYS.into_iter().filter(|k| !set.contains(k)) {
                let have = if set.is_empty() {
                    format!("endpoint.{} is set", extras.join(" and endpoint."))
                } else {
                    format!("endpoint.{} is set", set.join(" and endpoint."))
                };
                p.push(Problem::error(
                    format!("endpoint.{missing}"),
                    format!(
                        "is missing: {have}, and the TLS endpoint needs all of cert_file, \
                         key_file and client_ca_file"
                    ),
                    match missing {
                        "cert_file" => "set endpoint.cert_file to the agent's certificate (PEM)",
                        "key_file" => "set endpoint.key_file to the private key of cert_file (PEM)",
                        _ => {
                            "set endpoint.client_ca_file to the CA bundle (PEM) that signs the \
                              clients' certificates"
                        }
                    }
                    .to_owned()
                        + "; `pga-agent certs dev --out DIR` makes a test set, or remove the \
                           [endpoint] keys to keep the endpoint off",
                ));
            }
            if let Some(f) = &self.cert_file {
                check_readable_file("endpoint.cert_file", f, p);
            }
            if let Some(f) = &self.key_file {
                check_secret_file("endpoint.key_file", f, 0o007, p);
            }
            if let Some(f) = &self.client_ca_file {
                check_readable_file("endpoint.client_ca_file", f, p);
            }
            for (i, f) in self.crl_files.iter().enumerate() {
                check_readable_file(&format!("endpoint.crl_files[{i}]"), f, p);
            }
        }
        for (i, c) in self.allowed_clients.iter().enumerate() {
            if c.trim().is_empty() {
                p.push(Problem::error(
                    format!("endpoint.allowed_clients[{i}]"),
                    "is empty, which matches no client",
                    "remove it, or write a DNS name, a URI or a common name such as \
                     \"pga-federator\"",
                ));
            }
        }
        self.validate_limits(p);
    }

    fn validate_plaintext(&self, set: &[&str], extras: &[&str], p: &mut Vec<Problem>) {
        let tls: Vec<String> = set
            .iter()
            .chain(extras)
            .map(|k| format!("endpoint.{k}"))
            .collect();
        if !tls.is_empty() {
            p.push(Problem::error(
                "endpoint.insecure_plaintext",
                format!("is true while {} is set", tls.join(", ")),
                "remove insecure_plaintext = true to serve mutual TLS, or remove the TLS \
                 keys to serve plain HTTP on loopback",
            ));
        }
        if let Ok((host, _)) = parse_listen(&self.listen)
            && !is_loopback_host(&host)
        {
            p.push(Problem::error(
                "endpoint.insecure_plaintext",
                format!(
                    "plaintext only on 127.0.0.1/::1/localhost; endpoint.listen = \"{}\" is \
                     not a loopback address, and plain HTTP would expose the metrics to the \
                     network unauthenticated",
                    self.listen
                ),
                "set endpoint.listen = \"127.0.0.1:9187\", or serve mutual TLS: remove \
                 insecure_plaintext and set cert_file, key_file and client_ca_file",
            ));
        }
    }

    fn validate_limits(&self, p: &mut Vec<Problem>) {
        if !(1..=MAX_CONNECTIONS_MAX).contains(&self.max_connections) {
            p.push(Problem::error(
                "endpoint.max_connections",
                format!("{} is out of range", self.max_connections),
                format!("set it between 1 and {MAX_CONNECTIONS_MAX} (default 64)"),
            ));
        }
        if !(1..=MAX_HANDSHAKES_MAX).contains(&self.max_handshakes) {
            p.push(Problem::error(
                "endpoint.max_handshakes",
                format!("{} is out of range", self.max_handshakes),
                format!("set it between 1 and {MAX_HANDSHAKES_MAX} (default 256)"),
            ));
        }
        if !(1..=self.max_handshakes.max(1)).contains(&self.max_handshakes_per_address) {
            p.push(Problem::error(
                "endpoint.max_handshakes_per_address",
                format!("{} is out of range", self.max_handshakes_per_address),
                format!(
                    "set it between 1 and endpoint.max_handshakes ({}) (default 32)",
                    self.max_handshakes
                ),
            ));
        }
        if !(1..=HANDSHAKE_TIMEOUT_SECS_MAX).contains(&self.handshake_timeout_secs) {
            p.push(Problem::error(
                "endpoint.handshake_timeout_secs",
                format!("{} is out of range", self.handshake_timeout_secs),
                format!("set it between 1 and {HANDSHAKE_TIMEOUT_SECS_MAX} (default 5)"),
            ));
        }
        if !(1..=HEADER_TIMEOUT_SECS_MAX).contains(&self.header_timeout_secs) {
            p.push(Problem::error(
                "endpoint.header_timeout_secs",
                format!("{} is out of range", self.header_timeout_secs),
                format!("set it between 1 and {HEADER_TIMEOUT_SECS_MAX} (default 10)"),
            ));
        }
        if !(1..=REQUEST_TIMEOUT_SECS_MAX).contains(&self.request_timeout_secs) {
            p.push(Problem::error(
                "endpoint.request_timeout_secs",
                format!("{} is out of range", self.request_timeout_secs),
                format!("set it between 1 and {REQUEST_TIMEOUT_SECS_MAX} (default 30)"),
            ));
        }
        if !(MIN_RESPONSE_BYTES..=MAX_RESPONSE_BYTES_MAX).contains(&self.max_response_bytes) {
            p.push(Problem::error(
                "endpoint.max_response_bytes",
                format!("{} is out of range", self.max_response_bytes),
                format!(
                    "set it between {MIN_RESPONSE_BYTES} (1 MiB) and {MAX_RESPONSE_BYTES_MAX} \
                     (1 GiB); default 16777216 (16 MiB)"
                ),
            ));
        }
    }
}

/// Splits `listen` into host and port: `IP:PORT`, `[IPv6]:PORT` or `HOST:PORT`.
/// The error completes the sentence "`listen` ...".
pub fn parse_listen(listen: &str) -> Result<(String, u16), String> {
    if let Ok(addr) = listen.parse::<SocketAddr>() {
        if addr.port() == 0 {
            return Err("has port 0, which picks a random port no client knows".into());
        }
        return Ok((addr.ip().to_string(), addr.port()));
    }
    let Some((host, port)) = listen.rsplit_once(':') else {
        return Err("has no port".into());
    };
    let port: u16 = port
        .parse()
        .map_err(|_| format!("has an invalid port \"{port}\""))?;
    if port == 0 {
        return Err("has port 0, which picks a random port no client knows".into());
    }
    let valid_host = !host.is_empty()
        && host.len() <= 253
        && host
            .split('.')
            .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
    if !valid_host {
        return Err(format!("has an invalid host \"{host}\""));
    }
    Ok((host.to_owned(), port))
}

/// Whether `host` (from [`parse_listen`]) is a loopback address: 127.0.0.0/8, ::1
/// or `localhost`.
pub fn is_loopback_host(host: &str) -> bool {
    match host.parse::<IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host.eq_ignore_ascii_case("localhost"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn problems(c: &EndpointConfig) -> Vec<Problem> {
        let mut p = Vec::new();
        c.validate(&mut p);
        p
    }

    fn keys(c: &EndpointConfig) -> Vec<String> {
        problems(c).into_iter().map(|p| p.key).collect()
    }

    /// A cert, a 0600 key and a CA file in `dir`.
    fn files(dir: &std::path::Path) -> EndpointConfig {
        let (cert, key, ca) = (dir.join("a.crt"), dir.join("a.key"), dir.join("ca.crt"));
        for f in [&cert, &key, &ca] {
            std::fs::write(f, "x").unwrap();
        }
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        EndpointConfig {
            cert_file: Some(cert),
            key_file: Some(key),
            client_ca_file: Some(ca),
            ..EndpointConfig::default()
        }
    }

    #[test]
    fn defaults_are_off_and_valid() {
        let c = EndpointConfig::default();
        assert_eq!(c.listen, "0.0.0.0:9187");
        assert_eq!(c.mode(), EndpointMode::Off);
        assert_eq!(
            (
                c.max_connections,
                c.header_timeout_secs,
                c.request_timeout_secs,
                c.max_response_bytes
            ),
            (64, 10, 30, 16_777_216)
        );
        assert_eq!(
            (
                c.max_handshakes,
                c.max_handshakes_per_address,
                c.handshake_timeout_secs
            ),
            (256, 32, 5)
        );
        assert!(!c.insecure_plaintext);
        assert_eq!(problems(&c), []);
    }

    #[test]
    fn a_complete_tls_set_is_valid() {
        let tmp = tempfile::tempdir().unwrap();
        let c = files(tmp.path());
        assert_eq!(c.mode(), EndpointMode::Tls);
        assert_eq!(problems(&c), []);
    }

    #[test]
    fn partial_tls_settings_name_each_missing_key() {
        let tmp = tempfile::tempdir().unwrap();
        let full = files(tmp.path());
        let c = EndpointConfig {
            key_file: None,
            ..full.clone()
        };
        let p = problems(&c);
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].key, "endpoint.key_file");
        assert!(p[0].message.contains("endpoint.cert_file"), "{p:?}");
        assert!(p[0].fix.contains("private key"), "{p:?}");
        let c = EndpointConfig {
            cert_file: full.cert_file.clone(),
            ..EndpointConfig::default()
        };
        assert_eq!(keys(&c), ["endpoint.key_file", "endpoint.client_ca_file"]);
        // CRLs or an allow-list alone mean TLS was meant.
        let c = EndpointConfig {
            allowed_clients: vec!["pga-federator".into()],
            ..EndpointConfig::default()
        };
        assert_eq!(
            keys(&c),
            [
                "endpoint.cert_file",
                "endpoint.key_file",
                "endpoint.client_ca_file"
            ]
        );
    }

    #[test]
    fn tls_files_must_exist_and_the_key_be_private() {
        let tmp = tempfile::tempdir().unwrap();
        let mut c = files(tmp.path());
        let key = c.key_file.clone().unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        c.cert_file = Some(tmp.path().join("missing.crt"));
        c.crl_files = vec![tmp.path().to_owned()];
        let p = problems(&c);
        assert_eq!(
            p.iter().map(|p| p.key.as_str()).collect::<Vec<_>>(),
            [
                "endpoint.cert_file",
                "endpoint.key_file",
                "endpoint.crl_files[0]"
            ],
            "{p:?}"
        );
        assert!(p[1].fix.starts_with("chmod 0640"), "{p:?}");
    }

    #[test]
    fn plaintext_only_on_loopback() {
        for ok in [
            "127.0.0.1:9187",
            "[::1]:9187",
            "localhost:9187",
            "127.0.0.2:1",
        ] {
            let c = EndpointConfig {
                insecure_plaintext: true,
                listen: ok.into(),
                ..EndpointConfig::default()
            };
            assert_eq!(c.mode(), EndpointMode::Plaintext);
            assert_eq!(problems(&c), [], "{ok}");
        }
        for bad in [
            "0.0.0.0:9187",
            "[::]:9187",
            "10.1.2.3:9187",
            "db1.example:9187",
        ] {
            let c = EndpointConfig {
                insecure_plaintext: true,
                listen: bad.into(),
                ..EndpointConfig::default()
            };
            let p = problems(&c);
            assert_eq!(p.len(), 1, "{bad}: {p:?}");
            assert_eq!(p[0].key, "endpoint.insecure_plaintext");
            assert!(
                p[0].message
                    .starts_with("plaintext only on 127.0.0.1/::1/localhost;"),
                "{p:?}"
            );
        }
    }

    #[test]
    fn plaintext_and_tls_keys_conflict() {
        let tmp = tempfile::tempdir().unwrap();
        let c = EndpointConfig {
            insecure_plaintext: true,
            listen: "127.0.0.1:9187".into(),
            ..files(tmp.path())
        };
        let p = problems(&c);
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].key, "endpoint.insecure_plaintext");
        assert!(p[0].message.contains("endpoint.cert_file"), "{p:?}");
    }

    #[test]
    fn listen_addresses() {
        assert_eq!(
            parse_listen("0.0.0.0:9187").unwrap(),
            ("0.0.0.0".into(), 9187)
        );
        assert_eq!(parse_listen("[::1]:1").unwrap(), ("::1".into(), 1));
        assert_eq!(
            parse_listen("db-1.example:443").unwrap(),
            ("db-1.example".into(), 443)
        );
        for bad in [
            "",
            "9187",
            "host:",
            "host:x",
            "host:70000",
            ":9187",
            "a b:1",
            "1.2.3.4:0",
        ] {
            assert!(parse_listen(bad).is_err(), "{bad}");
            let c = EndpointConfig {
                listen: bad.into(),
                ..EndpointConfig::default()
            };
            assert_eq!(keys(&c), ["endpoint.listen"], "{bad}");
        }
    }

    #[test]
    fn limits_are_bounded() {
        let c = EndpointConfig {
            max_connections: 0,
            max_handshakes: 10,
            max_handshakes_per_address: 11,
            handshake_timeout_secs: 61,
            header_timeout_secs: 0,
            request_timeout_secs: 3601,
            max_response_bytes: 1000,
            ..EndpointConfig::default()
        };
        assert_eq!(
            keys(&c),
            [
                "endpoint.max_connections",
                "endpoint.max_handshakes_per_address",
                "endpoint.handshake_timeout_secs",
                "endpoint.header_timeout_secs",
                "endpoint.request_timeout_secs",
                "endpoint.max_response_bytes"
            ]
        );
    }

    #[test]
    fn empty_allowed_client_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let c = EndpointConfig {
            allowed_clients: vec!["pga-federator".into(), " ".into()],
            ..files(tmp.path())
        };
        assert_eq!(keys(&c), ["endpoint.allowed_clients[1]"]);
    }
}
