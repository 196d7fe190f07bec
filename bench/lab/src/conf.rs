//! The configuration files the lab writes, and the quoting rules of the
//! formats it writes to (postgresql.conf, SQL identifiers, libpq conninfo
//! and URLs).

use std::path::Path;

use crate::LabError;

/// The file, inside the data directory, that holds every setting the lab
/// makes. `postgresql.conf` includes it last, so it wins; a standby copied
/// by `pg_basebackup` gets a rewritten one with its own port and socket.
pub(crate) const LAB_CONF: &str = "pga-lab.conf";

/// The database superuser every cluster has.
pub(crate) const SUPERUSER: &str = "postgres";

/// What the builder asked for, kept so a standby can be configured alike.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ConfSpec {
    pub settings: Vec<(String, String)>,
    pub preload: Vec<String>,
}

impl ConfSpec {
    /// Rejects setting names that would break the file.
    pub(crate) fn validate(&self) -> Result<(), LabError> {
        for (name, _) in &self.settings {
            let ok = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
            if !ok {
                return Err(LabError::Usage(format!(
                    "invalid setting name {name:?}: use a postgresql.conf parameter name \
                     (letters, digits, `_`, `.`)"
                )));
            }
        }
        Ok(())
    }

    /// The contents of [`LAB_CONF`]: lab defaults, then the caller's
    /// settings (which may override the defaults), then the port and socket
    /// directory (which may not).
    pub(crate) fn render(&self, port: u16, socket_dir: &Path) -> String {
        let mut out =
            String::from("# Written by pga-lab for a throwaway test cluster; later lines win.\n");
        let mut line = |name: &str, value: &str| {
            out.push_str(&format!("{name} = {}\n", quote_conf_value(value)));
        };
        line("listen_addresses", "127.0.0.1");
        line("fsync", "off");
        line("logging_collector", "off");
        line("log_destination", "stderr");
        line("wal_level", "replica");
        line("max_wal_senders", "10");
        line("max_replication_slots", "10");
        if !self.preload.is_empty() {
            line("shared_preload_libraries", &self.preload.join(","));
        }
        for (name, value) in &self.settings {
            line(name, value);
        }
        line("port", &port.to_string());
        line("unix_socket_directories", &socket_dir.to_string_lossy());
        out
    }
}

/// `pg_hba.conf`: the unix socket is always trusted (it lives in a private
/// directory); TCP on loopback is trusted, or needs the password when one is
/// set. Replication connections are allowed both ways.
pub(crate) fn hba(password: bool) -> String {
    let tcp = if password { "scram-sha-256" } else { "trust" };
    format!(
        "# Written by pga-lab.\n\
         local   all          all                  trust\n\
         local   replication  all                  trust\n\
         host    all          all   127.0.0.1/32   {tcp}\n\
         host    replication  all   127.0.0.1/32   {tcp}\n\
         host    all          all   ::1/128        {tcp}\n\
         host    replication  all   ::1/128        {tcp}\n"
    )
}

/// A single-quoted postgresql.conf value (any parameter type accepts one).
pub(crate) fn quote_conf_value(value: &str) -> String {
    format!("'{}'", value.replace('\\', r"\\").replace('\'', "''"))
}

/// A double-quoted SQL identifier.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A libpq conninfo value, quoted only when it has to be.
pub(crate) fn conninfo_value(value: &str) -> String {
    let plain = !value.is_empty()
        && !value
            .chars()
            .any(|c| c.is_whitespace() || c == '\'' || c == '\\');
    if plain {
        value.to_owned()
    } else {
        format!("'{}'", value.replace('\\', r"\\").replace('\'', r"\'"))
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub(crate) fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conf_values_are_quoted() {
        assert_eq!(quote_conf_value("it's"), "'it''s'");
        assert_eq!(quote_conf_value(r"a\b"), r"'a\\b'");
    }

    #[test]
    fn port_and_socket_come_last_and_settings_after_defaults() {
        let spec = ConfSpec {
            settings: vec![("fsync".into(), "on".into())],
            preload: vec!["pg_stat_statements".into(), "auto_explain".into()],
        };
        let text = spec.render(5555, Path::new("/tmp/x"));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[lines.len() - 2], "port = '5555'");
        assert_eq!(lines[lines.len() - 1], "unix_socket_directories = '/tmp/x'");
        let default = text.find("fsync = 'off'").unwrap();
        let ours = text.find("fsync = 'on'").unwrap();
        assert!(default < ours);
        assert!(text.contains("shared_preload_libraries = 'pg_stat_statements,auto_explain'"));
    }

    #[test]
    fn bad_setting_names_are_refused() {
        let spec = ConfSpec {
            settings: vec![("work_mem = 1\nfsync".into(), "x".into())],
            preload: vec![],
        };
        assert!(spec.validate().is_err());
    }

    #[test]
    fn identifiers_conninfo_and_urls_are_escaped() {
        assert_eq!(quote_ident(r#"a"b"#), r#""a""b""#);
        assert_eq!(conninfo_value("/tmp/x"), "/tmp/x");
        assert_eq!(conninfo_value("a b'c"), r"'a b\'c'");
        assert_eq!(conninfo_value(""), "''");
        assert_eq!(percent_encode("p@ss:w/rd é"), "p%40ss%3Aw%2Frd%20%C3%A9");
    }

    #[test]
    fn hba_asks_for_a_password_over_tcp_only_when_set() {
        assert!(!hba(false).contains("scram"));
        let with = hba(true);
        assert!(with.contains("127.0.0.1/32   scram-sha-256"));
        assert!(with.contains("local   all          all                  trust"));
    }
}
