//! Parsing the text of `agent.toml`, with errors that say where: line, column,
//! key, and for unknown keys the valid ones and the one probably meant.

use std::path::Path;

pub use pga_format::config_text::{ConfigError, Location, UnknownKey};
use pga_format::config_text::{
    edit_distance, fields_of, join_key, key_at, location, snippet, syntax_message,
    table_header_before,
};
use toml::de::{DeTable, DeValue};

use super::{
    AgentConfig, AgentSection, Collectors, EndpointConfig, Intervals, LogsConfig, PostgresInstance,
    StoreConfig,
};

impl AgentConfig {
    /// Parses the text of an `agent.toml`; `path` only names the file in errors.
    /// Reports TOML syntax errors, then every unknown key, then the first mistyped
    /// value, each with line and column. Does not validate.
    pub fn parse(text: &str, path: &Path) -> Result<AgentConfig, ConfigError> {
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
        find_unknown_keys(doc.get_ref(), &Schema::Root, "", text, &mut unknown);
        if !unknown.is_empty() {
            unknown.sort_by_key(|k| k.at.map(|l| (l.line, l.column)));
            return Err(ConfigError::UnknownKeys {
                path: path.to_owned(),
                keys: unknown,
            });
        }

        toml::from_str::<AgentConfig>(text).map_err(|e| {
            let span = e.span();
            let key = span
                .as_ref()
                .and_then(|s| key_at(doc.get_ref(), "", s.start));
            let mut message = e.message().trim().to_owned();
            if key.as_deref() == Some("postgres") && message.contains("expected a sequence") {
                message.push_str(
                    "; write [[postgres]] with double brackets: each instance is one entry \
                     of an array of tables",
                );
            }
            if let Some(hint) = key.as_deref().and_then(number_hint) {
                message.push_str("; ");
                message.push_str(&hint);
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

/// How to write the number `key` takes (`intervals.fast_secs`, `postgres[1].port`):
/// its unit, an example with its default, and its range. `None` for a key that is
/// not a number. The default comes from the schema's defaults and the range from
/// the checks of [`AgentConfig::validate`], asked with out-of-range values, so the
/// hint never disagrees with them.
fn number_hint(key: &str) -> Option<String> {
    let (table, field) = key.split_once('.')?;
    let (table, array) = match table.split_once('[') {
        Some((t, _)) => (t, true),
        None => (table, false),
    };
    let defaults = toml::Value::try_from(AgentConfig {
        postgres: vec![PostgresInstance::default()],
        ..AgentConfig::default()
    })
    .ok()?;
    let section = match defaults.get(table)? {
        toml::Value::Array(items) if array => items.first()?,
        v => v,
    };
    let default = section.get(field)?.as_integer()?;
    let unit = if field.ends_with("_secs") {
        "a whole number of seconds"
    } else if field.ends_with("_ms") {
        "a whole number of milliseconds"
    } else if field.ends_with("_bytes") {
        "a whole number of bytes"
    } else {
        "a whole number"
    };
    let header = if array {
        format!("[[{table}]]\nname = \"x\"\n")
    } else {
        format!("[{table}]\n")
    };
    let problem_key = if array {
        format!("{table}[0].{field}")
    } else {
        format!("{table}.{field}")
    };
    // The smallest and the largest value the key's type holds (0 and u32::MAX, or
    // i64::MAX for a u64: whichever parses), as the checks answer them.
    let mut fixes: Vec<String> = Vec::new();
    for v in [0i64, i64::from(u32::MAX), i64::MAX] {
        let text = format!("{header}{field} = {v}\n");
        let Ok(cfg) = AgentConfig::parse(&text, Path::new("probe")) else {
            continue;
        };
        for p in cfg.validate() {
            if p.key == problem_key && !fixes.contains(&p.fix) {
                fixes.push(p.fix);
            }
        }
    }
    let mut hint = format!("write {unit}, without quotes or a unit: {field} = {default}");
    if !fixes.is_empty() {
        hint.push_str(&format!(" ({})", fixes.join("; ")));
    }
    Some(hint)
}

/// Every key `agent.toml` accepts, as `table.key` (`store.max_bytes`;
/// `postgres.name` for the keys of each `[[postgres]]` table), in schema order.
/// Read from the serde derives, so it always matches what the parser accepts.
pub fn schema_keys() -> Vec<String> {
    Schema::TABLES
        .into_iter()
        .flat_map(|t| t.fields().iter().map(move |f| join_key(t.name(), f)))
        .collect()
}

/// The tables of the schema, for unknown-key reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Schema {
    Root,
    Agent,
    Intervals,
    Store,
    Collectors,
    Endpoint,
    Logs,
    Postgres,
}

impl Schema {
    const TABLES: [Schema; 7] = [
        Schema::Agent,
        Schema::Intervals,
        Schema::Store,
        Schema::Collectors,
        Schema::Endpoint,
        Schema::Logs,
        Schema::Postgres,
    ];

    /// The keys this table accepts, read from the serde derive itself so the list
    /// cannot drift from the structs.
    fn fields(self) -> &'static [&'static str] {
        match self {
            Schema::Root => fields_of::<AgentConfig>(),
            Schema::Agent => fields_of::<AgentSection>(),
            Schema::Intervals => fields_of::<Intervals>(),
            Schema::Store => fields_of::<StoreConfig>(),
            Schema::Collectors => fields_of::<Collectors>(),
            Schema::Endpoint => fields_of::<EndpointConfig>(),
            Schema::Logs => fields_of::<LogsConfig>(),
            Schema::Postgres => fields_of::<PostgresInstance>(),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Schema::Root => "",
            Schema::Agent => "agent",
            Schema::Intervals => "intervals",
            Schema::Store => "store",
            Schema::Collectors => "collectors",
            Schema::Endpoint => "endpoint",
            Schema::Logs => "logs",
            Schema::Postgres => "postgres",
        }
    }

    fn header(self) -> String {
        match self {
            Schema::Root => "the top level".to_owned(),
            Schema::Postgres => "[[postgres]]".to_owned(),
            s => format!("[{}]", s.name()),
        }
    }

    fn child(key: &str) -> Option<Schema> {
        Self::TABLES.into_iter().find(|t| t.name() == key)
    }
}

fn find_unknown_keys(
    table: &DeTable<'_>,
    schema: &Schema,
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
                suggestion: suggest(name, *schema),
                at: Some(location(text, key.span().start)),
            });
            continue;
        }
        if *schema != Schema::Root {
            continue;
        }
        let Some(child) = Schema::child(name) else {
            continue;
        };
        match value.get_ref() {
            DeValue::Table(t) => find_unknown_keys(t, &child, &path, text, out),
            DeValue::Array(items) if child == Schema::Postgres => {
                for (i, item) in items.iter().enumerate() {
                    if let DeValue::Table(t) = item.get_ref() {
                        find_unknown_keys(t, &child, &format!("{path}[{i}]"), text, out);
                    }
                }
            }
            // A wrong type is reported by the typed parse that follows.
            _ => {}
        }
    }
}

/// The key probably meant by `unknown` in `schema`: a key of the same table one or
/// two edits away or that only adds the unit suffix (`fast` → `fast_secs`), else
/// the same key in another table (`intervals.fast_secs`).
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

    fn parse(text: &str) -> Result<AgentConfig, ConfigError> {
        AgentConfig::parse(text, Path::new("agent.toml"))
    }

    #[test]
    fn fields_come_from_the_structs() {
        assert_eq!(
            Schema::Root.fields(),
            [
                "agent",
                "intervals",
                "store",
                "collectors",
                "endpoint",
                "logs",
                "postgres"
            ]
        );
        assert_eq!(
            Schema::Store.fields(),
            ["max_bytes", "retention_secs", "block_secs"]
        );
        assert!(Schema::Postgres.fields().contains(&"statements_top_n"));
    }

    #[test]
    fn unknown_key_names_table_valid_keys_and_suggestion() {
        let text = "[agent]\nname = \"db1\"\n\n[store]\nmax_byte = 10\n";
        let Err(ConfigError::UnknownKeys { keys, .. }) = parse(text) else {
            panic!("expected unknown keys");
        };
        assert_eq!(keys.len(), 1);
        let k = &keys[0];
        assert_eq!(k.key, "store.max_byte");
        assert_eq!(k.table, "[store]");
        assert_eq!(k.valid, ["max_bytes", "retention_secs", "block_secs"]);
        assert_eq!(k.suggestion.as_deref(), Some("max_bytes"));
        assert_eq!(k.at, Some(Location { line: 5, column: 1 }));
        let shown = parse(text).unwrap_err().to_string();
        assert_eq!(
            shown,
            "agent.toml:5:1: unknown key `store.max_byte` in [store]; valid keys there: \
             max_bytes, retention_secs, block_secs; did you mean `max_bytes`?"
        );
    }

    #[test]
    fn unknown_keys_are_all_reported_in_file_order() {
        let text = "zzz = 1\n[intervals]\nfast = 5\n[[postgres]]\nname = \"a\"\n\
                    [[postgres]]\nname = \"b\"\nhots = \"x\"\n[collectors]\nfast_secs = 3\nbogus = true\n";
        let Err(ConfigError::UnknownKeys { keys, .. }) = parse(text) else {
            panic!("expected unknown keys");
        };
        let got: Vec<(&str, &str, Option<&str>)> = keys
            .iter()
            .map(|k| (k.key.as_str(), k.table.as_str(), k.suggestion.as_deref()))
            .collect();
        assert_eq!(
            got,
            [
                ("zzz", "the top level", None),
                ("intervals.fast", "[intervals]", Some("fast_secs")),
                ("postgres[1].hots", "[[postgres]]", Some("host")),
                (
                    "collectors.fast_secs",
                    "[collectors]",
                    Some("intervals.fast_secs")
                ),
                ("collectors.bogus", "[collectors]", None),
            ]
        );
        assert_eq!(keys[2].at, Some(Location { line: 8, column: 1 }));
    }

    #[test]
    fn syntax_error_reports_line_column_and_table() {
        let text = "[intervals]\nfast_secs = 10\n\n[store]\nmax_bytes = 1 GiB\n";
        let err = parse(text).unwrap_err();
        let ConfigError::Syntax {
            at, table, snippet, ..
        } = &err
        else {
            panic!("expected a syntax error, got {err:?}");
        };
        assert_eq!(at.map(|l| l.line), Some(5));
        assert!(at.is_some_and(|l| l.column >= 13), "{at:?}");
        assert_eq!(table.as_deref(), Some("[store]"));
        assert!(snippet.contains("5 | max_bytes = 1 GiB"), "{snippet}");
        let shown = err.to_string();
        assert!(shown.starts_with("agent.toml:5:"), "{shown}");
        assert!(shown.contains("in [store]"), "{shown}");
    }

    #[test]
    fn a_duplicate_key_is_named() {
        let err = parse("[agent]\nname = \"a\"\nname = \"b\"\n").unwrap_err();
        let ConfigError::Syntax { at, message, .. } = &err else {
            panic!("expected a syntax error, got {err:?}");
        };
        assert_eq!(*at, Some(Location { line: 3, column: 1 }));
        assert!(message.contains("duplicate key `name`"), "{message}");
    }

    #[test]
    fn wrong_type_names_the_key_and_position() {
        let text = "[intervals]\nfast_secs = \"ten\"\n";
        let err = parse(text).unwrap_err();
        let ConfigError::InvalidValue { at, key, .. } = &err else {
            panic!("expected an invalid value, got {err:?}");
        };
        assert_eq!(key.as_deref(), Some("intervals.fast_secs"));
        assert_eq!(
            *at,
            Some(Location {
                line: 2,
                column: 13
            })
        );
        let shown = err.to_string();
        assert!(
            shown.starts_with("agent.toml:2:13: intervals.fast_secs: "),
            "{shown}"
        );

        let text = "[[postgres]]\nname = \"a\"\n[[postgres]]\nname = \"b\"\nport = 70000\n";
        let err = parse(text).unwrap_err();
        let ConfigError::InvalidValue { key, at, .. } = &err else {
            panic!("expected an invalid value, got {err:?}");
        };
        assert_eq!(key.as_deref(), Some("postgres[1].port"));
        assert_eq!(at.map(|l| l.line), Some(5));
    }

    #[test]
    fn a_number_written_wrong_gets_its_unit_range_and_an_example() {
        for (text, key, expect) in [
            (
                "[intervals]\nfast_secs = \"10s\"\n",
                "intervals.fast_secs",
                "write a whole number of seconds, without quotes or a unit: fast_secs = 10 \
                 (set it between 1 and 300 (default 10))",
            ),
            (
                "[intervals]\nslow_secs = -10\n",
                "intervals.slow_secs",
                "slow_secs = 60 (make slow_secs at least fast_secs (default 60); set it to at \
                 most 3600 (default 60))",
            ),
            (
                "[store]\nmax_bytes = \"1GiB\"\n",
                "store.max_bytes",
                "write a whole number of bytes, without quotes or a unit: max_bytes = 1073741824",
            ),
            (
                "[[postgres]]\nname = \"a\"\nstatement_timeout_ms = 1.5\n",
                "postgres[0].statement_timeout_ms",
                "statement_timeout_ms = 5000 (set it between 100 and 60000",
            ),
        ] {
            let err = parse(text).unwrap_err();
            let ConfigError::InvalidValue {
                key: k, message, ..
            } = &err
            else {
                panic!("expected an invalid value, got {err:?}");
            };
            assert_eq!(k.as_deref(), Some(key));
            assert!(message.contains(expect), "{message}");
        }
        // Not a number: no number hint.
        let err = parse("[agent]\nname = 5\n").unwrap_err();
        assert!(!err.to_string().contains("whole number"), "{err}");
    }

    #[test]
    fn a_single_bracket_postgres_table_gets_a_hint() {
        let err = parse("[postgres]\nname = \"main\"\n").unwrap_err();
        let shown = err.to_string();
        assert!(shown.contains("[[postgres]]"), "{shown}");
    }

    #[test]
    fn edit_distance_basics() {
        assert_eq!(edit_distance("max_byte", "max_bytes"), 1);
        assert_eq!(edit_distance("hots", "host"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("same", "same"), 0);
    }

    #[test]
    fn location_counts_characters() {
        let text = "a = 1\nbé = 2\n";
        let off = text.find('2').unwrap();
        assert_eq!(location(text, off), Location { line: 2, column: 6 });
    }
}
