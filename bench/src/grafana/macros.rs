//! Grafana's PostgreSQL datasource macros, expanded as Grafana expands them.
//!
//! Grafana prepares a panel's SQL in two steps: the browser replaces template
//! variables (`super::template`), then the datasource's backend replaces
//! `$__interval_ms`, `$__interval`, `$__unixEpochFrom()`, `$__unixEpochTo()` and then
//! every `$__name(args)` macro (`$__time`, `$__timeEpoch`, `$__timeFilter`,
//! `$__timeFrom`, `$__timeTo`, `$__timeGroup`, `$__timeGroupAlias`,
//! `$__unixEpochFilter`, `$__unixEpochNanoFilter`, `$__unixEpochNanoFrom`,
//! `$__unixEpochNanoTo`, `$__unixEpochGroup`, `$__unixEpochGroupAlias`). The forms
//! follow the datasource's documentation (Grafana's PostgreSQL query editor page):
//! instants in RFC 3339 with nanoseconds trimmed, UTC, `Z`; epochs in whole seconds or
//! nanoseconds; groups as `floor(extract(epoch from col)/300)*300` (or TimescaleDB's
//! `time_bucket('300.000s',col)` when the datasource says `timescaledb: true`). The
//! optional fill argument of the group macros is parsed (`NULL`, `previous`, a number)
//! and returned: Grafana applies it to the result, not to the SQL.
//! `bench/tests/grafana_macros.rs` checks these against the documented examples.

/// The dashboard's time range, in Unix milliseconds (Grafana's precision).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRange {
    pub from_ms: i64,
    pub to_ms: i64,
}

impl TimeRange {
    /// The last `secs` seconds before `to_ms`.
    pub fn last(to_ms: i64, secs: i64) -> TimeRange {
        TimeRange {
            from_ms: to_ms - secs * 1000,
            to_ms,
        }
    }
}

/// How Grafana fills buckets a `$__timeGroup(col, interval, fill)` query left empty.
#[derive(Debug, Clone, PartialEq)]
pub enum Fill {
    Null,
    Previous,
    Value(f64),
}

/// A macro Grafana would refuse, with Grafana's reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MacroError {
    #[error("macro {0} needs time column and interval and optional fill value")]
    GroupArgs(String),
    #[error("error parsing interval {0}")]
    Interval(String),
    #[error("error parsing fill value {0}")]
    FillValue(String),
    #[error("unknown macro {0:?}")]
    Unknown(String),
}

/// SQL as the datasource sends it to PostgreSQL.
#[derive(Debug, Clone, PartialEq)]
pub struct Expanded {
    pub sql: String,
    /// The fill mode of the last group macro that gave one.
    pub fill: Option<(i64, Fill)>,
}

/// Grafana's interval text for a duration in milliseconds (`gtime.FormatInterval`):
/// whole years, days, hours, minutes, seconds or milliseconds, rounded down.
pub fn format_interval(ms: i64) -> String {
    const SEC: i64 = 1000;
    const DAY: i64 = 86_400 * SEC;
    let ms = ms.max(0);
    if ms >= 365 * DAY {
        format!("{}y", ms / (365 * DAY))
    } else if ms >= DAY {
        format!("{}d", ms / DAY)
    } else if ms >= 3600 * SEC {
        format!("{}h", ms / (3600 * SEC))
    } else if ms >= 60 * SEC {
        format!("{}m", ms / (60 * SEC))
    } else if ms >= SEC {
        format!("{}s", ms / SEC)
    } else if ms >= 1 {
        format!("{ms}ms")
    } else {
        "1ms".to_owned()
    }
}

/// Parses an interval as Grafana does (`gtime.ParseInterval`): a sum of
/// `<number><unit>` with units `ms`, `s`, `m`, `h`, `d`, `w`, `y`. Returns nanoseconds.
pub fn parse_interval(text: &str) -> Option<i128> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let mut total: f64 = 0.0;
    let mut rest = text;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return None;
        }
        let n: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let ns = match unit {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "d" => 86_400e9,
            "w" => 7.0 * 86_400e9,
            "y" => 365.0 * 86_400e9,
            _ => return None,
        };
        total += n * ns;
    }
    Some(total.round() as i128)
}

/// Grafana's rounding of `range / pixels` to a step people read easily
/// (`rangeutil.roundInterval` of `@grafana/data`), in milliseconds.
pub fn round_interval(ms: f64) -> i64 {
    const STEPS: [(f64, i64); 30] = [
        (15.0, 10),
        (35.0, 20),
        (75.0, 50),
        (150.0, 100),
        (350.0, 200),
        (750.0, 500),
        (1_500.0, 1_000),
        (3_500.0, 2_000),
        (7_500.0, 5_000),
        (12_500.0, 10_000),
        (17_500.0, 15_000),
        (25_000.0, 20_000),
        (45_000.0, 30_000),
        (90_000.0, 60_000),
        (210_000.0, 120_000),
        (450_000.0, 300_000),
        (750_000.0, 600_000),
        (1_050_000.0, 900_000),
        (1_500_000.0, 1_200_000),
        (2_700_000.0, 1_800_000),
        (5_400_000.0, 3_600_000),
        (9_000_000.0, 7_200_000),
        (16_200_000.0, 10_800_000),
        (32_400_000.0, 21_600_000),
        (86_400_000.0, 43_200_000),
        (604_800_000.0, 86_400_000),
        (1_814_400_000.0, 604_800_000),
        (3_628_800_000.0, 2_592_000_000),
        (f64::INFINITY, 31_536_000_000),
        (f64::INFINITY, 31_536_000_000),
    ];
    STEPS
        .iter()
        .find(|(below, _)| ms < *below)
        .map_or(31_536_000_000, |(_, step)| *step)
}

/// The step Grafana gives a panel `pixels` wide over `range`, never below the
/// datasource's `timeInterval` (`min_ms`): `$__interval_ms`.
pub fn panel_interval_ms(range: TimeRange, pixels: u32, min_ms: i64) -> i64 {
    let raw = (range.to_ms - range.from_ms) as f64 / f64::from(pixels.max(1));
    round_interval(raw).max(min_ms).max(1)
}

/// Go's RFC 3339 with nanoseconds, trailing zeros of the fraction dropped, in UTC.
pub fn rfc3339_nano(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let frac_ms = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let mut s = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    );
    if frac_ms != 0 {
        let frac = format!("{frac_ms:03}");
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    s.push('Z');
    s
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// A float as Go's `%v` prints it (shortest form; exponent form from 1e+06 up or
/// below 1e-04), which is how Grafana writes a group macro's seconds.
pub fn go_float(v: f64) -> String {
    if v == 0.0 {
        return "0".to_owned();
    }
    let exp = v.abs().log10().floor() as i32;
    if (-4..6).contains(&exp) {
        let s = format!("{v}");
        return s;
    }
    // Rust's shortest `{:e}` is e.g. "1.2096e6"; Go writes "1.2096e+06".
    let e = format!("{v:e}");
    let (mantissa, exponent) = e.split_once('e').unwrap_or((&e, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let sign = if exponent < 0 { '-' } else { '+' };
    format!("{mantissa}e{sign}{:02}", exponent.abs())
}

/// The backend's first step (`sqleng.Interpolate`): `$__interval_ms`, `$__interval`,
/// `$__unixEpochFrom()`, `$__unixEpochTo()`.
pub fn interpolate_builtins(sql: &str, range: TimeRange, interval_ms: i64) -> String {
    sql.replace("$__interval_ms", &interval_ms.to_string())
        .replace("$__interval", &format_interval(interval_ms))
        .replace(
            "$__unixEpochFrom()",
            &range.from_ms.div_euclid(1000).to_string(),
        )
        .replace(
            "$__unixEpochTo()",
            &range.to_ms.div_euclid(1000).to_string(),
        )
}

/// The whole backend expansion: builtins, then every `$__macro(args)`.
pub fn expand(
    sql: &str,
    range: TimeRange,
    interval_ms: i64,
    timescaledb: bool,
) -> Result<Expanded, MacroError> {
    let sql = interpolate_builtins(sql, range, interval_ms);
    expand_macros(&sql, range, timescaledb)
}

/// Replaces every `$name(args)` (Grafana's pattern `\$([_a-zA-Z0-9]+)\(([^\)]*)\)`).
pub fn expand_macros(
    sql: &str,
    range: TimeRange,
    timescaledb: bool,
) -> Result<Expanded, MacroError> {
    let mut out = String::with_capacity(sql.len());
    let mut fill = None;
    let bytes = sql.as_bytes();
    let mut i = 0;
    let mut copied = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' {
            let name_end = bytes[i + 1..]
                .iter()
                .position(|b| !(b.is_ascii_alphanumeric() || *b == b'_'))
                .map_or(bytes.len(), |p| i + 1 + p);
            if name_end > i + 1
                && bytes.get(name_end) == Some(&b'(')
                && let Some(close) = sql[name_end + 1..].find(')')
            {
                let mut name = &sql[i + 1..name_end];
                let args_text = &sql[name_end + 1..name_end + 1 + close];
                let end = name_end + 1 + close + 1;
                // Grafana: `$__timeGroup(…),` reads as the pre-5.3 form with an alias.
                // It looks at the first occurrence of the same text, as Grafana does.
                if name == "__timeGroup" {
                    let whole = &sql[i..end];
                    if let Some(first) = sql.find(whole)
                        && sql.as_bytes().get(first + whole.len()) == Some(&b',')
                    {
                        name = "__timeGroupAlias";
                    }
                }
                let args: Vec<&str> = args_text.split(',').map(|a| a.trim_matches(' ')).collect();
                out.push_str(&sql[copied..i]);
                out.push_str(&evaluate(name, &args, range, timescaledb, &mut fill)?);
                i = end;
                copied = end;
                continue;
            }
        }
        i += 1;
    }
    out.push_str(&sql[copied..]);
    Ok(Expanded { sql: out, fill })
}

fn evaluate(
    name: &str,
    args: &[&str],
    range: TimeRange,
    timescaledb: bool,
    fill: &mut Option<(i64, Fill)>,
) -> Result<String, MacroError> {
    // Grafana splits the argument text on commas, so there is always a first
    // argument (empty for `$__time()`, which Grafana expands as it is).
    let column = |_: &str| -> Result<String, MacroError> { Ok(args[0].to_owned()) };
    let from = range.from_ms;
    let to = range.to_ms;
    Ok(match name {
        "__time" => format!("{} AS \"time\"", column(name)?),
        "__timeEpoch" => format!("extract(epoch from {}) as \"time\"", column(name)?),
        "__timeFilter" => format!(
            "{} BETWEEN '{}' AND '{}'",
            column(name)?,
            rfc3339_nano(from),
            rfc3339_nano(to)
        ),
        "__timeFrom" => format!("'{}'", rfc3339_nano(from)),
        "__timeTo" => format!("'{}'", rfc3339_nano(to)),
        "__timeGroup" | "__unixEpochGroup" => {
            if args.len() < 2 {
                return Err(MacroError::GroupArgs(name.to_owned()));
            }
            let ns = parse_interval(args[1].trim_matches('\''))
                .ok_or_else(|| MacroError::Interval(args[1].to_owned()))?;
            if args.len() == 3 {
                *fill = Some((
                    (ns / 1_000_000) as i64,
                    match args[2] {
                        "NULL" => Fill::Null,
                        "previous" => Fill::Previous,
                        v => {
                            Fill::Value(v.parse().map_err(|_| MacroError::FillValue(v.to_owned()))?)
                        }
                    },
                ));
            }
            let secs = ns as f64 / 1e9;
            if name == "__timeGroup" {
                if timescaledb {
                    format!("time_bucket('{secs:.3}s',{})", args[0])
                } else {
                    let s = go_float(secs);
                    format!("floor(extract(epoch from {})/{s})*{s}", args[0])
                }
            } else {
                let s = go_float(secs);
                format!("floor(({})/{s})*{s}", args[0])
            }
        }
        "__timeGroupAlias" => format!(
            "{} AS \"time\"",
            evaluate("__timeGroup", args, range, timescaledb, fill)?
        ),
        "__unixEpochGroupAlias" => format!(
            "{} AS \"time\"",
            evaluate("__unixEpochGroup", args, range, timescaledb, fill)?
        ),
        "__unixEpochFilter" => {
            let c = column(name)?;
            format!(
                "{c} >= {} AND {c} <= {}",
                from.div_euclid(1000),
                to.div_euclid(1000)
            )
        }
        "__unixEpochNanoFilter" => {
            let c = column(name)?;
            format!(
                "{c} >= {} AND {c} <= {}",
                i128::from(from) * 1_000_000,
                i128::from(to) * 1_000_000
            )
        }
        "__unixEpochNanoFrom" => (i128::from(from) * 1_000_000).to_string(),
        "__unixEpochNanoTo" => (i128::from(to) * 1_000_000).to_string(),
        other => return Err(MacroError::Unknown(other.to_owned())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_format_and_parse_as_grafana_does() {
        assert_eq!(format_interval(600_000), "10m");
        assert_eq!(format_interval(90_000), "1m");
        assert_eq!(format_interval(500), "500ms");
        assert_eq!(format_interval(0), "1ms");
        assert_eq!(format_interval(8 * 86_400_000), "8d");
        assert_eq!(parse_interval("5m"), Some(300_000_000_000));
        assert_eq!(parse_interval("1h30m"), Some(5_400_000_000_000));
        assert_eq!(parse_interval("1d"), Some(86_400_000_000_000));
        assert_eq!(parse_interval("5x"), None);
        assert_eq!(go_float(300.0), "300");
        assert_eq!(go_float(0.5), "0.5");
        assert_eq!(go_float(604_800.0), "604800");
        assert_eq!(go_float(1_209_600.0), "1.2096e+06");
        assert_eq!(go_float(1e6), "1e+06");
    }

    #[test]
    fn a_thousand_pixels_over_an_hour_and_a_week() {
        let hour = TimeRange::last(10_000_000_000, 3600);
        let week = TimeRange::last(10_000_000_000, 7 * 86_400);
        assert_eq!(panel_interval_ms(hour, 1000, 1), 5_000);
        assert_eq!(panel_interval_ms(hour, 1000, 10_000), 10_000);
        assert_eq!(panel_interval_ms(week, 1000, 10_000), 600_000);
    }

    #[test]
    fn instants_in_go_rfc3339_nano() {
        assert_eq!(rfc3339_nano(1_492_750_877_000), "2017-04-21T05:01:17Z");
        assert_eq!(rfc3339_nano(1_492_750_877_120), "2017-04-21T05:01:17.12Z");
        assert_eq!(rfc3339_nano(0), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn the_first_occurrence_decides_the_alias_as_in_grafana() {
        let r = TimeRange::last(1_000_000, 60);
        let e = expand_macros("SELECT $__timeGroup(ts,'1m'), x", r, false).unwrap();
        assert_eq!(
            e.sql,
            "SELECT floor(extract(epoch from ts)/60)*60 AS \"time\", x"
        );
        let e = expand_macros("ORDER BY $__timeGroup(ts,'1m')) x", r, false).unwrap();
        assert_eq!(e.sql, "ORDER BY floor(extract(epoch from ts)/60)*60) x");
        assert!(matches!(
            expand_macros("$__nope(x)", r, false),
            Err(MacroError::Unknown(_))
        ));
    }
}
