//! The query language of alert rules: a small, strict subset of PromQL.
//!
//! ```text
//! last(pg_up[1m])
//! rate(pg_stat_database_xact_rollback_total{datname!~"template.*"}[5m])
//! sum by (agent, pg_instance) (last(pg_stat_activity_sessions{backend_type="client backend"}[1m]))
//!   / on (agent, pg_instance)
//!   (last(pg_settings_max_connections[5m]) - last(pg_settings_superuser_reserved_connections[5m]))
//! time() - last(pg_stat_user_tables_last_autovacuum_timestamp_seconds[15m])
//!   and last(pg_stat_user_tables_n_live_tup[15m]) > 1e6
//! ```
//!
//! Grammar, loosest binding first:
//!
//! ```text
//! expr    := cmp (("and" | "unless") matching? cmp)*
//! cmp     := sum (("==" | "!=" | ">" | ">=" | "<" | "<=") "bool"? matching? sum)?
//! sum     := product (("+" | "-") matching? product)*
//! product := unary (("*" | "/") matching? unary)*
//! unary   := "-" unary | primary
//! primary := NUMBER | "time()" | "(" expr ")" | window | aggregate
//! window  := FUNC "(" selector "[" DURATION "]" ")"     FUNC: avg min max last rate increase absent
//! aggregate := AGG ("by" | "without") "(" labels ")" "(" expr ")"
//!            | AGG "(" expr ")" (("by" | "without") "(" labels ")")?   AGG: sum min max avg count
//! selector := METRIC ("{" matcher ("," matcher)* ","? "}")?
//! matcher := LABEL ("=" | "!=" | "=~" | "!~") STRING
//! matching := ("on" | "ignoring") "(" labels ")"
//! ```
//!
//! Semantics differ from PromQL where PromQL surprises: a binary operation between
//! two vectors matches one-to-one or many-to-one automatically (the result keeps the
//! labels of the side with several series per match; many-to-many is an evaluation
//! error), and keeps that side's full label set even with `on (…)`. Comparisons inside
//! a query filter (as in PromQL); the rule's own comparison and threshold are separate
//! (so that overrides and hysteresis can change them).

use std::fmt;

use regex::Regex;

/// An enum of named functions: the variants, `ALL`, `as_str` and `parse`, from one
/// list of `Variant => "name"`.
macro_rules! named_functions {
    ($(#[$m:meta])* $name:ident { $($v:ident => $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($v),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$v),+];

            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$v => $s),+
                }
            }

            fn parse(name: &str) -> Option<$name> {
                $name::ALL.iter().copied().find(|f| f.as_str() == name)
            }
        }
    };
}

named_functions! {
    /// A window function: applied to each selected series over `[range]`.
    WindowFn {
        Avg => "avg",
        Min => "min",
        Max => "max",
        Last => "last",
        Rate => "rate",
        Increase => "increase",
        Absent => "absent",
    }
}

named_functions! {
    /// An aggregation across series.
    AggOp {
        Sum => "sum",
        Min => "min",
        Max => "max",
        Avg => "avg",
        Count => "count",
    }
}

/// A binary operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    And,
    Unless,
}

impl BinOp {
    pub const fn as_str(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::And => "and",
            BinOp::Unless => "unless",
        }
    }

    /// Whether this is a comparison (a filter, or 0/1 with `bool`).
    pub const fn is_comparison(self) -> bool {
        matches!(
            self,
            BinOp::Eq | BinOp::Ne | BinOp::Gt | BinOp::Ge | BinOp::Lt | BinOp::Le
        )
    }

    /// Applies an arithmetic operator or a comparison (true as 1, false as 0).
    pub fn apply(self, a: f64, b: f64) -> f64 {
        match self {
            BinOp::Add => a + b,
            BinOp::Sub => a - b,
            BinOp::Mul => a * b,
            BinOp::Div => a / b,
            BinOp::Eq => f64::from(a == b),
            BinOp::Ne => f64::from(a != b),
            BinOp::Gt => f64::from(a > b),
            BinOp::Ge => f64::from(a >= b),
            BinOp::Lt => f64::from(a < b),
            BinOp::Le => f64::from(a <= b),
            BinOp::And | BinOp::Unless => a,
        }
    }
}

/// How a label matcher compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MatchOp {
    Equal,
    NotEqual,
    Regex,
    NotRegex,
}

impl MatchOp {
    pub const fn as_str(self) -> &'static str {
        match self {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::Regex => "=~",
            MatchOp::NotRegex => "!~",
        }
    }

    /// Parses `=`, `!=`, `=~` or `!~`.
    pub fn parse(s: &str) -> Option<MatchOp> {
        match s {
            "=" => Some(MatchOp::Equal),
            "!=" => Some(MatchOp::NotEqual),
            "=~" => Some(MatchOp::Regex),
            "!~" => Some(MatchOp::NotRegex),
            _ => None,
        }
    }
}

/// One label matcher; a regex is anchored at both ends, as in PromQL.
#[derive(Debug, Clone)]
pub struct Matcher {
    pub name: String,
    pub op: MatchOp,
    pub value: String,
    regex: Option<Regex>,
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.op == other.op && self.value == other.value
    }
}

impl Matcher {
    /// A matcher; fails on an invalid regular expression.
    pub fn new(name: &str, op: MatchOp, value: &str) -> Result<Matcher, String> {
        let regex = match op {
            MatchOp::Regex | MatchOp::NotRegex => Some(
                Regex::new(&format!("^(?:{value})$"))
                    .map_err(|e| format!("invalid regular expression {value:?}: {e}"))?,
            ),
            _ => None,
        };
        Ok(Matcher {
            name: name.to_owned(),
            op,
            value: value.to_owned(),
            regex,
        })
    }

    /// Whether `value` (`""` for a missing label) satisfies the matcher.
    pub fn matches(&self, value: &str) -> bool {
        match self.op {
            MatchOp::Equal => value == self.value,
            MatchOp::NotEqual => value != self.value,
            MatchOp::Regex => self.regex.as_ref().is_some_and(|r| r.is_match(value)),
            MatchOp::NotRegex => !self.regex.as_ref().is_some_and(|r| r.is_match(value)),
        }
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{:?}", self.name, self.op.as_str(), self.value)
    }
}

/// A metric name plus label matchers.
#[derive(Debug, Clone, PartialEq)]
pub struct Selector {
    pub metric: String,
    pub matchers: Vec<Matcher>,
}

impl Selector {
    /// Whether a series of this selector's metric with `labels` is selected;
    /// `label(name)` returns a label's value, `""` when absent.
    pub fn matches<'a>(&self, label: impl Fn(&str) -> &'a str) -> bool {
        self.matchers.iter().all(|m| m.matches(label(&m.name)))
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.metric)?;
        if !self.matchers.is_empty() {
            let m: Vec<String> = self.matchers.iter().map(ToString::to_string).collect();
            write!(f, "{{{}}}", m.join(", "))?;
        }
        Ok(())
    }
}

/// `FUNC(selector[range])`.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowTerm {
    pub func: WindowFn,
    pub selector: Selector,
    pub range_ms: i64,
}

impl fmt::Display for WindowTerm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}({}[{}])",
            self.func.as_str(),
            self.selector,
            format_duration(self.range_ms)
        )
    }
}

/// `on (…)` or `ignoring (…)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matching {
    pub on: bool,
    pub labels: Vec<String>,
}

/// `by (…)` or `without (…)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grouping {
    pub without: bool,
    pub labels: Vec<String>,
}

/// `lhs op rhs`, with `on`/`ignoring` matching and, for a comparison, `bool`.
#[derive(Debug, Clone, PartialEq)]
pub struct Binary {
    pub op: BinOp,
    pub lhs: Box<Expr>,
    pub rhs: Box<Expr>,
    pub matching: Option<Matching>,
    pub return_bool: bool,
}

impl fmt::Display for Binary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "({}) {}", self.lhs, self.op.as_str())?;
        if self.return_bool {
            f.write_str(" bool")?;
        }
        if let Some(m) = &self.matching {
            write!(
                f,
                " {} ({})",
                if m.on { "on" } else { "ignoring" },
                m.labels.join(", ")
            )?;
        }
        write!(f, " ({})", self.rhs)
    }
}

/// A parsed query.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Number(f64),
    /// `time()`: the evaluation time in seconds since the Unix epoch.
    Time,
    Window(WindowTerm),
    Neg(Box<Expr>),
    Binary(Binary),
    Aggregate {
        op: AggOp,
        grouping: Grouping,
        expr: Box<Expr>,
    },
}

impl Expr {
    fn binary(
        op: BinOp,
        lhs: Expr,
        rhs: Expr,
        matching: Option<Matching>,
        return_bool: bool,
    ) -> Expr {
        Expr::Binary(Binary {
            op,
            lhs: Box::new(lhs),
            rhs: Box::new(rhs),
            matching,
            return_bool,
        })
    }

    /// Whether the expression yields series (a vector) rather than one number.
    pub fn is_vector(&self) -> bool {
        match self {
            Expr::Number(_) | Expr::Time => false,
            Expr::Window(_) | Expr::Aggregate { .. } => true,
            Expr::Neg(e) => e.is_vector(),
            Expr::Binary(b) => b.lhs.is_vector() || b.rhs.is_vector(),
        }
    }

    /// Every window term, in reading order.
    pub fn terms(&self) -> Vec<&WindowTerm> {
        let mut out = Vec::new();
        self.collect_terms(&mut out);
        out
    }

    fn collect_terms<'a>(&'a self, out: &mut Vec<&'a WindowTerm>) {
        match self {
            Expr::Number(_) | Expr::Time => {}
            Expr::Window(t) => out.push(t),
            Expr::Neg(e) => e.collect_terms(out),
            Expr::Binary(b) => {
                b.lhs.collect_terms(out);
                b.rhs.collect_terms(out);
            }
            Expr::Aggregate { expr, .. } => expr.collect_terms(out),
        }
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Number(n) => write!(f, "{n}"),
            Expr::Time => f.write_str("time()"),
            Expr::Window(t) => write!(f, "{t}"),
            Expr::Neg(e) => write!(f, "-({e})"),
            Expr::Binary(b) => write!(f, "{b}"),
            Expr::Aggregate { op, grouping, expr } => write!(
                f,
                "{} {} ({}) ({expr})",
                op.as_str(),
                if grouping.without { "without" } else { "by" },
                grouping.labels.join(", ")
            ),
        }
    }
}

/// A query that does not parse: where (a character offset into the query), what,
/// and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at character {}: {message}; fix: {fix}", offset + 1)]
pub struct ParseError {
    /// Characters before the offending token.
    pub offset: usize,
    pub message: String,
    pub fix: String,
}

/// Parses a query.
pub fn parse(text: &str) -> Result<Expr, ParseError> {
    let tokens = lex(text)?;
    let mut p = Parser {
        text,
        tokens,
        pos: 0,
    };
    if p.peek().kind == Tok::End {
        return Err(p.error(
            p.peek(),
            "the query is empty".into(),
            "write e.g. last(pg_up[1m])".into(),
        ));
    }
    let e = p.expr()?;
    let t = p.peek();
    if t.kind != Tok::End {
        return Err(p.error(
            t,
            format!(
                "unexpected {} after a complete expression",
                t.describe(text)
            ),
            "join the terms with an operator (+ - * / and unless > …) or remove the extra text"
                .into(),
        ));
    }
    if !e.is_vector() {
        return Err(ParseError {
            offset: 0,
            message: "the query is a plain number: it selects no series".into(),
            fix: "apply a window function to a metric, e.g. last(pg_up[1m])".into(),
        });
    }
    Ok(e)
}

/// Parses one series, `metric{label="value", …}` (the input notation of rule
/// tests): a metric name and equality matchers only.
pub fn parse_series(text: &str) -> Result<(String, Vec<(String, String)>), ParseError> {
    let tokens = lex(text)?;
    let mut p = Parser {
        text,
        tokens,
        pos: 0,
    };
    let t = p.next();
    let Tok::Ident(metric) = t.kind.clone() else {
        return Err(p.error(
            &t,
            format!("expected a metric name, found {}", t.describe(text)),
            "write metric{label=\"value\"}".into(),
        ));
    };
    let mut labels = Vec::new();
    if p.is_punct("{") {
        p.next();
        loop {
            if p.is_punct("}") {
                p.next();
                break;
            }
            let at = p.peek().clone();
            let m = p.matcher()?;
            if m.op != MatchOp::Equal {
                return Err(p.error(
                    &at,
                    format!("a series has label values, not matchers: {m}"),
                    format!("write {}=\"{}\"", m.name, m.value),
                ));
            }
            labels.push((m.name, m.value));
            if p.is_punct(",") {
                p.next();
            } else if !p.is_punct("}") {
                let t = p.peek().clone();
                return Err(p.error(
                    &t,
                    format!("expected `,` or `}}`, found {}", t.describe(text)),
                    "separate labels with commas".into(),
                ));
            }
        }
    }
    let t = p.peek().clone();
    if t.kind != Tok::End {
        return Err(p.error(
            &t,
            format!("unexpected {} after the series", t.describe(text)),
            "write only metric{label=\"value\", …}".into(),
        ));
    }
    Ok((metric, labels))
}

/// Parses a duration: `30s`, `5m`, `1h30m`, `2d`, `1w`, `500ms`.
pub fn parse_duration(s: &str) -> Option<i64> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    let mut total: i64 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let n: i64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let ms = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 7 * 86_400_000,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total = total.checked_add(n.checked_mul(ms)?)?;
    }
    (total > 0).then_some(total)
}

/// Formats milliseconds as the largest whole units: `90000` → `1m30s`.
pub fn format_duration(ms: i64) -> String {
    if ms <= 0 {
        return "0s".into();
    }
    let mut out = String::new();
    let mut rest = ms;
    for (unit, len) in [
        ("w", 7 * 86_400_000),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
        ("ms", 1),
    ] {
        if rest >= len {
            out.push_str(&format!("{}{unit}", rest / len));
            rest %= len;
        }
    }
    out
}

// ---------------------------------------------------------------------------------
// Lexer.

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Number(f64),
    Str(String),
    /// `[…]` with its raw contents.
    Range(String),
    Punct(&'static str),
    End,
}

#[derive(Debug, Clone)]
struct Token {
    kind: Tok,
    /// Byte offset in the query.
    at: usize,
}

impl Token {
    fn describe(&self, _text: &str) -> String {
        match &self.kind {
            Tok::Ident(s) => format!("`{s}`"),
            Tok::Number(n) => format!("the number {n}"),
            Tok::Str(s) => format!("the string {s:?}"),
            Tok::Range(r) => format!("`[{r}]`"),
            Tok::Punct(p) => format!("`{p}`"),
            Tok::End => "the end of the query".into(),
        }
    }
}

const PUNCT: [&str; 21] = [
    "==", "!=", ">=", "<=", "=~", "!~", "(", ")", "{", "}", ",", "=", ">", "<", "+", "-", "*", "/",
    "[", "]", "!",
];

fn lex(text: &str) -> Result<Vec<Token>, ParseError> {
    let err = |at: usize, message: String, fix: &str| ParseError {
        offset: text[..at].chars().count(),
        message,
        fix: fix.into(),
    };
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if c == b'#' {
            // A comment runs to the end of the line.
            while i < bytes.len() && bytes[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        let start = i;
        if c.is_ascii_alphabetic() || c == b'_' || c == b':' {
            while i < bytes.len()
                && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_' || bytes[i] == b':')
            {
                i += 1;
            }
            out.push(Token {
                kind: Tok::Ident(text[start..i].to_owned()),
                at: start,
            });
            continue;
        }
        if c.is_ascii_digit() || (c == b'.' && bytes.get(i + 1).is_some_and(u8::is_ascii_digit)) {
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'.') {
                // An exponent's sign: 1e-3.
                i += 1;
                if matches!(bytes[i - 1], b'e' | b'E')
                    && i < bytes.len()
                    && matches!(bytes[i], b'+' | b'-')
                    && !text[start..i - 1].starts_with("0x")
                {
                    i += 1;
                }
            }
            let s = &text[start..i];
            let n: f64 = s.parse().map_err(|_| {
                if parse_duration(s).is_some() {
                    err(
                        start,
                        format!("the duration {s} stands alone"),
                        "durations go in brackets after a selector: last(metric[5m]); in \
                         arithmetic write seconds (300 for 5m)",
                    )
                } else {
                    err(
                        start,
                        format!("{s:?} is not a number"),
                        "write a decimal number such as 0.8, 300 or 1e9",
                    )
                }
            })?;
            out.push(Token {
                kind: Tok::Number(n),
                at: start,
            });
            continue;
        }
        if c == b'"' || c == b'\'' {
            let quote = c;
            i += 1;
            let mut s = String::new();
            loop {
                let Some(&b) = bytes.get(i) else {
                    return Err(err(
                        start,
                        "a string is not closed".into(),
                        "end the label value with the quote it starts with",
                    ));
                };
                if b == quote {
                    i += 1;
                    break;
                }
                if b == b'\\' {
                    let Some(&e) = bytes.get(i + 1) else {
                        return Err(err(
                            i,
                            "a string ends in a backslash".into(),
                            "write \\\\ for a backslash",
                        ));
                    };
                    match e {
                        b'n' => s.push('\n'),
                        b't' => s.push('\t'),
                        b'\\' => s.push('\\'),
                        b'"' => s.push('"'),
                        b'\'' => s.push('\''),
                        // Regular expressions keep their escapes: \d, \., …
                        _ => {
                            s.push('\\');
                            s.push(e as char);
                        }
                    }
                    i += 2;
                    continue;
                }
                let ch = text[i..].chars().next().unwrap_or('\u{fffd}');
                s.push(ch);
                i += ch.len_utf8();
            }
            out.push(Token {
                kind: Tok::Str(s),
                at: start,
            });
            continue;
        }
        if c == b'[' {
            let Some(end) = text[i..].find(']') else {
                return Err(err(
                    start,
                    "a `[` is not closed".into(),
                    "write the window as [5m]",
                ));
            };
            out.push(Token {
                kind: Tok::Range(text[i + 1..i + end].trim().to_owned()),
                at: start,
            });
            i += end + 1;
            continue;
        }
        if let Some(p) = PUNCT.iter().find(|p| text[i..].starts_with(**p)) {
            if *p == "!" {
                return Err(err(
                    start,
                    "`!` alone is not an operator".into(),
                    "write != (not equal) or !~ (does not match)",
                ));
            }
            out.push(Token {
                kind: Tok::Punct(p),
                at: start,
            });
            i += p.len();
            continue;
        }
        let ch = text[i..].chars().next().unwrap_or('?');
        return Err(err(
            start,
            format!("unexpected character {ch:?}"),
            "queries use metric names, label matchers in {…}, windows in […], numbers and \
             + - * / == != > >= < <= and unless",
        ));
    }
    out.push(Token {
        kind: Tok::End,
        at: text.len(),
    });
    Ok(out)
}

// ---------------------------------------------------------------------------------
// Parser.

struct Parser<'a> {
    text: &'a str,
    tokens: Vec<Token>,
    pos: usize,
}

const KEYWORDS: [&str; 7] = ["and", "unless", "by", "without", "on", "ignoring", "bool"];

impl Parser<'_> {
    fn peek(&self) -> &Token {
        &self.tokens[self.pos.min(self.tokens.len() - 1)]
    }

    fn peek_at(&self, n: usize) -> &Tok {
        &self.tokens[(self.pos + n).min(self.tokens.len() - 1)].kind
    }

    fn next(&mut self) -> Token {
        let t = self.peek().clone();
        if self.pos < self.tokens.len() - 1 {
            self.pos += 1;
        }
        t
    }

    fn error(&self, at: &Token, message: String, fix: String) -> ParseError {
        ParseError {
            offset: self.text[..at.at.min(self.text.len())].chars().count(),
            message,
            fix,
        }
    }

    fn is_punct(&self, p: &str) -> bool {
        self.peek().kind == Tok::Punct(leak(p))
    }

    fn is_word(&self, w: &str) -> bool {
        matches!(&self.peek().kind, Tok::Ident(s) if s == w)
    }

    fn expect_punct(&mut self, p: &'static str, fix: &str) -> Result<Token, ParseError> {
        let t = self.next();
        if t.kind == Tok::Punct(p) {
            return Ok(t);
        }
        Err(self.error(
            &t,
            format!("expected `{p}`, found {}", t.describe(self.text)),
            fix.into(),
        ))
    }

    fn expr(&mut self) -> Result<Expr, ParseError> {
        let mut lhs = self.cmp()?;
        loop {
            let op = if self.is_word("and") {
                BinOp::And
            } else if self.is_word("unless") {
                BinOp::Unless
            } else {
                return Ok(lhs);
            };
            let op_tok = self.next();
            let matching = self.matching()?;
            let rhs = self.cmp()?;
            if !lhs.is_vector() || !rhs.is_vector() {
                return Err(self.error(
                    &op_tok,
                    format!("`{}` needs series on both sides", op.as_str()),
                    "use and/unless between two selections, e.g. A and B > 1e6".into(),
                ));
            }
            lhs = Expr::binary(op, lhs, rhs, matching, false);
        }
    }

    fn cmp(&mut self) -> Result<Expr, ParseError> {
        let lhs = self.sum()?;
        let op = match &self.peek().kind {
            Tok::Punct("==") => BinOp::Eq,
            Tok::Punct("!=") => BinOp::Ne,
            Tok::Punct(">") => BinOp::Gt,
            Tok::Punct(">=") => BinOp::Ge,
            Tok::Punct("<") => BinOp::Lt,
            Tok::Punct("<=") => BinOp::Le,
            Tok::Punct("=") => {
                return Err(self.error(
                    self.peek(),
                    "`=` is not a comparison".into(),
                    "write == to compare; = only appears inside {…} label matchers".into(),
                ));
            }
            _ => return Ok(lhs),
        };
        self.next();
        let return_bool = if self.is_word("bool") {
            self.next();
            true
        } else {
            false
        };
        let matching = self.matching()?;
        let rhs = self.sum()?;
        Ok(Expr::binary(op, lhs, rhs, matching, return_bool))
    }

    fn sum(&mut self) -> Result<Expr, ParseError> {
        self.arithmetic([("+", BinOp::Add), ("-", BinOp::Sub)], Self::product)
    }

    fn product(&mut self) -> Result<Expr, ParseError> {
        self.arithmetic([("*", BinOp::Mul), ("/", BinOp::Div)], Self::unary)
    }

    /// One left-associative level of arithmetic: `operand (op operand)*`.
    fn arithmetic(
        &mut self,
        ops: [(&str, BinOp); 2],
        operand: fn(&mut Self) -> Result<Expr, ParseError>,
    ) -> Result<Expr, ParseError> {
        let mut lhs = operand(self)?;
        loop {
            let Some(op) = ops
                .iter()
                .find(|(p, _)| self.is_punct(p))
                .map(|(_, op)| *op)
            else {
                return Ok(lhs);
            };
            self.next();
            let matching = self.matching()?;
            let rhs = operand(self)?;
            lhs = Expr::binary(op, lhs, rhs, matching, false);
        }
    }

    fn unary(&mut self) -> Result<Expr, ParseError> {
        if self.is_punct("-") {
            self.next();
            return Ok(match self.unary()? {
                Expr::Number(n) => Expr::Number(-n),
                e => Expr::Neg(Box::new(e)),
            });
        }
        if self.is_punct("+") {
            self.next();
        }
        self.primary()
    }

    fn matching(&mut self) -> Result<Option<Matching>, ParseError> {
        let on = if self.is_word("on") {
            true
        } else if self.is_word("ignoring") {
            false
        } else {
            return Ok(None);
        };
        self.next();
        let labels = self.label_list("on (agent, pg_instance)")?;
        Ok(Some(Matching { on, labels }))
    }

    fn label_list(&mut self, example: &str) -> Result<Vec<String>, ParseError> {
        self.expect_punct("(", &format!("list the labels in parentheses: {example}"))?;
        let mut labels = Vec::new();
        loop {
            if self.is_punct(")") {
                self.next();
                return Ok(labels);
            }
            let t = self.next();
            match t.kind {
                Tok::Ident(l) if is_label_name(&l) => labels.push(l),
                _ => {
                    return Err(self.error(
                        &t,
                        format!("expected a label name, found {}", t.describe(self.text)),
                        format!("list label names separated by commas: {example}"),
                    ));
                }
            }
            if self.is_punct(",") {
                self.next();
            } else if !self.is_punct(")") {
                let t = self.peek().clone();
                return Err(self.error(
                    &t,
                    format!("expected `,` or `)`, found {}", t.describe(self.text)),
                    format!("list label names separated by commas: {example}"),
                ));
            }
        }
    }

    fn primary(&mut self) -> Result<Expr, ParseError> {
        let t = self.next();
        match &t.kind {
            Tok::Number(n) => Ok(Expr::Number(*n)),
            Tok::Punct("(") => {
                let e = self.expr()?;
                self.expect_punct(")", "close the parenthesis")?;
                Ok(e)
            }
            Tok::Ident(name) => self.call(&t, name.clone()),
            Tok::End => Err(self.error(
                &t,
                "the query ends where a value was expected".into(),
                "complete the expression after the last operator".into(),
            )),
            _ => Err(self.error(
                &t,
                format!("expected a value, found {}", t.describe(self.text)),
                "a value is a number, time(), a window function such as last(metric[5m]), \
                 an aggregation such as sum by (agent) (…), or an expression in parentheses"
                    .into(),
            )),
        }
    }

    fn call(&mut self, at: &Token, name: String) -> Result<Expr, ParseError> {
        if name == "time" {
            self.expect_punct("(", "write time()")?;
            self.expect_punct(")", "time() takes no argument")?;
            return Ok(Expr::Time);
        }
        if matches!(name.as_str(), "inf" | "Inf" | "INF") {
            return Ok(Expr::Number(f64::INFINITY));
        }
        if KEYWORDS.contains(&name.as_str()) {
            return Err(self.error(
                at,
                format!("`{name}` is a keyword, not a value"),
                "put an expression before and after and/unless; by/without follow an \
                 aggregation; on/ignoring follow an operator"
                    .into(),
            ));
        }
        let agg = AggOp::parse(&name);
        let func = WindowFn::parse(&name);
        // `avg(m[5m])` is the window function; `avg by (…) (…)` or `avg(expr)` the
        // aggregation.
        let window_shape = self.is_punct("(")
            && matches!(self.peek_at(1), Tok::Ident(_))
            && matches!(self.peek_at(2), Tok::Range(_) | Tok::Punct("{"));
        if let Some(func) = func
            && (window_shape || agg.is_none())
        {
            return self.window(at, func);
        }
        if let Some(op) = agg {
            return self.aggregate(op);
        }
        if self.is_punct("(") {
            return Err(self.error(
                at,
                format!("unknown function `{name}`"),
                unknown_function_fix(&name),
            ));
        }
        // A bare selector.
        let fix = if self.is_punct("{") || matches!(self.peek().kind, Tok::Range(_)) {
            format!("wrap it in a window function, e.g. last({name}[5m]) or rate({name}[5m])")
        } else {
            format!("apply a window function to the metric, e.g. last({name}[5m])")
        };
        Err(self.error(
            at,
            format!("`{name}` alone is not a value: a metric needs a window function"),
            fix,
        ))
    }

    fn window(&mut self, at: &Token, func: WindowFn) -> Result<Expr, ParseError> {
        let f = func.as_str();
        self.expect_punct("(", &format!("write {f}(metric[5m])"))?;
        let t = self.next();
        let metric = match &t.kind {
            Tok::Ident(m) if !KEYWORDS.contains(&m.as_str()) => m.clone(),
            _ => {
                return Err(self.error(
                    &t,
                    format!(
                        "{f}() takes a metric selector, found {}",
                        t.describe(self.text)
                    ),
                    format!(
                        "write {f}(metric{{label=\"value\"}}[5m]); to combine several series \
                         use an aggregation such as sum by (…) ({f}(metric[5m]))"
                    ),
                ));
            }
        };
        let mut matchers = Vec::new();
        if self.is_punct("{") {
            self.next();
            loop {
                if self.is_punct("}") {
                    self.next();
                    break;
                }
                matchers.push(self.matcher()?);
                if self.is_punct(",") {
                    self.next();
                } else if !self.is_punct("}") {
                    let t = self.peek().clone();
                    return Err(self.error(
                        &t,
                        format!("expected `,` or `}}`, found {}", t.describe(self.text)),
                        "separate matchers with commas: {datname=\"app\", state!=\"idle\"}".into(),
                    ));
                }
            }
        }
        let t = self.next();
        let range_ms = match &t.kind {
            Tok::Range(r) => parse_duration(r).ok_or_else(|| {
                self.error(
                    &t,
                    format!("[{r}] is not a window"),
                    "write a duration such as [30s], [5m], [1h] or [2d]".into(),
                )
            })?,
            _ => {
                return Err(self.error(
                    &t,
                    format!(
                        "{f}() needs a window after the selector, found {}",
                        t.describe(self.text)
                    ),
                    format!("write {f}({metric}[5m])"),
                ));
            }
        };
        self.expect_punct(
            ")",
            &format!("{f}() takes one argument: close it after the window"),
        )?;
        let _ = at;
        Ok(Expr::Window(WindowTerm {
            func,
            selector: Selector { metric, matchers },
            range_ms,
        }))
    }

    fn matcher(&mut self) -> Result<Matcher, ParseError> {
        let t = self.next();
        let name = match &t.kind {
            Tok::Ident(n) if is_label_name(n) => n.clone(),
            _ => {
                return Err(self.error(
                    &t,
                    format!("expected a label name, found {}", t.describe(self.text)),
                    "write label=\"value\" (operators = != =~ !~)".into(),
                ));
            }
        };
        let t = self.next();
        let op = match &t.kind {
            Tok::Punct(p) => MatchOp::parse(p),
            _ => None,
        }
        .ok_or_else(|| {
            self.error(
                &t,
                format!(
                    "expected =, !=, =~ or !~ after `{name}`, found {}",
                    t.describe(self.text)
                ),
                format!("write {name}=\"value\""),
            )
        })?;
        let t = self.next();
        let value = match &t.kind {
            Tok::Str(s) => s.clone(),
            Tok::Ident(s) | Tok::Range(s) => {
                return Err(self.error(
                    &t,
                    format!("label values are quoted: `{s}` is not"),
                    format!("write {name}{}\"{s}\"", op.as_str()),
                ));
            }
            Tok::Number(n) => {
                return Err(self.error(
                    &t,
                    format!("label values are quoted: {n} is not"),
                    format!("write {name}{}\"{n}\"", op.as_str()),
                ));
            }
            _ => {
                return Err(self.error(
                    &t,
                    format!("expected a quoted value, found {}", t.describe(self.text)),
                    format!("write {name}{}\"value\"", op.as_str()),
                ));
            }
        };
        Matcher::new(&name, op, &value).map_err(|e| {
            self.error(
                &t,
                e,
                "fix the regular expression (Rust regex syntax, anchored at both ends)".into(),
            )
        })
    }

    fn aggregate(&mut self, op: AggOp) -> Result<Expr, ParseError> {
        let a = op.as_str();
        let example = format!("{a} by (agent, pg_instance) (last(metric[5m]))");
        let mut grouping = None;
        if self.is_word("by") || self.is_word("without") {
            let without = self.is_word("without");
            self.next();
            grouping = Some(Grouping {
                without,
                labels: self.label_list(&example)?,
            });
        }
        self.expect_punct("(", &format!("write {example}"))?;
        let inner = self.expr()?;
        self.expect_punct(")", "close the aggregation's parenthesis")?;
        if grouping.is_none() && (self.is_word("by") || self.is_word("without")) {
            let without = self.is_word("without");
            self.next();
            grouping = Some(Grouping {
                without,
                labels: self.label_list(&example)?,
            });
        }
        Ok(Expr::Aggregate {
            op,
            grouping: grouping.unwrap_or(Grouping {
                without: false,
                labels: Vec::new(),
            }),
            expr: Box::new(inner),
        })
    }
}

/// The `&'static str` of a punctuation token equal to `p` (tokens hold statics).
fn leak(p: &str) -> &'static str {
    PUNCT.iter().find(|q| **q == p).copied().unwrap_or("")
}

/// Prometheus label name rules: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn is_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn unknown_function_fix(name: &str) -> String {
    let hint = match name {
        "avg_over_time" => Some("avg(metric[5m])"),
        "min_over_time" => Some("min(metric[5m])"),
        "max_over_time" => Some("max(metric[5m])"),
        "last_over_time" => Some("last(metric[5m])"),
        "irate" | "deriv" => Some("rate(metric[5m])"),
        "delta" | "idelta" => Some("increase(metric[5m]) for counters, or last(…) - min(…)"),
        "absent_over_time" => Some("absent(metric[5m])"),
        "sum_over_time" | "count_over_time" => {
            Some("increase(counter[5m]); sums over time are not supported")
        }
        _ => None,
    };
    let all = "window functions: avg min max last rate increase absent (each as \
               f(metric[5m])); aggregations: sum min max avg count; and time()";
    match hint {
        Some(h) => format!("write {h} ({all})"),
        None => format!("use one of the {all}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(q: &str) -> ParseError {
        parse(q).unwrap_err()
    }

    #[test]
    fn window_functions_and_selectors_parse() {
        let e = parse(
            r#"rate(pg_stat_database_xact_rollback_total{datname!~"template.*", x="a\"b"}[5m])"#,
        )
        .unwrap();
        let Expr::Window(t) = &e else { panic!("{e:?}") };
        assert_eq!(t.func, WindowFn::Rate);
        assert_eq!(t.range_ms, 300_000);
        assert_eq!(t.selector.metric, "pg_stat_database_xact_rollback_total");
        assert_eq!(t.selector.matchers.len(), 2);
        assert!(!t.selector.matchers[0].matches("template1"));
        assert!(t.selector.matchers[0].matches("app"));
        assert_eq!(t.selector.matchers[1].value, "a\"b");
        assert_eq!(e.terms().len(), 1);
    }

    #[test]
    fn precedence_and_matching() {
        let e = parse(
            "sum by (agent, pg_instance) (last(a[1m])) / on (agent, pg_instance) \
             (last(b[5m]) - last(c[5m])) > 0.5 and last(d[1m]) > 1e6",
        )
        .unwrap();
        let Expr::Binary(and) = &e else { panic!() };
        assert_eq!(and.op, BinOp::And);
        let Expr::Binary(gt) = and.lhs.as_ref() else {
            panic!()
        };
        assert_eq!(gt.op, BinOp::Gt);
        let Expr::Binary(div) = gt.lhs.as_ref() else {
            panic!()
        };
        assert_eq!(div.op, BinOp::Div);
        assert_eq!(
            div.matching.as_ref().unwrap().labels,
            ["agent".to_owned(), "pg_instance".to_owned()]
        );
        assert_eq!(e.terms().len(), 4);
        // 1 + 2 * 3 binds the product first.
        let e = parse("last(a[1m]) + 2 * 3").unwrap();
        let Expr::Binary(add) = &e else { panic!() };
        assert_eq!(add.op, BinOp::Add);
        assert!(matches!(
            add.rhs.as_ref(),
            Expr::Binary(Binary { op: BinOp::Mul, .. })
        ));
    }

    #[test]
    fn avg_is_a_window_function_or_an_aggregation_by_shape() {
        assert!(matches!(parse("avg(m[5m])").unwrap(), Expr::Window(_)));
        assert!(matches!(
            parse("avg(m{a=\"b\"}[5m])").unwrap(),
            Expr::Window(_)
        ));
        assert!(matches!(
            parse("avg(last(m[5m]))").unwrap(),
            Expr::Aggregate { .. }
        ));
        assert!(matches!(
            parse("max by (agent) (last(m[5m]))").unwrap(),
            Expr::Aggregate { .. }
        ));
        let e = parse("sum(last(m[5m])) by (agent)").unwrap();
        let Expr::Aggregate { grouping, .. } = e else {
            panic!()
        };
        assert_eq!(grouping.labels, ["agent"]);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Some(90_000));
        assert_eq!(parse_duration("1h30m"), Some(5_400_000));
        assert_eq!(parse_duration("500ms"), Some(500));
        assert_eq!(parse_duration("2d"), Some(172_800_000));
        assert_eq!(parse_duration("5"), None);
        assert_eq!(parse_duration("5min"), None);
        assert_eq!(parse_duration("0s"), None);
        assert_eq!(format_duration(5_400_000), "1h30m");
        assert_eq!(format_duration(300_000), "5m");
    }

    #[test]
    fn errors_say_where_and_how_to_fix() {
        let e = err("avg_over_time(pg_up[5m])");
        assert_eq!(e.offset, 0);
        assert!(
            e.message.contains("unknown function `avg_over_time`"),
            "{e}"
        );
        assert!(e.fix.contains("avg(metric[5m])"), "{e}");

        let e = err("last(pg_up)");
        assert_eq!(e.offset, 10);
        assert!(e.message.contains("needs a window"), "{e}");
        assert!(e.fix.contains("last(pg_up[5m])"), "{e}");

        let e = err("pg_up == 0");
        assert!(e.message.contains("needs a window function"), "{e}");

        let e = err("last(pg_up[5 minutes])");
        assert_eq!(e.offset, 10);
        assert!(e.fix.contains("[5m]"), "{e}");

        let e = err("last(m{datname=app}[1m])");
        assert_eq!(e.offset, 15);
        assert!(e.fix.contains("datname=\"app\""), "{e}");

        let e = err("last(m[1m]) = 0");
        assert_eq!(e.offset, 12);
        assert!(e.fix.contains("=="), "{e}");

        let e = err("last(m[1m]) +");
        assert!(e.message.contains("ends"), "{e}");

        let e = err("last(m{a=~\"(\"}[1m])");
        assert!(e.message.contains("regular expression"), "{e}");

        let e = err("42");
        assert!(e.message.contains("selects no series"), "{e}");

        let e = err("last(m[1m]) last(n[1m])");
        assert_eq!(e.offset, 12);

        let e = err("last(a[1m]) and 3");
        assert!(e.message.contains("series on both sides"), "{e}");

        let shown = err("rate(x[5m]) ^ 2").to_string();
        assert!(
            shown.starts_with("at character 13: unexpected character '^'"),
            "{shown}"
        );
    }

    #[test]
    fn display_round_trips() {
        for q in [
            "last(pg_up[1m])",
            "sum by (agent) (rate(x{a=\"1\",b!~\"x.*\"}[5m])) / on (agent) last(y[5m]) > bool 3",
            "time() - last(z[15m]) and last(w[15m]) > 1000000",
            "-last(a[1m]) unless ignoring (datname) last(b[1m])",
        ] {
            let e = parse(q).unwrap();
            let again = parse(&e.to_string()).unwrap();
            assert_eq!(e, again, "{q} → {e}");
        }
    }
}
