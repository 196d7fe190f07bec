//! Where in a configuration file: errors that say where (line, column, key, the
//! table header above), and the helpers that find a key, a line and a table header
//! from a byte offset the TOML parser reports.

use std::cell::Cell;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{self, DeserializeOwned, Visitor};
use toml::de::{DeTable, DeValue};

/// A line and column in the configuration file, both counted from 1 (columns in
/// characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// Line, from 1.
    pub line: u32,
    /// Column, from 1, in characters.
    pub column: u32,
}

/// A key the schema does not have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownKey {
    /// The key as a path: `store.max_byte`, `agents[0].nmae`.
    pub key: String,
    /// The table it is in: `[store]`, `[[postgres]]`, or `the top level`.
    pub table: String,
    /// The keys that table accepts.
    pub valid: Vec<&'static str>,
    /// The key probably meant (`max_bytes`, or `intervals.fast_secs` when the key
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
        /// The table header above the error, if any (`[store]`).
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
    /// A value has the wrong type or does not fit (`fast_secs = "10"`,
    /// `port = 70000`).
    #[error("{}{}: {}{message}\n{snippet}", path.display(), fmt_at(*at),
        key.as_ref().map(|k| format!("{k}: ")).unwrap_or_default())]
    InvalidValue {
        /// The file.
        path: PathBuf,
        /// Where the value is.
        at: Option<Location>,
        /// The key as a path (`intervals.fast_secs`), when it could be found.
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

/// toml's message, with the key named when the parser only says "duplicate key".
pub fn syntax_message(message: &str, text: &str, span: Option<std::ops::Range<usize>>) -> String {
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

/// The field names a serde-derived struct accepts, captured by a deserializer
/// that only records what `deserialize_struct` is told.
pub fn fields_of<T: DeserializeOwned>() -> &'static [&'static str] {
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

/// `prefix.key`, or `key` at the top level (`prefix` empty).
pub fn join_key(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

/// The deepest key whose value contains byte `offset`, as a path.
pub fn key_at(table: &DeTable<'_>, prefix: &str, offset: usize) -> Option<String> {
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
pub fn location(text: &str, offset: usize) -> Location {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    Location {
        line: u32::try_from(before.matches('\n').count() + 1).unwrap_or(u32::MAX),
        column: u32::try_from(before[line_start..].chars().count() + 1).unwrap_or(u32::MAX),
    }
}

/// The line holding `span` with carets under it:
///
/// ```text
///    3 | fast_secs = "ten"
///      |             ^^^^^
/// ```
pub fn snippet(text: &str, span: std::ops::Range<usize>) -> String {
    let at = location(text, span.start);
    let line = text.lines().nth(at.line as usize - 1).unwrap_or("");
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
        " ".repeat(at.column as usize - 1),
        "^".repeat(width),
    )
}

/// The last table header (`[store]`, `[[postgres]]`) above byte `offset`.
pub fn table_header_before(text: &str, offset: usize) -> Option<String> {
    let at = location(text, offset);
    text.lines()
        .take(at.line.saturating_sub(1) as usize)
        .filter_map(|l| {
            let l = l.split('#').next().unwrap_or("").trim();
            (l.starts_with('[') && l.ends_with(']')).then(|| l.to_owned())
        })
        .last()
}
