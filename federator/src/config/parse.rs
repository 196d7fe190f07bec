//! Parsing the text of `federator.toml`, with errors that say where: line, column,
//! key, and for unknown keys the valid ones and the one probably meant.

use std::cell::Cell;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{self, DeserializeOwned, Visitor};
use toml::de::{DeTable, DeValue};

use super::{
    AgentEntry, BackfillConfig, DatabaseConfig, FederatorConfig, MetricsConfig, RetentionConfig,
    ScrapeConfig, TlsConfig,
};

/// A line and column in the configuration file, both counted from 1 (columns in
/// characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1, in characters.
    pub column: usize,
}

/// A key the schema does not have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownKey {
    /// The key as a path: `scrape.schedul`, `agents[0].nmae`.
    pub key: String,
    /// The table it is in: `[scrape]`, `[[agents]]`, or `the top level`.
    pub table: String,
    /// The keys that table accepts.
    pub valid: Vec<&'static str>,
    /// The key probably meant (`schedule`, or `retention.raw_secs` when the key
    /// belongs to another table).
    pub suggestion: Option<String>,
    /// Where the key is.
    pub at: Option<Location>,
}

impl fmt::Display for UnknownKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown key `{}` in {}; valid keys there: {}",
            self.key,
            self.table,
            self.valid.join(", ")
        )?;
        if let Some(s) = &self.suggestion {
            write!(f, "; did you mean `{s}`?")?;
        }
        Ok(())
    }
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// `--config FILE` names a file that does not exist.
    #[error("config file {} does not exist", path.display())]
    NotFound {
        /// The file.
        path: PathBuf,
    },
    /// The file exists but cannot be read (permissions, not UTF-8, a directory).
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("{}{}: TOML syntax error{}: {message}\n{snippet}", path.display(), fmt_at(*at),
        table.as_ref().map(|t| format!(" in {t}")).unwrap_or_default())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// Where the parser stopped.
        at: Option<Location>,
        /// The table header above the error, if any (`[scrape]`).
        table: Option<String>,
        /// The parser's message.
        message: String,
        /// The offending line with a caret under the error.
        snippet: String,
    },
    /// The file has keys the schema does not have (all of them are listed).
    #[error("{}", fmt_unknown(path, keys))]
    UnknownKeys {
        /// The file.
        path: PathBuf,
        /// Every unknown key, in file order.
        keys: Vec<UnknownKey>,
    },
    /// A value has the wrong type or does not fit (`jitter_ms = "10"`,
    /// `max_concurrent = -1`).
    #[error("{}{}: {}{message}\n{snippet}", path.display(), fmt_at(*at),
        key.as_ref().map(|k| format!("{k}: ")).unwrap_or_default())]
    InvalidValue {
        /// The file.
        path: PathBuf,
        /// Where the value is.
        at: Option<Location>,
        /// The key as a path (`scrape.jitter_ms`), when it could be found.
        key: Option<String>,
        /// What is wrong.
        message: String,
        /// The offending line with a caret under the value.
        snippet: String,
    },
}

fn fmt_at(at: Option<Location>) -> String {
    at.map(|l| format!(":{}:{}", l.line, l.column))
        .unwrap_or_default()
}

fn fmt_unknown(path: &Path, keys: &[UnknownKey]) -> String {
    keys.iter()
        .map(|k| format!("{}{}: {k}", path.display(), fmt_at(k.at)))
        .collect::<Vec<_>>()
        .join("\n")
}
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

/// toml's message, with the key named when the parser only says "duplicate key".
fn syntax_message(message: &str, text: &str, span: Option<std::ops::Range<usize>>) -> String {
    let message = message.trim();
    let key = span
        .and_then(|s| text.get(s))
        .map(str::trim)
        .filter(|k| !k.is_empty() && !k.contains('\n'));
    match key {
        Some(k) if message == "duplicate key" => {
            format!("duplicate key `{k}`: each key may appear once per table")
        }
        _ => message.to_owned(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Schema {
    Root,
    Database,
    Tls,
    Scrape,
    Backfill,
    Retention,
    Metrics,
    Agents,
}

impl Schema {
    const TABLES: [Schema; 7] = [
        Schema::Database,
        Schema::Tls,
        Schema::Scrape,
        Schema::Backfill,
        Schema::Retention,
        Schema::Metrics,
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
            Schema::Metrics => fields_of::<MetricsConfig>(),
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
            Schema::Metrics => "metrics",
            Schema::Agents => "agents",
        }
    }

    fn header(self) -> String {
        match self {
            Schema::Root => "the top level".to_owned(),
            Schema::Agents => "[[agents]]".to_owned(),
            s => format!("[{}]", s.name()),
        }
    }

    fn child(key: &str) -> Option<Schema> {
        Self::TABLES.into_iter().find(|t| t.name() == key)
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
        // Only the top level has sub-tables with a schema (`agents.labels` is free).
        if schema != Schema::Root {
            continue;
        }
        let Some(child) = Schema::child(name) else {
            continue;
        };
        match value.get_ref() {
            DeValue::Table(t) => find_unknown_keys(t, child, &path, text, out),
            DeValue::Array(items) if child == Schema::Agents => {
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

fn fields_of<T: DeserializeOwned>() -> &'static [&'static str] {
    struct Probe<'a>(&'a Cell<&'static [&'static str]>);

    impl<'de> de::Deserializer<'de> for Probe<'_> {
        type Error = de::value::Error;

        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("not a struct"))
        }

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _visitor: V,
        ) -> Result<V::Value, Self::Error> {
            self.0.set(fields);
            Err(de::Error::custom("fields recorded"))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map
            enum identifier ignored_any
        }
    }

    let fields = Cell::new(&[][..]);
    let probed = T::deserialize(Probe(&fields));
    debug_assert!(probed.is_err(), "the probe never produces a value");
    fields.get()
}

fn join_key(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

/// Edit distance over characters counting insertions, deletions, substitutions
/// and swaps of two neighbours (`hots` → `host` is 1), the optimal-string-alignment
/// variant of Damerau–Levenshtein.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // d[i][j]: distance between a[..i] and b[..j].
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

/// The deepest key whose value contains byte `offset`, as a path.
fn key_at(table: &DeTable<'_>, prefix: &str, offset: usize) -> Option<String> {
    for (key, value) in table.iter() {
        let path = join_key(prefix, key.get_ref());
        match value.get_ref() {
            DeValue::Table(t) => {
                if let Some(found) = key_at(t, &path, offset) {
                    return Some(found);
                }
            }
            DeValue::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    let item_path = format!("{path}[{i}]");
                    if let DeValue::Table(t) = item.get_ref()
                        && let Some(found) = key_at(t, &item_path, offset)
                    {
                        return Some(found);
                    }
                    if item.span().contains(&offset) && !matches!(item.get_ref(), DeValue::Table(_))
                    {
                        return Some(item_path);
                    }
                }
            }
            _ => {}
        }
        if value.span().contains(&offset) || key.span().contains(&offset) {
            return Some(path);
        }
    }
    None
}

/// Line and column (from 1) of byte `offset` in `text`.
fn location(text: &str, offset: usize) -> Location {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    Location {
        line: before.matches('\n').count() + 1,
        column: before[line_start..].chars().count() + 1,
    }
}

/// The line holding `span` with carets under it:
///
/// ```text
///    3 | fast_secs = "ten"
///      |             ^^^^^
/// ```
fn snippet(text: &str, span: std::ops::Range<usize>) -> String {
    let at = location(text, span.start);
    let line = text.lines().nth(at.line - 1).unwrap_or("");
    let width = text
        .get(span.clone())
        .map(|s| s.lines().next().unwrap_or("").chars().count())
        .unwrap_or(1)
        .max(1);
    let gutter = at.line.to_string().len();
    format!(
        "{:>gutter$} |\n{} | {line}\n{:>gutter$} | {}{}",
        "",
        at.line,
        "",
        " ".repeat(at.column - 1),
        "^".repeat(width),
    )
}

/// The last table header (`[store]`, `[[postgres]]`) above byte `offset`.
fn table_header_before(text: &str, offset: usize) -> Option<String> {
    let at = location(text, offset);
    text.lines()
        .take(at.line.saturating_sub(1))
        .filter_map(|l| {
            let l = l.split('#').next().unwrap_or("").trim();
            (l.starts_with('[') && l.ends_with(']')).then(|| l.to_owned())
        })
        .last()
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
                "metrics",
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
