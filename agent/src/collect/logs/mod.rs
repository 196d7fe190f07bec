//! PostgreSQL server logs: incremental parsers for the three log destinations
//! (`stderr` with a `log_line_prefix`, `csvlog`, `jsonlog`), then classification and
//! redaction.
//!
//! [`LogParser`] takes bytes as they are read from a log file, in chunks of any size,
//! and hands back complete [`LogEntry`]s. It never panics on what it reads: garbage and
//! binary junk are counted and skipped, invalid UTF-8 is replaced, and no entry holds
//! more than [`MAX_ENTRY_BYTES`] of text.

pub mod classify;
pub mod collector;
pub mod csvlog;
pub mod discover;
pub mod entry;
pub mod jsonlog;
pub mod redact;
pub mod stderr;
pub mod tail;

use std::fmt;
use std::str::FromStr;

use chrono::NaiveDate;
use serde::Serialize;

pub use entry::LogEntry;
pub use stderr::PrefixError;

/// The most text one entry keeps, all fields together; the rest is cut off and the
/// entry counted in [`ParseStats::oversized_lines`].
pub const MAX_ENTRY_BYTES: usize = 1 << 20;

/// The most bytes of one physical line (one csv record) kept in memory. Longer lines
/// are cut off here (and counted oversized); csv and stderr still parse what was kept,
/// a cut-off jsonlog line is skipped. Larger than [`MAX_ENTRY_BYTES`] because csv
/// quoting and JSON escaping make the line longer than the text it carries.
pub const MAX_LINE_BYTES: usize = 4 << 20;

/// Which `log_destination` a file was written by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogFormat {
    /// Plain text lines starting with `log_line_prefix`.
    Stderr,
    /// `csvlog`: one RFC 4180 record per entry.
    Csvlog,
    /// `jsonlog` (PostgreSQL 15+): one JSON object per line.
    Jsonlog,
}

impl LogFormat {
    pub const ALL: [LogFormat; 3] = [LogFormat::Stderr, LogFormat::Csvlog, LogFormat::Jsonlog];

    pub const fn as_str(self) -> &'static str {
        match self {
            LogFormat::Stderr => "stderr",
            LogFormat::Csvlog => "csvlog",
            LogFormat::Jsonlog => "jsonlog",
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A log format name that is not one of `stderr`, `csvlog`, `jsonlog`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown log format {0:?}: use stderr, csvlog or jsonlog (the log_destination that wrote the file)"
)]
pub struct UnknownLogFormat(pub String);

impl FromStr for LogFormat {
    type Err = UnknownLogFormat;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "stderr" => Ok(LogFormat::Stderr),
            "csvlog" | "csv" => Ok(LogFormat::Csvlog),
            "jsonlog" | "json" => Ok(LogFormat::Jsonlog),
            _ => Err(UnknownLogFormat(s.to_owned())),
        }
    }
}

/// What a parser has seen so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ParseStats {
    /// Physical lines (csv: records) read, the last unterminated one included once
    /// flushed by [`LogParser::finish`].
    pub lines: u64,
    /// Entries handed out.
    pub entries: u64,
    /// Lines that belong to no entry (garbage, binary junk, a line that is not a record
    /// of the format, a stray `DETAIL:` with no entry before it).
    pub skipped_lines: u64,
    /// Lines longer than [`MAX_LINE_BYTES`] or entries longer than [`MAX_ENTRY_BYTES`];
    /// their text was cut off.
    pub oversized_lines: u64,
    /// Timestamps whose zone was an abbreviation other than `UTC`/`GMT` (read as UTC).
    pub unknown_timezones: u64,
}

/// Incremental parser: feed bytes as they are read from a file (any chunking), get
/// complete entries.
#[derive(Debug)]
pub struct LogParser {
    inner: Inner,
    /// The unterminated line (csv: record) carried over from the previous feed.
    pending: Vec<u8>,
    /// The pending line went over [`MAX_LINE_BYTES`]; the rest of it is dropped.
    pending_cut: bool,
    /// csvlog only: inside a quoted field at the end of `pending`.
    in_quotes: bool,
    stats: ParseStats,
    /// Bytes fed so far.
    fed: u64,
    /// Where the line being read (the pending one) starts in the input.
    line_start: u64,
    /// stderr: where the held entry's first line starts.
    entry_start: u64,
}

#[derive(Debug)]
enum Inner {
    Stderr(Box<stderr::StderrParser>),
    Csv(csvlog::CsvParser),
    Json(jsonlog::JsonParser),
}

impl LogParser {
    /// A parser for `format`; `prefix` is the server's `log_line_prefix` (used only for
    /// [`LogFormat::Stderr`], compiled once here).
    pub fn new(format: LogFormat, prefix: &str) -> Result<Self, PrefixError> {
        let inner = match format {
            LogFormat::Stderr => Inner::Stderr(Box::new(stderr::StderrParser::new(prefix)?)),
            LogFormat::Csvlog => Inner::Csv(csvlog::CsvParser::default()),
            LogFormat::Jsonlog => Inner::Json(jsonlog::JsonParser),
        };
        Ok(Self {
            inner,
            pending: Vec::new(),
            pending_cut: false,
            in_quotes: false,
            stats: ParseStats::default(),
            fed: 0,
            line_start: 0,
            entry_start: 0,
        })
    }

    /// Bytes of input that are done with: every entry they hold was handed out, and
    /// nothing after them was. A reader that stops here and later starts a fresh
    /// parser at this offset neither loses nor repeats an entry.
    pub fn consumed(&self) -> u64 {
        match &self.inner {
            Inner::Stderr(p) if p.holds_entry() => self.entry_start,
            _ => self.line_start,
        }
    }

    /// At the end of what was written so far: when the input ends with a complete line,
    /// hands out the stderr entry still waiting for continuation lines. PostgreSQL
    /// writes an entry with all its lines at once, so an entry complete at the end of
    /// the file is complete. Does nothing in the middle of a line.
    pub fn flush_held(&mut self, out: &mut Vec<LogEntry>) {
        if self.pending.is_empty() && !self.pending_cut && !self.in_quotes {
            let before = out.len();
            if let Inner::Stderr(p) = &mut self.inner {
                p.finish(out, &mut self.stats);
            }
            self.stats.entries += (out.len() - before) as u64;
        }
    }

    /// Parses `bytes`, the next part of the file, and appends the entries it completes
    /// to `out`. An entry is complete when the line after it starts (stderr) or its
    /// line ends (csvlog, jsonlog); the rest waits for more bytes or [`finish`].
    ///
    /// [`finish`]: LogParser::finish
    pub fn feed(&mut self, bytes: &[u8], out: &mut Vec<LogEntry>) {
        let base = self.fed;
        self.fed += bytes.len() as u64;
        let csv = matches!(self.inner, Inner::Csv(_));
        let mut start = 0;
        while start < bytes.len() {
            let Some(end) = self.find_line_end(&bytes[start..], csv) else {
                self.keep_pending(&bytes[start..]);
                return;
            };
            let end = start + end;
            if self.pending.is_empty() && !self.pending_cut {
                let line = &bytes[start..end];
                if line.len() > MAX_LINE_BYTES {
                    self.line(&line[..MAX_LINE_BYTES], true, out);
                } else {
                    self.line(line, false, out);
                }
            } else {
                self.keep_pending(&bytes[start..end]);
                let line = std::mem::take(&mut self.pending);
                let cut = std::mem::replace(&mut self.pending_cut, false);
                self.line(&line, cut, out);
                // Keep the allocation for the next carried-over line.
                self.pending = line;
                self.pending.clear();
            }
            start = end + 1;
            self.line_start = base + start as u64;
        }
    }

    /// End of input: parses the unterminated last line, if any, and hands out the entry
    /// still waiting for continuation lines.
    pub fn finish(&mut self, out: &mut Vec<LogEntry>) {
        if !self.pending.is_empty() || self.pending_cut {
            let line = std::mem::take(&mut self.pending);
            let cut = std::mem::replace(&mut self.pending_cut, false);
            self.line(&line, cut, out);
        }
        self.in_quotes = false;
        let before = out.len();
        if let Inner::Stderr(p) = &mut self.inner {
            p.finish(out, &mut self.stats);
        }
        self.stats.entries += (out.len() - before) as u64;
        self.line_start = self.fed;
    }

    /// Counters so far.
    pub fn stats(&self) -> ParseStats {
        self.stats
    }

    /// The offset of the newline ending the line that starts `bytes` (csv: outside
    /// quotes), tracking the quote state across calls.
    fn find_line_end(&mut self, bytes: &[u8], csv: bool) -> Option<usize> {
        if !csv {
            return bytes.iter().position(|&b| b == b'\n');
        }
        let mut in_quotes = self.in_quotes;
        for (i, &b) in bytes.iter().enumerate() {
            match b {
                b'"' => in_quotes = !in_quotes,
                b'\n' if !in_quotes => {
                    self.in_quotes = false;
                    return Some(i);
                }
                _ => {}
            }
        }
        self.in_quotes = in_quotes;
        None
    }

    fn keep_pending(&mut self, bytes: &[u8]) {
        let room = MAX_LINE_BYTES.saturating_sub(self.pending.len());
        if bytes.len() > room {
            self.pending.extend_from_slice(&bytes[..room]);
            self.pending_cut = true;
        } else {
            self.pending.extend_from_slice(bytes);
        }
    }

    fn line(&mut self, line: &[u8], cut: bool, out: &mut Vec<LogEntry>) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        self.stats.lines += 1;
        let before = out.len();
        match &mut self.inner {
            Inner::Stderr(p) => {
                let started = p.started;
                p.line(line, cut, out, &mut self.stats);
                if p.started != started {
                    self.entry_start = self.line_start;
                }
            }
            Inner::Csv(p) => p.record(line, cut, out, &mut self.stats),
            Inner::Json(p) => p.line(line, cut, out, &mut self.stats),
        }
        self.stats.entries += (out.len() - before) as u64;
    }
}

/// Appends `src` to `dst` within the entry's remaining `budget` bytes, cutting at a
/// character boundary. Returns false when something was cut off.
pub(crate) fn append_capped(dst: &mut String, src: &str, budget: &mut usize) -> bool {
    if src.len() <= *budget {
        dst.push_str(src);
        *budget -= src.len();
        return true;
    }
    let mut end = *budget;
    while end > 0 && !src.is_char_boundary(end) {
        end -= 1;
    }
    dst.push_str(&src[..end]);
    *budget = 0;
    false
}

/// Lossy UTF-8 text of `bytes`, cut to the entry's remaining `budget`. Sets `*cut` when
/// something was cut off.
pub(crate) fn text_capped(bytes: &[u8], budget: &mut usize, cut: &mut bool) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut s = String::with_capacity(text.len().min(*budget));
    if !append_capped(&mut s, &text, budget) {
        *cut = true;
    }
    s
}

/// Maps the word PostgreSQL prints to a severity.
pub(crate) fn severity_from_word(word: &[u8]) -> Option<pga_format::Severity> {
    use pga_format::Severity as S;
    Some(match word {
        b"LOG" => S::Log,
        b"ERROR" => S::Error,
        b"WARNING" => S::Warning,
        b"FATAL" => S::Fatal,
        b"NOTICE" => S::Notice,
        b"INFO" => S::Info,
        b"PANIC" => S::Panic,
        b"DEBUG" | b"DEBUG1" => S::Debug1,
        b"DEBUG2" => S::Debug2,
        b"DEBUG3" => S::Debug3,
        b"DEBUG4" => S::Debug4,
        b"DEBUG5" => S::Debug5,
        _ => return None,
    })
}

/// A SQLSTATE: exactly five of `0-9A-Z`. `00000` (successful completion, which `%e` and
/// csvlog print on every non-error entry while jsonlog leaves the key out) is `None`, so
/// that the three formats agree.
pub(crate) fn sqlstate(bytes: &[u8]) -> Option<[u8; 5]> {
    let code: [u8; 5] = bytes.try_into().ok()?;
    if code == *b"00000" {
        return None;
    }
    code.iter()
        .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
        .then_some(code)
}

/// Parses PostgreSQL's `YYYY-MM-DD HH:MM:SS[.fff] ZONE` (`%m`, `%t`, csvlog, jsonlog)
/// into milliseconds since the epoch. `ZONE` may be `UTC`, `GMT`, or a numeric offset
/// (`+02`, `-0530`, `+05:30`); any other abbreviation is read as UTC and flagged in the
/// second value.
pub(crate) fn parse_timestamp(s: &[u8]) -> Option<(i64, bool)> {
    let (datetime, zone) = match s.iter().rposition(|&b| b == b' ') {
        Some(i) if i > 10 => (&s[..i], &s[i + 1..]),
        _ => (s, &b""[..]),
    };
    if datetime.len() < 19
        || datetime[4] != b'-'
        || datetime[7] != b'-'
        || datetime[10] != b' '
        || datetime[13] != b':'
        || datetime[16] != b':'
    {
        return None;
    }
    let year = digits(&datetime[0..4])?;
    let month = digits(&datetime[5..7])?;
    let day = digits(&datetime[8..10])?;
    let hour = digits(&datetime[11..13])?;
    let min = digits(&datetime[14..16])?;
    let sec = digits(&datetime[17..19])?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 24 || min > 59 || sec > 60 {
        return None;
    }
    let mut ms = 0;
    let frac = &datetime[19..];
    if let Some(f) = frac.strip_prefix(b".") {
        if f.is_empty() || !f.iter().all(u8::is_ascii_digit) {
            return None;
        }
        for (i, &d) in f.iter().take(3).enumerate() {
            ms += i64::from(d - b'0') * [100, 10, 1][i];
        }
    } else if !frac.is_empty() {
        return None;
    }
    let (offset_secs, unknown) = zone_offset(zone);
    // The fields are read by position above (this runs for every log line); chrono
    // does the calendar.
    let date = NaiveDate::from_ymd_opt(year as i32, month as u32, day as u32)?;
    let days = i64::from(date.to_epoch_days());
    let secs = days * 86_400 + hour * 3600 + min * 60 + sec - offset_secs;
    Some((secs * 1000 + ms, unknown))
}

/// The UTC offset of a zone as PostgreSQL prints it, and whether it was unknown.
fn zone_offset(zone: &[u8]) -> (i64, bool) {
    match zone {
        b"" | b"UTC" | b"GMT" | b"Z" | b"UCT" => return (0, false),
        _ => {}
    }
    let sign = match zone[0] {
        b'+' => 1,
        b'-' => -1,
        _ => return (0, true),
    };
    let rest: Vec<u8> = zone[1..].iter().copied().filter(|&b| b != b':').collect();
    let parsed = match rest.len() {
        1 | 2 => digits(&rest).map(|h| h * 3600),
        4 => digits(&rest[..2])
            .zip(digits(&rest[2..]))
            .map(|(h, m)| h * 3600 + m * 60),
        6 => digits(&rest[..2])
            .zip(digits(&rest[2..4]))
            .zip(digits(&rest[4..]))
            .map(|((h, m), s)| h * 3600 + m * 60 + s),
        _ => None,
    };
    match parsed {
        Some(secs) => (sign * secs, false),
        None => (0, true),
    }
}

fn digits(s: &[u8]) -> Option<i64> {
    if s.is_empty() || s.len() > 18 {
        return None;
    }
    let mut n = 0i64;
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n * 10 + i64::from(b - b'0');
    }
    Some(n)
}

/// `%n`: seconds since the epoch with milliseconds (`1700000000.123`).
pub(crate) fn parse_epoch(s: &[u8]) -> Option<i64> {
    let (secs, frac) = match s.iter().position(|&b| b == b'.') {
        Some(i) => (&s[..i], &s[i + 1..]),
        None => (s, &b""[..]),
    };
    let mut ms = digits(secs)?.checked_mul(1000)?;
    for (i, &d) in frac.iter().take(3).enumerate() {
        if !d.is_ascii_digit() {
            return None;
        }
        ms += i64::from(d - b'0') * [100, 10, 1][i];
    }
    Some(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_names() {
        for f in LogFormat::ALL {
            assert_eq!(f.as_str().parse::<LogFormat>(), Ok(f));
        }
        let err = "syslog".parse::<LogFormat>().unwrap_err().to_string();
        assert!(err.contains("syslog") && err.contains("csvlog"), "{err}");
    }

    #[test]
    fn timestamps() {
        let utc = parse_timestamp(b"2024-03-01 12:34:56.789 UTC").unwrap();
        assert_eq!(utc, (1_709_296_496_789, false));
        assert_eq!(
            parse_timestamp(b"2024-03-01 14:34:56.789 +02").unwrap().0,
            utc.0
        );
        assert_eq!(
            parse_timestamp(b"2024-03-01 07:04:56.789 -0530").unwrap().0,
            utc.0
        );
        assert_eq!(
            parse_timestamp(b"2024-03-01 12:34:56 GMT").unwrap().0,
            utc.0 - 789
        );
        assert_eq!(
            parse_timestamp(b"2024-03-01 12:34:56.789 CET"),
            Some((utc.0, true))
        );
        assert_eq!(parse_timestamp(b"2024-13-01 12:34:56 UTC"), None);
        assert_eq!(parse_timestamp(b"garbage"), None);
        assert_eq!(parse_epoch(b"1709296496.789"), Some(utc.0));
    }

    #[test]
    fn capped_append_cuts_at_char_boundary() {
        let mut s = String::new();
        let mut budget = 4;
        assert!(!append_capped(&mut s, "abcé", &mut budget));
        assert_eq!((s.as_str(), budget), ("abc", 0));
    }

    fn run(format: LogFormat, prefix: &str, chunks: &[&[u8]]) -> (Vec<LogEntry>, ParseStats) {
        let mut p = LogParser::new(format, prefix).unwrap();
        let mut out = Vec::new();
        for c in chunks {
            p.feed(c, &mut out);
        }
        p.finish(&mut out);
        (out, p.stats())
    }

    const STDERR: &[u8] = b"2024-03-01 12:00:00.000 UTC [7] app@db/psql ERROR:  syntax error\n\
        2024-03-01 12:00:00.000 UTC [7] app@db/psql STATEMENT:  select *\n\
        \tFORM t;\n\
        garbage \xff\n\
        2024-03-01 12:00:01.000 UTC [8] LOG:  checkpoint complete\n\
        2024-03-01 12:00:02.000 UTC [9] app@db/ LOG:  duration: 0.1 ms";
    const CSV: &[u8] = b"2024-03-01 12:34:56.789 UTC,\"a\",\"d\",1,,s,1,,2024-03-01 12:00:00 UTC,,0,ERROR,42601,\"m \"\"q\"\"\",,,,,,\"select\n1\",,,\"app\",\"client backend\",,0\r\n\
        junk\n\
        2024-03-01 12:34:56.789 UTC,,,2,,s,1,,2024-03-01 12:00:00 UTC,,0,LOG,00000,\"x\",,,,,,,,,\"\",\"checkpointer\",,0";
    const JSON: &[u8] = b"{\"error_severity\":\"ERROR\",\"state_code\":\"42601\",\"message\":\"a\\nb\",\"pid\":1}\n\
        {bad\n\
        {\"error_severity\":\"LOG\",\"message\":\"x\"}";

    #[test]
    fn every_split_point_gives_the_same_result() {
        for (format, prefix, sample, entries) in [
            (LogFormat::Stderr, "%m [%p] %q%u@%d/%a ", STDERR, 3),
            (LogFormat::Csvlog, "", CSV, 2),
            (LogFormat::Jsonlog, "", JSON, 2),
        ] {
            let whole = run(format, prefix, &[sample]);
            assert_eq!(whole.0.len(), entries, "{format}");
            assert_eq!(whole.1.skipped_lines, 1, "{format}");
            for i in 0..=sample.len() {
                let (a, b) = sample.split_at(i);
                assert_eq!(run(format, prefix, &[a, b]), whole, "{format} split at {i}");
            }
            let bytes: Vec<&[u8]> = sample.chunks(1).collect();
            assert_eq!(run(format, prefix, &bytes), whole, "{format} byte by byte");
        }
    }

    #[test]
    fn restarting_at_the_consumed_offset_neither_loses_nor_repeats() {
        for (format, prefix, sample) in [
            (LogFormat::Stderr, "%m [%p] %q%u@%d/%a ", STDERR),
            (LogFormat::Csvlog, "", CSV),
            (LogFormat::Jsonlog, "", JSON),
        ] {
            let whole = run(format, prefix, &[sample]).0;
            for i in 0..=sample.len() {
                let mut first = LogParser::new(format, prefix).unwrap();
                let mut out = Vec::new();
                first.feed(&sample[..i], &mut out);
                let at = usize::try_from(first.consumed()).unwrap();
                assert!(at <= i, "{format}: consumed {at} of {i}");
                // A fresh parser from the saved offset, as after a restart.
                let mut again = LogParser::new(format, prefix).unwrap();
                again.feed(&sample[at..], &mut out);
                again.finish(&mut out);
                assert_eq!(out, whole, "{format}: stopped at {i}, consumed {at}");
            }
        }
    }

    #[test]
    fn oversized_entries_are_cut_not_kept_whole() {
        let big = "x".repeat(3 * MAX_ENTRY_BYTES);
        // stderr: a long message line, then a long continuation.
        let log = format!("LOG:  {big}\nLOG:  short\n\t{big}\nLOG:  after\n");
        let (e, s) = run(LogFormat::Stderr, "", &[log.as_bytes()]);
        assert_eq!(e.len(), 3);
        assert_eq!(e[0].message.len(), MAX_ENTRY_BYTES);
        assert!(e[1].message.len() <= MAX_ENTRY_BYTES && e[1].message.starts_with("short\n"));
        assert_eq!(e[2].message, "after");
        assert_eq!(s.oversized_lines, 2);
        // A line over MAX_LINE_BYTES, fed in small chunks.
        let huge = format!("LOG:  {}\nLOG:  next\n", "y".repeat(2 * MAX_LINE_BYTES));
        let chunks: Vec<&[u8]> = huge.as_bytes().chunks(65_536).collect();
        let (e, s) = run(LogFormat::Stderr, "", &chunks);
        assert_eq!((e.len(), e[1].message.as_str()), (2, "next"));
        assert_eq!(e[0].message.len(), MAX_ENTRY_BYTES);
        assert_eq!(s.oversized_lines, 1);
        // csv: a long quoted message.
        let rec =
            format!("2024-03-01 12:34:56.789 UTC,,,2,,s,1,,,,0,LOG,00000,\"{big}\",,,,,,,,,\"\"\n");
        let (e, s) = run(LogFormat::Csvlog, "", &[rec.as_bytes()]);
        // The session id "s" counts against the same budget.
        assert_eq!(
            (e.len(), e[0].message.len(), s.oversized_lines),
            (1, MAX_ENTRY_BYTES - 1, 1)
        );
        // json: a long message.
        let line = format!("{{\"error_severity\":\"LOG\",\"message\":\"{big}\"}}\n");
        let (e, s) = run(LogFormat::Jsonlog, "", &[line.as_bytes()]);
        assert_eq!(
            (e.len(), e[0].message.len(), s.oversized_lines),
            (1, MAX_ENTRY_BYTES, 1)
        );
    }

    #[test]
    fn binary_junk_never_panics() {
        let mut junk = Vec::new();
        let mut x: u32 = 12345;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            junk.push(match x % 7 {
                0 => b'\n',
                1 => b'"',
                2 => b',',
                3 => b'{',
                _ => (x >> 8) as u8,
            });
        }
        for format in LogFormat::ALL {
            let (e, s) = run(format, "%m [%p] %q%u@%d ", &[&junk]);
            assert!(e.is_empty(), "{format}");
            assert!(
                s.skipped_lines > 0 && s.lines >= s.skipped_lines,
                "{format}"
            );
        }
    }
}
