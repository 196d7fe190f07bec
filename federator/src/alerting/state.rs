//! One alert's state machine: pending → firing → resolved, with `for`,
//! `keep_firing_for`, hysteresis and missing data. Pure: no I/O, no clock; every time
//! is the data time of an evaluation (ms), so the same observations give the same
//! states whether they are evaluated live, after a restart or after a backfill.
//!
//! - A condition that starts to hold opens an alert: **pending** from that time
//!   (`active_at`), or **firing** at once when `for` is zero.
//! - Pending, it fires at the first evaluation at least `for` after `active_at` where
//!   the condition still holds; an evaluation where it does not drops the alert (a
//!   pending alert never notifies).
//! - Firing, it stays firing while the condition holds and for `keep_firing_for`
//!   after it last held; then it **resolves** at the evaluation that finds it clear.
//! - Hysteresis: once open, the alert is held by the `resolve_threshold` (when set)
//!   instead of the threshold: `> 0.8` opens it, only `<= 0.75` clears it.
//! - No data (the series left the query's result while the agent's data kept
//!   arriving): the alert is held as it is, neither resolved nor fired, for up to
//!   `no_data_for`; then a pending alert is dropped and a firing one resolves (as
//!   [`Resolution::NoData`]).
//! - A resolved alert is final; a condition that holds again opens a new alert.

use std::fmt;

/// How values are compared with the threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Comparison {
    Gt,
    Ge,
    Lt,
    Le,
    Eq,
    Ne,
}

impl Comparison {
    pub const ALL: [Comparison; 6] = [
        Comparison::Gt,
        Comparison::Ge,
        Comparison::Lt,
        Comparison::Le,
        Comparison::Eq,
        Comparison::Ne,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Comparison::Gt => ">",
            Comparison::Ge => ">=",
            Comparison::Lt => "<",
            Comparison::Le => "<=",
            Comparison::Eq => "==",
            Comparison::Ne => "!=",
        }
    }

    pub fn parse(s: &str) -> Option<Comparison> {
        Comparison::ALL.into_iter().find(|c| c.as_str() == s.trim())
    }

    pub fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Comparison::Gt => value > threshold,
            Comparison::Ge => value >= threshold,
            Comparison::Lt => value < threshold,
            Comparison::Le => value <= threshold,
            Comparison::Eq => value == threshold,
            Comparison::Ne => value != threshold,
        }
    }

    /// Whether a resolve threshold makes sense: only for ordering comparisons.
    pub const fn orders(self) -> bool {
        matches!(
            self,
            Comparison::Gt | Comparison::Ge | Comparison::Lt | Comparison::Le
        )
    }
}

impl fmt::Display for Comparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rule's condition on one series, after overrides.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Condition {
    pub comparison: Comparison,
    pub threshold: f64,
    /// The threshold that keeps an open alert open (hysteresis).
    pub resolve_threshold: Option<f64>,
}

impl Condition {
    /// Whether the condition holds for `value`, for an alert that is open or not.
    pub fn holds(&self, value: f64, open: bool) -> bool {
        let t = match (open, self.resolve_threshold) {
            (true, Some(r)) => r,
            _ => self.threshold,
        };
        self.comparison.holds(value, t)
    }
}

/// How long things take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Timing {
    pub for_ms: i64,
    pub keep_firing_for_ms: i64,
    pub no_data_for_ms: i64,
}

/// Where an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    Pending,
    Firing,
    Resolved,
}

impl Phase {
    pub const fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "pending",
            Phase::Firing => "firing",
            Phase::Resolved => "resolved",
        }
    }

    pub fn parse(s: &str) -> Option<Phase> {
        [Phase::Pending, Phase::Firing, Phase::Resolved]
            .into_iter()
            .find(|p| p.as_str() == s)
    }
}

/// Why an alert resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// The condition cleared (and stayed clear for `keep_firing_for`).
    Cleared,
    /// The series stopped reporting for `no_data_for`.
    NoData,
}

impl Resolution {
    pub const fn as_str(self) -> &'static str {
        match self {
            Resolution::Cleared => "cleared",
            Resolution::NoData => "no data",
        }
    }
}

/// What an observation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Pending → firing (or opened firing).
    Fired,
    /// Firing → resolved.
    Resolved(Resolution),
    /// Pending, and the condition no longer holds: the alert is gone.
    Dropped,
}

/// One alert's state.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AlertState {
    pub phase: Phase,
    /// When the condition first held.
    pub active_at: i64,
    pub fired_at: Option<i64>,
    pub resolved_at: Option<i64>,
    pub resolution: Option<Resolution>,
    /// The last evaluation where the condition held.
    pub last_true_at: i64,
    /// The last evaluation where the series had a value.
    pub last_seen_at: i64,
    /// The last value seen.
    pub value: f64,
}

impl AlertState {
    /// Opens an alert for a condition that holds at `at` with `value`: pending, or
    /// firing at once when `for` is zero ([`Event::Fired`] then).
    pub fn open(at: i64, value: f64, timing: &Timing) -> (AlertState, Option<Event>) {
        let mut s = AlertState {
            phase: Phase::Pending,
            active_at: at,
            fired_at: None,
            resolved_at: None,
            resolution: None,
            last_true_at: at,
            last_seen_at: at,
            value,
        };
        if timing.for_ms <= 0 {
            s.phase = Phase::Firing;
            s.fired_at = Some(at);
            return (s, Some(Event::Fired));
        }
        (s, None)
    }

    /// Whether the alert is pending or firing.
    pub fn is_open(&self) -> bool {
        self.phase != Phase::Resolved
    }

    /// Applies the evaluation at `at`: `Some(value)` when the series has a value,
    /// `None` when it is missing from the result.
    pub fn observe(
        &mut self,
        at: i64,
        value: Option<f64>,
        condition: &Condition,
        timing: &Timing,
    ) -> Option<Event> {
        if !self.is_open() || at < self.last_seen_at.max(self.active_at) {
            return None;
        }
        let Some(v) = value else {
            if at - self.last_seen_at < timing.no_data_for_ms.max(0) {
                return None;
            }
            return match self.phase {
                Phase::Pending => Some(Event::Dropped),
                _ => Some(self.resolve(at, Resolution::NoData)),
            };
        };
        self.last_seen_at = at;
        self.value = v;
        if condition.holds(v, true) {
            self.last_true_at = at;
            if self.phase == Phase::Pending && at - self.active_at >= timing.for_ms {
                self.phase = Phase::Firing;
                self.fired_at = Some(at);
                return Some(Event::Fired);
            }
            return None;
        }
        match self.phase {
            Phase::Pending => Some(Event::Dropped),
            _ if at - self.last_true_at < timing.keep_firing_for_ms => None,
            _ => Some(self.resolve(at, Resolution::Cleared)),
        }
    }

    fn resolve(&mut self, at: i64, why: Resolution) -> Event {
        self.phase = Phase::Resolved;
        self.resolved_at = Some(at);
        self.resolution = Some(why);
        Event::Resolved(why)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GT: Condition = Condition {
        comparison: Comparison::Gt,
        threshold: 10.0,
        resolve_threshold: None,
    };

    fn timing(for_ms: i64, keep: i64) -> Timing {
        Timing {
            for_ms,
            keep_firing_for_ms: keep,
            no_data_for_ms: 100,
        }
    }

    /// Runs values (None: no data) every 10 ms from t = 10, returning the events.
    fn run(values: &[Option<f64>], c: &Condition, t: &Timing) -> Vec<(i64, Event)> {
        let mut state: Option<AlertState> = None;
        let mut out = Vec::new();
        for (i, v) in values.iter().enumerate() {
            let at = 10 * (i as i64 + 1);
            match (&mut state, v) {
                (Some(s), _) if s.is_open() => {
                    if let Some(e) = s.observe(at, *v, c, t) {
                        out.push((at, e));
                        if e == Event::Dropped {
                            state = None;
                        }
                    }
                }
                (_, Some(v)) if c.holds(*v, false) => {
                    let (s, e) = AlertState::open(at, *v, t);
                    if let Some(e) = e {
                        out.push((at, e));
                    }
                    state = Some(s);
                }
                _ => {}
            }
        }
        out
    }

    #[test]
    fn pending_fires_after_for_and_resolves_when_clear() {
        let v = [11.0, 12.0, 13.0, 14.0, 5.0].map(Some);
        assert_eq!(
            run(&v, &GT, &timing(20, 0)),
            [
                (30, Event::Fired),
                (50, Event::Resolved(Resolution::Cleared))
            ]
        );
    }

    #[test]
    fn a_pending_alert_that_clears_is_dropped_and_never_fires() {
        let v = [11.0, 5.0, 11.0, 12.0].map(Some);
        assert_eq!(
            run(&v, &GT, &timing(30, 0)),
            [(20, Event::Dropped)],
            "the second episode has not lasted 30 ms yet"
        );
    }

    #[test]
    fn for_zero_fires_at_once() {
        assert_eq!(run(&[Some(11.0)], &GT, &timing(0, 0)), [(10, Event::Fired)]);
    }

    #[test]
    fn flapping_with_keep_firing_for_fires_once_and_resolves_once() {
        let mut v: Vec<Option<f64>> = (0..20)
            .map(|i| Some(if i % 2 == 0 { 11.0 } else { 5.0 }))
            .collect();
        v.extend([Some(5.0); 5]);
        let events = run(&v, &GT, &timing(0, 25));
        assert_eq!(
            events,
            [
                (10, Event::Fired),
                // Last true at 190; clear for 25 ms at 220.
                (220, Event::Resolved(Resolution::Cleared))
            ]
        );
        // Without keep_firing_for the same input fires ten times.
        let fired = run(&v, &GT, &timing(0, 0))
            .iter()
            .filter(|e| e.1 == Event::Fired)
            .count();
        assert_eq!(fired, 10);
    }

    #[test]
    fn hysteresis_holds_an_open_alert_until_the_resolve_threshold() {
        let c = Condition {
            comparison: Comparison::Gt,
            threshold: 0.8,
            resolve_threshold: Some(0.75),
        };
        let v = [0.81, 0.78, 0.79, 0.77, 0.81, 0.74].map(Some);
        assert_eq!(
            run(&v, &c, &timing(0, 0)),
            [
                (10, Event::Fired),
                (60, Event::Resolved(Resolution::Cleared))
            ]
        );
        // Below the threshold but above the resolve threshold does not open one.
        assert_eq!(run(&[Some(0.78)], &c, &timing(0, 0)), []);
    }

    #[test]
    fn missing_data_holds_then_resolves_as_no_data() {
        let mut v = vec![Some(11.0), Some(11.0)];
        v.extend([None; 5]);
        let events = run(&v, &GT, &timing(0, 0));
        assert_eq!(
            events,
            [
                (10, Event::Fired),
                // Last seen at 20; no data for 100 ms is reached at 120 … the input
                // ends at 70: still held.
            ]
        );
        v.extend([None; 6]);
        let events = run(&v, &GT, &timing(0, 0));
        assert_eq!(events[1], (120, Event::Resolved(Resolution::NoData)));
        // A pending alert without data is dropped after the same time.
        let events = run(&v, &GT, &timing(1000, 0));
        assert_eq!(events, [(120, Event::Dropped)]);
    }

    #[test]
    fn old_observations_change_nothing() {
        let t = timing(0, 0);
        let (mut s, _) = AlertState::open(100, 11.0, &t);
        assert_eq!(s.observe(50, Some(1.0), &GT, &t), None);
        assert_eq!(s.phase, Phase::Firing);
        assert_eq!(
            s.observe(110, Some(1.0), &GT, &t),
            Some(Event::Resolved(Resolution::Cleared))
        );
        assert_eq!(s.resolved_at, Some(110));
        assert_eq!(
            s.observe(120, Some(20.0), &GT, &t),
            None,
            "resolved is final"
        );
    }
}
