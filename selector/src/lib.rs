//! # pga-selector
//!
//! Series selectors: `metric{label="value",label=~"regex"}`, as `pga-agent query`
//! and the federator's `/api/v1/query` and `/api/v1/series` read them.
//!
//! The grammar is PromQL's instant-vector selector:
//!
//! ```text
//! selector := [metric_name] ["{" [matcher ("," matcher)* [","]] "}"]
//! metric_name := [a-zA-Z_:][a-zA-Z0-9_:]*
//! matcher := label_name ("=" | "!=" | "=~" | "!~") value
//! label_name := [a-zA-Z_][a-zA-Z0-9_]*
//! value := '"' … '"' | "'" … "'" | "`" … "`"
//! ```
//!
//! - Whitespace is allowed between tokens.
//! - Quoted values take the escapes `\"`, `\'`, `\\`, `\n`, `\t` and `\r`; any other
//!   escape is an error (write `\\d` for a regex `\d`, or use a back-quoted raw value,
//!   in which nothing is an escape: `` {query=~`\d+`} ``).
//! - `__name__` matches the metric name, so `{__name__=~"pg_stat_.*"}` selects every
//!   `pg_stat_*` metric. Giving the name both before `{` and as `__name__` is an error.
//! - At least a metric name or one matcher is required.
//! - Regexes use the [`regex`] crate's syntax and are fully anchored, as in Prometheus:
//!   `=~"app.*"` is compiled as `^(?:app.*)$`, so it matches `app_1` but not `myapp`.
//! - A series that lacks a label has that label's value `""`: `{slot=""}` matches the
//!   series without a `slot` label, `{slot!=""}` those with one.
//!
//! Errors carry the 1-based column (in characters) of the offending character and
//! render the input with a caret under it.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use pga_format::SeriesMeta;
use regex::Regex;

/// The label name that stands for the metric name.
pub const NAME_LABEL: &str = "__name__";

/// How a matcher compares a label value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MatchOp {
    /// `=`: equal to the value.
    Equal,
    /// `!=`: not equal to the value.
    NotEqual,
    /// `=~`: matched in full by the regex.
    RegexMatch,
    /// `!~`: not matched in full by the regex.
    RegexNoMatch,
}

impl MatchOp {
    /// The operator as written in a selector.
    pub const fn as_str(self) -> &'static str {
        match self {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::RegexMatch => "=~",
            MatchOp::RegexNoMatch => "!~",
        }
    }

    const fn is_regex(self) -> bool {
        matches!(self, MatchOp::RegexMatch | MatchOp::RegexNoMatch)
    }
}

impl fmt::Display for MatchOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One `label op value` condition.
#[derive(Debug, Clone)]
pub struct Matcher {
    name: String,
    op: MatchOp,
    value: String,
    /// The anchored regex; `Some` exactly when `op` is a regex operator.
    regex: Option<Regex>,
}

impl Matcher {
    /// Builds a matcher; a regex operator compiles `value` anchored (`^(?:value)$`).
    pub fn new(
        name: impl Into<String>,
        op: MatchOp,
        value: impl Into<String>,
    ) -> Result<Self, regex::Error> {
        let value = value.into();
        let regex = if op.is_regex() {
            // Compile the pattern alone first so that a pattern like `a)(b` is rejected
            // instead of being completed by the anchoring wrapper.
            Regex::new(&value)?;
            Some(Regex::new(&format!("^(?:{value})$"))?)
        } else {
            None
        };
        Ok(Matcher {
            name: name.into(),
            op,
            value,
            regex,
        })
    }

    /// The label name (`__name__` for the metric name).
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn op(&self) -> MatchOp {
        self.op
    }

    /// The value or regex as written (unescaped, not anchored).
    pub fn value(&self) -> &str {
        &self.value
    }

    /// Whether a label value (`""` for a missing label) satisfies this matcher.
    pub fn matches_value(&self, v: &str) -> bool {
        match (self.op, &self.regex) {
            (MatchOp::Equal, _) => v == self.value,
            (MatchOp::NotEqual, _) => v != self.value,
            (MatchOp::RegexMatch, Some(re)) => re.is_match(v),
            (MatchOp::RegexNoMatch, Some(re)) => !re.is_match(v),
            // `new` always sets the regex for regex operators; match nothing rather
            // than panic should that invariant ever break.
            (MatchOp::RegexMatch | MatchOp::RegexNoMatch, None) => false,
        }
    }
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.op == other.op && self.value == other.value
    }
}

impl Eq for Matcher {}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}\"{}\"", self.name, self.op, escape(&self.value))
    }
}

/// `s` with `"`, `\`, newline, tab and carriage return escaped, as a quoted selector
/// value needs.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    pga_format::text::push_escaped(&mut out, s, &['"', '\\', '\n', '\t', '\r']);
    out
}

/// A parsed selector: all of its matchers must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector {
    matchers: Vec<Matcher>,
}

impl Selector {
    /// The selector that matches every series (what `pga-agent series` uses when no
    /// selector is given; the parser itself requires a name or a matcher).
    pub fn all() -> Self {
        Selector {
            matchers: Vec::new(),
        }
    }

    /// A selector from matchers built in code.
    pub fn from_matchers(matchers: Vec<Matcher>) -> Self {
        Selector { matchers }
    }

    /// The matchers in the order written; a metric name written before `{` comes first
    /// as `__name__ = "name"`.
    pub fn matchers(&self) -> &[Matcher] {
        &self.matchers
    }

    /// The exact metric name this selector requires, if it has an `__name__ =` matcher.
    /// A store can use it to narrow its scan before calling [`Selector::matches`].
    pub fn metric_name(&self) -> Option<&str> {
        self.matchers
            .iter()
            .find(|m| m.name == NAME_LABEL && m.op == MatchOp::Equal)
            .map(|m| m.value.as_str())
    }

    /// Whether the series satisfies every matcher (a missing label counts as `""`).
    pub fn matches(&self, meta: &SeriesMeta) -> bool {
        self.matchers.iter().all(|m| {
            let value = if m.name == NAME_LABEL {
                meta.name.as_str()
            } else {
                meta.labels
                    .iter()
                    .find(|(name, _)| *name == m.name)
                    .map_or("", |(_, value)| value.as_str())
            };
            m.matches_value(value)
        })
    }

    /// [`Selector::matches`] for a series given as a metric name and a label map
    /// (as the federator's central database holds it).
    pub fn matches_map(&self, metric: &str, labels: &BTreeMap<String, String>) -> bool {
        self.matchers.iter().all(|m| {
            let value = if m.name == NAME_LABEL {
                metric
            } else {
                labels.get(&m.name).map_or("", String::as_str)
            };
            m.matches_value(value)
        })
    }

    /// The label values this selector requires exactly (`label="value"` with a
    /// non-empty value, metric name excluded): what a database can look up by index
    /// before [`Selector::matches_map`] checks the rest.
    pub fn required_labels(&self) -> BTreeMap<&str, &str> {
        self.matchers
            .iter()
            .filter(|m| m.name != NAME_LABEL && m.op == MatchOp::Equal && !m.value.is_empty())
            .map(|m| (m.name.as_str(), m.value.as_str()))
            .collect()
    }
}

impl fmt::Display for Selector {
    /// The canonical text, which parses back to an equal selector (except
    /// [`Selector::all`], shown as `{}`, which the parser refuses).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.matchers.as_slice();
        if let Some((first, tail)) = rest.split_first()
            && first.name == NAME_LABEL
            && first.op == MatchOp::Equal
            && pga_format::is_valid_metric_name(&first.value)
        {
            f.write_str(&first.value)?;
            rest = tail;
            if rest.is_empty() {
                return Ok(());
            }
        }
        f.write_str("{")?;
        for (i, m) in rest.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            m.fmt(f)?;
        }
        f.write_str("}")
    }
}

impl FromStr for Selector {
    type Err = SelectorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse(s)
    }
}

/// A selector that does not parse: where and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
#[error(
    "selector error at column {column}: {message}\n{}",
    caret_lines(.input, .column)
)]
pub struct SelectorError {
    /// 1-based column, in characters, of the offending character (one past the end when
    /// the input ends too early).
    pub column: usize,
    pub message: String,
    /// The selector text as given.
    pub input: String,
}

/// The input line holding `column` and a caret under that column, each indented by two
/// spaces.
fn caret_lines(input: &str, column: &usize) -> String {
    let target = column.saturating_sub(1);
    // Find the line that holds the target character (or ends just before it).
    let mut line_start = 0;
    let mut line = "";
    let mut col_in_line = target;
    for (start_char, text) in lines_with_char_offsets(input) {
        if start_char > target {
            break;
        }
        line_start = start_char;
        line = text;
    }
    col_in_line -= line_start.min(col_in_line);
    // Keep tabs under tabs so the caret lines up however the terminal expands them.
    let pad: String = line
        .chars()
        .chain(std::iter::repeat(' '))
        .take(col_in_line)
        .map(|c| if c == '\t' { '\t' } else { ' ' })
        .collect();
    format!("  {line}\n  {pad}^")
}

/// Each line of `input` (without its `\n`) with the char offset it starts at.
fn lines_with_char_offsets(input: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut start_char = 0;
    for text in input.split('\n') {
        out.push((start_char, text));
        start_char += text.chars().count() + 1;
    }
    out
}

/// Parses a selector such as `pg_stat_database_xact_commit_total{datname=~"app.*"}`.
pub fn parse(input: &str) -> Result<Selector, SelectorError> {
    Parser {
        input,
        chars: input.chars().collect(),
        pos: 0,
    }
    .selector()
}

struct Parser<'a> {
    input: &'a str,
    chars: Vec<char>,
    /// Index into `chars`; the column is `pos + 1`.
    pos: usize,
}

/// A quoted value with, for each of its characters, the input index it came from.
struct Quoted {
    value: String,
    sources: Vec<usize>,
    /// Index of the opening quote.
    start: usize,
}

impl Parser<'_> {
    fn error(&self, pos: usize, message: impl Into<String>) -> SelectorError {
        SelectorError {
            column: pos + 1,
            message: message.into(),
            input: self.input.to_owned(),
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn peek_at(&self, offset: usize) -> Option<char> {
        self.chars.get(self.pos + offset).copied()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }

    /// Reads `first rest*` starting at `pos`; the caller checked `first`.
    fn ident(&mut self, rest: impl Fn(char) -> bool) -> String {
        let start = self.pos;
        self.pos += 1;
        while self.peek().is_some_and(&rest) {
            self.pos += 1;
        }
        self.chars[start..self.pos].iter().collect()
    }

    fn selector(mut self) -> Result<Selector, SelectorError> {
        let mut matchers = Vec::new();
        self.skip_ws();
        let name = match self.peek() {
            None => {
                return Err(self.error(
                    self.pos,
                    "empty selector: give a metric name such as pg_up, label matchers \
                     such as {datname=\"app\"}, or both",
                ));
            }
            Some(c) if is_name_start(c) => {
                let name = self.ident(is_name_char);
                matchers.push(Matcher {
                    name: NAME_LABEL.to_owned(),
                    op: MatchOp::Equal,
                    value: name.clone(),
                    regex: None,
                });
                Some(name)
            }
            Some('{') => None,
            Some(c) if c.is_ascii_digit() => {
                return Err(self.error(self.pos, "a metric name cannot start with a digit"));
            }
            Some('"' | '\'' | '`') => {
                return Err(self.error(
                    self.pos,
                    "quoted metric names are not supported: write the name bare (pg_up) \
                     or match it with {__name__=~\"…\"}",
                ));
            }
            Some(c) => {
                return Err(self.error(
                    self.pos,
                    format!("expected a metric name or '{{' but found {c:?}"),
                ));
            }
        };
        self.skip_ws();
        match (self.peek(), &name) {
            (None, _) => {}
            (Some('{'), _) => self.matchers(&mut matchers, name.is_some())?,
            (Some(c), Some(name)) => return Err(self.after_name_error(c, name)),
            (Some(c), None) => {
                return Err(self.error(self.pos, format!("unexpected {c:?}")));
            }
        }
        self.skip_ws();
        if let Some(c) = self.peek() {
            let message = if c == '[' {
                "range selectors such as [5m] are not supported here: choose the window \
                 with the step and a function such as rate"
                    .to_owned()
            } else {
                format!("unexpected {c:?} after '}}': the selector ends at the '}}'")
            };
            return Err(self.error(self.pos, message));
        }
        Ok(Selector { matchers })
    }

    fn after_name_error(&self, c: char, name: &str) -> SelectorError {
        let message = match c {
            '*' | '?' => format!(
                "metric names have no wildcards: to match every metric starting with \
                 {name:?} write {{__name__=~\"{name}.*\"}}"
            ),
            '[' => "range selectors such as [5m] are not supported here: choose the window \
                    with the step and a function such as rate"
                .to_owned(),
            '=' | '!' | '~' => format!(
                "label matchers go inside braces: write {name}{{label=\"value\"}} or \
                 {{{name}=\"value\"}}"
            ),
            c => format!(
                "{c:?} cannot appear in a metric name (letters, digits, '_' and ':' only); \
                 expected '{{' or the end of the selector after {name:?}"
            ),
        };
        self.error(self.pos, message)
    }

    /// Parses `{ … }`; `pos` is on the `{`.
    fn matchers(
        &mut self,
        matchers: &mut Vec<Matcher>,
        has_name: bool,
    ) -> Result<(), SelectorError> {
        let open = self.pos;
        self.pos += 1;
        let unclosed = |p: &Self| {
            p.error(
                p.pos,
                format!("missing '}}' to close the '{{' at column {}", open + 1),
            )
        };
        loop {
            self.skip_ws();
            let label_pos = self.pos;
            let label = match self.peek() {
                None => return Err(unclosed(self)),
                Some('}') => {
                    self.pos += 1;
                    break;
                }
                Some(c) if is_label_start(c) => self.ident(is_label_char),
                Some(c) => {
                    let message = if c.is_ascii_digit() {
                        "a label name cannot start with a digit".to_owned()
                    } else if c == ',' {
                        "expected a label name before ','".to_owned()
                    } else {
                        format!("expected a label name or '}}' but found {c:?}")
                    };
                    return Err(self.error(self.pos, message));
                }
            };
            if label == NAME_LABEL && has_name {
                return Err(self.error(
                    label_pos,
                    "the metric name is given twice: before '{' and as __name__; keep one",
                ));
            }
            self.skip_ws();
            let op = self.op(&label)?;
            self.skip_ws();
            let quoted = self.quoted(&label, op)?;
            let matcher = self.build_matcher(label, op, quoted)?;
            matchers.push(matcher);
            self.skip_ws();
            match self.peek() {
                Some(',') => self.pos += 1,
                Some('}') => {}
                None => return Err(unclosed(self)),
                Some(c) => {
                    return Err(self.error(
                        self.pos,
                        format!("expected ',' or '}}' after a matcher but found {c:?}"),
                    ));
                }
            }
        }
        if matchers.is_empty() {
            return Err(self.error(
                self.pos - 1,
                "empty selector: give a metric name or at least one label matcher, \
                 such as {datname=\"app\"}",
            ));
        }
        Ok(())
    }

    fn op(&mut self, label: &str) -> Result<MatchOp, SelectorError> {
        let op = match (self.peek(), self.peek_at(1)) {
            (Some('='), Some('~')) => MatchOp::RegexMatch,
            (Some('!'), Some('=')) => MatchOp::NotEqual,
            (Some('!'), Some('~')) => MatchOp::RegexNoMatch,
            (Some('='), _) => MatchOp::Equal,
            (Some(c), _) if c.is_alphanumeric() || matches!(c, '-' | '.' | ':') => {
                return Err(self.error(
                    self.pos,
                    format!(
                        "{c:?} cannot appear in a label name (ASCII letters, digits and '_' \
                         only)"
                    ),
                ));
            }
            _ => {
                return Err(self.error(
                    self.pos,
                    format!("expected '=', '!=', '=~' or '!~' after label name {label:?}"),
                ));
            }
        };
        self.pos += op.as_str().chars().count();
        Ok(op)
    }

    /// Reads a quoted value; `pos` is after the operator and any whitespace.
    fn quoted(&mut self, label: &str, op: MatchOp) -> Result<Quoted, SelectorError> {
        let start = self.pos;
        let quote = match self.peek() {
            Some(q @ ('"' | '\'' | '`')) => q,
            Some('=') if op == MatchOp::Equal => {
                return Err(self.error(self.pos, "use a single '=' to compare a label"));
            }
            Some(c) if c.is_alphanumeric() || c == '_' || c == '.' => {
                let end = self.chars[self.pos..]
                    .iter()
                    .position(|c| matches!(c, ',' | '}') || c.is_whitespace())
                    .map_or(self.chars.len(), |n| self.pos + n);
                let bare: String = self.chars[self.pos..end].iter().collect();
                return Err(self.error(
                    self.pos,
                    format!("label values must be quoted: write {label}{op}\"{bare}\""),
                ));
            }
            _ => {
                return Err(self.error(
                    self.pos,
                    format!("expected a quoted value after {label}{op}, such as \"app\""),
                ));
            }
        };
        self.pos += 1;
        let mut value = String::new();
        let mut sources = Vec::new();
        loop {
            let here = self.pos;
            let Some(c) = self.peek() else {
                return Err(self.error(
                    start,
                    format!("this {quote} is never closed: the value has no closing {quote}"),
                ));
            };
            self.pos += 1;
            if c == quote {
                break;
            }
            let decoded = if c == '\\' && quote != '`' {
                let escaped = self.peek();
                self.pos += 1;
                match escaped {
                    Some('"') => '"',
                    Some('\'') => '\'',
                    Some('\\') => '\\',
                    Some('n') => '\n',
                    Some('t') => '\t',
                    Some('r') => '\r',
                    Some(e) => {
                        return Err(self.error(
                            here,
                            format!(
                                "unknown escape '\\{e}': quoted values take \\\", \\', \\\\, \
                                 \\n, \\t and \\r; for a regex class such as \\d write \\\\d, \
                                 or put the value in back quotes (`\\d+`)"
                            ),
                        ));
                    }
                    None => {
                        return Err(self.error(
                            start,
                            format!(
                                "this {quote} is never closed: the value has no closing {quote}"
                            ),
                        ));
                    }
                }
            } else {
                c
            };
            value.push(decoded);
            sources.push(here);
        }
        Ok(Quoted {
            value,
            sources,
            start,
        })
    }

    fn build_matcher(
        &self,
        label: String,
        op: MatchOp,
        quoted: Quoted,
    ) -> Result<Matcher, SelectorError> {
        Matcher::new(label, op, quoted.value.clone()).map_err(|err| {
            let (offset, message) = describe_regex_error(&err);
            // Point at the character of the pattern the regex parser blamed, through the
            // escapes, or at the opening quote when it cannot say.
            let pos = offset
                .and_then(|i| quoted.sources.get(i).copied())
                .unwrap_or(quoted.start);
            self.error(
                pos,
                format!("invalid regular expression {:?}: {message}", quoted.value),
            )
        })
    }
}

/// The regex crate's one-line message and, when it says, the 0-based character offset
/// in the pattern that it blames.
fn describe_regex_error(err: &regex::Error) -> (Option<usize>, String) {
    match err {
        regex::Error::Syntax(text) => {
            // regex-syntax renders a one-line pattern as:
            //   regex parse error:\n    <pattern>\n    <spaces>^^^\nerror: <message>
            let lines: Vec<&str> = text.lines().collect();
            let message = lines
                .iter()
                .rev()
                .find_map(|l| l.strip_prefix("error: "))
                .unwrap_or(text)
                .to_owned();
            let offset = match lines.as_slice() {
                [_, _, carets, _] => carets
                    .strip_prefix("    ")
                    .and_then(|c| c.chars().position(|ch| ch == '^')),
                _ => None,
            };
            (offset, message)
        }
        other => (None, other.to_string()),
    }
}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

fn is_label_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_label_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

#[cfg(test)]
mod tests {
    use super::*;
    use pga_format::{MetricKind, SeriesId};

    fn meta(name: &str, labels: &[(&str, &str)]) -> SeriesMeta {
        SeriesMeta::new(
            SeriesId(1),
            name,
            pga_format::owned_labels(labels),
            MetricKind::Gauge,
            "",
            "",
        )
        .unwrap()
    }

    fn err(input: &str) -> SelectorError {
        parse(input).unwrap_err()
    }

    #[test]
    fn parses_name_and_matchers() {
        let sel = parse(
            r#" pg_stat_database_xact_commit_total { datname = "app" , instance=~'db[12]:5432', state!="idle", x!~`\d+`, } "#,
        )
        .unwrap();
        let m = sel.matchers();
        assert_eq!(m.len(), 5);
        assert_eq!(
            sel.metric_name(),
            Some("pg_stat_database_xact_commit_total")
        );
        assert_eq!(
            (m[1].name(), m[1].op(), m[1].value()),
            ("datname", MatchOp::Equal, "app")
        );
        assert_eq!(m[2].op(), MatchOp::RegexMatch);
        assert_eq!(m[2].value(), "db[12]:5432");
        assert_eq!(m[3].op(), MatchOp::NotEqual);
        assert_eq!((m[4].op(), m[4].value()), (MatchOp::RegexNoMatch, r"\d+"));
    }

    #[test]
    fn name_only_and_matchers_only() {
        assert_eq!(parse("pg_up").unwrap().matchers().len(), 1);
        assert_eq!(
            parse("node:cpu:rate5m").unwrap().metric_name(),
            Some("node:cpu:rate5m")
        );
        let sel = parse(r#"{datname="app"}"#).unwrap();
        assert_eq!(sel.metric_name(), None);
        assert!(sel.matches(&meta("anything", &[("datname", "app")])));
        assert!(!sel.matches(&meta("anything", &[("datname", "other")])));
    }

    #[test]
    fn escapes_are_decoded() {
        let sel = parse(r#"{a="q\"b\\s\n\t", b='it\'s'}"#).unwrap();
        assert_eq!(sel.matchers()[0].value(), "q\"b\\s\n\t");
        assert_eq!(sel.matchers()[1].value(), "it's");
    }

    #[test]
    fn regexes_are_fully_anchored() {
        let sel = parse(r#"{datname=~"app.*"}"#).unwrap();
        assert!(sel.matches(&meta("m", &[("datname", "app_1")])));
        assert!(!sel.matches(&meta("m", &[("datname", "myapp")])));
        let sel = parse(r#"{datname=~"a|b"}"#).unwrap();
        assert!(sel.matches(&meta("m", &[("datname", "a")])));
        assert!(!sel.matches(&meta("m", &[("datname", "ab")])));
        let sel = parse(r#"{datname!~"tmp.*"}"#).unwrap();
        assert!(sel.matches(&meta("m", &[("datname", "xtmp")])));
        assert!(!sel.matches(&meta("m", &[("datname", "tmp1")])));
    }

    #[test]
    fn missing_label_equals_empty() {
        let no_slot = meta("m", &[("datname", "app")]);
        let with_slot = meta("m", &[("slot", "s1")]);
        let empty = parse(r#"{slot=""}"#).unwrap();
        assert!(empty.matches(&no_slot));
        assert!(!empty.matches(&with_slot));
        let set = parse(r#"{slot!=""}"#).unwrap();
        assert!(!set.matches(&no_slot));
        assert!(set.matches(&with_slot));
        assert!(parse(r#"m{slot=~".*"}"#).unwrap().matches(&no_slot));
        assert!(!parse(r#"m{slot=~".+"}"#).unwrap().matches(&no_slot));
    }

    #[test]
    fn name_label_matches_the_metric_name() {
        let sel = parse(r#"{__name__=~"pg_stat_.*", datname="app"}"#).unwrap();
        assert!(sel.matches(&meta(
            "pg_stat_database_blks_hit_total",
            &[("datname", "app")]
        )));
        assert!(!sel.matches(&meta("pg_up", &[("datname", "app")])));
        assert!(parse("pg_up").unwrap().matches(&meta("pg_up", &[])));
        assert!(!parse("pg_up").unwrap().matches(&meta("pg_upx", &[])));
        assert!(Selector::all().matches(&meta("pg_upx", &[])));
    }

    #[test]
    fn display_round_trips() {
        for text in [
            "pg_up",
            r#"pg_up{datname="a\"b\\c\nd"}"#,
            r#"{__name__=~"pg_.*",x!~"y"}"#,
            r#"{datname="app"}"#,
            r#"pg_up{a!="",b=~"\\d+"}"#,
        ] {
            let sel = parse(text).unwrap();
            assert_eq!(sel.to_string(), text);
            assert_eq!(parse(&sel.to_string()).unwrap(), sel);
        }
        assert_eq!(
            parse(" pg_up { a = 'x' , } ").unwrap().to_string(),
            r#"pg_up{a="x"}"#
        );
    }

    #[test]
    fn operator_error_points_at_the_column() {
        let e = err(r#"pg_up{datname~"x"}"#);
        assert_eq!(e.column, 14);
        assert_eq!(
            e.to_string(),
            "selector error at column 14: expected '=', '!=', '=~' or '!~' after label name \"datname\"\n  \
             pg_up{datname~\"x\"}\n               ^"
        );
    }

    #[test]
    fn error_columns() {
        let cases: &[(&str, usize, &str)] = &[
            ("", 1, "empty selector"),
            ("   ", 4, "empty selector"),
            ("{}", 2, "empty selector"),
            ("9lives", 1, "cannot start with a digit"),
            ("pg-up", 3, "cannot appear in a metric name"),
            ("pg_stat_*", 9, "{__name__=~\"pg_stat_.*\"}"),
            ("pg_up[5m]", 6, "range selectors"),
            (r#"pg_up{datname="app"}[5m]"#, 21, "range selectors"),
            (r#"pg_up{datname="app"} x"#, 22, "after '}'"),
            (
                r#"pg_up{datname="app""#,
                20,
                "missing '}' to close the '{' at column 6",
            ),
            ("pg_up{", 7, "missing '}'"),
            (r#"pg_up{datname=app}"#, 15, r#"write datname="app""#),
            (r#"pg_up{datname=="app"}"#, 15, "single '='"),
            (r#"pg_up{datname="app}"#, 15, "never closed"),
            (r#"pg_up{datname="a\d"}"#, 17, "unknown escape '\\d'"),
            (r#"pg_up{,}"#, 7, "label name before ','"),
            (r#"pg_up{1a="x"}"#, 7, "cannot start with a digit"),
            (r#"pg_up{a="x" b="y"}"#, 13, "expected ',' or '}'"),
            (r#"pg_up{__name__="x"}"#, 7, "given twice"),
            (r#""pg_up""#, 1, "quoted metric names"),
            (r#"{dätname="x"}"#, 3, "cannot appear in a label name"),
            (r#"{data-dir="x"}"#, 6, "cannot appear in a label name"),
            (r#"pg_up="x""#, 6, "inside braces"),
        ];
        for (input, column, needle) in cases {
            let e = err(input);
            assert_eq!(e.column, *column, "column for {input:?}: {e}");
            assert!(e.message.contains(needle), "message for {input:?}: {e}");
            assert_eq!(e.input, *input);
        }
    }

    #[test]
    fn invalid_regex_points_into_the_pattern() {
        // `(` is at column 19: the regex parser blames the unclosed group.
        let e = err(r#"pg_up{datname=~"ab(c"}"#);
        assert_eq!(e.column, 19, "{e}");
        assert!(
            e.message
                .starts_with("invalid regular expression \"ab(c\": "),
            "{e}"
        );
        assert!(e.message.contains("unclosed group"), "{e}");
        assert!(!e.message.contains('\n'));
        // Through an escape: the value is `\d[`, whose `[` is at column 9.
        let e = err(r#"{a=~"\\d["}"#);
        assert_eq!(e.column, 9, "{e}");
        assert!(e.message.contains("unclosed character class"), "{e}");
        // An injected `)` would be "completed" by the anchoring wrapper; it is rejected.
        let e = err(r#"{a=~"x)(y"}"#);
        assert!(e.message.contains("invalid regular expression"), "{e}");
    }

    #[test]
    fn caret_line_follows_tabs_and_lines() {
        let e = err("pg_up{\ta!\"x\"}");
        assert_eq!(e.column, 9);
        assert!(
            e.to_string()
                .ends_with("\n  pg_up{\ta!\"x\"}\n        \t ^"),
            "{e}"
        );
        let e = err("pg_up{\n  a~\"x\"}");
        assert_eq!(e.column, 11);
        assert!(e.to_string().ends_with("\n    a~\"x\"}\n     ^"), "{e}");
        let e = err("pg_up{");
        assert!(e.to_string().ends_with("\n  pg_up{\n        ^"), "{e}");
    }
}
