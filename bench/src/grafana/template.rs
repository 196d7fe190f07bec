//! Template variables, replaced in a query as Grafana's browser side replaces them
//! for a SQL datasource before the backend sees it.
//!
//! Syntax: `$name`, `${name}`, `${name:format}`, `[[name]]`, `[[name:format]]`. A name
//! that is no variable is left as it is (so `$__timeFilter(` reaches the backend).
//! Values are formatted by the PostgreSQL datasource's rule when no format is
//! given: a variable that may hold several values (multi-value or with "All") gives
//! each value as a quoted literal, `'` doubled, joined by commas (`'a','it''s'`); a
//! single-value variable gives its value with `'` doubled and no quotes around it.
//! Explicit formats: `sqlstring` (quoted literals), `raw`, `csv`, `singlequote`,
//! `doublequote`, `pipe`, `regex`. Built-in values (`__interval`, `__from`, …) are
//! inserted as they are.

use std::collections::BTreeMap;

/// A variable's current value(s) and whether it takes several.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variable {
    pub values: Vec<String>,
    /// Multi-value or with an "All" option: formatted as a list of literals.
    pub multi: bool,
}

/// The variables of a dashboard plus Grafana's built-ins for one query.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    pub vars: BTreeMap<String, Variable>,
    pub builtins: BTreeMap<String, String>,
}

fn quote(v: &str) -> String {
    format!("'{}'", v.replace('\'', "''"))
}

fn format_values(var: &Variable, format: Option<&str>) -> String {
    let vals = &var.values;
    match format {
        None => {
            if var.multi {
                vals.iter().map(|v| quote(v)).collect::<Vec<_>>().join(",")
            } else {
                vals.first()
                    .map(|v| v.replace('\'', "''"))
                    .unwrap_or_default()
            }
        }
        Some("sqlstring") => vals.iter().map(|v| quote(v)).collect::<Vec<_>>().join(","),
        Some("singlequote") => vals
            .iter()
            .map(|v| format!("'{}'", v.replace('\'', "\\'")))
            .collect::<Vec<_>>()
            .join(","),
        Some("doublequote") => vals
            .iter()
            .map(|v| format!("\"{}\"", v.replace('"', "\\\"")))
            .collect::<Vec<_>>()
            .join(","),
        Some("pipe") => vals.join("|"),
        Some("regex") => {
            let esc: Vec<String> = vals.iter().map(|v| regex_escape(v)).collect();
            if esc.len() == 1 {
                esc[0].clone()
            } else {
                format!("({})", esc.join("|"))
            }
        }
        // raw, csv and anything else Grafana formats as a comma-separated list.
        Some(_) => vals.join(","),
    }
}

fn regex_escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        if "\\^$.|?*+()[]{}/".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Replaces every variable reference in `text`.
pub fn interpolate(text: &str, scope: &Scope) -> String {
    let mut out = String::with_capacity(text.len());
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let rest = &text[i..];
        if let Some((len, name, format)) = reference(rest) {
            if let Some(v) = scope.vars.get(name) {
                out.push_str(&format_values(v, format));
                i += len;
                continue;
            }
            if let Some(v) = scope.builtins.get(name) {
                out.push_str(v);
                i += len;
                continue;
            }
            out.push_str(&rest[..len]);
            i += len;
            continue;
        }
        let ch = rest.chars().next().map_or(1, char::len_utf8);
        out.push_str(&rest[..ch]);
        i += ch;
    }
    out
}

fn is_word(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// A variable reference at the start of `s`: its length, name and format.
fn reference(s: &str) -> Option<(usize, &str, Option<&str>)> {
    let b = s.as_bytes();
    if s.starts_with("${") {
        let close = s.find('}')?;
        let inner = &s[2..close];
        let (name_part, format) = match inner.split_once(':') {
            Some((n, f)) => (n, Some(f)),
            None => (inner, None),
        };
        // `${name.path}`: the field path is Grafana's; the name is what counts here.
        let name = name_part.split('.').next().unwrap_or("");
        if name.is_empty() || !name.bytes().all(is_word) {
            return None;
        }
        return Some((close + 1, name, format));
    }
    if s.starts_with("[[") {
        let close = s.find("]]")?;
        let inner = &s[2..close];
        let (name, format) = match inner.split_once(':') {
            Some((n, f)) => (n, Some(f)),
            None => (inner, None),
        };
        if name.is_empty() || !name.bytes().all(is_word) {
            return None;
        }
        return Some((close + 2, name, format));
    }
    if b.first() == Some(&b'$') {
        let len = b[1..].iter().take_while(|c| is_word(**c)).count();
        if len > 0 {
            return Some((len + 1, &s[1..=len], None));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope() -> Scope {
        let mut s = Scope::default();
        s.vars.insert(
            "db".into(),
            Variable {
                values: vec!["app".into(), "x'; drop table t; --".into()],
                multi: true,
            },
        );
        s.vars.insert(
            "one".into(),
            Variable {
                values: vec!["it's".into()],
                multi: false,
            },
        );
        s.builtins.insert("__interval_ms".into(), "10000".into());
        s
    }

    #[test]
    fn quotes_as_the_postgresql_datasource_does() {
        let s = scope();
        assert_eq!(
            interpolate("d IN ($db)", &s),
            "d IN ('app','x''; drop table t; --')"
        );
        assert_eq!(interpolate("n = '$one'", &s), "n = 'it''s'");
        assert_eq!(interpolate("${one:sqlstring}", &s), "'it''s'");
        assert_eq!(interpolate("[[db:csv]]", &s), "app,x'; drop table t; --");
        assert_eq!(interpolate("${db:raw}", &s), "app,x'; drop table t; --");
        assert_eq!(
            interpolate("'$__interval_ms ms' $__timeFilter(ts) $nope", &s),
            "'10000 ms' $__timeFilter(ts) $nope"
        );
    }
}
