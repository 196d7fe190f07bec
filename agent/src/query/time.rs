//! Times and steps as a user writes them on the command line, and times as the output
//! shows them.
//!
//! [`parse_time`] accepts, in this order:
//!
//! | form | example | meaning |
//! | --- | --- | --- |
//! | `now` | `now` | the current time |
//! | a duration | `90s`, `15m`, `2h`, `1d`, `1h30m`, `now-2h`, `-2h`, `2h ago` | that long before now |
//! | RFC 3339 | `2026-11-24T08:00:00Z`, `2026-11-24T09:00:00.250+01:00` | that instant; the zone (`Z` or an offset) is required |
//! | Unix seconds | `1795507200`, `1795507200.5` | 10 digits (years 2001–5138) |
//! | Unix milliseconds | `1795507200000` | 13 digits, as in the JSON and CSV output |
//!
//! Durations use [`humantime`] units (`ms`, `s`, `m`, `h`, `d`, `w`, `M` = 30.44 days,
//! `y` = 365.25 days) and may combine them (`1h30m`, `1d 12h`). A bare number is never a
//! duration: it is a Unix time, seconds or milliseconds told apart by size (10 digits
//! are seconds, 13 are milliseconds; other sizes are refused rather than guessed).
//!
//! [`parse_step`] accepts a duration (`10s`, `5m`, `1h`) or a bare number of seconds
//! (`60`), at least 1 ms.
//!
//! All times are milliseconds since the Unix epoch (UTC), as in [`pga_format::Sample`].

use std::time::Duration;

use chrono::{
    DateTime, Datelike, FixedOffset, NaiveDate, NaiveTime, Offset, SecondsFormat, TimeZone, Utc,
};

const TIME_FORMS: &str = "use \"now\", a duration before now such as 90s, 15m, 2h, 1d or \
                          1h30m, an RFC 3339 time such as 2026-11-24T08:00:00Z or \
                          2026-11-24T09:00:00+01:00, or Unix seconds (1795507200) or \
                          milliseconds (1795507200000)";

const STEP_FORMS: &str = "use a duration such as 10s, 1m, 5m or 1h, or a number of seconds";

/// A time, step or range that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TimeError {
    #[error("no time given: {TIME_FORMS}")]
    Empty,
    #[error("cannot read {input:?} as a time: {reason}; {TIME_FORMS}")]
    Invalid { input: String, reason: String },
    #[error("cannot read {input:?} as a step: {reason}; {STEP_FORMS}")]
    InvalidStep { input: String, reason: String },
    #[error("the time range is empty: the start {start} is not before the end {end}")]
    EmptyRange { start: String, end: String },
}

fn invalid(input: &str, reason: impl Into<String>) -> TimeError {
    TimeError::Invalid {
        input: input.to_owned(),
        reason: reason.into(),
    }
}

/// Parses a point in time (see the module documentation for the forms).
pub fn parse_time(s: &str, now_ms: i64) -> Result<i64, TimeError> {
    let t = s.trim();
    if t.is_empty() {
        return Err(TimeError::Empty);
    }
    if t.eq_ignore_ascii_case("now") {
        return Ok(now_ms);
    }
    if let Some(ago) = t
        .strip_prefix("now")
        .map(str::trim_start)
        .and_then(|rest| rest.strip_prefix('-'))
        .or_else(|| t.strip_prefix('-'))
    {
        return before_now(s, ago.trim(), now_ms);
    }
    if let Some(ago) = t.strip_suffix(" ago") {
        return before_now(s, ago.trim(), now_ms);
    }
    if t.strip_prefix("now")
        .is_some_and(|r| r.trim_start().starts_with('+'))
        || t.starts_with('+')
    {
        return Err(invalid(s, "times in the future hold no data"));
    }
    let bytes = t.as_bytes();
    if bytes.len() >= 5 && bytes[..4].iter().all(u8::is_ascii_digit) && bytes[4] == b'-' {
        return parse_rfc3339(t).map_err(|reason| invalid(s, reason));
    }
    if bytes.iter().all(|b| b.is_ascii_digit() || *b == b'.') {
        return parse_epoch(t).map_err(|reason| invalid(s, reason));
    }
    before_now(s, t, now_ms)
}

/// `now_ms` minus the duration `text`.
fn before_now(input: &str, text: &str, now_ms: i64) -> Result<i64, TimeError> {
    let d = humantime::parse_duration(text).map_err(|e| {
        if text.starts_with(|c: char| c.is_ascii_digit()) {
            invalid(input, e.to_string())
        } else {
            invalid(input, "it is not a time this command understands")
        }
    })?;
    i64::try_from(d.as_millis())
        .ok()
        .and_then(|ms| now_ms.checked_sub(ms))
        .ok_or_else(|| invalid(input, "that is too far back"))
}

/// Unix seconds (10 integer digits, optional fraction) or milliseconds (13 digits).
fn parse_epoch(t: &str) -> Result<i64, String> {
    let (int, frac) = t.split_once('.').unwrap_or((t, ""));
    if int.is_empty() || frac.contains('.') {
        return Err("not a number".to_owned());
    }
    match int.len() {
        10 => {
            let secs: i64 = int.parse().map_err(|_| "not a number".to_owned())?;
            Ok(secs * 1000 + i64::from(frac_millis(frac)))
        }
        13 if frac.is_empty() => int.parse().map_err(|_| "not a number".to_owned()),
        13 => Err("Unix milliseconds take no fraction".to_owned()),
        n => Err(format!(
            "a bare number is a Unix time, and {n} digits are neither seconds (10 digits) \
             nor milliseconds (13 digits); for a time before now add a unit, such as {int}m \
             or {int}h"
        )),
    }
}

/// The first three digits of a fraction of a second as milliseconds (truncated).
fn frac_millis(frac: &str) -> u32 {
    frac.bytes()
        .chain(std::iter::repeat(b'0'))
        .take(3)
        .fold(0, |acc, b| acc * 10 + u32::from(b - b'0'))
}

/// Parses `YYYY-MM-DD(T|t| )HH:MM[:SS[.frac]](Z|z|±HH:MM|±HHMM)`: RFC 3339, and also
/// without the seconds or the offset's colon.
///
/// The fields are read here, so that an error names the one that is wrong and how to
/// fix it (chrono's RFC 3339 parser says only that the input is invalid, and refuses
/// the two short forms); chrono checks the date and the time of day and places them
/// on the time line.
fn parse_rfc3339(t: &str) -> Result<i64, String> {
    let b = t.as_bytes();
    let mut p = Cursor { b, i: 0 };
    let year = p.digits(4, "year")?;
    p.expect(b'-', "'-' after the year")?;
    let month = p.digits(2, "month")?;
    p.expect(b'-', "'-' after the month")?;
    let day = p.digits(2, "day")?;
    if p.done() {
        return Err(format!(
            "a date alone is ambiguous: add a time and a zone, such as {t}T00:00:00Z"
        ));
    }
    if !matches!(p.next(), Some(b'T' | b't' | b' ')) {
        return Err("expected 'T' between the date and the time".to_owned());
    }
    let hour = p.digits(2, "hour")?;
    p.expect(b':', "':' after the hour")?;
    let minute = p.digits(2, "minute")?;
    let mut second = 0;
    let mut millis = 0;
    if p.peek() == Some(b':') {
        p.i += 1;
        second = p.digits(2, "second")?;
        if p.peek() == Some(b'.') {
            p.i += 1;
            let start = p.i;
            while p.peek().is_some_and(|c| c.is_ascii_digit()) {
                p.i += 1;
            }
            if p.i == start {
                return Err("expected digits after '.'".to_owned());
            }
            // `start..p.i` holds ASCII digits only, so it is valid UTF-8.
            millis = frac_millis(std::str::from_utf8(&b[start..p.i]).unwrap_or("0"));
        }
    }
    let offset_secs = match p.next() {
        None => {
            return Err(
                "the time has no zone: add Z for UTC or an offset such as +01:00".to_owned(),
            );
        }
        Some(b'Z' | b'z') => 0,
        Some(sign @ (b'+' | b'-')) => {
            let oh = p.digits(2, "offset hours")?;
            if p.peek() == Some(b':') {
                p.i += 1;
            }
            let om = p.digits(2, "offset minutes")?;
            if oh > 23 || om > 59 {
                return Err(format!("offset {oh:02}:{om:02} is out of range"));
            }
            let secs = (oh * 3600 + om * 60) as i32;
            if sign == b'-' { -secs } else { secs }
        }
        Some(c) => {
            return Err(format!(
                "unexpected {:?} where the zone (Z or an offset such as +01:00) belongs",
                char::from(c)
            ));
        }
    };
    if !p.done() {
        return Err("unexpected text after the zone".to_owned());
    }
    let first = NaiveDate::from_ymd_opt(year as i32, month, 1)
        .ok_or_else(|| format!("month {month} is not between 1 and 12"))?;
    let last_day = first.num_days_in_month();
    let date = first
        .with_day(day)
        .ok_or_else(|| format!("day {day} is not between 1 and {last_day}"))?;
    // A leap second (`:60`) is, for chrono, the second 59 and 1000 ms more.
    let (sec, leap_ms) = if second == 60 {
        (59, 1000)
    } else {
        (second, 0)
    };
    let time = NaiveTime::from_hms_milli_opt(hour, minute, sec, millis + leap_ms)
        .ok_or_else(|| format!("{hour:02}:{minute:02}:{second:02} is not a valid time of day"))?;
    FixedOffset::east_opt(offset_secs)
        .and_then(|offset| offset.from_local_datetime(&date.and_time(time)).single())
        .map(|t| t.timestamp_millis())
        .ok_or_else(|| format!("{t} is out of range"))
}

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let c = self.peek();
        self.i += usize::from(c.is_some());
        c
    }

    fn done(&self) -> bool {
        self.i >= self.b.len()
    }

    fn expect(&mut self, c: u8, what: &str) -> Result<(), String> {
        if self.next() == Some(c) {
            Ok(())
        } else {
            Err(format!("expected {what}"))
        }
    }

    /// `n` (at most 4) ASCII digits as a number.
    fn digits(&mut self, n: usize, what: &str) -> Result<u32, String> {
        let digits = self
            .b
            .get(self.i..self.i + n)
            .filter(|d| d.iter().all(u8::is_ascii_digit))
            .ok_or_else(|| format!("expected {n} digits for the {what}"))?;
        self.i += n;
        Ok(digits
            .iter()
            .fold(0, |acc, d| acc * 10 + u32::from(d - b'0')))
    }
}

/// How to show times: in UTC with `Z`, or at a fixed offset from UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Zone {
    #[default]
    Utc,
    /// Seconds east of UTC, shown as `+01:00`.
    Offset(i32),
}

/// Formats a timestamp as RFC 3339, with milliseconds when `millis` is set:
/// `2026-11-24T08:00:00Z`, `2026-11-24T09:00:00.250+01:00`.
pub fn format_rfc3339(ts_ms: i64, zone: Zone, millis: bool) -> String {
    let seconds = if millis {
        SecondsFormat::Millis
    } else {
        SecondsFormat::Secs
    };
    in_zone(ts_ms, zone).to_rfc3339_opts(seconds, zone == Zone::Utc)
}

/// Formats the time of day only (`08:00:00Z`), for tight chart labels.
pub fn format_time_of_day(ts_ms: i64, zone: Zone) -> String {
    let format = match zone {
        Zone::Utc => "%H:%M:%SZ",
        Zone::Offset(_) => "%H:%M:%S%:z",
    };
    in_zone(ts_ms, zone).format(format).to_string()
}

/// A timestamp in a zone; one past the range of dates chrono holds (about 262 000
/// years either side of 1970) is shown at the end of that range.
fn in_zone(ts_ms: i64, zone: Zone) -> DateTime<FixedOffset> {
    let utc = DateTime::from_timestamp_millis(ts_ms).unwrap_or(if ts_ms < 0 {
        DateTime::<Utc>::MIN_UTC
    } else {
        DateTime::<Utc>::MAX_UTC
    });
    let offset = match zone {
        Zone::Utc => Utc.fix(),
        // Offsets come from the local zone, always within a day.
        Zone::Offset(secs) => FixedOffset::east_opt(secs).unwrap_or(Utc.fix()),
    };
    utc.with_timezone(&offset)
}

/// Parses a step: a duration (`10s`, `5m`, `1h30m`) or a bare number of seconds
/// (`60`, `0.5`). Returns milliseconds, at least 1.
pub fn parse_step(s: &str) -> Result<i64, TimeError> {
    let t = s.trim();
    let step_err = |reason: String| TimeError::InvalidStep {
        input: s.to_owned(),
        reason,
    };
    if t.is_empty() {
        return Err(step_err("it is empty".to_owned()));
    }
    let duration = if t.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        t.parse::<f64>()
            .ok()
            .filter(|secs| secs.is_finite())
            .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
            .ok_or_else(|| step_err("not a number".to_owned()))?
    } else {
        humantime::parse_duration(t).map_err(|e| step_err(e.to_string()))?
    };
    let ms =
        i64::try_from(duration.as_millis()).map_err(|_| step_err("it is too long".to_owned()))?;
    if ms < 1 {
        return Err(step_err("the step must be at least 1ms".to_owned()));
    }
    Ok(ms)
}

/// Parses `--since` and `--until` together and checks that the range is not empty.
pub fn parse_range(since: &str, until: &str, now_ms: i64) -> Result<(i64, i64), TimeError> {
    let start = parse_time(since, now_ms)?;
    let end = parse_time(until, now_ms)?;
    if start >= end {
        return Err(TimeError::EmptyRange {
            start: format_rfc3339(start, Zone::Utc, start % 1000 != 0),
            end: format_rfc3339(end, Zone::Utc, end % 1000 != 0),
        });
    }
    Ok((start, end))
}

/// Steps [`auto_step`] chooses from, in milliseconds.
const NICE_STEPS_MS: [i64; 20] = [
    1_000,
    2_000,
    5_000,
    10_000,
    15_000,
    30_000,
    60_000,
    120_000,
    300_000,
    600_000,
    900_000,
    1_800_000,
    3_600_000,
    7_200_000,
    10_800_000,
    21_600_000,
    43_200_000,
    86_400_000,
    172_800_000,
    604_800_000,
];

/// The smallest round step (1s, 2s, 5s, 10s, 15s, 30s, 1m, …, 1d, 2d, 7d, then whole
/// weeks) that splits `[start_ms, end_ms]` into at most `max_points` windows; a default
/// for `--step` when the user gives none (pass the chart width for a chart).
pub fn auto_step(start_ms: i64, end_ms: i64, max_points: usize) -> i64 {
    let span = i128::from(end_ms) - i128::from(start_ms);
    let points = i128::try_from(max_points.max(1)).unwrap_or(i128::MAX);
    let fits = |step: i64| span <= i128::from(step) * points;
    if let Some(step) = NICE_STEPS_MS.iter().copied().find(|s| fits(*s)) {
        return step;
    }
    const WEEK: i128 = 604_800_000;
    let weeks = (span + WEEK * points - 1) / (WEEK * points);
    i64::try_from(weeks * WEEK).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_795_507_200_000; // 2026-11-24T08:00:00Z

    #[test]
    fn now_and_durations_before_now() {
        assert_eq!(parse_time("now", NOW), Ok(NOW));
        assert_eq!(parse_time(" NOW ", NOW), Ok(NOW));
        assert_eq!(parse_time("90s", NOW), Ok(NOW - 90_000));
        assert_eq!(parse_time("15m", NOW), Ok(NOW - 900_000));
        assert_eq!(parse_time("2h", NOW), Ok(NOW - 7_200_000));
        assert_eq!(parse_time("1d", NOW), Ok(NOW - 86_400_000));
        assert_eq!(parse_time("1h30m", NOW), Ok(NOW - 5_400_000));
        assert_eq!(parse_time("1h 30m", NOW), Ok(NOW - 5_400_000));
        assert_eq!(parse_time("now-2h", NOW), Ok(NOW - 7_200_000));
        assert_eq!(parse_time("now - 2h", NOW), Ok(NOW - 7_200_000));
        assert_eq!(parse_time("-2h", NOW), Ok(NOW - 7_200_000));
        assert_eq!(parse_time("500ms", NOW), Ok(NOW - 500));
        assert_eq!(parse_time("2 hours ago", NOW), Ok(NOW - 7_200_000));
    }

    #[test]
    fn rfc3339() {
        assert_eq!(parse_time("2026-11-24T08:00:00Z", 0), Ok(NOW));
        assert_eq!(parse_time("2026-11-24t08:00:00z", 0), Ok(NOW));
        assert_eq!(parse_time("2026-11-24 08:00:00Z", 0), Ok(NOW));
        assert_eq!(parse_time("2026-11-24T09:00:00+01:00", 0), Ok(NOW));
        assert_eq!(parse_time("2026-11-24T09:00:00+0100", 0), Ok(NOW));
        assert_eq!(parse_time("2026-11-24T03:30:00-04:30", 0), Ok(NOW));
        assert_eq!(parse_time("2026-11-24T08:00Z", 0), Ok(NOW));
        assert_eq!(parse_time("2026-11-24T08:00:00.25Z", 0), Ok(NOW + 250));
        assert_eq!(
            parse_time("2026-11-24T08:00:00.123456789Z", 0),
            Ok(NOW + 123)
        );
        assert_eq!(parse_time("1970-01-01T00:00:00Z", 5), Ok(0));
        assert_eq!(parse_time("1969-12-31T23:59:59.5Z", 5), Ok(-500));
        assert_eq!(parse_time("2024-02-29T00:00:00Z", 0), Ok(1_709_164_800_000));
        assert_eq!(parse_time("2000-03-01T00:00:00Z", 0), Ok(951_868_800_000));
    }

    #[test]
    fn epoch_seconds_and_millis() {
        assert_eq!(parse_time("1795507200", 0), Ok(NOW));
        assert_eq!(parse_time("1795507200.5", 0), Ok(NOW + 500));
        assert_eq!(parse_time("1795507200000", 0), Ok(NOW));
        let e = parse_time("2", NOW).unwrap_err().to_string();
        assert!(e.contains("add a unit, such as 2m or 2h"), "{e}");
        assert!(parse_time("179550720000", 0).is_err());
    }

    #[test]
    fn errors_explain_the_forms() {
        let cases: &[(&str, &str)] = &[
            ("", "no time given"),
            ("yesterday", "not a time this command understands"),
            ("2 fortnights", "unknown time unit \"fortnights\""),
            (
                "2026-11-24",
                "add a time and a zone, such as 2026-11-24T00:00:00Z",
            ),
            ("2026-11-24T08:00:00", "add Z for UTC or an offset"),
            ("2026-02-30T08:00:00Z", "day 30 is not between 1 and 28"),
            ("2026-13-01T08:00:00Z", "month 13"),
            ("2026-11-24T24:00:00Z", "not a valid time of day"),
            ("2026-11-24T08:00:00+25:00", "offset 25:00"),
            ("2026-11-24T08:00:00Zjunk", "after the zone"),
            ("2026-1-24T08:00:00Z", "2 digits for the month"),
            ("now+1h", "future"),
            ("300000000y", "too far back"),
        ];
        for (input, needle) in cases {
            let msg = parse_time(input, NOW).unwrap_err().to_string();
            assert!(msg.contains(needle), "{input:?}: {msg}");
            assert!(
                msg.contains("2026-11-24T08:00:00Z"),
                "examples missing: {msg}"
            );
        }
    }

    #[test]
    fn steps() {
        assert_eq!(parse_step("10s"), Ok(10_000));
        assert_eq!(parse_step("5m"), Ok(300_000));
        assert_eq!(parse_step("1h30m"), Ok(5_400_000));
        assert_eq!(parse_step("60"), Ok(60_000));
        assert_eq!(parse_step("0.5"), Ok(500));
        assert_eq!(parse_step("250ms"), Ok(250));
        for (input, needle) in [
            ("0", "at least 1ms"),
            ("10us", "at least 1ms"),
            ("", "empty"),
            ("fast", "expected number"),
            ("1.2.3", "not a number"),
        ] {
            let msg = parse_step(input).unwrap_err().to_string();
            assert!(msg.contains(needle), "{input:?}: {msg}");
            assert!(msg.contains("such as 10s, 1m"), "{msg}");
        }
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range("2h", "now", NOW), Ok((NOW - 7_200_000, NOW)));
        let e = parse_range("now", "2h", NOW).unwrap_err().to_string();
        assert_eq!(
            e,
            "the time range is empty: the start 2026-11-24T08:00:00Z is not before the end \
             2026-11-24T06:00:00Z"
        );
    }

    #[test]
    fn formats() {
        assert_eq!(
            format_rfc3339(NOW, Zone::Utc, false),
            "2026-11-24T08:00:00Z"
        );
        assert_eq!(
            format_rfc3339(NOW + 7, Zone::Utc, true),
            "2026-11-24T08:00:00.007Z"
        );
        assert_eq!(
            format_rfc3339(NOW, Zone::Offset(3600), false),
            "2026-11-24T09:00:00+01:00"
        );
        assert_eq!(
            format_rfc3339(NOW, Zone::Offset(-16_200), false),
            "2026-11-24T03:30:00-04:30"
        );
        assert_eq!(
            format_rfc3339(-500, Zone::Utc, true),
            "1969-12-31T23:59:59.500Z"
        );
        assert_eq!(format_time_of_day(NOW, Zone::Utc), "08:00:00Z");
    }

    #[test]
    fn format_and_parse_agree() {
        for ts in [
            0,
            NOW,
            NOW + 999,
            -86_400_001,
            253_402_214_400_000,
            951_782_400_000,
        ] {
            for zone in [Zone::Utc, Zone::Offset(19_800), Zone::Offset(-36_000)] {
                let text = format_rfc3339(ts, zone, true);
                assert_eq!(parse_time(&text, 0), Ok(ts), "{text}");
            }
        }
    }

    #[test]
    fn auto_steps_are_round() {
        assert_eq!(auto_step(0, 3_600_000, 120), 30_000);
        assert_eq!(auto_step(0, 3_600_000, 60), 60_000);
        assert_eq!(auto_step(0, 86_400_000, 100), 900_000);
        assert_eq!(auto_step(0, 10, 100), 1_000);
        assert_eq!(auto_step(0, 365 * 86_400_000, 10), 6 * 604_800_000);
    }
}
