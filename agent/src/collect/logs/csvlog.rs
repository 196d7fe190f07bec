//! The `csvlog` destination: one RFC 4180 record per entry (quoted fields may hold
//! newlines and doubled quotes), in PostgreSQL's column order. PostgreSQL 12 writes 23
//! columns, 13 adds `backend_type`, 14 adds `leader_pid` and `query_id`: 23 to 26
//! columns are accepted.

use super::{LogEntry, MAX_ENTRY_BYTES, ParseStats, text_capped};

/// Column numbers (0-based) of PostgreSQL's csvlog.
mod col {
    pub const LOG_TIME: usize = 0;
    pub const USER_NAME: usize = 1;
    pub const DATABASE_NAME: usize = 2;
    pub const PROCESS_ID: usize = 3;
    pub const CONNECTION_FROM: usize = 4;
    pub const SESSION_ID: usize = 5;
    pub const ERROR_SEVERITY: usize = 11;
    pub const SQL_STATE_CODE: usize = 12;
    pub const MESSAGE: usize = 13;
    pub const DETAIL: usize = 14;
    pub const HINT: usize = 15;
    pub const CONTEXT: usize = 18;
    pub const QUERY: usize = 19;
    pub const APPLICATION_NAME: usize = 22;
    pub const BACKEND_TYPE: usize = 23;
}

const MIN_COLUMNS: usize = 23;
const MAX_COLUMNS: usize = 26;

/// csvlog state: only a reusable list of field positions.
#[derive(Debug, Default)]
pub(crate) struct CsvParser {
    /// Per field: start, end (quotes excluded) and whether it holds doubled quotes.
    fields: Vec<(usize, usize, bool)>,
}

impl CsvParser {
    /// One record (its embedded newlines included, the final newline not). `cut`: the
    /// record was cut at [`super::MAX_LINE_BYTES`]; what was kept is used when the
    /// message column is there.
    pub(crate) fn record(
        &mut self,
        rec: &[u8],
        cut: bool,
        out: &mut Vec<LogEntry>,
        stats: &mut ParseStats,
    ) {
        if cut {
            stats.oversized_lines += 1;
        }
        if !split(rec, &mut self.fields) {
            stats.skipped_lines += 1;
            return;
        }
        let n = self.fields.len();
        let complete = (MIN_COLUMNS..=MAX_COLUMNS).contains(&n);
        if !(complete || cut && n > col::MESSAGE) {
            stats.skipped_lines += 1;
            return;
        }
        let raw = |i: usize| -> Option<(&[u8], bool)> {
            self.fields.get(i).map(|&(s, e, q)| (&rec[s..e], q))
        };
        let Some(severity) =
            raw(col::ERROR_SEVERITY).and_then(|(v, _)| super::severity_from_word(v))
        else {
            stats.skipped_lines += 1;
            return;
        };
        let mut budget = MAX_ENTRY_BYTES;
        let mut trunc = false;
        let mut text = |i: usize| -> Option<String> {
            let (v, quoted) = raw(i)?;
            if v.is_empty() {
                return None;
            }
            if quoted {
                let unq = unquote(v);
                Some(text_capped(&unq, &mut budget, &mut trunc))
            } else {
                Some(text_capped(v, &mut budget, &mut trunc))
            }
        };
        let mut entry = LogEntry {
            severity: Some(severity),
            user: text(col::USER_NAME),
            database: text(col::DATABASE_NAME),
            remote: text(col::CONNECTION_FROM),
            session: text(col::SESSION_ID),
            message: text(col::MESSAGE).unwrap_or_default(),
            detail: text(col::DETAIL),
            hint: text(col::HINT),
            context: text(col::CONTEXT),
            statement: text(col::QUERY),
            application: text(col::APPLICATION_NAME),
            backend_type: text(col::BACKEND_TYPE),
            ..LogEntry::default()
        };
        entry.pid =
            raw(col::PROCESS_ID).and_then(|(v, _)| std::str::from_utf8(v).ok()?.parse().ok());
        entry.sqlstate = raw(col::SQL_STATE_CODE).and_then(|(v, _)| super::sqlstate(v));
        if let Some((ms, unknown)) = raw(col::LOG_TIME).and_then(|(v, _)| super::parse_timestamp(v))
        {
            entry.timestamp_ms = Some(ms);
            if unknown {
                stats.unknown_timezones += 1;
            }
        }
        if trunc && !cut {
            stats.oversized_lines += 1;
        }
        out.push(entry);
    }
}

/// Splits a record into fields. Returns false when it is not csv (a quote inside an
/// unquoted field, or text after a closing quote). An unterminated quoted field at the
/// end (a cut-off record) ends the record.
fn split(rec: &[u8], fields: &mut Vec<(usize, usize, bool)>) -> bool {
    fields.clear();
    let mut i = 0;
    loop {
        if fields.len() > MAX_COLUMNS {
            return false;
        }
        if rec.get(i) == Some(&b'"') {
            let start = i + 1;
            let mut j = start;
            let mut doubled = false;
            let end = loop {
                match rec[j..].iter().position(|&b| b == b'"') {
                    None => break rec.len(),
                    Some(k) => {
                        j += k;
                        if rec.get(j + 1) == Some(&b'"') {
                            doubled = true;
                            j += 2;
                        } else {
                            break j;
                        }
                    }
                }
            };
            fields.push((start, end, doubled));
            i = end + 1;
            match rec.get(i) {
                None => return true,
                Some(b',') => i += 1,
                Some(_) if end == rec.len() => return true,
                Some(_) => return false,
            }
        } else {
            let len = rec[i..].iter().position(|&b| b == b',');
            let end = len.map_or(rec.len(), |l| i + l);
            if rec[i..end].contains(&b'"') {
                return false;
            }
            fields.push((i, end, false));
            match len {
                None => return true,
                Some(_) => i = end + 1,
            }
        }
    }
}

/// A quoted field's text with doubled quotes made single.
fn unquote(v: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        out.push(v[i]);
        i += if v[i] == b'"' && v.get(i + 1) == Some(&b'"') {
            2
        } else {
            1
        };
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::{LogFormat, LogParser};
    use super::*;
    use pga_format::Severity;

    const SAMPLE: &str = concat!(
        "2024-03-01 12:34:56.789 UTC,\"alice\",\"shop\",4242,\"10.0.0.1:5432\",65e1f2a0.1092,7,\"SELECT\",",
        "2024-03-01 12:00:00 UTC,3/17,0,ERROR,22012,\"division by zero\",,,,,,\"select 1/0,\n  \"\"x\"\"\",,,\"psql\",\"client backend\",,0\n",
        "2024-03-01 12:34:57.000 UTC,,,99,,65e1f2a0.63,1,,2024-03-01 12:00:00 UTC,,0,LOG,00000,",
        "\"checkpoint starting: time\",,,,,,,,,\"\",\"checkpointer\",,0\n"
    );

    fn parse(text: &[u8]) -> (Vec<LogEntry>, ParseStats) {
        let mut p = LogParser::new(LogFormat::Csvlog, "").unwrap();
        let mut out = Vec::new();
        p.feed(text, &mut out);
        p.finish(&mut out);
        (out, p.stats())
    }

    #[test]
    fn records_with_newlines_and_quotes() {
        let (e, stats) = parse(SAMPLE.as_bytes());
        assert_eq!((e.len(), stats.skipped_lines), (2, 0));
        assert_eq!(e[0].timestamp_ms, Some(1_709_296_496_789));
        assert_eq!(e[0].user.as_deref(), Some("alice"));
        assert_eq!(e[0].pid, Some(4242));
        assert_eq!(e[0].remote.as_deref(), Some("10.0.0.1:5432"));
        assert_eq!(e[0].severity, Some(Severity::Error));
        assert_eq!(e[0].sqlstate, Some(*b"22012"));
        assert_eq!(e[0].statement.as_deref(), Some("select 1/0,\n  \"x\""));
        assert_eq!(e[0].application.as_deref(), Some("psql"));
        assert_eq!(e[1].backend_type.as_deref(), Some("checkpointer"));
        assert_eq!(e[1].user, None);
        assert_eq!(e[1].message, "checkpoint starting: time");
    }

    #[test]
    fn column_counts_23_to_26() {
        let base = "2024-03-01 12:34:56.789 UTC,,,1,,s,1,,2024-03-01 12:00:00 UTC,,0,LOG,00000,\"m\",,,,,,,,,\"app\"";
        for extra in ["", ",\"bt\"", ",\"bt\",", ",\"bt\",,0"] {
            let (e, s) = parse(format!("{base}{extra}\n").as_bytes());
            assert_eq!((e.len(), s.skipped_lines), (1, 0), "{extra}");
        }
        let (e, s) = parse(b"a,b,c\n\"unterminated,x\nfoo\"bar,1\n");
        assert_eq!((e.len(), s.skipped_lines), (0, 2));
    }
}
