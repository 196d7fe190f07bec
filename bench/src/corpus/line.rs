//! One sample line of the Prometheus text exposition format 0.0.4:
//! `name{label="value",...} value [timestamp_ms]`.

use super::ParseErrorKind;

/// A parsed sample line. Labels are in line order, unescaped, without the job.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleLine<'a> {
    pub name: &'a str,
    pub labels: Vec<(String, String)>,
    pub value: f64,
    pub timestamp_ms: Option<i64>,
}

fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t'
}

fn is_name_char(c: char, first: bool, colon_ok: bool) -> bool {
    c.is_ascii_alphabetic() || c == '_' || (colon_ok && c == ':') || (!first && c.is_ascii_digit())
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`
pub(super) fn is_metric_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .enumerate()
            .all(|(i, c)| is_name_char(c, i == 0, true))
}

/// Length in bytes of the name at the start of `s` (ASCII, so bytes == chars).
fn name_len(s: &str, colon_ok: bool) -> usize {
    s.chars()
        .enumerate()
        .take_while(|&(i, c)| is_name_char(c, i == 0, colon_ok))
        .count()
}

/// Parses a sample line (leading blanks already removed).
pub fn parse_sample_line(s: &str) -> Result<SampleLine<'_>, ParseErrorKind> {
    let len = name_len(s, true);
    if len == 0 {
        let token = s.split(is_blank).next().unwrap_or(s);
        return Err(ParseErrorKind::BadMetricName(format!("`{token}`")));
    }
    let (name, mut rest) = s.split_at(len);
    let mut labels = Vec::new();
    let after_name = rest.trim_start_matches(is_blank);
    if let Some(body) = after_name.strip_prefix('{') {
        rest = parse_labels(body, &mut labels)?;
    } else if !rest.is_empty() && !rest.starts_with(is_blank) {
        let token = s.split(is_blank).next().unwrap_or(s);
        return Err(ParseErrorKind::BadMetricName(format!("`{token}`")));
    }
    let mut tokens = rest.split(is_blank).filter(|t| !t.is_empty());
    let value = parse_value(tokens.next().ok_or(ParseErrorKind::MissingValue)?)?;
    let timestamp_ms = tokens
        .next()
        .map(|t| {
            t.parse::<i64>()
                .map_err(|_| ParseErrorKind::BadTimestamp(t.to_owned()))
        })
        .transpose()?;
    if let Some(extra) = tokens.next() {
        return Err(ParseErrorKind::TrailingText(extra.to_owned()));
    }
    Ok(SampleLine {
        name,
        labels,
        value,
        timestamp_ms,
    })
}

/// Parses `label="value",...}` (the `{` already consumed); returns the text after `}`.
fn parse_labels<'a>(
    mut s: &'a str,
    labels: &mut Vec<(String, String)>,
) -> Result<&'a str, ParseErrorKind> {
    loop {
        s = s.trim_start_matches(is_blank);
        if let Some(rest) = s.strip_prefix('}') {
            return Ok(rest);
        }
        if s.is_empty() {
            return Err(ParseErrorKind::UnterminatedLabels);
        }
        let len = name_len(s, false);
        if len == 0 {
            return Err(ParseErrorKind::BadLabel(format!(
                "expected a label name at `{}`",
                excerpt(s)
            )));
        }
        let (label, rest) = s.split_at(len);
        let rest = rest.trim_start_matches(is_blank);
        let Some(rest) = rest.strip_prefix('=') else {
            return Err(ParseErrorKind::BadLabel(format!(
                "expected `=` after label `{label}`"
            )));
        };
        let rest = rest.trim_start_matches(is_blank);
        let Some(rest) = rest.strip_prefix('"') else {
            return Err(ParseErrorKind::BadLabel(format!(
                "expected `\"` to open the value of label `{label}`"
            )));
        };
        let (value, rest) = parse_label_value(rest)?;
        labels.push((label.to_owned(), value));
        let rest = rest.trim_start_matches(is_blank);
        if let Some(rest) = rest.strip_prefix(',') {
            s = rest;
        } else if rest.starts_with('}') {
            s = rest;
        } else if rest.is_empty() {
            return Err(ParseErrorKind::UnterminatedLabels);
        } else {
            return Err(ParseErrorKind::BadLabel(format!(
                "expected `,` or `}}` after the value of label `{label}`, found `{}`",
                excerpt(rest)
            )));
        }
    }
}

/// Parses an escaped label value up to its closing quote; returns it and the text after.
fn parse_label_value(s: &str) -> Result<(String, &str), ParseErrorKind> {
    let mut value = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((value, &s[i + 1..])),
            '\\' => match chars.next() {
                Some((_, '\\')) => value.push('\\'),
                Some((_, '"')) => value.push('"'),
                Some((_, 'n')) => value.push('\n'),
                Some((_, other)) => return Err(ParseErrorKind::BadEscape(other)),
                None => return Err(ParseErrorKind::UnterminatedLabelValue),
            },
            _ => value.push(c),
        }
    }
    Err(ParseErrorKind::UnterminatedLabelValue)
}

/// Parses a Prometheus float: `NaN`, `+Inf`, `Inf`, `-Inf` (any case, as Go's
/// `strconv.ParseFloat` reads them, `Infinity` too) or a finite decimal number, read
/// bit-exactly by `str::parse::<f64>`. A decimal that overflows to infinity is rejected,
/// as Prometheus rejects it. `NaN` is read as [`f64::NAN`].
pub fn parse_value(token: &str) -> Result<f64, ParseErrorKind> {
    const POSITIVE_INF: [&str; 4] = ["inf", "+inf", "infinity", "+infinity"];
    const NEGATIVE_INF: [&str; 2] = ["-inf", "-infinity"];
    if token.eq_ignore_ascii_case("nan") {
        return Ok(f64::NAN);
    }
    if POSITIVE_INF.iter().any(|s| token.eq_ignore_ascii_case(s)) {
        return Ok(f64::INFINITY);
    }
    if NEGATIVE_INF.iter().any(|s| token.eq_ignore_ascii_case(s)) {
        return Ok(f64::NEG_INFINITY);
    }
    match token.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(ParseErrorKind::BadValue(token.to_owned())),
    }
}

/// The start of `s`, for error messages.
fn excerpt(s: &str) -> &str {
    match s.char_indices().nth(20) {
        Some((end, _)) => &s[..end],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_only() {
        let l = parse_sample_line("pg_up 1").unwrap();
        assert_eq!((l.name, l.labels.len(), l.value), ("pg_up", 0, 1.0));
        assert_eq!(l.timestamp_ms, None);
    }

    #[test]
    fn labels_with_spaces_trailing_comma_and_timestamp() {
        let l =
            parse_sample_line(r#"a:b_c{ x = "1" , y="two words",} -2.5e3 1700000000000"#).unwrap();
        assert_eq!(l.name, "a:b_c");
        assert_eq!(
            l.labels,
            vec![("x".into(), "1".into()), ("y".into(), "two words".into())]
        );
        assert_eq!(l.value, -2500.0);
        assert_eq!(l.timestamp_ms, Some(1_700_000_000_000));
    }

    #[test]
    fn empty_label_set() {
        let l = parse_sample_line("m{} 3").unwrap();
        assert!(l.labels.is_empty());
        assert_eq!(l.value, 3.0);
    }

    #[test]
    fn specials_and_exact_bits() {
        assert!(parse_value("NaN").unwrap().is_nan());
        assert!(parse_value("Nan").unwrap().is_nan());
        assert_eq!(parse_value("+Inf").unwrap(), f64::INFINITY);
        assert_eq!(parse_value("Inf").unwrap(), f64::INFINITY);
        assert_eq!(parse_value("-Inf").unwrap(), f64::NEG_INFINITY);
        assert_eq!(
            parse_value("0.1").unwrap().to_bits(),
            0.1f64.to_bits(),
            "finite values are read by str::parse"
        );
        assert_eq!(parse_value("1.7976931348623157e308").unwrap(), f64::MAX);
        assert_eq!(parse_value("-0").unwrap().to_bits(), (-0.0f64).to_bits());
    }

    #[test]
    fn bad_values() {
        for bad in ["1e400", "-nan", "abc", "1,5", "0x10", ""] {
            assert!(
                matches!(parse_value(bad), Err(ParseErrorKind::BadValue(_))),
                "{bad:?} must be rejected"
            );
        }
    }

    #[test]
    fn malformed_lines() {
        type Check = fn(&ParseErrorKind) -> bool;
        let cases: [(&str, Check); 9] = [
            ("m{a=\"x} 1", |k| {
                *k == ParseErrorKind::UnterminatedLabelValue
            }),
            ("m{a=\"x\" 1", |k| matches!(k, ParseErrorKind::BadLabel(_))),
            ("m{a=\"x\",", |k| *k == ParseErrorKind::UnterminatedLabels),
            ("m{a=\"\\t\"} 1", |k| *k == ParseErrorKind::BadEscape('t')),
            ("m{1a=\"x\"} 1", |k| {
                matches!(k, ParseErrorKind::BadLabel(_))
            }),
            ("m", |k| *k == ParseErrorKind::MissingValue),
            ("m 1 2 3", |k| matches!(k, ParseErrorKind::TrailingText(_))),
            ("m 1 1.5", |k| matches!(k, ParseErrorKind::BadTimestamp(_))),
            ("9m 1", |k| matches!(k, ParseErrorKind::BadMetricName(_))),
        ];
        for (line, want) in cases {
            let err = parse_sample_line(line).unwrap_err();
            assert!(want(&err), "{line:?} gave {err:?}");
        }
    }
}
