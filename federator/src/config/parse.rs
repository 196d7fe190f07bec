//! Parsing the text of `federator.toml`, with errors that say where: line, column,
//! key, and for unknown keys the valid ones and the one probably meant.

use std::path::Path;

use pga_config::fields_of;
pub use pga_config::{ConfigError, Location, UnknownKey};

use super::{
    AgentEntry, AlertingConfig, AlertmanagerEntry, ApiConfig, BackfillConfig, ClusterConfig,
    DatabaseConfig, FederatorConfig, MetricsConfig, RemoteWriteEntry, RetentionConfig,
    RollupsConfig, ScrapeConfig, TlsConfig, WebhookEntry,
};

impl FederatorConfig {
    /// Parses the text of a `federator.toml`; `path` only names the file in errors.
    /// Reports TOML syntax errors, then every unknown key, then the first mistyped
    /// value, each with line and column. Does not validate.
    pub fn parse(text: &str, path: &Path) -> Result<FederatorConfig, ConfigError> {
        pga_config::parse::<FederatorConfig, Schema>(text, path, |_, _| None)
    }
}

/// Every key `federator.toml` accepts, as `table.key` (`scrape.schedule`;
/// `agents.name` for the keys of each `[[agents]]` table), in schema order. Read
/// from the serde derives, so it always matches what the parser accepts.
pub fn schema_keys() -> Vec<String> {
    pga_config::schema_keys::<Schema>()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Schema {
    Root,
    Database,
    Tls,
    Scrape,
    Backfill,
    Retention,
    Rollups,
    Metrics,
    Api,
    Alerting,
    Alertmanagers,
    Webhooks,
    Cluster,
    Agents,
    RemoteWrite,
}

impl pga_config::Schema for Schema {
    const ROOT: Schema = Schema::Root;
    const TABLES: &'static [Schema] = &[
        Schema::Database,
        Schema::Tls,
        Schema::Scrape,
        Schema::Backfill,
        Schema::Retention,
        Schema::Rollups,
        Schema::Metrics,
        Schema::Api,
        Schema::Alerting,
        Schema::Alertmanagers,
        Schema::Webhooks,
        Schema::Cluster,
        Schema::Agents,
        Schema::RemoteWrite,
    ];

    fn fields(self) -> &'static [&'static str] {
        match self {
            Schema::Root => fields_of::<FederatorConfig>(),
            Schema::Database => fields_of::<DatabaseConfig>(),
            Schema::Tls => fields_of::<TlsConfig>(),
            Schema::Scrape => fields_of::<ScrapeConfig>(),
            Schema::Backfill => fields_of::<BackfillConfig>(),
            Schema::Retention => fields_of::<RetentionConfig>(),
            Schema::Rollups => fields_of::<RollupsConfig>(),
            Schema::Metrics => fields_of::<MetricsConfig>(),
            Schema::Api => fields_of::<ApiConfig>(),
            Schema::Alerting => fields_of::<AlertingConfig>(),
            Schema::Alertmanagers => fields_of::<AlertmanagerEntry>(),
            Schema::Webhooks => fields_of::<WebhookEntry>(),
            Schema::Cluster => fields_of::<ClusterConfig>(),
            Schema::Agents => fields_of::<AgentEntry>(),
            Schema::RemoteWrite => fields_of::<RemoteWriteEntry>(),
        }
    }

    /// The table's path; `[alerting]`'s receivers are sub-tables of it (and
    /// `agents.labels` is free).
    fn name(self) -> &'static str {
        match self {
            Schema::Root => "",
            Schema::Database => "database",
            Schema::Tls => "tls",
            Schema::Scrape => "scrape",
            Schema::Backfill => "backfill",
            Schema::Retention => "retention",
            Schema::Rollups => "rollups",
            Schema::Metrics => "metrics",
            Schema::Api => "api",
            Schema::Alerting => "alerting",
            Schema::Alertmanagers => "alerting.alertmanagers",
            Schema::Webhooks => "alerting.webhooks",
            Schema::Cluster => "cluster",
            Schema::Agents => "agents",
            Schema::RemoteWrite => "remote_write",
        }
    }

    fn is_array(self) -> bool {
        matches!(
            self,
            Schema::Agents | Schema::Alertmanagers | Schema::Webhooks | Schema::RemoteWrite
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pga_config::Schema as _;

    fn parse(text: &str) -> Result<FederatorConfig, ConfigError> {
        FederatorConfig::parse(text, Path::new("federator.toml"))
    }

    #[test]
    fn fields_come_from_the_structs() {
        assert_eq!(
            Schema::Root.fields(),
            [
                "database",
                "tls",
                "scrape",
                "backfill",
                "retention",
                "rollups",
                "metrics",
                "api",
                "alerting",
                "cluster",
                "agents",
                "remote_write"
            ]
        );
        assert_eq!(
            Schema::Agents.fields(),
            ["name", "url", "labels", "schedule"]
        );
    }

    #[test]
    fn unknown_keys_name_table_valid_keys_and_suggestion() {
        let text = "[scrape]\nschedul = \"* * * * * *\"\njitter = 5\n[[agents]]\nname = \"a\"\n\
                    [[agents]]\nname = \"b\"\nnmae = \"c\"\nraw_secs = 3\n[agents.labels]\nanything = \"x\"\n";
        let err = parse(text).unwrap_err();
        let ConfigError::UnknownKeys { keys, .. } = &err else {
            panic!("expected unknown keys, got {err:?}");
        };
        let got: Vec<(&str, &str, Option<&str>)> = keys
            .iter()
            .map(|k| (k.key.as_str(), k.table.as_str(), k.suggestion.as_deref()))
            .collect();
        assert_eq!(
            got,
            [
                ("scrape.schedul", "[scrape]", Some("schedule")),
                ("scrape.jitter", "[scrape]", Some("jitter_ms")),
                ("agents[1].nmae", "[[agents]]", Some("name")),
                (
                    "agents[1].raw_secs",
                    "[[agents]]",
                    Some("retention.raw_secs")
                ),
            ]
        );
        assert_eq!(keys[0].at, Some(Location { line: 2, column: 1 }));
        let shown = err.to_string();
        assert!(
            shown.starts_with("federator.toml:2:1: unknown key `scrape.schedul` in [scrape]; valid keys there: schedule, jitter_ms"),
            "{shown}"
        );
    }

    #[test]
    fn wrong_type_names_the_key_and_position() {
        let err = parse("[[agents]]\nname = \"a\"\n[[agents]]\nname = 5\n").unwrap_err();
        let ConfigError::InvalidValue { key, at, .. } = &err else {
            panic!("expected an invalid value, got {err:?}");
        };
        assert_eq!(key.as_deref(), Some("agents[1].name"));
        assert_eq!(at, &Some(Location { line: 4, column: 8 }));
    }

    #[test]
    fn a_single_bracket_agents_table_gets_a_hint() {
        let shown = parse("[agents]\nname = \"a\"\n").unwrap_err().to_string();
        assert!(shown.contains("[[agents]]"), "{shown}");
    }

    #[test]
    fn syntax_errors_say_where() {
        let err = parse("[scrape]\nmax_response_bytes = 64 MiB\n").unwrap_err();
        let shown = err.to_string();
        assert!(shown.starts_with("federator.toml:2:"), "{shown}");
        assert!(shown.contains("in [scrape]"), "{shown}");
    }
}
