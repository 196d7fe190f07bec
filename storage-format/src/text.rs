//! Sample values and label values as text, the one way the agent's `/metrics`
//! (PROTOCOL.md, "GET /metrics"), its query output and selectors write them.

use std::fmt::Write as _;

/// `/metrics` writes magnitudes below this in plain decimals, so integers appear in
/// full (`123456789012`) up to 1e21, as text exporters commonly do.
pub const EXPOSITION_PLAIN_BELOW: f64 = 1e21;

/// Output for people writes magnitudes below this in plain decimals; above it a
/// float no longer holds every integer digit (2^53 ≈ 9.007e15), and an exponent
/// (`1.5e20`) says so.
pub const READABLE_PLAIN_BELOW: f64 = 1e15;

/// Appends `v` in the shortest text that reads back to the same bits: `NaN`,
/// `+Inf`, `-Inf`, `0`; plain decimals for magnitudes in `1e-4 .. plain_below`
/// ([`EXPOSITION_PLAIN_BELOW`], [`READABLE_PLAIN_BELOW`]), else with an exponent
/// (`1.5e-7`, `1e300`).
pub fn push_value(out: &mut String, v: f64, plain_below: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v == f64::INFINITY {
        out.push_str("+Inf");
    } else if v == f64::NEG_INFINITY {
        out.push_str("-Inf");
    } else if v == 0.0 {
        out.push('0');
    } else if (1e-4..plain_below).contains(&v.abs()) {
        // Writing into a String cannot fail.
        let _infallible = write!(out, "{v}");
    } else {
        let _infallible = write!(out, "{v:e}");
    }
}

/// [`push_value`] into a new string.
pub fn format_value(v: f64, plain_below: f64) -> String {
    let mut s = String::new();
    push_value(&mut s, v, plain_below);
    s
}

/// The characters a label value escapes in the text exposition format.
pub const LABEL_ESCAPES: &[char] = &['\\', '"', '\n'];

/// Appends `s` with each character of `escapes` written as its backslash escape:
/// `\\`, `\"`, `\n`, `\t`, `\r` (a character of `escapes` outside these five is
/// written as is).
pub fn push_escaped(out: &mut String, s: &str, escapes: &[char]) {
    if !s.contains(escapes) {
        out.push_str(s);
        return;
    }
    for c in s.chars() {
        if !escapes.contains(&c) {
            out.push(c);
            continue;
        }
        match c {
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\\' | '"' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(v: f64) -> String {
        format_value(v, EXPOSITION_PLAIN_BELOW)
    }

    #[test]
    fn values_read_back_exactly() {
        assert_eq!(value(f64::NAN), "NaN");
        assert_eq!(value(f64::INFINITY), "+Inf");
        assert_eq!(value(f64::NEG_INFINITY), "-Inf");
        assert_eq!(value(-0.0), "0");
        assert_eq!(value(1e6), "1000000");
        assert_eq!(value(123_456_789_012.0), "123456789012");
        assert_eq!(value(-42.0), "-42");
        assert_eq!(value(0.1), "0.1");
        assert_eq!(value(1.5e-7), "1.5e-7");
        assert_eq!(value(1e300), "1e300");
        assert_eq!(value(1.5e20), "150000000000000000000");
        assert_eq!(format_value(1.5e20, READABLE_PLAIN_BELOW), "1.5e20");
        for v in [
            0.1,
            1.0 / 3.0,
            1e-5,
            2.5e20,
            9.007_199_254_740_993e15,
            1e-300,
        ] {
            for plain_below in [EXPOSITION_PLAIN_BELOW, READABLE_PLAIN_BELOW] {
                let text = format_value(v, plain_below);
                assert_eq!(
                    text.parse::<f64>().unwrap().to_bits(),
                    v.to_bits(),
                    "{text}"
                );
            }
        }
    }

    #[test]
    fn escapes() {
        let mut s = String::new();
        push_escaped(&mut s, "a\\b\"c\nd", LABEL_ESCAPES);
        assert_eq!(s, r#"a\\b\"c\nd"#);
        s.clear();
        push_escaped(&mut s, "say \"hi\"\n\\", &['\\', '\n']);
        assert_eq!(s, "say \"hi\"\\n\\\\");
        s.clear();
        push_escaped(&mut s, "a\tb\rc", &['\t', '\r']);
        assert_eq!(s, "a\\tb\\rc");
    }
}
