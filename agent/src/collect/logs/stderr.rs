//! The `stderr` log destination: lines that start with `log_line_prefix`.
//!
//! The prefix is compiled once into a list of [`Piece`]s and matched byte by byte, no
//! regex. A line starts an entry when the prefix matches and is followed by a severity
//! word and `":  "` (`LOG:  `, `ERROR:  `, …). `DETAIL`, `HINT`, `CONTEXT`, `STATEMENT`,
//! `QUERY` and `LOCATION` lines (same prefix) fill the fields of the entry before them;
//! lines starting with a tab continue the field read last (PostgreSQL indents every
//! continuation line of a multi-line message or statement with a tab). Anything else is
//! skipped and counted.
//!
//! `QUERY:` (the internal query of a PL/pgSQL error) and `LOCATION:` (source position,
//! `log_error_verbosity = verbose`) have no field in [`LogEntry`]; their text is dropped.

use pga_format::Severity;

use super::{LogEntry, MAX_ENTRY_BYTES, ParseStats, append_capped, text_capped};

/// A `log_line_prefix` the parser cannot match.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PrefixError {
    #[error(
        "log_line_prefix {prefix:?}: unknown escape %{escape} (PostgreSQL knows %a %u %d %r %h %b %p %P %t %m %n %i %e %c %l %s %v %x %q %Q %%)"
    )]
    UnknownEscape { prefix: String, escape: char },
    #[error("log_line_prefix {prefix:?} ends with a lone %")]
    TrailingPercent { prefix: String },
}

/// What one `%` escape prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Escape {
    /// `%a` application name.
    App,
    /// `%u` user.
    User,
    /// `%d` database.
    Database,
    /// `%r` remote host and port.
    RemoteWithPort,
    /// `%h` remote host.
    RemoteHost,
    /// `%b` backend type.
    BackendType,
    /// `%p` process id.
    Pid,
    /// `%P` parallel group leader's pid (empty when none).
    LeaderPid,
    /// `%t` time without milliseconds.
    Time,
    /// `%m` time with milliseconds.
    TimeMs,
    /// `%n` epoch with milliseconds.
    Epoch,
    /// `%i` command tag.
    CommandTag,
    /// `%e` SQLSTATE.
    SqlState,
    /// `%c` session id.
    Session,
    /// `%l` line number in the session.
    LineNum,
    /// `%s` session start time.
    SessionStart,
    /// `%v` virtual transaction id.
    VirtualXid,
    /// `%x` transaction id.
    Xid,
    /// `%Q` query id (0 when none).
    QueryId,
}

impl Escape {
    fn from_char(c: char) -> Option<Self> {
        Some(match c {
            'a' => Escape::App,
            'u' => Escape::User,
            'd' => Escape::Database,
            'r' => Escape::RemoteWithPort,
            'h' => Escape::RemoteHost,
            'b' => Escape::BackendType,
            'p' => Escape::Pid,
            'P' => Escape::LeaderPid,
            't' => Escape::Time,
            'm' => Escape::TimeMs,
            'n' => Escape::Epoch,
            'i' => Escape::CommandTag,
            'e' => Escape::SqlState,
            'c' => Escape::Session,
            'l' => Escape::LineNum,
            's' => Escape::SessionStart,
            'v' => Escape::VirtualXid,
            'x' => Escape::Xid,
            'Q' => Escape::QueryId,
            _ => return None,
        })
    }

    /// Prints only digits (possibly none), so it needs no terminator to be matched.
    fn is_numeric(self) -> bool {
        matches!(
            self,
            Escape::Pid | Escape::LeaderPid | Escape::LineNum | Escape::Xid | Escape::QueryId
        )
    }

    /// Prints `YYYY-MM-DD HH:MM:SS[.mmm] ZONE`.
    fn is_time(self) -> bool {
        matches!(self, Escape::Time | Escape::TimeMs | Escape::SessionStart)
    }
}

const ESCAPES: usize = 19;

fn slot(e: Escape) -> usize {
    e as usize
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Literal(Vec<u8>),
    /// An escape with its padding width (`%-10u` → -10, `%10u` → 10, `%u` → 0).
    Field(Escape, i32),
    /// `%q`: background processes stop printing the prefix here.
    SessionOnly,
}

/// A compiled `log_line_prefix`.
#[derive(Debug, Clone)]
pub(crate) struct Prefix {
    pieces: Vec<Piece>,
    /// Index of the last literal piece, whose match must be followed by a severity
    /// header (lets the field before it contain that literal, e.g. spaces in `%a`).
    last_literal: Option<usize>,
}

/// Where each escape's text lies in a matched line.
type Spans = [Option<(usize, usize)>; ESCAPES];

impl Prefix {
    pub(crate) fn compile(prefix: &str) -> Result<Self, PrefixError> {
        let mut pieces = Vec::new();
        let mut literal = Vec::new();
        let mut chars = prefix.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '%' {
                let mut buf = [0; 4];
                literal.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                continue;
            }
            // Optional padding: '-'? digits.
            let mut pad: i32 = 0;
            let mut negative = false;
            if chars.peek() == Some(&'-') {
                negative = true;
                chars.next();
            }
            while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
                pad = pad.saturating_mul(10).saturating_add(d as i32);
                chars.next();
            }
            let Some(e) = chars.next() else {
                return Err(PrefixError::TrailingPercent {
                    prefix: prefix.to_owned(),
                });
            };
            match e {
                '%' => literal.push(b'%'),
                'q' => {
                    if !literal.is_empty() {
                        pieces.push(Piece::Literal(std::mem::take(&mut literal)));
                    }
                    pieces.push(Piece::SessionOnly);
                }
                _ => {
                    let Some(escape) = Escape::from_char(e) else {
                        return Err(PrefixError::UnknownEscape {
                            prefix: prefix.to_owned(),
                            escape: e,
                        });
                    };
                    if !literal.is_empty() {
                        pieces.push(Piece::Literal(std::mem::take(&mut literal)));
                    }
                    pieces.push(Piece::Field(escape, if negative { -pad } else { pad }));
                }
            }
        }
        if !literal.is_empty() {
            pieces.push(Piece::Literal(literal));
        }
        let last_literal = pieces
            .iter()
            .rposition(|p| matches!(p, Piece::Literal(_)))
            .filter(|&i| i + 1 == pieces.len());
        Ok(Self {
            pieces,
            last_literal,
        })
    }

    /// Matches the prefix at the start of `line`; on success returns where the header
    /// (`ERROR:  `…) starts and fills `spans`.
    fn matches(&self, line: &[u8], spans: &mut Spans) -> Option<usize> {
        let mut pos = 0;
        let mut i = 0;
        while i < self.pieces.len() {
            match &self.pieces[i] {
                Piece::Literal(lit) => {
                    if !line[pos..].starts_with(lit) {
                        return None;
                    }
                    pos += lit.len();
                }
                Piece::SessionOnly => {
                    if header(&line[pos..]).is_some() {
                        return Some(pos);
                    }
                }
                &Piece::Field(escape, pad) => {
                    let rest = &line[pos..];
                    let width = pad.unsigned_abs() as usize;
                    let (start, end, next) = if escape.is_numeric() {
                        let lead = if pad > 0 { leading_spaces(rest) } else { 0 };
                        let sign = usize::from(rest.get(lead) == Some(&b'-'));
                        let len = sign
                            + rest[lead + sign..]
                                .iter()
                                .take_while(|b| b.is_ascii_digit())
                                .count();
                        let mut next = lead + len;
                        while next < width && rest.get(next) == Some(&b' ') {
                            next += 1;
                        }
                        (lead, lead + len, next)
                    } else if escape.is_time() {
                        let lead = if pad > 0 { leading_spaces(rest) } else { 0 };
                        let len = time_len(&rest[lead..], escape == Escape::TimeMs)?;
                        let mut next = lead + len;
                        while next < width && rest.get(next) == Some(&b' ') {
                            next += 1;
                        }
                        (lead, lead + len, next)
                    } else {
                        let from = width.min(rest.len());
                        let end = match self.pieces.get(i + 1) {
                            Some(Piece::Literal(lit)) if self.last_literal == Some(i + 1) => {
                                // Search for the final literal followed by a header.
                                let mut at = from;
                                loop {
                                    let found = find(&rest[at..], lit)? + at;
                                    if header(&rest[found + lit.len()..]).is_some() {
                                        break found;
                                    }
                                    at = found + 1;
                                }
                            }
                            Some(Piece::Literal(lit)) => find(&rest[from..], lit)? + from,
                            Some(_) => {
                                from + rest[from..].iter().take_while(|&&b| b != b' ').count()
                            }
                            None => header_suffix(rest, from)?,
                        };
                        let lead = if pad > 0 {
                            leading_spaces(&rest[..end])
                        } else {
                            0
                        };
                        let mut value_end = end;
                        if pad < 0 {
                            while value_end > lead && rest[value_end - 1] == b' ' {
                                value_end -= 1;
                            }
                        }
                        (lead, value_end, end)
                    };
                    spans[slot(escape)] = Some((pos + start, pos + end));
                    pos += next;
                }
            }
            i += 1;
        }
        Some(pos)
    }
}

fn leading_spaces(s: &[u8]) -> usize {
    s.iter().take_while(|&&b| b == b' ').count()
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    match needle {
        [] => Some(0),
        [b] => hay.iter().position(|c| c == b),
        _ => hay.windows(needle.len()).position(|w| w == needle),
    }
}

/// Length of `YYYY-MM-DD HH:MM:SS[.mmm] ZONE` at the start of `s`.
fn time_len(s: &[u8], ms: bool) -> Option<usize> {
    let base = if ms { 23 } else { 19 };
    if s.len() < base || s[4] != b'-' || s[10] != b' ' || s[13] != b':' {
        return None;
    }
    if s.get(base) != Some(&b' ') {
        return Some(base);
    }
    let zone = s[base + 1..]
        .iter()
        .take_while(|&&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-'))
        .count();
    Some(base + 1 + zone)
}

/// What a header word introduces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Header {
    /// A new entry of this severity (`None`: a word PostgreSQL does not print).
    Entry(Severity),
    Detail,
    Hint,
    Context,
    Statement,
    Query,
    Location,
}

/// Longest header word (`STATEMENT`, `LOCATION`, `WARNING`).
const MAX_HEADER_WORD: usize = 9;

/// Reads `WORD:  ` at the start of `s`: the header and the length through the spaces.
fn header(s: &[u8]) -> Option<(Header, usize)> {
    let n = s
        .iter()
        .take(MAX_HEADER_WORD + 1)
        .take_while(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        .count();
    if n == 0 || !s[n..].starts_with(b":  ") {
        return None;
    }
    let word = &s[..n];
    let h = match word {
        b"DETAIL" => Header::Detail,
        b"HINT" => Header::Hint,
        b"CONTEXT" => Header::Context,
        b"STATEMENT" => Header::Statement,
        b"QUERY" => Header::Query,
        b"LOCATION" => Header::Location,
        _ => Header::Entry(super::severity_from_word(word)?),
    };
    Some((h, n + 3))
}

/// For a prefix ending in a free-text field: where the header begins in `s` (searching
/// from `from`), i.e. the end of the field.
fn header_suffix(s: &[u8], from: usize) -> Option<usize> {
    let mut at = from;
    while let Some(colon) = find(&s[at..], b":  ").map(|c| c + at) {
        let word_start = s[..colon]
            .iter()
            .rev()
            .take(MAX_HEADER_WORD)
            .take_while(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
            .count();
        // Try the longest word first, then shorter suffixes (`xLOG` → `LOG`).
        for len in (1..=word_start).rev() {
            let start = colon - len;
            if start >= from && header(&s[start..]).is_some() {
                return Some(start);
            }
        }
        at = colon + 1;
    }
    None
}

/// Which field continuation lines go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Last {
    Message,
    Detail,
    Hint,
    Context,
    Statement,
    Discard,
}

/// Stderr state: the compiled prefix and the entry still taking continuation lines.
#[derive(Debug)]
pub(crate) struct StderrParser {
    prefix: Prefix,
    current: Option<LogEntry>,
    last: Last,
    /// Bytes the current entry may still take.
    budget: usize,
    /// The current entry was cut off (counted once).
    cut: bool,
    /// Entries started so far: tells the caller which line began the held entry.
    pub(crate) started: u64,
}

impl StderrParser {
    pub(crate) fn new(prefix: &str) -> Result<Self, PrefixError> {
        Ok(Self {
            prefix: Prefix::compile(prefix)?,
            current: None,
            last: Last::Discard,
            budget: MAX_ENTRY_BYTES,
            cut: false,
            started: 0,
        })
    }

    /// Whether an entry is waiting for continuation lines.
    pub(crate) fn holds_entry(&self) -> bool {
        self.current.is_some()
    }

    /// One physical line; `cut`: it was cut at [`super::MAX_LINE_BYTES`] (counted
    /// here, once per entry).
    pub(crate) fn line(
        &mut self,
        line: &[u8],
        cut: bool,
        out: &mut Vec<LogEntry>,
        stats: &mut ParseStats,
    ) {
        if self.take_line(line, out, stats) {
            if cut {
                self.mark_cut(stats);
            }
        } else {
            stats.skipped_lines += 1;
            if cut {
                stats.oversized_lines += 1;
            }
        }
    }

    /// Returns false when the line belongs to no entry.
    fn take_line(&mut self, line: &[u8], out: &mut Vec<LogEntry>, stats: &mut ParseStats) -> bool {
        let mut spans: Spans = [None; ESCAPES];
        if let Some(at) = self.prefix.matches(line, &mut spans)
            && let Some((h, len)) = header(&line[at..])
        {
            {
                let text = &line[at + len..];
                match h {
                    Header::Entry(severity) => {
                        self.start_entry(line, &spans, severity, text, out, stats);
                    }
                    _ if self.current.is_none() => return false,
                    Header::Detail => self.set(Last::Detail, text, stats),
                    Header::Hint => self.set(Last::Hint, text, stats),
                    Header::Context => self.set(Last::Context, text, stats),
                    Header::Statement => self.set(Last::Statement, text, stats),
                    Header::Query | Header::Location => self.last = Last::Discard,
                }
                return true;
            }
        }
        match line.strip_prefix(b"\t") {
            Some(rest) if self.current.is_some() => {
                self.continue_field(rest, stats);
                true
            }
            _ => false,
        }
    }

    pub(crate) fn finish(&mut self, out: &mut Vec<LogEntry>, _stats: &mut ParseStats) {
        if let Some(entry) = self.current.take() {
            out.push(entry);
        }
        self.last = Last::Discard;
    }

    fn start_entry(
        &mut self,
        line: &[u8],
        spans: &Spans,
        severity: Severity,
        message: &[u8],
        out: &mut Vec<LogEntry>,
        stats: &mut ParseStats,
    ) {
        if let Some(done) = self.current.take() {
            out.push(done);
        }
        self.budget = MAX_ENTRY_BYTES;
        self.cut = false;
        self.started += 1;
        let get = |e: Escape| spans[slot(e)].map(|(s, e)| &line[s..e]);
        let mut cut = false;
        let mut text = |e: Escape, budget: &mut usize| {
            get(e)
                .filter(|v| !v.is_empty() && *v != b"[unknown]")
                .map(|v| text_capped(v, budget, &mut cut))
        };
        let mut budget = self.budget;
        let mut entry = LogEntry {
            severity: Some(severity),
            user: text(Escape::User, &mut budget),
            database: text(Escape::Database, &mut budget),
            application: text(Escape::App, &mut budget),
            remote: text(Escape::RemoteWithPort, &mut budget)
                .or_else(|| text(Escape::RemoteHost, &mut budget)),
            session: text(Escape::Session, &mut budget),
            backend_type: text(Escape::BackendType, &mut budget),
            ..LogEntry::default()
        };
        entry.message = text_capped(message, &mut budget, &mut cut);
        entry.pid = get(Escape::Pid).and_then(parse_u32);
        entry.sqlstate = get(Escape::SqlState).and_then(super::sqlstate);
        let time = get(Escape::TimeMs)
            .or_else(|| get(Escape::Time))
            .and_then(super::parse_timestamp);
        entry.timestamp_ms = match time {
            Some((ms, unknown_zone)) => {
                if unknown_zone {
                    stats.unknown_timezones += 1;
                }
                Some(ms)
            }
            None => get(Escape::Epoch).and_then(super::parse_epoch),
        };
        self.budget = budget;
        self.current = Some(entry);
        self.last = Last::Message;
        if cut {
            self.mark_cut(stats);
        }
    }

    fn mark_cut(&mut self, stats: &mut ParseStats) {
        if !self.cut {
            self.cut = true;
            stats.oversized_lines += 1;
        }
    }

    fn field(&mut self, which: Last) -> Option<&mut String> {
        let entry = self.current.as_mut()?;
        Some(match which {
            Last::Message => &mut entry.message,
            Last::Detail => entry.detail.get_or_insert_with(String::new),
            Last::Hint => entry.hint.get_or_insert_with(String::new),
            Last::Context => entry.context.get_or_insert_with(String::new),
            Last::Statement => entry.statement.get_or_insert_with(String::new),
            Last::Discard => return None,
        })
    }

    /// A `DETAIL:` (…) line: starts that field (a repeated header adds a line).
    fn set(&mut self, which: Last, text: &[u8], stats: &mut ParseStats) {
        self.last = which;
        let mut budget = self.budget;
        let Some(field) = self.field(which) else {
            return;
        };
        let mut ok = true;
        if !field.is_empty() {
            ok &= append_capped(field, "\n", &mut budget);
        }
        ok &= append_capped(field, &String::from_utf8_lossy(text), &mut budget);
        self.budget = budget;
        if !ok {
            self.mark_cut(stats);
        }
    }

    /// A tab-indented continuation line of the field read last.
    fn continue_field(&mut self, text: &[u8], stats: &mut ParseStats) {
        let mut budget = self.budget;
        let Some(field) = self.field(self.last) else {
            return;
        };
        let ok = append_capped(field, "\n", &mut budget)
            && append_capped(field, &String::from_utf8_lossy(text), &mut budget);
        self.budget = budget;
        if !ok {
            self.mark_cut(stats);
        }
    }
}

fn parse_u32(s: &[u8]) -> Option<u32> {
    std::str::from_utf8(s).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::super::{LogFormat, LogParser};
    use super::*;

    fn parse(prefix: &str, text: &str) -> (Vec<LogEntry>, ParseStats) {
        let mut p = LogParser::new(LogFormat::Stderr, prefix).unwrap();
        let mut out = Vec::new();
        p.feed(text.as_bytes(), &mut out);
        p.finish(&mut out);
        (out, p.stats())
    }

    #[test]
    fn unknown_escape_is_named() {
        let err = Prefix::compile("%m %z ").unwrap_err();
        assert!(matches!(
            err,
            PrefixError::UnknownEscape { escape: 'z', .. }
        ));
        assert!(err.to_string().contains("%z"), "{err}");
        assert!(matches!(
            Prefix::compile("%m %").unwrap_err(),
            PrefixError::TrailingPercent { .. }
        ));
    }

    #[test]
    fn every_escape() {
        let prefix = "%m|%t|%n|%a|%u|%d|%r|%h|%b|%p|%P|%i|%e|%c|%l|%s|%v|%x|%Q|%%|";
        let line = "2024-03-01 12:34:56.789 UTC|2024-03-01 12:34:56 UTC|1709296496.789|\
                    my app|alice|shop|10.0.0.1(5432)|10.0.0.1|client backend|4242|4000|\
                    SELECT|22012|65e1f2a0.1092|7|2024-03-01 12:00:00 UTC|3/17|0|\
                    -123456789|%|ERROR:  division by zero\n";
        let (entries, stats) = parse(prefix, line);
        assert_eq!(stats.skipped_lines, 0);
        let e = &entries[0];
        assert_eq!(e.timestamp_ms, Some(1_709_296_496_789));
        assert_eq!(e.application.as_deref(), Some("my app"));
        assert_eq!(e.user.as_deref(), Some("alice"));
        assert_eq!(e.database.as_deref(), Some("shop"));
        assert_eq!(e.remote.as_deref(), Some("10.0.0.1(5432)"));
        assert_eq!(e.backend_type.as_deref(), Some("client backend"));
        assert_eq!(e.pid, Some(4242));
        assert_eq!(e.sqlstate, Some(*b"22012"));
        assert_eq!(e.session.as_deref(), Some("65e1f2a0.1092"));
        assert_eq!(e.severity, Some(Severity::Error));
        assert_eq!(e.message, "division by zero");
    }

    #[test]
    fn epoch_only_and_padding() {
        let (e, _) = parse(
            "%n [%-8p] %10u:%-6d ",
            "1709296496.789 [42      ]      alice:db     LOG:  hi\n",
        );
        assert_eq!(e[0].timestamp_ms, Some(1_709_296_496_789));
        assert_eq!(e[0].pid, Some(42));
        assert_eq!(e[0].user.as_deref(), Some("alice"));
        assert_eq!(e[0].database.as_deref(), Some("db"));
        assert_eq!(e[0].message, "hi");
    }

    #[test]
    fn session_only_fields_are_absent_for_background_processes() {
        let prefix = "%m [%p] %q%u@%d/%a ";
        let log = "2024-03-01 12:00:00.000 UTC [10] LOG:  checkpoint starting: time\n\
                   2024-03-01 12:00:01.000 UTC [11] bob@app/psql tool ERROR:  boom\n";
        let (e, stats) = parse(prefix, log);
        assert_eq!((e.len(), stats.skipped_lines), (2, 0));
        assert_eq!(e[0].message, "checkpoint starting: time");
        assert_eq!((e[0].pid, e[0].user.as_deref()), (Some(10), None));
        assert_eq!(e[1].user.as_deref(), Some("bob"));
        assert_eq!(e[1].application.as_deref(), Some("psql tool"));
        assert_eq!(e[1].severity, Some(Severity::Error));
    }

    #[test]
    fn multi_line_entries() {
        let prefix = "%m [%p] ";
        let log = "2024-03-01 12:00:00.000 +02 [7] ERROR:  syntax error at or near \"FORM\" at character 10\n\
                   2024-03-01 12:00:00.000 +02 [7] HINT:  check it\n\
                   2024-03-01 12:00:00.000 +02 [7] STATEMENT:  select *\n\
                   \tFORM t\n\
                   \twhere x = 1;\n\
                   2024-03-01 12:00:00.000 +02 [7] LOG:  duration: 1.5 ms\n\
                   2024-03-01 12:00:00.000 CEST [7] WARNING:  a\n\
                   \tb\n\
                   2024-03-01 12:00:00.000 +02 [7] DETAIL:  c\n";
        let (e, stats) = parse(prefix, log);
        assert_eq!(e.len(), 3);
        assert_eq!(e[0].hint.as_deref(), Some("check it"));
        assert_eq!(
            e[0].statement.as_deref(),
            Some("select *\nFORM t\nwhere x = 1;")
        );
        assert_eq!(e[0].timestamp_ms, Some(1_709_287_200_000));
        assert_eq!(e[1].message, "duration: 1.5 ms");
        assert_eq!(e[2].message, "a\nb");
        assert_eq!(e[2].detail.as_deref(), Some("c"));
        assert_eq!(stats.unknown_timezones, 1);
        assert_eq!((stats.lines, stats.entries, stats.skipped_lines), (9, 3, 0));
    }

    #[test]
    fn garbage_is_skipped() {
        let prefix = "%m [%p] ";
        let mut log = b"\tcontinuation before any entry\nnot a log line\n".to_vec();
        log.extend_from_slice(b"\xff\xfe\x00binary\n");
        log.extend_from_slice(b"2024-03-01 12:00:00.000 UTC [7] DETAIL:  stray\n");
        log.extend_from_slice(b"2024-03-01 12:00:00.000 UTC [7] FOO:  unknown word\n");
        log.extend_from_slice(b"2024-03-01 12:00:00.000 UTC [7] LOG:  ok \xff\n");
        let mut p = LogParser::new(LogFormat::Stderr, prefix).unwrap();
        let mut out = Vec::new();
        p.feed(&log, &mut out);
        p.finish(&mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].message, "ok \u{fffd}");
        assert_eq!(p.stats().skipped_lines, 5);
    }

    #[test]
    fn empty_prefix_and_prefix_ending_in_a_field() {
        let (e, _) = parse("", "LOG:  plain\n");
        assert_eq!(e[0].message, "plain");
        let (e, _) = parse("%p %u", "12 USERLOG:  x\n");
        assert_eq!(e[0].user.as_deref(), Some("USER"));
        assert_eq!(e[0].severity, Some(Severity::Log));
    }
}
