//! What `validate()` reports: each broken rule as a [`Problem`] that names the key
//! at fault, what is wrong and what to change.

use std::fmt;

/// Longest agent or instance name.
pub const MAX_NAME_LEN: usize = 128;

/// How bad a [`Problem`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// Works, but probably not as intended; the program starts.
    Warning,
    /// The program refuses to start with this configuration.
    Error,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Warning => "warning",
            Severity::Error => "error",
        })
    }
}

/// One broken rule of the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Error or warning.
    pub severity: Severity,
    /// The key at fault as a path: `store.block_secs`, `postgres[1].name` (indexes
    /// count the tables of an array from 0), or an environment variable (`PGPORT`).
    pub key: String,
    /// What is wrong, with the offending value.
    pub message: String,
    /// What to change.
    pub fix: String,
}

impl Problem {
    /// A problem of `severity`.
    pub fn new(
        severity: Severity,
        key: impl Into<String>,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self {
            severity,
            key: key.into(),
            message: message.into(),
            fix: fix.into(),
        }
    }

    /// An error-level problem.
    pub fn error(
        key: impl Into<String>,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self::new(Severity::Error, key, message, fix)
    }

    /// A warning-level problem.
    pub fn warning(
        key: impl Into<String>,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self::new(Severity::Warning, key, message, fix)
    }

    /// Whether this problem stops the program.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Problem {
    /// `error: <key>: <message>` and, on the next line, `  fix: <fix>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}: {}\n  fix: {}",
            self.severity, self.key, self.message, self.fix
        )
    }
}

/// Whether any of `problems` is an error (warnings alone let the program run).
pub fn has_errors(problems: &[Problem]) -> bool {
    problems.iter().any(Problem::is_error)
}

/// A `check-config` report: the lines `settings` gives (each passed to the
/// function it is handed, without its newline), then the problems as
/// [`push_problems`] writes them.
pub fn check_report(settings: impl FnOnce(&mut dyn FnMut(String)), problems: &[Problem]) -> String {
    let mut out = String::new();
    settings(&mut |s: String| {
        out.push_str(&s);
        out.push('\n');
    });
    push_problems(&mut out, problems);
    out
}

/// Appends the end of a `check-config` report: every problem (errors first, each
/// group in the order found) as `error: <key>: <message>` / `  fix: <fix>`, then
/// after a blank line `configuration OK` (with the count of warnings) or
/// `N problem(s)` (with errors and warnings counted when there are both).
pub fn push_problems(out: &mut String, problems: &[Problem]) {
    let errors = problems.iter().filter(|p| p.is_error()).count();
    let warnings = problems.len() - errors;
    out.push('\n');
    let mut sorted: Vec<&Problem> = problems.iter().collect();
    sorted.sort_by_key(|p| std::cmp::Reverse(p.severity));
    for p in sorted {
        out.push_str(&p.to_string());
        out.push('\n');
    }
    if !problems.is_empty() {
        out.push('\n');
    }
    let summary = match (errors, warnings) {
        (0, 0) => "configuration OK".to_owned(),
        (0, w) => format!("configuration OK, {w} warning(s)"),
        (e, 0) => format!("{e} problem(s)"),
        (e, w) => format!("{} problem(s): {e} error(s), {w} warning(s)", e + w),
    };
    out.push_str(&summary);
    out.push('\n');
}

/// Whether `name` is a valid agent or instance name: 1..=128 characters out of
/// `[a-zA-Z0-9_.-]`.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_key_and_fix() {
        let p = Problem::warning("store.max_bytes", "5 is small", "raise it");
        assert_eq!(
            p.to_string(),
            "warning: store.max_bytes: 5 is small\n  fix: raise it"
        );
        assert!(!has_errors(std::slice::from_ref(&p)));
        assert!(has_errors(&[p, Problem::error("k", "m", "f")]));
    }

    #[test]
    fn report_end() {
        let mut out = String::new();
        push_problems(&mut out, &[]);
        assert_eq!(out, "\nconfiguration OK\n");
        let w = Problem::warning("a", "m", "f");
        let e = Problem::error("b", "n", "g");
        out.clear();
        push_problems(&mut out, std::slice::from_ref(&w));
        assert!(
            out.ends_with("\n\nconfiguration OK, 1 warning(s)\n"),
            "{out}"
        );
        out.clear();
        push_problems(&mut out, &[w, e]);
        assert_eq!(
            out,
            "\nerror: b: n\n  fix: g\nwarning: a: m\n  fix: f\n\n\
             2 problem(s): 1 error(s), 1 warning(s)\n"
        );
    }

    #[test]
    fn names() {
        assert!(is_valid_name("db-1.example_org"));
        assert!(is_valid_name(&"a".repeat(MAX_NAME_LEN)));
        assert!(!is_valid_name(&"a".repeat(MAX_NAME_LEN + 1)));
        assert!(!is_valid_name(""));
        assert!(!is_valid_name("db 1"));
        assert!(!is_valid_name("db/1"));
    }
}
