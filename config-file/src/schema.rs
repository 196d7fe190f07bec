//! A configuration file's tables as a [`Schema`], and what is read against it: the
//! typed parse with located errors ([`parse`]), every unknown key with the valid
//! ones and the one probably meant, and the list of all keys ([`schema_keys`]).

use std::collections::BTreeSet;
use std::path::Path;

use serde::de::DeserializeOwned;
use toml::de::{DeTable, DeValue};

use crate::text::{
    ConfigError, UnknownKey, join_key, key_at, location, snippet, syntax_message,
    table_header_before,
};

/// The tables of one configuration file. Each binary implements it on a small
/// enum whose [`Schema::fields`] come from the serde derives ([`crate::fields_of`]),
/// so the lists cannot drift from the structs.
pub trait Schema: Copy + Eq + 'static {
    /// The top level of the file.
    const ROOT: Self;
    /// Every table below the top level, in schema order.
    const TABLES: &'static [Self];

    /// The keys this table accepts.
    fn fields(self) -> &'static [&'static str];

    /// The table's path: `store`, `alerting.webhooks`; empty for the top level.
    fn name(self) -> &'static str;

    /// Whether the table is an array of tables (`[[postgres]]`).
    fn is_array(self) -> bool;

    /// How reports name the table: `[store]`, `[[postgres]]`, `the top level`.
    fn header(self) -> String {
        if self == Self::ROOT {
            "the top level".to_owned()
        } else if self.is_array() {
            format!("[[{}]]", self.name())
        } else {
            format!("[{}]", self.name())
        }
    }

    /// The sub-table `key` of this table, when it has a schema of its own (a free
    /// table such as `agents.labels` has none).
    fn child(self, key: &str) -> Option<Self> {
        let path = join_key(self.name(), key);
        Self::TABLES.iter().copied().find(|t| t.name() == path)
    }
}

/// Every key the file accepts, as `table.key` (`store.max_bytes`; `postgres.name`
/// for the keys of each `[[postgres]]` table), in schema order.
pub fn schema_keys<S: Schema>() -> Vec<String> {
    S::TABLES
        .iter()
        .flat_map(|t| t.fields().iter().map(move |f| join_key(t.name(), f)))
        .collect()
}

/// Every key `text` sets, in the notation of [`schema_keys`] (`store.max_bytes`;
/// `postgres.name` for a key of any `[[postgres]]` table, `alerting.webhooks.url`
/// for one of an `[[alerting.webhooks]]` table); a key at the top level that is not
/// a table stands alone. What an example file is checked against.
pub fn keys_set(text: &str) -> Result<BTreeSet<String>, toml::de::Error> {
    fn tables(v: &toml::Value) -> Vec<&toml::Table> {
        match v {
            toml::Value::Table(t) => vec![t],
            toml::Value::Array(items) => items.iter().filter_map(|i| i.as_table()).collect(),
            _ => vec![],
        }
    }
    let doc: toml::Table = toml::from_str(text)?;
    let mut keys = BTreeSet::new();
    for (table, value) in &doc {
        if !value.is_table() && !value.is_array() {
            keys.insert(table.clone());
        }
        for t in tables(value) {
            for (key, v) in t {
                keys.insert(join_key(table, key));
                if v.is_array() {
                    for sub in tables(v) {
                        keys.extend(sub.keys().map(|k| format!("{table}.{key}.{k}")));
                    }
                }
            }
        }
    }
    Ok(keys)
}

/// The text of an example configuration with its commented-out settings switched
/// on: a line `# key = value` or `# [table]` (`# [[table]]`) loses its `# `; prose
/// comments stay comments. With [`keys_set`], what shows that an example documents
/// every key of the schema.
pub fn uncomment_settings(text: &str) -> String {
    text.lines()
        .map(|line| {
            let rest = line.strip_prefix("# ").unwrap_or(line);
            let is_setting = rest.starts_with('[')
                || rest
                    .split_once(" = ")
                    .is_some_and(|(k, _)| k.chars().all(|c| c.is_ascii_lowercase() || c == '_'));
            if line.starts_with("# ") && is_setting {
                rest
            } else {
                line
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Parses the text of a configuration file into `T`; `path` only names the file in
/// errors. Reports TOML syntax errors, then every unknown key (in file order), then
/// the first mistyped value, each with line and column. `hint` may add advice to a
/// mistyped value's message: it gets the key as a path (`postgres[1].port`) and
/// the parser's message, and its answer follows after `; `. Does not validate.
pub fn parse<T, S>(
    text: &str,
    path: &Path,
    hint: impl Fn(&str, &str) -> Option<String>,
) -> Result<T, ConfigError>
where
    T: DeserializeOwned,
    S: Schema,
{
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
    find_unknown_keys(doc.get_ref(), S::ROOT, "", text, &mut unknown);
    if !unknown.is_empty() {
        unknown.sort_by_key(|k| k.at.map(|l| (l.line, l.column)));
        return Err(ConfigError::UnknownKeys {
            path: path.to_owned(),
            keys: unknown,
        });
    }

    toml::from_str::<T>(text).map_err(|e| {
        let span = e.span();
        let key = span
            .as_ref()
            .and_then(|s| key_at(doc.get_ref(), "", s.start));
        let mut message = e.message().trim().to_owned();
        if let Some(k) = key.as_deref() {
            let array = S::TABLES.iter().find(|t| t.is_array() && t.name() == k);
            if let Some(t) = array
                && message.contains("expected a sequence")
            {
                message.push_str(&format!(
                    "; write {} with double brackets: each entry is one table of an array \
                     of tables",
                    t.header()
                ));
            }
            if let Some(h) = hint(k, &message) {
                message.push_str("; ");
                message.push_str(&h);
            }
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

fn find_unknown_keys<S: Schema>(
    table: &DeTable<'_>,
    schema: S,
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

/// The key probably meant by `unknown` in `schema`: a key of the same table
/// ([`closest`]), else the same key in another table (`intervals.fast_secs`).
fn suggest<S: Schema>(unknown: &str, schema: S) -> Option<String> {
    if let Some(f) = closest(unknown, schema.fields()) {
        return Some(f.to_owned());
    }
    let lower = normalize(unknown);
    S::TABLES
        .iter()
        .copied()
        .chain([S::ROOT])
        .filter(|t| *t != schema)
        .find(|t| t.fields().contains(&lower.as_str()))
        .map(|t| join_key(t.name(), &lower))
}

/// The key of `valid` probably meant by `unknown`: one edit away (two for keys of
/// more than four characters), counting a swap of neighbours as one edit (`hots` →
/// `host`), or the key that only adds a unit suffix (`fast` → `fast_secs`). Case
/// and `-` for `_` are forgiven. The nearest wins; `None` when none is near.
pub fn closest<'a>(unknown: &str, valid: &[&'a str]) -> Option<&'a str> {
    let lower = normalize(unknown);
    valid
        .iter()
        .filter_map(|&f| {
            let d = strsim::osa_distance(&lower, f);
            let suffix = f
                .strip_prefix(lower.as_str())
                .is_some_and(|r| r.starts_with('_'));
            let limit = if f.len() <= 4 { 1 } else { 2 };
            (d <= limit || suffix).then_some((d, f))
        })
        .min()
        .map(|(_, f)| f)
}

fn normalize(key: &str) -> String {
    key.to_ascii_lowercase().replace('-', "_")
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;
    use crate::fields_of;
    use crate::text::Location;

    #[test]
    fn keys_set_names_tables_arrays_of_tables_and_their_sub_tables() {
        let text = "top = 1\n[store]\nmax_bytes = 5\n[[agents]]\nname = \"a\"\nlabels = { env = \"x\" }\n\
                    [[agents]]\nurl = \"u\"\n[alerting]\nstep_secs = 1\n[[alerting.webhooks]]\nurl = \"w\"\n";
        let keys: Vec<String> = keys_set(text).unwrap().into_iter().collect();
        assert_eq!(
            keys,
            [
                "agents.labels",
                "agents.name",
                "agents.url",
                "alerting.step_secs",
                "alerting.webhooks",
                "alerting.webhooks.url",
                "store.max_bytes",
                "top"
            ]
        );
        assert!(keys_set("[store\n").is_err());
    }

    #[test]
    fn uncommenting_switches_settings_on_and_leaves_prose() {
        let text = "# How much to keep.\n# max_bytes = 5\n# [[agents]]\n# name = \"a\"\n\
                    # Set it = if you must.\nlive = 1";
        assert_eq!(
            uncomment_settings(text),
            "# How much to keep.\nmax_bytes = 5\n[[agents]]\nname = \"a\"\n\
             # Set it = if you must.\nlive = 1"
        );
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct File {
        store: Store,
        limits: Limits,
        hosts: Vec<Host>,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct Store {
        max_bytes: u64,
        block_secs: u64,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct Limits {
        fast_secs: u64,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct Host {
        name: String,
        port: u16,
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum T {
        Root,
        Store,
        Limits,
        Hosts,
    }

    impl Schema for T {
        const ROOT: T = T::Root;
        const TABLES: &'static [T] = &[T::Store, T::Limits, T::Hosts];
        fn fields(self) -> &'static [&'static str] {
            let of: [fn() -> &'static [&'static str]; 4] = [
                fields_of::<File>,
                fields_of::<Store>,
                fields_of::<Limits>,
                fields_of::<Host>,
            ];
            of[self as usize]()
        }
        fn name(self) -> &'static str {
            ["", "store", "limits", "hosts"][self as usize]
        }
        fn is_array(self) -> bool {
            self == T::Hosts
        }
    }

    fn parse_file(text: &str) -> Result<File, ConfigError> {
        parse::<File, T>(text, Path::new("x.toml"), |key, _| {
            (key == "limits.fast_secs").then(|| "write seconds".to_owned())
        })
    }

    #[test]
    fn keys_come_from_the_structs() {
        assert_eq!(
            schema_keys::<T>(),
            [
                "store.max_bytes",
                "store.block_secs",
                "limits.fast_secs",
                "hosts.name",
                "hosts.port"
            ]
        );
    }

    #[test]
    fn unknown_keys_are_all_reported_with_suggestions() {
        let text = "zzz = 1\n[store]\nmax_byte = 1\n[[hosts]]\nname = \"a\"\n[[hosts]]\n\
                    hots = 1\nMAX_BYTES = 2\nfast_secs = 3\n";
        let err = parse_file(text).unwrap_err();
        let valid_hosts = "valid keys there: name, port";
        assert_eq!(
            err.to_string().lines().collect::<Vec<_>>(),
            [
                "x.toml:1:1: unknown key `zzz` in the top level; valid keys there: store, \
                 limits, hosts"
                    .to_owned(),
                "x.toml:3:1: unknown key `store.max_byte` in [store]; valid keys there: \
                 max_bytes, block_secs; did you mean `max_bytes`?"
                    .to_owned(),
                format!("x.toml:7:1: unknown key `hosts[1].hots` in [[hosts]]; {valid_hosts}"),
                format!(
                    "x.toml:8:1: unknown key `hosts[1].MAX_BYTES` in [[hosts]]; {valid_hosts}; \
                     did you mean `store.max_bytes`?"
                ),
                format!(
                    "x.toml:9:1: unknown key `hosts[1].fast_secs` in [[hosts]]; {valid_hosts}; \
                     did you mean `limits.fast_secs`?"
                ),
            ]
        );
        let ConfigError::UnknownKeys { keys, .. } = err else {
            panic!("expected unknown keys");
        };
        assert_eq!(keys[1].at, Some(Location { line: 3, column: 1 }));
    }

    #[test]
    fn a_mistyped_value_is_located_and_hinted() {
        let err = parse_file("[limits]\nfast_secs = \"10\"\n").unwrap_err();
        let ConfigError::InvalidValue {
            key, at, message, ..
        } = &err
        else {
            panic!("expected an invalid value, got {err:?}");
        };
        assert_eq!(key.as_deref(), Some("limits.fast_secs"));
        assert_eq!(
            *at,
            Some(Location {
                line: 2,
                column: 13
            })
        );
        assert!(message.ends_with("; write seconds"), "{message}");
        let shown = parse_file("[hosts]\nname = \"a\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            shown.contains("write [[hosts]] with double brackets"),
            "{shown}"
        );
    }

    #[test]
    fn closest_key() {
        let valid = ["host", "port", "max_bytes", "fast_secs"];
        assert_eq!(closest("hots", &valid), Some("host"));
        assert_eq!(closest("Max-Byte", &valid), Some("max_bytes"));
        assert_eq!(closest("fast", &valid), Some("fast_secs"));
        assert_eq!(closest("hxxt", &valid), None);
        assert_eq!(closest("nothing", &valid), None);
    }
}
