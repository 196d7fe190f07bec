//! `pga-federator rules test`: runs the `[[tests]]` of rule files against their
//! rules, in the manner of `promtool test rules`, through the same evaluation code
//! as the federator ([`super::engine`], [`super::eval`], [`super::window`]).
//!
//! A test's input series are its agents' data: value `k` of a series is at
//! `k × interval_secs`. The test steps the wall clock from 0 over its evaluation
//! grid (`step_secs`); at each instant the data up to it is complete (the watermark
//! is the wall clock), rules over the federator's own view run first, agents they
//! inhibit wait, and every other rule runs at each grid step its agent has not been
//! evaluated for — as the evaluator does. At each `at_secs` of an expectation, the
//! rule's firing alerts (and pending ones, when one is expected pending) must be
//! exactly those listed: all labels equal, the listed annotations equal.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use super::engine::{Book, Settings};
use super::eval::{AgentInput, InputSeries};
use super::expr;
use super::labels::{LabelSet, Str};
use super::rule::Rule;
use super::rulefile::{RuleFile, TestSpec, parse_values};
use super::state::Phase;
use super::window::{self, Continuity, Point, SeriesData};

/// The agent of input series without an `agent` label.
pub const DEFAULT_AGENT: &str = "test";

/// The outcome of one test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestOutcome {
    pub name: String,
    /// Empty when the test passed.
    pub failures: Vec<String>,
}

/// The outcome of a file's tests, and the rules no test expects to fire.
#[derive(Debug, Clone)]
pub struct FileOutcome {
    pub tests: Vec<TestOutcome>,
    pub untested: Vec<String>,
}

/// Runs every test of `file`.
pub fn run_file(file: &RuleFile, settings: &Settings) -> FileOutcome {
    let tests = file
        .tests
        .iter()
        .map(|t| TestOutcome {
            name: t.name.clone(),
            failures: run_test(&file.rules, t, settings),
        })
        .collect();
    let fired: HashSet<&str> = file
        .tests
        .iter()
        .flat_map(|t| t.expect.iter())
        .filter(|e| e.alerts.iter().any(|a| a.state == "firing"))
        .map(|e| e.rule.as_str())
        .collect();
    let untested = file
        .rules
        .iter()
        .map(|r| r.name().to_owned())
        .filter(|n| !fired.contains(n.as_str()))
        .collect();
    FileOutcome { tests, untested }
}

struct Series {
    metric: String,
    labels: Arc<LabelSet>,
    data: Arc<SeriesData>,
}

/// Runs one test; the failures, empty when it passed.
pub fn run_test(rules: &[Rule], test: &TestSpec, base: &Settings) -> Vec<String> {
    let mut failures = Vec::new();
    let interval_ms = test.interval_secs as i64 * 1000;
    let step_ms = test.step_secs.unwrap_or(test.interval_secs) as i64 * 1000;
    let settings = Settings {
        step_ms,
        max_steps_per_cycle: usize::MAX,
        ..*base
    };
    // Input series by agent.
    let continuity = Continuity {
        gaps: Vec::new(),
        max_silence_ms: 0,
    };
    let mut by_agent: BTreeMap<String, Vec<Series>> = BTreeMap::new();
    for s in &test.series {
        let (Ok((metric, labels)), Ok(values)) =
            (expr::parse_series(&s.series), parse_values(&s.values))
        else {
            failures.push(format!("the input series {:?} does not parse", s.series));
            continue;
        };
        let agent = labels
            .iter()
            .find(|(k, _)| k == "agent")
            .map_or(DEFAULT_AGENT.to_owned(), |(_, v)| v.clone());
        let labels = LabelSet::from_pairs(
            labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .chain([("agent", agent.as_str())]),
        );
        let points: Vec<Point> = values
            .iter()
            .enumerate()
            .filter_map(|(k, v)| {
                v.map(|value| Point {
                    ts: k as i64 * interval_ms,
                    value,
                })
            })
            .collect();
        let buckets = window::buckets_of(&points, &continuity);
        by_agent.entry(agent).or_default().push(Series {
            metric,
            labels: Arc::new(labels),
            data: Arc::new(SeriesData { points, buckets }),
        });
    }
    if !failures.is_empty() {
        return failures;
    }
    // Each agent's input for each rule.
    let agents: Vec<Str> = by_agent.keys().map(|a| Str::from(a.as_str())).collect();
    let inputs: HashMap<(usize, Str), AgentInput> = rules
        .iter()
        .enumerate()
        .flat_map(|(ri, rule)| {
            let by_agent = &by_agent;
            let continuity = &continuity;
            agents.iter().map(move |agent| {
                let series = &by_agent[agent.as_ref()];
                let terms = rule
                    .expr
                    .terms()
                    .iter()
                    .map(|term| {
                        series
                            .iter()
                            .filter(|s| {
                                s.metric == term.selector.metric
                                    && term.selector.matches(|n| s.labels.get(n))
                            })
                            .map(|s| InputSeries {
                                labels: s.labels.clone(),
                                data: s.data.clone(),
                            })
                            .collect()
                    })
                    .collect();
                (
                    (ri, agent.clone()),
                    AgentInput {
                        agent: agent.clone(),
                        terms,
                        continuity: continuity.clone(),
                    },
                )
            })
        })
        .collect();
    let inhibitors: HashSet<i64> = rules
        .iter()
        .enumerate()
        .filter(|(_, r)| r.spec.inhibits_agent)
        .map(|(i, _)| i as i64)
        .collect();
    let end = test.expect.iter().map(|e| e.at_secs).max().unwrap_or(0) as i64 * 1000;
    let mut book = Book::default();
    let mut positions: HashMap<Str, i64> = agents.iter().map(|a| (a.clone(), -step_ms)).collect();
    let mut now = 0;
    while now <= end {
        for (ri, rule) in rules.iter().enumerate().filter(|(_, r)| r.wall_clock) {
            for agent in &agents {
                if let Err(e) = book.step(
                    ri as i64,
                    rule,
                    &inputs[&(ri, agent.clone())],
                    now,
                    false,
                    settings.no_data_for_ms,
                ) {
                    failures.push(format!("{} at {} s: {e}", rule.name(), now / 1000));
                }
            }
        }
        let held = book.inhibited_agents(&inhibitors);
        for agent in agents.iter().filter(|a| !held.contains(*a)) {
            let pos = positions
                .get_mut(agent)
                .expect("every agent has a position");
            for t in settings.steps(Some(*pos), now) {
                for (ri, rule) in rules.iter().enumerate().filter(|(_, r)| !r.wall_clock) {
                    if let Err(e) = book.step(
                        ri as i64,
                        rule,
                        &inputs[&(ri, agent.clone())],
                        t,
                        settings.is_late(t, now),
                        settings.no_data_for_ms,
                    ) {
                        failures.push(format!("{} at {} s: {e}", rule.name(), t / 1000));
                    }
                }
                *pos = t;
            }
        }
        for e in test
            .expect
            .iter()
            .filter(|e| e.at_secs as i64 * 1000 == now)
        {
            check(&book, rules, e, &mut failures);
        }
        now += step_ms;
    }
    failures
}

/// An alert as a test compares it: state, labels, annotations.
type Seen<'a> = (
    String,
    BTreeMap<String, String>,
    &'a BTreeMap<String, String>,
);

fn check(book: &Book, rules: &[Rule], e: &super::rulefile::ExpectSpec, failures: &mut Vec<String>) {
    let Some(ri) = rules.iter().position(|r| r.name() == e.rule) else {
        failures.push(format!("no rule {:?}", e.rule));
        return;
    };
    let with_pending = e.alerts.iter().any(|a| a.state == "pending");
    let mut actual: Vec<Seen<'_>> = book
        .open_alerts()
        .filter(|a| a.rule_id == ri as i64)
        .filter(|a| {
            a.state.phase == Phase::Firing || (with_pending && a.state.phase == Phase::Pending)
        })
        .map(|a| {
            (
                a.state.phase.as_str().to_owned(),
                a.labels.to_map(),
                &a.annotations,
            )
        })
        .collect();
    actual.sort_by(|a, b| a.1.cmp(&b.1));
    let shown = |v: &[Seen<'_>]| -> String {
        if v.is_empty() {
            return "none".into();
        }
        v.iter()
            .map(|(s, l, a)| format!("{s} {l:?} annotations {a:?}"))
            .collect::<Vec<_>>()
            .join("; ")
    };
    let mut unmatched = actual.clone();
    let mut ok = true;
    for exp in &e.alerts {
        let found = unmatched.iter().position(|(s, l, a)| {
            *s == exp.state
                && *l == exp.labels
                && exp.annotations.iter().all(|(k, v)| a.get(k) == Some(v))
        });
        match found {
            Some(i) => {
                unmatched.remove(i);
            }
            None => ok = false,
        }
    }
    if !ok || !unmatched.is_empty() {
        let expected: Vec<String> = e
            .alerts
            .iter()
            .map(|a| format!("{} {:?} annotations {:?}", a.state, a.labels, a.annotations))
            .collect();
        failures.push(format!(
            "at {} s, {}: expected {}; got {}",
            e.at_secs,
            e.rule,
            if expected.is_empty() {
                "none".to_owned()
            } else {
                expected.join("; ")
            },
            shown(&actual)
        ));
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    const FILE: &str = r#"
[[rules]]
name = "Flapping"
query = "last(x[10s])"
comparison = ">"
threshold = 5
keep_firing_for_secs = 30
severity = "warning"
annotations.summary = "x is {{ $value }}"

[[rules]]
name = "Unreachable"
query = "last(pga_federator_agent_last_pull_age_seconds[1m])"
comparison = ">"
threshold = 60
severity = "critical"
inhibits_agent = true

[[tests]]
name = "flapping fires once and resolves once"
interval_secs = 10
series = [{ series = 'x{agent="a"}', values = "9 1 9 1 9 1 9 1 1 1 1 1" }]
[[tests.expect]]
at_secs = 0
rule = "Flapping"
alerts = [{ labels = { agent = "a", alertname = "Flapping", severity = "warning" }, annotations = { summary = "x is 9" } }]
[[tests.expect]]
at_secs = 80
rule = "Flapping"
alerts = [{ labels = { agent = "a", alertname = "Flapping", severity = "warning" } }]
[[tests.expect]]
at_secs = 90
rule = "Flapping"

[[tests]]
name = "an unreachable agent holds its alerts, then they are evaluated late"
interval_secs = 10
series = [
  { series = 'x{agent="a"}', values = "1 1 1 1 9 9 9 1 1 1 1 1" },
  { series = 'pga_federator_agent_last_pull_age_seconds{agent="a"}', values = "0 0 0 70 80 90 100 0 0 0 0 0" },
]
[[tests.expect]]
at_secs = 40
rule = "Flapping"
[[tests.expect]]
at_secs = 40
rule = "Unreachable"
alerts = [{ labels = { agent = "a", alertname = "Unreachable", severity = "critical" } }]
[[tests.expect]]
at_secs = 70
rule = "Flapping"
alerts = [{ labels = { agent = "a", alertname = "Flapping", severity = "warning" } }]
"#;

    #[test]
    fn the_runner_passes_good_expectations_and_reports_bad_ones() {
        let f = RuleFile::parse(FILE, Path::new("t.toml")).unwrap();
        let out = run_file(&f, &Settings::default());
        for t in &out.tests {
            assert!(t.failures.is_empty(), "{}: {:?}", t.name, t.failures);
        }
        assert_eq!(out.untested, Vec::<String>::new());
        // Expect the wrong thing: the report says what happened.
        let bad = FILE.replace(
            "at_secs = 90\nrule = \"Flapping\"\n",
            "at_secs = 110\nrule = \"Flapping\"\nalerts = [{ labels = { agent = \"a\" } }]\n",
        );
        let f = RuleFile::parse(&bad, Path::new("t.toml")).unwrap();
        let out = run_file(&f, &Settings::default());
        assert_eq!(
            out.tests[0].failures.len(),
            1,
            "{:?}",
            out.tests[0].failures
        );
        assert!(
            out.tests[0].failures[0]
                .starts_with("at 110 s, Flapping: expected firing {\"agent\": \"a\"}"),
            "{:?}",
            out.tests[0].failures
        );
    }
}
