//! The rule model: [`RuleSpec`] is a rule as written (in a rule file, through the
//! API, in the `alert_rules` table); [`Rule`] is one that passed every check, with
//! its query and templates parsed. A rule that fails a check is refused with every
//! [`RuleProblem`], each naming the field, the position inside it where there is
//! one, what is wrong and the fix, and is never stored.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::expr::{self, Expr, ParseError, is_label_name};
use super::labels::LabelSet;
use super::state::{Comparison, Condition, Timing};
use super::template::Template;

/// Longest `for` and `keep_firing_for`: 7 days.
pub const MAX_HOLD_SECS: u64 = 7 * 86_400;
/// Longest window of a query: 7 days (read from 1-minute rollups past an hour).
pub const MAX_WINDOW_MS: i64 = 7 * 86_400_000;
/// Metrics the federator computes itself, at wall-clock time, one series per agent.
pub const FEDERATOR_METRICS: [(&str, &str); 3] = [
    (
        "pga_federator_agent_last_pull_age_seconds",
        "seconds since the federator last wrote data of the agent (a successful pull)",
    ),
    (
        "pga_federator_agent_data_lag_seconds",
        "seconds between now and the agent's data watermark",
    ),
    (
        "pga_federator_agent_last_gap_age_seconds",
        "seconds since the latest data gap of the agent was recorded (absent when none)",
    ),
];

/// A rule as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// The alert name (`alertname`): letters, digits and `_`, starting with a letter.
    pub name: String,
    /// The query (docs/alerting.md, "Queries").
    pub query: String,
    /// `>`, `>=`, `<`, `<=`, `==` or `!=`.
    pub comparison: String,
    pub threshold: f64,
    /// Hysteresis: an open alert stays open until the value passes this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolve_threshold: Option<f64>,
    #[serde(default)]
    pub for_secs: u64,
    #[serde(default)]
    pub keep_firing_for_secs: u64,
    /// `info`, `warning` or `critical`.
    pub severity: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overrides: Vec<OverrideSpec>,
    /// Which published pack the rule matches, and how its threshold was chosen.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pack: String,
    /// What to do when it fires, in one line.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub runbook: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// While an alert of this rule fires for an agent, the agent's other rules are
    /// held (evaluated once it resolves).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub inhibits_agent: bool,
    #[serde(default = "yes", skip_serializing_if = "Clone::clone")]
    pub enabled: bool,
}

const fn yes() -> bool {
    true
}

/// A per-target threshold: applies to the alerts whose labels equal every pair of
/// `match`. The first matching override wins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OverrideSpec {
    #[serde(rename = "match")]
    pub matchers: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolve_threshold: Option<f64>,
}

/// Alert severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub const fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }

    pub fn parse(s: &str) -> Option<Severity> {
        [Severity::Info, Severity::Warning, Severity::Critical]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

/// One problem of a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleProblem {
    /// The field: `query`, `overrides[1].threshold`, `annotations.summary`.
    pub field: String,
    /// Characters into the field's text, for the query and templates.
    pub offset: Option<usize>,
    pub message: String,
    pub fix: String,
}

impl std::fmt::Display for RuleProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.field)?;
        if let Some(o) = self.offset {
            write!(f, " (character {})", o + 1)?;
        }
        write!(f, ": {}\n  fix: {}", self.message, self.fix)
    }
}

/// A rule that passed every check.
#[derive(Debug, Clone)]
pub struct Rule {
    pub spec: RuleSpec,
    pub expr: Expr,
    pub comparison: Comparison,
    pub severity: Severity,
    pub annotations: Vec<(String, Template)>,
    /// Evaluated at wall-clock time over the federator's own view
    /// ([`FEDERATOR_METRICS`]) rather than at each agent's data watermark.
    pub wall_clock: bool,
    /// The labels every alert of the rule carries: its labels, `alertname` and
    /// `severity`.
    pub static_labels: Vec<(String, String)>,
}

impl Rule {
    /// Checks a spec; every problem is reported.
    pub fn compile(spec: RuleSpec) -> Result<Rule, Vec<RuleProblem>> {
        let mut p = Problems(Vec::new());
        if !is_alert_name(&spec.name) {
            p.add(
                "name",
                format!("{:?} is not a valid rule name", spec.name),
                "use 1 to 128 letters, digits and _, starting with a letter, e.g. PgServerDown",
            );
        }
        let expr = match expr::parse(&spec.query) {
            Ok(e) => Some(e),
            Err(ParseError {
                offset,
                message,
                fix,
            }) => {
                p.0.push(RuleProblem {
                    field: "query".into(),
                    offset: Some(offset),
                    message,
                    fix,
                });
                None
            }
        };
        let mut wall_clock = false;
        if let Some(e) = &expr {
            let terms = e.terms();
            let federator = terms
                .iter()
                .filter(|t| t.selector.metric.starts_with("pga_federator_"))
                .count();
            for t in &terms {
                let m = &t.selector.metric;
                if m.starts_with("pga_federator_") && !FEDERATOR_METRICS.iter().any(|(n, _)| n == m)
                {
                    let known: Vec<&str> = FEDERATOR_METRICS.iter().map(|(n, _)| *n).collect();
                    p.add(
                        "query",
                        format!("{m} is not one of the federator's own metrics"),
                        &format!("use one of {}", known.join(", ")),
                    );
                }
                if t.range_ms > MAX_WINDOW_MS {
                    p.add(
                        "query",
                        format!(
                            "the window [{}] of {} is longer than 7 days",
                            expr::format_duration(t.range_ms),
                            t.selector.metric
                        ),
                        "use a window of at most 7d (longer ones would scan too much)",
                    );
                }
            }
            if federator > 0 && federator < terms.len() {
                p.add(
                    "query",
                    "mixes the federator's own metrics (pga_federator_*, evaluated at wall-clock \
                     time) with agent data (evaluated at each agent's data watermark)"
                        .into(),
                    "split it into two rules",
                );
            }
            wall_clock = federator > 0 && federator == terms.len();
        }
        let comparison = Comparison::parse(&spec.comparison);
        if comparison.is_none() {
            p.add(
                "comparison",
                format!("{:?} is not a comparison", spec.comparison),
                "write one of >, >=, <, <=, ==, !=",
            );
        }
        check_number(&mut p, "threshold", spec.threshold);
        if let Some(c) = comparison {
            check_resolve(
                &mut p,
                "resolve_threshold",
                c,
                spec.threshold,
                spec.resolve_threshold,
            );
        }
        for (key, v) in [
            ("for_secs", spec.for_secs),
            ("keep_firing_for_secs", spec.keep_firing_for_secs),
        ] {
            if v > MAX_HOLD_SECS {
                p.add(
                    key,
                    format!("{v} s is longer than 7 days"),
                    "use at most 604800",
                );
            }
        }
        let severity = Severity::parse(&spec.severity);
        if severity.is_none() {
            p.add(
                "severity",
                format!("{:?} is not a severity", spec.severity),
                "write info, warning or critical",
            );
        }
        for (k, v) in &spec.labels {
            if !is_label_name(k) || k.starts_with("__") {
                p.add(
                    &format!("labels.{k}"),
                    format!("{k:?} is not a label name"),
                    "use [a-zA-Z_][a-zA-Z0-9_]*, not starting with __",
                );
            } else if matches!(k.as_str(), "alertname" | "severity" | "agent") {
                p.add(
                    &format!("labels.{k}"),
                    format!("`{k}` is set by the federator"),
                    "remove it (alertname is the rule's name, severity its severity, agent the agent's name)",
                );
            }
            if v.contains("{{") {
                p.add(
                    &format!("labels.{k}"),
                    "label values are not templates".into(),
                    "put templated text in annotations; labels identify the alert",
                );
            }
        }
        let mut annotations = Vec::new();
        for (k, text) in &spec.annotations {
            if !is_label_name(k) {
                p.add(
                    &format!("annotations.{k}"),
                    format!("{k:?} is not an annotation name"),
                    "use [a-zA-Z_][a-zA-Z0-9_]*, e.g. summary or description",
                );
            }
            match Template::parse(text) {
                Ok(t) => annotations.push((k.clone(), t)),
                Err(e) => p.0.push(RuleProblem {
                    field: format!("annotations.{k}"),
                    offset: Some(e.offset),
                    message: e.message,
                    fix: e.fix,
                }),
            }
        }
        for (i, o) in spec.overrides.iter().enumerate() {
            let f = |k: &str| format!("overrides[{i}].{k}");
            if o.matchers.is_empty() {
                p.add(
                    &f("match"),
                    "an override without labels to match would apply to every alert".into(),
                    "name the labels of the targets, e.g. match = { pg_instance = \"reporting\" }, \
                     or change the rule's threshold",
                );
            }
            for k in o.matchers.keys() {
                if !is_label_name(k) {
                    p.add(
                        &f("match"),
                        format!("{k:?} is not a label name"),
                        "use the labels of the alert: agent, pg_instance, datname, …",
                    );
                }
            }
            if o.threshold.is_none() && o.resolve_threshold.is_none() {
                p.add(
                    &f("threshold"),
                    "the override changes nothing".into(),
                    "set threshold (and optionally resolve_threshold)",
                );
            }
            if let Some(t) = o.threshold {
                check_number(&mut p, &f("threshold"), t);
            }
            if let Some(c) = comparison {
                let t = o.threshold.unwrap_or(spec.threshold);
                let r = o.resolve_threshold.or(spec.resolve_threshold);
                check_resolve(&mut p, &f("resolve_threshold"), c, t, r);
            }
        }
        if !p.0.is_empty() {
            return Err(p.0);
        }
        let (Some(expr), Some(comparison), Some(severity)) = (expr, comparison, severity) else {
            return Err(p.0);
        };
        let mut static_labels: Vec<(String, String)> = spec
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        static_labels.push(("alertname".into(), spec.name.clone()));
        static_labels.push(("severity".into(), severity.as_str().into()));
        Ok(Rule {
            spec,
            expr,
            comparison,
            severity,
            annotations,
            wall_clock,
            static_labels,
        })
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// The condition for an alert with these labels (the first matching override).
    pub fn condition(&self, labels: &LabelSet) -> Condition {
        self.condition_by(|k| labels.get(k))
    }

    /// The condition for the alert a series with these labels would raise: its
    /// labels with the rule's static labels over them (no allocation).
    pub fn condition_for_series(&self, series: &LabelSet) -> Condition {
        self.condition_by(|k| {
            self.static_labels
                .iter()
                .find(|(n, _)| n == k)
                .map_or_else(|| series.get(k), |(_, v)| v.as_str())
        })
    }

    fn condition_by<'a>(&'a self, label: impl Fn(&str) -> &'a str) -> Condition
    where
        Self: 'a,
    {
        let o = self
            .spec
            .overrides
            .iter()
            .find(|o| o.matchers.iter().all(|(k, v)| label(k) == v));
        Condition {
            comparison: self.comparison,
            threshold: o.and_then(|o| o.threshold).unwrap_or(self.spec.threshold),
            resolve_threshold: o
                .and_then(|o| o.resolve_threshold)
                .or(self.spec.resolve_threshold),
        }
    }

    pub fn timing(&self, no_data_for_ms: i64) -> Timing {
        Timing {
            for_ms: self.spec.for_secs as i64 * 1000,
            keep_firing_for_ms: self.spec.keep_firing_for_secs as i64 * 1000,
            no_data_for_ms,
        }
    }

    /// The rendered annotations of an alert.
    pub fn annotate(
        &self,
        labels: &LabelSet,
        value: f64,
        threshold: f64,
    ) -> BTreeMap<String, String> {
        self.annotations
            .iter()
            .map(|(k, t)| (k.clone(), t.render(labels, value, threshold)))
            .collect()
    }
}

struct Problems(Vec<RuleProblem>);

impl Problems {
    fn add(&mut self, field: &str, message: String, fix: &str) {
        self.0.push(RuleProblem {
            field: field.into(),
            offset: None,
            message,
            fix: fix.into(),
        });
    }
}

fn check_number(p: &mut Problems, field: &str, v: f64) {
    if !v.is_finite() {
        p.add(
            field,
            format!("{v} is not a finite number"),
            "write a plain number such as 0.8 or 300",
        );
    }
}

fn check_resolve(
    p: &mut Problems,
    field: &str,
    c: Comparison,
    threshold: f64,
    resolve: Option<f64>,
) {
    let Some(r) = resolve else {
        return;
    };
    if !r.is_finite() {
        p.add(
            field,
            format!("{r} is not a finite number"),
            "write a plain number",
        );
        return;
    }
    if !c.orders() {
        p.add(
            field,
            format!("hysteresis needs an ordering comparison, not {c}"),
            "remove resolve_threshold, or compare with >, >=, < or <=",
        );
        return;
    }
    let above = matches!(c, Comparison::Gt | Comparison::Ge);
    if (above && r > threshold) || (!above && r < threshold) {
        p.add(
            field,
            format!(
                "{r} is on the wrong side of the threshold {threshold}: with {c} the alert \
                 resolves when the value goes back {} it",
                if above { "below" } else { "above" }
            ),
            if above {
                "make resolve_threshold at most the threshold (e.g. 0.75 for > 0.8)"
            } else {
                "make resolve_threshold at least the threshold (e.g. 0.15 for < 0.1)"
            },
        );
    }
}

/// Whether `s` is a valid rule name.
pub fn is_alert_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.starts_with(|c: char| c.is_ascii_alphabetic())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn spec(name: &str, query: &str) -> RuleSpec {
        RuleSpec {
            name: name.into(),
            query: query.into(),
            comparison: ">".into(),
            threshold: 0.8,
            resolve_threshold: None,
            for_secs: 60,
            keep_firing_for_secs: 0,
            severity: "warning".into(),
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            overrides: vec![],
            pack: String::new(),
            runbook: String::new(),
            description: String::new(),
            inhibits_agent: false,
            enabled: true,
        }
    }

    fn fields(e: &[RuleProblem]) -> Vec<&str> {
        e.iter().map(|p| p.field.as_str()).collect()
    }

    #[test]
    fn a_good_rule_compiles_with_its_static_labels() {
        let mut s = spec("PgConnections", "last(x[1m])");
        s.labels.insert("team".into(), "dba".into());
        s.annotations.insert(
            "summary".into(),
            "{{ $labels.pg_instance }} {{ $value }}".into(),
        );
        let r = Rule::compile(s).unwrap();
        assert!(!r.wall_clock);
        assert_eq!(
            r.static_labels,
            [
                ("team".to_owned(), "dba".to_owned()),
                ("alertname".to_owned(), "PgConnections".to_owned()),
                ("severity".to_owned(), "warning".to_owned())
            ]
        );
        let r = Rule::compile(spec(
            "A",
            "last(pga_federator_agent_last_pull_age_seconds[1m])",
        ))
        .unwrap();
        assert!(r.wall_clock);
    }

    #[test]
    fn every_problem_is_reported_with_its_field() {
        let mut s = spec("bad name", "avg_over_time(x[5m])");
        s.comparison = "=>".into();
        s.threshold = f64::NAN;
        s.severity = "page".into();
        s.for_secs = 10_000_000;
        s.labels.insert("alertname".into(), "x".into());
        s.annotations
            .insert("summary".into(), "{{ $valeu }}".into());
        s.overrides.push(OverrideSpec {
            matchers: BTreeMap::new(),
            threshold: None,
            resolve_threshold: None,
        });
        let e = Rule::compile(s).unwrap_err();
        assert_eq!(
            fields(&e),
            [
                "name",
                "query",
                "comparison",
                "threshold",
                "for_secs",
                "severity",
                "labels.alertname",
                "annotations.summary",
                "overrides[0].match",
                "overrides[0].threshold"
            ]
        );
        assert_eq!(e[1].offset, Some(0));
        assert!(e[1].fix.contains("avg(metric[5m])"), "{}", e[1]);
    }

    #[test]
    fn hysteresis_must_point_the_right_way() {
        let mut s = spec("A", "last(x[1m])");
        s.resolve_threshold = Some(0.9);
        let e = Rule::compile(s.clone()).unwrap_err();
        assert_eq!(fields(&e), ["resolve_threshold"]);
        assert!(e[0].message.contains("wrong side"), "{}", e[0]);
        s.resolve_threshold = Some(0.75);
        s.overrides.push(OverrideSpec {
            matchers: [("pg_instance".to_owned(), "x".to_owned())].into(),
            threshold: Some(0.7),
            resolve_threshold: None,
        });
        let e = Rule::compile(s.clone()).unwrap_err();
        assert_eq!(fields(&e), ["overrides[0].resolve_threshold"]);
        s.overrides[0].resolve_threshold = Some(0.6);
        let r = Rule::compile(s).unwrap();
        let l = LabelSet::from_pairs([("pg_instance", "x")]);
        assert_eq!(r.condition(&l).threshold, 0.7);
        assert_eq!(r.condition(&l).resolve_threshold, Some(0.6));
        assert_eq!(r.condition(&LabelSet::default()).threshold, 0.8);
    }

    #[test]
    fn federator_metrics_are_not_mixed_with_agent_data() {
        let e = Rule::compile(spec(
            "A",
            "last(pga_federator_agent_data_lag_seconds[1m]) + last(pg_up[1m])",
        ))
        .unwrap_err();
        assert!(e[0].message.contains("mixes"), "{}", e[0]);
        let e = Rule::compile(spec("A", "last(pga_federator_nope[1m])")).unwrap_err();
        assert!(
            e[0].fix
                .contains("pga_federator_agent_last_pull_age_seconds"),
            "{}",
            e[0]
        );
        let e = Rule::compile(spec("A", "avg(x[8d])")).unwrap_err();
        assert!(e[0].message.contains("longer than 7 days"), "{}", e[0]);
    }
}
