//! Reading an agent's `GET /v1/status` answer (storage-format/PROTOCOL.md, "GET
//! /v1/status") for the inventory, leniently: whatever is absent or of the wrong
//! type is `None` and named in [`AgentStatus::missing`], never an error, so that an
//! older agent or a damaged answer never stops its pulls. A value the agent sends as
//! `null` (not known yet: the agent has not reached its server) is `None` and not
//! missing.

use serde_json::{Map, Value};

use super::ProtocolError;

/// What an agent reports of itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct AgentStatus {
    /// `agent_id`: the identity of its store.
    pub agent_id: Option<String>,
    /// `version`: the `pga-agent` version.
    pub version: Option<String>,
    /// `host`: the name of the host it runs on.
    pub host: Option<String>,
    /// `newest_sequence`: its newest sealed block.
    pub newest_sequence: Option<u64>,
    /// `instances`: the PostgreSQL instances it watches.
    pub instances: Vec<InstanceStatus>,
    /// Fields absent or of the wrong type, as paths (`host`,
    /// `instances[0].system_identifier`).
    pub missing: Vec<String>,
}

/// One PostgreSQL instance an agent watches, as it last saw it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct InstanceStatus {
    /// `name`: the agent's name for it (`[[postgres]] name`).
    pub name: String,
    /// `host`, `port`: where the agent connects to it.
    pub host: Option<String>,
    pub port: Option<u16>,
    /// `server_version` (`15.4 (Debian …)`) and `server_version_num` (`150004`).
    pub server_version: Option<String>,
    pub server_version_num: Option<i32>,
    /// `system_identifier`: the cluster's identity (a decimal string).
    pub system_identifier: Option<i64>,
    /// `in_recovery`: a standby (true) or a primary (false).
    pub in_recovery: Option<bool>,
    /// `databases`: the cluster's databases, templates left out.
    pub databases: Option<Vec<String>>,
}

/// Fields an agent of protocol 1.1 or newer sends; their absence is said.
const AGENT_FIELDS: [&str; 4] = ["agent_id", "version", "host", "instances"];
const INSTANCE_FIELDS: [&str; 7] = [
    "host",
    "port",
    "server_version",
    "server_version_num",
    "system_identifier",
    "in_recovery",
    "databases",
];

/// Reads a `/v1/status` body. Only a body that is not a JSON object is an error.
pub fn parse_status(body: &[u8]) -> Result<AgentStatus, ProtocolError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| ProtocolError::StatusNotJson(e.to_string()))?;
    let Value::Object(top) = value else {
        return Err(ProtocolError::StatusNotObject);
    };
    let mut r = Reader {
        missing: Vec::new(),
    };
    let mut status = AgentStatus {
        agent_id: r.string(&top, "", "agent_id"),
        version: r.string(&top, "", "version"),
        host: r.string(&top, "", "host"),
        newest_sequence: top.get("newest_sequence").and_then(Value::as_u64),
        ..AgentStatus::default()
    };
    match top.get("instances") {
        Some(Value::Array(list)) => {
            for (i, item) in list.iter().enumerate() {
                let path = format!("instances[{i}].");
                let Value::Object(o) = item else {
                    r.missing.push(format!("instances[{i}]"));
                    continue;
                };
                let Some(name) = r.string(o, &path, "name") else {
                    continue;
                };
                status.instances.push(InstanceStatus {
                    name,
                    host: r.string(o, &path, "host"),
                    port: r
                        .number(o, &path, "port")
                        .and_then(|n| u16::try_from(n).ok()),
                    server_version: r.string(o, &path, "server_version"),
                    server_version_num: r
                        .number(o, &path, "server_version_num")
                        .and_then(|n| i32::try_from(n).ok()),
                    system_identifier: r.identifier(o, &path, "system_identifier"),
                    in_recovery: r.boolean(o, &path, "in_recovery"),
                    databases: r.strings(o, &path, "databases"),
                });
            }
        }
        Some(Value::Null) | None => {}
        Some(_) => r.missing.push("instances".to_owned()),
    }
    for f in AGENT_FIELDS {
        if !top.contains_key(f) && !r.missing.iter().any(|m| m == f) {
            r.missing.push(f.to_owned());
        }
    }
    status.missing = r.missing;
    Ok(status)
}

/// Reads fields, noting those absent or of the wrong type.
struct Reader {
    missing: Vec<String>,
}

impl Reader {
    fn field<'a>(&mut self, o: &'a Map<String, Value>, path: &str, key: &str) -> Option<&'a Value> {
        match o.get(key) {
            None => {
                if !path.is_empty() && (key == "name" || INSTANCE_FIELDS.contains(&key)) {
                    self.missing.push(format!("{path}{key}"));
                }
                None
            }
            Some(Value::Null) => None,
            Some(v) => Some(v),
        }
    }

    fn wrong(&mut self, path: &str, key: &str) {
        self.missing.push(format!("{path}{key}"));
    }

    fn string(&mut self, o: &Map<String, Value>, path: &str, key: &str) -> Option<String> {
        match self.field(o, path, key)? {
            Value::String(s) => Some(s.clone()),
            _ => {
                self.wrong(path, key);
                None
            }
        }
    }

    fn number(&mut self, o: &Map<String, Value>, path: &str, key: &str) -> Option<i64> {
        match self.field(o, path, key)?.as_i64() {
            Some(n) => Some(n),
            None => {
                self.wrong(path, key);
                None
            }
        }
    }

    fn boolean(&mut self, o: &Map<String, Value>, path: &str, key: &str) -> Option<bool> {
        match self.field(o, path, key)? {
            Value::Bool(b) => Some(*b),
            _ => {
                self.wrong(path, key);
                None
            }
        }
    }

    /// A system identifier: a decimal string (or a number) that fits PostgreSQL's
    /// `bigint`, as `pg_control_system()` gives it.
    fn identifier(&mut self, o: &Map<String, Value>, path: &str, key: &str) -> Option<i64> {
        let parsed = match self.field(o, path, key)? {
            Value::String(s) => s.trim().parse::<i64>().ok(),
            Value::Number(n) => n.as_i64(),
            _ => None,
        };
        if parsed.is_none() {
            self.wrong(path, key);
        }
        parsed
    }

    fn strings(&mut self, o: &Map<String, Value>, path: &str, key: &str) -> Option<Vec<String>> {
        let list = match self.field(o, path, key)? {
            Value::Array(a) => a
                .iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>(),
            _ => None,
        };
        if list.is_none() {
            self.wrong(path, key);
        }
        list
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_answer_is_read() {
        let body = br#"{
            "agent_name": "db1", "agent_id": "87edd2b1-bff9-4639-996e-144fff6def85",
            "version": "3.0.0", "format_version": 1, "host": "db1.example.com",
            "newest_sequence": 42, "blocks": 3,
            "instances": [{
                "name": "main", "host": "/var/run/postgresql", "port": 5432,
                "server_version": "15.4", "server_version_num": 150004,
                "system_identifier": "7301234567890123456", "in_recovery": false,
                "databases": ["app", "postgres"], "updated_ms": 1
            }]
        }"#;
        let s = parse_status(body).unwrap();
        assert!(s.missing.is_empty(), "{:?}", s.missing);
        assert_eq!(s.host.as_deref(), Some("db1.example.com"));
        assert_eq!(s.newest_sequence, Some(42));
        let i = &s.instances[0];
        assert_eq!(i.system_identifier, Some(7_301_234_567_890_123_456));
        assert_eq!(i.in_recovery, Some(false));
        assert_eq!(
            i.databases.as_deref(),
            Some(&["app".to_owned(), "postgres".to_owned()][..])
        );
    }

    #[test]
    fn missing_and_malformed_fields_are_named_not_fatal() {
        // An agent before protocol 1.1: no host, no instances.
        let s = parse_status(br#"{"agent_id": "x", "version": "3.0.0"}"#).unwrap();
        assert_eq!(s.missing, ["host", "instances"]);
        // Nulls are "not known yet", wrong types are said.
        let s = parse_status(
            br#"{"agent_id": "x", "version": 3, "host": "h", "instances": [
                {"name": "a", "host": null, "port": null, "server_version": null,
                 "server_version_num": null, "system_identifier": "not a number",
                 "in_recovery": "yes", "databases": [1]},
                {"host": "nameless"}, 7]}"#,
        )
        .unwrap();
        assert_eq!(
            s.missing,
            [
                "version",
                "instances[0].system_identifier",
                "instances[0].in_recovery",
                "instances[0].databases",
                "instances[1].name",
                "instances[2]"
            ]
        );
        assert_eq!(s.instances.len(), 1);
        assert_eq!(s.instances[0].port, None);
        assert!(parse_status(b"[1]").is_err());
        assert!(parse_status(b"garbage").is_err());
    }
}
