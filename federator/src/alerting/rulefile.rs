//! Rule files: TOML, one or more `[[rules]]` and the `[[tests]]` that exercise them
//! (docs/alerting.md, "Rule files"). The built-in pack ships in this same form
//! (`federator/rules/`, installed under `/usr/share/pganalytics/rules/`).
//!
//! A file is refused as a whole when anything in it is wrong, with every problem
//! located: `FILE:LINE:COLUMN: rules[2].query: unknown function `avg_over_time`` and
//! the fix on the next line. Positions inside a query or a template point at the
//! offending character in the file.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use pga_config::{Location, key_at, location};
use serde::{Deserialize, Serialize};
use toml::de::{DeTable, DeValue};

use super::expr;
use super::rule::{Rule, RuleProblem, RuleSpec};

/// A rule file's contents as written.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSpec {
    #[serde(default)]
    pub rules: Vec<RuleSpec>,
    #[serde(default)]
    pub tests: Vec<TestSpec>,
    /// Per-target thresholds for rules of any loaded file (the built-in pack's
    /// included), so a pack needs no copy to be tuned.
    #[serde(default)]
    pub overrides: Vec<FileOverride>,
}

/// `[[overrides]]`: a per-target threshold for the rule named `rule`, wherever it is
/// defined. These come before the rule's own overrides (the first that matches
/// wins), in the order the files are loaded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileOverride {
    pub rule: String,
    #[serde(rename = "match")]
    pub matchers: BTreeMap<String, String>,
    #[serde(default)]
    pub threshold: Option<f64>,
    #[serde(default)]
    pub resolve_threshold: Option<f64>,
}

/// A test of the file's rules, in the manner of `promtool test rules`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestSpec {
    pub name: String,
    /// Seconds between two values of an input series. Default 15.
    #[serde(default = "default_interval")]
    pub interval_secs: u64,
    /// Seconds between two evaluations (the evaluator's `step_secs`). Default:
    /// `interval_secs`.
    #[serde(default)]
    pub step_secs: Option<u64>,
    /// Input series; the first value is at time 0.
    #[serde(default)]
    pub series: Vec<SeriesSpec>,
    /// What is expected at given times.
    #[serde(default)]
    pub expect: Vec<ExpectSpec>,
}

const fn default_interval() -> u64 {
    15
}

/// One input series: `metric{label="value", …}` (the `agent` label names the agent;
/// `test` when absent) and its values in the compact notation: numbers, `_` for a
/// missing value, `a+bxN` / `a-bxN` for N further values stepping by b, `axN` for a
/// repeated N more times, `_xN` for N missing values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeriesSpec {
    pub series: String,
    pub values: String,
}

/// The alerts of one rule expected at one time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectSpec {
    /// Seconds from the start; a multiple of the test's step.
    pub at_secs: u64,
    pub rule: String,
    /// The firing alerts (and pending ones, when one is listed as pending); an empty
    /// list expects none.
    #[serde(default)]
    pub alerts: Vec<ExpectedAlert>,
}

/// One expected alert: its state, all of its labels, and the annotations listed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedAlert {
    #[serde(default = "firing")]
    pub state: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

fn firing() -> String {
    "firing".into()
}

/// A rule file that passed every check.
#[derive(Debug, Clone)]
pub struct RuleFile {
    pub path: PathBuf,
    pub rules: Vec<Rule>,
    pub tests: Vec<TestSpec>,
    /// Its `[[overrides]]`, applied by [`load_all`].
    pub overrides: Vec<FileOverride>,
}

/// One problem of a rule file, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileProblem {
    pub at: Option<Location>,
    /// `rules[2].query`, `tests[0].series[1].values`, or the rule's name.
    pub key: String,
    pub message: String,
    pub fix: String,
}

/// A rule file that cannot be used: every problem found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleFileError {
    pub path: PathBuf,
    pub problems: Vec<FileProblem>,
}

impl fmt::Display for RuleFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{}", self.path.display())?;
            if let Some(at) = p.at {
                write!(f, ":{}:{}", at.line, at.column)?;
            }
            write!(f, ": {}: {}\n  fix: {}", p.key, p.message, p.fix)?;
        }
        Ok(())
    }
}

impl std::error::Error for RuleFileError {}

impl RuleFile {
    /// Reads and checks a rule file.
    pub fn load(path: &Path) -> Result<RuleFile, RuleFileError> {
        let text = std::fs::read_to_string(path).map_err(|e| RuleFileError {
            path: path.to_owned(),
            problems: vec![FileProblem {
                at: None,
                key: "file".into(),
                message: format!("cannot be read: {e}"),
                fix: "check the path and that the federator's user may read it".into(),
            }],
        })?;
        RuleFile::parse(&text, path)
    }

    /// Checks the text of a rule file; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<RuleFile, RuleFileError> {
        let fail = |problems: Vec<FileProblem>| RuleFileError {
            path: path.to_owned(),
            problems,
        };
        let doc = DeTable::parse(text).map_err(|e| {
            fail(vec![FileProblem {
                at: e.span().map(|s| location(text, s.start)),
                key: "syntax".into(),
                message: e.message().trim().to_owned(),
                fix: "fix the TOML syntax: strings in quotes, one key = value per line, \
                      [[rules]] before each rule"
                    .into(),
            }])
        })?;
        let spec: FileSpec = toml::from_str(text).map_err(|e| {
            let span = e.span();
            let key = span
                .as_ref()
                .and_then(|s| key_at(doc.get_ref(), "", s.start))
                .unwrap_or_else(|| "file".into());
            let message = e.message().trim().to_owned();
            let fix = fix_for(&key, &message);
            fail(vec![FileProblem {
                at: span.map(|s| location(text, s.start)),
                key,
                message,
                fix,
            }])
        })?;
        let mut problems = Vec::new();
        let mut rules = Vec::new();
        let mut names = HashSet::new();
        for (i, r) in spec.rules.iter().enumerate() {
            if !names.insert(r.name.clone()) {
                problems.push(FileProblem {
                    at: span_of(&doc, &[Seg::Key("rules"), Seg::Index(i), Seg::Key("name")])
                        .map(|s| location(text, s.start)),
                    key: format!("rules[{i}].name"),
                    message: format!("a second rule named {:?}", r.name),
                    fix: "give every rule its own name".into(),
                });
                continue;
            }
            match Rule::compile(r.clone()) {
                Ok(rule) => rules.push(rule),
                Err(ps) => problems.extend(ps.into_iter().map(|p| locate(text, &doc, i, p))),
            }
        }
        for (i, t) in spec.tests.iter().enumerate() {
            check_test(text, &doc, i, t, &names, &mut problems);
        }
        if !problems.is_empty() {
            return Err(fail(problems));
        }
        Ok(RuleFile {
            path: path.to_owned(),
            rules,
            tests: spec.tests,
            overrides: spec.overrides,
        })
    }
}

/// Loads rule files and directories of them (`*.toml`, in name order), refusing a
/// rule name used twice across them. Every file's problems are returned.
pub fn load_all(paths: &[PathBuf]) -> Result<Vec<RuleFile>, Vec<RuleFileError>> {
    let mut files: Vec<RuleFile> = Vec::new();
    let mut errors = Vec::new();
    for p in paths {
        let list = if p.is_dir() {
            match std::fs::read_dir(p) {
                Ok(rd) => {
                    let mut v: Vec<PathBuf> = rd
                        .filter_map(|e| e.ok().map(|e| e.path()))
                        .filter(|f| f.extension().is_some_and(|x| x == "toml"))
                        .collect();
                    v.sort();
                    v
                }
                Err(e) => {
                    errors.push(RuleFileError {
                        path: p.clone(),
                        problems: vec![FileProblem {
                            at: None,
                            key: "directory".into(),
                            message: format!("cannot be read: {e}"),
                            fix: "check the path".into(),
                        }],
                    });
                    continue;
                }
            }
        } else {
            vec![p.clone()]
        };
        for f in list {
            match RuleFile::load(&f) {
                Ok(rf) => files.push(rf),
                Err(e) => errors.push(e),
            }
        }
    }
    let mut seen: BTreeMap<String, PathBuf> = BTreeMap::new();
    for f in &files {
        for r in &f.rules {
            if let Some(first) = seen.insert(r.name().to_owned(), f.path.clone()) {
                errors.push(RuleFileError {
                    path: f.path.clone(),
                    problems: vec![FileProblem {
                        at: None,
                        key: r.name().to_owned(),
                        message: format!("the rule name is already used in {}", first.display()),
                        fix: "rename one of them (an override of a built-in rule's threshold \
                              goes in [[rules.overrides]] of a copy under a new name)"
                            .into(),
                    }],
                });
            }
        }
    }
    // Every file's [[overrides]], in load order, ahead of the rules' own.
    let overrides: Vec<(PathBuf, usize, FileOverride)> = files
        .iter()
        .flat_map(|f| {
            f.overrides
                .iter()
                .enumerate()
                .map(|(i, o)| (f.path.clone(), i, o.clone()))
        })
        .collect();
    let mut added: BTreeMap<String, Vec<(PathBuf, usize, FileOverride)>> = BTreeMap::new();
    for (path, i, o) in overrides {
        if !files
            .iter()
            .any(|f| f.rules.iter().any(|r| r.name() == o.rule))
        {
            errors.push(RuleFileError {
                path,
                problems: vec![FileProblem {
                    at: None,
                    key: format!("overrides[{i}].rule"),
                    message: format!("no loaded rule is named {:?}", o.rule),
                    fix: "name a rule of the loaded rule files (`pga-federator rules list`)".into(),
                }],
            });
            continue;
        }
        added.entry(o.rule.clone()).or_default().push((path, i, o));
    }
    for f in &mut files {
        for rule in &mut f.rules {
            let Some(extra) = added.get(rule.name()) else {
                continue;
            };
            let mut spec = rule.spec.clone();
            let own = std::mem::take(&mut spec.overrides);
            spec.overrides = extra
                .iter()
                .map(|(_, _, o)| super::rule::OverrideSpec {
                    matchers: o.matchers.clone(),
                    threshold: o.threshold,
                    resolve_threshold: o.resolve_threshold,
                })
                .chain(own)
                .collect();
            match Rule::compile(spec) {
                Ok(r) => *rule = r,
                Err(ps) => {
                    for p in ps {
                        // overrides[k] of the merged list is the k-th added one.
                        let (path, i) = p
                            .field
                            .strip_prefix("overrides[")
                            .and_then(|r| r.split(']').next())
                            .and_then(|k| k.parse::<usize>().ok())
                            .and_then(|k| extra.get(k))
                            .map_or((f.path.clone(), None), |(path, i, _)| {
                                (path.clone(), Some(*i))
                            });
                        errors.push(RuleFileError {
                            path,
                            problems: vec![FileProblem {
                                at: None,
                                key: match i {
                                    Some(i) => format!("overrides[{i}] of {}", rule.name()),
                                    None => format!("{}.{}", rule.name(), p.field),
                                },
                                message: p.message,
                                fix: p.fix,
                            }],
                        });
                    }
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(files)
    } else {
        Err(errors)
    }
}

fn fix_for(key: &str, message: &str) -> String {
    if message.starts_with("unknown field") {
        let unknown = message.split('`').nth(1).unwrap_or("");
        let valid: Vec<&str> = message
            .split("expected")
            .nth(1)
            .map(|r| {
                r.split('`')
                    .enumerate()
                    .filter(|(i, _)| i % 2 == 1)
                    .map(|(_, s)| s)
                    .collect()
            })
            .unwrap_or_default();
        if let Some(best) = pga_config::closest(unknown, &valid) {
            return format!("did you mean `{best}`?");
        }
        return "remove it, or move it to the table it belongs to".into();
    }
    let last = key.rsplit('.').next().unwrap_or(key);
    let last = last.split('[').next().unwrap_or(last);
    match last {
        "threshold" | "resolve_threshold" => {
            "write a plain number without quotes or units (0.8 for 80 %, 300 for 5 minutes in seconds)"
                .into()
        }
        "for_secs" | "keep_firing_for_secs" | "interval_secs" | "step_secs" | "at_secs" => {
            "write whole seconds as a number, e.g. 300 for 5 minutes".into()
        }
        "labels" | "annotations" | "match" => {
            "write a table of strings, e.g. { team = \"dba\" }".into()
        }
        "rules" => "write each rule as a [[rules]] table".into(),
        "overrides" => "write each override as an [[overrides]] table with rule, match and threshold".into(),
        "tests" => "write each test as a [[tests]] table".into(),
        "enabled" | "inhibits_agent" => "write true or false".into(),
        _ => "write a quoted string".into(),
    }
}

enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

/// The span of the value at `path` in the document.
fn span_of(doc: &toml::Spanned<DeTable<'_>>, path: &[Seg<'_>]) -> Option<Range<usize>> {
    let mut span = doc.span();
    let mut cur: Option<&DeValue<'_>> = None;
    let mut table: Option<&DeTable<'_>> = Some(doc.get_ref());
    for seg in path {
        let v = match (seg, table, cur) {
            (Seg::Key(k), Some(t), _) => t.get(*k)?,
            (Seg::Index(i), _, Some(DeValue::Array(a))) => a.get(*i)?,
            _ => return None,
        };
        span = v.span();
        cur = Some(v.get_ref());
        table = match v.get_ref() {
            DeValue::Table(t) => Some(t),
            _ => None,
        };
    }
    Some(span)
}

/// The byte offset in the file of character `chars` of the string value at `span`.
fn string_offset(text: &str, span: &Range<usize>, chars: usize) -> usize {
    let raw = &text[span.clone()];
    let (open, literal) = if raw.starts_with("'''") {
        (3, true)
    } else if raw.starts_with("\"\"\"") {
        (3, false)
    } else if raw.starts_with('\'') {
        (1, true)
    } else if raw.starts_with('"') {
        (1, false)
    } else {
        return span.start;
    };
    let mut i = span.start + open;
    if open == 3 {
        if text[i..].starts_with("\r\n") {
            i += 2;
        } else if text[i..].starts_with('\n') {
            i += 1;
        }
    }
    let mut n = 0;
    while n < chars && i < span.end {
        let Some(c) = text[i..].chars().next() else {
            break;
        };
        if !literal && c == '\\' {
            i += match text[i + 1..].chars().next() {
                Some('u') => 6,
                Some('U') => 10,
                _ => 2,
            };
        } else {
            i += c.len_utf8();
        }
        n += 1;
    }
    i.min(span.end)
}

/// Places a rule's problem in the file.
fn locate(text: &str, doc: &toml::Spanned<DeTable<'_>>, i: usize, p: RuleProblem) -> FileProblem {
    let mut path = vec![Seg::Key("rules"), Seg::Index(i)];
    let parts: Vec<&str> = p.field.split('.').collect();
    let mut owned: Vec<(String, Option<usize>)> = Vec::new();
    for part in &parts {
        match part.split_once('[') {
            Some((k, idx)) => owned.push((k.to_owned(), idx.trim_end_matches(']').parse().ok())),
            None => owned.push(((*part).to_owned(), None)),
        }
    }
    for (k, idx) in &owned {
        path.push(Seg::Key(k));
        if let Some(n) = idx {
            path.push(Seg::Index(*n));
        }
    }
    // The innermost span that exists (an override's missing threshold points at it).
    let mut span = None;
    for n in (2..=path.len()).rev() {
        if let Some(s) = span_of(doc, &path[..n]) {
            span = Some(s);
            break;
        }
    }
    let at = span.map(|s| match p.offset {
        Some(o) => location(text, string_offset(text, &s, o)),
        None => location(text, s.start),
    });
    FileProblem {
        at,
        key: format!("rules[{i}].{}", p.field),
        message: p.message,
        fix: p.fix,
    }
}

fn check_test(
    text: &str,
    doc: &toml::Spanned<DeTable<'_>>,
    i: usize,
    t: &TestSpec,
    rules: &HashSet<String>,
    out: &mut Vec<FileProblem>,
) {
    let at = |path: &[Seg<'_>]| {
        let mut full = vec![Seg::Key("tests"), Seg::Index(i)];
        full.extend(path.iter().map(|s| match s {
            Seg::Key(k) => Seg::Key(k),
            Seg::Index(n) => Seg::Index(*n),
        }));
        span_of(doc, &full).map(|s| location(text, s.start))
    };
    let mut push = |loc, key: String, message: String, fix: &str| {
        out.push(FileProblem {
            at: loc,
            key: format!("tests[{i}].{key}"),
            message,
            fix: fix.into(),
        })
    };
    if t.interval_secs == 0 || t.step_secs == Some(0) {
        push(
            at(&[Seg::Key("interval_secs")]),
            "interval_secs".into(),
            "an interval of 0 s".into(),
            "use at least 1",
        );
        return;
    }
    let step = t.step_secs.unwrap_or(t.interval_secs);
    for (j, s) in t.series.iter().enumerate() {
        if let Err(e) = expr::parse_series(&s.series) {
            let loc = span_of(
                doc,
                &[
                    Seg::Key("tests"),
                    Seg::Index(i),
                    Seg::Key("series"),
                    Seg::Index(j),
                    Seg::Key("series"),
                ],
            )
            .map(|sp| location(text, string_offset(text, &sp, e.offset)));
            push(loc, format!("series[{j}].series"), e.message, &e.fix);
        }
        if let Err((k, message)) = parse_values(&s.values) {
            let loc = span_of(
                doc,
                &[
                    Seg::Key("tests"),
                    Seg::Index(i),
                    Seg::Key("series"),
                    Seg::Index(j),
                    Seg::Key("values"),
                ],
            )
            .map(|sp| location(text, string_offset(text, &sp, k)));
            push(
                loc,
                format!("series[{j}].values"),
                message,
                "write space-separated values: 1 2 3, _ (missing), 1+2x3 (1 3 5 7), 0x5 (six zeros), _x2",
            );
        }
    }
    for (j, e) in t.expect.iter().enumerate() {
        let loc = at(&[Seg::Key("expect"), Seg::Index(j)]);
        if !rules.contains(&e.rule) {
            push(
                loc,
                format!("expect[{j}].rule"),
                format!("no rule named {:?} in this file", e.rule),
                "name a rule of this file",
            );
        }
        if e.at_secs % step != 0 {
            push(
                loc,
                format!("expect[{j}].at_secs"),
                format!("{} is not an evaluation time (every {step} s)", e.at_secs),
                "use a multiple of step_secs (or of interval_secs when step_secs is not set)",
            );
        }
        for (k, a) in e.alerts.iter().enumerate() {
            if !matches!(a.state.as_str(), "firing" | "pending") {
                push(
                    loc,
                    format!("expect[{j}].alerts[{k}].state"),
                    format!("{:?} is not a state an alert can be expected in", a.state),
                    "write firing or pending (a resolved alert is simply absent)",
                );
            }
        }
    }
}

/// Expands the compact value notation; `Err((character offset, message))`.
pub fn parse_values(text: &str) -> Result<Vec<Option<f64>>, (usize, String)> {
    let mut out = Vec::new();
    let mut offset = 0;
    for word in text.split(' ') {
        let at = offset;
        offset += word.chars().count() + 1;
        if word.is_empty() {
            continue;
        }
        let bad = |m: String| Err((at, m));
        let (base, times) = match word.split_once('x') {
            Some((b, n)) => match n.parse::<usize>() {
                Ok(n) if n <= 1_000_000 => (b, Some(n)),
                _ => return bad(format!("{word:?}: the count after x is not a number")),
            },
            None => (word, None),
        };
        if base == "_" {
            out.extend(std::iter::repeat_n(None, times.unwrap_or(1)));
            continue;
        }
        // a+b or a-b (the sign of a is part of a).
        let split = base
            .char_indices()
            .skip(1)
            .find(|&(i, c)| (c == '+' || c == '-') && !base[..i].ends_with(['e', 'E']))
            .map(|(i, _)| i);
        let (a, b) = match split {
            Some(i) => (&base[..i], Some(&base[i..])),
            None => (base, None),
        };
        let Ok(a) = a.parse::<f64>() else {
            return bad(format!("{word:?} is not a value"));
        };
        let b = match b {
            Some(b) => match b.trim_start_matches('+').parse::<f64>() {
                Ok(b) => b,
                Err(_) => return bad(format!("{word:?}: the step is not a number")),
            },
            None => 0.0,
        };
        if times.is_none() && split.is_some() {
            return bad(format!("{word:?}: a step needs a count, as in 1+2x3"));
        }
        match times {
            None => out.push(Some(a)),
            Some(n) => out.extend((0..=n).map(|k| Some(a + b * k as f64))),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<RuleFile, RuleFileError> {
        RuleFile::parse(text, Path::new("pack.toml"))
    }

    const GOOD: &str = r#"
[[rules]]
name = "PgServerDown"
query = "last(pg_up[1m])"
comparison = "<"
threshold = 1
for_secs = 60
severity = "critical"
annotations.summary = "{{ $labels.pg_instance }} is down"

[[tests]]
name = "down"
series = [{ series = 'pg_up{pg_instance="main"}', values = "1 0x8" }]
[[tests.expect]]
at_secs = 90
rule = "PgServerDown"
alerts = [{ labels = { alertname = "PgServerDown" } }]
"#;

    #[test]
    fn a_good_file_loads() {
        let f = parse(GOOD).unwrap();
        assert_eq!(f.rules.len(), 1);
        assert_eq!(f.tests.len(), 1);
        assert_eq!(f.tests[0].interval_secs, 15);
    }

    #[test]
    fn a_query_error_points_into_the_file() {
        let text = GOOD.replace("last(pg_up[1m])", "last(pg_up[1m]) ** 2");
        let e = parse(&text).unwrap_err();
        let shown = e.to_string();
        // `query = "` is 9 characters; the second * is character 18 of the query.
        assert!(
            shown.starts_with("pack.toml:4:27: rules[0].query: "),
            "{shown}"
        );
        assert!(shown.contains("\n  fix: "), "{shown}");
    }

    #[test]
    fn a_threshold_of_the_wrong_type_is_refused_with_its_position() {
        let text = GOOD.replace("threshold = 1", "threshold = \"80%\"");
        let e = parse(&text).unwrap_err();
        assert_eq!(e.problems.len(), 1);
        let p = &e.problems[0];
        assert_eq!(p.key, "rules[0].threshold");
        assert_eq!(
            p.at,
            Some(Location {
                line: 6,
                column: 13
            })
        );
        assert!(p.fix.contains("plain number"), "{p:?}");
    }

    #[test]
    fn unknown_keys_suggest_the_one_meant() {
        let text = GOOD.replace("for_secs = 60", "for = 60");
        let e = parse(&text).unwrap_err();
        assert!(e.problems[0].message.contains("unknown field `for`"), "{e}");
        assert!(e.problems[0].fix.contains("for_secs"), "{e}");
    }

    #[test]
    fn semantic_problems_are_all_located() {
        let text = GOOD
            .replace("comparison = \"<\"", "comparison = \"=>\"")
            .replace("{{ $labels.pg_instance }}", "{{ $labls.x }}")
            .replace("at_secs = 90", "at_secs = 91")
            .replace("values = \"1 0x8\"", "values = \"1 zero\"");
        let e = parse(&text).unwrap_err();
        let keys: Vec<&str> = e.problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "rules[0].comparison",
                "rules[0].annotations.summary",
                "tests[0].series[0].values",
                "tests[0].expect[0].at_secs"
            ]
        );
        assert_eq!(
            e.problems[0].at,
            Some(Location {
                line: 5,
                column: 14
            })
        );
        assert_eq!(
            e.problems[1].at,
            Some(Location {
                line: 9,
                column: 24
            })
        );
        assert_eq!(
            e.problems[2].at,
            Some(Location {
                line: 13,
                column: 63
            })
        );
    }

    #[test]
    fn values_notation() {
        assert_eq!(
            parse_values("1 _ 1+2x3 5-1x2 0x2 _x2 -1").unwrap(),
            [
                Some(1.0),
                None,
                Some(1.0),
                Some(3.0),
                Some(5.0),
                Some(7.0),
                Some(5.0),
                Some(4.0),
                Some(3.0),
                Some(0.0),
                Some(0.0),
                Some(0.0),
                None,
                None,
                Some(-1.0)
            ]
        );
        assert_eq!(parse_values("1e3 2e-1").unwrap(), [Some(1000.0), Some(0.2)]);
        assert_eq!(parse_values("1 a").unwrap_err().0, 2);
        assert!(parse_values("1+2").unwrap_err().1.contains("count"));
    }
}
