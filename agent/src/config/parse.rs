//! Parsing the text of `agent.toml`, with errors that say where: line, column,
//! key, and for unknown keys the valid ones and the one probably meant.

use std::path::Path;

use pga_config::fields_of;
use pga_config::units::Unit;
pub use pga_config::{ConfigError, Location, UnknownKey};

use super::{
    AgentConfig, AgentSection, Collectors, EndpointConfig, Intervals, LogsConfig, PostgresInstance,
    StoreConfig,
};

impl AgentConfig {
    /// Parses the text of an `agent.toml`; `path` only names the file in errors.
    /// Reports TOML syntax errors, then every unknown key, then the first mistyped
    /// value, each with line and column. Does not validate.
    pub fn parse(text: &str, path: &Path) -> Result<AgentConfig, ConfigError> {
        pga_config::parse::<AgentConfig, Schema>(text, path, |key, _| number_hint(key))
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
    let unit = Unit::of_key(field).map_or("a whole number", Unit::describe);
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
    pga_config::schema_keys::<Schema>()
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

impl pga_config::Schema for Schema {
    const ROOT: Schema = Schema::Root;
    const TABLES: &'static [Schema] = &[
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

    fn is_array(self) -> bool {
        self == Schema::Postgres
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pga_config::Schema as _;

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
    fn location_counts_characters() {
        let text = "a = 1\nbé = 2\n";
        let off = text.find('2').unwrap();
        assert_eq!(
            pga_config::location(text, off),
            Location { line: 2, column: 6 }
        );
    }
}
