//! The client keys an HTTP destination of `federator.toml` has (an Alertmanager, a
//! webhook, a remote-write receiver): TLS files and authentication, checked here
//! once, the way `notify::http` will read them.

use std::path::Path;

use super::validate::{Problem, Severity};

/// The TLS and authentication keys of one HTTP destination.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClientKeys<'a> {
    /// CA bundle (PEM); the system's roots when not set.
    pub ca_file: Option<&'a Path>,
    /// Client certificate and key (PEM).
    pub cert_file: Option<&'a Path>,
    pub key_file: Option<&'a Path>,
    /// Basic authentication.
    pub username: Option<&'a str>,
    pub password_file: Option<&'a Path>,
    /// Bearer authentication.
    pub bearer_token_file: Option<&'a Path>,
}

/// `client_keys()` of configuration entries that have all six client keys.
macro_rules! client_keys_of {
    ($($entry:ty),*) => {$(
        impl $entry {
            /// The destination's TLS and authentication keys.
            pub fn client_keys(&self) -> ClientKeys<'_> {
                ClientKeys {
                    ca_file: self.ca_file.as_deref(),
                    cert_file: self.cert_file.as_deref(),
                    key_file: self.key_file.as_deref(),
                    username: self.username.as_deref(),
                    password_file: self.password_file.as_deref(),
                    bearer_token_file: self.bearer_token_file.as_deref(),
                }
            }
        }
    )*};
}

client_keys_of!(
    super::alerting::AlertmanagerEntry,
    super::remote_write::RemoteWriteEntry
);

impl ClientKeys<'_> {
    /// Every problem of these keys, named `<prefix>.<key>`: files that do not read
    /// as what they must hold, and keys that go together or exclude each other.
    pub fn problems(&self, prefix: &str, out: &mut Vec<Problem>) {
        file_problems(
            prefix,
            &[
                ("ca_file", self.ca_file),
                ("cert_file", self.cert_file),
                ("key_file", self.key_file),
                ("password_file", self.password_file),
                ("bearer_token_file", self.bearer_token_file),
            ],
            out,
        );
        let mut err = |key: &str, message: &str, fix: &str| {
            out.push(Problem::new(
                Severity::Error,
                format!("{prefix}.{key}"),
                message,
                fix,
            ));
        };
        if self.cert_file.is_some() != self.key_file.is_some() {
            err(
                "cert_file",
                "cert_file and key_file go together",
                "set both (a client certificate) or neither",
            );
        }
        if self.username.is_some() != self.password_file.is_some() {
            err(
                "username",
                "basic authentication needs username and password_file",
                "set both, or neither",
            );
        }
        if self.username.is_some() && self.bearer_token_file.is_some() {
            err(
                "bearer_token_file",
                "set together with basic authentication",
                "use either username/password_file or bearer_token_file",
            );
        }
    }
}

/// The problems of a destination's files, named `<prefix>.<key>`: `ca_file` and
/// `cert_file` must hold PEM certificates, `key_file` a PEM private key, any other
/// (a password, a token, a secret) must read.
pub fn file_problems(prefix: &str, files: &[(&str, Option<&Path>)], out: &mut Vec<Problem>) {
    for &(k, f) in files {
        let Some(p) = f else { continue };
        let read = match k {
            "ca_file" | "cert_file" => pga_config::pem::read_certs(k, p).map(drop),
            "key_file" => pga_config::pem::read_private_key(k, p).map(drop),
            _ => pga_config::pem::read_file(k, p).map(drop),
        };
        if let Err(e) = read {
            out.push(Problem::new(
                Severity::Error,
                format!("{prefix}.{k}"),
                format!("{}: {}", p.display(), e.problem),
                format!("{}, or remove the key", e.fix),
            ));
        }
    }
}
