//! Quantities in configuration files: every one is a whole number whose key names
//! its unit by a suffix (`fast_secs`, `statement_timeout_ms`, `max_bytes`), and
//! reports show them in human units.

use std::time::Duration;

/// The unit a key's suffix names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// `_secs`.
    Seconds,
    /// `_ms`.
    Milliseconds,
    /// `_bytes`.
    Bytes,
}

impl Unit {
    /// The unit of `key` (`intervals.fast_secs`, `max_bytes`), if its suffix names one.
    pub fn of_key(key: &str) -> Option<Unit> {
        if key.ends_with("_secs") {
            Some(Unit::Seconds)
        } else if key.ends_with("_ms") {
            Some(Unit::Milliseconds)
        } else if key.ends_with("_bytes") {
            Some(Unit::Bytes)
        } else {
            None
        }
    }

    /// How a value of the unit is written: `a whole number of seconds`.
    pub fn describe(self) -> &'static str {
        match self {
            Unit::Seconds => "a whole number of seconds",
            Unit::Milliseconds => "a whole number of milliseconds",
            Unit::Bytes => "a whole number of bytes",
        }
    }
}

/// A number of seconds for reports: `10s`, `1h 30m`, `14days`.
pub fn format_secs(secs: u64) -> String {
    humantime::format_duration(Duration::from_secs(secs)).to_string()
}

/// A byte count in binary units: `1 GiB`, `512 MiB`, `1.5 GiB`, `300 B`. Whole
/// multiples show no decimals, the others one.
pub fn format_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut unit = 0;
    let mut whole = n;
    while whole >= 1024 && unit + 1 < UNITS.len() {
        whole /= 1024;
        unit += 1;
    }
    let scale = 1u64 << (10 * unit);
    if n.is_multiple_of(scale) {
        format!("{} {}", n / scale, UNITS[unit])
    } else {
        // Display only: the precision lost converting to f64 does not show.
        let value = n as f64 / scale as f64;
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_from_suffixes() {
        assert_eq!(Unit::of_key("intervals.fast_secs"), Some(Unit::Seconds));
        assert_eq!(
            Unit::of_key("statement_timeout_ms"),
            Some(Unit::Milliseconds)
        );
        assert_eq!(Unit::of_key("max_bytes"), Some(Unit::Bytes));
        assert_eq!(Unit::of_key("statements_top_n"), None);
    }

    #[test]
    fn human_units() {
        assert_eq!(format_bytes(0), "0 B");
        assert_eq!(format_bytes(300), "300 B");
        assert_eq!(format_bytes(1_073_741_824), "1 GiB");
        assert_eq!(format_bytes(4 << 20), "4 MiB");
        assert_eq!(format_bytes(1536 << 20), "1.5 GiB");
        assert_eq!(format_secs(600), "10m");
        assert_eq!(format_secs(14 * 86_400), "14days");
    }
}
