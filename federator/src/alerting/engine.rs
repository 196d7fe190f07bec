//! The evaluation core shared by the evaluator (data from the central database, state
//! in the `alerts` table) and `pga-federator rules test` (data from a test's input
//! series, state in memory): which data times to evaluate, and what one rule's
//! evaluation at one time does to the alerts.
//!
//! # Data time
//!
//! Each agent's rules are evaluated at every `step` of **data time** (a grid aligned
//! on the Unix epoch), in order, as far as the agent's data watermark: the newest time
//! for which the central database holds all of the agent's data. An agent whose data
//! stops arriving is not evaluated (its alerts are held as they are); when its data
//! arrives late (a backfill after a partition), the missed steps are evaluated in
//! order, so an incident that began and ended meanwhile is found with its true start
//! and end. A step evaluated more than `late_after` behind the wall clock is *late*:
//! alerts that fire there are marked late.
//!
//! Rules over the federator's own view ([`super::rule::FEDERATOR_METRICS`]) are
//! evaluated at the wall clock, first; while an alert of a rule with
//! `inhibits_agent` fires for an agent, that agent's other rules are not evaluated
//! (their steps wait until it resolves).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use super::eval::{AgentInput, EvalError, Value, evaluate};
use super::labels::{Labels, Str};
use super::rule::Rule;
use super::state::{AlertState, Event, Phase};

/// How evaluation advances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// The data-time grid, ms.
    pub step_ms: i64,
    /// A step evaluated longer than this behind the wall clock is late, ms.
    pub late_after_ms: i64,
    /// How long a series may be missing before its alert resolves (or is dropped), ms.
    pub no_data_for_ms: i64,
    /// Steps one agent is evaluated for in one cycle, at most (the rest next cycle).
    pub max_steps_per_cycle: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            step_ms: 15_000,
            late_after_ms: 120_000,
            no_data_for_ms: 900_000,
            max_steps_per_cycle: 240,
        }
    }
}

impl Settings {
    /// The grid times to evaluate for an agent evaluated through `position` whose
    /// data is complete up to `watermark`: each step after `position` up to the
    /// watermark (at most `max_steps_per_cycle`); only the latest step when the agent
    /// was never evaluated.
    pub fn steps(&self, position: Option<i64>, watermark: i64) -> Vec<i64> {
        let step = self.step_ms.max(1);
        let last = watermark.div_euclid(step) * step;
        let first = match position {
            None => last,
            Some(p) => p.div_euclid(step) * step + step,
        };
        let mut out = Vec::new();
        let mut t = first;
        while t <= last && out.len() < self.max_steps_per_cycle.max(1) {
            out.push(t);
            t += step;
        }
        out
    }

    /// Whether a step at data time `t` evaluated at wall-clock `now` is late.
    pub fn is_late(&self, t: i64, now: i64) -> bool {
        now - t > self.late_after_ms
    }
}

/// One alert as the evaluator tracks it.
#[derive(Debug, Clone, PartialEq)]
pub struct Tracked {
    /// `alerts.id`, once stored.
    pub id: Option<i64>,
    pub rule_id: i64,
    pub agent: Str,
    pub fingerprint: String,
    /// The alert's labels: the series' (with `agent`), the rule's, `alertname`,
    /// `severity`.
    pub labels: Labels,
    pub annotations: BTreeMap<String, String>,
    pub state: AlertState,
    /// Fired at a late step.
    pub late: bool,
    /// Dropped while pending (never fired): to be forgotten.
    pub dropped: bool,
    /// The threshold in force (after overrides) at the last evaluation.
    pub threshold: f64,
    /// The data time of the last evaluation that looked at it.
    pub evaluated_at: i64,
    /// The last state put in the outbox for delivery (not muted).
    pub notified: Option<Phase>,
    /// Its agent's rules are held (inhibited).
    pub held: bool,
    /// The maintenance window muting its notifications.
    pub muted_by: Option<i64>,
    /// Its phase when loaded (`None` for an alert opened in this run).
    pub loaded_phase: Option<Phase>,
    /// Changed since loaded (to be written).
    pub dirty: bool,
}

/// The alerts of one run of the evaluator: the open ones, and those that finished
/// (resolved or dropped) during the run.
#[derive(Debug, Default)]
pub struct Book {
    pub open: HashMap<(i64, Str), BTreeMap<String, Tracked>>,
    pub finished: Vec<Tracked>,
}

impl Book {
    /// Adds an open alert (as loaded from storage).
    pub fn insert(&mut self, t: Tracked) {
        self.open
            .entry((t.rule_id, t.agent.clone()))
            .or_default()
            .insert(t.fingerprint.clone(), t);
    }

    /// Every open alert.
    pub fn open_alerts(&self) -> impl Iterator<Item = &Tracked> {
        self.open.values().flat_map(|m| m.values())
    }

    pub fn open_alerts_mut(&mut self) -> impl Iterator<Item = &mut Tracked> {
        self.open.values_mut().flat_map(|m| m.values_mut())
    }

    /// The agents for which an alert of a rule in `inhibitors` fires.
    pub fn inhibited_agents(&self, inhibitors: &HashSet<i64>) -> HashSet<Str> {
        self.open
            .iter()
            .filter(|((rule, _), alerts)| {
                inhibitors.contains(rule) && alerts.values().any(|a| a.state.phase == Phase::Firing)
            })
            .map(|((_, agent), _)| agent.clone())
            .collect()
    }

    /// Evaluates `rule` for the agent of `input` at data time `t` and applies the
    /// result to its alerts: series whose condition holds open alerts (or keep them
    /// open), open alerts move through their state machine, missing series count as
    /// no data. Returns the number of series in the query's result.
    pub fn step(
        &mut self,
        rule_id: i64,
        rule: &Rule,
        input: &AgentInput,
        t: i64,
        late: bool,
        no_data_for_ms: i64,
    ) -> Result<usize, EvalError> {
        let Value::Vector(elements) = evaluate(&rule.expr, input, t)? else {
            return Ok(0);
        };
        let timing = rule.timing(no_data_for_ms);
        let key = (rule_id, input.agent.clone());
        let mut seen: HashSet<String> = HashSet::new();
        let n = elements.len();
        // Usually nothing is open and nothing holds: then no alert labels are built.
        let any_open = self.open.get(&key).is_some_and(|m| !m.is_empty());
        for e in elements {
            if !any_open && !rule.condition_for_series(&e.labels).holds(e.value, false) {
                continue;
            }
            let labels = Arc::new(
                e.labels.merged(
                    rule.static_labels
                        .iter()
                        .map(|(k, v)| (k.as_str(), v.as_str())),
                ),
            );
            let fingerprint = labels.fingerprint();
            if !seen.insert(fingerprint.clone()) {
                // Two series of one result with the same alert labels: the first wins.
                continue;
            }
            let condition = rule.condition(&labels);
            let open = self.open.entry(key.clone()).or_default();
            if let Some(a) = open.get_mut(&fingerprint) {
                let event = a.state.observe(t, Some(e.value), &condition, &timing);
                a.threshold = condition.threshold;
                a.annotations = rule.annotate(&labels, e.value, condition.threshold);
                a.evaluated_at = t;
                a.dirty = true;
                match event {
                    Some(Event::Fired) => a.late = late,
                    Some(Event::Resolved(_)) | Some(Event::Dropped) => {
                        if let Some(mut a) = open.remove(&fingerprint) {
                            a.dropped = event == Some(Event::Dropped);
                            self.finished.push(a);
                        }
                    }
                    None => {}
                }
                continue;
            }
            if !condition.holds(e.value, false) {
                continue;
            }
            let (state, event) = AlertState::open(t, e.value, &timing);
            open.insert(
                fingerprint.clone(),
                Tracked {
                    id: None,
                    rule_id,
                    agent: input.agent.clone(),
                    annotations: rule.annotate(&labels, e.value, condition.threshold),
                    fingerprint,
                    labels,
                    state,
                    late: late && event == Some(Event::Fired),
                    dropped: false,
                    threshold: condition.threshold,
                    evaluated_at: t,
                    notified: None,
                    held: false,
                    muted_by: None,
                    loaded_phase: None,
                    dirty: true,
                },
            );
        }
        // Open alerts whose series is missing from the result.
        if let Some(open) = self.open.get_mut(&key) {
            let missing: Vec<String> = open
                .keys()
                .filter(|f| !seen.contains(*f))
                .cloned()
                .collect();
            for f in missing {
                let Some(a) = open.get_mut(&f) else { continue };
                let condition = rule.condition(&a.labels);
                let event = a.state.observe(t, None, &condition, &timing);
                a.evaluated_at = t;
                a.dirty = true;
                if matches!(event, Some(Event::Resolved(_)) | Some(Event::Dropped))
                    && let Some(mut a) = open.remove(&f)
                {
                    a.dropped = event == Some(Event::Dropped);
                    self.finished.push(a);
                }
            }
            if open.is_empty() {
                self.open.remove(&key);
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_follow_the_grid_up_to_the_watermark() {
        let s = Settings {
            step_ms: 10,
            max_steps_per_cycle: 5,
            ..Settings::default()
        };
        assert_eq!(s.steps(None, 57), [50]);
        assert_eq!(s.steps(Some(20), 57), [30, 40, 50]);
        assert_eq!(s.steps(Some(25), 57), [30, 40, 50]);
        assert_eq!(s.steps(Some(50), 57), Vec::<i64>::new());
        assert_eq!(s.steps(Some(0), 1000), [10, 20, 30, 40, 50]);
        assert!(s.is_late(0, 120_001));
        assert!(!s.is_late(0, 120_000));
    }
}
