//! Parsing the text of `federator.toml`, with errors that say where: line, column,
//! key, and for unknown keys the valid ones and the one probably meant.

use std::path::Path;

pub use pga_format::config_text::{ConfigError, Location, UnknownKey};
use pga_format::config_text::{
    edit_distance, fields_of, join_key, key_at, location, snippet, syntax_message,
    table_header_before,
};
use toml::de::{DeTable, DeValue};

use super::{
    AgentEntry, AlertingConfig, AlertmanagerEntry, ApiConfig, BackfillConfig, DatabaseConfig,
    FederatorConfig, MetricsConfig, RetentionConfig, RollupsConfig, ScrapeConfig, TlsConfig,
    WebhookEntry,
};

impl FederatorConfig {
    /// Parses the text of a `federator.toml`; `path` only names the file in errors.
    /// Reports TOML syntax errors, then every unknown key, then the first mistyped
    /// value, each with line and column. Does not validate.
    pub fn parse(text: &str, path: &Path) -> Result<FederatorConfig, ConfigError> {
        let doc = DeTable::parse(text).map_err(|e| {
            let span = e.span();
            ConfigError::Syntax {
                path: path.to_owned(),
                at: span.as_ref().map(|s| location(text, s.start)),
                table: span
                    .as_ref()
                    .and_then(|s| table_header_before(text, s.start)),
                message: syntax_message(e.message(), text, span.clone()),
                snippet: span.map(|s| snippet(text, s)).unwrap_or_default(),
            }
        })?;

        let mut unknown = Vec::new();
        find_unknown_keys(doc.get_ref(), Schema::Root, "", text, &mut unknown);
        if !unknown.is_empty() {
            unknown.sort_by_key(|k| k.at.map(|l| (l.line, l.column)));
            return Err(ConfigError::UnknownKeys {
                path: path.to_owned(),
                keys: unknown,
            });
        }

        toml::from_str::<FederatorConfig>(text).map_err(|e| {
            let span = e.span();
            let key = span
                .as_ref()
                .and_then(|s| key_at(doc.get_ref(), "", s.start));
            let mut message = e.message().trim().to_owned();
            if key.as_deref() == Some("agents") && message.contains("expected a sequence") {
                message.push_str(
                    "; write [[agents]] with double brackets: each agent is one entry \
                     of an array of tables",
                );
            }
            ConfigError::InvalidValue {
                path: path.to_owned(),
                at: span.as_ref().map(|s| location(text, s.start)),
                key,
                message,
                snippet: span.map(|s| snippet(text, s)).unwrap_or_default(),
            }
        })
    }
}

/// Every key `federator.toml` accepts, as `table.key` (`scrape.schedule`;
/// `agents.name` for the keys of each `[[agents]]` table), in schema order. Read
/// from the serde derives, so it always matches what the parser accepts.
pub fn schema_keys() -> Vec<String> {
    Schema::TABLES
        .into_iter()
        .flat_map(|t| t.fields().iter().map(move |f| join_key(t.name(), f)))
        .collect()
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
    Agents,
}

impl Schema {
    const TABLES: [Schema; 12] = [
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
        Schema::Agents,
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
            Schema::Agents => fields_of::<AgentEntry>(),
        }
    }

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
            Schema::Agents => "agents",
        }
    }

    fn header(self) -> String {
        match self {
            Schema::Root => "the top level".to_owned(),
            Schema::Agents => "[[agents]]".to_owned(),
            Schema::Alertmanagers => "[[alerting.alertmanagers]]".to_owned(),
            Schema::Webhooks => "[[alerting.webhooks]]".to_owned(),
            s => format!("[{}]", s.name()),
        }
    }

    /// The sub-table `key` of this table, if it has a schema.
    fn child(self, key: &str) -> Option<Schema> {
        match (self, key) {
            (Schema::Root, _) => Self::TABLES
                .into_iter()
                .find(|t| t.name() == key && !t.name().contains('.')),
            (Schema::Alerting, "alertmanagers") => Some(Schema::Alertmanagers),
            (Schema::Alerting, "webhooks") => Some(Schema::Webhooks),
            _ => None,
        }
    }

    /// Whether the table is an array of tables (`[[…]]`).
    fn is_array(self) -> bool {
        matches!(
            self,
            Schema::Agents | Schema::Alertmanagers | Schema::Webhooks
        )
    }
}

fn find_unknown_keys(
    table: &DeTable<'_>,
    schema: Schema,
    prefix: &str,
    text: &str,
    out: &mut Vec<UnknownKey>,
) {
    let valid = schema.fields();
    for (key, value) in table.iter() {
        let name: &str = key.get_ref();
        let path = join_key(prefix, name);
        if !valid.contains(&name) {
            out.push(UnknownKey {
                key: path,
                table: schema.header(),
                valid: valid.to_vec(),
                suggestion: suggest(name, schema),
                at: Some(location(text, key.span().start)),
            });
            continue;
        }
        // Sub-tables with a schema: the top level's, and [alerting]'s receivers
        // (`agents.labels` is free).
        let Some(child) = schema.child(name) else {
            continue;
        };
        match value.get_ref() {
            DeValue::Table(t) => find_unknown_keys(t, child, &path, text, out),
            DeValue::Array(items) if child.is_array() => {
                for (i, item) in items.iter().enumerate() {
                    if let DeValue::Table(t) = item.get_ref() {
                        find_unknown_keys(t, child, &format!("{path}[{i}]"), text, out);
                    }
                }
            }
            // A wrong type is reported by the typed parse that follows.
            _ => {}
        }
    }
}

/// The key probably meant by `unknown` in `schema`: a key of the same table one or
/// two edits away or that only adds the unit suffix (`jitter` → `jitter_ms`), else
/// the same key in another table (`retention.raw_secs`).
fn suggest(unknown: &str, schema: Schema) -> Option<String> {
    let lower = unknown.to_ascii_lowercase().replace('-', "_");
    let same_table = schema
        .fields()
        .iter()
        .filter_map(|&f| {
            let d = edit_distance(&lower, f);
            let suffix = f
                .strip_prefix(lower.as_str())
                .is_some_and(|r| r.starts_with('_'));
            let limit = if f.len() <= 4 { 1 } else { 2 };
            (d <= limit || suffix).then_some((d, f))
        })
        .min();
    if let Some((_, f)) = same_table {
        return Some(f.to_owned());
    }
    Schema::TABLES
        .into_iter()
        .chain([Schema::Root])
        .filter(|t| *t != schema)
        .find(|t| t.fields().contains(&lower.as_str()))
        .map(|t| join_key(t.name(), &lower))
}

#[cfg(test)]
mod tests {
    use super::*;

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
                "agents"
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
