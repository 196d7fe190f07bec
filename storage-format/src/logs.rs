//! The log-event column of a block (FORMAT.md, "Log events").

use std::collections::HashMap;

use crate::error::{DecodeError, EncodeError};
use crate::model::{LogEvent, LogEventKind, Severity, is_valid_sqlstate};
use crate::wire::{Reader, put_str, put_varint, unzigzag, zigzag};

/// Most log events one block may carry.
pub const MAX_LOG_EVENTS_PER_BLOCK: usize = 1 << 20;

const HAS_SQLSTATE: u8 = 1 << 0;
const HAS_PID: u8 = 1 << 1;
const HAS_DURATION: u8 = 1 << 2;
const HAS_INSTANCE: u8 = 1 << 3;
const HAS_USER: u8 = 1 << 4;
const HAS_DATABASE: u8 = 1 << 5;
const HAS_APPLICATION: u8 = 1 << 6;
const KNOWN_FLAGS: u8 = 0x7f;

/// The optional text fields, in the order their index columns appear, with their flag bits.
const TEXT_FIELDS: [(u8, &str); 4] = [
    (HAS_INSTANCE, "instance index"),
    (HAS_USER, "user index"),
    (HAS_DATABASE, "database index"),
    (HAS_APPLICATION, "application index"),
];

fn text_field(ev: &LogEvent, flag: u8) -> Option<&String> {
    match flag {
        HAS_INSTANCE => ev.instance.as_ref(),
        HAS_USER => ev.user.as_ref(),
        HAS_DATABASE => ev.database.as_ref(),
        _ => ev.application.as_ref(),
    }
}

fn text_field_mut(ev: &mut LogEvent, flag: u8) -> &mut Option<String> {
    match flag {
        HAS_INSTANCE => &mut ev.instance,
        HAS_USER => &mut ev.user,
        HAS_DATABASE => &mut ev.database,
        _ => &mut ev.application,
    }
}

fn flags_of(ev: &LogEvent) -> u8 {
    let mut f = 0;
    for (bit, present) in [
        (HAS_SQLSTATE, ev.sqlstate.is_some()),
        (HAS_PID, ev.pid.is_some()),
        (HAS_DURATION, ev.duration_ms.is_some()),
        (HAS_INSTANCE, ev.instance.is_some()),
        (HAS_USER, ev.user.is_some()),
        (HAS_DATABASE, ev.database.is_some()),
        (HAS_APPLICATION, ev.application.is_some()),
    ] {
        if present {
            f |= bit;
        }
    }
    f
}

/// Appends the log section for `events`; `min_ts` is the frame's minimum timestamp.
pub(crate) fn encode(
    events: &[LogEvent],
    min_ts: i64,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    if events.len() > MAX_LOG_EVENTS_PER_BLOCK {
        return Err(EncodeError::LimitExceeded {
            what: "log events in one block",
            value: events.len() as u64,
            max: MAX_LOG_EVENTS_PER_BLOCK as u64,
        });
    }
    put_varint(out, events.len() as u64);
    let Some(first) = events.first() else {
        return Ok(());
    };
    put_varint(out, first.timestamp_ms.wrapping_sub(min_ts) as u64);
    for w in events.windows(2) {
        put_varint(
            out,
            zigzag(w[1].timestamp_ms.wrapping_sub(w[0].timestamp_ms)),
        );
    }
    out.extend(events.iter().map(|e| e.severity.code()));
    out.extend(events.iter().map(|e| e.kind.code()));
    out.extend(events.iter().map(flags_of));

    let mut table: HashMap<&str, u64> = HashMap::new();
    let mut strings: Vec<&str> = Vec::new();
    for (flag, _) in TEXT_FIELDS {
        for s in events.iter().filter_map(|e| text_field(e, flag)) {
            table.entry(s.as_str()).or_insert_with(|| {
                strings.push(s);
                strings.len() as u64 - 1
            });
        }
    }
    put_varint(out, strings.len() as u64);
    for s in &strings {
        put_str(out, s);
    }
    for code in events.iter().filter_map(|e| e.sqlstate) {
        out.extend_from_slice(&code);
    }
    for pid in events.iter().filter_map(|e| e.pid) {
        put_varint(out, u64::from(pid));
    }
    for d in events.iter().filter_map(|e| e.duration_ms) {
        out.extend_from_slice(&d.to_bits().to_le_bytes());
    }
    for (flag, _) in TEXT_FIELDS {
        for s in events.iter().filter_map(|e| text_field(e, flag)) {
            put_varint(out, table[s.as_str()]);
        }
    }
    for e in events {
        put_str(out, &e.message);
    }
    Ok(())
}

/// Reads the log section; every timestamp must lie in `[min_ts, max_ts]`.
pub(crate) fn decode(
    r: &mut Reader<'_>,
    min_ts: i64,
    max_ts: i64,
) -> Result<Vec<LogEvent>, DecodeError> {
    // Each event takes at least 4 bytes: timestamp, severity, kind and flags
    // (plus its message length, counted when read).
    let n = r.count("log event count", MAX_LOG_EVENTS_PER_BLOCK, 4)?;
    if n == 0 {
        return Ok(Vec::new());
    }
    let mut events = Vec::with_capacity(n);
    let mut ts = min_ts;
    for i in 0..n {
        let offset = r.offset();
        let v = r.varint("log event timestamp")?;
        ts = if i == 0 {
            min_ts.wrapping_add(v as i64)
        } else {
            ts.wrapping_add(unzigzag(v))
        };
        if ts < min_ts || ts > max_ts {
            return Err(r.invalid_at(
                offset,
                "log event timestamp",
                format!("{ts} lies outside the frame's time range {min_ts}..={max_ts}"),
            ));
        }
        events.push(LogEvent::new(
            ts,
            Severity::Log,
            LogEventKind::Other,
            String::new(),
        ));
    }
    let severities = r.bytes(n, "log severities")?;
    let kinds_at = r.offset();
    let kinds = r.bytes(n, "log event kinds")?;
    let flags_at = r.offset();
    let flags = r.bytes(n, "log event flags")?;
    for (i, ev) in events.iter_mut().enumerate() {
        ev.severity = Severity::from_code(severities[i]).ok_or_else(|| {
            r.invalid_at(
                kinds_at - n + i,
                "log severity",
                format!("{} (0..=11)", severities[i]),
            )
        })?;
        ev.kind = LogEventKind::from_code(kinds[i]).ok_or_else(|| {
            r.invalid_at(
                kinds_at + i,
                "log event kind",
                format!("{} (0..=11)", kinds[i]),
            )
        })?;
        if flags[i] & !KNOWN_FLAGS != 0 {
            return Err(r.invalid_at(
                flags_at + i,
                "log event flags",
                format!("{:#04x} sets reserved bit 7", flags[i]),
            ));
        }
    }
    let has = |i: usize, bit: u8| flags[i] & bit != 0;

    let count = r.count("log string table size", MAX_LOG_EVENTS_PER_BLOCK * 4, 1)?;
    let mut strings = Vec::with_capacity(count);
    for _ in 0..count {
        strings.push(r.string("log string")?);
    }
    for (i, ev) in events.iter_mut().enumerate() {
        if has(i, HAS_SQLSTATE) {
            let at = r.offset();
            let code: [u8; 5] = r.array("SQLSTATE")?;
            if !is_valid_sqlstate(&code) {
                return Err(r.invalid_at(
                    at,
                    "SQLSTATE",
                    format!("{code:02x?} is not five characters of 0-9 or A-Z"),
                ));
            }
            ev.sqlstate = Some(code);
        }
    }
    for (i, ev) in events.iter_mut().enumerate() {
        if has(i, HAS_PID) {
            let at = r.offset();
            let pid = r.varint("pid")?;
            ev.pid = Some(
                u32::try_from(pid).map_err(|_| r.limit_at(at, "pid", pid, u64::from(u32::MAX)))?,
            );
        }
    }
    for (i, ev) in events.iter_mut().enumerate() {
        if has(i, HAS_DURATION) {
            ev.duration_ms = Some(f64::from_bits(r.u64("duration")?));
        }
    }
    for (flag, what) in TEXT_FIELDS {
        for (i, ev) in events.iter_mut().enumerate() {
            if has(i, flag) {
                let at = r.offset();
                let idx = r.varint(what)?;
                let s = strings.get(idx as usize).ok_or_else(|| {
                    r.limit_at(at, what, idx, strings.len().saturating_sub(1) as u64)
                })?;
                *text_field_mut(ev, flag) = Some(s.clone());
            }
        }
    }
    for ev in &mut events {
        ev.message = r.string("log message")?;
    }
    Ok(events)
}
