//! The `jsonlog` destination (PostgreSQL 15+): one JSON object per line. Keys that are
//! absent or unknown are ignored; a line that is not a JSON object with an
//! `error_severity` PostgreSQL prints is skipped.

use std::borrow::Cow;

use serde::Deserialize;

use super::{LogEntry, MAX_ENTRY_BYTES, ParseStats, append_capped};

/// The keys of a jsonlog line the parser keeps.
#[derive(Debug, Deserialize)]
struct Line<'a> {
    #[serde(borrow)]
    timestamp: Option<Cow<'a, str>>,
    #[serde(borrow)]
    user: Option<Cow<'a, str>>,
    #[serde(borrow)]
    dbname: Option<Cow<'a, str>>,
    pid: Option<u32>,
    #[serde(borrow)]
    remote_host: Option<Cow<'a, str>>,
    remote_port: Option<u32>,
    #[serde(borrow)]
    session_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    error_severity: Option<Cow<'a, str>>,
    #[serde(borrow)]
    state_code: Option<Cow<'a, str>>,
    #[serde(borrow)]
    message: Option<Cow<'a, str>>,
    #[serde(borrow)]
    detail: Option<Cow<'a, str>>,
    #[serde(borrow)]
    hint: Option<Cow<'a, str>>,
    #[serde(borrow)]
    context: Option<Cow<'a, str>>,
    #[serde(borrow)]
    statement: Option<Cow<'a, str>>,
    #[serde(borrow)]
    application_name: Option<Cow<'a, str>>,
    #[serde(borrow)]
    backend_type: Option<Cow<'a, str>>,
}

/// jsonlog keeps no state between lines.
#[derive(Debug, Default)]
pub(crate) struct JsonParser;

impl JsonParser {
    pub(crate) fn line(
        &mut self,
        line: &[u8],
        cut: bool,
        out: &mut Vec<LogEntry>,
        stats: &mut ParseStats,
    ) {
        if cut {
            stats.oversized_lines += 1;
        }
        let first = line.iter().position(|b| !b.is_ascii_whitespace());
        if cut || first.is_none_or(|i| line[i] != b'{') {
            stats.skipped_lines += 1;
            return;
        }
        let parsed = match serde_json::from_slice::<Line<'_>>(line) {
            Ok(l) => convert(l, stats),
            Err(_) if std::str::from_utf8(line).is_err() => {
                let text = String::from_utf8_lossy(line);
                serde_json::from_str::<Line<'_>>(&text)
                    .ok()
                    .and_then(|l| convert(l, stats))
            }
            Err(_) => None,
        };
        match parsed {
            Some(entry) => out.push(entry),
            None => stats.skipped_lines += 1,
        }
    }
}

fn convert(l: Line<'_>, stats: &mut ParseStats) -> Option<LogEntry> {
    let severity = super::severity_from_word(l.error_severity?.as_bytes())?;
    let mut budget = MAX_ENTRY_BYTES;
    let mut whole = true;
    let mut text = |v: Option<Cow<'_, str>>| -> Option<String> {
        let v = v.filter(|v| !v.is_empty())?;
        let mut s = String::with_capacity(v.len().min(budget));
        whole &= append_capped(&mut s, &v, &mut budget);
        Some(s)
    };
    let remote = match (l.remote_host, l.remote_port) {
        (Some(h), Some(p)) if !h.is_empty() => Some(Cow::Owned(format!("{h}:{p}"))),
        (h, _) => h,
    };
    let mut entry = LogEntry {
        severity: Some(severity),
        sqlstate: l
            .state_code
            .as_deref()
            .and_then(|c| super::sqlstate(c.as_bytes())),
        pid: l.pid,
        user: text(l.user),
        database: text(l.dbname),
        application: text(l.application_name),
        remote: text(remote),
        session: text(l.session_id),
        backend_type: text(l.backend_type),
        message: text(l.message).unwrap_or_default(),
        detail: text(l.detail),
        hint: text(l.hint),
        context: text(l.context),
        statement: text(l.statement),
        ..LogEntry::default()
    };
    if let Some((ms, unknown)) = l
        .timestamp
        .as_deref()
        .and_then(|t| super::parse_timestamp(t.as_bytes()))
    {
        entry.timestamp_ms = Some(ms);
        if unknown {
            stats.unknown_timezones += 1;
        }
    }
    if !whole {
        stats.oversized_lines += 1;
    }
    Some(entry)
}

#[cfg(test)]
mod tests {
    use super::super::{LogFormat, LogParser};
    use pga_format::Severity;

    #[test]
    fn lines_and_garbage() {
        let text = concat!(
            r#"{"timestamp":"2024-03-01 12:34:56.789 UTC","user":"alice","dbname":"shop","pid":4242,"remote_host":"10.0.0.1","remote_port":5432,"session_id":"65e1f2a0.1092","line_num":7,"ps":"SELECT","session_start":"2024-03-01 12:00:00 UTC","vxid":"3/17","txid":0,"error_severity":"ERROR","state_code":"22012","message":"division by zero","statement":"select 1/0;\n\"x\"","application_name":"psql","backend_type":"client backend","query_id":0}"#,
            "\n",
            "not json\n",
            "{\"error_severity\":\"LOUD\",\"message\":\"x\"}\n",
            "{\"timestamp\":\"2024-03-01 12:34:57.000 UTC\",\"pid\":99,\"error_severity\":\"LOG\",\"message\":\"café\"}\n",
            "{\"error_severity\":\"LOG\",\"message\":\"trunc"
        );
        let mut p = LogParser::new(LogFormat::Jsonlog, "").unwrap();
        let mut out = Vec::new();
        p.feed(text.as_bytes(), &mut out);
        assert_eq!(out.len(), 2);
        p.finish(&mut out);
        let e = &out;
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].timestamp_ms, Some(1_709_296_496_789));
        assert_eq!(e[0].severity, Some(Severity::Error));
        assert_eq!(e[0].sqlstate, Some(*b"22012"));
        assert_eq!(e[0].remote.as_deref(), Some("10.0.0.1:5432"));
        assert_eq!(e[0].statement.as_deref(), Some("select 1/0;\n\"x\""));
        assert_eq!(e[1].message, "café");
        assert_eq!(e[1].pid, Some(99));
        assert_eq!(p.stats().skipped_lines, 3);
    }

    #[test]
    fn invalid_utf8_is_replaced() {
        let mut line = br#"{"error_severity":"LOG","message":"bad "#.to_vec();
        line.extend_from_slice(b"\xff\"}\n");
        let mut p = LogParser::new(LogFormat::Jsonlog, "").unwrap();
        let mut out = Vec::new();
        p.feed(&line, &mut out);
        assert_eq!(out[0].message, "bad \u{fffd}");
    }
}
