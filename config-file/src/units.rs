//! Quantities in configuration files: every one is a whole number whose key names
//! its unit by a suffix (`fast_secs`, `statement_timeout_ms`, `max_bytes`).

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
}
